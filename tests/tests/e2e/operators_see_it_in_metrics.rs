//! Metrics on `[telemetry] metrics_listen`, and the same pushed over OTLP: what a set of calls
//! did, counted exactly by method and code, timed, refusals by reason, the store's calls by
//! operation, the change feed's delivery lag — and nothing names a person or a tenant.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
};

use futures_util::StreamExt;
use idlink_client::pb;
use idlink_service::oidc::devidp::CONTOSO_TENANT;
use idlink_tests::*;
use opentelemetry_proto::tonic::{
    collector::metrics::v1::{
        ExportMetricsServiceRequest, ExportMetricsServiceResponse,
        metrics_service_server::{MetricsService, MetricsServiceServer},
    },
    common::v1::{AnyValue, KeyValue, any_value},
    metrics::v1::{AggregationTemporality, metric::Data, number_data_point},
};
use tonic::Code;

const GET_LINKS: &str = "/idlink.v1.LinkService/GetLinks";

fn delta(before: &BTreeMap<String, f64>, after: &BTreeMap<String, f64>, key: &str) -> f64 {
    after.get(key).copied().unwrap_or_default() - before.get(key).copied().unwrap_or_default()
}

fn store_calls(operation: &str) -> String {
    format!("idlink_store_operation_duration_seconds_count{{operation=\"{operation}\"}}")
}

