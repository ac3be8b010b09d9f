//! Durable state behind one trait. Backends: [`sled`] (embedded, one replica). Each passes
//! [`conformance`], the store-agnostic checks. The store knows nothing of OAuth or gRPC:
//! it asks the domain rules inside its own transaction and writes what they decide.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::domain::{AccountKey, DomainError, Flow, Link, LinkId, LinkKind, LinkMode, NewLink, StateHash, TenantId};

#[cfg(test)]
pub mod conformance;
pub mod sled;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Domain(#[from] DomainError),
    #[error("the store is unavailable: {detail}")]
    Unavailable { detail: String },
    #[error("a stored record is unreadable: {detail}")]
    Corrupt { detail: String },
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

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Remembers a pending flow under the hash of its state. Not flushed: a flow lost in a
    /// crash is simply begun again.
    async fn put_flow(&self, state: &StateHash, flow: &Flow) -> Result<()>;

    /// Removes and returns the flow: a flow is consumed by its first completion attempt.
    async fn take_flow(&self, state: &StateHash) -> Result<Option<Flow>>;

    /// Deletes flows that expired before `now`; returns how many.
    async fn purge_expired_flows(&self, now: DateTime<Utc>) -> Result<usize>;

    /// Records a verified association per [`crate::domain::plan_link`], atomically with the
    /// two uniqueness indexes and any tombstones; durable when it returns.
    async fn link(&self, new: NewLink, mode: LinkMode, now: DateTime<Utc>) -> Result<Link>;

    /// "Remove access" per [`crate::domain::plan_remove`]; durable when it returns.
    async fn remove(&self, kind: LinkKind, work: &AccountKey, by: &AccountKey, reason: &str, now: DateTime<Utc>) -> Result<Link>;

    /// The work user's active links, at most one per kind.
    async fn active_links(&self, work: &AccountKey) -> Result<Vec<Link>>;

    /// The active link holding this personal account for this kind.
    async fn active_link_of_personal(&self, kind: LinkKind, personal: &AccountKey) -> Result<Option<Link>>;

    /// The links whose work user belongs to `tenant` (the organisation), active and — when
    /// asked — removed ones.
    async fn links_of_tenant(&self, tenant: &TenantId, query: &ListQuery) -> Result<LinkPage>;

    /// A random 32-byte secret named `name`, created on first use and kept with the data, so
    /// every replica and restart agrees on it (it signs page tokens).
    async fn secret(&self, name: &str) -> Result<Vec<u8>>;

    /// Cross-checks links and indexes (tests, and the start-up self check).
    async fn check_integrity(&self) -> Result<IntegrityReport>;
}

pub type DynStore = Arc<dyn Store>;
