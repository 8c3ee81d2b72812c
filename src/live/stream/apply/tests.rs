use chrono::Utc;

use super::*;
use crate::execution::mexc::ExchangeStatus;

fn state(executed: &str, status: ExchangeStatus) -> OrderState {
    OrderState {
        symbol: "BTCUSDT".into(),
        order_id: OrderId("x1".into()),
        client_order_id: Some("es1".into()),
        orig_client_order_id: None,
        price: None,
        orig_qty: Some("1".parse().unwrap()),
        executed_qty: executed.parse().unwrap(),
        cummulative_quote_qty: Default::default(),
        status,
        order_type: None,
        side: None,
        time: None,
        update_time: None,
    }
}

fn deal(id: &str, qty: &str) -> Trade {
    Trade {
        symbol: "BTCUSDT".into(),
        id: id.into(),
        order_id: OrderId("x1".into()),
        price: "100".parse().unwrap(),
        qty: qty.parse().unwrap(),
        quote_qty: Default::default(),
        commission: Default::default(),
        commission_asset: Some("USDT".into()),
        time: None,
        is_buyer: None,
        is_maker: None,
        client_order_id: None,
    }
}

#[test]
fn a_later_push_is_the_one_with_more_filled_or_the_final_word() {
    let part = state("0.3", ExchangeStatus::PartiallyFilled);
    let more = state("0.6", ExchangeStatus::PartiallyFilled);
    let done = state("0.6", ExchangeStatus::PartiallyCanceled);
    assert!(newer(&more, &part));
    assert!(!newer(&part, &more));
    assert!(newer(&done, &more));
    assert!(!newer(&more, &done));
    assert!(!newer(&part, &part));
}

#[test]
fn recorded_and_pushed_fills_count_each_exchange_trade_once() {
    let recorded = trades::Model {
        id: 1,
        trade_id: "mexc-t1".into(),
        order_id: "o1".into(),
        symbol: "BTCUSDT".into(),
        side: "BUY".into(),
        price: "100".parse().unwrap(),
        quantity: "0.3".parse().unwrap(),
        fee: "0.03".parse().unwrap(),
        mode: crate::domain::TradingMode::Live,
        exchange_order_id: Some("x1".into()),
        executed_at: Utc::now().fixed_offset(),
        fee_asset: Some("USDT".into()),
    };
    let deals: BTreeMap<String, Trade> = [deal("t1", "0.3"), deal("t2", "0.3")]
        .into_iter()
        .map(|d| (d.id.clone(), d))
        .collect();
    let fills = fills_known(
        &[recorded],
        &deals,
        &state("0.6", ExchangeStatus::PartiallyFilled),
    );
    let ids: Vec<&str> = fills.iter().map(|f| f.id.as_str()).collect();
    assert_eq!(ids, ["t1", "t2"]);
    let total: rust_decimal::Decimal = fills.iter().map(|f| f.qty).sum();
    assert_eq!(total, "0.6".parse().unwrap());
    // The recorded fill keeps what was recorded of it.
    assert_eq!(fills[0].commission, "0.03".parse().unwrap());
}
