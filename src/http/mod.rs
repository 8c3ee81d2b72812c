//! The HTTP API: health, readiness, status, Prometheus metrics and recent
//! orders, documented with OpenAPI and explorable in Swagger UI at `/docs`.
//!
//! Handlers read through the store, the bus probe and the statistics; they
//! never touch streams themselves. Whatever no handler answers (an unknown
//! path, a method other than GET or HEAD, a path that does not decode)
//! gets the same JSON error body as the handlers' errors, never a 500.

mod api;
mod examples;
mod halt_schema;
mod halts;
mod live_status;
mod responses;
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
use secrecy::SecretString;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::bus::{Probe, Topology};
use crate::domain::TradingMode;
use crate::kill_switch::KillSwitch;
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
    /// The halts in force, and how to set and lift them.
    pub kill_switch: KillSwitch,
    /// The bearer token of the write endpoints of `/halts`.
    pub admin_token: Option<SecretString>,
    /// The live path's circuit breaker, when real orders are enabled (its
    /// counters are in `stats`).
    pub breaker: Option<crate::live::BreakerView>,
}

impl ApiContext {
    fn uptime(&self) -> Duration {
        self.started.elapsed()
    }
}

fn service(ctx: ApiContext) -> OpenApiService<(api::Api, halts::HaltsApi), ()> {
    let apis = (api::Api(ctx.clone()), halts::HaltsApi(ctx));
    OpenApiService::new(apis, "execution-service", env!("CARGO_PKG_VERSION")).description(
        "Executes approved orders exactly once and reports on them. Amounts are strings holding exact \
         decimals with 8 decimal places.",
    )
}

/// The OpenAPI document the code describes (`openapi/openapi.json`).
/// Building it connects to nothing.
pub async fn spec() -> anyhow::Result<String> {
    let store = Store::connect_lazy("postgres://127.0.0.1/unused", 1).await?;
    let pool = crate::bus::pool("redis://127.0.0.1/", 1)?;
    let stats = Arc::new(Stats::new());
    let kill_switch = KillSwitch::new(
        store.clone(),
        pool.clone(),
        Topology::default(),
        String::new(),
        stats.clone(),
    );
    let ctx = ApiContext {
        store,
        probe: Probe::new(pool, Topology::default()),
        stats,
        topology: Topology::default(),
        mode: TradingMode::Paper,
        dry_run: true,
        started_at: Utc::now(),
        started: Instant::now(),
        read_freshness: Duration::ZERO,
        kill_switch,
        breaker: None,
        admin_token: None,
    };
    Ok(service(ctx).spec())
}

/// Every route: the API, `/openapi.json` and Swagger UI at `/docs`.
pub fn routes(ctx: ApiContext) -> impl Endpoint {
    let admin_token = halts::AdminToken(ctx.admin_token.clone());
    let writes_on = admin_token.0.is_some();
    let api = service(ctx);
    Route::new()
        .nest("/docs", poem::get(api.swagger_ui()))
        .at("/openapi.json", poem::get(api.spec_endpoint()))
        .nest("/", api)
        .data(admin_token)
        .around(move |endpoint, request| async move {
            let path = request.uri().path().to_owned();
            match endpoint.call(request).await {
                // No token is configured: a write without one is not a
                // matter of the right token, writes are off.
                Ok(response) if response.status() == StatusCode::UNAUTHORIZED && !writes_on => {
                    Ok(forbidden())
                }
                Ok(response) => Ok(response.into_response()),
                Err(err) => Ok(error_response(&err, &path, writes_on)),
            }
        })
        .around(access_log)
}

/// The access log: method, path, status and time of every request, and
/// never its query string (a token sent as `?access_token=…` by mistake
/// stays out of the logs) nor its headers.
async fn access_log<E: Endpoint>(
    endpoint: Arc<E>,
    request: poem::Request,
) -> poem::Result<poem::Response> {
    let span = tracing::info_span!(
        "request",
        method = %request.method(),
        path = %request.original_uri().path(),
        remote_addr = %request.remote_addr(),
    );
    async move {
        let started = std::time::Instant::now();
        let response = endpoint
            .call(request)
            .await
            .map(IntoResponse::into_response);
        let duration_ms = started.elapsed().as_secs_f64() * 1000.0;
        match &response {
            Ok(response) => {
                tracing::info!(status = response.status().as_u16(), duration_ms, "response");
            }
            Err(err) => {
                tracing::info!(status = err.status().as_u16(), duration_ms, error = %err, "response");
            }
        }
        response
    }
    .instrument(span)
    .await
}

fn forbidden() -> poem::Response {
    let error = ApiError::new("forbidden", halts::AdminRefusal::NotConfigured.to_string());
    Json(serde_json::json!({"error": error.error, "message": error.message}))
        .with_status(StatusCode::FORBIDDEN)
        .into_response()
}

/// The methods a path serves, for `Allow`.
fn allowed_methods(path: &str) -> &'static str {
    match path.trim_end_matches('/') {
        "/halts" => "GET, HEAD, POST",
        "/halts/resume-all" => "POST",
        halt if halt.starts_with("/halts/") => "DELETE",
        _ => "GET, HEAD",
    }
}

/// The JSON error body for a request no handler answered: an unknown path,
/// a method the path does not serve, a path that does not decode, a write
/// without the admin token.
fn error_response(err: &poem::Error, path: &str, writes_on: bool) -> poem::Response {
    let status = err.status();
    if status == StatusCode::UNAUTHORIZED && !writes_on {
        return forbidden();
    }
    let allowed = allowed_methods(path);
    let error = match status {
        StatusCode::NOT_FOUND => ApiError::new("not_found", "no such path"),
        StatusCode::METHOD_NOT_ALLOWED => {
            ApiError::new("method_not_allowed", format!("{path} serves {allowed}"))
        }
        StatusCode::FORBIDDEN => {
            ApiError::new("forbidden", halts::AdminRefusal::NotConfigured.to_string())
        }
        StatusCode::UNAUTHORIZED => {
            ApiError::new("unauthorized", halts::AdminRefusal::WrongToken.to_string())
        }
        StatusCode::BAD_REQUEST if err.is::<ParsePathError>() => {
            ApiError::new("bad_request", "the path is not valid percent-encoded UTF-8")
        }
        StatusCode::SERVICE_UNAVAILABLE => ApiError::new("unavailable", err.to_string()),
        _ => ApiError::new(&error_code(status), err.to_string()),
    };
    let body = serde_json::json!({"error": error.error, "message": error.message});
    let response = Json(body).with_status(status);
    match status {
        // The OpenAPI test checks these against the documented operations.
        StatusCode::METHOD_NOT_ALLOWED => {
            response.with_header(header::ALLOW, allowed).into_response()
        }
        StatusCode::UNAUTHORIZED => response
            .with_header(header::WWW_AUTHENTICATE, halts::BEARER_CHALLENGE)
            .into_response(),
        _ => response.into_response(),
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
