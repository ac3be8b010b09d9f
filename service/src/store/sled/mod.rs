//! The embedded backend. One sled database, one tree per record type; every multi-key
//! change is one sled transaction ([`tx::Tx`]), and a mutation returns only after the log
//! is flushed (group commit: concurrent writers share one flush). Link writes are combined:
//! those of concurrent callers commit in one transaction and one flush ([`combine`]).

mod combine;
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
use tx::{Tx, TxError, Views};

use super::{
    CreditStore, EventFeed, FlowStore, IntegrityReport, LinkPage, LinkStore, ListQuery, Recomputed, Recorded, RequestLog, RequestQuota,
    RequestRecord, Reservation, Result, Store, StoreError, StoredOutcome,
    changes::{
        self, StoredCredit, Table, active_prefix, decode, encode, entry_link_id, entry_tenant, expiry_bound, index_key, index_prefix,
        partner_key_tenant, partner_prefix, partner_tenant_key, personal_key, tenant_key,
    },
};
use crate::domain::{
    AccountKey, Associations, Catalog, Certification, Credit, Link, LinkEvent, LinkKind, LinkMode, NewLink, Organization, SealedFlow,
    StateHash, TenantId,
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
    /// personal account → its Learning profile's MCID.
    profiles: sled::Tree,
    /// tenant → its credit.
    credit: sled::Tree,
    /// (expiry time, personal account, certification id) → ().
    expiry: sled::Tree,
    /// tenant → its organisation (enrolment).
    orgs: sled::Tree,
    /// (PartnerID, tenant) → (): each organisation's tenants.
    partner_tenants: sled::Tree,
    /// (kind, personal account) → its associations of the last year.
    associations: sled::Tree,
}

impl Trees {
    /// Every tree a change may touch, in the order of [`tx::TREES`].
    fn in_order(&self) -> Vec<&sled::Tree> {
        let mut trees: Vec<&sled::Tree> = Table::ALL.iter().map(|table| self.of(*table)).collect();
        trees.extend([&self.events, &self.meta]);
        trees
    }

    /// The tree of a table of [`changes`].
    fn of(&self, table: Table) -> &sled::Tree {
        match table {
            Table::Links => &self.links,
            Table::ByWork => &self.by_work,
            Table::ByPersonal => &self.by_personal,
            Table::LastRemoved => &self.last_removed,
            Table::ByTenant => &self.by_tenant,
            Table::ActiveByTenant => &self.active_by_tenant,
            Table::Certs => &self.certs,
            Table::Credit => &self.credit,
            Table::Profiles => &self.profiles,
            Table::Orgs => &self.orgs,
            Table::PartnerTenants => &self.partner_tenants,
            Table::Expiry => &self.expiry,
            Table::Associations => &self.associations,
        }
    }
}

pub struct SledStore {
    db: sled::Db,
    trees: Trees,
    flows: sled::Tree,
    /// idempotency key → request fingerprint and, once answered, the answer.
    requests: sled::Tree,
    /// (created at, idempotency key) → (): what the purge drops, oldest first.
    requests_by_time: sled::Tree,
    /// (quota day, caller) → request ids counted that day (u64 big-endian).
    request_counts: sled::Tree,
    catalog: Arc<Catalog>,
    commit: GroupCommit,
    /// Link writes of concurrent callers, one transaction and one flush a batch; `None` runs
    /// each in its own.
    combiner: Option<combine::Combiner>,
    /// The last committed event cursor, for watchers.
    feed: Arc<tokio::sync::watch::Sender<u64>>,
}

/// How the embedded store is opened.
#[derive(Debug, Clone, Copy)]
pub struct SledOptions {
    /// Bounds sled's page cache, the bulk of the process's memory.
    pub cache_bytes: u64,
    /// Combine concurrent link writes into one transaction and one flush.
    pub write_combining: bool,
    /// zstd-compress pages on disk (a new store; an existing one keeps what it was created
    /// with, sled cannot change it).
    pub compression: bool,
}

impl Default for SledOptions {
    fn default() -> Self {
        Self { cache_bytes: DEFAULT_CACHE_BYTES, write_combining: true, compression: false }
    }
}

/// sled's configuration of the store at `path` as idlink opens it, for tools that read its
/// trees directly: its cache bounded, its compression the one it was created with.
pub fn raw_config(path: &Path, cache_bytes: u64) -> sled::Config {
    config(path, cache_bytes, created_compressed(path).unwrap_or(SledOptions::default().compression))
}