fn requests(method: &str, code: &str) -> String {
    format!("idlink_rpc_requests_total{{method=\"{method}\",code=\"{code}\"}}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scrape_counts_each_call_by_method_and_code_and_names_nobody() {
    let app = TestApp::spawn_with(|settings| settings.telemetry.metrics_listen = Some("127.0.0.1:0".parse().unwrap())).await;
    let (_, before) = app.scrape().await;
    assert_eq!(before["idlink_store_up"], 1.0);

    let alex = app.client_for("alex@contoso.example").await;
    for _ in 0..3 {
        alex.get_links().await.unwrap();
    }
    let blair = app.idp.user("blair@contoso.example").unwrap().key;
    let blair = pb::AccountRef { tenant_id: blair.tenant.as_str().into(), object_id: blair.object.as_str().into() };
    assert_refused(alex.get_links_of(blair).await, Code::PermissionDenied, "NOT_PERMITTED");
    assert_refused(app.client_with_token(None).await.get_links().await, Code::Unauthenticated, "MISSING_TOKEN");
    link(&alex, ML, "jordan@outlook.example").await.unwrap();
    let complete = begin_and_sign_in(&alex, PU, "sam@outlook.example").await; // a flow left pending
    // The watcher comes 100 s after the link: its one event is delivered 100 s old.
    app.clock.advance(chrono::Duration::seconds(100));
    let watcher = app.app_client("partner-university").await;
    let mut events = watcher.watch_link_events(0).await.unwrap();
    events.next().await.unwrap().unwrap();

    let (text, after) = app.scrape().await;
    let expected = [
        (requests(GET_LINKS, "OK"), 3.0),
        (requests(GET_LINKS, "PERMISSION_DENIED"), 1.0),
        (requests(GET_LINKS, "UNAUTHENTICATED"), 1.0),
        (requests("/idlink.v1.LinkService/BeginLink", "OK"), 2.0),
        (requests("/idlink.v1.LinkService/CompleteLink", "OK"), 1.0),
        (format!("idlink_rpc_duration_seconds_count{{method=\"{GET_LINKS}\"}}"), 5.0),
        ("idlink_rpc_refusals_total{reason=\"NOT_PERMITTED\"}".to_owned(), 1.0),
        ("idlink_rpc_refusals_total{reason=\"MISSING_TOKEN\"}".to_owned(), 1.0),
        // The store's calls: two flows begun, one taken by the completion, one link written.
        (store_calls("put_flow"), 2.0),
        (store_calls("take_flow"), 1.0),
        (store_calls("link"), 1.0),
        ("idlink_watch_delivery_lag_seconds_count".to_owned(), 1.0),
    ];
    for (key, value) in &expected {
        assert_eq!(delta(&before, &after, key), *value, "{key}\n{text}");
    }
    for (key, _) in after.iter().filter(|(k, _)| k.starts_with("idlink_watch_delivery_lag_seconds_bucket{")) {
        let bound: f64 = key.split('"').nth(1).unwrap().parse().unwrap();
        assert_eq!(delta(&before, &after, key), if bound >= 100.0 { 1.0 } else { 0.0 }, "the event was 100 s old: {key}");
    }
    let failures = "idlink_store_operation_failures_total{operation=\"link\"}";
    assert_eq!(after.get(failures), Some(&0.0), "an operation's failures read 0 from its first call on");
    assert_eq!(after["idlink_flows_pending"], 1.0, "the flow begun and not completed");
    assert_eq!(after["idlink_watch_streams"], 1.0);
    assert_eq!(after["idlink_rpc_in_flight"], 1.0, "the open change-feed stream");
    assert!(after["idlink_store_bytes_on_disk"] > 0.0 || after["idlink_store_memory_bytes"] > 0.0, "{text}");

    // The stream's end is counted when it ends.
    drop(events);
    drop(complete);
    let mut ended = 0.0;
    for _ in 0..50 {
        let (_, now) = app.scrape().await;
        ended = delta(&before, &now, &requests("/idlink.v1.LinkService/WatchLinkEvents", "CANCELLED"));
        if ended == 1.0 {
            assert_eq!(now["idlink_rpc_in_flight"], 0.0);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(ended, 1.0, "a stream the caller closed");

    // No label carries a person, a tenant or a token.
    let alex_key = app.idp.user("alex@contoso.example").unwrap().key;
    let jordan = app.idp.user("jordan@outlook.example").unwrap().key;
    for private in
        [CONTOSO_TENANT, alex_key.object.as_str(), jordan.object.as_str(), "alex@contoso.example", "jordan@outlook.example", "eyJ"]
    {
        assert!(!text.contains(private), "the scrape shows {private}");
    }
    // The dashboard in docs/ queries only what a scrape has.
    let dashboard: serde_json::Value = serde_json::from_str(include_str!("../../../docs/grafana-dashboard.json")).unwrap();
    let mut queried = Vec::new();
    for target in dashboard["panels"].as_array().unwrap().iter().flat_map(|p| p["targets"].as_array().unwrap()) {
        let expr = target["expr"].as_str().unwrap();
        queried
            .extend(expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).filter(|w| w.starts_with("idlink_")).map(str::to_owned));
    }
    assert!(queried.len() >= 12, "{queried:?}");
    for name in queried {
        assert!(text.lines().any(|l| l.starts_with(&name)), "the dashboard queries {name}, which no scrape has");
    }
    // A caller cannot mint label values with paths of its own.
    let labels: Vec<&str> = text.lines().filter(|l| l.starts_with("idlink_rpc_requests_total")).collect();
    assert!(labels.iter().all(|l| l.contains("method=\"/") || l.contains("method=\"unknown\"")), "{labels:?}");
}

/// An OTLP collector's metrics service on loopback (plaintext, or TLS with a server certificate
/// of `pki`), keeping every export.
#[derive(Clone, Default)]
struct Collector(Arc<Mutex<Vec<ExportMetricsServiceRequest>>>);

#[tonic::async_trait]
impl MetricsService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        self.0.lock().unwrap().push(request.into_inner());
        Ok(tonic::Response::new(ExportMetricsServiceResponse { partial_success: None }))
    }
}

impl Collector {
    async fn start(pki: Option<&pki::TestPki>) -> (Self, String) {
        let collector = Self::default();
        let addr = pki::serve_on_loopback(tonic::service::Routes::new(MetricsServiceServer::new(collector.clone())), pki).await;
        (collector, format!("{}://{addr}", if pki.is_some() { "https" } else { "http" }))
    }

