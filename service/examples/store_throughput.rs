//! Store throughput: durable link writes with one writer and with 64 concurrent writers
//! (group commit shares flushes), reads, and flow create/consume. The one-writer figure is
//! the baseline of the 64-writer one. On sled the writes run twice, each on a store of its
//! own: with write combining (the default) and with each write in its own transaction (the
//! baseline of the combining); and a third time with sled's pages compressed.
//!
//!     cargo run --release -p idlink-service --example store_throughput -- [ONE_WRITER_LINKS] [CONCURRENT_LINKS] [REDIS_URL]
//!
//! With a Redis URL the same runs against Redis (under a fresh key prefix, deleted after),
//! else against sled in a temporary directory.
//! The last line printed is the same figures as JSON.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "a benchmark fails loudly")]

use std::{sync::Arc, time::Instant};

use chrono::{Duration, Utc};
use idlink_service::{
    domain::{AccountKey, CONSUMER_TENANT, Catalog, Flow, LinkKind, LinkMode, NewLink, PersonalProfile, StateHash},
    store::{
        DynStore,
        redis::{RedisOptions, RedisStore, ScratchPrefix},
        sled::{SledOptions, SledStore},
    },
};

fn request(n: u64) -> NewLink {
    NewLink {
        kind: LinkKind::MicrosoftLearning,
        work: AccountKey::parse("3b1d6a6e-5a3c-4f0a-9c7e-2f6b8e1d4c01", &format!("00000000-0000-4000-8000-{n:012x}")).unwrap(),
        work_upn: String::new(),
        personal: AccountKey::parse(CONSUMER_TENANT, &format!("00000000-0000-4000-9000-{n:012x}")).unwrap(),
        personal_sub: String::new(),
        profile: PersonalProfile::default(),
    }
}

async fn concurrent_writes(store: &DynStore, from: u64, count: u64, writers: u64) -> f64 {
    let started = Instant::now();
    let tasks: Vec<_> = (0..writers)
        .map(|w| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut n = from + w;
                while n < from + count {
                    store.link(request(n), LinkMode::default(), Utc::now()).await.unwrap();
                    n += writers;
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    count as f64 / started.elapsed().as_secs_f64()
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let number = |i: usize, default: u64| args.get(i).map(|a| a.parse().expect("a number")).unwrap_or(default);
    let (single, concurrent) = (number(0, 2_000), number(1, 20_000));
    let dir = tempfile::tempdir().unwrap();
    let catalog = Arc::new(Catalog::default_catalog());
    // sled, each write in a transaction of its own (the baseline of the combining), and with
    // combining and pages compressed (what `compression = true` costs).
    let sled_runs = |options: SledOptions, label: &'static str| {
        let catalog = catalog.clone();
        async move {
            let dir = tempfile::tempdir().unwrap();
            let store: DynStore = Arc::new(SledStore::open_with(dir.path(), catalog, options).unwrap());
            let one = concurrent_writes(&store, 0, single, 1).await;
            let many = concurrent_writes(&store, single, concurrent, 64).await;
            println!("{label}, 1 writer:   {one:.0}/s");
            println!("{label}, 64 writers: {many:.0}/s = {:.1}x one writer", many / one);
            (one, many)
        }
    };
    let (separate, compressed) = match args.get(2) {
        Some(_) => (None, None),
        None => (
            Some(sled_runs(SledOptions { write_combining: false, ..SledOptions::default() }, "separate transactions").await),
            Some(sled_runs(SledOptions { compression: true, ..SledOptions::default() }, "compressed pages").await),
        ),
    };
    // On Redis, a key prefix of this run's own, deleted at the end.
    let scratch = args.get(2).map(|url| ScratchPrefix::new(url, "idlink-bench"));
    let sled = scratch.is_none().then(|| Arc::new(SledStore::open(dir.path(), catalog.clone()).unwrap()));
    let store: DynStore = match &scratch {
        Some(s) => Arc::new(RedisStore::connect(RedisOptions::new(s.url.as_str(), s.prefix.as_str()), catalog).await.unwrap()),
        None => sled.clone().expect("sled is opened without a Redis URL"),
    };

    let one = concurrent_writes(&store, 0, single, 1).await;
    let many = concurrent_writes(&store, single, concurrent, 64).await;
    let combined = sled.as_ref().and_then(|s| s.combined());
    println!("durable link writes, 1 writer:   {one:.0}/s");
    println!("durable link writes, 64 writers: {many:.0}/s = {:.1}x one writer", many / one);
    if let Some((batches, changes)) = combined {
        println!("write combining: {changes} link writes in {batches} batches ({:.1} a batch)", changes as f64 / batches.max(1) as f64);
    }
    if let Some((separate_one, separate_many)) = separate {
        println!("combined against separate: 1 writer {:.2}x, 64 writers {:.2}x", one / separate_one, many / separate_many);
    }

    let total = single + concurrent;
    let started = Instant::now();
    let reads = 50_000u64;
    for i in 0..reads {
        let links = store.active_links(&request(i % total).work).await.unwrap();
        assert_eq!(links.len(), 1);
    }
    let read_rate = reads as f64 / started.elapsed().as_secs_f64();
    println!("active-link reads:               {read_rate:.0}/s");

    let now = Utc::now();
    let flows = 20_000u64;
    let started = Instant::now();
    for i in 0..flows {
        let flow = Flow {
            kind: LinkKind::MicrosoftLearning,
            owner: request(i).work,
            owner_upn: String::new(),
            redirect_uri: "https://partner.example/cb".into(),
            pkce_verifier: idlink_service::domain::FlowSecret::new("v".repeat(86)),
            nonce: idlink_service::domain::FlowSecret::new("n".repeat(43)),
            mode: LinkMode::default(),
            created_at: now,
            expires_at: now + Duration::minutes(10),
        };
        let raw = format!("state-{i}");
        let state = StateHash::of(&raw);
        store.put_flow(&state, &flow.seal(&raw).unwrap()).await.unwrap();
        assert!(store.take_flow(&state).await.unwrap().unwrap().open(&raw).is_ok());
    }
    let flow_rate = flows as f64 / started.elapsed().as_secs_f64();
    println!("flow create + consume:           {flow_rate:.0}/s");
    let mut figures = serde_json::json!({"writes_1": one.round(), "writes_64": many.round(), "writes_ratio": (many / one * 10.0).round() / 10.0,
                                         "reads": read_rate.round(), "flows": flow_rate.round()});
    if let Some((separate_one, separate_many)) = separate {
        figures["separate_writes_1"] = separate_one.round().into();
        figures["separate_writes_64"] = separate_many.round().into();
    }
    if let Some((compressed_one, compressed_many)) = compressed {
        figures["compressed_writes_1"] = compressed_one.round().into();
        figures["compressed_writes_64"] = compressed_many.round().into();
    }
    if let Some((batches, changes)) = combined {
        figures["writes_per_batch"] = ((changes as f64 / batches.max(1) as f64 * 10.0).round() / 10.0).into();
    }
    println!("{figures}");
}
