//! Redis Cluster, as production runs it: three primaries with a replica each. Under 32 writers
//! (`wait_replicas = 1`) idlink's slot is moved to another primary, then that primary is
//! SIGKILLed and its replica promoted. idlinkd follows the `MOVED`, `ASK` and the promotion by
//! itself; calls it cannot place are refused UNAVAILABLE and nothing else; no acknowledged
//! link or removal is lost.

use idlink_service::test_support::{TestCluster, within_a_minute};
use idlink_tests::{
    writers::{self, Writers},
    *,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idlinks_slot_moves_and_its_primary_dies_under_load() {
    let Some(mut cluster) = tokio::task::spawn_blocking(|| TestCluster::start(3, 1)).await.unwrap() else { return };
    let seeds = cluster.seeds();
    let app = TestApp::spawn_with(|s| {
        s.store.backend = idlink_service::config::Backend::Redis;
        s.store.redis_cluster = Some(idlink_service::config::RedisCluster::Seeds(seeds));
        s.store.key_prefix = "cluster".into();
        s.store.wait_replicas = 1;
        s.store.timeout_ms = 1000;
        writers::let_them_write(s);
    })
    .await;
    let mut writers = Writers::new(&app, 32).await;
    let tally = writers.start();
    tally.until_acknowledged(64).await;

    // Resharding: the slot of every idlink key moves to another primary while writes go on.
    let slot = cluster.slot_of("{cluster}:links");
    let from = cluster.primary_of(slot).unwrap();
    let to = *cluster.primaries().iter().find(|p| **p != from).unwrap();
    tokio::task::block_in_place(|| cluster.move_slot(slot, to));
    assert_eq!(cluster.primary_of(slot), Some(to));
    tally.until_acknowledged(tally.acknowledged() + 64).await;

    // The slot's new primary dies; the cluster promotes its replica; the old one comes back as
    // a replica, and changes are acknowledged again once it holds them.
    cluster.kill(to);
    tokio::task::block_in_place(|| within_a_minute("the replica is promoted", || cluster.primary_of(slot).is_some_and(|p| p != to)));
    let promoted = cluster.primary_of(slot).unwrap();
    tokio::task::block_in_place(|| {
        cluster.restart(to);
        cluster.until_replicated(promoted);
    });
    tally.until_acknowledged(tally.acknowledged() + 64).await;
    wait_until_serving(&app.endpoint()).await;

    writers.stop(&tally).await;
    let refused = tally.refused.lock().unwrap().clone();
    let losses = tally.losses.lock().unwrap().clone();
    println!("cluster: {} changes acknowledged, refused {refused:?}, {} lost", tally.acknowledged(), losses.len());
    assert!(losses.is_empty(), "acknowledged changes lost: {losses:?}");
    assert!(refused.keys().all(|code| code == "Unavailable"), "calls got other codes than UNAVAILABLE: {refused:?}");
    let report = app.integrity().await;
    assert!(report.problems.is_empty(), "{report:?}");
    assert!(report.active_links > 0);
}
