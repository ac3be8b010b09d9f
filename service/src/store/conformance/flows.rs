//! Conformance: pending flows (invariant 5).

use super::*;

/// A flow of work user 1 begun at `now`, expiring `ttl` seconds later.
fn flow_at(now: chrono::DateTime<Utc>, ttl: i64) -> Flow {
    Flow {
        kind: KIND,
        owner: work(1),
        owner_upn: String::new(),
        redirect_uri: "https://portal.example/cb".into(),
        pkce_verifier: crate::domain::FlowSecret::new("v".into()),
        nonce: crate::domain::FlowSecret::new("n".into()),
        mode: LinkMode::default(),
        created_at: now,
        expires_at: now + Duration::seconds(ttl),
    }
}

pub async fn flows_are_single_use_and_purged_when_expired<S: Store + ?Sized>(store: &S) {
    let now = Utc::now();
    let flow = |ttl: i64| flow_at(now, ttl);
    let (live, stale) = (StateHash::of("live"), StateHash::of("stale"));
    let live_flow = flow(600).seal("live").unwrap();
    store.put_flow(&live, &live_flow).await.unwrap();
    store.put_flow(&stale, &flow(1).seal("stale").unwrap()).await.unwrap();

    assert_eq!(store.purge_expired_flows(now + Duration::seconds(2)).await.unwrap(), 1);
    assert_eq!(store.take_flow(&stale).await.unwrap(), None);
    let taken = store.take_flow(&live).await.unwrap().unwrap();
    assert_eq!((&taken, taken.open("live").unwrap()), (&live_flow, flow(600)));
    assert_eq!(store.take_flow(&live).await.unwrap(), None, "a flow is single use");
}

pub async fn racing_takes_of_one_flow_have_one_winner<S: Store>(store: Arc<S>) {
    let state = StateHash::of("contested");
    store.put_flow(&state, &flow_at(Utc::now(), 600).seal("contested").unwrap()).await.unwrap();
    let takers = (0..16)
        .map(|_| {
            let (store, state) = (store.clone(), state.clone());
            tokio::spawn(async move { store.take_flow(&state).await.unwrap().is_some() })
        })
        .collect::<Vec<_>>(); // spawned all at once: a lazy map would run them one by one
    let mut winners = 0;
    for taker in takers {
        winners += usize::from(taker.await.unwrap());
    }
    assert_eq!(winners, 1);
}
