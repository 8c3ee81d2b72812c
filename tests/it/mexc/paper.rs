//! Paper trading with `PAPER_PRICE_SOURCE=mexc`: MARKET orders without a
//! price fill at the fake MEXC's ticker price, with the reference prices as
//! the fallback; by default paper and mock never call MEXC.

use crate::fake_mexc::{FakeMexc, Fault, Script};
use crate::helpers::TestEnv;

#[tokio::test]
async fn paper_market_orders_fill_at_the_mexc_ticker_price_when_asked() {
    let fake = FakeMexc::start().await;
    fake.set_price("BTCUSDT", "61234.5");
    let env = TestEnv::new().await;
    let url = fake.url();
    let app = env
        .spawn(
            "paper-mexc",
            &[
                ("PAPER_PRICE_SOURCE", "mexc"),
                ("MEXC_BASE_URL", &url),
                ("PAPER_REFERENCE_PRICES", "BTCUSDT=50000"),
            ],
        )
        .await;
    env.publish(&[
        r#"{"order_id":"paper-mexc-1","symbol":"BTC/USDT","side":"BUY","quantity":"0.01"}"#.to_owned(),
        r#"{"order_id":"paper-mexc-2","symbol":"BTCUSDT","side":"SELL","quantity":"0.02","price":"60000"}"#.to_owned(),
    ])
    .await;
    let results = env.wait_for_results(2).await;
    let market = results
        .iter()
        .find(|r| r["order_id"] == "paper-mexc-1")
        .expect("a result");
    assert_eq!(market["status"], "FILLED", "{market:?}");
    assert_eq!(market["price"], "61234.50000000");
    let limited = results
        .iter()
        .find(|r| r["order_id"] == "paper-mexc-2")
        .expect("a result");
    assert_eq!(limited["price"], "60000.00000000");
    // One public request, for the symbol as MEXC spells it, without a key.
    let requests = fake.requests();
    assert_eq!(requests.len(), 1, "{requests:?}");
    assert_eq!(requests[0].path, "/api/v3/ticker/price");
    assert_eq!(requests[0].query, "symbol=BTCUSDT");
    assert!(!requests[0].keyed);
    app.stop().await;
}

#[tokio::test]
async fn paper_trading_by_default_never_calls_mexc() {
    let fake = FakeMexc::start().await;
    let env = TestEnv::new().await;
    let url = fake.url();
    let app = env
        .spawn(
            "paper-offline",
            &[
                ("MEXC_BASE_URL", &url),
                ("PAPER_REFERENCE_PRICES", "BTCUSDT=50000"),
            ],
        )
        .await;
    env.publish(&[
        r#"{"order_id":"paper-offline-1","symbol":"BTCUSDT","side":"BUY","quantity":"0.01"}"#
            .to_owned(),
    ])
    .await;
    let results = env.wait_for_results(1).await;
    assert_eq!(results[0]["status"], "FILLED");
    assert_eq!(results[0]["price"], "50000.00000000");
    app.stop().await;
    let mock = env
        .spawn(
            "mock-offline",
            &[("MEXC_BASE_URL", &url), ("TRADING_MODE", "mock")],
        )
        .await;
    env.publish(&[
        r#"{"order_id":"mock-offline-1","symbol":"BTCUSDT","side":"BUY","quantity":"0.01","price":"100"}"#.to_owned(),
    ])
    .await;
    env.wait_for_results(2).await;
    mock.stop().await;
    assert_eq!(fake.request_count(), 0, "{:?}", fake.requests());
}

#[tokio::test]
async fn paper_falls_back_to_reference_prices_while_mexc_is_down() {
    let fake = FakeMexc::start().await;
    fake.script(
        Script::nth(1, Fault::ServerError)
            .on("GET", "/api/v3/ticker/price")
            .times(100),
    );
    let env = TestEnv::new().await;
    let url = fake.url();
    let app = env
        .spawn(
            "paper-fallback",
            &[
                ("PAPER_PRICE_SOURCE", "mexc"),
                ("MEXC_BASE_URL", &url),
                ("PAPER_REFERENCE_PRICES", "BTCUSDT=50000"),
            ],
        )
        .await;
    env.publish(&[
        r#"{"order_id":"fallback-1","symbol":"BTCUSDT","side":"BUY","quantity":"0.01"}"#.to_owned(),
        r#"{"order_id":"fallback-2","symbol":"ETHUSDT","side":"BUY","quantity":"0.01"}"#.to_owned(),
    ])
    .await;
    let results = env.wait_for_results(2).await;
    let btc = results
        .iter()
        .find(|r| r["order_id"] == "fallback-1")
        .expect("a result");
    assert_eq!(btc["status"], "FILLED");
    assert_eq!(btc["price"], "50000.00000000");
    let eth = results
        .iter()
        .find(|r| r["order_id"] == "fallback-2")
        .expect("a result");
    assert_eq!(eth["status"], "REJECTED");
    assert!(
        eth["error_message"].contains("PAPER_REFERENCE_PRICES"),
        "{eth:?}"
    );
    // One request per symbol: the failure is remembered, not retried per order.
    assert_eq!(fake.count("GET", "/api/v3/ticker/price"), 2);
    app.stop().await;
}
