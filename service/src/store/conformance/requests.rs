//! Conformance: remembered requests and their quota (invariant 12).

use super::*;

pub async fn an_idempotency_key_is_reserved_once_and_remembers_its_answer<S: Store>(store: Arc<S>) {
    use crate::store::{RequestQuota, Reservation, StoredOutcome};
    const QUOTA: RequestQuota<'static> = RequestQuota { caller: "user:a", per_day: 100 };
    let now = Utc::now();
    let stale = now - Duration::minutes(1);
    let racers = (0..16)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move { store.reserve_request("k", "fp", QUOTA, now, stale).await.unwrap() })
        })
        .collect::<Vec<_>>(); // spawned all at once: a lazy map would run them one by one
    let mut reserved = 0;
    for racer in racers {
        match racer.await.unwrap() {
            Reservation::Reserved => reserved += 1,
            Reservation::InFlight => {}
            other => unreachable!("{other:?}"),
        }
    }
    assert_eq!(reserved, 1);
    assert_eq!(store.reserve_request("k", "other", QUOTA, now, stale).await.unwrap(), Reservation::Mismatch);
    let answer = StoredOutcome { code: 0, message: String::new(), body: vec![1, 2, 3] };
    store.finish_request("k", QUOTA.caller, Some(answer.clone())).await.unwrap();
    assert_eq!(store.reserve_request("k", "fp", QUOTA, now, stale).await.unwrap(), Reservation::Done(answer));
    // A released key can be reserved again; an abandoned one is taken over once stale.
    store.reserve_request("r", "fp", QUOTA, now, stale).await.unwrap();
    store.finish_request("r", QUOTA.caller, None).await.unwrap();
    assert_eq!(store.reserve_request("r", "fp", QUOTA, now, stale).await.unwrap(), Reservation::Reserved);
    assert_eq!(store.reserve_request("r", "fp", QUOTA, now, now + Duration::seconds(1)).await.unwrap(), Reservation::Reserved);
    assert_eq!(store.purge_requests_before(now + Duration::seconds(1)).await.unwrap(), 2);
}

/// Invariant 12: a caller's remembered request ids are counted per day and refused past the
/// quota — racing first attempts included, never one past it; a released reservation gives its
/// count back; another caller, or the next day, has a quota of its own. The purge drops every
/// record older than the retention however many there are.
pub async fn request_ids_are_counted_against_their_caller<S: Store>(store: Arc<S>) {
    use crate::store::{RequestQuota, Reservation};
    let quota = RequestQuota { caller: "app:feed", per_day: 5 };
    // Noon, so the next day is a few hours ahead whatever the hour of the run.
    let now = Utc::now().date_naive().and_hms_opt(12, 0, 0).unwrap().and_utc();
    let stale = now - Duration::minutes(1);
    let racers = (0..12)
        .map(|n| {
            let store = store.clone();
            tokio::spawn(async move { store.reserve_request(&format!("q{n}"), "fp", quota, now, stale).await.unwrap() })
        })
        .collect::<Vec<_>>();
    let (mut reserved, mut refused) = (Vec::new(), 0);
    for (n, racer) in racers.into_iter().enumerate() {
        match racer.await.unwrap() {
            Reservation::Reserved => reserved.push(n),
            Reservation::OverQuota { retry_after } => {
                assert_eq!(retry_after, std::time::Duration::from_secs(12 * 3600), "until midnight UTC");
                refused += 1;
            }
            other => unreachable!("{other:?}"),
        }
    }
    assert_eq!((reserved.len(), refused), (5, 7), "exactly the quota, under a race");
    // A key already counted is answered as before, not refused.
    assert_eq!(store.reserve_request(&format!("q{}", reserved[0]), "fp", quota, now, stale).await.unwrap(), Reservation::InFlight);
    // Released: its count is given back.
    store.finish_request(&format!("q{}", reserved[0]), quota.caller, None).await.unwrap();
    assert_eq!(store.reserve_request("fresh", "fp", quota, now, stale).await.unwrap(), Reservation::Reserved);
    assert!(matches!(store.reserve_request("one-more", "fp", quota, now, stale).await.unwrap(), Reservation::OverQuota { .. }));
    // Another caller, and the next day, count apart.
    let other = RequestQuota { caller: "app:enrolment", ..quota };
    assert_eq!(store.reserve_request("o", "fp", other, now, stale).await.unwrap(), Reservation::Reserved);
    let tomorrow = now + Duration::hours(12);
    assert_eq!(store.reserve_request("t", "fp", quota, tomorrow, tomorrow - Duration::minutes(1)).await.unwrap(), Reservation::Reserved);

    // Many more records than one purge page: all of them go, the newer one stays.
    let many = RequestQuota { caller: "user:many", per_day: 10_000 };
    for n in 0..5000 {
        store.reserve_request(&format!("m{n}"), "fp", many, now, stale).await.unwrap();
    }
    let purged = store.purge_requests_before(now + Duration::seconds(1)).await.unwrap();
    assert_eq!(purged, 5000 + 4 + 1 + 1, "every record created before the cut");
    assert_eq!(store.reserve_request("t", "fp", quota, tomorrow, tomorrow - Duration::minutes(1)).await.unwrap(), Reservation::InFlight);
    assert_eq!(store.reserve_request("m1", "other", many, now, stale).await.unwrap(), Reservation::Reserved, "forgotten");
}
