//! Durable state behind one trait. Backends: [`sled`] (embedded, one replica) and [`redis`]
//! (shared by many replicas). Each passes [`conformance`], the store-agnostic checks, and
//! both make their multi-key changes with the same code, [`changes`]. The store knows nothing of OAuth or gRPC:
//! it asks the domain rules inside its own transaction and writes what they decide —
//! links, both uniqueness indexes, tombstones, change-feed events and credit, atomically.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::domain::{
    AccountKey, Certification, Credit, DomainError, Link, LinkEvent, LinkId, LinkKind, LinkMode, NewLink, Organization, SealedFlow,
    StateHash, TenantId,
};

mod changes;
#[cfg(test)]
pub mod conformance;
pub mod redis;
pub mod sled;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Domain(#[from] DomainError),
    #[error("the store is unavailable: {detail}")]
    Unavailable { detail: String },
    #[error("a stored record is unreadable: {detail}")]
    Corrupt { detail: String },
    #[error("the feed no longer holds events after cursor {cursor}; resume from {oldest}")]
    CursorExpired { cursor: u64, oldest: u64 },
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Found by [`Store::check_integrity`]: every index entry points at an active link with the
/// same key, and every active link is in both uniqueness indexes.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct IntegrityReport {
    pub active_links: usize,
    pub tombstones: usize,
    pub problems: Vec<String>,
}

/// Which of an organisation's links to list, and where to resume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListQuery {
    pub kind: Option<LinkKind>,
    pub include_removed: bool,
    /// Resume after this link (links are listed in a stable order of their ids).
    pub after: Option<LinkId>,
    pub limit: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkPage {
    pub links: Vec<Link>,
    /// Set when more links may follow: pass it back as `after`.
    pub next: Option<LinkId>,
}

/// What happened to one certification of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    Accepted,
    /// Already recorded with the same or a later expiry: nothing changed.
    Duplicate,
}

/// An organisation's stored credit against a recomputation from the source records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recalculation {
    pub stored: Credit,
    pub recomputed: Credit,
}

/// A recomputation before it is committed: the stored credit and the version of its record
/// (every change moves it), read first, then the credit recomputed from links and
/// certifications. An organisation with no stored credit has version 0.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recomputed {
    pub stored: Credit,
    pub version: u64,
    pub recomputed: Credit,
}

impl From<Recomputed> for Recalculation {
    fn from(r: Recomputed) -> Self {
        Self { stored: r.stored, recomputed: r.recomputed }
    }
}

/// The remembered answer of an idempotent request: a response (`code` 0, `body` the encoded
/// message) or a definitive refusal (`body` the status details).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StoredOutcome {
    pub code: i32,
    pub message: String,
    pub body: Vec<u8>,
}

/// An idempotency record as stored.
#[derive(serde::Serialize, serde::Deserialize)]
struct RequestRecord {
    fingerprint: String,
    created_at: DateTime<Utc>,
    outcome: Option<StoredOutcome>,
}

impl RequestRecord {
    /// What a new attempt with `fingerprint` finds in this record; `None`: the reservation
    /// is stale (its owner died) and may be taken over.
    fn found_by(self, fingerprint: &str, stale_before: DateTime<Utc>) -> Option<Reservation> {
        if self.fingerprint != fingerprint {
            return Some(Reservation::Mismatch);
        }
        if let Some(outcome) = self.outcome {
            return Some(Reservation::Done(outcome));
        }
        (self.created_at >= stale_before).then_some(Reservation::InFlight)
    }
}

/// How many request ids one caller may have remembered, per day (UTC): remembering costs the
/// store, so no caller gets it for free (invariant 12).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestQuota<'a> {
    /// Who is calling, as the idempotency layer names them.
    pub caller: &'a str,
    pub per_day: u32,
}

/// The day a request id counts against its caller's quota.
pub(crate) fn quota_day(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%d").to_string()
}

/// How long until the next quota day starts.
fn until_next_quota_day(now: DateTime<Utc>) -> Duration {
    let next = (now.date_naive() + chrono::Days::new(1)).and_hms_opt(0, 0, 0).map(|t| t.and_utc());
    next.and_then(|next| (next - now).to_std().ok()).unwrap_or(Duration::from_secs(1)).max(Duration::from_secs(1))
}

