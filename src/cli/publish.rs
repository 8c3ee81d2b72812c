//! `publish`: the manual test. Sends one order and prints its result.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use futures_util::StreamExt;
use serde_json::{Map, Value, json};

use super::client::{OrderClient, Via};
use crate::config::Settings;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The whole order as JSON; the flags below are ignored when given.
    #[arg(long)]
    json: Option<String>,
    /// Generated when absent.
    #[arg(long)]
    order_id: Option<String>,
    #[arg(long, default_value = "BTCUSDT")]
    symbol: String,
    #[arg(long, default_value = "BUY")]
    side: String,
    #[arg(long, default_value = "0.001")]
    quantity: String,
    #[arg(long)]
    price: Option<String>,
    #[arg(long)]
    order_type: Option<String>,
    #[arg(long, value_enum, default_value_t)]
    via: Via,
    /// Seconds to wait for the result.
    #[arg(long, default_value_t = 10)]
    timeout: u64,
}

pub async fn run(args: Args, settings: &Settings) -> anyhow::Result<ExitCode> {
    let mut order = match &args.json {
        Some(text) => {
            match serde_json::from_str::<Value>(text).context("--json is not valid JSON")? {
                Value::Object(map) => map,
                _ => anyhow::bail!("--json must be a JSON object"),
            }
        }
        None => from_flags(&args),
    };
    let order_id = match order.get("order_id") {
        Some(Value::String(id)) => id.clone(),
        // Sent as given: the service reads a whole number as its digits.
        Some(Value::Number(id)) => id.to_string(),
        Some(other) => anyhow::bail!(
            "--json: order_id {other} is neither a string nor a number; the service would \
             dead-letter the message and no result would come (see `dlq list`)"
        ),
        None => {
            let id = args
                .order_id
                .clone()
                .unwrap_or_else(|| format!("manual-{}", uuid::Uuid::new_v4()));
            order.insert("order_id".into(), Value::String(id.clone()));
            id
        }
    };
    let mut client = OrderClient::connect(settings).await?;
    let mut results = Box::pin(client.results().await?);
    let receivers = client
        .send(args.via, &[Value::Object(order).to_string()])
        .await?;
    if receivers.first() == Some(&0) {
        tracing::warn!(
            "no order shim is subscribed to the orders channel; is the service running?"
        );
    }
    let wait = async {
        while let Some(result) = results.next().await {
            if result.order_id == order_id {
                return Some(result);
            }
        }
        None
    };
    match tokio::time::timeout(Duration::from_secs(args.timeout), wait).await {
        Ok(Some(result)) => {
            println!("{}", serde_json::to_string_pretty(&result)?);
            Ok(ExitCode::SUCCESS)
        }
        _ => {
            tracing::error!(%order_id, timeout_secs = args.timeout, "no result arrived");
            Ok(ExitCode::FAILURE)
        }
    }
}

fn from_flags(args: &Args) -> Map<String, Value> {
    let mut order = json!({"symbol": args.symbol, "side": args.side, "quantity": args.quantity});
    if let Some(price) = &args.price {
        order["price"] = json!(price);
    }
    if let Some(order_type) = &args.order_type {
        order["order_type"] = json!(order_type);
    }
    if let Some(id) = &args.order_id {
        order["order_id"] = json!(id);
    }
    match order {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}
