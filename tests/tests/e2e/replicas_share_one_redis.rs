//! Several idlinkd processes on one Redis behave as one service: a flow begun on one replica
//! completes on the other, races split across replicas still have exactly one winner, a
//! watcher on one replica sees what the other wrote. When Redis dies calls fail fast with
//! UNAVAILABLE and health flips; when it returns idlinkd recovers by itself with every
//! acknowledged link there. And idlinkd refuses a Redis that could lose acknowledged writes.

use std::time::{Duration, Instant};

use futures_util::{StreamExt, future::join_all};
use idlink_client::{ClientError, IdlinkClient};
use idlink_service::{
    domain::{AccountKey, LinkKind},
    oidc::devidp::{AccountType, CONTOSO_TENANT},
};
use idlink_tests::{
    daemon::{Harness, free_port},
    redis::{RedisServer, SharedRedis},
    *,
};
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;

const RACERS: usize = 64;
const ROUNDS: usize = 20;

async fn work_user(harness: &Harness, endpoint: &str, login: &str) -> IdlinkClient {
    harness.idp.add_user(CONTOSO_TENANT, login, AccountType::Work);
    harness.user(endpoint, login).await
}

fn personal(harness: &Harness, login: &str) -> AccountKey {
    harness.idp.add_user(CONTOSO_TENANT, login, AccountType::Personal)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_share_flows_races_and_the_change_feed() {
    let Some(shared) = SharedRedis::new() else { return };
    let harness = Harness::on_redis(&shared.url, &shared.prefix).await;
    let replicas = [harness.start(free_port(), "replica-a").await, harness.start(free_port(), "replica-b").await];
    let (a, b) = (&replicas[0].endpoint, &replicas[1].endpoint);

    // A watcher on A, from the start of the feed.
    let watcher = harness.client(a, harness.idp.app_token("partner-university").unwrap()).await;
    let mut feed = watcher.watch_link_events(0).await.unwrap();

    // Begun on A, completed on B; then the flow is spent on A too.
    let on_a = work_user(&harness, a, "alex@contoso.example").await;
    let on_b = harness.user(b, "alex@contoso.example").await;
    personal(&harness, "alex.home@outlook.example");
    let complete = begin_and_sign_in(&on_a, ML, "alex.home@outlook.example").await;
    let linked = on_b.complete_link(complete.clone()).await.unwrap();
    assert_eq!(on_a.get_links().await.unwrap().iter().map(|l| l.id.clone()).collect::<Vec<_>>(), std::slice::from_ref(&linked.id));
    assert_refused(on_a.complete_link(complete).await, Code::NotFound, "FLOW_NOT_FOUND");

    // Written through B, seen by the watcher on A.
    let event = tokio::time::timeout(Duration::from_secs(5), feed.next()).await.expect("the event reaches A's watcher").unwrap().unwrap();
    assert_eq!((event.cursor, event.link.unwrap().id), (1, linked.id.clone()));

    // 64 racers for one personal account, half on each replica, each completing on the
    // replica it did not begin on: exactly one winner, every round.
    let store = harness.open_store().await;
    for round in 0..ROUNDS {
        let contested = format!("contested.r{round}@outlook.example");
        let held = personal(&harness, &contested);
        let mut racers = Vec::new();
        for i in 0..RACERS {
            let login = format!("racer{i}.r{round}@contoso.example");
            let (begin_on, complete_on) = if i % 2 == 0 { (a, b) } else { (b, a) };
            let begun = work_user(&harness, begin_on, &login).await;
            let complete = begin_and_sign_in(&begun, ML, &contested).await;
            racers.push((harness.user(complete_on, &login).await, complete));
        }
        let outcomes = join_all(racers.iter().map(|(client, complete)| client.complete_link(complete.clone()))).await;
        let mut winners = Vec::new();
        for outcome in outcomes {
            match outcome {
                Ok(link) => winners.push(link),
                Err(ClientError::Rpc { code: Code::AlreadyExists, reason, .. }) => assert_eq!(reason, "ACCOUNT_LINKED_ELSEWHERE"),
                Err(other) => panic!("round {round}: unexpected {other:?}"),
            }
        }
        assert_eq!(winners.len(), 1, "round {round}: exactly one winner across both replicas");
        let holder = store.active_link_of_personal(LinkKind::MicrosoftLearning, &held).await.unwrap().unwrap();
        assert_eq!(holder.id.as_str(), winners[0].id);
    }
    let report = store.check_integrity().await.unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert_eq!(report.active_links, ROUNDS + 1);

    // Every creation reached A's watcher, in order, once.
    let mut cursors = vec![1];
    while cursors.len() < ROUNDS + 1 {
        let event = tokio::time::timeout(Duration::from_secs(5), feed.next()).await.expect("every event reaches A").unwrap().unwrap();
        cursors.push(event.cursor);
    }
    assert_eq!(cursors, (1..=ROUNDS as u64 + 1).collect::<Vec<_>>());
    for replica in replicas {
        assert!(replica.terminate().await);
    }
}

/// Links in a loop until told to stop; returns the acknowledged links and every refusal.
async fn keep_linking(
    harness: &Harness,
    endpoint: &str,
    worker: usize,
    stop: tokio::sync::watch::Receiver<bool>,
) -> (Vec<(String, String)>, Vec<ClientError>) {
    let (mut acknowledged, mut refused) = (Vec::new(), Vec::new());
    for n in 0.. {
        if *stop.borrow() {
            break;
        }
        let login = format!("load{worker}.{n}@contoso.example");
        let home = format!("load{worker}.{n}@outlook.example");
        let client = work_user(harness, endpoint, &login).await;
        personal(harness, &home);
        let begun = match client.begin_link(begin_request(ML, &home)).await {
            Ok(begun) => begun,
            Err(e) => {
                refused.push(e);
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let redirect = idlink_client::browser::follow_authorization(&begun.authorization_url).await.unwrap();
        match client.complete_link(redirect.into_complete_request()).await {
            Ok(link) => acknowledged.push((login, link.id)),
            Err(e) => refused.push(e),
        }
    }
    (acknowledged, refused)
}

async fn wait_for_health(endpoint: &str, wanted: ServingStatus, within: Duration) -> Duration {
    let started = Instant::now();
    while started.elapsed() < within {
        if health_status(endpoint, "").await == Some(wanted as i32) {
            return started.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{endpoint} did not report {wanted:?} within {within:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_outage_fails_fast_and_heals_without_losing_acknowledged_links() {
    let Some(mut redis) = RedisServer::start(&["--appendonly", "yes", "--appendfsync", "always"]) else { return };
    let harness = std::sync::Arc::new(Harness::on_redis(&redis.url(), "outage").await);
    let timeout = Duration::from_millis(300);
    let daemon = harness
        .start_with_env(free_port(), "outage", &[("IDLINK_STORE__TIMEOUT_MS", "300"), ("IDLINK_STORE__REQUIRE_DURABLE", "true")])
        .await;
    let endpoint = daemon.endpoint.clone();

    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let workers: Vec<_> = (0..4)
        .map(|worker| {
            let (harness, endpoint, stop) = (harness.clone(), endpoint.clone(), stop.clone());
            tokio::spawn(async move { keep_linking(&harness, &endpoint, worker, stop).await })
        })
        .collect();
    // Kill Redis mid-load, once some links are acknowledged.
    let store = harness.open_store().await;
    while store.check_integrity().await.unwrap().active_links < 20 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    redis.kill();

    // Calls fail fast with UNAVAILABLE and a retry hint; health flips.
    let reader = harness.user(&endpoint, "load0.0@contoso.example").await;
    for _ in 0..5 {
        let started = Instant::now();
        let refused = reader.get_links().await;
        let took = started.elapsed();
        assert_refused(refused, Code::Unavailable, "STORE_UNAVAILABLE");
        assert!(took < timeout + Duration::from_millis(700), "refused after {took:?} (timeout {timeout:?})");
    }
    wait_for_health(&endpoint, ServingStatus::NotServing, Duration::from_secs(5)).await;
    tokio::time::sleep(Duration::from_millis(500)).await; // the load keeps hitting the outage

    // Redis returns with its data: idlinkd recovers by itself.
    redis.restart();
    let healed = wait_for_health(&endpoint, ServingStatus::Serving, Duration::from_secs(10)).await;
    stop_tx.send(true).unwrap();
    let (mut acknowledged, mut refused) = (Vec::new(), Vec::new());
    for worker in join_all(workers).await {
        let (a, r) = worker.unwrap();
        acknowledged.extend(a);
        refused.extend(r);
    }
    assert!(!refused.is_empty(), "the load met the outage");
    for refusal in &refused {
        assert!(
            matches!(refusal, ClientError::Rpc { code: Code::Unavailable, .. }),
            "an outage refuses only with UNAVAILABLE: {refusal:?}"
        );
    }
    // Every acknowledged link is there, through the service and in the store.
    for (login, id) in &acknowledged {
        let links = harness.user(&endpoint, login).await.get_links().await.unwrap();
        assert!(links.iter().any(|l| &l.id == id), "acknowledged link of {login} lost");
    }
    let store = harness.open_store().await;
    let report = store.check_integrity().await.unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert!(report.active_links >= acknowledged.len());
    // A new link works again.
    let after = work_user(&harness, &endpoint, "after@contoso.example").await;
    personal(&harness, "after@outlook.example");
    link(&after, ML, "after@outlook.example").await.unwrap();
    eprintln!("outage: {} acknowledged, {} refused, healed {healed:?} after restart", acknowledged.len(), refused.len());
    assert!(daemon.terminate().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn require_durable_refuses_a_redis_without_an_append_only_file() {
    let Some(redis) = RedisServer::start(&["--appendonly", "no"]) else { return };
    let harness = Harness::on_redis(&redis.url(), "durable").await;
    // Start-up fails before it ever listens, naming the setting.
    let run = tokio::process::Command::new(daemon::idlinkd_binary())
        .arg("--config")
        .arg(harness.dir.path().join("idlink.toml"))
        .envs(idlink_tests::redis::store_env(&redis.url(), "durable", None))
        .env("IDLINK_STORE__REQUIRE_DURABLE", "true")
        .env("IDLINK_LISTEN", format!("127.0.0.1:{}", free_port()))
        .env("IDLINK_KINDS__MICROSOFT_LEARNING__CLIENT_SECRET", "unused")
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(20), run).await.expect("idlinkd exits").unwrap();
    let text = String::from_utf8_lossy(&output.stdout).into_owned() + String::from_utf8_lossy(&output.stderr).as_ref();
    assert!(!output.status.success());
    assert!(text.contains("appendonly=no") && text.contains("require_durable"), "names the setting: {text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_wait_replicas_a_change_is_answered_only_once_a_redis_replica_holds_it() {
    let Some(primary) = RedisServer::start(&["--appendonly", "yes", "--appendfsync", "everysec"]) else { return };
    let replica_of = primary.port.to_string();
    let Some(mut replica) = RedisServer::start(&["--replicaof", "127.0.0.1", &replica_of]) else { return };
    let url = primary.url();
    // everysec alone could lose a second of writes; with a replica acknowledging each change
    // require_durable accepts it.
    let app = TestApp::spawn_with(|s| {
        s.store.backend = idlink_service::config::Backend::Redis;
        s.store.redis_url = Some(url.clone());
        s.store.key_prefix = "wait".into();
        s.store.require_durable = true;
        s.store.wait_replicas = 1;
        s.store.wait_timeout_ms = 300;
    })
    .await;
    let (_, alex) = app.new_work_user("alex@contoso.example").await;
    app.new_personal("alex@outlook.example");
    primary.wait_for_replicas(1);
    link(&alex, ML, "alex@outlook.example").await.unwrap();

    replica.kill();
    let (_, sam) = app.new_work_user("sam@contoso.example").await;
    app.new_personal("sam@outlook.example");
    assert_refused(link(&sam, ML, "sam@outlook.example").await, Code::Unavailable, "STORE_UNAVAILABLE");

    // The replica returns and catches up; the retried change is answered (and was not doubled).
    replica.restart();
    primary.wait_for_replicas(1);
    let retried = link(&sam, ML, "sam@outlook.example").await.unwrap();
    assert_eq!(sam.get_links().await.unwrap().iter().map(|l| l.id.clone()).collect::<Vec<_>>(), [retried.id]);
    assert_eq!(app.integrity().await.active_links, 2);
}

/// A certificate authority and a server certificate for 127.0.0.1, made with `openssl`.
fn tls_files(dir: &std::path::Path) -> Option<()> {
    let openssl =
        |args: &[&str]| std::process::Command::new("openssl").args(args).current_dir(dir).output().ok().filter(|o| o.status.success());
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "1",
        "-subj",
        "/CN=idlink test CA",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
    ])?;
    openssl(&["req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1", "-keyout", "server.key", "-out", "server.csr"])?;
    std::fs::write(dir.join("san.ext"), "subjectAltName=IP:127.0.0.1\n").ok()?;
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "1",
        "-extfile",
        "san.ext",
        "-out",
        "server.pem",
    ])?;
    Some(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_over_tls_with_a_password_from_the_environment() {
    let certs = tempfile::tempdir().unwrap();
    if tls_files(certs.path()).is_none() {
        assert!(std::env::var("CI").map_or(true, |v| v != "true"), "openssl is required under CI=true");
        eprintln!("SKIPPED: openssl cannot make test certificates");
        return;
    }
    let tls_port = free_port().to_string();
    let path = |name: &str| certs.path().join(name).display().to_string();
    let (cert, key, ca) = (path("server.pem"), path("server.key"), path("ca.pem"));
    let args = [
        "--tls-port",
        &tls_port,
        "--tls-cert-file",
        &cert,
        "--tls-key-file",
        &key,
        "--tls-ca-cert-file",
        &ca,
        "--tls-auth-clients",
        "no",
        "--requirepass",
        "s3cret-redis-password",
    ];
    let Some(_redis) = RedisServer::start(&args) else { return };
    let url = format!("rediss://127.0.0.1:{tls_port}");

    let with = |ca: Option<&str>, password: &str| {
        let (url, ca, password) = (url.clone(), ca.map(std::path::PathBuf::from), password.to_owned());
        move |s: &mut idlink_service::config::Settings| {
            s.store.backend = idlink_service::config::Backend::Redis;
            s.store.redis_url = Some(url);
            s.store.redis_ca_file = ca;
            s.store.redis_password = Some(password.into());
            s.store.key_prefix = "tls".into();
        }
    };
    // Wrong password, or a certificate nobody vouched for: start-up refuses, the password unsaid.
    for (ca, password, why) in [(Some(ca.as_str()), "wrong", "authentication"), (None, "s3cret-redis-password", "certificate")] {
        let mut settings =
            idlink_service::dev::dev_settings("http://127.0.0.1:1", &[], "127.0.0.1:0".parse().unwrap(), certs.path().into());
        with(ca, password)(&mut settings);
        let clock = std::sync::Arc::new(idlink_service::clock::SystemClock);
        let err = idlink_service::app::Application::build(&settings, clock).await.err().expect("refused").to_string();
        assert!(err.contains(why) && !err.contains(password), "{err}");
    }

    let app = TestApp::spawn_with(with(Some(&ca), "s3cret-redis-password")).await;
    let (_, alex) = app.new_work_user("alex@contoso.example").await;
    app.new_personal("alex@outlook.example");
    let linked = link(&alex, ML, "alex@outlook.example").await.unwrap();
    assert_eq!(alex.get_links().await.unwrap()[0].id, linked.id);
    assert!(!captured_logs().contains("s3cret-redis-password"), "the Redis password never reaches a log");
}
