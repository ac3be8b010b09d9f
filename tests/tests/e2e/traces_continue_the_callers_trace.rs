//! OpenTelemetry: with an OTLP endpoint configured, the spans of BeginLink and CompleteLink
//! reach the collector as children of the caller's `traceparent` — down to the provider call
//! and the store write — and no attribute or event carries a token, code or personal email.

use std::sync::{Arc, Mutex};

use idlink_client::{ClientOptions, IdlinkClient};
use idlink_tests::{daemon::Harness, *};
use opentelemetry_proto::tonic::{
    collector::trace::v1::{
        ExportTraceServiceRequest, ExportTraceServiceResponse,
        trace_service_server::{TraceService, TraceServiceServer},
    },
    common::v1::{AnyValue, KeyValue, any_value::Value},
    trace::v1::Span,
};

#[derive(Clone, Default)]
struct Collector(Arc<Mutex<Vec<Span>>>);

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let spans = request.into_inner().resource_spans.into_iter().flat_map(|r| r.scope_spans).flat_map(|s| s.spans);
        self.0.lock().unwrap().extend(spans);
        Ok(tonic::Response::new(ExportTraceServiceResponse { partial_success: None }))
    }
}

fn text(value: &Option<AnyValue>) -> String {
    match value.as_ref().and_then(|v| v.value.as_ref()) {
        Some(Value::StringValue(s)) => s.clone(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}

fn all_text(attributes: &[KeyValue]) -> String {
    attributes.iter().map(|kv| format!("{}={} ", kv.key, text(&kv.value))).collect()
}

/// A collector on loopback: plaintext, or TLS with a server certificate of `pki`.
async fn start_collector(pki: Option<&pki::TestPki>) -> (Collector, std::net::SocketAddr) {
    let collector = Collector::default();
    let addr = pki::serve_on_loopback(tonic::service::Routes::new(TraceServiceServer::new(collector.clone())), pki).await;
    (collector, addr)
}

/// Links once through a daemon started with `env`, then stops it (flushing the exporter).
async fn link_through(harness: &Harness, label: &str, env: &[(&str, &str)]) -> String {
    // Jordan is linked once per daemon, again and again: no limit on associations here.
    let unlimited = [
        ("IDLINK_KINDS__MICROSOFT_LEARNING__ASSOCIATIONS_PER_YEAR", "0"),
        ("IDLINK_KINDS__MICROSOFT_LEARNING__DAYS_BETWEEN_ASSOCIATIONS", "0"),
    ];
    let daemon = harness.start_with_env(daemon::free_port(), label, &[env, &unlimited[..]].concat()).await;
    let client = harness.user(&daemon.endpoint, "alex@contoso.example").await;
    let link = link(&client, ML, "jordan@outlook.example").await.unwrap();
    client.remove_link(idlink_client::pb::RemoveLinkRequest { kind: ML as i32, ..Default::default() }).await.unwrap();
    assert!(daemon.terminate().await, "exits 0 after flushing the exporter");
    link.id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_reach_a_tls_collector_only_through_the_configured_ca() {
    let pki = pki::TestPki::default();
    let (collector, addr) = start_collector(Some(&pki)).await;
    let harness = Harness::new().await;
    let otlp = format!("https://{addr}");
    let ca = pki.ca_file().display().to_string();
    link_through(&harness, "trusting", &[("OTEL_EXPORTER_OTLP_ENDPOINT", &otlp), ("IDLINK_TELEMETRY__OTLP_CA_FILE", &ca)]).await;
    let exported = collector.0.lock().unwrap().len();
    assert!(exported > 0, "no span reached the collector over TLS");

    // Without the CA, the public roots do not vouch for the collector: no span gets there,
    // and idlinkd serves all the same.
    link_through(&harness, "untrusting", &[("OTEL_EXPORTER_OTLP_ENDPOINT", &otlp)]).await;
    assert_eq!(collector.0.lock().unwrap().len(), exported, "spans crossed a TLS hop the exporter should not trust");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rpc_spans_are_children_of_the_callers_trace_and_carry_no_secrets() {
    let (collector, collector_addr) = start_collector(None).await;
    let harness = Harness::new().await;
    let otlp = format!("http://{collector_addr}");
    let daemon = harness.start_with_env(daemon::free_port(), "traced", &[("OTEL_EXPORTER_OTLP_ENDPOINT", &otlp)]).await;
    let (trace_id, parent_span) = ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7");
    let client = IdlinkClient::connect(
        ClientOptions::new(daemon.endpoint.clone())
            .token(harness.idp.access_token("alex@contoso.example").unwrap())
            .header("traceparent", format!("00-{trace_id}-{parent_span}-01")),
    )
    .await
    .unwrap();
    let complete = begin_and_sign_in(&client, ML, "jordan@outlook.example").await;
    let link = client.complete_link(complete).await.unwrap();
    assert!(daemon.terminate().await, "exits 0 after flushing the exporter");

    let spans = collector.0.lock().unwrap().clone();
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    let ours: Vec<&Span> = spans.iter().filter(|s| hex(&s.trace_id) == trace_id).collect();
    let by_name = |name: &str| {
        ours.iter()
            .copied()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("no span {name} in {:?}", ours.iter().map(|s| &s.name).collect::<Vec<_>>()))
    };
    for rpc in ["/idlink.v1.LinkService/BeginLink", "/idlink.v1.LinkService/CompleteLink"] {
        assert_eq!(hex(&by_name(rpc).parent_span_id), parent_span, "{rpc} continues the caller's span");
    }
    let complete_rpc = by_name("/idlink.v1.LinkService/CompleteLink");
    assert_eq!(complete_rpc.kind, opentelemetry_proto::tonic::trace::v1::span::SpanKind::Server as i32, "a server span");
    let attributes = all_text(&complete_rpc.attributes);
    assert!(attributes.contains("rpc.grpc.status_code=IntValue(0)") && attributes.contains("request_id="), "{attributes}");
    for step in ["oidc.complete", "store.link"] {
        assert_eq!(by_name(step).parent_span_id, complete_rpc.span_id, "{step} is a step of CompleteLink");
    }
    assert!(all_text(&by_name("store.link").attributes).contains(&link.id), "the store span names the link");

    let mut secrets = harness.idp.secrets_seen();
    secrets.extend(remembered_secrets());
    for span in &ours {
        let mut text = format!("{} {}", span.name, all_text(&span.attributes));
        for event in &span.events {
            text.push_str(&format!(" {} {}", event.name, all_text(&event.attributes)));
        }
        for secret in &secrets {
            assert!(!text.contains(secret.as_str()), "span {} carries a secret starting {}", span.name, &secret[..6]);
        }
        assert!(!text.contains("@outlook.example"), "span {} carries a personal email: {text}", span.name);
    }
}
