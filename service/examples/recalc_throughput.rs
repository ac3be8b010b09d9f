//! Full credit recalculation, as `RecalculateCredits` with no organisation named runs it,
//! reported against a baseline measured in the same run on the same data: one ordered read
//! of every record the recalculation reads (the link holders of both kinds, their
//! achievements, the stored credit), decoding nothing — the least any recalculation reads.
//!
//! Every person has a Microsoft Learning link with CERTS_PER_PERSON certifications; one in
//! five also has a Partner University link (to another personal account) with one assessment
//! in an area their certifications may share, so both sources and the once-per-area join are
//! measured.
//!
//!     cargo run --release -p idlink-service --example recalc_throughput -- [ORGS] [LINKS_PER_ORG] [CERTS_PER_PERSON] [DATA_DIR]
//!
//! Defaults: 200 organisations × 100 links × 3 certifications, in a temporary directory.
//! DATA_DIR may instead be a `redis://` URL of an empty Redis of the run's own: the same load
//! goes there, and the run reports Redis's `used_memory` before and after it and the
//! recalculation's time and idlinkd-side peak RSS (sizing figures; the baseline and its ratio
//! are sled's).
//! Loads through the store API (64 concurrent writers, group commit) unless DATA_DIR already
//! holds this load. The baseline and the recalculation each run in a fresh process that opens
//! the store with idlinkd's default sled cache, as idlinkd after a restart would: their peak
//! RSS is their own, not the loader's.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "a benchmark fails loudly")]

use std::{path::Path, process::Command, sync::Arc, time::Instant};

use chrono::{Duration, Utc};
use idlink_service::{
    credits::{Credits, RecalculationItem},
    domain::{
        AccountKey, CONSUMER_TENANT, Catalog, Certification, CertificationId, LinkKind, LinkMode, NewLink, PersonalProfile, TenantId,
    },
    store::{
        DynStore,
        redis::{RedisOptions, RedisStore},
        sled::SledStore,
    },
};

const CERTS: [&str; 6] = [
    "azure-administrator-associate",
    "azure-solutions-architect-expert",
    "m365-administrator-expert",
    "security-operations-analyst-associate",
    "azure-developer-associate",
    "power-platform-developer-associate",
];

const ASSESSMENTS: [&str; 3] =
    ["pu-infrastructure-technical-assessment", "pu-modern-work-technical-assessment", "pu-security-technical-assessment"];

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

fn open(dir: &Path) -> DynStore {
    Arc::new(when_unlocked(|| SledStore::open(dir, Arc::new(Catalog::default_catalog()))))
}

async fn open_redis(url: &str) -> DynStore {
    let mut options = RedisOptions::new(url, "sizing");
    options.timeout = std::time::Duration::from_secs(60);
    Arc::new(RedisStore::connect(options, Arc::new(Catalog::default_catalog())).await.unwrap())
}

/// Redis's `used_memory`, as idlink_store_memory_bytes reports it.
async fn used_memory(store: &DynStore) -> u64 {
    store.footprint().await.unwrap().memory_bytes.unwrap()
}

