use super::*;
use crate::domain::Side;
use crate::domain::order::tests::order;

fn fields(pairs: &[(&str, &str)]) -> Fields {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), serde_json::Value::String(v.to_string())))
        .collect()
}

#[test]
fn every_scope_parses_with_its_id() {
    let halt = HaltCommand::parse(&fields(&[
        ("action", "halt"),
        ("scope", "strategy"),
        ("strategy_id", "S1"),
        ("reason", "drawdown"),
        ("source", "risk-manager"),
    ]))
    .unwrap();
    assert_eq!(halt.action, HaltAction::Halt);
    assert_eq!(halt.scope, HaltScope::Strategy("S1".into()));
    assert_eq!(halt.source, "risk-manager");

    let all = HaltCommand::parse(&fields(&[
        ("action", "HALT"),
        ("scope", "All"),
        ("reason", "x"),
    ]))
    .unwrap();
    assert_eq!(all.scope, HaltScope::All);
    let symbol = HaltCommand::parse(&fields(&[
        ("action", "halt"),
        ("scope", "symbol"),
        ("symbol", "btc/usdt"),
        ("reason", "x"),
    ]))
    .unwrap();
    assert_eq!(symbol.scope, HaltScope::Symbol("BTCUSDT".into()));
    let resume = HaltCommand::parse(&fields(&[
        ("action", "resume"),
        ("scope", "bot"),
        ("bot_id", "b-7"),
    ]))
    .unwrap();
    assert_eq!(resume.scope, HaltScope::Bot("b-7".into()));
    assert_eq!(resume.source, "unknown");
}

#[test]
fn an_entry_that_cannot_be_understood_is_refused() {
    for (entry, expected) in [
        (
            vec![("scope", "all"), ("reason", "x")],
            "action is required",
        ),
        (
            vec![("action", "pause"), ("scope", "all"), ("reason", "x")],
            "not halt or resume",
        ),
        (
            vec![("action", "halt"), ("reason", "x")],
            "scope is required",
        ),
        (
            vec![("action", "halt"), ("scope", "desk"), ("reason", "x")],
            "not all, strategy",
        ),
        (
            vec![("action", "halt"), ("scope", "strategy"), ("reason", "x")],
            "needs strategy_id",
        ),
        (
            vec![
                ("action", "halt"),
                ("scope", "strategy"),
                ("strategy_id", "  "),
                ("reason", "x"),
            ],
            "strategy_id starts with the white space U+0020",
        ),
        (
            vec![
                ("action", "halt"),
                ("scope", "strategy"),
                ("strategy_id", "S7 "),
                ("reason", "x"),
            ],
            "strategy_id ends with the white space U+0020",
        ),
        (
            vec![
                ("action", "halt"),
                ("scope", "bot"),
                ("bot_id", "b\u{200b}1"),
                ("reason", "x"),
            ],
            "U+200B",
        ),
        (
            vec![
                ("action", "halt"),
                ("scope", "symbol"),
                ("symbol", "BTCUSD\u{422}"),
                ("reason", "x"),
            ],
            "U+0422",
        ),
        (
            vec![
                ("action", "resume"),
                ("scope", "strategy"),
                ("strategy_id", "S1"),
                ("halt_id", "05"),
            ],
            "is not a halt's id",
        ),
        (
            vec![
                ("action", "halt"),
                ("scope", "strategy"),
                ("strategy_id", "S1"),
                ("halt_id", "5"),
                ("reason", "x"),
            ],
            "a halt takes none",
        ),
        (
            vec![
                ("action", "halt"),
                ("scope", "all"),
                ("bot_id", "b1"),
                ("reason", "x"),
            ],
            "names no",
        ),
        (vec![("action", "halt"), ("scope", "all")], "needs a reason"),
        (
            vec![
                ("action", "halt"),
                ("scope", "symbol"),
                ("symbol", "///"),
                ("reason", "x"),
            ],
            "not a market",
        ),
    ] {
        let err = HaltCommand::parse(&fields(&entry)).unwrap_err();
        assert!(err.contains(expected), "{entry:?}: {err}");
    }
    let mut wrong_kind = fields(&[("scope", "all"), ("reason", "x")]);
    wrong_kind.insert("action".into(), serde_json::json!(1));
    assert!(
        HaltCommand::parse(&wrong_kind)
            .unwrap_err()
            .contains("must be text")
    );
    let long = "r".repeat(1_001);
    let err = HaltCommand::parse(&fields(&[
        ("action", "halt"),
        ("scope", "all"),
        ("reason", &long),
    ]))
    .unwrap_err();
    assert!(err.contains("at most 1000"), "{err}");
}

