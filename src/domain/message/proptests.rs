//! Properties of the message reader: any input gets a fate without a panic,
//! orders written by the contract's grammar are read back exactly however
//! they travel, and what is accepted keeps every documented bound.

use proptest::prelude::*;
use serde_json::json;

use super::*;
use crate::domain::amount::{fill_amounts, format_amount, parse_amount};
use crate::domain::{EARLIEST_TIMESTAMP_SECS, END_TIMESTAMP_SECS};

const CONTRACT_FIELDS: [&str; 14] = [
    "type",
    "order_id",
    "client_id",
    "strategy_id",
    "bot_id",
    "symbol",
    "side",
    "quantity",
    "price",
    "order_type",
    "stop_loss_pct",
    "timestamp",
    "traceparent",
    "payload",
];

/// A JSON number by its literal, kept exact.
fn number(literal: &str) -> Value {
    serde_json::from_str(literal).unwrap_or(Value::Null)
}

/// Values of every JSON kind, biased towards the ones the contract reads.
fn any_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        "-?[0-9]{1,20}(\\.[0-9]{1,12})?([eE][-+]?[0-9]{1,3})?".prop_map(|l| number(&l)),
        prop_oneof![
            Just("BTCUSDT"),
            Just("btc/usdt"),
            Just("///"),
            Just("buy"),
            Just(" SELL "),
            Just("LIMIT"),
            Just("order"),
            Just("  "),
            Just("1e5"),
            Just("0.001"),
            Just("1732620000000000"),
            Just("2025-11-26T02:40:00Z"),
        ]
        .prop_map(|s| Value::String(s.to_owned())),
        any::<String>().prop_map(Value::String),
    ];
    leaf.prop_recursive(2, 8, 3, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
            proptest::collection::btree_map("[a-z_]{1,8}", inner, 0..3)
                .prop_map(|map| Value::Object(map.into_iter().collect())),
        ]
    })
}

fn any_object() -> impl Strategy<Value = Fields> {
    let key = prop_oneof![
        4 => proptest::sample::select(CONTRACT_FIELDS.to_vec()).prop_map(str::to_owned),
        1 => any::<String>(),
    ];
    proptest::collection::vec((key, any_value()), 0..10)
        .prop_map(|pairs| pairs.into_iter().collect())
}

/// Whether `symbol` has one of the market spellings: a side is upper-case
/// letters and digits with a letter; bare, it is 5..=32 long.
fn market_shaped(symbol: &str) -> bool {
    let side = |text: &str| {
        !text.is_empty()
            && text
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
            && text.bytes().any(|b| b.is_ascii_uppercase())
    };
    let bare = side(symbol) && (5..=32).contains(&symbol.len());
    let split = ['/', '-', '_'].iter().any(|sep| {
        symbol
            .split_once(*sep)
            .is_some_and(|(base, quote)| side(base) && side(quote))
    });
    bare || split
}

/// The id an order is named by: a string that is not blank.
fn naming(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::String(text) if !text.trim().is_empty() => Some(text.clone()),
        Value::Number(n)
            if n.to_string()
                .bytes()
                .all(|b| b.is_ascii_digit() || b == b'-') =>
        {
            Some(n.to_string())
        }
        _ => None,
    }
}

fn check_order(order: &Order) -> Result<(), TestCaseError> {
    prop_assert!(!order.order_id.trim().is_empty());
    prop_assert!(order.order_id.chars().count() <= MAX_ID_LEN);
    prop_assert!(market_shaped(&order.symbol), "{}", order.symbol);
    prop_assert!(order.quantity > Decimal::ZERO);
    prop_assert_eq!(
        parse_amount(&format_amount(order.quantity)),
        Ok(order.quantity)
    );
    if let Some(price) = order.price {
        prop_assert!(price > Decimal::ZERO);
        prop_assert!(fill_amounts(order.quantity, price, Decimal::ZERO).is_ok());
    }
    if let Some(at) = order.timestamp {
        let secs = at.timestamp();
        prop_assert!((EARLIEST_TIMESTAMP_SECS..END_TIMESTAMP_SECS).contains(&secs));
    }
    Ok(())
}

