//! The operations. Each handler extracts, asks the store, the bus probe or
//! the statistics, and maps the answer to its documented response.

use std::time::Duration;

use poem_openapi::param::{Path, Query};
use poem_openapi::payload::{Json, PlainText};
use poem_openapi::{ApiResponse, OpenApi, Tags};

use super::ApiContext;
use super::live_status::live_status;
use super::responses::{Listed, Lookup};
use super::schema::{
    ActiveHalt, ApiError, ConsumerInfo, DatabaseStats, Health, OrderDetail, OrderHistory,
    OrderPage, OrderView, Readiness, Statistics, Status, StatusFilter, StreamInfo,
};
use crate::store::OrderQuery;

/// How long a live check may take before it counts as failed.
const CHECK_TIMEOUT: Duration = Duration::from_millis(1_000);

#[derive(Tags)]
enum Tag {
    /// Liveness, readiness, status and metrics.
    Service,
    /// Orders and their fills, from Postgres.
    Orders,
}

pub struct Api(pub ApiContext);

#[derive(ApiResponse)]
enum HealthResponse {
    /// The process is up (whatever the state of Redis and Postgres).
    #[oai(status = 200)]
    Ok(Json<Health>),
}

#[derive(ApiResponse)]
enum ReadyResponse {
    /// Redis and Postgres answer and the consumer group is being read.
    #[oai(status = 200)]
    Ready(Json<Readiness>),
    /// A part is failing; `failing` names it.
    #[oai(status = 503)]
    Unavailable(Json<Readiness>),
}

#[derive(ApiResponse)]
enum StatusResponse {
    #[oai(status = 200)]
    Ok(Json<Status>),
}

#[derive(ApiResponse)]
enum MetricsResponse {
    /// Prometheus text exposition format 0.0.4.
    #[oai(
        status = 200,
        content_type = "text/plain; version=0.0.4; charset=utf-8"
    )]
    Ok(PlainText<String>),
}

type ListResponse = Listed<OrderPage>;
type OrderResponse = Lookup<OrderDetail>;
type HistoryResponse = Lookup<OrderHistory>;

/// Runs a check, counting a timeout as a failure.
async fn within<T, E>(check: impl Future<Output = Result<T, E>>) -> Option<T> {
    tokio::time::timeout(CHECK_TIMEOUT, check)
        .await
        .ok()
        .and_then(Result::ok)
}

#[OpenApi]
impl Api {
    /// Liveness
    ///
    /// Answers 200 as long as the process runs, even when Redis or Postgres
    /// is down.
    #[oai(path = "/health", method = "get", tag = "Tag::Service")]
    async fn health(&self) -> HealthResponse {
        HealthResponse::Ok(Json(Health {
            status: "ok".into(),
            service: "execution".into(),
            version: env!("CARGO_PKG_VERSION").into(),
        }))
    }

    /// Readiness
    ///
    /// 200 when Redis and Postgres answer, the worker has read the orders
    /// stream recently and the kill-switch stream was read within 3 s (a
    /// replica that cannot learn of a halt takes no order); 503 naming the
    /// failing parts otherwise.
    #[oai(path = "/ready", method = "get", tag = "Tag::Service")]
    async fn ready(&self) -> ReadyResponse {
        let readiness = readiness(&self.0).await;
        if readiness.failing.is_empty() {
            ReadyResponse::Ready(Json(readiness))
        } else {
            ReadyResponse::Unavailable(Json(readiness))
        }
    }

