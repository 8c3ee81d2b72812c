use proptest::prelude::*;

use super::*;

#[test]
fn plain_ids_pass_and_inner_spaces_are_part_of_them() {
    for id in ["o-1", "S7", "strategy 7", "ordre-é", "注文-1", "a"] {
        assert_eq!(id_problem("order_id", id, 255), None, "{id}");
    }
}

#[test]
fn padding_invisible_and_denormalised_ids_are_refused_naming_the_character() {
    let cases = [
        ("S7 ", "ends with the white space U+0020"),
        (" S2", "starts with the white space U+0020"),
        ("S2\u{a0}", "ends with the white space U+00A0"),
        ("\u{3000}S2", "starts with the white space U+3000"),
        ("S\u{200b}7", "format character U+200B"),
        ("\u{feff}S7", "format character U+FEFF"),
        ("S7\u{200d}", "format character U+200D"),
        ("S\u{202e}7", "format character U+202E"),
        ("S\u{ad}7", "format character U+00AD"),
        ("S\t7", "control character U+0009"),
        ("S7\n", "control character U+000A"),
        ("S\u{0}7", "control character U+0000"),
        ("caf\u{65}\u{301}", "normalisation form C"),
        ("", "must not be empty"),
    ];
    for (id, expected) in cases {
        let problem = id_problem("strategy_id", id, 255).unwrap_or_default();
        assert!(problem.contains(expected), "{id:?}: {problem}");
        assert!(problem.starts_with("strategy_id"), "{problem}");
    }
    assert!(id_problem("order_id", &"x".repeat(256), 255).is_some());
    assert_eq!(id_problem("order_id", &"x".repeat(255), 255), None);
}

#[test]
fn symbols_are_ascii_market_spellings_and_look_alikes_are_refused() {
    for symbol in ["BTCUSDT", "btcusdt", "BTC/USDT", "eth-usdt", "SOL_USDC"] {
        assert_eq!(symbol_problem(symbol, 32), None, "{symbol}");
    }
    let cyrillic_te = symbol_problem("BTCUSD\u{422}", 32).unwrap();
    assert!(cyrillic_te.contains("U+0422"), "{cyrillic_te}");
    let cyrillic_start = symbol_problem("\u{412}\u{422}\u{421}USDT", 32).unwrap();
    assert!(cyrillic_start.contains("U+0412"), "{cyrillic_start}");
    for refused in [
        " BTCUSDT",
        "BTCUSDT ",
        "BTC USDT",
        "BTC//USDT",
        "BTC/",
        "12345",
        "BTC",
    ] {
        assert!(symbol_problem(refused, 32).is_some(), "{refused:?}");
    }
}

proptest! {
    /// An accepted id is exactly its own one spelling: trimming it,
    /// normalising it to NFC or stripping invisible characters changes
    /// nothing, so no other spelling can stand for it.
    #[test]
    fn an_accepted_id_has_no_other_spelling(id in "\\PC{1,40}") {
        if id_problem("id", &id, 255).is_none() {
            prop_assert_eq!(id.trim(), id.as_str());
            let nfc: String = unicode_normalization::UnicodeNormalization::nfc(id.as_str()).collect();
            prop_assert_eq!(&nfc, &id);
            prop_assert!(id.chars().all(|c| !is_format(c) && !is_control(c)));
        }
    }

    /// Any id with white space added at either end is refused.
    #[test]
    fn padding_is_always_refused(id in "[a-zA-Z0-9]{1,20}", pad in prop::sample::select(vec![' ', '\u{a0}', '\u{2009}', '\u{3000}', '\t'])) {
        let padded_left = format!("{pad}{id}");
        let padded_right = format!("{id}{pad}");
        prop_assert!(id_problem("id", &padded_left, 255).is_some());
        prop_assert!(id_problem("id", &padded_right, 255).is_some());
    }

    /// A symbol is accepted only when every character is ASCII.
    #[test]
    fn accepted_symbols_are_ascii(symbol in "\\PC{1,12}") {
        if symbol_problem(&symbol, 32).is_none() {
            prop_assert!(symbol.is_ascii());
        }
    }
}