/// What [`Store::reserve_request`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reservation {
    /// Ours to run: call [`Store::finish_request`] afterwards.
    Reserved,
    /// Another attempt with this id is running now.
    InFlight,
    /// Already answered.
    Done(StoredOutcome),
    /// This id was used for a different request.
    Mismatch,
    /// The caller has used up today's quota of request ids; a new one is accepted after this.
    OverQuota { retry_after: Duration },
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Remembers a pending flow (sealed with its state) under the hash of its state. Not
    /// flushed: a flow lost in a crash is simply begun again.
    async fn put_flow(&self, state: &StateHash, flow: &SealedFlow) -> Result<()>;

    /// Removes and returns the flow: a flow is consumed by its first completion attempt.
    async fn take_flow(&self, state: &StateHash) -> Result<Option<SealedFlow>>;

    /// Deletes flows that expired before `now`; returns how many.
    async fn purge_expired_flows(&self, now: DateTime<Utc>) -> Result<usize>;

    /// Records a verified association per [`crate::domain::plan_link`], atomically with the
    /// two uniqueness indexes, tombstones, events and credit; durable when it returns.
    async fn link(&self, new: NewLink, mode: LinkMode, now: DateTime<Utc>) -> Result<Link>;

    /// "Remove access" per [`crate::domain::plan_remove`]; durable when it returns.
    async fn remove(
        &self,
        kind: LinkKind,
        work: &AccountKey,
        by: &AccountKey,
        reason: &str,
        expected_etag: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<Link>;

    /// The work user's active links, at most one per kind.
    async fn active_links(&self, work: &AccountKey) -> Result<Vec<Link>>;

    /// The active link holding this personal account for this kind.
    async fn active_link_of_personal(&self, kind: LinkKind, personal: &AccountKey) -> Result<Option<Link>>;

    /// The links whose work user belongs to `tenant` (the organisation), active and — when
    /// asked — removed ones.
    async fn links_of_tenant(&self, tenant: &TenantId, query: &ListQuery) -> Result<LinkPage>;

    /// Up to `limit` events after `cursor`, in order; `CursorExpired` when retention already
    /// dropped events the caller has not seen.
    async fn events_after(&self, cursor: u64, limit: usize) -> Result<Vec<LinkEvent>>;

    /// Returns once an event after `cursor` exists, or after `max_wait`.
    async fn wait_for_events(&self, cursor: u64, max_wait: Duration) -> Result<()>;

    /// Drops events older than `before` (retention); returns how many.
    async fn purge_events_before(&self, before: DateTime<Utc>) -> Result<usize>;

    async fn upsert_organization(&self, organization: &Organization) -> Result<()>;

    async fn organization(&self, tenant: &TenantId) -> Result<Option<Organization>>;

    /// Records certifications (idempotent per personal account and certification id; a later
    /// expiry renews) and updates the credit of organisations they count for, atomically.
    async fn record_certifications(&self, batch: &[Certification], now: DateTime<Utc>) -> Result<Vec<Recorded>>;

    /// Marks certifications whose expiry passed by `now` and takes them out of credit.
    async fn expire_certifications(&self, now: DateTime<Utc>) -> Result<usize>;

    /// The organisation's credit as kept incrementally.
    async fn credit(&self, tenant: &TenantId) -> Result<Credit>;

    /// Organisations that have links or stored credit, in order, after `after`.
    async fn credit_tenants(&self, after: Option<&TenantId>, limit: usize) -> Result<Vec<TenantId>>;

    /// Reads the organisation's stored credit, then recomputes it from its links and their
    /// people's certifications.
    async fn recompute(&self, tenant: &TenantId) -> Result<Recomputed>;

    /// Every organisation recomputed in one pass over the Microsoft Learning holders in key
    /// order (their certifications are kept in the same order), for a full recalculation:
    /// versions are read before the pass, so a change during it makes that organisation's
    /// commit fail. Organisations absent have no stored credit and no Microsoft Learning link.
    /// `None`: this backend has no such pass; recalculate one organisation at a time.
    async fn recompute_all(&self) -> Result<Option<BTreeMap<TenantId, Recomputed>>> {
        Ok(None)
    }

    /// Stores the recomputed credit (durably) if no change touched the organisation's credit
    /// since its version was read; false when one did.
    async fn commit_recomputed(&self, tenant: &TenantId, recomputed: &Recomputed) -> Result<bool>;

    /// Recomputes the organisation's credit and stores it when it drifted, consistently with
    /// concurrent writers (recomputing again when one changed it meanwhile).
    async fn recalculate(&self, tenant: &TenantId) -> Result<Recalculation> {
        for _ in 0..16 {
            let recomputed = self.recompute(tenant).await?;
            if self.commit_recomputed(tenant, &recomputed).await? {
                return Ok(recomputed.into());
            }
        }
        Err(StoreError::Unavailable { detail: format!("credit of {} kept changing during recalculation", tenant.as_str()) })
    }

    /// Replaces stored credit without recomputation: repair drills and tests only.
    async fn overwrite_credit(&self, tenant: &TenantId, credit: &Credit) -> Result<()>;

    /// Reserves an idempotency key for a request with this fingerprint, counting a key not seen
    /// before against the caller's quota for the day of `now` (atomically: racing first
    /// attempts count once, and never past the quota). A reservation older than
    /// `stale_before` (its owner died) is taken over.
    async fn reserve_request(
        &self,
        key: &str,
        fingerprint: &str,
        quota: RequestQuota<'_>,
        now: DateTime<Utc>,
        stale_before: DateTime<Utc>,
    ) -> Result<Reservation>;

    /// Records the answer of a reserved request (durably), or releases it (`None`), giving its
    /// count back to `caller`'s quota.
    async fn finish_request(&self, key: &str, caller: &str, outcome: Option<StoredOutcome>) -> Result<()>;

    /// Forgets every idempotency record created before `before`, and the quota counts of days
    /// before it; returns how many records.
    async fn purge_requests_before(&self, before: DateTime<Utc>) -> Result<usize>;

    /// A random 32-byte secret named `name`, created on first use and kept with the data, so
    /// every replica and restart agrees on it (it signs page tokens).
    async fn secret(&self, name: &str) -> Result<Vec<u8>>;

    /// Cross-checks links and indexes (tests, and the start-up self check).
    async fn check_integrity(&self) -> Result<IntegrityReport>;

    /// Answers when the store is reachable now (health).
    async fn ping(&self) -> Result<()> {
        Ok(())
    }
}

pub type DynStore = Arc<dyn Store>;

/// Tells this replica's watchers that events up to `cursor` are committed.
fn announce(feed: &tokio::sync::watch::Sender<u64>, cursor: u64) {
    feed.send_if_modified(|current| {
        let newer = cursor > *current;
        *current = (*current).max(cursor);
        newer
    });
}
