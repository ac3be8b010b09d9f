//! Durable state behind the traits of [`roles`], one per part of idlink that needs it (flows,
//! links, the change feed, credit, remembered requests), and [`Store`] for all of them.
//! Backends: [`sled`] (embedded, one replica) and [`redis`] (shared by many replicas). Each
//! passes the conformance suite, the store-agnostic checks, and both make their multi-key
//! changes with the same code, [`changes`]. The store knows nothing of OAuth or gRPC: it asks
//! the domain rules inside its own transaction and writes what they decide — links, both
//! uniqueness indexes, tombstones, change-feed events and credit, atomically.

use std::{sync::Arc, time::Duration};

use chrono::{DateTime, Utc};

use crate::domain::{Credit, DomainError, Link, LinkId, LinkKind};

mod changes;
#[cfg(test)]
pub mod conformance;
mod keys;
pub mod redis;
mod roles;
pub mod sled;

pub use roles::{CreditStore, EventFeed, FlowStore, LinkStore, RequestLog, Store};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Domain(#[from] DomainError),
    #[error("the store is unavailable: {detail}")]
    Unavailable { detail: String },
    /// The store answers, but may not be used as configured (waiting will not help).
    #[error("the store may not be used so: {detail}")]
    Misconfigured { detail: String },
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

/// What a store holds, as its metrics report it. Each backend answers what it can measure.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Footprint {
    /// sled: its files on disk.
    pub bytes_on_disk: Option<u64>,
    /// Redis: `used_memory` (the whole server's, shared by every prefix on it).
    pub memory_bytes: Option<u64>,
    /// Flows begun and neither completed nor purged yet.
    pub flows_pending: u64,
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
    #[serde(with = "crate::domain::compact::time")]
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

pub type DynStore = Arc<dyn Store>;

/// Tells this replica's watchers that events up to `cursor` are committed.
pub(crate) fn announce(feed: &tokio::sync::watch::Sender<u64>, cursor: u64) {
    feed.send_if_modified(|current| {
        let newer = cursor > *current;
        *current = (*current).max(cursor);
        newer
    });
}
