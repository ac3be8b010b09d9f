//! Callers that run unattended: retries that wait as long as the server asks and never act
//! twice, a completion whose answer was lost on the way retried to the one link it made, a
//! certification import over TLS that outlives its client-credentials token, and a change-feed
//! follower that rides out a restart of idlinkd without missing or repeating an event.

use std::{
    process::Stdio,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use idlink_client::{ClientOptions, IdlinkClient, RetryPolicy, pb};
use idlink_proto::v1::organization_service_server::{OrganizationService, OrganizationServiceServer};
use idlink_service::oidc::devidp::{AccountType, CONTOSO_TENANT, Misbehaviour, SERVICES_TENANT};
use idlink_tests::{daemon::Harness, proxy::CuttableProxy, *};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
use tonic::{Code, Request, Response, Status};
use tonic_types::{ErrorDetails, StatusExt};

/// OrganizationService that refuses each call's first attempt RESOURCE_EXHAUSTED with
/// RetryInfo of `retry_after`, and answers the next; it notes when each attempt arrived.
struct Throttling {
    retry_after: Duration,
    attempts: Arc<Mutex<Vec<(String, Instant)>>>,
}

#[tonic::async_trait]
impl OrganizationService for Throttling {
    async fn upsert_organization(&self, request: Request<pb::UpsertOrganizationRequest>) -> Result<Response<pb::Organization>, Status> {
        let r = request.into_inner();
        let first = {
            let mut attempts = self.attempts.lock().unwrap();
            attempts.push((r.tenant_id.clone(), Instant::now()));
            attempts.iter().filter(|(t, _)| *t == r.tenant_id).count() == 1
        };
        if first {
            let details = ErrorDetails::with_retry_info(Some(self.retry_after));
            return Err(Status::with_error_details(Code::ResourceExhausted, "slow down", details));
        }
        Ok(Response::new(pb::Organization { organization_id: r.tenant_id, partner_id: r.partner_id, name: r.name, ..Default::default() }))
    }

    async fn remove_work_user(&self, _: Request<pb::RemoveWorkUserRequest>) -> Result<Response<pb::RemoveWorkUserResponse>, Status> {
        Err(Status::unimplemented("not part of this test"))
    }
}

async fn throttling_server(retry_after: Duration) -> (String, Arc<Mutex<Vec<(String, Instant)>>>) {
    let attempts: Arc<Mutex<Vec<(String, Instant)>>> = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let service = OrganizationServiceServer::new(Throttling { retry_after, attempts: attempts.clone() });
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    (format!("http://{addr}"), attempts)
}

fn upsert(tenant: &str, request_id: &str) -> pb::UpsertOrganizationRequest {
    pb::UpsertOrganizationRequest {
        tenant_id: tenant.into(),
        partner_id: "4711".into(),
        name: "Contoso".into(),
        request_id: request_id.into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_with_retry_info_is_retried_after_that_delay_and_only_when_safe() {
    let (endpoint, attempts) = throttling_server(Duration::from_secs(1)).await;
    let client =
        IdlinkClient::connect(ClientOptions::new(endpoint.clone()).token("t".to_owned()).retry(RetryPolicy::default())).await.unwrap();

    // With a request id the mutation is safe to repeat: retried after the second asked for.
    let organization = client.upsert_organization(upsert("with-id", "upsert-1")).await.unwrap();
    assert_eq!(organization.organization_id, "with-id");
    let times: Vec<Instant> = attempts.lock().unwrap().iter().filter(|(t, _)| t == "with-id").map(|(_, at)| *at).collect();
    assert_eq!(times.len(), 2, "one refusal, one retry");
    let waited = times[1] - times[0];
    assert!(waited >= Duration::from_secs(1), "retried before the RetryInfo's second: {waited:?}");
    assert!(waited < Duration::from_millis(1600), "waited far longer than asked (≤10% jitter): {waited:?}");

    // Without one a retry could act twice: the refusal is the answer, after one attempt.
    let refused = client.upsert_organization(upsert("without-id", "")).await;
    assert_refused(refused, Code::ResourceExhausted, "");
    assert_eq!(
        attempts.lock().unwrap().iter().filter(|(t, _)| t == "without-id").count(),
        1,
        "a mutation without a request id was retried"
    );

    // A server asking for longer than the policy's total: no retry, the refusal at once.
    let (slow, slow_attempts) = throttling_server(Duration::from_secs(3600)).await;
    let client = IdlinkClient::connect(ClientOptions::new(slow).token("t".to_owned()).retry(RetryPolicy::default())).await.unwrap();
    let started = Instant::now();
    assert!(client.upsert_organization(upsert("patient", "upsert-2")).await.is_err());
    assert!(started.elapsed() < Duration::from_secs(5), "waited for an hour's RetryInfo");
    assert_eq!(slow_attempts.lock().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_completion_whose_answer_was_lost_is_retried_to_the_one_link_it_made() {
    let app = TestApp::spawn().await;
    let direct = app.client_for("alex@contoso.example").await;
    let mut complete = begin_and_sign_in(&direct, ML, "jordan@outlook.example").await;
    complete.request_id = "complete-over-a-flaky-network".into();

    let proxy = CuttableProxy::start(app.addr).await;
    let options = ClientOptions::new(proxy.endpoint()).token(app.idp.access_token("alex@contoso.example").unwrap());
    let flaky = IdlinkClient::connect(options.retry(RetryPolicy::default())).await.unwrap();
    // The provider answers the code exchange only after 1.5 s: the call is in the server then.
    app.idp.misbehave(Misbehaviour::SlowTokenResponse).await.unwrap();
    let token_requests = app.idp.token_requests();
    let in_flight = tokio::spawn(async move { flaky.complete_link(complete).await });
    let deadline = Instant::now() + Duration::from_secs(10);
    while app.idp.token_requests() == token_requests {
        assert!(Instant::now() < deadline, "the completion never reached the provider");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The caller's network goes: both sides of its connection closed mid-call.
    assert_eq!(proxy.cut(), 1, "one connection was carrying the call");
    let link = in_flight.await.unwrap().expect("the retry answered the first attempt's link");
    assert!(proxy.accepted() >= 2, "the retry came on a new connection");

    assert_eq!(link.state, pb::LinkState::Active as i32);
    assert_eq!(direct.get_links().await.unwrap(), vec![link.clone()], "the link the retry was told of is the one there is");
    assert_eq!(app.integrity().await.active_links, 1);
    assert_eq!(app.store.events_after(0, 10).await.unwrap().len(), 1, "linked once");
}

/// A certification line of the personal account `object`.
fn certification(object: &str, certification: &str) -> String {
    let consumer = idlink_service::domain::CONSUMER_TENANT;
    format!("{consumer},{object},{certification},2026-01-15T09:00:00Z,2029-01-15T09:00:00Z\n")
}

async fn contoso_certifications(app: &TestApp) -> i64 {
    let tenant = idlink_service::domain::TenantId::parse(CONTOSO_TENANT).unwrap();
    app.store.credit(&tenant).await.unwrap().0.values().map(|tally| tally.certifications).sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_import_with_client_credentials_outlives_its_token() {
    let pki = pki::TestPki::default();
    let app = TestApp::spawn_tls(&pki, false, |_| {}).await;
    link(&app.client_for("alex@contoso.example").await, ML, "jordan@outlook.example").await.unwrap();
    let jordan = app.idp.user("jordan@outlook.example").unwrap().key.object.as_str().to_owned();
    // Tokens of ten minutes: the job will run past the first one's end.
    app.idp.set_app_token_lifetime(Duration::from_secs(600));
    let token_requests = app.idp.token_requests();

    let mut cli = tokio::process::Command::new(daemon::idlink_binary())
        .args(["--endpoint", &app.endpoint(), "--ca-file"])
        .arg(pki.ca_file())
        .args(["--authority", &app.idp.authority(SERVICES_TENANT), "--client-id", "learning-feed", "--json"])
        .args(["certs", "import", "-", "--batch-lines", "2"])
        .env("IDLINK_CLIENT_SECRET", "dev-secret-learning-feed")
        .env_remove("IDLINK_TOKEN")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdin = cli.stdin.take().unwrap();
    stdin.write_all(b"personal_tenant_id,personal_object_id,certification_id,earned_at,expires_at\n").await.unwrap();
    stdin.write_all(certification(&jordan, "azure-administrator-associate").as_bytes()).await.unwrap();
    stdin.write_all(certification("00000000-0000-4000-8000-000000000001", "azure-developer-associate").as_bytes()).await.unwrap();
    stdin.flush().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let before = contoso_certifications(&app).await;
    while contoso_certifications(&app).await == before {
        assert!(Instant::now() < deadline, "the first call of the import never arrived");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let after_first = contoso_certifications(&app).await;
    assert_eq!(app.idp.token_requests(), token_requests + 1, "one token for the first call");

    // Twenty minutes on: the job's cached token has expired at the server.
    app.clock.advance(chrono::Duration::minutes(20));
    stdin.write_all(certification(&jordan, "azure-solutions-architect-expert").as_bytes()).await.unwrap();
    stdin.write_all(certification("00000000-0000-4000-8000-000000000002", "azure-developer-associate").as_bytes()).await.unwrap();
    drop(stdin);
    // Bounded: this test once hung here (cause not found); a hang must fail, not stall the suite.
    let output = tokio::time::timeout(Duration::from_secs(120), cli.wait_with_output())
        .await
        .expect("the import did not end within 2 minutes of its input's end")
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let summary: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!((summary["accepted"].as_u64(), summary["rejected"].as_u64()), (Some(4), Some(0)), "{summary}");
    assert!(contoso_certifications(&app).await > after_first, "the second call was recorded too");
    assert_eq!(app.idp.token_requests(), token_requests + 2, "refused as expired, the job fetched a new token once");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("dev-secret-learning-feed"), "the secret was printed: {stderr}");
}

/// The cursor of each event line `idlink --json events watch` printed.
async fn next_cursor(lines: &mut tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>) -> u64 {
    let line = tokio::time::timeout(Duration::from_secs(60), lines.next_line()).await.expect("no event within a minute").unwrap();
    let event: serde_json::Value = serde_json::from_str(&line.expect("the watcher exited")).unwrap();
    event["cursor"].as_u64().unwrap_or_else(|| panic!("not an event: {event}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_watch_prints_every_event_once_across_a_restart() {
    let harness = Harness::new().await;
    let port = daemon::free_port();
    let first = harness.start(port, "before").await;
    let mut watcher = tokio::process::Command::new(daemon::idlink_binary())
        .args(["--endpoint", &first.endpoint, "--token", &harness.idp.app_token("partner-university").unwrap()])
        .args(["--json", "events", "watch", "--from", "0", "--limit", "4"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(watcher.stdout.take().unwrap()).lines();

    let people: Vec<String> = (0..4).map(|i| format!("watched-{i}@outlook.example")).collect();
    for person in &people {
        harness.idp.add_user(CONTOSO_TENANT, person, AccountType::Personal);
    }
    let link_as = async |endpoint: &str, login: &str, personal: &str| {
        harness.idp.add_user(CONTOSO_TENANT, login, AccountType::Work);
        link(&harness.user(endpoint, login).await, ML, personal).await.unwrap().id
    };
    let mut made = vec![
        link_as(&first.endpoint, "watched-a@contoso.example", &people[0]).await,
        link_as(&first.endpoint, "watched-b@contoso.example", &people[1]).await,
    ];
    let mut printed = vec![next_cursor(&mut lines).await, next_cursor(&mut lines).await];

    // SIGTERM ends the stream (SHUTTING_DOWN); while idlinkd is away the watcher retries.
    assert!(first.terminate().await);
    let second = harness.start(port, "after").await;
    made.push(link_as(&second.endpoint, "watched-c@contoso.example", &people[2]).await);
    made.push(link_as(&second.endpoint, "watched-d@contoso.example", &people[3]).await);
    printed.push(next_cursor(&mut lines).await);
    printed.push(next_cursor(&mut lines).await);
    let status = tokio::time::timeout(Duration::from_secs(30), watcher.wait()).await.unwrap().unwrap();
    let mut stderr = String::new();
    tokio::io::AsyncReadExt::read_to_string(&mut watcher.stderr.take().unwrap(), &mut stderr).await.unwrap();
    assert!(status.success(), "{stderr}");
    assert!(stderr.contains("reopening after cursor"), "it never reconnected: {stderr}");

    let store_events = {
        let client = harness.client(&second.endpoint, harness.idp.app_token("partner-university").unwrap()).await;
        let mut stream = client.watch_link_events(0).await.unwrap();
        let mut events = Vec::new();
        while events.len() < 4 {
            events.push(tokio_stream::StreamExt::next(&mut stream).await.unwrap().unwrap());
        }
        events
    };
    assert_eq!(printed, store_events.iter().map(|e| e.cursor).collect::<Vec<_>>(), "each event printed once, in order");
    let linked: Vec<String> = store_events.iter().map(|e| e.link.clone().unwrap().id).collect();
    assert_eq!(linked, made);
    assert!(second.terminate().await);
}
