//! The embedded backend. One sled database, one tree per record type; every multi-key
//! change is one sled transaction ([`tx::Tx`]), and a mutation returns only after the log
//! is flushed (group commit: concurrent writers share one flush).

mod tx;

use std::{
    collections::BTreeMap,
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sled::{Transactional, transaction::TransactionError};
use tx::{Tx, TxError};

use super::{
    IntegrityReport, LinkPage, ListQuery, Recomputed, Recorded, RequestQuota, RequestRecord, Reservation, Result, Store, StoreError,
    StoredOutcome,
    changes::{
        self, StoredCredit, active_prefix, decode, encode, entry_link_id, entry_tenant, expiry_bound, index_key, index_prefix,
        personal_key, tenant_key,
    },
};
use crate::domain::{
    AccountKey, Catalog, Certification, Credit, Link, LinkEvent, LinkKind, LinkMode, NewLink, Organization, SealedFlow, StateHash, TenantId,
};

struct Trees {
    links: sled::Tree,
    /// (kind, work account) → index entry (id, organisation) of its active link.
    by_work: sled::Tree,
    /// (kind, personal account) → index entry of the active link holding it.
    by_personal: sled::Tree,
    /// (kind, work account) → index entry of its latest tombstone, for idempotent removal.
    last_removed: sled::Tree,
    /// (work tenant, link id) → (): every link and tombstone of an organisation.
    by_tenant: sled::Tree,
    /// (work tenant, kind, link id) → (): an organisation's active links.
    active_by_tenant: sled::Tree,
    /// cursor (u64 big-endian) → event.
    events: sled::Tree,
    /// event_seq, events_purged_through, secrets.
    meta: sled::Tree,
    /// personal account → its certifications.
    certs: sled::Tree,
    /// tenant → its credit.
    credit: sled::Tree,
    /// (expiry time, personal account, certification id) → ().
    expiry: sled::Tree,
}

pub struct SledStore {
    db: sled::Db,
    trees: Trees,
    flows: sled::Tree,
    orgs: sled::Tree,
    /// idempotency key → request fingerprint and, once answered, the answer.
    requests: sled::Tree,
    /// (created at, idempotency key) → (): what the purge drops, oldest first.
    requests_by_time: sled::Tree,
    /// (quota day, caller) → request ids counted that day (u64 big-endian).
    request_counts: sled::Tree,
    catalog: Arc<Catalog>,
    commit: GroupCommit,
    /// The last committed event cursor, for watchers.
    feed: tokio::sync::watch::Sender<u64>,
}

const PURGED_THROUGH: &[u8] = b"events_purged_through";
const REQUESTS_LAYOUT: &[u8] = b"requests_layout";
const ACTIVE_INDEX: &[u8] = b"active_index_built";

/// A `requests_by_time` key: the sortable creation time, then the idempotency key.
fn request_time_key(at: DateTime<Utc>, key: &str) -> Vec<u8> {
    [&changes::sortable_micros(at).to_be_bytes()[..], key.as_bytes()].concat()
}

/// A `request_counts` key: the day, then the caller (days sort first, for the purge).
fn request_count_key(day: &str, caller: &str) -> Vec<u8> {
    format!("{day}\0{caller}").into_bytes()
}

/// sled's own default is 1 GiB; idlink's working set is far smaller.
pub const DEFAULT_CACHE_BYTES: u64 = 128 * 1024 * 1024;

fn unavailable(e: sled::Error) -> StoreError {
    StoreError::Unavailable { detail: e.to_string() }
}

fn read_u64(bytes: Option<sled::IVec>) -> u64 {
    bytes.and_then(|b| b.as_ref().try_into().ok()).map(u64::from_be_bytes).unwrap_or(0)
}

impl SledStore {
    pub fn open(path: &Path, catalog: Arc<Catalog>) -> Result<Self> {
        Self::open_with_cache(path, catalog, DEFAULT_CACHE_BYTES)
    }

    /// `cache_bytes` bounds sled's page cache, the bulk of the process's memory.
    pub fn open_with_cache(path: &Path, catalog: Arc<Catalog>, cache_bytes: u64) -> Result<Self> {
        let db = sled::Config::new().path(path).cache_capacity(cache_bytes).open().map_err(unavailable)?;
        let tree = |name: &str| db.open_tree(name).map_err(unavailable);
        let trees = Trees {
            links: tree("links")?,
            by_work: tree("links_by_work")?,
            by_personal: tree("links_by_personal")?,
            last_removed: tree("links_last_removed")?,
            by_tenant: tree("links_by_tenant")?,
            active_by_tenant: tree("links_active_by_tenant")?,
            events: tree("events")?,
            meta: tree("meta")?,
            certs: tree("certifications")?,
            credit: tree("credit")?,
            expiry: tree("certification_expiry")?,
        };
        let last_event = read_u64(trees.meta.get(tx::EVENT_SEQ).map_err(unavailable)?);
        if trees.meta.get(ACTIVE_INDEX).map_err(unavailable)?.is_none() {
            // Stores from before the active index: build it once from the links.
            for entry in trees.links.iter() {
                let (_, bytes) = entry.map_err(unavailable)?;
                let link: Link = decode(&bytes)?;
                if link.is_active() {
                    trees.active_by_tenant.insert(changes::active_key(&link), &[]).map_err(unavailable)?;
                }
            }
            trees.meta.insert(ACTIVE_INDEX, b"1").map_err(unavailable)?;
            db.flush().map_err(unavailable)?;
        }
        let (requests, requests_by_time, request_counts) = (tree("requests")?, tree("requests_by_time")?, tree("request_counts")?);
        if trees.meta.get(REQUESTS_LAYOUT).map_err(unavailable)?.as_deref() != Some(b"2") {
            // Records of before keys were hashed and answers sealed can never be found again:
            // dropped, so a retry across the upgrade runs again (its flow or link is unchanged).
            let dropped = requests.len();
            for tree in [&requests, &requests_by_time, &request_counts] {
                tree.clear().map_err(unavailable)?;
            }
            trees.meta.insert(REQUESTS_LAYOUT, b"2").map_err(unavailable)?;
            if dropped > 0 {
                tracing::info!(dropped, "idempotency records of an older layout dropped");
            }
        }
        Ok(Self {
            flows: tree("flows")?,
            orgs: tree("organizations")?,
            requests,
            requests_by_time,
            request_counts,
            trees,
            catalog,
            commit: GroupCommit::new(db.clone()),
            feed: tokio::sync::watch::Sender::new(last_event),
            db,
        })
    }

    /// Blocks until everything written so far is on disk.
    pub fn flush(&self) -> Result<()> {
        self.db.flush().map(drop).map_err(unavailable)
    }

    /// Runs `f` in one transaction over every tree a change touches; returns its result and
    /// the cursor of the last event it appended.
    fn transact<T>(&self, f: impl Fn(&Tx<'_>) -> std::result::Result<T, TxError>) -> Result<(T, Option<u64>)> {
        let t = &self.trees;
        let trees = (
            &t.links,
            &t.by_work,
            &t.by_personal,
            &t.last_removed,
            &t.by_tenant,
            &t.active_by_tenant,
            &t.events,
            &t.meta,
            &t.certs,
            &t.credit,
            &t.expiry,
        );
        let result = trees.transaction(
            |(links, by_work, by_personal, last_removed, by_tenant, active_by_tenant, events, meta, certs, credit, expiry)| {
                let tx = Tx {
                    links,
                    by_work,
                    by_personal,
                    last_removed,
                    by_tenant,
                    active_by_tenant,
                    events,
                    meta,
                    certs,
                    credit,
                    expiry,
                    last_event: std::cell::Cell::new(None),
                };
                Ok((f(&tx)?, tx.last_event.get()))
            },
        );
        result.map_err(|e| match e {
            TransactionError::Abort(e) => e,
            TransactionError::Storage(e) => unavailable(e),
        })
    }

    /// Durable, then watchers learn of the new events.
    async fn committed(&self, last_event: Option<u64>) -> Result<()> {
        self.commit.durable().await?;
        if let Some(cursor) = last_event {
            super::announce(&self.feed, cursor);
        }
        Ok(())
    }

    fn load_indexed(&self, index: &sled::Tree, key: &[u8]) -> Result<Option<Link>> {
        let Some(entry) = index.get(key).map_err(unavailable)? else { return Ok(None) };
        match self.trees.links.get(entry_link_id(&entry)).map_err(unavailable)? {
            Some(bytes) => decode(&bytes).map(Some),
            None => Err(StoreError::Corrupt { detail: "an index points at a missing link".into() }),
        }
    }

    fn certs_of(&self, personal: &AccountKey) -> Result<Vec<Certification>> {
        match self.trees.certs.get(personal_key(personal)).map_err(unavailable)? {
            Some(bytes) => decode(&bytes),
            None => Ok(Vec::new()),
        }
    }

    fn stored_credit(&self, tenant: &TenantId) -> Result<StoredCredit> {
        match self.trees.credit.get(tenant.as_str()).map_err(unavailable)? {
            Some(bytes) => decode(&bytes),
            None => Ok(StoredCredit::default()),
        }
    }

    /// Sum of the contributions of the organisation's active Microsoft Learning links,
    /// streamed from the tenant index (memory: one link at a time).
    fn recompute_tenant(&self, tenant: &TenantId) -> Result<Credit> {
        let prefix = tenant_key(tenant, None);
        let mut credit = Credit::default();
        for entry in self.trees.by_tenant.scan_prefix(&prefix) {
            let (key, _) = entry.map_err(unavailable)?;
            let Some(bytes) = self.trees.links.get(&key[prefix.len()..]).map_err(unavailable)? else {
                return Err(StoreError::Corrupt { detail: "the tenant index points at a missing link".into() });
            };
            let link: Link = decode(&bytes)?;
            if link.is_active() && link.kind.earns_credit() {
                credit.add(&Credit::of_person(&self.catalog, &self.certs_of(&link.personal)?), 1);
            }
        }
        Ok(credit)
    }

    /// A page of the organisation's active links (of one kind, or of all merged in id order)
    /// from the active index: the cost is the page's, whatever the organisation's history.
    fn active_links_of_tenant(&self, tenant: &TenantId, query: &ListQuery) -> Result<LinkPage> {
        let kinds = query.kind.map_or_else(|| LinkKind::ALL.to_vec(), |kind| vec![kind]);
        let mut cursors: Vec<Box<dyn Iterator<Item = Result<sled::IVec>>>> = kinds
            .into_iter()
            .map(|kind| {
                let prefix = active_prefix(tenant, kind);
                // Link ids have a fixed length, so `id\0` sorts right after `id` and before any later id.
                let start = match &query.after {
                    Some(after) => [prefix.as_slice(), after.as_str().as_bytes(), &[0]].concat(),
                    None => prefix.clone(),
                };
                let len = prefix.len();
                let ids = self
                    .trees
                    .active_by_tenant
                    .range(start..)
                    .take_while(move |entry| entry.as_ref().map_or(true, |(key, _)| key.starts_with(&prefix)))
                    .map(move |entry| entry.map(|(key, _)| key.subslice(len, key.len() - len)).map_err(unavailable));
                Box::new(ids) as Box<dyn Iterator<Item = Result<sled::IVec>>>
            })
            .collect();
        let mut heads: Vec<Option<sled::IVec>> = cursors.iter_mut().map(|c| c.next().transpose()).collect::<Result<_>>()?;
        let mut links = Vec::new();
        // The smallest head id next: the kinds merged in id order, as the unfiltered listing.
        while let Some(i) =
            heads.iter().enumerate().filter_map(|(i, h)| h.as_ref().map(|h| (i, h))).min_by(|a, b| a.1.cmp(b.1)).map(|(i, _)| i)
        {
            let id = std::mem::replace(&mut heads[i], cursors[i].next().transpose()?);
            let Some(bytes) = self.trees.links.get(id.unwrap_or_default()).map_err(unavailable)? else {
                return Err(StoreError::Corrupt { detail: "the active index points at a missing link".into() });
            };
            let link: Link = decode(&bytes)?;
            if !link.is_active() {
                continue; // an entry a crash left behind: the integrity check names it
            }
            if links.len() == query.limit {
                // One more matches: the page is full and there is a next one.
                let next = links.last().map(|l: &Link| l.id.clone());
                return Ok(LinkPage { links, next });
            }
            links.push(link);
        }
        Ok(LinkPage { links, next: None })
    }

    fn check_index(&self, index: &sled::Tree, name: &str, side: fn(&Link) -> &AccountKey, report: &mut IntegrityReport) -> Result<()> {
        for entry in index.iter() {
            let (key, held) = entry.map_err(unavailable)?;
            let Some(bytes) = self.trees.links.get(entry_link_id(&held)).map_err(unavailable)? else {
                report.problems.push(format!("{name}: entry points at missing link {}", String::from_utf8_lossy(entry_link_id(&held))));
                continue;
            };
            let link: Link = decode(&bytes)?;
            if !link.is_active() {
                report.problems.push(format!("{name}: entry points at tombstone {}", link.id.as_str()));
            }
            if index_key(link.kind, side(&link)) != key.as_ref() {
                report.problems.push(format!("{name}: entry key does not match link {}", link.id.as_str()));
            }
        }
        Ok(())
    }
}

/// The one pass of a full recalculation ([`Store::recompute_all`]), holding the trees it
/// reads so it can run on a blocking thread.
struct Pass {
    links: sled::Tree,
    by_personal: sled::Tree,
    certs: sled::Tree,
    credit: sled::Tree,
    catalog: Arc<Catalog>,
}

impl SledStore {
    fn pass(&self) -> Pass {
        let t = &self.trees;
        Pass {
            links: t.links.clone(),
            by_personal: t.by_personal.clone(),
            certs: t.certs.clone(),
            credit: t.credit.clone(),
            catalog: self.catalog.clone(),
        }
    }
}

impl Pass {
    fn run(&self) -> Result<BTreeMap<TenantId, Recomputed>> {
        let corrupt = |detail: String| StoreError::Corrupt { detail };
        let mut all = BTreeMap::new();
        // Versions first: a change during the pass moves its organisation's version.
        for entry in self.credit.iter() {
            let (key, bytes) = entry.map_err(unavailable)?;
            let tenant = TenantId::parse(&String::from_utf8_lossy(&key)).map_err(|e| corrupt(e.to_string()))?;
            let stored: StoredCredit = decode(&bytes)?;
            all.insert(tenant, Recomputed { stored: stored.credit, version: stored.version, recomputed: Credit::default() });
        }
        // The holders come in personal-key order, the order certifications are kept in, so
        // both trees are read front to back: each page read serves the entries that follow.
        for kind in LinkKind::crediting() {
            self.add_holders(kind, &mut all)?;
        }
        Ok(all)
    }

    /// Adds the contribution of every holder of a `kind` link to its organisation's recomputation.
    fn add_holders(&self, kind: LinkKind, all: &mut BTreeMap<TenantId, Recomputed>) -> Result<()> {
        let corrupt = |detail: String| StoreError::Corrupt { detail };
        let prefix = index_prefix(kind);
        for entry in self.by_personal.scan_prefix(&prefix) {
            let (key, held) = entry.map_err(unavailable)?;
            let tenant = match entry_tenant(&held)? {
                Some(tenant) => tenant,
                None => {
                    let bytes = self.links.get(entry_link_id(&held)).map_err(unavailable)?;
                    decode::<Link>(&bytes.ok_or_else(|| corrupt("an index points at a missing link".into()))?)?.work.tenant
                }
            };
            let certs: Vec<Certification> = match self.certs.get(&key[prefix.len()..]).map_err(unavailable)? {
                Some(bytes) => decode(&bytes)?,
                None => Vec::new(),
            };
            all.entry(tenant).or_default().recomputed.add(&Credit::of_person(&self.catalog, &certs), 1);
        }
        Ok(())
    }
}

/// One flush serves every write that finished before it started.
struct GroupCommit {
    db: sled::Db,
    written: AtomicU64,
    flushed: tokio::sync::Mutex<u64>,
}

impl GroupCommit {
    fn new(db: sled::Db) -> Self {
        Self { db, written: AtomicU64::new(0), flushed: tokio::sync::Mutex::new(0) }
    }

    /// Call after a write has been applied; returns once it is on disk.
    async fn durable(&self) -> Result<()> {
        let mine = self.written.fetch_add(1, Ordering::SeqCst) + 1;
        let mut flushed = self.flushed.lock().await;
        if *flushed >= mine {
            return Ok(());
        }
        // Every write numbered up to here was applied before it took its number.
        let upto = self.written.load(Ordering::SeqCst);
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || db.flush())
            .await
            .map_err(|e| StoreError::Unavailable { detail: format!("flush task failed: {e}") })?
            .map_err(unavailable)?;
        *flushed = upto;
        Ok(())
    }
}

mod store_impl;

#[cfg(test)]
mod tests {
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
        let now = Utc::now();
        let mut tombstones = Vec::new();
        for n in 0..50 {
            store.link(conformance::request(LinkKind::MicrosoftLearning, n, n), LinkMode::default(), now).await.unwrap();
            let work = conformance::request(LinkKind::MicrosoftLearning, n, n).work;
            tombstones.push(store.remove(LinkKind::MicrosoftLearning, &work, &work, "x", None, now).await.unwrap());
        }
        let active = store.link(conformance::request(LinkKind::MicrosoftLearning, 99, 99), LinkMode::default(), now).await.unwrap();
        for tombstone in &tombstones {
            store.trees.links.remove(tombstone.id.as_str()).unwrap();
        }
        let tenant = active.work.tenant.clone();
        for kind in [None, Some(LinkKind::MicrosoftLearning)] {
            let page = store.links_of_tenant(&tenant, &ListQuery { kind, include_removed: false, after: None, limit: 10 }).await.unwrap();
            assert_eq!(page.links, std::slice::from_ref(&active));
        }
        let all = ListQuery { kind: None, include_removed: true, after: None, limit: 10 };
        assert!(matches!(store.links_of_tenant(&tenant, &all).await, Err(StoreError::Corrupt { .. })), "the full listing does read them");
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
            [active_prefix(&work.tenant, LinkKind::PartnerUniversity), crate::domain::LinkId::random().as_str().as_bytes().to_vec()]
                .concat();
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
}
