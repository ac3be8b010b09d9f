use super::*;
use crate::store::{changes::Kv, conformance};

async fn open() -> Option<(tempfile::TempDir, Arc<SledStore>)> {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path(), Arc::new(Catalog::default_catalog())).unwrap();
    Some((dir, Arc::new(store)))
}

conformance::suite!(open);

/// The same checks with each link write in a transaction of its own (`write_combining = false`).
mod separate_transactions {
    use super::*;

    async fn open() -> Option<(tempfile::TempDir, Arc<SledStore>)> {
        let dir = tempfile::tempdir().unwrap();
        let options = SledOptions { write_combining: false, ..SledOptions::default() };
        let store = SledStore::open_with(dir.path(), Arc::new(Catalog::default_catalog()), options).unwrap();
        assert!(store.combined().is_none());
        Some((dir, Arc::new(store)))
    }

    conformance::suite!(open);
}

/// Opens the store at `path` once sled's own flusher thread of the previous opening has let
/// go of the directory's lock (a moment after the drop).
fn reopen(path: &Path, options: SledOptions) -> SledStore {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match SledStore::open_with(path, Arc::new(Catalog::default_catalog()), options) {
            Err(e) if e.to_string().contains("could not acquire lock") && std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            opened => return opened.unwrap(),
        }
    }
}

/// sled cannot change a store's compression: a store keeps what it was created with,
/// whatever is configured later, and opens with its records.
#[tokio::test]
async fn a_store_keeps_the_compression_it_was_created_with() {
    for created in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let store = reopen(dir.path(), SledOptions { compression: created, ..SledOptions::default() });
        let link = store.link(conformance::request(LinkKind::MicrosoftLearning, 1, 1), LinkMode::default(), Utc::now()).await.unwrap();
        drop(store);
        assert_eq!(created_compressed(dir.path()), Some(created));
        let store = reopen(dir.path(), SledOptions { compression: !created, ..SledOptions::default() });
        assert_eq!(store.active_links(&link.work).await.unwrap(), [link]);
        assert_eq!(created_compressed(dir.path()), Some(created));
    }
    assert_eq!(created_compressed(Path::new("/nonexistent")), None);
}

/// A change as the committer runs it.
type BoxedChange<T> = Box<dyn FnMut(&dyn Views) -> std::result::Result<T, TxError> + Send>;

/// Holds the committer, queues one change per item of `changes` (the first is the one the
/// committer already holds), then lets it take them all as one batch; answers each outcome
/// in order.
#[expect(clippy::await_holding_lock, reason = "the committer thread waits at the gate while the changes queue")]
async fn in_one_batch<T: Send + 'static>(store: &Arc<SledStore>, changes: Vec<BoxedChange<T>>) -> Vec<Result<T>> {
    let combiner = store.combiner.as_ref().unwrap();
    let (batches, _) = combiner.tally();
    let gate = combiner.hold();
    let mut queued = Vec::new();
    for (n, change) in changes.into_iter().enumerate() {
        let store = store.clone();
        queued.push(tokio::spawn(async move { store.combiner.as_ref().unwrap().run(change).await }));
        // In order: the first is taken (and waits at the gate), each next one queues.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while combiner.queued() < n {
            assert!(std::time::Instant::now() < deadline, "change {n} never queued");
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
    }
    drop(gate);
    let mut outcomes = Vec::new();
    for change in queued {
        outcomes.push(change.await.unwrap());
    }
    assert_eq!(combiner.tally().0, batches + 1, "the changes were not one batch");
    outcomes
}

/// A change refused after writing leaves none of its writes; the changes after it in the
/// batch see the writes of those before it and not the refused one's, and commit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_change_in_a_batch_leaves_nothing_and_fails_no_other() {
    let (_dir, store) = open().await.unwrap();
    let seen = |kv: &dyn Views, key: &[u8]| kv.get(Table::Profiles, key).map(|v| v.map(|v| v.to_vec()));
    let outcomes = in_one_batch::<Vec<Option<Vec<u8>>>>(
        &store,
        vec![
            Box::new(|kv| kv.insert(Table::Profiles, b"a", b"1").map(|()| Vec::new())),
            Box::new(|kv| {
                kv.insert(Table::Profiles, b"b", b"2")?;
                Err(TxError::Abort(StoreError::Corrupt { detail: "refused".into() }))
            }),
            Box::new(move |kv| {
                let saw = vec![seen(kv, b"a")?, seen(kv, b"b")?];
                kv.insert(Table::Profiles, b"c", b"3")?;
                Ok(saw)
            }),
        ],
    )
    .await;
    assert!(outcomes[0].is_ok());
    assert!(matches!(&outcomes[1], Err(StoreError::Corrupt { detail }) if detail == "refused"), "{:?}", outcomes[1]);
    assert_eq!(outcomes[2].as_ref().unwrap(), &[Some(b"1".to_vec()), None]);
    let stored: Vec<Vec<u8>> = store.trees.profiles.iter().keys().map(|k| k.unwrap().to_vec()).collect();
    assert_eq!(stored, [b"a".to_vec(), b"c".to_vec()]);
}

