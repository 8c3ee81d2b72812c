//! `fake-mexc [host:port]`: serves the fake MEXC exchange until Ctrl-C or
//! SIGTERM (default `127.0.0.1:9100`), then prints what it received. Its
//! key and secret are printed at start; orders fill in full at once.

use std::time::Duration;

use fake_mexc::{API_KEY, API_SECRET, FakeMexc};

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let address = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9100".to_owned());
    let fake = FakeMexc::start_on(&address).await?;
    println!("fake MEXC at {}", fake.url());
    println!("MEXC_API_KEY={API_KEY}");
    println!("MEXC_API_SECRET={API_SECRET}");
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
    let orders = fake.orders();
    let duplicates = orders.len()
        - orders
            .iter()
            .map(|o| o.client_order_id.as_str())
            .collect::<std::collections::HashSet<_>>()
            .len();
    println!(
        "orders: {}, duplicate client ids: {duplicates}, order POSTs: {}, most order writes within 1 s: {}",
        orders.len(),
        fake.count("POST", "/api/v3/order"),
        fake.max_order_writes_within(Duration::from_secs(1)),
    );
    Ok(())
}
