use super::*;
use crate::store::conformance;

async fn open() -> Option<(tempfile::TempDir, Arc<SledStore>)> {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path(), Arc::new(Catalog::default_catalog())).unwrap();
    Some((dir, Arc::new(store)))
}

conformance::suite!(open);

/// Invariant 12: a listing without tombstones costs its page, not the organisation's
/// history. The tombstones' records are deleted: a listing that read them would fail.
#[tokio::test]
async fn a_listing_without_tombstones_never_reads_them() {
    let (_dir, store) = open().await.unwrap();
    conformance::a_listing_without_tombstones_never_reads_them(&*store, async |tombstone: &crate::domain::Link| {
        store.trees.links.remove(tombstone.id.as_str()).unwrap();
    })
    .await;
}

/// A store written before the active index gets it on first open; an entry that is not an
/// active link is named by the integrity check.
#[tokio::test]
async fn a_store_from_before_the_active_index_gets_it_on_open() {
    let (dir, store) = open().await.unwrap();
    let now = Utc::now();
    for n in 0..5 {
        store.link(conformance::request(LinkKind::PartnerUniversity, n, n), LinkMode::default(), now).await.unwrap();
    }
    let work = conformance::request(LinkKind::PartnerUniversity, 2, 2).work;
    store.remove(LinkKind::PartnerUniversity, &work, &work, "x", None, now).await.unwrap();
    store.trees.active_by_tenant.clear().unwrap();
    store.trees.meta.remove(ACTIVE_INDEX).unwrap();
    store.flush().unwrap();
    drop(store);

    let store = SledStore::open(dir.path(), Arc::new(Catalog::default_catalog())).unwrap();
    assert_eq!(store.trees.active_by_tenant.len(), 4);
    let report = store.check_integrity().await.unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    let stray =
        [active_prefix(&work.tenant, LinkKind::PartnerUniversity), crate::domain::LinkId::random().as_str().as_bytes().to_vec()].concat();
    store.trees.active_by_tenant.insert(stray, &[]).unwrap();
    let problems = store.check_integrity().await.unwrap().problems;
    assert!(problems.len() == 1 && problems[0].starts_with("active_by_tenant: entry"), "{problems:?}");
}

/// Index entries of an older store hold the link id alone: links are still found through
/// them, the full recalculation counts them (from the link itself), and the integrity
/// check names them; the next change to the link rewrites them.
#[tokio::test]
async fn index_entries_that_do_not_name_the_organisation_still_count() {
    let (_dir, store) = open().await.unwrap();
    let now = Utc::now();
    let link = store.link(conformance::request(LinkKind::MicrosoftLearning, 1, 1), LinkMode::default(), now).await.unwrap();
    store.record_certifications(&[conformance::cert(1, "azure-administrator-associate", now, None)], now).await.unwrap();
    let credit = store.credit(&link.work.tenant).await.unwrap();
    assert_ne!(credit, Credit::default());
    for (index, side) in [(&store.trees.by_work, &link.work), (&store.trees.by_personal, &link.personal)] {
        index.insert(index_key(link.kind, side), link.id.as_str().as_bytes()).unwrap();
    }

    assert_eq!(store.active_link_of_personal(link.kind, &link.personal).await.unwrap().as_ref(), Some(&link));
    assert_eq!(store.active_links(&link.work).await.unwrap(), std::slice::from_ref(&link));
    let all = store.recompute_all().await.unwrap().unwrap();
    assert_eq!((&all[&link.work.tenant].stored, &all[&link.work.tenant].recomputed), (&credit, &credit));
    let id = link.id.as_str();
    assert_eq!(
        store.check_integrity().await.unwrap().problems,
        [
            format!("by_work: entry of link {id} does not name its organisation"),
            format!("by_personal: entry of link {id} does not name its organisation")
        ]
    );

    let tombstone = store.remove(link.kind, &link.work, &link.work, "test", None, now).await.unwrap();
    assert_eq!(tombstone.id, link.id);
    store.link(conformance::request(LinkKind::MicrosoftLearning, 1, 1), LinkMode::default(), now).await.unwrap();
    let report = store.check_integrity().await.unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert_eq!(store.credit(&link.work.tenant).await.unwrap(), credit);
}
