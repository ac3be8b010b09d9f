//! WatchLinkEvents: a watcher that disconnects at random points and reconnects with its last
//! cursor sees every event exactly once, in order — across a graceful restart of idlinkd.

use std::time::Duration;

use futures_util::StreamExt;
use idlink_client::pb;
use idlink_service::oidc::devidp::{AccountType, CONTOSO_TENANT};
use idlink_tests::{daemon::Harness, *};
use rand::{Rng, SeedableRng, rngs::StdRng};

/// Links and removes for `users`; returns how many events that made.
async fn produce(harness: &Harness, endpoint: &str, round: usize, users: usize) -> u64 {
    let mut events = 0;
    for i in 0..users {
        let login = format!("feed{i}.r{round}@contoso.example");
        let personal = format!("feed{i}.r{round}@outlook.example");
        harness.idp.add_user(CONTOSO_TENANT, &login, AccountType::Work);
        harness.idp.add_user(CONTOSO_TENANT, &personal, AccountType::Personal);
        let client = harness.user(endpoint, &login).await;
        link(&client, ML, &personal).await.unwrap();
        events += 1;
        if i % 3 == 0 {
            client.remove_link(pb::RemoveLinkRequest { kind: ML as i32, ..Default::default() }).await.unwrap();
            events += 1;
        }
    }
    events
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconnecting_watcher_sees_every_event_once_in_order_across_a_restart() {
    let harness = std::sync::Arc::new(Harness::new().await);
    let port = daemon::free_port();
    let endpoint = format!("http://127.0.0.1:{port}");
    let daemon = harness.start(port, "feed-0").await;
    let (target_tx, target_rx) = tokio::sync::watch::channel(u64::MAX);

    let watcher = {
        let (harness, endpoint) = (harness.clone(), endpoint.clone());
        tokio::spawn(async move {
            let mut rng = StdRng::seed_from_u64(11);
            let (mut seen, mut cursor, mut reconnects) = (Vec::new(), 0u64, 0);
            let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
            while (seen.len() as u64) < *target_rx.borrow() {
                assert!(tokio::time::Instant::now() < deadline, "watcher stuck at cursor {cursor}");
                let Ok(client) = idlink_client::IdlinkClient::connect(
                    idlink_client::ClientOptions::new(endpoint.clone()).token(harness.idp.app_token("partner-university").unwrap()),
                )
                .await
                else {
                    tokio::time::sleep(Duration::from_millis(100)).await; // restarting
                    continue;
                };
                let Ok(mut stream) = client.watch_link_events(cursor).await else {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                };
                reconnects += 1;
                // Take a few events (or wait briefly for news), then drop the connection.
                for _ in 0..rng.gen_range(1..6) {
                    match tokio::time::timeout(Duration::from_millis(500), stream.next()).await {
                        Ok(Some(Ok(event))) => {
                            seen.push(event.cursor);
                            cursor = event.cursor;
                        }
                        _ => break,
                    }
                }
            }
            (seen, reconnects)
        })
    };

    let mut total = produce(&harness, &endpoint, 0, 15).await;
    assert!(daemon.terminate().await, "graceful shutdown with a watcher connected exits 0");
    let _daemon = harness.start(port, "feed-1").await;
    total += produce(&harness, &endpoint, 1, 15).await;
    target_tx.send(total).unwrap();

    let (seen, reconnects) = watcher.await.unwrap();
    assert_eq!(seen, (1..=total).collect::<Vec<_>>(), "every event once, in order");
    assert!(reconnects > 5, "the watcher really disconnected ({reconnects} connections)");
}
