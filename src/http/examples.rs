//! The examples the OpenAPI document shows for each response body.

use poem_openapi::types::Example;

use super::schema::{
    ActiveHalt, ApiError, ConsumerInfo, DatabaseStats, Health, OrderDetail, OrderEventView,
    OrderHistory, OrderPage, OrderView, Readiness, Statistics, Status, StreamInfo, TradeView,
};

impl Example for Health {
    fn example() -> Self {
        Health {
            status: "ok".into(),
            service: "execution".into(),
            version: env!("CARGO_PKG_VERSION").into(),
        }
    }
}

impl Example for Readiness {
    fn example() -> Self {
        Readiness {
            status: "unavailable".into(),
            redis: true,
            postgres: false,
            consumer: true,
            exchange: None,
            kill_switch: true,
            failing: vec!["postgres".into()],
        }
    }
}

impl Example for Statistics {
    fn example() -> Self {
        Statistics {
            orders_received: 1520,
            orders_filled: 1498,
            orders_rejected: 22,
        }
    }
}

impl Example for DatabaseStats {
    fn example() -> Self {
        DatabaseStats {
            total_orders: 98_311,
            filled_orders: 97_002,
            rejected_orders: 1_309,
        }
    }
}

impl Example for ConsumerInfo {
    fn example() -> Self {
        ConsumerInfo {
            group: "execution".into(),
            name: "execution-1-7".into(),
        }
    }
}

impl Example for StreamInfo {
    fn example() -> Self {
        StreamInfo {
            length: 98_400,
            pending: 12,
            lag: 0,
            backlog: 12,
            dlq_length: 3,
        }
    }
}

impl Example for Status {
    fn example() -> Self {
        Status {
            service: "execution".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            mode: "paper".into(),
            dry_run: true,
            uptime_seconds: 3_600,
            start_time: "2026-11-26T08:00:00+00:00".into(),
            redis_connected: true,
            database_connected: true,
            statistics: Statistics::example(),
            database_stats: Some(DatabaseStats::example()),
            consumer: ConsumerInfo::example(),
            stream: Some(StreamInfo::example()),
            halts: vec![ActiveHalt::example()],
            live: None,
        }
    }
}

impl Example for OrderView {
    fn example() -> Self {
        OrderView {
            cursor: 98_311,
            order_id: "rm-20261126-000042".into(),
            symbol: Some("BTCUSDT".into()),
            side: Some("BUY".into()),
            order_type: Some("MARKET".into()),
            quantity: Some("0.00100000".into()),
            price: Some("50000.00000000".into()),
            status: "FILLED".into(),
            filled_quantity: Some("0.00100000".into()),
            fill_price: Some("50000.00000000".into()),
            fee: Some("0.05000000".into()),
            client_id: Some("cl-42".into()),
            strategy_id: Some("momentum-v2".into()),
            bot_id: Some("bot-7".into()),
            mode: "paper".into(),
            reject_reason: None,
            exchange_order_id: None,
            attempts: 1,
            created_at: "2026-11-26T09:00:00.120+00:00".into(),
            updated_at: "2026-11-26T09:00:00.125+00:00".into(),
            filled_at: Some("2026-11-26T09:00:00.125+00:00".into()),
        }
    }
}

impl Example for OrderPage {
    fn example() -> Self {
        OrderPage {
            orders: vec![OrderView::example()],
            next_before: Some(98_311),
        }
    }
}

impl Example for TradeView {
    fn example() -> Self {
        TradeView {
            trade_id: "trd-6f1c2b0e9d8a4f3b2c1d0e9f8a7b6c5d".into(),
            price: "50000.00000000".into(),
            quantity: "0.00100000".into(),
            fee: "0.05000000".into(),
            mode: "paper".into(),
            exchange_order_id: None,
            executed_at: "2026-11-26T09:00:00.125+00:00".into(),
        }
    }
}

impl Example for OrderDetail {
    fn example() -> Self {
        OrderDetail {
            order: OrderView::example(),
            trades: vec![TradeView::example()],
        }
    }
}

impl Example for OrderEventView {
    fn example() -> Self {
        let evidence = serde_json::json!({
            "exchange_status": "FILLED",
            "exchange_order_id": "C02__443776336245616640095",
            "executed_qty": "0.00100000",
            "fees": {"USDT": "0.05000000"},
            "trade_ids": ["mexc-505925219917373440X1"],
        });
        OrderEventView {
            seq: 3,
            from_status: Some("SUBMITTED".into()),
            to_status: "FILLED".into(),
            observation: "reported".into(),
            evidence: evidence
                .as_object()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .collect(),
            replica: Some("execution-1-4242/3f9c0a1b#17".into()),
            at: "2026-11-26T09:00:00.312+00:00".into(),
        }
    }
}

impl Example for OrderHistory {
    fn example() -> Self {
        OrderHistory {
            order_id: "rm-7f3a9c".into(),
            status: "FILLED".into(),
            seq: 3,
            events: vec![OrderEventView::example()],
        }
    }
}

impl Example for ApiError {
    fn example() -> Self {
        ApiError::new("not_found", "no order with order_id \"rm-unknown\"")
    }
}