fn config(path: &Path, cache_bytes: u64, compression: bool) -> sled::Config {
    sled::Config::new().path(path).cache_capacity(cache_bytes).use_compression(compression).compression_factor(COMPRESSION_LEVEL)
}

/// Whether the store at `path` was created with compression (`None`: no store there yet),
/// from the `conf` file sled keeps beside its data.
fn created_compressed(path: &Path) -> Option<bool> {
    // Its lines of text end with a checksum in binary.
    let conf = std::fs::read(path.join("conf")).ok()?;
    String::from_utf8_lossy(&conf).lines().find_map(|line| line.strip_prefix("use_compression: ")).map(|value| value.trim() == "true")
}

const PURGED_THROUGH: &[u8] = b"events_purged_through";
const REQUESTS_LAYOUT: &[u8] = b"requests_layout";
const ACTIVE_INDEX: &[u8] = b"active_index_built";
/// Set once every organisation is in the partner index.
const PARTNER_INDEX: &[u8] = b"partner_index_built";
/// The record format every stored value is in ([`changes::COMPACT_FORMAT`]); absent in
/// stores of JSON records.
const RECORD_FORMAT: &[u8] = b"record_format";

/// A `requests_by_time` key: the sortable creation time, then the idempotency key.
fn request_time_key(at: DateTime<Utc>, key: &str) -> Vec<u8> {
    [&changes::sortable_micros(at).to_be_bytes()[..], key.as_bytes()].concat()
}

/// A `request_counts` key: the day, then the caller (days sort first, for the purge).
fn request_count_key(day: &str, caller: &str) -> Vec<u8> {
    format!("{day}\0{caller}").into_bytes()
}

/// zstd's level for pages: its default, the cheap end of what still shrinks them.
const COMPRESSION_LEVEL: i32 = 3;

/// sled's own default is 1 GiB; idlink's working set is far smaller.
pub const DEFAULT_CACHE_BYTES: u64 = 128 * 1024 * 1024;

pub(super) fn unavailable(e: sled::Error) -> StoreError {
    StoreError::Unavailable { detail: e.to_string() }
}

fn read_u64(bytes: Option<sled::IVec>) -> u64 {
    bytes.and_then(|b| b.as_ref().try_into().ok()).map(u64::from_be_bytes).unwrap_or(0)
}

impl SledStore {
    pub fn open(path: &Path, catalog: Arc<Catalog>) -> Result<Self> {
        Self::open_with(path, catalog, SledOptions::default())
    }

    pub fn open_with(path: &Path, catalog: Arc<Catalog>, options: SledOptions) -> Result<Self> {
        let compression = match created_compressed(path) {
            Some(created) if created != options.compression => {
                tracing::warn!(created, configured = options.compression, "the store keeps the compression it was created with");
                created
            }
            _ => options.compression,
        };
        let db = config(path, options.cache_bytes, compression).open().map_err(unavailable)?;
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
            profiles: tree("learning_profiles")?,
            credit: tree("credit")?,
            expiry: tree("certification_expiry")?,
            orgs: tree("organizations")?,
            partner_tenants: tree("organizations_by_partner")?,
            associations: tree("associations")?,
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
        }
        if trees.meta.get(PARTNER_INDEX).map_err(unavailable)?.is_none() {
            // Stores from before organisations had several tenants: index each by its PartnerID.
            for entry in trees.orgs.iter() {
                let (_, bytes) = entry.map_err(unavailable)?;
                let organization: Organization = decode(&bytes)?;
                trees
                    .partner_tenants
                    .insert(partner_tenant_key(&organization.partner_id, &organization.tenant), &[])
                    .map_err(unavailable)?;
            }
            trees.meta.insert(PARTNER_INDEX, b"1").map_err(unavailable)?;
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
        let feed = Arc::new(tokio::sync::watch::Sender::new(last_event));
        let combiner = match options.write_combining {
            true => Some(
                combine::Combiner::start(db.clone(), trees.in_order().into_iter().cloned().collect(), feed.clone())
                    .map_err(|e| StoreError::Unavailable { detail: format!("cannot start the store's committer: {e}") })?,
            ),
            false => None,
        };
        let flows = tree("flows")?;
        if trees.meta.get(RECORD_FORMAT).map_err(unavailable)?.as_deref() != Some(&[changes::COMPACT_FORMAT]) {
            recode_all(&trees, &flows, &requests)?;
            db.flush().map_err(unavailable)?;
            trees.meta.insert(RECORD_FORMAT, &[changes::COMPACT_FORMAT]).map_err(unavailable)?;
            db.flush().map_err(unavailable)?;
        }
        Ok(Self {
            flows,
            requests,
            requests_by_time,
            request_counts,
            trees,
            catalog,
            commit: GroupCommit::new(db.clone()),
            combiner,
            feed,
            db,
        })
    }