    /// Status
    ///
    /// Counters, stored totals, the consumer group and the stream. Each live
    /// check gives up after one second.
    #[oai(path = "/status", method = "get", tag = "Tag::Service")]
    async fn status(&self) -> StatusResponse {
        let ctx = &self.0;
        // All checks at once: the answer takes at most one timeout.
        let (stream, counts, redis_ping, postgres_ping, (in_flight, orphans)) = tokio::join!(
            within(ctx.probe.stream_stats()),
            within(ctx.store.order_counts()),
            within(ctx.probe.ping()),
            within(ctx.store.ping()),
            async {
                match ctx.breaker {
                    Some(_) => tokio::join!(
                        within(ctx.store.live_in_flight()),
                        within(ctx.store.count_orphans())
                    ),
                    None => (None, None),
                }
            },
        );
        let redis_connected = stream.is_some() || redis_ping.is_some();
        let database_connected = counts.is_some() || postgres_ping.is_some();
        let stats = &ctx.stats;
        StatusResponse::Ok(Json(Status {
            service: "execution".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            mode: ctx.mode.as_str().into(),
            dry_run: ctx.dry_run,
            uptime_seconds: ctx.uptime().as_secs() as i64,
            start_time: ctx.started_at.to_rfc3339(),
            redis_connected,
            database_connected,
            statistics: Statistics {
                orders_received: stats.received.get(),
                orders_filled: stats.filled.get(),
                orders_rejected: stats.rejected.get(),
            },
            database_stats: counts.map(|c| DatabaseStats {
                total_orders: c.total,
                filled_orders: c.filled,
                rejected_orders: c.rejected,
            }),
            consumer: ConsumerInfo {
                group: ctx.topology.group.clone(),
                name: ctx.topology.consumer.clone(),
            },
            stream: stream.map(|s| StreamInfo {
                length: s.length,
                pending: s.pending,
                lag: s.lag,
                backlog: s.backlog,
                dlq_length: s.dlq_length,
            }),
            halts: ctx
                .kill_switch
                .board()
                .snapshot()
                .iter()
                .map(ActiveHalt::from)
                .collect(),
            live: ctx
                .breaker
                .as_ref()
                .map(|breaker| live_status(breaker, stats, in_flight, orphans)),
        }))
    }

    /// Prometheus metrics
    ///
    /// Counters of received, filled, rejected, dead-lettered and redelivered
    /// orders; histograms of batch size and of each stage's duration; gauges
    /// of stream length, pending entries, consumer lag, backlog and uptime.
    #[oai(path = "/metrics", method = "get", tag = "Tag::Service")]
    async fn metrics(&self) -> MetricsResponse {
        let ctx = &self.0;
        let stats = &ctx.stats;
        stats.uptime_seconds.set(ctx.uptime().as_secs() as i64);
        // All three at once: the answer takes at most one timeout.
        let (stream, ready, in_flight) =
            tokio::join!(within(ctx.probe.stream_stats()), readiness(ctx), async {
                match ctx.breaker {
                    Some(_) => within(ctx.store.live_in_flight()).await,
                    None => None,
                }
            },);
        if let Some(stream) = stream {
            stats.stream_length.set(stream.length as i64);
            stats.pending.set(stream.pending as i64);
            stats.lag.set(stream.lag as i64);
            stats.backlog.set(stream.backlog as i64);
            stats.dlq_length.set(stream.dlq_length as i64);
            stats
                .oldest_pending_seconds
                .set((stream.oldest_pending_ms / 1000) as i64);
        }
        for (check, passes) in ready.checks() {
            stats
                .ready
                .with_label_values(&[check])
                .set(i64::from(passes));
        }
        if let Some(in_flight) = in_flight {
            stats.live.set_in_flight(&in_flight);
        }
        MetricsResponse::Ok(PlainText(stats.render()))
    }