/// Opens the database once the previous process's (or phase's) sled lets go of its lock:
/// sled's own flusher thread still holds it for a moment after the database is dropped.
fn when_unlocked<T, E: std::fmt::Debug>(mut open: impl FnMut() -> Result<T, E>) -> T {
    let mut attempts = 0;
    loop {
        match open() {
            Err(e) if attempts < 100 && format!("{e:?}").contains("could not acquire lock") => {
                attempts += 1;
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            opened => return opened.expect("the database opens (within 10 s of its previous user)"),
        }
    }
}

/// Whether person `l` of an organisation also holds a Partner University link.
fn in_partner_university(l: u64) -> bool {
    l.is_multiple_of(5)
}

fn personal(o: u64, l: u64, kind: LinkKind) -> AccountKey {
    let variant = if kind == LinkKind::MicrosoftLearning { 8 } else { 9 };
    AccountKey::parse(CONSUMER_TENANT, &format!("{o:08x}-0000-4000-{variant}000-{l:012x}")).unwrap()
}

/// Loads `orgs × per_org` Microsoft Learning links and `certs_per` certifications each, and
/// the Partner University links and assessments of one person in five.
async fn load(store: DynStore, orgs: u64, per_org: u64, certs_per: u64) {
    let now = Utc::now();
    let started = Instant::now();
    let people: Vec<(u64, u64)> = (0..orgs).flat_map(|o| (0..per_org).map(move |l| (o, l))).collect();
    for chunk in people.chunks(64) {
        let writers: Vec<_> = chunk
            .iter()
            .map(|&(o, l)| {
                let store = store.clone();
                tokio::spawn(async move {
                    let kinds: &[LinkKind] = if in_partner_university(l) { &LinkKind::ALL } else { &[LinkKind::MicrosoftLearning] };
                    for &kind in kinds {
                        let new = NewLink {
                            kind,
                            work: AccountKey::parse(tenant(o).as_str(), &format!("00000000-0000-4000-8000-{l:012x}")).unwrap(),
                            work_upn: String::new(),
                            personal: personal(o, l, kind),
                            personal_sub: String::new(),
                            profile: PersonalProfile::default(),
                        };
                        store.link(new, LinkMode::default(), now).await.unwrap();
                    }
                })
            })
            .collect();
        for w in writers {
            w.await.unwrap();
        }
    }
    let mut batch = Vec::new();
    for &(o, l) in &people {
        let learning = (0..certs_per).map(|k| (LinkKind::MicrosoftLearning, CERTS[((o + l + k) % 6) as usize]));
        let university = in_partner_university(l).then_some((LinkKind::PartnerUniversity, ASSESSMENTS[((o + l) % 3) as usize]));
        for (source, id) in learning.chain(university) {
            batch.push(Certification {
                personal: personal(o, l, source),
                source,
                id: CertificationId::parse(id).unwrap(),
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
    let university = people.iter().filter(|(_, l)| in_partner_university(*l)).count();
    eprintln!(
        "loaded {} links, {} achievements in {:.1}s",
        people.len() + university,
        people.len() as u64 * certs_per + university as u64,
        started.elapsed().as_secs_f64()
    );
}

/// The baseline, in its own process: every record the recalculation reads, in key order,
/// through sled with idlinkd's cache, decoding nothing. Prints seconds, records and peak RSS.
fn baseline(dir: &Path) {
    let db = when_unlocked(|| idlink_service::store::sled::raw_config(dir, idlink_service::store::sled::DEFAULT_CACHE_BYTES).open());
    let started = Instant::now();
    let mut records = 0u64;
    let mut bytes = 0usize;
    for tree in ["links_by_personal", "certifications", "credit"] {
        for entry in db.open_tree(tree).unwrap().iter() {
            let (key, value) = entry.unwrap();
            records += 1;
            bytes += key.len() + value.len();
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "{}",
        serde_json::json!({"seconds": seconds, "records": records, "mib": bytes / (1 << 20), "peak_rss_mib": proc_status_mib("VmHWM").round()})
    );
}

/// The recalculation, in its own process, exactly as RecalculateCredits runs it for every
/// organisation. Prints seconds, organisations, drift and peak RSS.
async fn recalculate(store: DynStore) {
    let credits = Arc::new(Credits::new(store, Arc::new(Catalog::default_catalog())));
    let started = Instant::now();
    let (mut done, mut drifted) = (0u64, 0u64);
    let job = idlink_service::linking::Actor {
        principal: idlink_service::domain::Principal::App {
            tenant: idlink_service::domain::TenantId::parse("5e7ab1c4-0d2f-4a6b-9c8d-3f1e2d4c5b03").unwrap(),
            app_id: "credit-recalculation".into(),
            roles: [idlink_service::domain::AppRole::CreditsRecalculate].into(),
        },
        request_id: "recalc-throughput".into(),
        peer: None,
    };
    let mut all = credits.recalculation(&job, Vec::new()).unwrap();
    while let Some(item) = futures_util::StreamExt::next(&mut all).await {
        if let RecalculationItem::Organization { outcome, .. } = item.unwrap() {
            drifted += u64::from(outcome.stored != outcome.recomputed);
            done += 1;
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "{}",
        serde_json::json!({"seconds": seconds, "organizations": done, "drifted": drifted, "peak_rss_mib": proc_status_mib("VmHWM").round()})
    );
}

/// Runs this program again as `--phase DIR` and returns the JSON it prints.
fn in_own_process(phase: &str, dir: impl AsRef<std::ffi::OsStr>) -> serde_json::Value {
    let out = Command::new(std::env::current_exe().unwrap()).arg(phase).arg(dir).output().unwrap();
    assert!(out.status.success(), "{phase} failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("--baseline") => return baseline(Path::new(&args[1])),
        Some("--recalculate") if args[1].starts_with("redis://") => return recalculate(open_redis(&args[1]).await).await,
        Some("--recalculate") => return recalculate(open(Path::new(&args[1]))).await,
        _ => {}
    }
    let number = |i: usize, default: u64| args.get(i).map_or(default, |a| a.parse().expect("numbers"));
    let (orgs, per_org, certs_per) = (number(0, 200), number(1, 100), number(2, 3));
    if let Some(url) = args.get(3).filter(|a| a.starts_with("redis://")) {
        let store = open_redis(url).await;
        let before = used_memory(&store).await;
        load(store.clone(), orgs, per_org, certs_per).await;
        let after = used_memory(&store).await;
        let recalc = in_own_process("--recalculate", url);
        assert_eq!((recalc["organizations"].as_u64().unwrap(), recalc["drifted"].as_u64().unwrap()), (orgs, 0));
        println!(
            "{}",
            serde_json::json!({"organizations": orgs, "links_per_org": per_org, "certs_per_person": certs_per,
                               "redis_used_memory_before": before, "redis_used_memory_after": after,
                               "recalc_s": recalc["seconds"], "recalc_rss_mib": recalc["peak_rss_mib"]})
        );
        return;
    }
    let scratch = tempfile::tempdir().unwrap();
    let dir = args.get(3).map_or(scratch.path(), Path::new);
    let marker = dir.join(format!("loaded-{orgs}-{per_org}-{certs_per}"));
    if !marker.exists() {
        load(open(dir), orgs, per_org, certs_per).await;
        std::fs::write(&marker, b"").unwrap();
    }
    let university = (0..per_org).filter(|l| in_partner_university(*l)).count() as u64 * orgs;
    let links = orgs * per_org + university;

    let base = in_own_process("--baseline", dir);
    let recalc = in_own_process("--recalculate", dir);
    assert_eq!(base["records"].as_u64().unwrap(), links * 2 + orgs, "the baseline read another layout than the store's");
    assert_eq!((recalc["organizations"].as_u64().unwrap(), recalc["drifted"].as_u64().unwrap()), (orgs, 0));
    let (baseline_s, recalc_s) = (base["seconds"].as_f64().unwrap(), recalc["seconds"].as_f64().unwrap());
    println!("baseline read:   {baseline_s:.3}s ({} records, {} MiB, peak RSS {} MiB)", base["records"], base["mib"], base["peak_rss_mib"]);
    println!(
        "recalculation:   {recalc_s:.3}s ({:.0} links/s, {:.0} organisations/s) = {:.2}x the baseline; peak RSS {} MiB",
        links as f64 / recalc_s,
        orgs as f64 / recalc_s,
        recalc_s / baseline_s,
        recalc["peak_rss_mib"]
    );
    println!(
        "{}",
        serde_json::json!({"organizations": orgs, "links": links, "certifications": orgs * per_org * certs_per + university, "baseline_s": baseline_s,
                           "baseline_mib": base["mib"], "baseline_rss_mib": base["peak_rss_mib"],
                           "recalc_s": recalc_s, "links_per_s": (links as f64 / recalc_s).round(), "ratio": recalc_s / baseline_s,
                           "recalc_rss_mib": recalc["peak_rss_mib"]})
    );
}
