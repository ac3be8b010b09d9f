//! Conformance: links, tombstones and their indexes (invariants 1, 2 and 7), listing.

use super::*;

pub async fn link_list_remove_roundtrip<S: Store + ?Sized>(store: &S) {
    let now = Utc::now();
    let link = store.link(request(KIND, 1, 1), LinkMode::default(), now).await.unwrap();
    assert!(link.is_active());
    assert_eq!(store.active_links(&work(1)).await.unwrap(), vec![link.clone()]);
    assert_eq!(store.active_link_of_personal(KIND, &personal(1)).await.unwrap(), Some(link.clone()));

    let tomb = store.remove(KIND, &work(1), &work(1), "user_request", None, now).await.unwrap();
    assert_eq!(tomb.id, link.id);
    let removal = tomb.removal.clone().unwrap();
    assert_eq!((removal.by, removal.reason.as_str()), (work(1), "user_request"));
    assert!(store.active_links(&work(1)).await.unwrap().is_empty());
    assert_eq!(store.active_link_of_personal(KIND, &personal(1)).await.unwrap(), None);

    // Idempotent: the same tombstone, not a second one, and the first reason kept.
    let again = store.remove(KIND, &work(1), &work(1), "again", None, now + Duration::seconds(5)).await.unwrap();
    assert_eq!(again, tomb);
    assert_consistent(store, 0).await;
    let report = store.check_integrity().await.unwrap();
    assert_eq!(report.tombstones, 1);

    // Never linked: nothing to remove.
    let err = store.remove(KIND, &work(2), &work(2), "x", None, now).await.unwrap_err();
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
    let tomb = store.remove(KIND, &work(1), &work(1), "x", None, now).await.unwrap();
    assert_eq!(tomb.id, old.id);
    assert_eq!(tomb.removal.unwrap().reason, REASON_TRANSFERRED);
    assert_consistent(store, 1).await;
}

