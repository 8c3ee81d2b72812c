//! What `publish` and `bench` share: sending orders the way a Risk Manager
//! does, and listening for their results.

use anyhow::Context;
use futures_util::{Stream, StreamExt};
use redis::aio::MultiplexedConnection;

use crate::config::Settings;
use crate::domain::ExecutionResult;

/// Which way orders go in.
#[derive(Debug, Clone, Copy, Default, clap::ValueEnum)]
pub enum Via {
    /// PUBLISH on ORDERS_CHANNEL (mirrored by the shim).
    #[default]
    Channel,
    /// XADD to ORDERS_STREAM directly.
    Stream,
}

pub struct OrderClient {
    conn: MultiplexedConnection,
    client: redis::Client,
    settings: Settings,
}

impl OrderClient {
    pub async fn connect(settings: &Settings) -> anyhow::Result<Self> {
        // With Sentinels: the primary they name now.
        let client = crate::app::redis_target(settings)?
            .client()
            .await
            .context("finding the Redis primary")?;
        let conn = client
            .get_multiplexed_async_connection()
            .await
            .context("connecting to Redis")?;
        Ok(OrderClient {
            conn,
            client,
            settings: settings.clone(),
        })
    }

    /// Results as they are announced on RESULTS_CHANNEL. Subscribe before
    /// sending: pub/sub keeps nothing for late listeners.
    pub async fn results(&self) -> anyhow::Result<impl Stream<Item = ExecutionResult> + use<>> {
        let mut pubsub = self
            .client
            .get_async_pubsub()
            .await
            .context("subscribing for results")?;
        pubsub
            .subscribe(&self.settings.streams.topology.results_channel)
            .await?;
        Ok(pubsub.into_on_message().filter_map(|msg| async move {
            ExecutionResult::from_json(msg.get_payload_bytes()).ok()
        }))
    }

    /// Sends JSON orders in one pipeline; returns how many channel
    /// subscribers received each (0 when no shim listens), or 1 per XADD.
    pub async fn send(&mut self, via: Via, orders: &[String]) -> anyhow::Result<Vec<u64>> {
        let topology = &self.settings.streams.topology;
        let mut pipe = redis::pipe();
        for order in orders {
            match via {
                Via::Channel => pipe.cmd("PUBLISH").arg(&topology.orders_channel).arg(order),
                Via::Stream => pipe
                    .cmd("XADD")
                    .arg(&topology.orders_stream)
                    .arg("*")
                    .arg("payload")
                    .arg(order),
            };
        }
        let replies: Vec<redis::Value> = pipe
            .query_async(&mut self.conn)
            .await
            .context("sending orders")?;
        Ok(replies
            .into_iter()
            .map(|reply| match reply {
                redis::Value::Int(receivers) => receivers.max(0) as u64,
                _ => 1,
            })
            .collect())
    }
}
