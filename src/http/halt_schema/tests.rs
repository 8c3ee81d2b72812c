use proptest::prelude::*;
use regex::Regex;
use serde_json::Value;

use super::is_reason;
use crate::domain::HaltScope;

/// The patterns the committed document (kept equal to the served one
/// by the API tests) gives `field` in the schemas that have it.
fn patterns(field: &str) -> Vec<Regex> {
    let document: Value =
        serde_json::from_str(include_str!("../../../openapi/openapi.json")).unwrap();
    document["components"]["schemas"]
        .as_object()
        .unwrap()
        .values()
        .filter_map(|schema| schema["properties"][field]["pattern"].as_str())
        .map(|pattern| Regex::new(pattern).unwrap())
        .collect()
}

/// Texts at the edges of "visible", and whether they are a reason.
const REASONS: [(&str, bool); 19] = [
    ("daily loss limit", true),
    (" x ", true),
    ("é", true),
    ("\u{200b}", true),
    ("\u{feff}x", true),
    ("\u{1f}x\u{1f}", true),
    ("", false),
    (" ", false),
    ("\0", false),
    ("a\0", false),
    ("\0a\0", false),
    ("\u{1c}", false),
    ("\u{7f}", false),
    ("\u{85}", false),
    ("\u{a0}", false),
    ("\u{2028}", false),
    ("\u{3000}", false),
    ("\u{feff}", false),
    ("\t\n\r", false),
];

#[test]
fn the_document_and_the_handler_take_the_same_reasons() {
    let patterns = patterns("reason");
    assert_eq!(patterns.len(), 4, "one per kind of halt");
    for (text, valid) in REASONS {
        assert_eq!(is_reason(text), valid, "{text:?}");
        for pattern in &patterns {
            assert_eq!(pattern.is_match(text), valid, "{text:?} against {pattern}");
        }
    }
}

#[test]
fn an_id_the_document_allows_names_a_scope() {
    for (field, kind) in [("strategy_id", "strategy"), ("bot_id", "bot")] {
        let patterns = patterns(field);
        assert_eq!(patterns.len(), 1, "{field}");
        // The identity rule every id meets: no white space at either end,
        // no control or format character anywhere.
        for (text, valid) in [
            ("momentum-v2", true),
            ("a b", true),
            ("é", true),
            (" a ", false),
            ("a ", false),
            ("a\u{a0}", false),
            ("a\u{200b}b", false),
            // U+2000 is another spelling of U+2002: never in NFC.
            ("a\u{2000}a", false),
            ("\u{feff}", false),
            ("\u{3000}", false),
            (" ", false),
            ("a\u{1}", false),
        ] {
            assert_eq!(patterns[0].is_match(text), valid, "{field} {text:?}");
            assert_eq!(
                HaltScope::new(kind, Some(text)).is_ok(),
                valid,
                "{field} {text:?}"
            );
        }
    }
}

proptest! {
    #[test]
    fn any_text_is_judged_alike(text in "[\\x00-\\x20\\x7f-\\xa0\\u{2000}-\\u{200b}\\u{3000}\\u{feff}a]{0,6}") {
        for pattern in patterns("reason") {
            prop_assert_eq!(pattern.is_match(&text), is_reason(&text));
        }
        // The server answers what the schema allows, for every text in
        // NFC (the one part of the rule no pattern can state); one that is
        // not is refused whatever the pattern says.
        let nfc = unicode_normalization::is_nfc(&text);
        for (field, kind) in [("strategy_id", "strategy"), ("bot_id", "bot")] {
            let accepted = HaltScope::new(kind, Some(&text)).is_ok();
            if nfc {
                prop_assert_eq!(patterns(field)[0].is_match(&text), accepted, "{} {:?}", field, text);
            } else {
                prop_assert!(!accepted, "{} {:?} is not NFC", field, text);
            }
        }
    }
}
