use super::*;
use std::str::FromStr;

fn parse_json(text: &str) -> Parsed {
    Parsed::from_incoming(Incoming::Json(text.as_bytes()))
}

fn order(text: &str) -> Order {
    match parse_json(text) {
        Parsed::Order(order) => order,
        other => panic!("expected an order from {text}, got {other:?}"),
    }
}

fn rejection(text: &str) -> Rejection {
    match parse_json(text) {
        Parsed::Rejected(rejection) => rejection,
        other => panic!("expected a rejection from {text}, got {other:?}"),
    }
}

fn dec(text: &str) -> Decimal {
    Decimal::from_str(text).unwrap()
}

#[test]
fn a_full_order_parses_with_exact_amounts() {
    let parsed = order(
        r#"{"order_id":"o-1","symbol":"btc/usdt","side":"buy","quantity":0.001,"price":"50000.5",
            "order_type":"limit","client_id":"c-1","strategy_id":"s","bot_id":"b","stop_loss_pct":2.5,
            "timestamp":1764124800,"traceparent":"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}"#,
    );
    assert_eq!(parsed.order_id, "o-1");
    assert_eq!(parsed.symbol, "BTC/USDT");
    assert_eq!(parsed.market(), "BTCUSDT");
    assert_eq!(parsed.side, Side::Buy);
    assert_eq!(parsed.quantity, dec("0.001"));
    assert_eq!(parsed.price, Some(dec("50000.5")));
    assert_eq!(parsed.order_type, OrderType::Limit);
    assert_eq!(parsed.stop_loss_pct, Some(dec("2.5")));
    assert_eq!(parsed.timestamp.map(|t| t.timestamp()), Some(1_764_124_800));
    assert!(parsed.traceparent.is_some());
}

