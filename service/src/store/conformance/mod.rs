//! Store-agnostic checks every backend must pass. Plain async functions taking a store;
//! each backend's tests expand [`suite!`] with a constructor, so each check runs once per
//! backend.

use std::sync::Arc;

use chrono::{Duration, Utc};

use super::{ListQuery, Recorded, Store, StoreError};
use crate::domain::{
    AccountKey, CONSUMER_TENANT, Catalog, Certification, CertificationId, Credit, DomainError, EventType, Flow, LinkKind, LinkMode,
    NewLink, PersonalProfile, REASON_TRANSFERRED, StateHash, TenantId,
};

mod credit;
mod events;
mod flows;
mod links;
mod requests;

pub use credit::*;
pub use events::*;
pub use flows::*;
pub use links::*;
pub use requests::*;

const WORK_TENANT: &str = "11111111-1111-1111-1111-111111111111";

const KIND: LinkKind = LinkKind::MicrosoftLearning;

fn work(n: u32) -> AccountKey {
    AccountKey::parse(WORK_TENANT, &format!("00000000-0000-0000-0000-{n:012x}")).unwrap()
}

fn personal(n: u32) -> AccountKey {
    AccountKey::parse(CONSUMER_TENANT, &format!("00000000-0000-0000-0001-{n:012x}")).unwrap()
}

pub(crate) fn request(kind: LinkKind, w: u32, p: u32) -> NewLink {
    NewLink {
        kind,
        work: work(w),
        work_upn: format!("user{w}@contoso.example"),
        personal: personal(p),
        personal_sub: format!("sub-{p}"),
        profile: PersonalProfile { email: format!("p{p}@outlook.example"), name: format!("P {p}") },
    }
}

async fn assert_consistent<S: Store + ?Sized>(store: &S, active: usize) {
    let report = store.check_integrity().await.unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert_eq!(report.active_links, active);
}

pub async fn secrets_are_created_once_and_kept<S: Store + ?Sized>(store: &S) {
    let first = store.secret("page-token").await.unwrap();
    assert_eq!(first.len(), 32);
    assert_eq!(store.secret("page-token").await.unwrap(), first);
    assert_ne!(store.secret("other").await.unwrap(), first);
}

pub(crate) fn cert(p: u32, id: &str, earned: chrono::DateTime<Utc>, expires: Option<chrono::DateTime<Utc>>) -> Certification {
    Certification {
        personal: personal(p),
        id: CertificationId::parse(id).unwrap(),
        earned_at: earned,
        expires_at: expires,
        expired: false,
        source: LinkKind::MicrosoftLearning,
    }
}

/// A Partner University achievement of personal account `p`.
pub(crate) fn achievement(p: u32, id: &str, earned: chrono::DateTime<Utc>) -> Certification {
    Certification { source: LinkKind::PartnerUniversity, ..cert(p, id, earned, None) }
}

async fn assert_consistent_links<S: Store + ?Sized>(store: &S) {
    let report = store.check_integrity().await.unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
}

/// Recomputes and commits until no writer got in between, as credits' recalculation does.
async fn recalculate<S: Store + ?Sized>(store: &S, tenant: &crate::domain::TenantId) -> super::Recalculation {
    loop {
        let recomputed = store.recompute(tenant).await.unwrap();
        if store.commit_recomputed(tenant, &recomputed).await.unwrap() {
            return recomputed.into();
        }
    }
}

/// Expands to one `#[tokio::test]` per check, each on a fresh store from `$open`, an async
/// fn returning `Some((guard, Arc<Store>))` (the guard lives as long as the test) or `None`
/// when the backend is not reachable outside CI (see [`redis_store`]).
macro_rules! suite {
    ($open:path) => {
        $crate::store::conformance::suite!(@by_ref $open,
            link_list_remove_roundtrip,
            one_active_link_per_work_user_and_kind,
            a_personal_account_moves_only_by_transfer,
            flows_are_single_use_and_purged_when_expired,
            an_organisations_links_page_without_gaps_or_repeats,
            a_listing_without_tombstones_matches_the_full_listing_filtered,
            secrets_are_created_once_and_kept,
            events_follow_commit_order_without_personal_data,
            certifications_count_while_linked_and_unexpired,
            a_full_batch_for_as_many_linked_people_records_and_expires_at_once,
            credit_always_equals_a_recomputation,
            a_stale_recomputation_is_not_committed,
            associations_keep_within_the_yearly_limit_and_cool_off);
        $crate::store::conformance::suite!(@by_arc $open,
            racing_links_of_one_personal_account_have_one_winner,
            racing_links_of_one_work_user_have_one_winner,
            racing_associations_keep_the_limit_and_uniqueness,
            racing_takes_of_one_flow_have_one_winner,
            an_idempotency_key_is_reserved_once_and_remembers_its_answer,
            request_ids_are_counted_against_their_caller,
            an_organisation_holds_several_tenants_and_a_person_counts_once_in_it);
    };
    (@by_ref $open:path, $($check:ident),*) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $check() {
            let Some((_guard, store)) = $open().await else { return };
            $crate::store::conformance::$check(&*store).await;
        }
    )*};
    (@by_arc $open:path, $($check:ident),*) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $check() {
            let Some((_guard, store)) = $open().await else { return };
            $crate::store::conformance::$check(store).await;
        }
    )*};
}

pub(crate) use suite;

/// A Redis Cluster of the test's own (three primaries on loopback), its keys under one prefix
/// as a deployment's are. No `redis-server`: skipped, saying so (a failure under `CI=true`).
pub async fn redis_cluster_store() -> Option<(crate::test_support::TestCluster, Arc<super::redis::RedisStore>)> {
    let cluster = tokio::task::spawn_blocking(|| crate::test_support::TestCluster::start(3, 0)).await.ok()??;
    let mut options = super::redis::RedisOptions::new(String::new(), "idlink-test");
    options.cluster = Some(cluster.seeds());
    let store = super::redis::RedisStore::connect(options, Arc::new(Catalog::default_catalog())).await.unwrap();
    Some((cluster, Arc::new(store)))
}

/// The Redis of `IDLINK_TEST_REDIS_URL` (default `redis://127.0.0.1:6379`) under a key prefix
/// of its own. Unreachable: the test fails under `CI=true` and is skipped, saying so, elsewhere.
pub async fn redis_store() -> Option<(super::redis::ScratchPrefix, Arc<super::redis::RedisStore>)> {
    let url = crate::test_support::test_redis_url();
    let scratch = super::redis::ScratchPrefix::new(&url, "idlink-test");
    let options = super::redis::RedisOptions::new(url.clone(), scratch.prefix.clone());
    match super::redis::RedisStore::connect(options, Arc::new(Catalog::default_catalog())).await {
        Ok(store) => Some((scratch, Arc::new(store))),
        Err(e) => crate::test_support::unavailable(&format!(
            "Redis at {url} is unreachable ({e}); set IDLINK_TEST_REDIS_URL or start redis-server"
        )),
    }
}
