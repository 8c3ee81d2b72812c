use std::str::FromStr;

use std::collections::BTreeMap;

use super::*;
use crate::domain::TradingMode;
use crate::execution::mexc::OrderId;

fn row() -> orders::Model {
    let now = chrono::Utc::now().fixed_offset();
    orders::Model {
        id: 1,
        order_id: "o-1".into(),
        symbol: Some("BTCUSDT".into()),
        side: Some("BUY".into()),
        order_type: Some("LIMIT".into()),
        quantity: Some(Decimal::from_str("0.002").unwrap()),
        price: Some(Decimal::from(50_000)),
        status: OrderStatus::Submitted,
        filled_quantity: None,
        fill_price: None,
        fee: None,
        client_id: None,
        strategy_id: None,
        bot_id: None,
        mode: TradingMode::Live,
        reject_reason: None,
        exchange_order_id: None,
        attempts: 0,
        order_timestamp: None,
        created_at: now,
        updated_at: now,
        filled_at: None,
        raw_message: None,
        client_order_id: Some("es0123".into()),
        lease_owner: Some("a".into()),
        lease_until: Some(now),
        sent_at: Some(now),
        send_attempts: 1,
        lookups: 0,
        exchange_status: None,
        fee_asset: None,
        state_seq: 2,
        fees: None,
        resolved_at: None,
        watch_until: None,
        corrects_seq: None,
    }
}

fn state(status: ExchangeStatus, executed: &str, quote: &str) -> OrderState {
    OrderState {
        symbol: "BTCUSDT".into(),
        order_id: OrderId("C02__7".into()),
        client_order_id: Some("es0123".into()),
        orig_client_order_id: None,
        price: Some(Decimal::from(50_000)),
        orig_qty: Some(Decimal::from_str("0.002").unwrap()),
        executed_qty: Decimal::from_str(executed).unwrap(),
        cummulative_quote_qty: Decimal::from_str(quote).unwrap(),
        status,
        order_type: Some("LIMIT".into()),
        side: Some("BUY".into()),
        time: None,
        update_time: None,
    }
}

fn trade(id: &str, qty: &str, price: &str, fee: &str) -> Trade {
    Trade {
        symbol: "BTCUSDT".into(),
        id: id.into(),
        order_id: OrderId("C02__7".into()),
        price: Decimal::from_str(price).unwrap(),
        qty: Decimal::from_str(qty).unwrap(),
        quote_qty: Decimal::ZERO,
        commission: Decimal::from_str(fee).unwrap(),
        commission_asset: Some("USDT".into()),
        time: Some(1_764_124_800_000),
        is_buyer: Some(true),
        is_maker: Some(false),
        client_order_id: None,
    }
}

#[test]
fn mexc_statuses_map_onto_the_result_contract() {
    assert_eq!(
        status_for(&ExchangeStatus::New),
        Some(OrderStatus::Submitted)
    );
    assert_eq!(
        status_for(&ExchangeStatus::PartiallyFilled),
        Some(OrderStatus::PartiallyFilled)
    );
    assert_eq!(
        status_for(&ExchangeStatus::Filled),
        Some(OrderStatus::Filled)
    );
    assert_eq!(
        status_for(&ExchangeStatus::Canceled),
        Some(OrderStatus::Canceled)
    );
    assert_eq!(
        status_for(&ExchangeStatus::PartiallyCanceled),
        Some(OrderStatus::Canceled)
    );
    assert_eq!(status_for(&ExchangeStatus::Other("X".into())), None);
}

#[test]
fn a_partial_fill_keeps_the_lease_and_records_each_trade_under_mexcs_id() {
    let poll = Duration::from_millis(500);
    let (update, fills) = update_for(
        &row(),
        &state(ExchangeStatus::PartiallyFilled, "0.0006", "30.0003"),
        &[trade("11", "0.0006", "50000.5", "0.03")],
        poll,
    )
    .unwrap();
    assert_eq!(
        update.observation,
        Some(Observation::Reported(OrderStatus::PartiallyFilled))
    );
    assert_eq!(
        update.filled_quantity,
        Some(Decimal::from_str("0.0006").unwrap())
    );
    assert_eq!(
        update.fill_price,
        Some(Decimal::from_str("50000.5").unwrap())
    );
    assert!(update.keep_lease);
    assert_eq!(update.poll_in, Some(poll));
    assert_eq!(update.exchange_order_id.as_deref(), Some("C02__7"));
    assert_eq!(fills.len(), 1);
    assert_eq!(fills[0].trade_id, "mexc-11");
    assert_eq!(fills[0].fee_asset.as_deref(), Some("USDT"));
}