pub async fn racing_links_of_one_personal_account_have_one_winner<S: Store>(store: Arc<S>) {
    let now = Utc::now();
    let attempts = (0..32u32)
        .map(|w| {
            let store = store.clone();
            tokio::spawn(async move { store.link(request(KIND, 100 + w, 42), LinkMode::default(), now).await })
        })
        .collect::<Vec<_>>(); // spawned all at once: a lazy map would run them one by one
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
    let attempts = (0..16u32)
        .map(|p| {
            let store = store.clone();
            tokio::spawn(async move { store.link(request(KIND, 9, 200 + p), LinkMode::default(), now).await })
        })
        .collect::<Vec<_>>(); // spawned all at once: a lazy map would run them one by one
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

pub async fn an_organisations_links_page_without_gaps_or_repeats<S: Store + ?Sized>(store: &S) {
    let now = Utc::now();
    for n in 0..7 {
        store.link(request(KIND, n, n), LinkMode::default(), now).await.unwrap();
        store.link(request(LinkKind::PartnerUniversity, n, n), LinkMode::default(), now).await.unwrap();
    }
    store.remove(KIND, &work(3), &work(3), "x", None, now).await.unwrap();
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

/// Every page of a listing, followed to its end.
async fn every_page<S: Store + ?Sized>(store: &S, tenant: &crate::domain::TenantId, mut query: ListQuery) -> Vec<crate::domain::Link> {
    let mut links = Vec::new();
    loop {
        let page = store.links_of_tenant(tenant, &query).await.unwrap();
        assert!(page.links.len() <= query.limit);
        links.extend(page.links);
        match page.next {
            Some(next) => query.after = Some(next),
            None => return links,
        }
    }
}

/// Listings without tombstones come from the active index: the same links, in the same order,
/// as the full listing filtered, for one kind or both merged, at every page size — after
/// removals, replacements and transfers moved links in and out of it.
pub async fn a_listing_without_tombstones_matches_the_full_listing_filtered<S: Store + ?Sized>(store: &S) {
    let now = Utc::now();
    for n in 0..24 {
        store.link(request(KIND, n, n), LinkMode::default(), now).await.unwrap();
        store.link(request(LinkKind::PartnerUniversity, n, 100 + n), LinkMode::default(), now).await.unwrap();
    }
    for n in (0..24).step_by(3) {
        store.remove(KIND, &work(n), &work(n), "x", None, now).await.unwrap();
    }
    for n in (1..24).step_by(4) {
        let replace = LinkMode { replace_existing: true, ..LinkMode::default() };
        store.link(request(LinkKind::PartnerUniversity, n, 200 + n), replace, now).await.unwrap();
    }
    let transfer = LinkMode { transfer: true, ..LinkMode::default() };
    store.link(request(KIND, 30, 2), transfer, now).await.unwrap();
    let tenant = work(0).tenant;
    let everything = every_page(store, &tenant, ListQuery { kind: None, include_removed: true, after: None, limit: 200 }).await;
    assert_eq!(everything.iter().filter(|l| !l.is_active()).count(), 8 + 6 + 1, "tombstones of removals, replacements, the transfer");
    for kind in [None, Some(KIND), Some(LinkKind::PartnerUniversity)] {
        let expected: Vec<_> = everything.iter().filter(|l| l.is_active() && kind.is_none_or(|k| l.kind == k)).cloned().collect();
        for limit in [1, 2, 5, 7, 200] {
            let listed = every_page(store, &tenant, ListQuery { kind, include_removed: false, after: None, limit }).await;
            assert_eq!(listed, expected, "kind {kind:?}, page size {limit}");
        }
    }
    assert_consistent_links(store).await;
}

/// Invariant 12: a listing without tombstones costs its page, not the organisation's history.
/// `lose` deletes a tombstone's record behind the store's back: a listing that read it fails.
pub async fn a_listing_without_tombstones_never_reads_them<S: Store + ?Sized>(store: &S, lose: impl AsyncFn(&crate::domain::Link)) {
    let now = Utc::now();
    for n in 0..50 {
        let new = request(KIND, n, n);
        let work = new.work.clone();
        store.link(new, LinkMode::default(), now).await.unwrap();
        lose(&store.remove(KIND, &work, &work, "x", None, now).await.unwrap()).await;
    }
    let active = store.link(request(KIND, 99, 99), LinkMode::default(), now).await.unwrap();
    let tenant = active.work.tenant.clone();
    for kind in [None, Some(KIND)] {
        let page = store.links_of_tenant(&tenant, &ListQuery { kind, include_removed: false, after: None, limit: 10 }).await.unwrap();
        assert_eq!(page.links, std::slice::from_ref(&active));
    }
    let all = ListQuery { kind: None, include_removed: true, after: None, limit: 10 };
    assert!(matches!(store.links_of_tenant(&tenant, &all).await, Err(StoreError::Corrupt { .. })), "the full listing does read them");
}

/// Microsoft Learning's documented limit: three associations a year, 30 days apart.
const LIMIT: LinkMode =
    LinkMode { replace_existing: false, transfer: true, limit: crate::domain::AssociationLimit { per_year: 3, days_between: 30 } };

fn limited(err: StoreError) -> (chrono::DateTime<Utc>, crate::domain::LimitMet) {
    match err {
        StoreError::Domain(DomainError::AssociationLimited { kind, next_allowed, met }) => {
            assert_eq!(kind, KIND);
            (next_allowed, met)
        }
        other => panic!("expected ASSOCIATION_LIMITED, got {other:?}"),
    }
}

/// What a refused association must leave as it was: links, events, the record and credit.
async fn snapshot<S: Store + ?Sized>(store: &S, p: u32) -> impl PartialEq + std::fmt::Debug {
    let events = store.events_after(0, 1000).await.unwrap();
    let tenant = work(1).tenant;
    let report = store.check_integrity().await.unwrap();
    (
        events,
        store.associations(KIND, &personal(p)).await.unwrap(),
        store.credit(&tenant).await.unwrap(),
        report.active_links,
        report.tombstones,
    )
}

pub async fn associations_keep_within_the_yearly_limit_and_cool_off<S: Store + ?Sized>(store: &S) {
    use crate::domain::LimitMet;
    let t0: chrono::DateTime<Utc> = "2026-02-01T10:00:00Z".parse().unwrap();
    let day = Duration::days(1);
    store.link(request(KIND, 1, 5), LIMIT, t0).await.unwrap();
    // Signing in again with the active pair is not an association, even in the cool-off.
    store.link(request(KIND, 1, 5), LIMIT, t0 + day).await.unwrap();
    store.remove(KIND, &work(1), &work(1), "x", None, t0 + day * 2).await.unwrap();

    // Relinking ten days in: refused, naming t0 + 30 days, and nothing written.
    let before = snapshot(store, 5).await;
    let err = store.link(request(KIND, 1, 5), LIMIT, t0 + day * 10).await.unwrap_err();
    assert_eq!(limited(err), (t0 + day * 30, LimitMet::CoolOff { days: 30 }));
    assert_eq!(snapshot(store, 5).await, before, "a refused association writes nothing");
    // Another work user is held to the same limit: it is the personal account's.
    let err = store.link(request(KIND, 2, 5), LIMIT, t0 + day * 29).await.unwrap_err();
    assert_eq!(limited(err).0, t0 + day * 30);

    // From the date named, it is allowed; a move to another organisation counts too.
    store.link(request(KIND, 1, 5), LIMIT, t0 + day * 30).await.unwrap();
    let err = store.link(request(KIND, 2, 5), LIMIT, t0 + day * 45).await.unwrap_err();
    assert_eq!(limited(err).0, t0 + day * 60);
    let moved = store.link(request(KIND, 2, 5), LIMIT, t0 + day * 60).await.unwrap();
    assert_eq!(moved.work, work(2), "the third association, a move");

    // A fourth within 365 days: refused until the first is a year old.
    store.remove(KIND, &work(2), &work(2), "x", None, t0 + day * 61).await.unwrap();
    let err = store.link(request(KIND, 1, 5), LIMIT, t0 + day * 200).await.unwrap_err();
    assert_eq!(limited(err), (t0 + crate::domain::ASSOCIATION_YEAR, LimitMet::PerYear { count: 3 }));
    store.link(request(KIND, 1, 5), LIMIT, t0 + crate::domain::ASSOCIATION_YEAR).await.unwrap();

    // A work user replacing their account starts the new account's count, not the old one's.
    let replace = LinkMode { replace_existing: true, ..LIMIT };
    store.link(request(KIND, 1, 6), replace, t0 + crate::domain::ASSOCIATION_YEAR + day).await.unwrap();
    assert_eq!(store.associations(KIND, &personal(6)).await.unwrap().unwrap().times().len(), 1);
    // Another kind keeps its own count.
    store.link(request(LinkKind::PartnerUniversity, 1, 5), LIMIT, t0 + day * 200).await.unwrap();
    assert_consistent(store, 2).await;
}

/// 16 completions at once for one personal account across two work users: one association,
/// one holder; every other attempt is refused by the limit or answers that same link.
pub async fn racing_associations_keep_the_limit_and_uniqueness<S: Store>(store: Arc<S>) {
    let now: chrono::DateTime<Utc> = "2026-03-01T10:00:00Z".parse().unwrap();
    let attempts = (0..16u32)
        .map(|n| {
            let store = store.clone();
            tokio::spawn(async move { store.link(request(KIND, 1 + n % 2, 77), LIMIT, now).await })
        })
        .collect::<Vec<_>>(); // spawned all at once
    let (mut linked, mut refused) = (std::collections::BTreeSet::new(), 0);
    for attempt in attempts {
        match attempt.await.unwrap() {
            Ok(link) => {
                linked.insert(link.id);
            }
            Err(err) => {
                assert_eq!(limited(err).0, now + Duration::days(30));
                refused += 1;
            }
        }
    }
    assert_eq!(linked.len(), 1, "one link, answered to every attempt that succeeded");
    assert_eq!(refused, 8, "the other work user's eight attempts are refused");
    let history = store.associations(KIND, &personal(77)).await.unwrap().unwrap();
    assert_eq!(history.times(), &[now], "exactly one association recorded");
    let events = store.events_after(0, 100).await.unwrap();
    assert_eq!(events.iter().map(|e| e.event_type).collect::<Vec<_>>(), vec![EventType::Created], "no move slipped through");
    assert_consistent(&*store, 1).await;
}
