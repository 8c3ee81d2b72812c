//! `dlq list|show|requeue|purge`: the dead-letter stream for operators.

use std::process::ExitCode;

use anyhow::Context;

use crate::bus::{DeadLetters, Letter};
use crate::config::Settings;

#[derive(Debug, clap::Subcommand)]
pub enum Action {
    /// A table of letters: id, order_id, reason, deliveries, age.
    List {
        /// At most this many, oldest first.
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Every field of one letter.
    Show { id: String },
    /// Put letters back into the orders stream (their order_id kept).
    Requeue {
        /// The letter to requeue.
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        id: Option<String>,
        /// Requeue every letter.
        #[arg(long)]
        all: bool,
    },
    /// Delete every letter.
    Purge {
        /// Confirm the deletion.
        #[arg(long)]
        yes: bool,
    },
}

pub async fn run(action: Action, settings: &Settings) -> anyhow::Result<ExitCode> {
    let pool = crate::app::redis_pool(settings, 2)?;
    let letters = DeadLetters::new(pool, crate::app::topology(&settings.streams.topology));
    match action {
        Action::List { limit } => {
            let now = chrono::Utc::now().timestamp();
            println!(
                "{:<22} {:<36} {:>10} {:>8}  reason",
                "id", "order_id", "deliveries", "age"
            );
            for letter in letters.list(limit).await? {
                let age = letter
                    .field("dlq_failed_at")
                    .and_then(|t| t.parse::<i64>().ok())
                    .map(|t| now - t);
                println!(
                    "{:<22} {:<36} {:>10} {:>8}  {}",
                    letter.id,
                    shorten(&letter.field("dlq_order_id").unwrap_or_default(), 36),
                    letter.field("dlq_deliveries").unwrap_or_default(),
                    age.map(human_age).unwrap_or_default(),
                    shorten(&letter.field("dlq_reason").unwrap_or_default(), 100),
                );
            }
        }
        Action::Show { id } => {
            let letter = letters
                .get(&id)
                .await?
                .with_context(|| format!("no dead letter with id {id}"))?;
            println!("id: {}", letter.id);
            for (name, value) in &letter.fields {
                println!(
                    "{}: {}",
                    String::from_utf8_lossy(name),
                    String::from_utf8_lossy(value)
                );
            }
        }
        Action::Requeue { id, all } => {
            let chosen: Vec<Letter> = if all {
                letters.all().await?
            } else {
                let id = id.context("name a letter or pass --all")?;
                vec![
                    letters
                        .get(&id)
                        .await?
                        .with_context(|| format!("no dead letter with id {id}"))?,
                ]
            };
            let requeued = letters.requeue(&chosen).await?;
            for (letter, new_id) in chosen.iter().zip(&requeued) {
                println!("requeued {} as {new_id}", letter.id);
            }
            tracing::info!(count = requeued.len(), "dead letters requeued");
        }
        Action::Purge { yes } => {
            if !yes {
                eprintln!("purge deletes every dead letter; run again with --yes to confirm");
                return Ok(ExitCode::FAILURE);
            }
            println!("purged {} dead letters", letters.purge().await?);
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn shorten(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let head: String = text.chars().take(max.saturating_sub(1)).collect();
    format!("{head}…")
}

fn human_age(seconds: i64) -> String {
    match seconds {
        s if s < 120 => format!("{s}s"),
        s if s < 7_200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3_600),
        s => format!("{}d", s / 86_400),
    }
}
