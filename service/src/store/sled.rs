//! The embedded backend. One sled database, one tree per record type; every multi-key
//! change is one sled transaction, and a mutation returns only after the log is flushed
//! (group commit: concurrent writers share one flush).

use std::{
    path::Path,
    sync::atomic::{AtomicU64, Ordering},
};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Serialize, de::DeserializeOwned};
use sled::{
    Transactional,
    transaction::{ConflictableTransactionError, TransactionError, TransactionalTree},
};

use super::{IntegrityReport, LinkPage, ListQuery, Result, Store, StoreError};
use crate::domain::{
    AccountKey, Flow, Link, LinkId, LinkKind, LinkMode, LinkPlan, NewLink, RemovePlan, StateHash, TenantId, plan_link, plan_remove,
};

pub struct SledStore {
    db: sled::Db,
    links: sled::Tree,
    /// (kind, work account) → id of its active link.
    by_work: sled::Tree,
    /// (kind, personal account) → id of the active link holding it.
    by_personal: sled::Tree,
    /// (kind, work account) → id of its latest tombstone, for idempotent removal.
    last_removed: sled::Tree,
    /// (work tenant, link id) → (): every link and tombstone of an organisation.
    by_tenant: sled::Tree,
    flows: sled::Tree,
    meta: sled::Tree,
    commit: GroupCommit,
}

impl SledStore {
    pub fn open(path: &Path) -> Result<Self> {
        let db = sled::Config::new().path(path).open().map_err(unavailable)?;
        let tree = |name: &str| db.open_tree(name).map_err(unavailable);
        Ok(Self {
            links: tree("links")?,
            by_work: tree("links_by_work")?,
            by_personal: tree("links_by_personal")?,
            last_removed: tree("links_last_removed")?,
            by_tenant: tree("links_by_tenant")?,
            flows: tree("flows")?,
            meta: tree("meta")?,
            commit: GroupCommit::new(db.clone()),
            db,
        })
    }

    /// Blocks until everything written so far is on disk.
    pub fn flush(&self) -> Result<()> {
        self.db.flush().map(drop).map_err(unavailable)
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

fn unavailable(e: sled::Error) -> StoreError {
    StoreError::Unavailable { detail: e.to_string() }
}

fn index_key(kind: LinkKind, account: &AccountKey) -> Vec<u8> {
    format!("{}\0{}\0{}", kind.key(), account.tenant.as_str(), account.object.as_str()).into_bytes()
}

fn tenant_key(tenant: &TenantId, id: Option<&LinkId>) -> Vec<u8> {
    format!("{}\0{}", tenant.as_str(), id.map(LinkId::as_str).unwrap_or_default()).into_bytes()
}

fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(value).map_err(|e| StoreError::Corrupt { detail: e.to_string() })
}

fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt { detail: e.to_string() })
}

type TxResult<T> = std::result::Result<T, ConflictableTransactionError<StoreError>>;

fn tx_abort<T>(e: impl Into<StoreError>) -> TxResult<T> {
    Err(ConflictableTransactionError::Abort(e.into()))
}

fn tx_load(links: &TransactionalTree, index: &TransactionalTree, key: &[u8]) -> TxResult<Option<Link>> {
    let Some(id) = index.get(key)? else {
        return Ok(None);
    };
    match links.get(&id)? {
        Some(bytes) => decode(&bytes).map(Some).or_else(tx_abort),
        None => tx_abort(StoreError::Corrupt { detail: "an index points at a missing link".into() }),
    }
}

fn tx_put(links: &TransactionalTree, link: &Link) -> TxResult<()> {
    let bytes = encode(link).or_else(tx_abort)?;
    links.insert(link.id.as_str().as_bytes(), bytes)?;
    Ok(())
}

fn tx_finish<T>(r: std::result::Result<T, TransactionError<StoreError>>) -> Result<T> {
    r.map_err(|e| match e {
        TransactionError::Abort(e) => e,
        TransactionError::Storage(e) => unavailable(e),
    })
}