/// Invariant 2 within one batch: pairs of work users racing for one personal account, and
/// one work user racing for two, each have one winner; the rest get their own refusal; the
/// events of the winners have consecutive cursors (each change saw the last one's).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn links_racing_in_one_batch_have_one_winner_each() {
    let (_dir, store) = open().await.unwrap();
    let catalog = store.catalog.clone();
    let now = Utc::now();
    let mut requests: Vec<NewLink> = (0..24).map(|n| conformance::request(LinkKind::PartnerUniversity, n, n / 2)).collect();
    requests.extend([100, 101].map(|personal| conformance::request(LinkKind::PartnerUniversity, 100, personal)));
    let changes = requests
        .iter()
        .cloned()
        .map(|new| {
            let catalog = catalog.clone();
            Box::new(move |kv: &dyn Views| changes::link(&kv, &catalog, &new, LinkMode::default(), now)) as BoxedChange<Link>
        })
        .collect();
    let outcomes = in_one_batch(&store, changes).await;
    for (n, pair) in outcomes.chunks(2).enumerate() {
        let won: Vec<&Link> = pair.iter().filter_map(|o| o.as_ref().ok()).collect();
        assert_eq!(won.len(), 1, "pair {n}: {pair:?}");
        assert!(pair.iter().any(|o| matches!(o, Err(StoreError::Domain(_)))), "pair {n}: {pair:?}");
    }
    let report = store.check_integrity().await.unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert_eq!(report.active_links, 13);
    let cursors: Vec<u64> = store.events_after(0, 100).await.unwrap().iter().map(|e| e.cursor).collect();
    assert_eq!(cursors, (1..=13).collect::<Vec<_>>());
}

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

