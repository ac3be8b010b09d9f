//! BeginLink is limited per work user and for everyone, with a retry hint; time is the
//! test's clock, so refill is tested without sleeping.

use chrono::Duration;
use idlink_client::ClientError;
use idlink_tests::*;
use tonic::Code;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_user_is_limited_without_blocking_others() {
    let app = TestApp::spawn_with(|s| {
        s.limits.begin_per_user_burst = 3;
        s.limits.begin_per_user_per_minute = 6;
    })
    .await;
    let alex = app.client_for("alex@contoso.example").await;
    for _ in 0..3 {
        alex.begin_link(begin_request(ML, "jordan@outlook.example")).await.unwrap();
    }
    let limited = alex.begin_link(begin_request(ML, "jordan@outlook.example")).await;
    match &limited {
        Err(ClientError::Rpc { retry_after, .. }) => assert_eq!(*retry_after, Some(std::time::Duration::from_secs(10))),
        other => panic!("{other:?}"),
    }
    assert_refused(limited, Code::ResourceExhausted, "RATE_LIMITED");
    app.client_for("blair@contoso.example").await.begin_link(begin_request(ML, "jordan@outlook.example")).await.unwrap();
    app.clock.advance(Duration::seconds(10));
    alex.begin_link(begin_request(ML, "jordan@outlook.example")).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn everyone_together_is_limited_too() {
    let app = TestApp::spawn_with(|s| {
        s.limits.begin_global_burst = 4;
        s.limits.begin_global_per_second = 1;
    })
    .await;
    for i in 0..4 {
        let (_, client) = app.new_work_user(&format!("flood{i}@contoso.example")).await;
        client.begin_link(begin_request(ML, "jordan@outlook.example")).await.unwrap();
    }
    let (_, late) = app.new_work_user("late@contoso.example").await;
    assert_refused(late.begin_link(begin_request(ML, "jordan@outlook.example")).await, Code::ResourceExhausted, "RATE_LIMITED");
    app.clock.advance(Duration::seconds(1));
    late.begin_link(begin_request(ML, "jordan@outlook.example")).await.unwrap();
}