/// A valid order by the contract's grammar, as JSON values.
fn valid_order() -> impl Strategy<Value = Fields> {
    let symbol = (
        "[A-Za-z][A-Za-z0-9]{1,6}",
        "[A-Za-z0-9]{0,5}[A-Za-z]",
        prop_oneof![Just(""), Just("/"), Just("-"), Just("_")],
    )
        .prop_map(|(base, quote, sep)| format!("{base}{sep}{quote}"))
        .prop_filter("a bare symbol is 5..=32 long", |s| s.len() >= 5);
    let side = prop_oneof![Just("buy"), Just("SELL"), Just(" Buy "), Just("sell")];
    let amount = (0_i64..1_000_000, 0_u32..=8)
        .prop_map(|(units, scale)| Decimal::new(units.max(1), scale).to_string());
    let timestamp = (EARLIEST_TIMESTAMP_SECS..END_TIMESTAMP_SECS, 0_u8..3).prop_map(
        |(secs, form)| match form {
            0 => secs.to_string(),
            1 => (secs * 1000 + 7).to_string(),
            _ => chrono::DateTime::from_timestamp(secs, 0)
                .map(|t| t.to_rfc3339())
                .unwrap_or_default(),
        },
    );
    (
        "[a-z0-9-]{1,20}",
        symbol,
        side,
        amount.clone(),
        proptest::option::of(amount),
        proptest::option::of(timestamp),
        any::<bool>(),
    )
        .prop_map(
            |(order_id, symbol, side, quantity, price, timestamp, as_numbers)| {
                let amount = |text: &str| {
                    if as_numbers {
                        number(text)
                    } else {
                        Value::String(text.to_owned())
                    }
                };
                let mut fields = Fields::new();
                fields.insert("order_id".into(), json!(order_id));
                fields.insert("symbol".into(), json!(symbol));
                fields.insert("side".into(), json!(side));
                fields.insert("quantity".into(), amount(&quantity));
                if let Some(price) = price {
                    fields.insert("price".into(), amount(&price));
                    fields.insert("order_type".into(), json!("limit"));
                }
                if let Some(timestamp) = timestamp {
                    fields.insert("timestamp".into(), json!(timestamp));
                }
                fields
            },
        )
}

