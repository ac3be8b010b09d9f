//! Redis behind sentinels, as production runs it: 32 writers link and remove through idlinkd
//! (`wait_replicas = 1`) while the primary is SIGKILLed. idlinkd follows the promotion by
//! itself; calls in the gap are refused UNAVAILABLE and nothing else; every link whose
//! completion was acknowledged is there on the promoted replica, and no acknowledged removal
//! is undone. `IDLINK_FAILOVER_ROUNDS` (default 1) sets how many primaries die in turn.

use std::time::Instant;

use idlink_tests::{
    redis::SentinelSet,
    writers::{self, Writers},
    *,
};

const WRITERS: usize = 32;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_links_survive_the_primarys_death() {
    let Some(mut set) = SentinelSet::start() else { return };
    let app = TestApp::spawn_with(|s| {
        s.store.backend = idlink_service::config::Backend::Redis;
        s.store.redis_sentinels = set.sentinels();
        s.store.redis_sentinel_master = Some(idlink_tests::redis::SENTINEL_MASTER.into());
        s.store.key_prefix = "failover".into();
        s.store.wait_replicas = 1;
        s.store.timeout_ms = 500;
        writers::let_them_write(s);
    })
    .await;
    let mut writers = Writers::new(&app, WRITERS).await;
    let rounds: usize = std::env::var("IDLINK_FAILOVER_ROUNDS").ok().and_then(|r| r.parse().ok()).unwrap_or(1);
    for round in 1..=rounds {
        let tally = writers.start();
        tally.until_acknowledged(64).await;

        let old = set.primary_port().expect("the sentinels name a primary");
        set.server(old).kill();
        let killed = Instant::now();
        let promoted = set.until_promoted(old);
        let gap = killed.elapsed();
        // The old primary comes back (as its pod would) as the new one's replica: with
        // wait_replicas = 1, changes are acknowledged again once it holds them.
        set.rejoin(old, promoted);
        tally.until_acknowledged(tally.acknowledged() + 64).await;
        wait_until_serving(&app.endpoint()).await;
        // Every writer's acknowledged (or settled) state is what the promoted primary holds.
        writers.stop(&tally).await;
        let refused = tally.refused.lock().unwrap().clone();
        let losses = tally.losses.lock().unwrap().clone();
        println!(
            "failover round {round}: {} changes acknowledged, refused {refused:?}, {} lost; promotion {:.1} s after the kill",
            tally.acknowledged(),
            losses.len(),
            gap.as_secs_f64()
        );
        assert!(losses.is_empty(), "acknowledged changes lost: {losses:?}");
        assert!(refused.keys().all(|code| code == "Unavailable"), "calls in the gap got other codes than UNAVAILABLE: {refused:?}");
        assert!(!refused.is_empty(), "no call met the gap: the primary's death was not under load");
        let report = app.integrity().await;
        assert!(report.problems.is_empty(), "{report:?}");
    }
}
