//! Logs and traces: a `tracing` subscriber filtered by `LOG_LEVEL` (or
//! `RUST_LOG`), printing text or one JSON object per line, and, when
//! `OTEL_EXPORTER_OTLP_ENDPOINT` is set, exporting spans over OTLP: HTTP
//! (`http/protobuf`, `http/json`) or gRPC (`grpc`, through tonic on the
//! service's Tokio runtime).
//!
//! The exporter honours the standard `OTEL_*` variables (protocol, headers,
//! timeout, sampler, resource attributes); without an endpoint no exporter
//! exists and spans cost what plain `tracing` spans cost.

use opentelemetry::KeyValue;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::SpanExporter;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::config::{OtlpProtocol, TelemetrySettings};

/// Holds the exporter until shutdown, when it flushes what is buffered.
#[must_use = "call shutdown() to flush the last spans"]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

/// Installs the global subscriber. `instance` becomes `service.instance.id`.
pub fn init(settings: &TelemetrySettings, instance: &str) -> anyhow::Result<Telemetry> {
    let filter = EnvFilter::try_new(&settings.log_level).unwrap_or_else(|_| EnvFilter::new("info"));
    let provider = match &settings.otlp {
        Some((_, protocol)) => Some(tracer_provider(settings, *protocol, instance)?),
        None => None,
    };
    let traces = provider.as_ref().map(|provider| {
        tracing_opentelemetry::layer().with_tracer(provider.tracer("execution-service"))
    });
    let (text, json) = if settings.json_logs {
        let json = tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .with_writer(std::io::stderr);
        (None, Some(json))
    } else {
        (
            Some(
                tracing_subscriber::fmt::layer()
                    .with_writer(std::io::stderr)
                    // Colour only for a person at a terminal: a file or a
                    // pipe gets plain text.
                    .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())),
            ),
            None,
        )
    };
    // A second initialisation (tests building several apps) keeps the first.
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(text)
        .with(json)
        .with(traces)
        .try_init();
    Ok(Telemetry { provider })
}

fn tracer_provider(
    settings: &TelemetrySettings,
    protocol: OtlpProtocol,
    instance: &str,
) -> anyhow::Result<SdkTracerProvider> {
    // Endpoint, protocol, headers and timeout come from the OTEL_* variables.
    let exporter = match protocol {
        OtlpProtocol::Http => SpanExporter::builder().with_http().build()?,
        // Built inside the runtime, whose handle the gRPC channel keeps.
        OtlpProtocol::Grpc => SpanExporter::builder().with_tonic().build()?,
    };
    let resource = Resource::builder()
        .with_service_name(settings.service_name.clone())
        .with_attributes([
            KeyValue::new("service.version", env!("CARGO_PKG_VERSION")),
            KeyValue::new("service.instance.id", instance.to_owned()),
        ])
        .build();
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource)
        .build())
}

impl Telemetry {
    /// Exports every finished span still buffered, then stops the exporter.
    pub fn shutdown(self) {
        if let Some(provider) = self.provider
            && let Err(err) = provider.shutdown()
        {
            tracing::warn!(error = %err, "flushing traces failed");
        }
    }
}
