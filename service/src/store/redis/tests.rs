use std::sync::Arc;

use chrono::Utc;

use super::{RedisOptions, RedisStore};
use crate::{
    domain::{Catalog, LinkId, LinkKind, LinkMode},
    store::{
        LinkStore, Store,
        changes::{self, index_key},
        conformance,
    },
};

conformance::suite!(conformance::redis_store);

/// The same checks on a Redis Cluster of three primaries.
mod on_a_cluster {
    use crate::store::conformance;
    conformance::suite!(conformance::redis_cluster_store);
}

/// The integrity check is the oracle of the other checks: it must see a broken index.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_integrity_check_sees_a_missing_or_stray_index_entry() {
    let Some((keys, store)) = conformance::redis_store().await else { return };
    let link = store.link(conformance::request(LinkKind::MicrosoftLearning, 1, 1), LinkMode::default(), Utc::now()).await.unwrap();
    assert!(store.check_integrity().await.unwrap().problems.is_empty());

    let mut conn = redis::Client::open(keys.url.as_str()).unwrap().get_multiplexed_async_connection().await.unwrap();
    let held = store.keys.entry("by_personal", &index_key(link.kind, &link.personal));
    let () = redis::cmd("DEL").arg(&held).query_async(&mut conn).await.unwrap();
    let stray = store.keys.entry("by_work", &index_key(LinkKind::PartnerUniversity, &link.work));
    let () = redis::cmd("SET").arg(&stray).arg(link.id.as_str()).query_async(&mut conn).await.unwrap();

    let report = store.check_integrity().await.unwrap();
    let expected = [
        format!("by_work: entry key does not match link {}", link.id.as_str()),
        format!("active link {} is missing from by_personal", link.id.as_str()),
    ];
    assert_eq!(report.problems, expected);
}

/// Scripts are called by SHA: after a `SCRIPT FLUSH` (a Redis restart or failover does the
/// same) the next change reloads them and succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_survive_a_script_flush() {
    let Some((keys, store)) = conformance::redis_store().await else { return };
    let now = Utc::now();
    store.link(conformance::request(LinkKind::MicrosoftLearning, 1, 1), LinkMode::default(), now).await.unwrap();
    let mut conn = redis::Client::open(keys.url.as_str()).unwrap().get_multiplexed_async_connection().await.unwrap();
    let () = redis::cmd("SCRIPT").arg("FLUSH").query_async(&mut conn).await.unwrap();
    store.link(conformance::request(LinkKind::MicrosoftLearning, 2, 2), LinkMode::default(), now).await.unwrap();
    assert_eq!(store.check_integrity().await.unwrap().active_links, 2);
}

/// Invariant 12: a listing without tombstones costs its page, not the organisation's history.
/// The tombstones' records are deleted: a listing that read them would fail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listing_without_tombstones_never_reads_them() {
    let Some((keys, store)) = conformance::redis_store().await else { return };
    let conn = redis::Client::open(keys.url.as_str()).unwrap().get_multiplexed_async_connection().await.unwrap();
    conformance::a_listing_without_tombstones_never_reads_them(&*store, async |tombstone: &crate::domain::Link| {
        let key = store.keys.entry("links", tombstone.id.as_str().as_bytes());
        let () = redis::cmd("DEL").arg(key).query_async(&mut conn.clone()).await.unwrap();
    })
    .await;
}

/// A store written before the active index gets it when a replica connects; an entry that is
/// not an active link is named by the integrity check.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_from_before_the_active_index_gets_it_on_connect() {
    let Some((keys, store)) = conformance::redis_store().await else { return };
    let now = Utc::now();
    for n in 0..5 {
        store.link(conformance::request(LinkKind::PartnerUniversity, n, n), LinkMode::default(), now).await.unwrap();
    }
    let work = conformance::request(LinkKind::PartnerUniversity, 2, 2).work;
    store.remove(LinkKind::PartnerUniversity, &work, &work, "x", None, now).await.unwrap();
    let mut conn = redis::Client::open(keys.url.as_str()).unwrap().get_multiplexed_async_connection().await.unwrap();
    let () = redis::cmd("DEL")
        .arg(store.keys.key("active_by_tenant"))
        .arg(store.keys.key("active_index_built"))
        .query_async(&mut conn)
        .await
        .unwrap();

    let replica =
        RedisStore::connect(RedisOptions::new(keys.url.clone(), keys.prefix.clone()), Arc::new(Catalog::default_catalog())).await.unwrap();
    let members: usize = redis::cmd("ZCARD").arg(store.keys.key("active_by_tenant")).query_async(&mut conn).await.unwrap();
    assert_eq!(members, 4);
    let report = replica.check_integrity().await.unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    let stray = [changes::active_prefix(&work.tenant, LinkKind::PartnerUniversity), LinkId::random().as_str().as_bytes().to_vec()].concat();
    let () = redis::cmd("ZADD").arg(store.keys.key("active_by_tenant")).arg(0).arg(stray).query_async(&mut conn).await.unwrap();
    let problems = replica.check_integrity().await.unwrap().problems;
    assert!(problems.len() == 1 && problems[0].starts_with("active_by_tenant: entry"), "{problems:?}");
}
