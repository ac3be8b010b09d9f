//! Invariant 12: every input's cost is bounded per caller, and bounded per call. Each case is
//! pushed past its bound and refused with its code and reason — on one connection, where that
//! matters, without disturbing the other calls on it.

use std::time::Duration;

use futures_util::future::join_all;
use idlink_client::{ClientOptions, IdlinkClient, pb};
use idlink_service::{
    api::refusals::LINES_PER_WINDOW,
    domain::{Credit, Tally, TenantId},
};
use idlink_tests::*;
use tonic::Code;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_tokens_are_refused_per_call_and_the_connection_carries_on() {
    let app = TestApp::spawn().await;
    let channel = IdlinkClient::channel(&app.endpoint()).await.unwrap();
    let on_channel = |token: String| IdlinkClient::with_channel(channel.clone(), ClientOptions::new(app.endpoint()).token(token)).unwrap();
    // A change-feed stream in flight on the connection.
    let watcher = on_channel(app.idp.app_token("partner-university").unwrap());
    let mut events = watcher.watch_link_events(0).await.unwrap();
    for size in [9 * 1024, 64 * 1024] {
        app.next_refusal_window();
        let request_id = format!("oversized-{size}-{}", rand::random::<u32>());
        let options = ClientOptions::new(app.endpoint()).token("e".repeat(size)).header("x-request-id", &request_id);
        let refused = IdlinkClient::with_channel(channel.clone(), options).unwrap().get_links().await;
        assert_refused(refused, Code::Unauthenticated, "TOKEN_TOO_LARGE");
        assert_audited(&request_id, "TOKEN_TOO_LARGE");
    }
    // The stream is still there and hears of a link made after the refusals ...
    let alex = on_channel(app.idp.access_token("alex@contoso.example").unwrap());
    let linked = link(&alex, ML, "jordan@outlook.example").await.unwrap();
    let event = tokio::time::timeout(Duration::from_secs(5), events.message()).await.expect("the stream is alive").unwrap().unwrap();
    assert_eq!(event.link.unwrap().id, linked.id);
    // ... and the same connection serves the next call.
    assert_eq!(alex.get_links().await.unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_has_so_many_request_ids_a_day() {
    let app = TestApp::spawn().await;
    let alex = app.client_for("alex@contoso.example").await;
    let remove =
        |n: u32| pb::RemoveLinkRequest { kind: PU as i32, reason: "x".into(), request_id: format!("rid-{n}"), ..Default::default() };
    // 20,000 distinct ids, 32 at a time: the first 10,000 are remembered (their refusal,
    // LINK_NOT_FOUND, is definitive), the rest refused until the next day.
    let (mut remembered, mut exhausted) = (0, 0);
    for chunk in (0..20_000u32).collect::<Vec<_>>().chunks(32) {
        for outcome in join_all(chunk.iter().map(|n| alex.remove_link(remove(*n)))).await {
            match outcome.unwrap_err() {
                idlink_client::ClientError::Rpc { reason, .. } if reason == "LINK_NOT_FOUND" => remembered += 1,
                idlink_client::ClientError::Rpc { code: Code::ResourceExhausted, reason, retry_after, .. }
                    if reason == "REQUEST_IDS_EXHAUSTED" =>
                {
                    assert!(retry_after.is_some_and(|r| r > Duration::ZERO && r <= Duration::from_secs(24 * 3600)), "{retry_after:?}");
                    exhausted += 1;
                }
                other => panic!("{other:?}"),
            }
        }
    }
    assert_eq!((remembered, exhausted), (10_000, 10_000));
    // A remembered id is still answered; calls without an id are not counted at all.
    assert_refused(alex.remove_link(remove(7)).await, Code::NotFound, "LINK_NOT_FOUND");
    let no_id = pb::RemoveLinkRequest { request_id: String::new(), ..remove(0) };
    assert_refused(alex.remove_link(no_id).await, Code::NotFound, "LINK_NOT_FOUND");
    // Another caller has a quota of its own.
    let blair = app.client_for("blair@contoso.example").await;
    assert_refused(blair.remove_link(remove(20_001)).await, Code::NotFound, "LINK_NOT_FOUND");
    // The refusal is audited.
    let alex_audited =
        app.client_with_request_id(Some(app.idp.access_token("alex@contoso.example").unwrap()), Some("over-the-quota")).await;
    assert_refused(alex_audited.remove_link(remove(30_000)).await, Code::ResourceExhausted, "REQUEST_IDS_EXHAUSTED");
    assert_audited("over-the-quota", "REQUEST_IDS_EXHAUSTED");
    // The next day counts afresh, and the purge forgot everything of the day before.
    app.clock.advance(chrono::Duration::hours(25));
    let alex = app.client_for("alex@contoso.example").await;
    assert_refused(alex.remove_link(remove(40_000)).await, Code::NotFound, "LINK_NOT_FOUND");
    assert_eq!(app.store.purge_requests_before(app.now() - chrono::Duration::hours(24)).await.unwrap(), 10_000 + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recalculations_are_one_full_run_at_a_time_and_name_at_most_a_thousand() {
    let app = TestApp::spawn().await;
    // Enough organisations, each with drift in every area to report, that a full run's
    // answers (about 1.2 MB) outgrow what the connection buffers (the client's window, the
    // server's send buffer: under 0.5 MB): an unread stream keeps the run going.
    let catalog = idlink_service::domain::Catalog::default_catalog();
    let drifted = Credit(catalog.areas().iter().map(|a| (a.id.clone(), Tally { people: 1, certifications: 1 })).collect());
    for o in 0..2000u32 {
        let tenant = TenantId::parse(&format!("{o:08x}-0000-4000-8000-00000000ca1c")).unwrap();
        app.store.overwrite_credit(&tenant, &drifted).await.unwrap();
    }
    let job = app.client_with_request_id(Some(app.idp.app_token("credit-recalculation").unwrap()), Some("second-full-run")).await;
    let mut first = job.recalculate_credits(Vec::new()).await.unwrap();
    first.message().await.unwrap().expect("the first run answers");
    assert_refused(job.recalculate_credits(Vec::new()).await, Code::ResourceExhausted, "RECALCULATION_RUNNING");
    assert_audited("second-full-run", "RECALCULATION_RUNNING");
    // Named organisations are not a full run.
    let named = job.recalculate_credits(vec![idlink_service::oidc::devidp::CONTOSO_TENANT.into()]).await.unwrap();
    drop(named);
    // The first run ends when its caller goes; then a full run is accepted again.
    drop(first);
    let mut accepted = false;
    for _ in 0..100 {
        if job.recalculate_credits(Vec::new()).await.is_ok() {
            accepted = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(accepted, "a full run is accepted once the first has gone");

    let ids = |n: u32| (0..n).map(|o| format!("{o:08x}-0000-4000-8000-00000000ca1c")).collect::<Vec<_>>();
    assert_refused(job.recalculate_credits(ids(1001)).await, Code::InvalidArgument, "INVALID_ARGUMENT");
    let mut thousand = job.recalculate_credits(ids(1000)).await.unwrap();
    let mut answered = 0;
    while let Some(message) = thousand.message().await.unwrap() {
        if let Some(pb::recalculate_credits_response::Item::Organization(_)) = message.item {
            answered += 1;
        }
    }
    assert_eq!(answered, 1000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_holds_so_many_change_feed_streams() {
    let app = TestApp::spawn().await;
    let token = app.idp.app_token("partner-university").unwrap();
    let watcher = app.client_with_request_id(Some(token), Some("fifth-stream")).await;
    let mut streams = Vec::new();
    for _ in 0..4 {
        streams.push(watcher.watch_link_events(0).await.unwrap());
    }
    assert_refused(watcher.watch_link_events(0).await, Code::ResourceExhausted, "WATCH_STREAMS_EXHAUSTED");
    assert_audited("fifth-stream", "action=\"events.watch\" outcome=\"refused\"");
    // A stream closed gives its slot back.
    streams.pop();
    let mut reopened = false;
    for _ in 0..100 {
        if let Ok(stream) = watcher.watch_link_events(0).await {
            streams.push(stream);
            reopened = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(reopened, "the slot came back when the stream ended");
    assert_refused(watcher.watch_link_events(0).await, Code::ResourceExhausted, "WATCH_STREAMS_EXHAUSTED");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_are_logged_short_and_a_flood_of_them_sparingly() {
    let app = TestApp::spawn().await;
    // A 15 KiB x-request-id on a call with no token: refused, and logged without it.
    let huge = "r".repeat(15 * 1024);
    let client = app.client_with_request_id(None, Some(&huge)).await;
    assert_refused(client.get_links().await, Code::Unauthenticated, "MISSING_TOKEN");
    let logs = captured_logs();
    assert!(!logs.contains(&huge[..200]), "the raw request id reached the log");
    let longest = logs.lines().filter(|l| l.contains("caller refused")).map(str::len).max().unwrap();
    assert!(longest < 1024, "a refusal line of {longest} bytes");

    // 200 identical refusals from one peer: a few lines, then one saying how many were dropped.
    app.next_refusal_window();
    let flood = format!("flood-{}", rand::random::<u32>());
    for n in 0..200 {
        let client = app.client_with_request_id(None, Some(&format!("{flood}-{n}"))).await;
        assert_refused(client.get_links().await, Code::Unauthenticated, "MISSING_TOKEN");
    }
    assert_eq!(audit_lines(&flood).len(), LINES_PER_WINDOW as usize);
    app.next_refusal_window();
    let client = app.client_with_request_id(None, Some(&format!("{flood}-after"))).await;
    assert_refused(client.get_links().await, Code::Unauthenticated, "MISSING_TOKEN");
    let after = audit_lines(&format!("{flood}-after"));
    assert!(after.len() == 1 && after[0].contains(&format!("dropped_since_last={}", 200 - LINES_PER_WINDOW)), "{after:?}");
}
