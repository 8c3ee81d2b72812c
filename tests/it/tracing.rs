//! Traces: an order sent with a known `traceparent` is traced across the
//! shim, the worker and the result, exported over OTLP/HTTP or OTLP/gRPC
//! to a receiver the test runs (decoding the protobuf with the
//! OpenTelemetry types).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures_util::StreamExt;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use poem::listener::{Acceptor, Listener, TcpListener};
use poem::web::Data;
use poem::{EndpointExt, Route, Server, handler, post};
use prost::Message;

use execution_service::domain::ExecutionResult;

use crate::chaos::harness::Cluster;
use crate::helpers::{DEADLINE, TestEnv, free_port};

#[derive(Debug, Clone)]
struct ReceivedSpan {
    name: String,
    trace_id: String,
    span_id: String,
    parent_span_id: String,
    attributes: HashMap<String, String>,
    resource: HashMap<String, String>,
}

type Received = Arc<Mutex<Vec<ReceivedSpan>>>;

fn text(value: &Option<AnyValue>) -> String {
    match value.as_ref().and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}

fn attributes(list: &[KeyValue]) -> HashMap<String, String> {
    list.iter()
        .map(|kv| (kv.key.clone(), text(&kv.value)))
        .collect()
}

#[handler]
fn receive(body: Vec<u8>, received: Data<&Received>) -> poem::Response {
    let request = ExportTraceServiceRequest::decode(body.as_slice()).expect("an OTLP trace export");
    record(request, &received);
    poem::Response::builder()
        .content_type("application/x-protobuf")
        .body(Vec::<u8>::new())
}

/// Keeps the spans of one export.
fn record(request: ExportTraceServiceRequest, received: &Received) {
    let mut spans = received.lock().expect("receiver lock");
    for resource_spans in request.resource_spans {
        let resource = attributes(
            &resource_spans
                .resource
                .map(|r| r.attributes)
                .unwrap_or_default(),
        );
        for scope in resource_spans.scope_spans {
            for span in scope.spans {
                spans.push(ReceivedSpan {
                    name: span.name,
                    trace_id: hex::encode(span.trace_id),
                    span_id: hex::encode(span.span_id),
                    parent_span_id: hex::encode(span.parent_span_id),
                    attributes: attributes(&span.attributes),
                    resource: resource.clone(),
                });
            }
        }
    }
}

/// An OTLP/gRPC trace receiver.
struct GrpcReceiver(Received);

#[tonic::async_trait]
impl TraceService for GrpcReceiver {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        record(request.into_inner(), &self.0);
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

/// An OTLP/gRPC trace receiver on a free port, answering once it listens.
async fn start_grpc_receiver() -> (String, Received) {
    let port = free_port();
    let received: Received = Arc::default();
    let service = TraceServiceServer::new(GrpcReceiver(received.clone()));
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(service)
            .serve(([127, 0, 0, 1], port).into()),
    );
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the gRPC receiver did not start"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    (format!("http://127.0.0.1:{port}"), received)
}

/// An OTLP/HTTP trace receiver on a free port.
async fn start_receiver() -> (String, Received) {
    let acceptor = TcpListener::bind("127.0.0.1:0")
        .into_acceptor()
        .await
        .expect("bind the receiver");
    let port = acceptor.local_addr()[0]
        .as_socket_addr()
        .expect("an address")
        .port();
    let received: Received = Arc::default();
    let app = Route::new()
        .at("/v1/traces", post(receive))
        .data(received.clone());
    tokio::spawn(Server::new_with_acceptor(acceptor).run(app));
    (format!("http://127.0.0.1:{port}"), received)
}

/// Starts a replica with `settings`, publishes one order carrying
/// `traceparent` 00-`trace_id`-`producer_span`-01, and returns the replica
/// and the order's result.
async fn traced_order<'a>(
    env: &'a TestEnv,
    settings: &[(&str, &str)],
    order_id: &str,
    trace_id: &str,
    producer_span: &str,
) -> (Cluster<'a>, ExecutionResult) {
    let mut cluster = Cluster::new(env, settings);
    cluster.start().await;
    let mut results = Box::pin(env.subscribe_results().await);
    let order = serde_json::json!({
        "order_id": order_id, "symbol": "BTCUSDT", "side": "BUY", "quantity": "0.5", "price": "100",
        "traceparent": format!("00-{trace_id}-{producer_span}-01"),
    });
    env.publish(&[order.to_string()]).await;
    let result = tokio::time::timeout(DEADLINE, results.next())
        .await
        .expect("a result")
        .expect("open channel");
    assert_eq!(result.order_id, order_id);
    (cluster, result)
}

