//! The store's calls, timed by operation: [`MeasuredStore`] wraps whichever backend is open and
//! answers for it, observing each call's duration under the name of the trait method (a fixed
//! set) and counting the calls that failed for the store's own sake (unavailable, corrupt,
//! misconfigured; a domain refusal is an answer, not a failure). `wait_for_events` is a long
//! poll: its duration is the caller's wait, so it is not timed.

use std::{collections::BTreeMap, time::Duration};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{
        counter::Counter,
        family::Family,
        histogram::{Histogram, exponential_buckets},
    },
    registry::Registry,
};

use crate::{
    domain::{
        AccountKey, Associations, Certification, Credit, LearningProfile, Link, LinkEvent, LinkKind, LinkMode, Mcid, NewLink, Organization,
        PartnerId, SealedFlow, StateHash, TenantId,
    },
    store::{
        CreditStore, DynStore, EventFeed, FlowStore, Footprint, IntegrityReport, LinkPage, LinkStore, ListQuery, Recomputed, Recorded,
        RequestLog, RequestQuota, Reservation, Result, Store, StoreError, StoredOutcome,
    },
};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Operation {
    operation: &'static str,
}

/// The store's instruments, registered with the rest.
#[derive(Clone)]
pub struct StoreTimings {
    duration: Family<Operation, Histogram>,
    failures: Family<Operation, Counter>,
}

impl StoreTimings {
    pub(super) fn register(registry: &mut Registry) -> Self {
        // From 50 µs (a sled read from cache) to about 27 s.
        let duration = Family::<Operation, Histogram>::new_with_constructor(|| Histogram::new(exponential_buckets(0.00005, 2.0, 20)));
        registry.register("store_operation_duration_seconds", "Time of one store call, by operation", duration.clone());
        let failures = Family::<Operation, Counter>::default();
        registry.register(
            "store_operation_failures",
            "Store calls that failed for the store's sake (unavailable, corrupt, misconfigured), by operation",
            failures.clone(),
        );
        Self { duration, failures }
    }

    async fn time<T>(&self, operation: &'static str, call: impl Future<Output = Result<T>>) -> Result<T> {
        let started = std::time::Instant::now();
        let answer = call.await;
        let operation = Operation { operation };
        self.duration.get_or_create(&operation).observe(started.elapsed().as_secs_f64());
        // Created at the first call: an operation's failures read 0, not absent, until one fails.
        let failures = self.failures.get_or_create(&operation);
        if let Err(StoreError::Unavailable { .. } | StoreError::Corrupt { .. } | StoreError::Misconfigured { .. }) = &answer {
            failures.inc();
        }
        answer
    }

    /// `store`, its calls timed from now on.
    pub fn measure(&self, store: DynStore) -> DynStore {
        std::sync::Arc::new(MeasuredStore { inner: store, timings: self.clone() })
    }
}

/// A store whose every call is timed (see the module).
pub struct MeasuredStore {
    inner: DynStore,
    timings: StoreTimings,
}

/// Forwards a call to the inner store, timed under the method's name.
macro_rules! timed {
    ($self:ident . $method:ident ( $($arg:expr),* )) => {
        $self.timings.time(stringify!($method), $self.inner.$method($($arg),*)).await
    };
}

#[async_trait]
impl FlowStore for MeasuredStore {
    async fn put_flow(&self, state: &StateHash, flow: &SealedFlow) -> Result<()> {
        timed!(self.put_flow(state, flow))
    }
    async fn take_flow(&self, state: &StateHash) -> Result<Option<SealedFlow>> {
        timed!(self.take_flow(state))
    }
    async fn purge_expired_flows(&self, now: DateTime<Utc>) -> Result<usize> {
        timed!(self.purge_expired_flows(now))
    }
}

