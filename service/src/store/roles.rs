//! The store's roles: what each part of idlink needs of the durable state. A backend
//! implements all of them ([`Store`]); each has its own checks in the conformance suite.

use std::{collections::BTreeMap, time::Duration};

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{Footprint, IntegrityReport, LinkPage, ListQuery, Recomputed, Recorded, RequestQuota, Reservation, Result, StoredOutcome};
use crate::domain::{
    AccountKey, Associations, Certification, Credit, LearningProfile, Link, LinkEvent, LinkKind, LinkMode, Mcid, NewLink, Organization,
    PartnerId, SealedFlow, StateHash, TenantId,
};

/// Pending association flows.
#[async_trait]
pub trait FlowStore: Send + Sync {
    /// Remembers a pending flow (sealed with its state) under the hash of its state. Not
    /// flushed: a flow lost in a crash is simply begun again.
    async fn put_flow(&self, state: &StateHash, flow: &SealedFlow) -> Result<()>;

    /// Removes and returns the flow: a flow is consumed by its first completion attempt.
    async fn take_flow(&self, state: &StateHash) -> Result<Option<SealedFlow>>;

    /// Deletes flows that expired before `now`; returns how many.
    async fn purge_expired_flows(&self, now: DateTime<Utc>) -> Result<usize>;
}

/// Links and tombstones, with their uniqueness indexes.
#[async_trait]
pub trait LinkStore: Send + Sync {
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

    /// Tombstones every active link of a deleted work account (`by` removing them), with
    /// events and credit, atomically; durable when it returns. The tombstones written.
    async fn remove_work_user(&self, work: &AccountKey, by: &AccountKey, now: DateTime<Utc>) -> Result<Vec<Link>>;

    /// The work user's active links, at most one per kind.
    async fn active_links(&self, work: &AccountKey) -> Result<Vec<Link>>;

    /// The work user's latest removed link of this kind (their last tombstone), if any.
    async fn last_removed(&self, kind: LinkKind, work: &AccountKey) -> Result<Option<Link>>;

    /// The associations recorded for this personal account and kind in the last year (`None`
    /// when none were recorded: its links, if any, predate the records).
    async fn associations(&self, kind: LinkKind, personal: &AccountKey) -> Result<Option<Associations>>;

    /// The active link holding this personal account for this kind.
    async fn active_link_of_personal(&self, kind: LinkKind, personal: &AccountKey) -> Result<Option<Link>>;

    /// The links whose work user belongs to `tenant` (the organisation), active and — when
    /// asked — removed ones. Without tombstones, it reads the page, not the tenant's history.
    async fn links_of_tenant(&self, tenant: &TenantId, query: &ListQuery) -> Result<LinkPage>;
}

/// The change feed: link events in commit order.
#[async_trait]
pub trait EventFeed: Send + Sync {
    /// Up to `limit` events after `cursor`, in order; `CursorExpired` when retention already
    /// dropped events the caller has not seen.
    async fn events_after(&self, cursor: u64, limit: usize) -> Result<Vec<LinkEvent>>;

    /// Returns once an event after `cursor` exists, or after `max_wait`.
    async fn wait_for_events(&self, cursor: u64, max_wait: Duration) -> Result<()>;

    /// Drops events older than `before` (retention); returns how many.
    async fn purge_events_before(&self, before: DateTime<Utc>) -> Result<usize>;
}

/// Organisations, certifications and the credit they make.
#[async_trait]
pub trait CreditStore: Send + Sync {
    /// Enrols a tenant in its PartnerID's organisation (moving it out of any other), durably.
    async fn upsert_organization(&self, organization: &Organization) -> Result<()>;

    async fn organization(&self, tenant: &TenantId) -> Result<Option<Organization>>;

    /// The tenants enrolled under a PartnerID, in order, at most `limit`.
    async fn partner_tenants(&self, partner: &PartnerId, limit: usize) -> Result<Vec<TenantId>>;

    /// The credit of each of these organisations' tenants, read at one instant (a transfer
    /// between two of them is seen before or after, never half-way).
    async fn credits(&self, tenants: &[TenantId]) -> Result<Vec<Credit>>;

    /// Records certifications (idempotent per personal account and certification id; a later
    /// expiry renews) and updates the credit of organisations they count for, atomically.
    async fn record_certifications(&self, batch: &[Certification], now: DateTime<Utc>) -> Result<Vec<Recorded>>;

    /// A personal account's achievements, of both sources, as recorded.
    async fn achievements(&self, personal: &AccountKey) -> Result<Vec<Certification>>;

    /// Records Microsoft Learning profiles (idempotent; a later MCID for an account replaces
    /// its earlier one); durable when it returns.
    async fn record_learning_profiles(&self, batch: &[LearningProfile]) -> Result<Vec<Recorded>>;

    /// The MCID of each of these personal accounts' Learning profiles, in order.
    async fn mcids(&self, personal: &[AccountKey]) -> Result<Vec<Option<Mcid>>>;

    /// Marks certifications whose expiry passed by `now` and takes them out of credit.
    async fn expire_certifications(&self, now: DateTime<Utc>) -> Result<usize>;

    /// The organisation's credit as kept incrementally.
    async fn credit(&self, tenant: &TenantId) -> Result<Credit>;

    /// Organisations that have links or stored credit, in order, after `after`.
    async fn credit_tenants(&self, after: Option<&TenantId>, limit: usize) -> Result<Vec<TenantId>>;

    /// Reads the organisation's stored credit, then recomputes it from its links and their
    /// people's certifications.
    async fn recompute(&self, tenant: &TenantId) -> Result<Recomputed>;

    /// Every organisation recomputed in one pass over the holders of crediting links in key
    /// order (their certifications are kept in the same order), for a full recalculation:
    /// versions are read before the pass, so a change during it makes that organisation's
    /// commit fail. Organisations absent have no stored credit and no crediting link.
    /// `None`: this backend has no such pass; recalculate one organisation at a time.
    async fn recompute_all(&self) -> Result<Option<BTreeMap<TenantId, Recomputed>>> {
        Ok(None)
    }

    /// Stores the recomputed credit (durably) if no change touched the organisation's credit
    /// since its version was read; false when one did.
    async fn commit_recomputed(&self, tenant: &TenantId, recomputed: &Recomputed) -> Result<bool>;

    /// Replaces stored credit without recomputation: repair drills and tests only.
    #[cfg(any(test, feature = "test-support"))]
    async fn overwrite_credit(&self, tenant: &TenantId, credit: &Credit) -> Result<()>;
}

/// Remembered answers of idempotent requests, counted against their callers.
#[async_trait]
pub trait RequestLog: Send + Sync {
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
}

/// Everything a replica needs of its store: every role, and what spans them.
#[async_trait]
pub trait Store: FlowStore + LinkStore + EventFeed + CreditStore + RequestLog + 'static {
    /// A random 32-byte secret named `name`, created on first use and kept with the data, so
    /// every replica and restart agrees on it (it signs page tokens).
    async fn secret(&self, name: &str) -> Result<Vec<u8>>;

    /// Cross-checks links and indexes (tests, and the start-up self check).
    async fn check_integrity(&self) -> Result<IntegrityReport>;

    /// Answers when the store is reachable now (health).
    async fn ping(&self) -> Result<()> {
        Ok(())
    }

    /// What the store holds now, for the metrics (cheap: no scan).
    async fn footprint(&self) -> Result<Footprint>;
}
