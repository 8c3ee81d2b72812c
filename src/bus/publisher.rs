//! Announces results on `RESULTS_CHANNEL` and `RESULTS_STREAM`, and parks
//! dead letters on `DLQ_STREAM`, all of one batch in one pipeline.

use deadpool_redis::Pool;

use super::{BusError, FailureNote, Topology};
use crate::domain::ExecutionResult;

/// A message that cannot be processed, with everything needed to look at
/// it or requeue it later.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetter {
    pub original_id: String,
    pub order_id: Option<String>,
    pub reason: String,
    pub deliveries: u64,
    /// The entry's fields exactly as they arrived.
    pub fields: Vec<(String, Vec<u8>)>,
    /// Errors recorded on earlier deliveries, if any.
    pub failures: FailureNote,
}

#[derive(Clone)]
pub struct Publisher {
    pool: Pool,
    topology: Topology,
}

impl Publisher {
    pub fn new(pool: Pool, topology: Topology) -> Self {
        Publisher { pool, topology }
    }

    #[tracing::instrument(name = "redis.publish_results", skip_all, fields(results = results.len(), dead_letters = dead.len()), err)]
    pub async fn publish(
        &self,
        results: &[ExecutionResult],
        dead: &[DeadLetter],
    ) -> Result<(), BusError> {
        if results.is_empty() && dead.is_empty() {
            return Ok(());
        }
        let topology = &self.topology;
        let mut pipe = redis::pipe();
        for result in results {
            pipe.cmd("PUBLISH")
                .arg(&topology.results_channel)
                .arg(result.to_json())
                .ignore();
            let xadd = capped_xadd(&mut pipe, &topology.results_stream, topology.stream_maxlen);
            for (name, value) in result.to_fields() {
                xadd.arg(name).arg(value);
            }
            xadd.ignore();
        }
        let failed_at = chrono::Utc::now().timestamp().to_string();
        for letter in dead {
            let xadd = capped_xadd(&mut pipe, &topology.dlq_stream, topology.stream_maxlen);
            xadd.arg("dlq_original_id").arg(&letter.original_id);
            xadd.arg("dlq_order_id")
                .arg(letter.order_id.as_deref().unwrap_or(""));
            xadd.arg("dlq_reason").arg(&letter.reason);
            xadd.arg("dlq_deliveries").arg(letter.deliveries);
            xadd.arg("dlq_source_stream").arg(&topology.orders_stream);
            xadd.arg("dlq_failed_at").arg(&failed_at);
            if let Some(first) = &letter.failures.first_error {
                xadd.arg("dlq_first_error").arg(first);
            }
            if let Some(last) = &letter.failures.last_error {
                xadd.arg("dlq_last_error").arg(last);
            }
            for (name, value) in &letter.fields {
                xadd.arg(name).arg(value.as_slice());
            }
            xadd.ignore();
            if letter.failures.first_error.is_some() {
                let (first, last) = FailureNote::fields(&letter.original_id);
                pipe.cmd("HDEL")
                    .arg(topology.failures_key())
                    .arg(first)
                    .arg(last)
                    .ignore();
            }
        }
        let mut conn = self.pool.get().await?;
        let () = pipe.query_async(&mut conn).await?;
        Ok(())
    }
}

/// Starts `XADD <stream> MAXLEN ~ <maxlen> *` on the pipeline; the caller
/// adds the fields.
fn capped_xadd<'a>(
    pipe: &'a mut redis::Pipeline,
    stream: &str,
    maxlen: u64,
) -> &'a mut redis::Pipeline {
    pipe.cmd("XADD")
        .arg(stream)
        .arg("MAXLEN")
        .arg("~")
        .arg(maxlen)
        .arg("*")
}