#[async_trait]
impl LinkStore for MeasuredStore {
    async fn link(&self, new: NewLink, mode: LinkMode, now: DateTime<Utc>) -> Result<Link> {
        timed!(self.link(new, mode, now))
    }
    async fn remove(
        &self,
        kind: LinkKind,
        work: &AccountKey,
        by: &AccountKey,
        reason: &str,
        expected_etag: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<Link> {
        timed!(self.remove(kind, work, by, reason, expected_etag, now))
    }
    async fn remove_work_user(&self, work: &AccountKey, by: &AccountKey, now: DateTime<Utc>) -> Result<Vec<Link>> {
        timed!(self.remove_work_user(work, by, now))
    }
    async fn active_links(&self, work: &AccountKey) -> Result<Vec<Link>> {
        timed!(self.active_links(work))
    }
    async fn last_removed(&self, kind: LinkKind, work: &AccountKey) -> Result<Option<Link>> {
        timed!(self.last_removed(kind, work))
    }
    async fn associations(&self, kind: LinkKind, personal: &AccountKey) -> Result<Option<Associations>> {
        timed!(self.associations(kind, personal))
    }
    async fn active_link_of_personal(&self, kind: LinkKind, personal: &AccountKey) -> Result<Option<Link>> {
        timed!(self.active_link_of_personal(kind, personal))
    }
    async fn links_of_tenant(&self, tenant: &TenantId, query: &ListQuery) -> Result<LinkPage> {
        timed!(self.links_of_tenant(tenant, query))
    }
}

#[async_trait]
impl EventFeed for MeasuredStore {
    async fn events_after(&self, cursor: u64, limit: usize) -> Result<Vec<LinkEvent>> {
        timed!(self.events_after(cursor, limit))
    }
    async fn wait_for_events(&self, cursor: u64, max_wait: Duration) -> Result<()> {
        self.inner.wait_for_events(cursor, max_wait).await
    }
    async fn purge_events_before(&self, before: DateTime<Utc>) -> Result<usize> {
        timed!(self.purge_events_before(before))
    }
}

#[async_trait]
impl CreditStore for MeasuredStore {
    async fn upsert_organization(&self, organization: &Organization) -> Result<()> {
        timed!(self.upsert_organization(organization))
    }
    async fn organization(&self, tenant: &TenantId) -> Result<Option<Organization>> {
        timed!(self.organization(tenant))
    }
    async fn partner_tenants(&self, partner: &PartnerId, limit: usize) -> Result<Vec<TenantId>> {
        timed!(self.partner_tenants(partner, limit))
    }
    async fn credits(&self, tenants: &[TenantId]) -> Result<Vec<Credit>> {
        timed!(self.credits(tenants))
    }
    async fn record_certifications(&self, batch: &[Certification], now: DateTime<Utc>) -> Result<Vec<Recorded>> {
        timed!(self.record_certifications(batch, now))
    }
    async fn achievements(&self, personal: &AccountKey) -> Result<Vec<Certification>> {
        timed!(self.achievements(personal))
    }
    async fn record_learning_profiles(&self, batch: &[LearningProfile]) -> Result<Vec<Recorded>> {
        timed!(self.record_learning_profiles(batch))
    }
    async fn mcids(&self, personal: &[AccountKey]) -> Result<Vec<Option<Mcid>>> {
        timed!(self.mcids(personal))
    }
    async fn expire_certifications(&self, now: DateTime<Utc>) -> Result<usize> {
        timed!(self.expire_certifications(now))
    }
    async fn credit(&self, tenant: &TenantId) -> Result<Credit> {
        timed!(self.credit(tenant))
    }
    async fn credit_tenants(&self, after: Option<&TenantId>, limit: usize) -> Result<Vec<TenantId>> {
        timed!(self.credit_tenants(after, limit))
    }
    async fn recompute(&self, tenant: &TenantId) -> Result<Recomputed> {
        timed!(self.recompute(tenant))
    }
    async fn recompute_all(&self) -> Result<Option<BTreeMap<TenantId, Recomputed>>> {
        timed!(self.recompute_all())
    }
    async fn commit_recomputed(&self, tenant: &TenantId, recomputed: &Recomputed) -> Result<bool> {
        timed!(self.commit_recomputed(tenant, recomputed))
    }
    #[cfg(any(test, feature = "test-support"))]
    async fn overwrite_credit(&self, tenant: &TenantId, credit: &Credit) -> Result<()> {
        timed!(self.overwrite_credit(tenant, credit))
    }
}

#[async_trait]
impl RequestLog for MeasuredStore {
    async fn reserve_request(
        &self,
        key: &str,
        fingerprint: &str,
        quota: RequestQuota<'_>,
        now: DateTime<Utc>,
        stale_before: DateTime<Utc>,
    ) -> Result<Reservation> {
        timed!(self.reserve_request(key, fingerprint, quota, now, stale_before))
    }
    async fn finish_request(&self, key: &str, caller: &str, outcome: Option<StoredOutcome>) -> Result<()> {
        timed!(self.finish_request(key, caller, outcome))
    }
    async fn purge_requests_before(&self, before: DateTime<Utc>) -> Result<usize> {
        timed!(self.purge_requests_before(before))
    }
}

#[async_trait]
impl Store for MeasuredStore {
    async fn secret(&self, name: &str) -> Result<Vec<u8>> {
        timed!(self.secret(name))
    }
    async fn check_integrity(&self) -> Result<IntegrityReport> {
        timed!(self.check_integrity())
    }
    async fn ping(&self) -> Result<()> {
        timed!(self.ping())
    }
    async fn footprint(&self) -> Result<Footprint> {
        timed!(self.footprint())
    }
}