impl SledStore {
    fn apply_link(&self, new: &NewLink, mode: LinkMode, now: DateTime<Utc>) -> Result<Link> {
        let work_key = index_key(new.kind, &new.work);
        let personal_key = index_key(new.kind, &new.personal);
        tx_finish((&self.links, &self.by_work, &self.by_personal, &self.last_removed, &self.by_tenant).transaction(
            |(links, by_work, by_personal, last_removed, by_tenant)| {
                let of_work = tx_load(links, by_work, &work_key)?;
                let of_personal = tx_load(links, by_personal, &personal_key)?;
                let plan = plan_link(new.clone(), mode, of_work.as_ref(), of_personal.as_ref(), now).or_else(tx_abort)?;
                match plan {
                    LinkPlan::Unchanged(link) => Ok(link),
                    LinkPlan::Create { create, retire } => {
                        for old in &retire {
                            tx_put(links, old)?;
                            let old_work = index_key(old.kind, &old.work);
                            by_work.remove(old_work.as_slice())?;
                            by_personal.remove(index_key(old.kind, &old.personal))?;
                            last_removed.insert(old_work, old.id.as_str().as_bytes())?;
                        }
                        tx_put(links, &create)?;
                        by_tenant.insert(tenant_key(&create.work.tenant, Some(&create.id)), &[])?;
                        by_work.insert(work_key.as_slice(), create.id.as_str().as_bytes())?;
                        by_personal.insert(personal_key.as_slice(), create.id.as_str().as_bytes())?;
                        Ok(create)
                    }
                }
            },
        ))
    }

    fn apply_remove(&self, kind: LinkKind, work: &AccountKey, by: &AccountKey, reason: &str, now: DateTime<Utc>) -> Result<Link> {
        let work_key = index_key(kind, work);
        tx_finish((&self.links, &self.by_work, &self.by_personal, &self.last_removed).transaction(
            |(links, by_work, by_personal, last_removed)| {
                let active = tx_load(links, by_work, &work_key)?;
                let tombstone = tx_load(links, last_removed, &work_key)?;
                match plan_remove(kind, active.as_ref(), tombstone, by, reason, now).or_else(tx_abort)? {
                    RemovePlan::AlreadyRemoved(tombstone) => Ok(tombstone),
                    RemovePlan::Retire(tombstone) => {
                        tx_put(links, &tombstone)?;
                        by_work.remove(work_key.as_slice())?;
                        by_personal.remove(index_key(kind, &tombstone.personal))?;
                        last_removed.insert(work_key.as_slice(), tombstone.id.as_str().as_bytes())?;
                        Ok(tombstone)
                    }
                }
            },
        ))
    }

    fn load_indexed(&self, index: &sled::Tree, key: &[u8]) -> Result<Option<Link>> {
        let Some(id) = index.get(key).map_err(unavailable)? else {
            return Ok(None);
        };
        match self.links.get(&id).map_err(unavailable)? {
            Some(bytes) => decode(&bytes).map(Some),
            None => Err(StoreError::Corrupt { detail: "an index points at a missing link".into() }),
        }
    }

