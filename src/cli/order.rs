//! `order <order_id>`: one order as stored and its whole history, from
//! Postgres (the same as `GET /orders/{order_id}/events`).

use std::process::ExitCode;

use crate::config::Settings;

pub async fn run(settings: &Settings, order_id: &str) -> anyhow::Result<ExitCode> {
    let store = super::halt::connect(settings).await?;
    let Some((order, events)) = store.order_history(order_id).await? else {
        eprintln!("no order with order_id {order_id:?}");
        return Ok(ExitCode::FAILURE);
    };
    println!(
        "{}  {}  #{}  {} {} {} @ {}  filled {}  mode {}",
        order.order_id,
        order.status,
        order.state_seq,
        order.side.as_deref().unwrap_or("-"),
        order.quantity.map_or("-".to_owned(), |q| q.to_string()),
        order.symbol.as_deref().unwrap_or("-"),
        order.price.map_or("market".to_owned(), |p| p.to_string()),
        order
            .filled_quantity
            .map_or("-".to_owned(), |q| q.to_string()),
        order.mode.as_str(),
    );
    if let Some(client_order_id) = &order.client_order_id {
        println!(
            "client order id {client_order_id}, exchange order id {}",
            order.exchange_order_id.as_deref().unwrap_or("-")
        );
    }
    if let Some(reason) = &order.reject_reason {
        println!("reason: {reason}");
    }
    if events.is_empty() {
        println!("no recorded events (a simulated order ends in the change that stored it)");
    }
    for event in events {
        println!(
            "{:>4}  {}  {:<17} -> {:<17} {:<16} {}  {}",
            event.seq,
            event.at.format("%Y-%m-%d %H:%M:%S%.3f%:z"),
            event.from_status.map_or("-", |s| s.as_str()),
            event.to_status,
            event.observation,
            event.replica.as_deref().unwrap_or("-"),
            event.evidence.map(|e| e.to_string()).unwrap_or_default(),
        );
    }
    Ok(ExitCode::SUCCESS)
}
