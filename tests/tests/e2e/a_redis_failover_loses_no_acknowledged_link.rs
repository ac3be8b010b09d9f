//! Redis behind sentinels, as production runs it: 32 writers link and remove through idlinkd
//! (`wait_replicas = 1`) while the primary is SIGKILLed. idlinkd follows the promotion by
//! itself; calls in the gap are refused UNAVAILABLE and nothing else; every link whose
//! completion was acknowledged is there on the promoted replica, and no acknowledged removal
//! is undone. `IDLINK_FAILOVER_ROUNDS` (default 1) sets how many primaries die in turn.

use std::{
    collections::BTreeMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use idlink_client::{ClientError, IdlinkClient, browser, pb};
use idlink_tests::{redis::SentinelSet, *};

const WRITERS: usize = 32;

/// What a writer knows its link to be: acknowledged, or found by reading after an answer
/// that did not come.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Held {
    Nothing,
    Active(String),
}

struct Writer {
    client: IdlinkClient,
    personal: String,
    held: Held,
}

#[derive(Default)]
struct Tally {
    acknowledged: AtomicU64,
    refused: Mutex<BTreeMap<String, u64>>,
    losses: Mutex<Vec<String>>,
}

impl Tally {
    fn refused(&self, e: &ClientError) {
        let code = e.code().map_or_else(|| format!("transport: {e}"), |c| format!("{c:?}"));
        *self.refused.lock().unwrap().entry(code).or_default() += 1;
    }
}

/// The writer's active Learning link, read until an answer comes (up to a minute).
async fn read_held(client: &IdlinkClient) -> Held {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match client.get_links().await {
            Ok(links) => {
                let active = links.into_iter().find(|l| l.kind == pb::LinkKind::MicrosoftLearning as i32);
                return active.map_or(Held::Nothing, |l| Held::Active(l.id));
            }
            Err(e) => assert!(Instant::now() < deadline && e.is_transient(), "GetLinks never answered: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Links when it holds nothing, removes when it holds a link; an answer that does not come
/// is settled by reading what is there, which must be what it held or what it asked for.
async fn step(writer: &mut Writer, tally: &Tally) {
    let outcome = match &writer.held {
        Held::Nothing => {
            async {
                let begun = writer.client.begin_link(begin_request(pb::LinkKind::MicrosoftLearning, &writer.personal)).await?;
                let redirect =
                    browser::follow_authorization(&begun.authorization_url).await.map_err(|e| ClientError::Invalid(e.to_string()))?;
                writer.client.complete_link(redirect.into_complete_request()).await.map(|link| Held::Active(link.id))
            }
            .await
        }
        Held::Active(_) => writer
            .client
            .remove_link(pb::RemoveLinkRequest { kind: pb::LinkKind::MicrosoftLearning as i32, ..Default::default() })
            .await
            .map(|_| Held::Nothing),
    };
    match outcome {
        Ok(held) => {
            writer.held = held;
            tally.acknowledged.fetch_add(1, Ordering::Relaxed);
        }
        Err(e) => {
            tally.refused(&e);
            let found = read_held(&writer.client).await;
            let possible = match &writer.held {
                // A completion whose answer was lost may or may not have linked.
                Held::Nothing => true,
                // A removal whose answer was lost leaves the link or nothing, never another.
                Held::Active(id) => found == Held::Nothing || found == Held::Active(id.clone()),
            };
            if !possible {
                tally.losses.lock().unwrap().push(format!("{}: held {:?}, found {found:?}", writer.personal, writer.held));
            }
            writer.held = found;
        }
    }
}

/// Runs every writer until `stop`, and hands them back.
async fn write_until(writers: Vec<Writer>, tally: &Arc<Tally>, stop: &Arc<AtomicBool>) -> Vec<tokio::task::JoinHandle<Writer>> {
    writers
        .into_iter()
        .map(|mut writer| {
            let (tally, stop) = (tally.clone(), stop.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    step(&mut writer, &tally).await;
                }
                writer
            })
        })
        .collect()
}

async fn until_acknowledged(tally: &Tally, count: u64) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while tally.acknowledged.load(Ordering::Relaxed) < count {
        assert!(Instant::now() < deadline, "only {} changes acknowledged", tally.acknowledged.load(Ordering::Relaxed));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_links_survive_the_primarys_death() {
    let Some(mut set) = SentinelSet::start() else { return };
    let app = TestApp::spawn_with(|s| {
        s.store.backend = idlink_service::config::Backend::Redis;
        s.store.redis_url = None;
        s.store.redis_sentinels = set.sentinels();
        s.store.redis_sentinel_master = Some(idlink_tests::redis::SENTINEL_MASTER.into());
        s.store.key_prefix = "failover".into();
        s.store.wait_replicas = 1;
        s.store.timeout_ms = 500;
        s.limits.begin_per_user_burst = 1_000_000;
        s.limits.begin_per_user_per_minute = 1_000_000;
        without_association_limit(s);
    })
    .await;
    let mut writers = Vec::new();
    for n in 0..WRITERS {
        let (_, client) = app.new_work_user(&format!("writer-{n}@contoso.example")).await;
        let personal = format!("writer-{n}@outlook.example");
        app.new_personal(&personal);
        writers.push(Writer { client, personal, held: Held::Nothing });
    }
    let rounds: usize = std::env::var("IDLINK_FAILOVER_ROUNDS").ok().and_then(|r| r.parse().ok()).unwrap_or(1);
    for round in 1..=rounds {
        let tally = Arc::new(Tally::default());
        let stop = Arc::new(AtomicBool::new(false));
        let running = write_until(writers, &tally, &stop).await;
        until_acknowledged(&tally, 64).await;

        let old = set.primary_port().expect("the sentinels name a primary");
        set.server(old).kill();
        let killed = Instant::now();
        let promoted = set.until_promoted(old);
        let gap = killed.elapsed();
        // The old primary comes back (as its pod would) as the new one's replica: with
        // wait_replicas = 1, changes are acknowledged again once it holds them.
        set.rejoin(old, promoted);
        let before_recovery = tally.acknowledged.load(Ordering::Relaxed);
        until_acknowledged(&tally, before_recovery + 64).await;
        wait_until_serving(&app.endpoint()).await;

        stop.store(true, Ordering::Relaxed);
        writers = Vec::new();
        for writer in running {
            writers.push(writer.await.unwrap());
        }
        // Every writer's acknowledged (or settled) state is what the promoted primary holds.
        for writer in &writers {
            let found = read_held(&writer.client).await;
            if found != writer.held {
                tally.losses.lock().unwrap().push(format!("{}: held {:?}, found {found:?}", writer.personal, writer.held));
            }
        }
        let refused = tally.refused.lock().unwrap().clone();
        let losses = tally.losses.lock().unwrap().clone();
        println!(
            "failover round {round}: {} changes acknowledged, refused {refused:?}, {} lost; promotion {:.1} s after the kill",
            tally.acknowledged.load(Ordering::Relaxed),
            losses.len(),
            gap.as_secs_f64()
        );
        assert!(losses.is_empty(), "acknowledged changes lost: {losses:?}");
        assert!(refused.keys().all(|code| code == "Unavailable"), "calls in the gap got other codes than UNAVAILABLE: {refused:?}");
        assert!(!refused.is_empty(), "no call met the gap: the primary's death was not under load");
        let report = app.integrity().await;
        assert!(report.problems.is_empty(), "{report:?}");
    }
}
