//! The development provider adds accounts over HTTP, and `idlink bench link` drives real link
//! completions and removals through it: what it counts as done was done, in the store.

use idlink_service::{
    domain::{CONSUMER_TENANT, EventType, LinkKind},
    oidc::devidp::CONTOSO_TENANT,
};
use idlink_tests::*;

async fn add_account(app: &TestApp, query: &[(&str, &str)]) -> (u16, serde_json::Value) {
    let url = url::Url::parse_with_params(&format!("{}/dev/users", app.idp.base_url()), query).unwrap();
    let response = reqwest::Client::new().post(url).send().await.unwrap();
    let status = response.status().as_u16();
    (status, serde_json::from_slice(&response.bytes().await.unwrap()).unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_development_provider_adds_accounts_that_sign_in_and_link() {
    let app = TestApp::spawn().await;
    let (status, personal) = add_account(&app, &[("login", "new@outlook.example")]).await;
    assert_eq!((status, personal["tenant_id"].as_str()), (200, Some(CONSUMER_TENANT)));
    assert_eq!(add_account(&app, &[("login", "New@Outlook.example")]).await, (200, personal.clone()), "an existing login, as it is");
    let (status, work) = add_account(&app, &[("login", "new@contoso.example"), ("tenant", CONTOSO_TENANT)]).await;
    assert_eq!((status, work["tenant_id"].as_str()), (200, Some(CONTOSO_TENANT)));
    for (query, expected) in [
        (vec![("login", "new@contoso.example"), ("tenant", FABRIKAM_TENANT)], 409),
        (vec![("login", "other@contoso.example"), ("tenant", CONSUMER_TENANT)], 400),
        (vec![("login", "other@contoso.example"), ("tenant", "not-a-guid")], 400),
        (vec![("login", "no-at-sign")], 400),
    ] {
        assert_eq!(add_account(&app, &query).await.0, expected, "{query:?}");
    }

    let linked = link(&app.client_for("new@contoso.example").await, ML, "new@outlook.example").await.unwrap();
    let (work_user, personal_account) = (linked.work_user.unwrap(), linked.personal_account.unwrap());
    assert_eq!(work_user.object_id, work["object_id"].as_str().unwrap());
    assert_eq!(personal_account.object_id, personal["object_id"].as_str().unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_link_benchmark_completes_real_links_and_removes_them() {
    // What `idlinkd --dev --dev-no-rate-limits` does: each caller begins many flows.
    let app = TestApp::spawn_with(|s| {
        s.limits.begin_per_user_burst = 1_000_000;
        s.limits.begin_per_user_per_minute = 1_000_000;
    })
    .await;
    let output = app.idlink().args(["--json", "bench", "link"]).args(["--seconds", "0.5", "--concurrency", "3"]).output().await.unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let figures: Vec<serde_json::Value> =
        String::from_utf8_lossy(&output.stdout).lines().map(|line| serde_json::from_str(line).unwrap()).collect();
    assert_eq!(figures.iter().map(|f| f["target"].as_str().unwrap()).collect::<Vec<_>>(), ["link", "remove"]);
    for figure in &figures {
        assert_eq!(figure["errors"], 0, "{figure}");
        assert!(figure["requests"].as_u64().unwrap() > 0, "{figure}");
    }

    // Each caller is a work user of its own, linked and removed over and over: the feed holds
    // at least as many creations and removals as were counted, and nothing is left linked.
    let events = app.store.events_after(0, 1_000_000).await.unwrap();
    let count = |t: EventType| events.iter().filter(|e| e.event_type == t).count() as u64;
    assert!(count(EventType::Created) >= figures[0]["requests"].as_u64().unwrap());
    assert!(count(EventType::Removed) >= figures[1]["requests"].as_u64().unwrap());
    assert_eq!(count(EventType::Created), count(EventType::Removed), "every link the benchmark made, it removed");
    for i in 0..3 {
        let work = app.idp.user(&format!("bench-{i}@contoso.example")).expect("the benchmark added its work users").key;
        assert!(app.store.active_links(&work).await.unwrap().iter().all(|l| l.kind != LinkKind::MicrosoftLearning));
    }
    app.integrity().await;
}

/// `--requests N` makes exactly N calls in all, every one counted — what the instruction
/// counts per call divide by — and the server answered exactly those.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_counted_run_makes_exactly_the_calls_it_says() {
    let app = TestApp::spawn_with(|s| s.telemetry.metrics_listen = Some("127.0.0.1:0".parse().unwrap())).await;
    let get_links = "idlink_rpc_requests_total{method=\"/idlink.v1.LinkService/GetLinks\",code=\"OK\"}";
    let (_, before) = app.scrape().await;
    let output = app
        .idlink()
        .args(["--user", "alex@contoso.example", "--json", "bench", "get-links", "--requests", "37", "--concurrency", "8"])
        .output()
        .await
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let figure: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!((figure["requests"].as_u64(), figure["errors"].as_u64()), (Some(37), Some(0)), "{figure}");
    let (_, after) = app.scrape().await;
    assert_eq!(after[get_links] - before.get(get_links).copied().unwrap_or_default(), 37.0, "the server answered exactly 37");
    let refused = app.idlink().args(["bench", "health", "--requests", "5", "--seconds", "1"]).output().await.unwrap();
    assert_eq!(refused.status.code(), Some(2), "a count and a window at once is a usage error");
}
