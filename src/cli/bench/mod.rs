//! `bench`: pushes N orders into a running service as fast as Redis takes
//! them and measures, from each order's send to its result, the end-to-end
//! throughput and latency percentiles.
//!
//! `--mode live` benchmarks a service sending real orders (against the
//! `fake-mexc` exchange, never a real account): LIMIT orders of a size
//! MEXC accepts, the figures set beside `MEXC_MAX_ORDERS_PER_SEC`, and the
//! statuses the orders ended with.

use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::json;

use super::client::{OrderClient, Via};
use crate::config::Settings;

mod ceiling;
mod cpu;

use cpu::CpuSample;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// How many orders to send.
    #[arg(long, default_value_t = 50_000)]
    orders: usize,
    /// Orders per pipeline.
    #[arg(long, default_value_t = 500)]
    chunk: usize,
    #[arg(long, value_enum, default_value_t)]
    via: Via,
    /// Orders per second to send at; as fast as possible when absent.
    #[arg(long)]
    rate: Option<u32>,
    /// Seconds to wait for the last result.
    #[arg(long, default_value_t = 120)]
    timeout: u64,
    /// What the service under test does with orders: `paper` or `mock`
    /// (simulated fills), or `live` (real orders; point the service at the
    /// fake exchange).
    #[arg(long, value_enum, default_value_t)]
    mode: BenchMode,
    /// First measure what Postgres alone accepts for the same rows (a
    /// scratch schema, as many writers as WORKER_CONCURRENCY), and print the
    /// run's throughput as a share of it.
    #[arg(long)]
    ceiling: bool,
    /// The service's `/metrics`, sampled during the run for its peak
    /// resident memory (`process_resident_memory_bytes`); default: this
    /// host's HTTP_PORT.
    #[arg(long)]
    metrics_url: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum BenchMode {
    #[default]
    Paper,
    Live,
}

