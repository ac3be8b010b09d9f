//! Health that an orchestrator can act on: readiness (`""` and each idlink service) follows the
//! store and the providers; liveness (`liveness`) says only that the process answers — so a
//! Redis outage takes every replica out of the load balancer, and restarts none. The probes'
//! port answers health alone, in plaintext, beside a TLS gRPC port.

use std::time::Duration;

use idlink_client::{ClientError, ClientOptions, IdlinkClient};
use idlink_service::app::LIVENESS;
use idlink_tests::{daemon::Harness, pki::TestPki, redis::RedisServer, *};
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;

const SERVING: Option<i32> = Some(ServingStatus::Serving as i32);
const NOT_SERVING: Option<i32> = Some(ServingStatus::NotServing as i32);

/// Polls `endpoint` until `service` reports `status` (a few seconds at most).
async fn until_status(endpoint: &str, service: &str, status: Option<i32>) {
    for _ in 0..200 {
        if health_status(endpoint, service).await == status {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("{endpoint}: {service:?} never reported {status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_health_port_answers_health_in_plaintext_and_nothing_else() {
    let pki = TestPki::default();
    let app = TestApp::spawn_tls(&pki, false, |s| s.server.health_listen = Some("127.0.0.1:0".parse().unwrap())).await;
    let health = format!("http://{}", app.health_addr.unwrap());
    for service in ["", "idlink.v1.LinkService", LIVENESS] {
        assert_eq!(health_status(&health, service).await, SERVING, "{service:?} on the health port");
    }
    // Nothing but health: the API and reflection are not there, even with a good token.
    let token = app.idp.access_token("alex@contoso.example").unwrap();
    let client = IdlinkClient::connect(ClientOptions::new(health.clone()).token(token)).await.unwrap();
    match client.get_links().await {
        Err(ClientError::Rpc { code, .. }) => assert_eq!(code, Code::Unimplemented),
        other => panic!("LinkService on the health port: {other:?}"),
    }
    use tonic_reflection::pb::v1::{
        ServerReflectionRequest, server_reflection_client::ServerReflectionClient, server_reflection_request::MessageRequest,
    };
    let channel = tonic::transport::Endpoint::from_shared(health).unwrap().connect().await.unwrap();
    let request = ServerReflectionRequest { host: String::new(), message_request: Some(MessageRequest::ListServices(String::new())) };
    let answer = ServerReflectionClient::new(channel).server_reflection_info(futures_util::stream::iter([request])).await;
    let unimplemented = match answer {
        Err(status) => status.code() == Code::Unimplemented,
        Ok(mut stream) => matches!(stream.get_mut().message().await, Err(status) if status.code() == Code::Unimplemented),
    };
    assert!(unimplemented, "reflection on the health port");
    // The gRPC port itself still speaks TLS only.
    assert!(health_status(&app.endpoint().replace("https", "http"), "").await.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_outage_takes_readiness_down_and_leaves_liveness_up() {
    let Some(mut redis) = RedisServer::start(&["--appendonly", "yes"]) else { return };
    let url = redis.url();
    let app = TestApp::spawn_with(|s| {
        s.store.backend = idlink_service::config::Backend::Redis;
        s.store.redis_url = Some(url);
        s.store.key_prefix = "outage".into();
        s.store.timeout_ms = 200;
        s.telemetry.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
    })
    .await;
    let endpoint = app.endpoint();
    assert_eq!((health_status(&endpoint, "").await, health_status(&endpoint, LIVENESS).await), (SERVING, SERVING));
    let failed_pings = "idlink_store_operation_failures_total{operation=\"ping\"}";
    let (_, before) = app.scrape().await;
    redis.kill();
    until_status(&endpoint, "", NOT_SERVING).await;
    // The metrics say why: the store is down, and its calls failed for the store's sake.
    let (_, during) = app.scrape().await;
    assert_eq!(during["idlink_store_up"], 0.0);
    assert!(during[failed_pings] > before.get(failed_pings).copied().unwrap_or_default(), "{during:?}");
    assert_eq!(health_status(&endpoint, "idlink.v1.LinkService").await, NOT_SERVING);
    assert_eq!(health_status(&endpoint, LIVENESS).await, SERVING, "a Redis outage is no reason to restart idlinkd");
    redis.restart();
    until_status(&endpoint, "", SERVING).await;
    assert_eq!(health_status(&endpoint, LIVENESS).await, SERVING);
    app.client_for("alex@contoso.example").await.get_links().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idlinkd_started_while_redis_is_down_serves_once_it_answers() {
    let Some(mut redis) = RedisServer::start(&["--appendonly", "yes"]) else { return };
    redis.kill();
    let harness = Harness::on_redis(&redis.url(), "late").await;
    let daemon = harness.start_listening(daemon::free_port(), "late", &[("IDLINK_STORE__TIMEOUT_MS", "200")]).await;
    // Listening, and honest about it: not ready, but alive (so nothing restarts it).
    until_status(&daemon.endpoint, LIVENESS, SERVING).await;
    assert_eq!(health_status(&daemon.endpoint, "").await, NOT_SERVING);
    let refused = harness.user(&daemon.endpoint, "alex@contoso.example").await.get_links().await;
    assert_refused(refused, Code::Unavailable, "STARTING");
    redis.restart();
    wait_until_serving(&daemon.endpoint).await;
    assert!(harness.user(&daemon.endpoint, "alex@contoso.example").await.get_links().await.unwrap().is_empty());
    assert!(harness.logs("late").contains("Redis does not answer"), "it said why it waited");
    assert!(daemon.terminate().await);
}

/// The chart's `helm test` pod, as helm/test_chart.py rendered it: its command and arguments,
/// run against a real idlinkd over TLS, with the pod's mount paths where the test put the files.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_charts_test_pod_finds_a_serving_idlinkd_healthy() {
    let rendered = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/chart-test-pod.json");
    let Ok(rendered) = std::fs::read_to_string(&rendered) else {
        assert!(std::env::var_os("CI").is_none(), "{} is missing: .ci/run renders the chart first", rendered.display());
        eprintln!("SKIPPED: helm/test_chart.py has not rendered the chart's test pod");
        return;
    };
    let pod: serde_json::Value = serde_json::from_str(&rendered).unwrap();
    assert_eq!(pod["command"], serde_json::json!(["/idlink"]));
    let pki = TestPki::default();
    let app = TestApp::spawn_tls(&pki, false, |_| {}).await;
    // What the pod mounts: the TLS Secret's ca.crt under /etc/idlink-tls.
    let mounted = tempfile::tempdir().unwrap();
    std::fs::create_dir(mounted.path().join("tls")).unwrap();
    std::fs::copy(pki.ca_file(), mounted.path().join("tls/ca.crt")).unwrap();
    let args: Vec<String> = pod["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .map(|a| match a.strip_prefix("--endpoint=") {
            Some(_) => format!("--endpoint={}", app.endpoint()),
            None => a.replace("/etc/idlink-tls/", &format!("{}/tls/", mounted.path().display())),
        })
        .collect();
    let status = tokio::process::Command::new(daemon::idlink_binary()).args(&args).output().await.unwrap();
    let stdout = String::from_utf8_lossy(&status.stdout);
    assert!(status.status.success(), "{args:?}: {stdout} {}", String::from_utf8_lossy(&status.stderr));
    assert!(stdout.starts_with("SERVING"), "{stdout}");
    // Without the Secret's CA the same command fails: the pod really verifies the server.
    let unverified: Vec<&String> = args.iter().filter(|a| !a.starts_with("--ca-file=") && *a != "--wait").collect();
    let status = tokio::process::Command::new(daemon::idlink_binary()).args(unverified).output().await.unwrap();
    assert!(!status.status.success(), "{}", String::from_utf8_lossy(&status.stdout));
}
