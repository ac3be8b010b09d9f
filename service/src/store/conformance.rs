//! Store-agnostic checks every backend must pass. Plain async functions taking a store;
//! each backend's tests expand [`suite!`] with a constructor, so each check runs once per
//! backend.

use std::sync::Arc;

use chrono::{Duration, Utc};

use super::{ListQuery, Store, StoreError};
use crate::domain::{
    AccountKey, CONSUMER_TENANT, DomainError, Flow, LinkKind, LinkMode, NewLink, PersonalProfile, REASON_TRANSFERRED, StateHash,
};

const WORK_TENANT: &str = "11111111-1111-1111-1111-111111111111";
const KIND: LinkKind = LinkKind::MicrosoftLearning;

fn work(n: u32) -> AccountKey {
    AccountKey::parse(WORK_TENANT, &format!("00000000-0000-0000-0000-{n:012x}")).unwrap()
}

fn personal(n: u32) -> AccountKey {
    AccountKey::parse(CONSUMER_TENANT, &format!("00000000-0000-0000-0001-{n:012x}")).unwrap()
}

fn request(kind: LinkKind, w: u32, p: u32) -> NewLink {
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

pub async fn link_list_remove_roundtrip<S: Store + ?Sized>(store: &S) {
    let now = Utc::now();
    let link = store.link(request(KIND, 1, 1), LinkMode::default(), now).await.unwrap();
    assert!(link.is_active());
    assert_eq!(store.active_links(&work(1)).await.unwrap(), vec![link.clone()]);
    assert_eq!(store.active_link_of_personal(KIND, &personal(1)).await.unwrap(), Some(link.clone()));

    let tomb = store.remove(KIND, &work(1), &work(1), "user_request", now).await.unwrap();
    assert_eq!(tomb.id, link.id);
    let removal = tomb.removal.clone().unwrap();
    assert_eq!((removal.by, removal.reason.as_str()), (work(1), "user_request"));
    assert!(store.active_links(&work(1)).await.unwrap().is_empty());
    assert_eq!(store.active_link_of_personal(KIND, &personal(1)).await.unwrap(), None);

    // Idempotent: the same tombstone, not a second one, and the first reason kept.
    let again = store.remove(KIND, &work(1), &work(1), "again", now + Duration::seconds(5)).await.unwrap();
    assert_eq!(again, tomb);
    assert_consistent(store, 0).await;
    let report = store.check_integrity().await.unwrap();
    assert_eq!(report.tombstones, 1);

    // Never linked: nothing to remove.
    let err = store.remove(KIND, &work(2), &work(2), "x", now).await.unwrap_err();
    assert!(matches!(err, StoreError::Domain(DomainError::LinkNotFound { .. })), "{err:?}");
}

pub async fn one_active_link_per_work_user_and_kind<S: Store + ?Sized>(store: &S) {
    let now = Utc::now();
    let first = store.link(request(KIND, 1, 1), LinkMode::default(), now).await.unwrap();
    let err = store.link(request(KIND, 1, 2), LinkMode::default(), now).await.unwrap_err();
    assert!(matches!(err, StoreError::Domain(DomainError::AlreadyLinked { .. })), "{err:?}");
    // Relinking the same pair answers the same link.
    assert_eq!(store.link(request(KIND, 1, 1), LinkMode::default(), now).await.unwrap(), first);
    // The other kind is independent, even with the same personal account.
    store.link(request(LinkKind::PartnerUniversity, 1, 1), LinkMode::default(), now).await.unwrap();
    assert_consistent(store, 2).await;

    // Replacing retires the old link and frees its personal account.
    let replace = LinkMode { replace_existing: true, ..LinkMode::default() };
    let second = store.link(request(KIND, 1, 2), replace, now).await.unwrap();
    assert_ne!(second.id, first.id);
    assert_eq!(store.active_link_of_personal(KIND, &personal(1)).await.unwrap(), None);
    store.link(request(KIND, 3, 1), LinkMode::default(), now).await.unwrap();
    assert_consistent(store, 3).await;
}

pub async fn a_personal_account_moves_only_by_transfer<S: Store + ?Sized>(store: &S) {
    let now = Utc::now();
    let old = store.link(request(KIND, 1, 7), LinkMode::default(), now).await.unwrap();
    let err = store.link(request(KIND, 2, 7), LinkMode::default(), now).await.unwrap_err();
    assert!(matches!(err, StoreError::Domain(DomainError::LinkedElsewhere { .. })), "{err:?}");

    let transfer = LinkMode { transfer: true, ..LinkMode::default() };
    let moved = store.link(request(KIND, 2, 7), transfer, now).await.unwrap();
    assert_eq!(moved.work, work(2));
    assert!(store.active_links(&work(1)).await.unwrap().is_empty());
    // The old owner's removal is idempotent and answers the transfer tombstone.
    let tomb = store.remove(KIND, &work(1), &work(1), "x", now).await.unwrap();
    assert_eq!(tomb.id, old.id);
    assert_eq!(tomb.removal.unwrap().reason, REASON_TRANSFERRED);
    assert_consistent(store, 1).await;
}

pub async fn racing_links_of_one_personal_account_have_one_winner<S: Store>(store: Arc<S>) {
    let now = Utc::now();
    let attempts = (0..32u32).map(|w| {
        let store = store.clone();
        tokio::spawn(async move { store.link(request(KIND, 100 + w, 42), LinkMode::default(), now).await })
    });
    let mut won = 0;
    for attempt in attempts {
        match attempt.await.unwrap() {
            Ok(_) => won += 1,
            Err(StoreError::Domain(DomainError::LinkedElsewhere { .. })) => {}
            Err(other) => unreachable!("unexpected {other:?}"),
        }
    }
    assert_eq!(won, 1);
    assert_consistent(&*store, 1).await;
}

pub async fn racing_links_of_one_work_user_have_one_winner<S: Store>(store: Arc<S>) {
    let now = Utc::now();
    let attempts = (0..16u32).map(|p| {
        let store = store.clone();
        tokio::spawn(async move { store.link(request(KIND, 9, 200 + p), LinkMode::default(), now).await })
    });
    let mut won = 0;
    for attempt in attempts {
        match attempt.await.unwrap() {
            Ok(_) => won += 1,
            Err(StoreError::Domain(DomainError::AlreadyLinked { .. })) => {}
            Err(other) => unreachable!("unexpected {other:?}"),
        }
    }
    assert_eq!(won, 1);
    assert_consistent(&*store, 1).await;
}

pub async fn flows_are_single_use_and_purged_when_expired<S: Store + ?Sized>(store: &S) {
    let now = Utc::now();
    let flow = |ttl: i64| Flow {
        kind: KIND,
        owner: work(1),
        owner_upn: String::new(),
        redirect_uri: "https://portal.example/cb".into(),
        pkce_verifier: "v".into(),
        nonce: "n".into(),
        mode: LinkMode::default(),
        created_at: now,
        expires_at: now + Duration::seconds(ttl),
    };
    let (live, stale) = (StateHash::of("live"), StateHash::of("stale"));
    store.put_flow(&live, &flow(600)).await.unwrap();
    store.put_flow(&stale, &flow(1)).await.unwrap();

    assert_eq!(store.purge_expired_flows(now + Duration::seconds(2)).await.unwrap(), 1);
    assert_eq!(store.take_flow(&stale).await.unwrap(), None);
    assert_eq!(store.take_flow(&live).await.unwrap(), Some(flow(600)));
    assert_eq!(store.take_flow(&live).await.unwrap(), None, "a flow is single use");
}

pub async fn racing_takes_of_one_flow_have_one_winner<S: Store>(store: Arc<S>) {
    let now = Utc::now();
    let state = StateHash::of("contested");
    let flow = Flow {
        kind: KIND,
        owner: work(1),
        owner_upn: String::new(),
        redirect_uri: "https://portal.example/cb".into(),
        pkce_verifier: "v".into(),
        nonce: "n".into(),
        mode: LinkMode::default(),
        created_at: now,
        expires_at: now + Duration::minutes(10),
    };
    store.put_flow(&state, &flow).await.unwrap();
    let takers = (0..16).map(|_| {
        let (store, state) = (store.clone(), state.clone());
        tokio::spawn(async move { store.take_flow(&state).await.unwrap().is_some() })
    });
    let mut winners = 0;
    for taker in takers {
        winners += usize::from(taker.await.unwrap());
    }
    assert_eq!(winners, 1);
}

pub async fn an_organisations_links_page_without_gaps_or_repeats<S: Store + ?Sized>(store: &S) {
    let now = Utc::now();
    for n in 0..7 {
        store.link(request(KIND, n, n), LinkMode::default(), now).await.unwrap();
        store.link(request(LinkKind::PartnerUniversity, n, n), LinkMode::default(), now).await.unwrap();
    }
    store.remove(KIND, &work(3), &work(3), "x", now).await.unwrap();
    let tenant = work(0).tenant;
    let mut seen = Vec::new();
    let mut query = ListQuery { kind: Some(KIND), include_removed: false, after: None, limit: 2 };
    loop {
        let page = store.links_of_tenant(&tenant, &query).await.unwrap();
        assert!(page.links.len() <= 2);
        assert!(page.links.iter().all(|l| l.kind == KIND && l.is_active()));
        seen.extend(page.links.iter().map(|l| l.id.clone()));
        match page.next {
            Some(next) => query.after = Some(next),
            None => break,
        }
    }
    let unique: std::collections::BTreeSet<_> = seen.iter().cloned().collect();
    assert_eq!((seen.len(), unique.len()), (6, 6), "six active links, each once");

    let all = ListQuery { kind: None, include_removed: true, after: None, limit: 100 };
    let page = store.links_of_tenant(&tenant, &all).await.unwrap();
    assert_eq!((page.links.len(), page.next), (14, None));
    let other = crate::domain::TenantId::parse("22222222-2222-2222-2222-222222222222").unwrap();
    assert!(store.links_of_tenant(&other, &all).await.unwrap().links.is_empty());
}

pub async fn secrets_are_created_once_and_kept<S: Store + ?Sized>(store: &S) {
    let first = store.secret("page-token").await.unwrap();
    assert_eq!(first.len(), 32);
    assert_eq!(store.secret("page-token").await.unwrap(), first);
    assert_ne!(store.secret("other").await.unwrap(), first);
}

/// Expands to one `#[tokio::test]` per check, each on a fresh store from `$open`, which
/// returns `(guard, Arc<Store>)`; the guard lives as long as the test.
macro_rules! suite {
    ($open:path) => {
        $crate::store::conformance::suite!(@by_ref $open,
            link_list_remove_roundtrip,
            one_active_link_per_work_user_and_kind,
            a_personal_account_moves_only_by_transfer,
            flows_are_single_use_and_purged_when_expired,
            an_organisations_links_page_without_gaps_or_repeats,
            secrets_are_created_once_and_kept);
        $crate::store::conformance::suite!(@by_arc $open,
            racing_links_of_one_personal_account_have_one_winner,
            racing_links_of_one_work_user_have_one_winner,
            racing_takes_of_one_flow_have_one_winner);
    };
    (@by_ref $open:path, $($check:ident),*) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $check() {
            let (_guard, store) = $open();
            $crate::store::conformance::$check(&*store).await;
        }
    )*};
    (@by_arc $open:path, $($check:ident),*) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $check() {
            let (_guard, store) = $open();
            $crate::store::conformance::$check(store).await;
        }
    )*};
}
pub(crate) use suite;