fn as_text(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

fn flat(fields: &Fields) -> Vec<(String, Vec<u8>)> {
    fields
        .iter()
        .map(|(name, value)| (name.clone(), as_text(value).into_bytes()))
        .collect()
}

proptest! {
    #[test]
    fn any_bytes_get_a_fate_without_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let parsed = Parsed::from_incoming(Incoming::Json(&bytes));
        if let Parsed::Order(order) = &parsed {
            check_order(order)?;
        }
        prop_assert_eq!(message_identity(&bytes), message_identity(&bytes));
        let entry = vec![("payload".to_owned(), bytes.clone()), ("side".to_owned(), bytes)];
        let _ = Parsed::from_incoming(Incoming::from_entry(&entry));
    }

    #[test]
    fn any_object_gets_a_fate_the_contract_allows(fields in any_object()) {
        let text = serde_json::to_vec(&Value::Object(fields.clone())).unwrap_or_default();
        let named = naming(fields.get("order_id")).or_else(|| naming(fields.get("client_id")));
        match Parsed::from_incoming(Incoming::Json(&text)) {
            Parsed::Order(order) => {
                check_order(&order)?;
                if let Some(named) = named {
                    prop_assert_eq!(order.order_id, named);
                }
            }
            Parsed::Rejected(rejection) => {
                prop_assert!(!rejection.reason.is_empty());
                prop_assert_eq!(Some(rejection.order_id), named);
            }
            Parsed::Unidentified(reason) => {
                prop_assert!(!reason.is_empty());
                prop_assert!(named.is_none(), "{} was named: {}", named.unwrap_or_default(), reason);
            }
            Parsed::Ignored(kind) => {
                prop_assert!(!kind.trim().eq_ignore_ascii_case("order"));
            }
        }
        // The same fields as a flat stream entry never panic either.
        let _ = Parsed::from_incoming(Incoming::from_entry(&flat(&fields)));
    }

    #[test]
    fn grammar_orders_read_back_exactly_however_they_travel(fields in valid_order()) {
        let text = serde_json::to_vec(&Value::Object(fields.clone())).unwrap_or_default();
        let Parsed::Order(order) = Parsed::from_incoming(Incoming::Json(&text)) else {
            return Err(TestCaseError::fail(format!("not an order: {fields:?}")));
        };
        check_order(&order)?;
        prop_assert_eq!(&order.order_id, &as_text(&fields["order_id"]));
        prop_assert_eq!(Some(order.quantity), parse_amount(&as_text(&fields["quantity"])).ok());

        let entry = flat(&fields);
        prop_assert_eq!(Parsed::from_incoming(Incoming::from_entry(&entry)), Parsed::Order(order.clone()));

        let mut wrapped = entry;
        wrapped.push(("payload".to_owned(), text));
        prop_assert_eq!(Parsed::from_incoming(Incoming::from_entry(&wrapped)), Parsed::Order(order));
    }

    #[test]
    fn one_broken_field_rejects_a_named_order(
        fields in valid_order(),
        (name, broken) in proptest::sample::select(vec![
            ("symbol", json!("///")),
            ("symbol", json!(12345)),
            ("side", json!("HOLD")),
            ("quantity", json!("-1")),
            ("quantity", number("1e-9")),
            ("quantity", json!("1e13")),
            ("price", json!("abc")),
            ("timestamp", number("1732620000000000")),
            ("timestamp", json!("1969-07-20T20:17:00Z")),
            ("client_id", json!("   ")),
            ("bot_id", number("1e5")),
        ]),
    ) {
        let mut fields = fields;
        fields.insert(name.to_owned(), broken);
        let text = serde_json::to_vec(&Value::Object(fields.clone())).unwrap_or_default();
        let Parsed::Rejected(rejection) = Parsed::from_incoming(Incoming::Json(&text)) else {
            return Err(TestCaseError::fail(format!("not rejected: {fields:?}")));
        };
        prop_assert!(rejection.reason.contains(name), "{}", rejection.reason);
        prop_assert_eq!(&rejection.order_id, &as_text(&fields["order_id"]));
    }
}

/// How a message was named before the short way: by the full read.
fn summary_by_full_read(bytes: &[u8]) -> (String, Option<String>) {
    match Parsed::from_incoming(Incoming::Json(bytes)) {
        Parsed::Order(order) => (order.order_id, order.traceparent),
        Parsed::Rejected(rejection) => (rejection.order_id, rejection.traceparent),
        Parsed::Unidentified(_) | Parsed::Ignored(_) => {
            (format!("raw-{}", hex::encode(Sha256::digest(bytes))), None)
        }
    }
}

proptest! {
    #[test]
    fn the_summary_names_a_message_as_the_full_read_does(
        fields in any_object(),
        order in valid_order(),
        traceparent in prop_oneof![
            Just(None),
            Just(Some(Value::from("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"))),
            Just(Some(Value::from("00-0af7651916cd43dd8448eb211c80319c-00"))),
            Just(Some(Value::from(7))),
        ],
        kind in prop_oneof![Just(None), Just(Some(" ORDER ")), Just(Some("cancel"))],
        bytes in proptest::collection::vec(any::<u8>(), 0..200),
    ) {
        for mut object in [fields, order] {
            if let Some(traceparent) = &traceparent {
                object.insert("traceparent".to_owned(), traceparent.clone());
            }
            if let Some(kind) = kind {
                object.insert("type".to_owned(), Value::from(kind));
            }
            let text = serde_json::to_vec(&Value::Object(object)).unwrap_or_default();
            prop_assert_eq!(message_summary(&text), summary_by_full_read(&text));
        }
        prop_assert_eq!(message_summary(&bytes), summary_by_full_read(&bytes));
    }
}
