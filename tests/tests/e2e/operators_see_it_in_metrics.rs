//! Metrics on `[telemetry] metrics_listen`: what a set of calls did, counted exactly by method
//! and code, timed, refusals by reason — and nothing in the scrape names a person or a tenant.

use std::collections::BTreeMap;

use futures_util::StreamExt;
use idlink_client::pb;
use idlink_service::oidc::devidp::CONTOSO_TENANT;
use idlink_tests::*;
use tonic::Code;

const GET_LINKS: &str = "/idlink.v1.LinkService/GetLinks";

/// Every sample of a scrape: `name{labels}` → value.
async fn scrape(app: &TestApp) -> (String, BTreeMap<String, f64>) {
    let url = format!("http://{}/metrics", app.metrics_addr.expect("metrics_listen is set"));
    let response = reqwest::get(url).await.unwrap();
    assert_eq!(response.headers()["content-type"], "application/openmetrics-text; version=1.0.0; charset=utf-8");
    let text = response.text().await.unwrap();
    let samples = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.rsplit_once(' ').map(|(k, v)| (k.to_owned(), v.parse().unwrap())))
        .collect();
    (text, samples)
}

fn delta(before: &BTreeMap<String, f64>, after: &BTreeMap<String, f64>, key: &str) -> f64 {
    after.get(key).copied().unwrap_or_default() - before.get(key).copied().unwrap_or_default()
}

fn requests(method: &str, code: &str) -> String {
    format!("idlink_rpc_requests_total{{method=\"{method}\",code=\"{code}\"}}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scrape_counts_each_call_by_method_and_code_and_names_nobody() {
    let app = TestApp::spawn_with(|settings| settings.telemetry.metrics_listen = Some("127.0.0.1:0".parse().unwrap())).await;
    let (_, before) = scrape(&app).await;
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
    let watcher = app.app_client("partner-university").await;
    let mut events = watcher.watch_link_events(0).await.unwrap();
    events.next().await.unwrap().unwrap();

    let (text, after) = scrape(&app).await;
    let expected = [
        (requests(GET_LINKS, "OK"), 3.0),
        (requests(GET_LINKS, "PERMISSION_DENIED"), 1.0),
        (requests(GET_LINKS, "UNAUTHENTICATED"), 1.0),
        (requests("/idlink.v1.LinkService/BeginLink", "OK"), 2.0),
        (requests("/idlink.v1.LinkService/CompleteLink", "OK"), 1.0),
        (format!("idlink_rpc_duration_seconds_count{{method=\"{GET_LINKS}\"}}"), 5.0),
        ("idlink_rpc_refusals_total{reason=\"NOT_PERMITTED\"}".to_owned(), 1.0),
        ("idlink_rpc_refusals_total{reason=\"MISSING_TOKEN\"}".to_owned(), 1.0),
    ];
    for (key, value) in &expected {
        assert_eq!(delta(&before, &after, key), *value, "{key}\n{text}");
    }
    assert_eq!(after["idlink_flows_pending"], 1.0, "the flow begun and not completed");
    assert_eq!(after["idlink_watch_streams"], 1.0);
    assert_eq!(after["idlink_rpc_in_flight"], 1.0, "the open change-feed stream");
    assert!(after["idlink_store_bytes_on_disk"] > 0.0 || after["idlink_store_memory_bytes"] > 0.0, "{text}");

    // The stream's end is counted when it ends.
    drop(events);
    drop(complete);
    let mut ended = 0.0;
    for _ in 0..50 {
        let (_, now) = scrape(&app).await;
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
