//! Conformance: the change feed.

use super::*;

pub async fn events_follow_commit_order_without_personal_data<S: Store + ?Sized>(store: &S) {
    let now = Utc::now();
    let first = store.link(request(KIND, 1, 1), LinkMode::default(), now).await.unwrap();
    let stale = first.etag();
    store.link(request(KIND, 2, 2), LinkMode::default(), now).await.unwrap();
    let moved =
        store.link(request(KIND, 2, 1), LinkMode { transfer: true, replace_existing: true, ..LinkMode::default() }, now).await.unwrap();
    let err = store.remove(KIND, &work(2), &work(2), "x", Some(&stale), now).await.unwrap_err();
    assert!(matches!(err, StoreError::Domain(DomainError::EtagMismatch)), "{err:?}");
    store.remove(KIND, &work(2), &work(2), "x", Some(&moved.etag()), now).await.unwrap();

    let events = store.events_after(0, 100).await.unwrap();
    let types: Vec<EventType> = events.iter().map(|e| e.event_type).collect();
    // created 1, created 2, (transfer: 1 moves to work 2, replacing 2's own link) → transferred + removed, removed.
    assert_eq!(types, [EventType::Created, EventType::Created, EventType::Transferred, EventType::Removed, EventType::Removed]);
    assert!(events.windows(2).all(|w| w[1].cursor == w[0].cursor + 1), "contiguous cursors");
    assert!(events.iter().all(|e| e.link.profile == PersonalProfile::default()), "no personal data in the feed");
    assert_eq!(events[2].previous.as_ref(), Some(&first.id));
    assert_eq!(store.events_after(events[1].cursor, 2).await.unwrap(), events[2..4].to_vec());

    // Retention: once dropped, a cursor behind the cut is refused rather than silently skipped.
    assert_eq!(store.purge_events_before(now + Duration::seconds(1)).await.unwrap(), 5);
    assert!(matches!(store.events_after(2, 10).await, Err(StoreError::CursorExpired { .. })));
    assert!(store.events_after(5, 10).await.unwrap().is_empty());
}