#[test]
fn a_terminal_state_lets_the_lease_go_and_sums_the_fees() {
    let (update, fills) = update_for(
        &row(),
        &state(ExchangeStatus::Filled, "0.002", "100"),
        &[
            trade("11", "0.0006", "50000", "0.03"),
            trade("12", "0.0014", "50000", "0.07"),
        ],
        Duration::from_secs(1),
    )
    .unwrap();
    assert_eq!(
        update.observation,
        Some(Observation::Reported(OrderStatus::Filled))
    );
    assert_eq!(
        update.fees,
        Some(BTreeMap::from([(
            "USDT".to_owned(),
            Decimal::from_str("0.10").unwrap()
        )]))
    );
    assert!(!update.keep_lease);
    assert_eq!(update.poll_in, None);
    assert_eq!(fills.len(), 2);
}

#[test]
fn fees_in_two_assets_are_kept_apart() {
    let mut in_mx = trade("12", "0.0014", "50000", "0.002");
    in_mx.commission_asset = Some("MX".into());
    let (update, _) = update_for(
        &row(),
        &state(ExchangeStatus::Filled, "0.002", "100"),
        &[trade("11", "0.0006", "50000", "0.03"), in_mx],
        Duration::from_secs(1),
    )
    .unwrap();
    let fees = update.fees.unwrap();
    assert_eq!(fees["USDT"], Decimal::from_str("0.03").unwrap());
    assert_eq!(fees["MX"], Decimal::from_str("0.002").unwrap());
}

#[test]
fn trades_that_do_not_add_up_to_the_executed_quantity_are_looked_up_again() {
    let answer = update_for(
        &row(),
        &state(ExchangeStatus::Filled, "0.002", "100"),
        &[trade("11", "0.0006", "50000", "0.03")],
        Duration::from_secs(1),
    );
    assert!(answer.unwrap_err().contains("0.0006"));
}

#[test]
fn trades_of_other_orders_are_not_counted() {
    let mut other = trade("99", "0.002", "1", "0");
    other.order_id = OrderId("C02__8".into());
    let answer = update_for(
        &row(),
        &state(ExchangeStatus::New, "0", "0"),
        &[other],
        Duration::from_secs(1),
    )
    .unwrap();
    assert!(answer.1.is_empty());
    assert_eq!(
        answer.0.observation,
        Some(Observation::Reported(OrderStatus::Submitted))
    );
}

#[test]
fn news_is_a_new_announced_status_or_more_filled() {
    let before = row();
    let mut after = row();
    assert!(!is_news(&before, &after), "nothing changed");
    after.status = OrderStatus::PartiallyFilled;
    after.filled_quantity = Some(Decimal::ONE);
    assert!(is_news(&before, &after));
    let mut more = after.clone();
    assert!(!is_news(&after, &more));
    more.filled_quantity = Some(Decimal::TWO);
    assert!(is_news(&after, &more));
    let mut submitted = row();
    submitted.lookups = 3;
    assert!(!is_news(&before, &submitted), "SUBMITTED is not announced");
}

#[test]
fn polls_come_sooner_for_young_orders_and_never_beyond_the_ceiling() {
    let ceiling = Duration::from_secs(10);
    assert_eq!(
        poll_delay(Duration::ZERO, ceiling),
        Duration::from_millis(250)
    );
    assert_eq!(
        poll_delay(Duration::from_secs(8), ceiling),
        Duration::from_secs(2)
    );
    assert_eq!(poll_delay(Duration::from_secs(3600), ceiling), ceiling);
    assert_eq!(
        poll_delay(Duration::from_secs(3600), MAX_POLL_INTERVAL),
        Duration::from_secs(5)
    );
}