    /// The latest export in which `GetLinks` answered OK `calls` times (waits up to 15 s).
    async fn export_counting(&self, calls: f64) -> ExportMetricsServiceRequest {
        for _ in 0..300 {
            let found =
                self.0.lock().unwrap().iter().rev().find(|e| otlp_samples(e).get(&requests(GET_LINKS, "OK")) == Some(&calls)).cloned();
            if let Some(export) = found {
                return export;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("no export counted {calls} GetLinks; got {} exports", self.0.lock().unwrap().len());
    }
}

/// An export's sums and histogram counts, named as a scrape names them.
fn otlp_samples(export: &ExportMetricsServiceRequest) -> BTreeMap<String, f64> {
    let mut samples = BTreeMap::new();
    let metrics = export.resource_metrics.iter().flat_map(|r| &r.scope_metrics).flat_map(|s| &s.metrics);
    for metric in metrics {
        let labels = |attributes: &[KeyValue]| {
            let pairs: Vec<String> = attributes.iter().map(|kv| format!("{}=\"{}\"", kv.key, string(&kv.value))).collect();
            if pairs.is_empty() { String::new() } else { format!("{{{}}}", pairs.join(",")) }
        };
        match &metric.data {
            Some(Data::Sum(sum)) => {
                assert!(sum.is_monotonic && sum.aggregation_temporality == AggregationTemporality::Cumulative as i32);
                for point in &sum.data_points {
                    let Some(number_data_point::Value::AsDouble(value)) = point.value else { panic!("{point:?}") };
                    samples.insert(format!("{}_total{}", metric.name, labels(&point.attributes)), value);
                }
            }
            Some(Data::Histogram(histogram)) => {
                for point in &histogram.data_points {
                    assert_eq!(point.bucket_counts.iter().sum::<u64>(), point.count, "{}", metric.name);
                    samples.insert(format!("{}_count{}", metric.name, labels(&point.attributes)), point.count as f64);
                }
            }
            _ => {}
        }
    }
    samples
}

fn string(value: &Option<AnyValue>) -> String {
    match value.as_ref().and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        other => format!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_otlp_collector_gets_what_a_scrape_shows() {
    // Over TLS, every second: the export after the calls counts them as the scrape does.
    let pki = pki::TestPki::default();
    let (collector, endpoint) = Collector::start(Some(&pki)).await;
    let app = TestApp::spawn_with(|settings| {
        settings.telemetry.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
        settings.telemetry.otlp_endpoint = Some(endpoint);
        settings.telemetry.otlp_ca_file = Some(pki.ca_file());
        settings.telemetry.otlp_metrics_interval_seconds = Some(1);
    })
    .await;
    let alex = app.client_for("alex@contoso.example").await;
    for _ in 0..3 {
        alex.get_links().await.unwrap();
    }
    assert_refused(app.client_with_token(None).await.get_links().await, Code::Unauthenticated, "MISSING_TOKEN");
    let export = collector.export_counting(3.0).await;
    let (_, scraped) = app.scrape().await;
    let pushed = otlp_samples(&export);
    let rpc: Vec<_> = pushed.iter().filter(|(k, _)| k.starts_with("idlink_rpc_")).collect();
    assert!(rpc.len() >= 3, "{pushed:?}");
    for (key, value) in rpc {
        assert_eq!(scraped.get(key), Some(value), "{key}: pushed {value}, scraped {:?}", scraped.get(key));
    }
    assert_eq!(pushed[&requests(GET_LINKS, "UNAUTHENTICATED")], 1.0);

    let resource = export.resource_metrics[0].resource.as_ref().unwrap();
    let attribute = |key: &str| resource.attributes.iter().find(|kv| kv.key == key).map(|kv| string(&kv.value));
    assert_eq!(attribute("service.name").as_deref(), Some("idlinkd"));
    assert_eq!(attribute("service.instance.id").map(|id| id.len()), Some(32), "replicas are told apart");
    let everything = format!("{:?}", collector.0.lock().unwrap());
    let alex_key = app.idp.user("alex@contoso.example").unwrap().key;
    for private in [CONTOSO_TENANT, alex_key.object.as_str(), "alex@contoso.example", "eyJ"] {
        assert!(!everything.contains(private), "an export shows {private}");
    }

    // Plaintext, with an interval far longer than the test: what was counted is pushed on the way out.
    let (collector, endpoint) = Collector::start(None).await;
    let app = TestApp::spawn_with(|settings| {
        settings.telemetry.otlp_endpoint = Some(endpoint);
        settings.telemetry.otlp_metrics_interval_seconds = Some(3600);
    })
    .await;
    let alex = app.client_for("alex@contoso.example").await;
    for _ in 0..2 {
        alex.get_links().await.unwrap();
    }
    assert!(collector.0.lock().unwrap().is_empty(), "nothing before the first interval");
    drop(app);
    collector.export_counting(2.0).await;
}