#[tokio::test]
async fn an_order_is_one_trace_from_the_producer_through_shim_worker_and_result() {
    let (endpoint, received) = start_receiver().await;
    let env = TestEnv::new().await;
    let http_port = free_port().to_string();
    let settings = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
        ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ("HTTP_PORT", http_port.as_str()),
        ("LOG_FORMAT", "json"),
        ("LOG_LEVEL", "info,execution_service=debug"),
    ];
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let producer_span = "00f067aa0ba902b7";
    let (cluster, result) =
        traced_order(&env, &settings, "traced-1", trace_id, producer_span).await;
    let forwarded = result
        .traceparent
        .clone()
        .expect("the result carries a traceparent");
    assert!(
        forwarded.starts_with(&format!("00-{trace_id}-")),
        "{forwarded}"
    );
    assert!(
        !forwarded.contains(producer_span),
        "the result should name this service's span: {forwarded}"
    );

    let health = reqwest::get(format!("http://127.0.0.1:{http_port}/health"))
        .await
        .expect("GET /health");
    assert!(health.status().is_success());
    let log_path = cluster.log_path("replica-1");
    // SIGTERM: the spans of the last batch are flushed on the way out.
    cluster.stop().await;

    // Log lines are JSON objects that name their trace.
    let log = std::fs::read_to_string(&log_path).expect("the replica's log");
    let batch_line = log
        .lines()
        .map(|line| {
            serde_json::from_str::<serde_json::Value>(line)
                .expect("every log line is one JSON object")
        })
        .find(|line| line["message"] == "batch processed")
        .expect("a batch was logged");
    let logged_trace = batch_line["span"]["trace_id"]
        .as_str()
        .expect("the line names its trace");
    assert_eq!(logged_trace.len(), 32);

    let spans = received.lock().expect("receiver lock").clone();
    let in_trace: Vec<&ReceivedSpan> = spans.iter().filter(|s| s.trace_id == trace_id).collect();
    let named = |name: &str| {
        *in_trace.iter().find(|s| s.name == name).unwrap_or_else(|| {
            let names: Vec<&str> = in_trace.iter().map(|s| s.name.as_str()).collect();
            panic!("no {name} span in the order's trace; it has {names:?}")
        })
    };
    let mirror = named("shim.mirror");
    let process = named("order.process");
    let execute = named("order.execute");
    assert_eq!(
        mirror.parent_span_id, producer_span,
        "the shim continues the producer's span"
    );
    assert_eq!(
        process.parent_span_id, mirror.span_id,
        "the worker continues the shim's span"
    );
    assert_eq!(
        execute.parent_span_id, process.span_id,
        "the executor call is part of the order"
    );
    assert!(
        forwarded.contains(&process.span_id),
        "the result continues from the order's span"
    );
    assert_eq!(process.attributes["order_id"], "traced-1");
    assert_eq!(process.attributes["symbol"], "BTCUSDT");
    assert_eq!(process.attributes["side"], "BUY");
    assert_eq!(process.attributes["status"], "FILLED");

    let resource = &process.resource;
    assert_eq!(resource["service.name"], "execution-service");
    assert_eq!(resource["service.instance.id"], "replica-1");
    assert_eq!(resource["service.version"], env!("CARGO_PKG_VERSION"));
    assert!(
        spans
            .iter()
            .any(|s| s.name == "worker.batch" && s.trace_id == logged_trace),
        "logs and traces do not join"
    );
    for name in [
        "worker.batch",
        "postgres.write_decided",
        "redis.publish_results",
        "request",
    ] {
        assert!(
            spans.iter().any(|s| s.name == name),
            "no {name} span was exported"
        );
    }
}

#[tokio::test]
async fn spans_go_out_over_grpc_and_continue_the_incoming_trace() {
    let (endpoint, received) = start_grpc_receiver().await;
    let env = TestEnv::new().await;
    let settings = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
        ("OTEL_BSP_SCHEDULE_DELAY", "100"),
    ];
    let trace_id = "0af7651916cd43dd8448eb211c80319c";
    let producer_span = "b7ad6b7169203331";
    let (cluster, _) =
        traced_order(&env, &settings, "traced-grpc-1", trace_id, producer_span).await;

    // The batch exporter sends every 100 ms: wait for the worker's span.
    let deadline = tokio::time::Instant::now() + DEADLINE;
    let process = loop {
        let spans = received.lock().expect("receiver lock").clone();
        if let Some(span) = spans
            .into_iter()
            .find(|s| s.name == "order.process" && s.trace_id == trace_id)
        {
            break span;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no order.process span in trace {trace_id} arrived over gRPC"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!(process.attributes["order_id"], "traced-grpc-1");
    assert_eq!(process.resource["service.name"], "execution-service");
    let spans = received.lock().expect("receiver lock").clone();
    let mirror = spans
        .iter()
        .find(|s| s.name == "shim.mirror" && s.trace_id == trace_id)
        .expect("the shim's span");
    assert_eq!(
        mirror.parent_span_id, producer_span,
        "continued from the producer"
    );
    assert_eq!(process.parent_span_id, mirror.span_id);
    cluster.stop().await;
}