/// A store of JSON records, as the code of before the compact format wrote it (the fixture
/// is `examples/store_fixture.rs`'s dump of one), is rewritten on first open: every record
/// of a typed tree is then compact and reads back as the same value, every other record is
/// untouched, everything reads through the store as written, and the values take under
/// half the bytes. A second open rewrites nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_of_json_records_is_rewritten_compact_and_reads_back() {
    use crate::domain::{Mcid, SealedFlow, StateHash};
    use crate::store::{RequestQuota, Reservation};

    let unhex = |text: &str| (0..text.len()).step_by(2).map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap()).collect::<Vec<u8>>();
    let fixture: Vec<(String, Vec<u8>, Vec<u8>)> = include_str!("../../../fixtures/sled-json-records.jsonl")
        .lines()
        .map(|line| {
            let record: serde_json::Value = serde_json::from_str(line).unwrap();
            let field = |name: &str| unhex(record[name].as_str().unwrap());
            (record["tree"].as_str().unwrap().to_owned(), field("key"), field("value"))
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    {
        let db = sled::open(dir.path()).unwrap();
        for (tree, key, value) in &fixture {
            db.open_tree(tree).unwrap().insert(key, value.as_slice()).unwrap();
        }
        db.flush().unwrap();
    }

    let store = reopen(dir.path(), SledOptions::default());
    fn same<T: serde::de::DeserializeOwned + PartialEq + std::fmt::Debug>(old: &[u8], new: &[u8]) {
        assert!(!changes::is_current(old) && changes::is_current(new));
        assert_eq!(decode::<T>(new).unwrap(), decode::<T>(old).unwrap());
    }
    let (mut json_bytes, mut compact_bytes, mut typed) = (0, 0, 0);
    for (tree, key, old) in &fixture {
        let new = store.db.open_tree(tree).unwrap().get(key).unwrap().unwrap_or_else(|| panic!("{tree}: a record is gone"));
        type Check = fn(&[u8], &[u8]);
        let check: Option<Check> = match tree.as_str() {
            "links" => Some(same::<Link>),
            "certifications" => Some(same::<Vec<Certification>>),
            "credit" => Some(same::<StoredCredit>),
            "learning_profiles" => Some(same::<Mcid>),
            "organizations" => Some(same::<Organization>),
            "associations" => Some(same::<Associations>),
            "events" => Some(same::<LinkEvent>),
            "flows" => Some(same::<SealedFlow>),
            "requests" => Some(|old, new| {
                assert!(changes::is_current(new));
                let (old, new): (crate::store::RequestRecord, crate::store::RequestRecord) = (decode(old).unwrap(), decode(new).unwrap());
                assert_eq!((old.fingerprint, old.created_at, old.outcome), (new.fingerprint, new.created_at, new.outcome));
            }),
            _ => None,
        };
        match check {
            Some(check) => {
                check(old, &new);
                (json_bytes, compact_bytes, typed) = (json_bytes + old.len(), compact_bytes + new.len(), typed + 1);
            }
            None => assert_eq!(&new[..], &old[..], "{tree}: an untyped record changed"),
        }
    }
    assert!(typed >= 30, "only {typed} typed records in the fixture");
    assert!(compact_bytes * 2 < json_bytes, "{compact_bytes} compact bytes against {json_bytes} of JSON");

    // Through the store, as the fixture tool wrote it.
    let tenant = "3b1d6a6e-5a3c-4f0a-9c7e-2f6b8e1d4c01";
    let work = |n: u32| AccountKey::parse(tenant, &format!("00000000-0000-4000-8000-{n:012x}")).unwrap();
    let personal = |n: u32| AccountKey::parse(crate::domain::CONSUMER_TENANT, &format!("00000000-0000-4000-9000-{n:012x}")).unwrap();
    let report = store.check_integrity().await.unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert_eq!((report.active_links, report.tombstones), (7, 2));
    let moved = store.active_links(&work(5)).await.unwrap();
    assert_eq!(moved.len(), 1);
    assert_eq!((&moved[0].personal, moved[0].profile.email.as_str()), (&personal(3), "person3@outlook.example"));
    assert_eq!(moved[0].created_at.to_rfc3339(), "2026-11-30T09:17:42.123456789+00:00");
    let removed = store.last_removed(LinkKind::PartnerUniversity, &work(4)).await.unwrap().unwrap();
    assert_eq!(removed.removal.unwrap().reason, "left the programme");
    assert_eq!(store.achievements(&personal(1)).await.unwrap().len(), 2);
    assert_eq!(store.mcids(&[personal(1)]).await.unwrap(), [Some(Mcid::parse("987654321").unwrap())]);
    let organization = store.organization(&work(1).tenant).await.unwrap().unwrap();
    assert_eq!(organization.name, "Contoso Ltd");
    let recomputed = store.recompute(&work(1).tenant).await.unwrap();
    assert_ne!(recomputed.stored, Credit::default());
    assert_eq!(recomputed.stored, recomputed.recomputed);
    let events = store.events_after(0, 100).await.unwrap();
    assert_eq!(events.iter().map(|e| e.cursor).collect::<Vec<_>>(), (1..=events.len() as u64).collect::<Vec<_>>());
    assert!(events.len() >= 10 && events.iter().all(|e| e.link.profile == crate::domain::PersonalProfile::default()));
    let flow = store.take_flow(&StateHash::of("fixture-state")).await.unwrap().unwrap();
    assert_eq!(flow.open("fixture-state").unwrap().owner, work(6));
    let now = organization.updated_at;
    let quota = RequestQuota { caller: "app:fixture", per_day: 100 };
    match store.reserve_request("fixture-request", "fingerprint", quota, now, now - chrono::Duration::hours(1)).await.unwrap() {
        Reservation::Done(outcome) => assert_eq!(outcome.body, [8, 1, 18, 3]),
        other => panic!("the answered request reads as {other:?}"),
    }
    let secret = fixture.iter().find(|(tree, key, _)| tree == "meta" && key == b"secret/page-token").unwrap();
    assert_eq!(store.secret("page-token").await.unwrap(), secret.2);

    // Nothing is left to rewrite, and the next open skips the pass.
    assert_eq!(recode_all(&store.trees, &store.flows, &store.requests).unwrap(), 0);
    assert_eq!(store.trees.meta.get(RECORD_FORMAT).unwrap().as_deref(), Some(&[changes::COMPACT_FORMAT][..]));
}