    fn check_index(&self, index: &sled::Tree, name: &str, side: fn(&Link) -> &AccountKey, report: &mut IntegrityReport) -> Result<()> {
        for entry in index.iter() {
            let (key, id) = entry.map_err(unavailable)?;
            let Some(bytes) = self.links.get(&id).map_err(unavailable)? else {
                report.problems.push(format!("{name}: entry points at missing link {}", String::from_utf8_lossy(&id)));
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

#[async_trait]
impl Store for SledStore {
    async fn put_flow(&self, state: &StateHash, flow: &Flow) -> Result<()> {
        self.flows.insert(state.as_str(), encode(flow)?).map_err(unavailable)?;
        Ok(())
    }

    async fn take_flow(&self, state: &StateHash) -> Result<Option<Flow>> {
        match self.flows.remove(state.as_str()).map_err(unavailable)? {
            Some(bytes) => decode(&bytes).map(Some),
            None => Ok(None),
        }
    }

    async fn purge_expired_flows(&self, now: DateTime<Utc>) -> Result<usize> {
        let mut purged = 0;
        for entry in self.flows.iter() {
            let (key, bytes) = entry.map_err(unavailable)?;
            // An unreadable flow can never complete: purge it too.
            let expired = decode::<Flow>(&bytes).map(|f| f.is_expired(now)).unwrap_or(true);
            // Compare-and-swap: a flow taken meanwhile is not counted twice.
            if expired && self.flows.compare_and_swap(&key, Some(bytes), None::<&[u8]>).map_err(unavailable)?.is_ok() {
                purged += 1;
            }
        }
        Ok(purged)
    }

    async fn link(&self, new: NewLink, mode: LinkMode, now: DateTime<Utc>) -> Result<Link> {
        let link = self.apply_link(&new, mode, now)?;
        // Also for an unchanged link: its creator's flush may not have finished yet.
        self.commit.durable().await?;
        Ok(link)
    }

    async fn remove(&self, kind: LinkKind, work: &AccountKey, by: &AccountKey, reason: &str, now: DateTime<Utc>) -> Result<Link> {
        let tombstone = self.apply_remove(kind, work, by, reason, now)?;
        self.commit.durable().await?;
        Ok(tombstone)
    }

    async fn active_links(&self, work: &AccountKey) -> Result<Vec<Link>> {
        let mut links = Vec::new();
        for kind in LinkKind::ALL {
            links.extend(self.load_indexed(&self.by_work, &index_key(kind, work))?);
        }
        Ok(links)
    }

    async fn active_link_of_personal(&self, kind: LinkKind, personal: &AccountKey) -> Result<Option<Link>> {
        self.load_indexed(&self.by_personal, &index_key(kind, personal))
    }

    async fn links_of_tenant(&self, tenant: &TenantId, query: &ListQuery) -> Result<LinkPage> {
        let prefix = tenant_key(tenant, None);
        // Link ids have a fixed length, so `id\0` sorts right after `id` and before any later id.
        let start = match &query.after {
            Some(after) => [tenant_key(tenant, Some(after)), vec![0]].concat(),
            None => prefix.clone(),
        };
        let mut links = Vec::new();
        for entry in self.by_tenant.range(start..) {
            let (key, _) = entry.map_err(unavailable)?;
            if !key.starts_with(&prefix) {
                break;
            }
            let Some(bytes) = self.links.get(&key[prefix.len()..]).map_err(unavailable)? else {
                return Err(StoreError::Corrupt { detail: "the tenant index points at a missing link".into() });
            };
            let link: Link = decode(&bytes)?;
            if query.kind.is_some_and(|k| k != link.kind) || (!query.include_removed && !link.is_active()) {
                continue;
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

    async fn secret(&self, name: &str) -> Result<Vec<u8>> {
        let key = format!("secret/{name}");
        if let Some(existing) = self.meta.get(&key).map_err(unavailable)? {
            return Ok(existing.to_vec());
        }
        let fresh = rand::random::<[u8; 32]>().to_vec();
        // Two first users race: the first write wins and both use it.
        match self.meta.compare_and_swap(&key, None::<&[u8]>, Some(fresh.as_slice())).map_err(unavailable)? {
            Ok(()) => {
                self.commit.durable().await?;
                Ok(fresh)
            }
            Err(conflict) => conflict.current.map(|c| c.to_vec()).ok_or_else(|| StoreError::Corrupt { detail: "secret vanished".into() }),
        }
    }

    async fn check_integrity(&self) -> Result<IntegrityReport> {
        let mut report = IntegrityReport::default();
        self.check_index(&self.by_work, "by_work", |l| &l.work, &mut report)?;
        self.check_index(&self.by_personal, "by_personal", |l| &l.personal, &mut report)?;
        for entry in self.links.iter() {
            let (id, bytes) = entry.map_err(unavailable)?;
            let link: Link = decode(&bytes)?;
            if !self.by_tenant.contains_key(tenant_key(&link.work.tenant, Some(&link.id))).map_err(unavailable)? {
                report.problems.push(format!("link {} is missing from by_tenant", link.id.as_str()));
            }
            if !link.is_active() {
                report.tombstones += 1;
                continue;
            }
            report.active_links += 1;
            for (index, side, name) in [(&self.by_work, &link.work, "by_work"), (&self.by_personal, &link.personal, "by_personal")] {
                if index.get(index_key(link.kind, side)).map_err(unavailable)?.as_deref() != Some(id.as_ref()) {
                    report.problems.push(format!("active link {} is missing from {name}", link.id.as_str()));
                }
            }
        }
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::conformance;

    fn open() -> (tempfile::TempDir, std::sync::Arc<SledStore>) {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        (dir, std::sync::Arc::new(store))
    }

    conformance::suite!(open);
}
