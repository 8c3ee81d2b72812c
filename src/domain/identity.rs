//! One identity rule for every id the service matches on: order ids,
//! client, strategy and bot ids, the targets of halts, and symbols.
//!
//! Nothing is trimmed or normalised into a match. An id that two producers
//! could spell differently while it looks the same (a stray space, a
//! zero-width space, another Unicode normalisation form) would be two ids
//! here: a re-sent order executed twice, a halt that covers nothing. So
//! such an id is refused, naming the character, and one spelling is the
//! only spelling.

use unicode_general_category::{GeneralCategory, get_general_category};
use unicode_normalization::is_nfc;

/// Why `text` cannot be the id `name` (at most `max_len` characters), or
/// `None` when it can: empty, too long, a control or format character
/// anywhere (zero-width ones included), white space at either end, or not
/// in Unicode normalisation form C.
pub fn id_problem(name: &str, text: &str, max_len: usize) -> Option<String> {
    let Some(first) = text.chars().next() else {
        return Some(format!("{name} must not be empty"));
    };
    let count = text.chars().count();
    if count > max_len {
        return Some(format!(
            "{name} must be at most {max_len} characters, not {count}"
        ));
    }
    if let Some(c) = text.chars().find(|c| is_control(*c)) {
        return Some(format!(
            "{name} contains the control character {}",
            code_point(c)
        ));
    }
    if let Some(c) = text.chars().find(|c| is_format(*c)) {
        return Some(format!(
            "{name} contains the invisible format character {}",
            code_point(c)
        ));
    }
    if first.is_whitespace() {
        return Some(format!(
            "{name} starts with the white space {}",
            code_point(first)
        ));
    }
    if let Some(last) = text.chars().next_back().filter(|c| c.is_whitespace()) {
        return Some(format!(
            "{name} ends with the white space {}",
            code_point(last)
        ));
    }
    if !is_nfc(text) {
        return Some(format!(
            "{name} is not in Unicode normalisation form C (NFC): the same text can be spelt with other code points"
        ));
    }
    None
}

/// Why `text` is not a market symbol, or `None`: the accepted spellings are
/// `BASEQUOTE` (5..=`max_len` characters) or `BASE/QUOTE`, `BASE-QUOTE`,
/// `BASE_QUOTE`, each side ASCII letters and digits with at least one
/// letter, in any case. Anything else is refused, never stripped: a
/// character that is not part of a market name names another market once
/// dropped (`BTCUSDТ` with a Cyrillic Т is not `BTCUSD`).
pub fn symbol_problem(text: &str, max_len: usize) -> Option<String> {
    if text.is_empty() {
        return Some("symbol must not be empty".to_owned());
    }
    let count = text.chars().count();
    if count > max_len {
        return Some(format!("symbol is longer than {max_len} characters"));
    }
    if let Some(c) = text
        .chars()
        .find(|c| !c.is_ascii_alphanumeric() && !matches!(c, '/' | '-' | '_'))
    {
        return Some(format!(
            "symbol {text:?} contains {} {c:?}: a market is ASCII letters and digits, with at most one of / - _",
            code_point(c)
        ));
    }
    if !is_market(&text.to_ascii_uppercase(), max_len) {
        return Some(format!(
            "symbol {text:?} is not a market: expected BASEQUOTE (5..={max_len} letters and digits) or BASE/QUOTE, BASE-QUOTE, BASE_QUOTE, each side letters and digits with at least one letter"
        ));
    }
    None
}

/// Whether an upper-cased symbol has one of the accepted market spellings.
fn is_market(symbol: &str, max_len: usize) -> bool {
    let part = |text: &str| {
        !text.is_empty()
            && text.bytes().all(|b| b.is_ascii_alphanumeric())
            && text.bytes().any(|b| b.is_ascii_alphabetic())
    };
    let mut sides = symbol.split(['/', '-', '_']);
    match (sides.next(), sides.next(), sides.next()) {
        (Some(bare), None, _) => (5..=max_len).contains(&bare.len()) && part(bare),
        (Some(base), Some(quote), None) => part(base) && part(quote),
        _ => false,
    }
}

/// `U+200B`.
fn code_point(c: char) -> String {
    format!("U+{:04X}", c as u32)
}

fn is_control(c: char) -> bool {
    get_general_category(c) == GeneralCategory::Control
}

/// Unicode's format characters (zero-width spaces and joiners, the byte
/// order mark, bidirectional controls, the soft hyphen, ...): invisible,
/// so two ids differing by one look the same.
fn is_format(c: char) -> bool {
    get_general_category(c) == GeneralCategory::Format
}

#[cfg(test)]
mod tests;