#[test]
fn a_command_round_trips_through_its_fields() {
    let command = HaltCommand {
        action: HaltAction::Halt,
        scope: HaltScope::Bot("b-1".into()),
        reason: "manual".into(),
        source: "ops".into(),
        halt_id: None,
    };
    let fields_written = command.to_fields();
    let written: Vec<(&str, &str)> = fields_written
        .iter()
        .map(|(k, v)| (*k, v.as_str()))
        .collect();
    assert_eq!(HaltCommand::parse(&fields(&written)).unwrap(), command);
}

#[test]
fn halts_cover_their_scope_only() {
    let mut o = order("BTC/USDT", Side::Buy, "1");
    o.strategy_id = Some("S1".into());
    o.bot_id = Some("b1".into());
    assert!(HaltScope::All.covers(&o));
    assert!(HaltScope::Strategy("S1".into()).covers(&o));
    assert!(!HaltScope::Strategy("S2".into()).covers(&o));
    assert!(HaltScope::Bot("b1".into()).covers(&o));
    assert!(HaltScope::Symbol("BTCUSDT".into()).covers(&o));
    assert!(!HaltScope::Symbol("ETHUSDT".into()).covers(&o));
    o.strategy_id = None;
    assert!(!HaltScope::Strategy("S1".into()).covers(&o));
}

#[test]
fn the_oldest_covering_halt_gives_the_reason() {
    let halts = [
        Halt {
            id: 9,
            scope: HaltScope::All,
            reason: "later".into(),
        },
        Halt {
            id: 3,
            scope: HaltScope::Strategy("S1".into()),
            reason: "drawdown".into(),
        },
        Halt {
            id: 1,
            scope: HaltScope::Bot("other".into()),
            reason: "n/a".into(),
        },
    ];
    let mut o = order("BTCUSDT", Side::Sell, "1");
    o.strategy_id = Some("S1".into());
    assert_eq!(
        halted_reason(&halts, &o).as_deref(),
        Some("halted: strategy S1 drawdown")
    );
    o.strategy_id = None;
    assert_eq!(
        halted_reason(&halts, &o).as_deref(),
        Some("halted: all later")
    );
    assert_eq!(halted_reason(&halts[2..], &o), None);
}

#[test]
fn entries_that_are_not_text_or_repeat_a_field_are_refused() {
    let entry = |pairs: &[(&[u8], &[u8])]| -> Vec<(Vec<u8>, Vec<u8>)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_vec(), v.to_vec()))
            .collect()
    };
    let ok = entry(&[(b"action", b"halt"), (b"scope", b"all"), (b"reason", b"r")]);
    assert_eq!(HaltCommand::from_entry(&ok).unwrap().scope, HaltScope::All);
    for (bad, expected) in [
        (entry(&[(b"\xff", b"halt")]), "name"),
        (
            entry(&[(b"action", b"\xff\xfe")]),
            "field action is not UTF-8",
        ),
        (
            entry(&[(b"action", b"halt"), (b"action", b"resume")]),
            "duplicate field",
        ),
    ] {
        let err = HaltCommand::from_entry(&bad).unwrap_err();
        assert!(err.contains(expected), "{err}");
    }
}

#[test]
fn visible_means_not_white_space_not_control_not_a_byte_order_mark() {
    for c in (0..=0x10ffff).filter_map(char::from_u32) {
        assert_eq!(
            is_visible(c),
            !c.is_whitespace() && !c.is_control() && c != '\u{feff}',
            "U+{:04X}",
            c as u32
        );
    }
}
