use chrono::Utc;

use crate::{
    domain::{LinkKind, LinkMode},
    store::{Store, changes::index_key, conformance},
};

conformance::suite!(conformance::redis_store);

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