    /// Link-write batches committed so far and the changes in them (`None` without write
    /// combining).
    pub fn combined(&self) -> Option<(u64, u64)> {
        self.combiner.as_ref().map(combine::Combiner::tally)
    }

    /// Blocks until everything written so far is on disk.
    pub fn flush(&self) -> Result<()> {
        self.db.flush().map(drop).map_err(unavailable)
    }

    /// Runs `f` in one transaction over every tree a change touches; returns its result and
    /// the cursor of the last event it appended.
    fn transact<T>(&self, f: impl Fn(&Tx<'_>) -> std::result::Result<T, TxError>) -> Result<(T, Option<u64>)> {
        let trees = self.trees.in_order();
        let result = trees.as_slice().transaction(|views| {
            let tx = Tx { views, last_event: std::cell::Cell::new(None) };
            Ok((f(&tx)?, tx.last_event.get()))
        });
        result.map_err(|e| match e {
            TransactionError::Abort(e) => e,
            TransactionError::Storage(e) => unavailable(e),
        })
    }

    /// Runs a link change, durable when it returns: combined with those of concurrent
    /// callers when so opened, else in a transaction of its own.
    async fn write<T, F>(&self, change: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnMut(&dyn Views) -> std::result::Result<T, TxError> + Send + 'static,
    {
        if let Some(combiner) = &self.combiner {
            return combiner.run(change).await;
        }
        let (value, last_event) = {
            let change = std::cell::RefCell::new(change);
            self.transact(|tx| (change.borrow_mut())(tx))?
        };
        // Also for an unchanged link: its creator's flush may not have finished yet.
        self.committed(last_event).await?;
        Ok(value)
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
}

/// Rewrites every record of before the compact format in it, tree by tree. Both formats are
/// read, so a pass cut short by a crash is simply run again on the next open.
fn recode_all(trees: &Trees, flows: &sled::Tree, requests: &sled::Tree) -> Result<usize> {
    use crate::domain::{Mcid, SealedFlow};
    let started = std::time::Instant::now();
    let recoded = recode::<Link>(&trees.links)?
        + recode::<Vec<Certification>>(&trees.certs)?
        + recode::<StoredCredit>(&trees.credit)?
        + recode::<Mcid>(&trees.profiles)?
        + recode::<Organization>(&trees.orgs)?
        + recode::<Associations>(&trees.associations)?
        + recode::<LinkEvent>(&trees.events)?
        + recode::<SealedFlow>(flows)?
        + recode::<super::RequestRecord>(requests)?;
    if recoded > 0 {
        tracing::info!(recoded, seconds = started.elapsed().as_secs_f64(), "stored records rewritten in the compact format");
    }
    Ok(recoded)
}

/// Rewrites the records of `tree` that are not in the current format; answers how many.
fn recode<T: serde::Serialize + serde::de::DeserializeOwned>(tree: &sled::Tree) -> Result<usize> {
    const BATCH: usize = 1024;
    let (mut recoded, mut batch, mut batched) = (0, sled::Batch::default(), 0);
    for entry in tree.iter() {
        let (key, value) = entry.map_err(unavailable)?;
        if changes::is_current(&value) {
            continue;
        }
        batch.insert(key, encode(&decode::<T>(&value)?)?);
        (recoded, batched) = (recoded + 1, batched + 1);
        if batched == BATCH {
            tree.apply_batch(std::mem::take(&mut batch)).map_err(unavailable)?;
            batched = 0;
        }
    }
    tree.apply_batch(batch).map_err(unavailable)?;
    Ok(recoded)
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

mod credit;
mod events;
mod flows;
mod integrity;
mod links;
mod requests;

#[cfg(test)]
mod tests;

/// Entries handled per transaction by the sweeps (certification expiry, request retention).
const EXPIRY_BATCH: usize = 256;