pub async fn run(args: Args, settings: &Settings) -> anyhow::Result<ExitCode> {
    let ceiling = match args.ceiling {
        true => {
            let measured =
                ceiling::measure(settings, args.orders, settings.streams.worker.concurrency)
                    .await?;
            println!(
                "ceiling={:.0} orders/s (Postgres alone: {} orders and their trades, {} per statement, from {} writers)",
                measured.orders_per_sec,
                args.orders,
                ceiling::PER_STATEMENT,
                measured.writers
            );
            Some(measured)
        }
        false => None,
    };
    let metrics_url = args
        .metrics_url
        .clone()
        .unwrap_or_else(|| format!("http://127.0.0.1:{}/metrics", settings.http.port));
    let peak = Arc::new(AtomicU64::new(0));
    let sampler = tokio::spawn(sample_rss(metrics_url.clone(), peak.clone()));
    let cpu_before = CpuSample::take(&metrics_url, settings).await;
    let run_id = uuid::Uuid::new_v4().simple().to_string();
    let prefix = format!("bench-{}-", &run_id[..8]);
    let mut client = OrderClient::connect(settings).await?;
    let results = client.results().await?;

    let receiver_prefix = prefix.clone();
    let expected = args.orders;
    let receiver = tokio::spawn(async move {
        let mut results = Box::pin(results);
        let mut arrivals = HashMap::with_capacity(expected);
        let mut statuses: HashMap<String, usize> = HashMap::new();
        while arrivals.len() < expected {
            let Some(result) = results.next().await else {
                break;
            };
            if result.order_id.starts_with(&receiver_prefix)
                && !arrivals.contains_key(&result.order_id)
            {
                *statuses
                    .entry(result.status.as_str().to_owned())
                    .or_default() += 1;
                arrivals.insert(result.order_id, Instant::now());
            }
        }
        (arrivals, statuses)
    });

    let started = Instant::now();
    let mut sent_at = HashMap::with_capacity(args.orders);
    let ids: Vec<String> = (0..args.orders).map(|i| format!("{prefix}{i}")).collect();
    let pace = args
        .rate
        .map(|rate| Duration::from_secs_f64(args.chunk.max(1) as f64 / f64::from(rate.max(1))));
    for (index, chunk) in ids.chunks(args.chunk.max(1)).enumerate() {
        if let Some(pace) = pace {
            tokio::time::sleep_until((started + pace * index as u32).into()).await;
        }
        let orders: Vec<String> = chunk
            .iter()
            .map(|id| match args.mode {
                BenchMode::Paper => json!({"order_id": id, "symbol": "BTCUSDT", "side": "BUY", "quantity": "0.001", "price": "50000"}),
                // Above MEXC's minimum notional (5 USDT).
                BenchMode::Live => json!({"order_id": id, "symbol": "BTCUSDT", "side": "BUY", "order_type": "LIMIT", "quantity": "0.0002", "price": "50000"}),
            }
            .to_string())
            .collect();
        let now = Instant::now();
        let receivers = client.send(args.via, &orders).await?;
        if receivers.contains(&0) {
            anyhow::bail!(
                "no order shim is subscribed to the orders channel; start the service first"
            );
        }
        sent_at.extend(chunk.iter().map(|id| (id.clone(), now)));
    }
    let send_secs = started.elapsed().as_secs_f64();

    let (arrivals, statuses) =
        match tokio::time::timeout(Duration::from_secs(args.timeout), receiver).await {
            Ok(joined) => joined?,
            Err(_) => anyhow::bail!("not every result arrived within {} s", args.timeout),
        };
    let cpu_after = CpuSample::take(&metrics_url, settings).await;
    let last = arrivals.values().max().copied().unwrap_or(started);
    let total_secs = last.duration_since(started).as_secs_f64().max(f64::EPSILON);
    let mut latencies: Vec<Duration> = arrivals
        .iter()
        .filter_map(|(id, at)| {
            sent_at
                .get(id)
                .map(|sent| at.saturating_duration_since(*sent))
        })
        .collect();
    latencies.sort();
    let percentile = |p: f64| {
        let index =
            ((latencies.len() as f64 * p).ceil() as usize).clamp(1, latencies.len().max(1)) - 1;
        latencies
            .get(index)
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    println!(
        "orders={} via={:?} sent_in={send_secs:.2}s results={} end_to_end={total_secs:.2}s throughput={:.0} orders/s \
         latency_ms p50={:.1} p90={:.1} p99={:.1} max={:.1}",
        args.orders,
        args.via,
        arrivals.len(),
        arrivals.len() as f64 / total_secs,
        percentile(0.50),
        percentile(0.90),
        percentile(0.99),
        percentile(1.0),
    );
    if let Some(ceiling) = ceiling {
        println!(
            "throughput is {:.0} % of the ceiling",
            100.0 * arrivals.len() as f64 / total_secs / ceiling.orders_per_sec
        );
    }
    println!(
        "{}",
        cpu_before.per_order(&cpu_after, arrivals.len().max(1))
    );
    sampler.abort();
    match peak.load(Ordering::Relaxed) {
        0 => println!("peak_rss=unknown ({metrics_url} did not answer)"),
        bytes => println!(
            "peak_rss={:.1} MiB (the service's process_resident_memory_bytes, sampled every 100 ms)",
            bytes as f64 / 1_048_576.0
        ),
    }
    let mut statuses: Vec<(String, usize)> = statuses.into_iter().collect();
    statuses.sort();
    let statuses: Vec<String> = statuses.iter().map(|(s, n)| format!("{s}={n}")).collect();
    println!("first results by status: {}", statuses.join(" "));
    if args.mode == BenchMode::Live {
        let limit = settings.mexc.max_orders_per_sec;
        println!(
            "live: MEXC_MAX_ORDERS_PER_SEC={limit}; throughput is {:.0} % of it",
            100.0 * arrivals.len() as f64 / total_secs / f64::from(limit)
        );
    }
    Ok(if arrivals.len() == args.orders {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Keeps the largest `process_resident_memory_bytes` the service's
/// `/metrics` shows, every 100 ms, until aborted.
async fn sample_rss(url: String, peak: Arc<AtomicU64>) {
    let Ok(http) = reqwest::Client::builder()
        .timeout(Duration::from_secs(1))
        .build()
    else {
        return;
    };
    loop {
        if let Ok(response) = http.get(&url).send().await
            && let Ok(text) = response.text().await
            && let Some(bytes) = resident_bytes(&text)
        {
            peak.fetch_max(bytes, Ordering::Relaxed);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The value of `process_resident_memory_bytes` in a Prometheus text page.
fn resident_bytes(page: &str) -> Option<u64> {
    page.lines()
        .find_map(|line| line.strip_prefix("process_resident_memory_bytes "))
        .and_then(|value| value.trim().parse::<f64>().ok())
        .map(|value| value as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_resident_memory_is_read_from_a_metrics_page() {
        let page = "# HELP process_resident_memory_bytes Resident memory size in bytes.\n\
                    # TYPE process_resident_memory_bytes gauge\n\
                    process_resident_memory_bytes 41943040\n\
                    execution_uptime_seconds 3\n";
        assert_eq!(resident_bytes(page), Some(41_943_040));
        assert_eq!(resident_bytes("execution_uptime_seconds 3\n"), None);
    }
}
