//! A paper batch's one statement returns only the rows that were stored
//! before; the rows it inserts are rebuilt from what the batch sent. Those
//! must be the rows Postgres holds (but the `id`, which nothing downstream
//! of a batch reads).

use chrono::{DateTime, Utc};
use execution_service::domain::{Fill, Order, OrderStatus, OrderType, Side, TradingMode};
use execution_service::store::{self, Store};
use rust_decimal::Decimal;

use crate::helpers::TestEnv;

fn order(id: &str) -> Order {
    Order {
        order_id: id.to_owned(),
        symbol: "BTCUSDT".into(),
        side: Side::Sell,
        quantity: Decimal::new(1, 3),
        price: Some(Decimal::new(5_000_012_345_678, 8)),
        order_type: OrderType::Limit,
        client_id: Some("client-7".into()),
        strategy_id: Some("strategy-7".into()),
        bot_id: Some("bot-7".into()),
        stop_loss_pct: None,
        // Nanoseconds: Postgres keeps microseconds.
        timestamp: DateTime::from_timestamp(1_764_124_800, 123_456_789),
        traceparent: None,
    }
}

#[tokio::test]
async fn rows_a_decided_write_inserts_are_the_rows_postgres_stores() {
    let env = TestEnv::new().await;
    let store = Store::connect(&env.var("DATABASE_URL"), 4)
        .await
        .expect("connect");
    let now = DateTime::from_timestamp(Utc::now().timestamp(), 987_654_321).expect("a time");
    let fill = Fill {
        quantity: Decimal::new(1, 3),
        price: Decimal::new(5_000_012_345_678, 8),
        fee: Decimal::new(5_000_012, 8),
        exchange_order_id: None,
    };
    let (filled, trade) = store::decided_row(
        store::pending_row(&order("decided-filled"), TradingMode::Paper, now),
        OrderStatus::Filled,
        Some(&fill),
        None,
    );
    let (rejected, none) = store::decided_row(
        store::pending_row(&order("decided-rejected"), TradingMode::Mock, now),
        OrderStatus::Rejected,
        None,
        Some("no liquidity".into()),
    );
    assert!(none.is_none());
    let rows = vec![filled, rejected];
    let trades: Vec<_> = trade.into_iter().collect();

    let written = store
        .write_decided(rows.clone(), &trades)
        .await
        .expect("write");
    assert_eq!(written.len(), 2);
    for (order_id, written) in &written {
        assert!(written.inserted, "{order_id} was new");
        let (stored, stored_trades) = store
            .order_with_trades(order_id)
            .await
            .expect("read")
            .expect("stored");
        assert_ne!(stored.id, 0);
        assert_eq!(written.row.id, 0);
        let stored = store::entity::orders::Model { id: 0, ..stored };
        assert_eq!(written.row, stored, "{order_id}");
        // Equal amounts may differ in scale; the published text may not.
        assert_eq!(
            store::result_from_row(&written.row, None).rendered(),
            store::result_from_row(&stored, None).rendered()
        );
        let expected_trades = usize::from(order_id == "decided-filled");
        assert_eq!(stored_trades.len(), expected_trades);
    }

    // Written again: nothing inserted, every row as stored, one more attempt.
    let again = store.write_decided(rows, &trades).await.expect("write");
    for (order_id, written) in &again {
        assert!(!written.inserted, "{order_id} was stored");
        assert_eq!(written.row.attempts, 2);
        assert_ne!(written.row.id, 0);
    }
}
