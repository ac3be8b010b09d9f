//! Full credit recalculation throughput, reported against a baseline measured in the same run
//! on the same data: a bare scan of every organisation's links (same reads, no credit math).
//!
//!     cargo run --release -p idlink-service --example recalc_throughput -- [ORGS] [LINKS_PER_ORG] [CERTS_PER_PERSON]
//!
//! Defaults: 200 organisations × 100 links × 3 certifications. Loads through the store API
//! (64 concurrent writers, group commit), in a temporary directory, with idlinkd's default
//! sled cache. Peak RSS is reported for the whole process and for the recalculation alone
//! (the growth of the resident set while it runs).

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "a benchmark fails loudly")]

use std::{sync::Arc, time::Instant};

use chrono::{Duration, Utc};
use idlink_service::{
    credits::Credits,
    domain::{
        AccountKey, CONSUMER_TENANT, Catalog, Certification, CertificationId, LinkKind, LinkMode, NewLink, PersonalProfile, TenantId,
    },
    store::{DynStore, ListQuery, sled::SledStore},
};

const CERTS: [&str; 6] = [
    "azure-administrator-associate",
    "azure-solutions-architect-expert",
    "m365-administrator-expert",
    "security-operations-analyst-associate",
    "azure-developer-associate",
    "power-platform-developer-associate",
];

fn tenant(org: u64) -> TenantId {
    TenantId::parse(&format!("{org:08x}-0000-4000-8000-000000000000")).unwrap()
}

/// A `/proc/self/status` memory field (`VmRSS`, `VmHWM`) in MiB.
fn proc_status_mib(field: &str) -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib: f64 =
        status.lines().find(|l| l.starts_with(field)).and_then(|l| l.split_whitespace().nth(1)).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    kib / 1024.0
}

#[tokio::main]
async fn main() {
    let args: Vec<u64> = std::env::args().skip(1).map(|a| a.parse().expect("numbers")).collect();
    let (orgs, per_org, certs_per) =
        (args.first().copied().unwrap_or(200), args.get(1).copied().unwrap_or(100), args.get(2).copied().unwrap_or(3));
    let dir = tempfile::tempdir().unwrap();
    let store: DynStore = Arc::new(SledStore::open(dir.path(), Arc::new(Catalog::default_catalog())).unwrap());
    let now = Utc::now();

    let started = Instant::now();
    let people: Vec<(u64, u64)> = (0..orgs).flat_map(|o| (0..per_org).map(move |l| (o, l))).collect();
    for chunk in people.chunks(64) {
        let writers: Vec<_> = chunk
            .iter()
            .map(|&(o, l)| {
                let store = store.clone();
                tokio::spawn(async move {
                    let new = NewLink {
                        kind: LinkKind::MicrosoftLearning,
                        work: AccountKey::parse(tenant(o).as_str(), &format!("00000000-0000-4000-8000-{l:012x}")).unwrap(),
                        work_upn: String::new(),
                        personal: AccountKey::parse(CONSUMER_TENANT, &format!("{o:08x}-0000-4000-8000-{l:012x}")).unwrap(),
                        personal_sub: String::new(),
                        profile: PersonalProfile::default(),
                    };
                    store.link(new, LinkMode::default(), now).await.unwrap();
                })
            })
            .collect();
        for w in writers {
            w.await.unwrap();
        }
    }
    let mut batch = Vec::new();
    for &(o, l) in &people {
        for k in 0..certs_per {
            batch.push(Certification {
                personal: AccountKey::parse(CONSUMER_TENANT, &format!("{o:08x}-0000-4000-8000-{l:012x}")).unwrap(),
                id: CertificationId::parse(CERTS[((o + l + k) % 6) as usize]).unwrap(),
                earned_at: now - Duration::days(30),
                expires_at: Some(now + Duration::days(365)),
                expired: false,
            });
            if batch.len() == 512 {
                store.record_certifications(&batch, now).await.unwrap();
                batch.clear();
            }
        }
    }
    store.record_certifications(&batch, now).await.unwrap();
    let links = orgs * per_org;
    println!("loaded {links} links, {} certifications in {:.1}s", links * certs_per, started.elapsed().as_secs_f64());

    // Baseline: read every organisation's links, nothing else — as many organisations at a
    // time as the recalculation does (one per core).
    let started = Instant::now();
    let permits = Arc::new(tokio::sync::Semaphore::new(std::thread::available_parallelism().map_or(2, usize::from)));
    let scans: Vec<_> = (0..orgs)
        .map(|o| {
            let (store, permits) = (store.clone(), permits.clone());
            tokio::spawn(async move {
                let _permit = permits.acquire_owned().await.unwrap();
                let query = ListQuery { kind: Some(LinkKind::MicrosoftLearning), include_removed: false, after: None, limit: usize::MAX };
                store.links_of_tenant(&tenant(o), &query).await.unwrap().links.len()
            })
        })
        .collect();
    let mut scanned = 0;
    for scan in scans {
        scanned += scan.await.unwrap();
    }
    let baseline = started.elapsed().as_secs_f64();
    assert_eq!(scanned as u64, links);

    // Full recalculation, as RecalculateCredits runs it: page through organisations, each page
    // recalculated several organisations at a time.
    let credits = Arc::new(Credits::new(store.clone(), Arc::new(Catalog::default_catalog())));
    let rss_before = proc_status_mib("VmRSS");
    let mut rss_during: f64 = rss_before;
    let started = Instant::now();
    let (mut done, mut drifted, mut after) = (0u64, 0u64, None::<TenantId>);
    loop {
        let page = credits.organizations_after(after.as_ref(), 64).await.unwrap();
        let Some(last) = page.last().cloned() else { break };
        let mut running = credits.recalculate_page(&page);
        while let Some(outcome) = running.next().await {
            let r = outcome.unwrap();
            drifted += u64::from(r.stored != r.recomputed);
            done += 1;
            if done % 256 == 0 {
                rss_during = rss_during.max(proc_status_mib("VmRSS"));
            }
        }
        after = Some(last);
    }
    let recalc = started.elapsed().as_secs_f64();
    assert_eq!((done, drifted), (orgs, 0));
    println!("baseline scan:   {baseline:.3}s ({:.0} links/s)", links as f64 / baseline);
    println!(
        "recalculation:   {recalc:.3}s ({:.0} links/s, {:.0} organisations/s) = {:.2}x the baseline",
        links as f64 / recalc,
        orgs as f64 / recalc,
        recalc / baseline
    );
    let rss_during = rss_during.max(proc_status_mib("VmRSS"));
    println!(
        "peak RSS:        {:.0} MiB for the whole process; {:.0} MiB during recalculation (was {:.0} MiB before)",
        proc_status_mib("VmHWM"),
        rss_during,
        rss_before
    );
    println!(
        "{}",
        serde_json::json!({"organizations": orgs, "links": links, "certifications": links * certs_per, "baseline_s": baseline,
                           "recalc_s": recalc, "links_per_s": (links as f64 / recalc).round(), "ratio": recalc / baseline,
                           "peak_rss_mib": proc_status_mib("VmHWM").round(), "recalc_rss_mib": rss_during.round()})
    );
}