#[test]
fn numbers_and_strings_give_the_same_decimal() {
    let a = order(r#"{"order_id":"a","symbol":"ETHUSDT","side":"SELL","quantity":0.1}"#);
    let b = order(r#"{"order_id":"a","symbol":"ETHUSDT","side":"SELL","quantity":"0.1"}"#);
    assert_eq!(a.quantity, b.quantity);
    assert_eq!(a.quantity.to_string(), "0.1");
}

#[test]
fn identity_falls_back_to_client_id_then_content() {
    assert_eq!(
        order(r#"{"client_id":"c-9","symbol":"ETHUSDT","side":"BUY","quantity":1}"#).order_id,
        "c-9"
    );
    let derived = order(r#"{"symbol":"BTCUSDT","side":"BUY","quantity":1}"#).order_id;
    let again = order(r#"{"symbol":"BTC/USDT","side":"buy","quantity":"1.0"}"#).order_id;
    assert_eq!(derived, again);
    assert!(derived.starts_with("ord-"));
}

#[test]
fn timestamps_accept_seconds_millis_and_iso() {
    let at = |ts: &str| {
        order(&format!(
            r#"{{"order_id":"t","symbol":"ETHUSDT","side":"BUY","quantity":1,"timestamp":{ts}}}"#
        ))
        .timestamp
        .map(|t| t.timestamp_millis())
    };
    assert_eq!(at("1764124800"), Some(1_764_124_800_000));
    assert_eq!(at("1764124800123"), Some(1_764_124_800_123));
    assert_eq!(at(r#""2025-11-26T02:40:00Z""#), Some(1_764_124_800_000));
}

#[test]
fn named_invalid_orders_are_rejected_with_reasons() {
    let hold = rejection(r#"{"order_id":"h","symbol":"BTCUSDT","side":"HOLD","quantity":1}"#);
    assert!(hold.reason.contains("side"), "{}", hold.reason);
    assert!(hold.fits_columns);
    assert_eq!(hold.side.as_deref(), Some("HOLD"));

    let negative = rejection(r#"{"order_id":"n","symbol":"BTCUSDT","side":"BUY","quantity":-1}"#);
    assert!(
        negative.reason.contains("greater than 0"),
        "{}",
        negative.reason
    );
    assert!(negative.fits_columns);
    assert_eq!(negative.quantity, Some(dec("-1")));

    let abc = rejection(r#"{"order_id":"a","symbol":"BTCUSDT","side":"BUY","quantity":"abc"}"#);
    assert!(abc.reason.contains("not a decimal"), "{}", abc.reason);
    assert!(!abc.fits_columns);

    let precise =
        rejection(r#"{"order_id":"p","symbol":"BTCUSDT","side":"BUY","quantity":0.000000001}"#);
    assert!(
        precise.reason.contains("8 decimal places"),
        "{}",
        precise.reason
    );
    assert!(!precise.fits_columns);

    let huge = rejection(r#"{"order_id":"g","symbol":"BTCUSDT","side":"BUY","quantity":1e40}"#);
    assert!(huge.reason.contains("too large"), "{}", huge.reason);
    assert!(!huge.fits_columns);

    let long_symbol = "S".repeat(10_000);
    let long = rejection(&format!(
        r#"{{"order_id":"l","symbol":"{long_symbol}","side":"BUY","quantity":1}}"#
    ));
    assert!(long.reason.contains("longer than"), "{}", long.reason);
    assert!(!long.fits_columns);

    let limit = rejection(
        r#"{"order_id":"x","symbol":"ETHUSDT","side":"BUY","quantity":1,"order_type":"LIMIT"}"#,
    );
    assert!(limit.reason.contains("needs a price"));
}

#[test]
fn unnamed_invalid_messages_are_unidentified() {
    for text in [
        "not json",
        "[1,2]",
        "42",
        "{}",
        r#"{"symbol":"ETHUSDT","side":"HOLD","quantity":1}"#,
        "\u{0}\u{ff}",
    ] {
        assert!(
            matches!(parse_json(text), Parsed::Unidentified(_)),
            "{text:?}"
        );
    }
    let bytes = [0xff_u8, 0xfe, 0x00];
    assert!(matches!(
        Parsed::from_incoming(Incoming::Json(&bytes)),
        Parsed::Unidentified(_)
    ));
}

#[test]
fn other_types_are_ignored() {
    assert_eq!(
        parse_json(r#"{"type":"heartbeat"}"#),
        Parsed::Ignored("heartbeat".into())
    );
    assert!(matches!(
        parse_json(
            r#"{"type":"ORDER","order_id":"o","symbol":"ETHUSDT","side":"BUY","quantity":1}"#
        ),
        Parsed::Order(_)
    ));
}

#[test]
fn flat_stream_entries_parse_like_json() {
    let fields: Vec<(String, Vec<u8>)> = [
        ("order_id", "f-1"),
        ("symbol", "ETHUSDT"),
        ("side", "sell"),
        ("quantity", "0.5"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.as_bytes().to_vec()))
    .collect();
    let Parsed::Order(parsed) = Parsed::from_incoming(Incoming::from_entry(&fields)) else {
        panic!("flat entry did not parse");
    };
    assert_eq!(parsed.quantity, dec("0.5"));
    assert_eq!(parsed.side, Side::Sell);

    let wrapped = vec![(
        "payload".to_owned(),
        br#"{"order_id":"w","symbol":"ETHUSDT","side":"BUY","quantity":1}"#.to_vec(),
    )];
    assert!(matches!(
        Parsed::from_incoming(Incoming::from_entry(&wrapped)),
        Parsed::Order(_)
    ));
}

#[test]
fn message_identity_prefers_ids_then_hashes_bytes() {
    assert_eq!(
        message_identity(br#"{"order_id":"o-7","symbol":"ETHUSDT","side":"HOLD"}"#),
        "o-7"
    );
    let raw = message_identity(b"garbage");
    assert!(raw.starts_with("raw-"));
    assert_eq!(raw, message_identity(b"garbage"));
}

#[test]
fn wrong_json_kinds_are_reported_not_panicked_on() {
    let r = rejection(r#"{"order_id":"k","symbol":["X"],"side":true,"quantity":{"a":1}}"#);
    assert!(r.reason.contains("symbol must be a string"), "{}", r.reason);
    assert!(!r.fits_columns);
}

#[test]
fn text_with_nul_characters_never_fits_a_column() {
    let r = rejection(r#"{"order_id":"z","symbol":"BTCUSDT","side":"BU\u0000Y","quantity":1}"#);
    assert!(r.reason.contains("side"), "{}", r.reason);
    assert!(!r.fits_columns);
}

#[test]
fn timestamps_outside_the_window_are_rejected_not_rescaled() {
    for ts in [
        "1732620000000000",
        "-1732620000",
        "-99999999999999999999999",
        "1e30",
        r#""1969-12-31T23:59:59Z""#,
        r#""2100-01-01T00:00:00Z""#,
    ] {
        let r = rejection(&format!(
            r#"{{"order_id":"t","symbol":"BTCUSDT","side":"BUY","quantity":1,"timestamp":{ts}}}"#
        ));
        assert!(r.reason.contains("out of range"), "{ts}: {}", r.reason);
        assert_eq!(r.timestamp, None);
    }
}

#[test]
fn symbols_must_look_like_markets() {
    for symbol in [
        "BTCUSDT",
        "btc/usdt",
        "BTC-USDT",
        "BTC_USDT",
        "1INCHUSDT",
        "1INCH/USDT",
        "A/B",
    ] {
        let text = format!(r#"{{"order_id":"s","symbol":"{symbol}","side":"BUY","quantity":1}}"#);
        assert!(matches!(parse_json(&text), Parsed::Order(_)), "{symbol:?}");
    }
    for symbol in [
        "///",
        "-",
        "123",
        "BTC",
        "BTC/",
        "/USDT",
        "BTC//USDT",
        "BTC/USD/T",
        "BTC-USDT_X",
        "BTC/123",
        "12/USDT",
        "BTC.USDT",
        "BTC:USDT",
        "BTC USDT",
        "BTCÜSDT",
        " eth/btc ",
        "BTCUSD\u{422}",
    ] {
        let text = format!(r#"{{"order_id":"s","symbol":"{symbol}","side":"BUY","quantity":1}}"#);
        let r = rejection(&text);
        assert!(
            r.reason.contains("is not a market") || r.reason.contains("a market is ASCII letters"),
            "{symbol:?}: {}",
            r.reason
        );
    }
    let number = rejection(r#"{"order_id":"n","symbol":12345,"side":"BUY","quantity":1}"#);
    assert_eq!(number.reason, "symbol must be a string, not a number");
}

#[test]
fn repeated_keys_leave_a_message_unidentified() {
    for text in [
        r#"{"order_id":"a","symbol":"BTCUSDT","side":"BUY","quantity":1,"order_id":"b"}"#,
        r#"{"order_id":"a","symbol":"BTCUSDT","side":"BUY","quantity":1,"order\u005fid":"a"}"#,
    ] {
        assert_eq!(
            parse_json(text),
            Parsed::Unidentified(r#"duplicate key "order_id""#.into()),
            "{text}"
        );
    }
    let side = parse_json(
        r#"{"order_id":"a","symbol":"BTCUSDT","side":"BUY","side":"SELL","quantity":1}"#,
    );
    assert_eq!(side, Parsed::Unidentified(r#"duplicate key "side""#.into()));
    // Repeats inside a value are no concern of the contract.
    let nested =
        order(r#"{"order_id":"n","symbol":"BTCUSDT","side":"BUY","quantity":1,"x":{"k":1,"k":2}}"#);
    assert_eq!(nested.order_id, "n");
}

fn entry(fields: &[(&str, &str)]) -> Vec<(String, Vec<u8>)> {
    fields
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.as_bytes().to_vec()))
        .collect()
}

#[test]
fn flat_fields_beside_a_payload_must_agree_with_it() {
    let payload = r#"{"order_id":"w","symbol":"BTC/USDT","side":"buy","quantity":0.5,"timestamp":1764124800}"#;
    let parse = |extra: &[(&str, &str)]| {
        let mut fields = vec![("payload", payload)];
        fields.extend_from_slice(extra);
        Parsed::from_incoming(Incoming::from_entry(&entry(&fields)))
    };
    let agreeing = [
        ("order_id", "w"),
        ("symbol", "btc/usdt"),
        ("side", "BUY"),
        ("quantity", "0.50000000"),
        ("timestamp", "1764124800"),
        (
            "traceparent",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        ),
        ("source", "risk-manager"),
    ];
    assert!(matches!(parse(&agreeing), Parsed::Order(_)));

    let Parsed::Rejected(side) = parse(&[("side", "SELL"), ("price", "10")]) else {
        panic!("a contradicting side was accepted");
    };
    assert_eq!(
        side.reason,
        "stream entry field side disagrees with its payload; stream entry field price disagrees with its payload"
    );
    assert_eq!(side.order_id, "w");

    for extra in [[("order_id", "other")], [("client_id", "c")]] {
        let Parsed::Unidentified(reason) = parse(&extra) else {
            panic!("a second id was accepted");
        };
        assert!(reason.contains("disagrees with its payload"), "{reason}");
    }
    let twice = entry(&[("payload", payload), ("payload", "{}")]);
    assert_eq!(
        Parsed::from_incoming(Incoming::from_entry(&twice)),
        Parsed::Unidentified(r#"duplicate field "payload""#.into())
    );
    let flat_twice = entry(&[
        ("order_id", "f"),
        ("symbol", "BTCUSDT"),
        ("side", "BUY"),
        ("quantity", "1"),
        ("side", "SELL"),
    ]);
    assert_eq!(
        Parsed::from_incoming(Incoming::from_entry(&flat_twice)),
        Parsed::Unidentified(r#"duplicate field "side""#.into())
    );
}

#[test]
fn blank_and_exponent_ids_name_nothing() {
    let blank = rejection(
        r#"{"order_id":" \t ","client_id":"c","symbol":"BTCUSDT","side":"BUY","quantity":1}"#,
    );
    assert_eq!(blank.order_id, "c");
    assert_eq!(blank.reason, "order_id must not be empty or blank");
    for id in ["strategy_id", "bot_id"] {
        let r = rejection(&format!(
            r#"{{"order_id":"o","{id}":"   ","symbol":"BTCUSDT","side":"BUY","quantity":1}}"#
        ));
        assert_eq!(r.reason, format!("{id} must not be empty or blank"));
    }
    assert!(matches!(
        parse_json(r#"{"client_id":"  ","symbol":"BTCUSDT","side":"BUY","quantity":1}"#),
        Parsed::Unidentified(_)
    ));

    // serde_json writes an exponent with its sign: `1e5` reads as `1e+5`.
    for (id, shown) in [("1e5", "1e+5"), ("1E+3", "1e+3"), ("12.5", "12.5")] {
        let text = format!(r#"{{"order_id":{id},"symbol":"BTCUSDT","side":"BUY","quantity":1}}"#);
        assert_eq!(
            parse_json(&text),
            Parsed::Unidentified(format!(
                "order_id must be a string or a whole number, not {shown}"
            ))
        );
    }
    let whole = order(r#"{"order_id":12345,"symbol":"BTCUSDT","side":"BUY","quantity":1}"#);
    assert_eq!(whole.order_id, "12345");
    let string = order(r#"{"order_id":"1e5","symbol":"BTCUSDT","side":"BUY","quantity":1}"#);
    assert_eq!(string.order_id, "1e5");
}

#[test]
fn type_is_read_like_side() {
    let padded =
        r#"{"type":" ORDER ","order_id":"o","symbol":"BTCUSDT","side":"BUY","quantity":1}"#;
    assert!(matches!(parse_json(padded), Parsed::Order(_)));
    assert!(matches!(
        parse_json(r#"{"type":" Heartbeat "}"#),
        Parsed::Ignored(_)
    ));
}

#[test]
fn a_notional_the_columns_cannot_hold_is_rejected_at_validation() {
    let big = rejection(
        r#"{"order_id":"big","symbol":"BTCUSDT","side":"BUY","quantity":1000000,"price":"12000000","order_type":"LIMIT"}"#,
    );
    assert_eq!(
        big.reason,
        "notional 12000000000000 does not fit DECIMAL(20,8) (at most 12 integer digits)"
    );
    assert!(big.fits_columns);
    let market = rejection(
        r#"{"order_id":"m","symbol":"BTCUSDT","side":"SELL","quantity":999999999999,"price":2}"#,
    );
    assert!(market.reason.starts_with("notional "), "{}", market.reason);
    let edge = order(
        r#"{"order_id":"e","symbol":"BTCUSDT","side":"BUY","quantity":"999999.99999999","price":1000000}"#,
    );
    assert_eq!(edge.order_id, "e");
}
