//! The HTTP API: health, readiness, status, Prometheus metrics and recent
//! orders, documented with OpenAPI and explorable in Swagger UI at `/docs`.
//!
//! Handlers read through the store, the bus probe and the statistics; they
//! never touch streams themselves. Whatever no handler answers (an unknown
//! path, a method other than GET or HEAD, a path that does not decode)
//! gets the same JSON error body as the handlers' errors, never a 500.

mod api;
mod examples;
mod schema;

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use poem::error::ParsePathError;
use poem::http::{StatusCode, header};
use poem::listener::Acceptor;
use poem::web::Json;
use poem::{Endpoint, EndpointExt, IntoResponse, Route, Server};
use poem_openapi::OpenApiService;
use tokio_util::sync::CancellationToken;

use crate::bus::{Probe, Topology};
use crate::domain::TradingMode;
use crate::stats::Stats;
use crate::store::Store;

pub use schema::ApiError;

/// What the handlers need.
#[derive(Clone)]
pub struct ApiContext {
    pub store: Store,
    pub probe: Probe,
    pub stats: Arc<Stats>,
    pub topology: Topology,
    pub mode: TradingMode,
    pub dry_run: bool,
    pub started_at: DateTime<Utc>,
    pub started: Instant,
    /// How recent the worker's last read must be for `/ready`.
    pub read_freshness: Duration,
}

impl ApiContext {
    fn uptime(&self) -> Duration {
        self.started.elapsed()
    }
}

fn service(ctx: ApiContext) -> OpenApiService<api::Api, ()> {
    OpenApiService::new(api::Api(ctx), "execution-service", env!("CARGO_PKG_VERSION")).description(
        "Executes approved orders exactly once and reports on them. Amounts are strings holding exact \
         decimals with 8 decimal places.",
    )
}

/// The OpenAPI document the code describes (`openapi/openapi.json`).
/// Building it connects to nothing.
pub async fn spec() -> anyhow::Result<String> {
    let ctx = ApiContext {
        store: Store::connect_lazy("postgres://127.0.0.1/unused", 1).await?,
        probe: Probe::new(
            crate::bus::pool("redis://127.0.0.1/", 1)?,
            Topology::default(),
        ),
        stats: Arc::new(Stats::new()),
        topology: Topology::default(),
        mode: TradingMode::Paper,
        dry_run: true,
        started_at: Utc::now(),
        started: Instant::now(),
        read_freshness: Duration::ZERO,
    };
    Ok(service(ctx).spec())
}

/// Every route: the API, `/openapi.json` and Swagger UI at `/docs`.
pub fn routes(ctx: ApiContext) -> impl Endpoint {
    let api = service(ctx);
    Route::new()
        .nest("/docs", poem::get(api.swagger_ui()))
        .at("/openapi.json", poem::get(api.spec_endpoint()))
        .nest("/", api)
        .catch_all_error(|err| async move { error_response(&err) })
        .with(poem::middleware::Tracing)
}

/// The JSON error body for a request no handler answered: an unknown path,
/// a method other than GET or HEAD, a path that does not decode.
fn error_response(err: &poem::Error) -> poem::Response {
    let status = err.status();
    let error = match status {
        StatusCode::NOT_FOUND => ApiError::new("not_found", "no such path"),
        StatusCode::METHOD_NOT_ALLOWED => {
            ApiError::new("method_not_allowed", "only GET and HEAD are served here")
        }
        StatusCode::BAD_REQUEST if err.is::<ParsePathError>() => {
            ApiError::new("bad_request", "the path is not valid percent-encoded UTF-8")
        }
        StatusCode::SERVICE_UNAVAILABLE => ApiError::new("unavailable", err.to_string()),
        _ => ApiError::new(&error_code(status), err.to_string()),
    };
    let body = serde_json::json!({"error": error.error, "message": error.message});
    let response = Json(body).with_status(status);
    if status == StatusCode::METHOD_NOT_ALLOWED {
        // Every path serves GET alone (HEAD through it); the OpenAPI test
        // checks that no other operation is documented.
        response
            .with_header(header::ALLOW, "GET, HEAD")
            .into_response()
    } else {
        response.into_response()
    }
}

/// `bad_request` for 400, `payload_too_large` for 413, and so on.
fn error_code(status: StatusCode) -> String {
    status
        .canonical_reason()
        .unwrap_or("error")
        .to_ascii_lowercase()
        .replace([' ', '-'], "_")
}

/// Serves until `cancel` fires, then drains open requests for up to 5 s.
pub async fn serve(
    acceptor: impl Acceptor + 'static,
    ctx: ApiContext,
    cancel: CancellationToken,
) -> std::io::Result<()> {
    Server::new_with_acceptor(acceptor)
        .run_with_graceful_shutdown(
            routes(ctx),
            cancel.cancelled_owned(),
            Some(Duration::from_secs(5)),
        )
        .await
}