    /// Recent orders
    ///
    /// The most recent orders, newest first. Page with `before`: pass the
    /// `next_before` of the previous page.
    #[oai(path = "/orders", method = "get", tag = "Tag::Orders")]
    async fn orders(
        &self,
        /// How many orders to return (1..=500).
        #[oai(
            default = "default_limit",
            validator(minimum(value = "1"), maximum(value = "500"))
        )]
        limit: Query<u64>,
        /// Only orders in this state.
        status: Query<Option<StatusFilter>>,
        /// Only orders for this symbol, as sent (e.g. `BTCUSDT`).
        #[oai(validator(min_length = 1, max_length = 64))]
        symbol: Query<Option<String>>,
        /// Only orders older than this cursor.
        #[oai(validator(minimum(value = "1")))]
        before: Query<Option<i64>>,
    ) -> ListResponse {
        if symbol.0.as_deref().is_some_and(|s| !storable(s)) {
            return Listed::Ok(Json(OrderPage {
                orders: Vec::new(),
                next_before: None,
            }));
        }
        let query = OrderQuery {
            limit: limit.0,
            status: status.0.map(Into::into),
            symbol: symbol.0.map(|s| s.to_ascii_uppercase()),
            before: before.0,
        };
        match within(self.0.store.recent_orders(&query)).await {
            Some(rows) => {
                let next_before = (rows.len() as u64 == query.limit)
                    .then(|| rows.last().map(|r| r.id))
                    .flatten();
                Listed::Ok(Json(OrderPage {
                    orders: rows.iter().map(OrderView::from).collect(),
                    next_before,
                }))
            }
            None => Listed::Unavailable(Json(ApiError::new(
                "unavailable",
                "Postgres does not answer",
            ))),
        }
    }

    /// One order
    ///
    /// An order with its fills.
    #[oai(path = "/orders/:order_id", method = "get", tag = "Tag::Orders")]
    async fn order(
        &self,
        /// The order's `order_id`.
        #[oai(validator(min_length = 1, max_length = 255))]
        order_id: Path<String>,
    ) -> OrderResponse {
        if !storable(&order_id.0) {
            return Lookup::NotFound(no_such_order(&order_id.0));
        }
        match within(self.0.store.order_with_trades(&order_id.0)).await {
            Some(Some((order, fills))) => Lookup::Ok(Json(Box::new(OrderDetail {
                order: OrderView::from(&order),
                trades: fills.iter().map(Into::into).collect(),
            }))),
            Some(None) => Lookup::NotFound(no_such_order(&order_id.0)),
            None => Lookup::Unavailable(Json(ApiError::new(
                "unavailable",
                "Postgres does not answer",
            ))),
        }
    }

    /// One order's history
    ///
    /// Every recorded change of a live order's state, oldest first: what
    /// caused it, its evidence, which replica recorded it and when. The
    /// stored status is always the last event's.
    #[oai(path = "/orders/:order_id/events", method = "get", tag = "Tag::Orders")]
    async fn order_events(
        &self,
        /// The order's `order_id`.
        #[oai(validator(min_length = 1, max_length = 255))]
        order_id: Path<String>,
    ) -> HistoryResponse {
        if !storable(&order_id.0) {
            return Lookup::NotFound(no_such_order(&order_id.0));
        }
        match within(self.0.store.order_history(&order_id.0)).await {
            Some(Some((order, events))) => Lookup::Ok(Json(Box::new(OrderHistory {
                order_id: order.order_id,
                status: order.status.to_string(),
                seq: order.state_seq,
                events: events.iter().map(Into::into).collect(),
            }))),
            Some(None) => Lookup::NotFound(no_such_order(&order_id.0)),
            None => Lookup::Unavailable(Json(ApiError::new(
                "unavailable",
                "Postgres does not answer",
            ))),
        }
    }
}

/// The 404 answer for an order id nobody stored.
fn no_such_order(order_id: &str) -> Json<ApiError> {
    Json(ApiError::new(
        "not_found",
        format!("no order with order_id {order_id:?}"),
    ))
}

/// Whether a stored text column could hold `text`. Postgres text cannot
/// hold NUL, so no order has one in its id or symbol, and a statement
/// given one fails instead of finding nothing.
fn storable(text: &str) -> bool {
    !text.contains('\0')
}

fn default_limit() -> u64 {
    20
}

/// The readiness checks, all at once (each gives up after one second).
async fn readiness(ctx: &ApiContext) -> Readiness {
    let (redis, postgres) = tokio::join!(within(ctx.probe.ping()), within(ctx.store.ping()));
    let consumer = ctx
        .stats
        .since_last_read()
        .is_some_and(|since| since <= ctx.read_freshness);
    let exchange = ctx.breaker.as_ref().map(|breaker| !breaker.blocks());
    let kill_switch = ctx.kill_switch.board().is_current();
    let mut readiness = Readiness {
        status: String::new(),
        redis: redis.is_some(),
        postgres: postgres.is_some(),
        consumer,
        exchange,
        kill_switch,
        failing: Vec::new(),
    };
    readiness.failing = readiness
        .checks()
        .filter(|(_, passes)| !passes)
        .map(|(name, _)| name.to_owned())
        .collect();
    readiness.status = if readiness.failing.is_empty() {
        "ready"
    } else {
        "unavailable"
    }
    .into();
    readiness
}
