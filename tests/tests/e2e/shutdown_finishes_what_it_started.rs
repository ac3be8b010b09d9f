//! SIGTERM: idlinkd stops accepting, lets the RPC in flight finish, and exits 0 well within
//! the grace period.

use std::time::{Duration, Instant};

use idlink_tests::{daemon::Harness, *};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_rpc_in_flight_at_sigterm_completes_and_the_process_exits_zero() {
    let harness = Harness::new().await;
    let daemon = harness.start(daemon::free_port(), "shutdown").await;
    let endpoint = daemon.endpoint.clone();
    let client = harness.user(&endpoint, "alex@contoso.example").await;
    let complete = begin_and_sign_in(&client, ML, "jordan@outlook.example").await;
    harness.idp.misbehave(Misbehaviour::SlowTokenResponse).await.unwrap();

    let in_flight = tokio::spawn(async move { client.complete_link(complete).await });
    tokio::time::sleep(Duration::from_millis(300)).await; // it is waiting on the provider now
    let signalled = Instant::now();
    assert!(daemon.terminate().await, "exit status 0");
    let took = signalled.elapsed();
    let link = in_flight.await.unwrap().expect("the RPC in flight completed");
    assert_eq!(link.state, idlink_client::pb::LinkState::Active as i32);
    assert!(took >= Duration::from_millis(900), "it waited for the RPC ({took:?})");
    assert!(took < Duration::from_secs(20), "within the grace period ({took:?})");
    assert!(tonic::transport::Endpoint::from_shared(endpoint).unwrap().connect().await.is_err(), "no longer listening");
    assert!(harness.logs("shutdown").contains("shutting down"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_messages_are_refused_by_the_configured_limit() {
    let app = TestApp::spawn_with(|s| s.server.max_message_bytes = 2048).await;
    let client = app.client_for("alex@contoso.example").await;
    let big = idlink_client::pb::CompleteLinkRequest { state: "s".repeat(43), code: "c".repeat(4000), ..Default::default() };
    match client.complete_link(big).await {
        Err(idlink_client::ClientError::Rpc { code, .. }) => assert_eq!(code, tonic::Code::OutOfRange),
        other => panic!("a 4 KB message passed a 2 KB limit: {other:?}"),
    }
    // Within the limit the same RPC is served (and refused on its merits).
    let small = idlink_client::pb::CompleteLinkRequest { state: "s".repeat(43), code: "c".into(), ..Default::default() };
    assert_refused(client.complete_link(small).await, tonic::Code::NotFound, "FLOW_NOT_FOUND");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_is_not_serving_until_the_identity_providers_load() {
    use tonic_health::pb::health_check_response::ServingStatus;
    let harness = Harness::new().await;
    harness.idp.set_down(true);
    let daemon = harness.start_listening(daemon::free_port(), "starting", &[]).await;
    // Listening, store open, provider down: honest about it, and it does not exit.
    for service in ["", "idlink.v1.LinkService"] {
        assert_eq!(health_status(&daemon.endpoint, service).await, Some(ServingStatus::NotServing as i32), "{service:?}");
    }
    let client = harness.user(&daemon.endpoint, "alex@contoso.example").await;
    assert_refused(client.get_links().await, tonic::Code::Unavailable, "STARTING");
    harness.idp.set_down(false);
    wait_until_serving(&daemon.endpoint).await;
    assert_eq!(health_status(&daemon.endpoint, "idlink.v1.LinkService").await, Some(ServingStatus::Serving as i32));
    let client = harness.user(&daemon.endpoint, "alex@contoso.example").await;
    assert!(client.get_links().await.unwrap().is_empty());
    assert!(daemon.terminate().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_flips_to_not_serving_when_shutdown_begins() {
    use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient};
    let harness = Harness::new().await;
    // A health watcher is a stream that never ends by itself: the grace period bounds it.
    let daemon = harness.start_with_env(daemon::free_port(), "flip", &[("IDLINK_SERVER__GRACE_SECONDS", "2")]).await;
    let channel = tonic::transport::Endpoint::from_shared(daemon.endpoint.clone()).unwrap().connect().await.unwrap();
    let mut watch = HealthClient::new(channel).watch(HealthCheckRequest { service: String::new() }).await.unwrap().into_inner();
    assert_eq!(watch.message().await.unwrap().unwrap().status, ServingStatus::Serving as i32);

    let signalled = Instant::now();
    let terminated = tokio::spawn(daemon.terminate());
    let next = tokio::time::timeout(Duration::from_secs(5), watch.message()).await.expect("a status change").unwrap().unwrap();
    assert_eq!(next.status, ServingStatus::NotServing as i32, "load balancers learn first");
    assert!(terminated.await.unwrap(), "exit status 0");
    assert!(signalled.elapsed() < Duration::from_secs(10), "within the grace period ({:?})", signalled.elapsed());
}
