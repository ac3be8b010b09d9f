//! A write load that finds losses: writers, each a work user of its own, link their personal
//! account when they hold nothing and remove the link when they hold one, through idlinkd. A
//! writer whose answer does not come settles what it holds by reading, which must be what it
//! held or what it asked for; at the end, what each writer holds must be what idlink holds.

use std::{
    collections::BTreeMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use idlink_client::{ClientError, IdlinkClient, browser, pb};

use crate::{TestApp, begin_request};

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

/// What a run of the writers saw.
#[derive(Default)]
pub struct Tally {
    pub acknowledged: AtomicU64,
    /// Refusals by gRPC code (or transport failure).
    pub refused: Mutex<BTreeMap<String, u64>>,
    pub losses: Mutex<Vec<String>>,
}

impl Tally {
    fn refused(&self, e: &ClientError) {
        let code = e.code().map_or_else(|| format!("transport: {e}"), |c| format!("{c:?}"));
        *self.refused.lock().unwrap().entry(code).or_default() += 1;
    }

    fn lost(&self, what: String) {
        self.losses.lock().unwrap().push(what);
    }

    pub fn acknowledged(&self) -> u64 {
        self.acknowledged.load(Ordering::Relaxed)
    }

    /// Waits (up to 2 minutes) until this many changes were acknowledged.
    pub async fn until_acknowledged(&self, count: u64) {
        let deadline = Instant::now() + Duration::from_secs(120);
        while self.acknowledged() < count {
            assert!(Instant::now() < deadline, "only {} changes acknowledged", self.acknowledged());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
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
                tally.lost(format!("{}: held {:?}, found {found:?}", writer.personal, writer.held));
            }
            writer.held = found;
        }
    }
}

/// Settings under which writers may begin flows and associate as often as they can.
pub fn let_them_write(settings: &mut idlink_service::config::Settings) {
    settings.limits.begin_per_user_burst = 1_000_000;
    settings.limits.begin_per_user_per_minute = 1_000_000;
    crate::without_association_limit(settings);
}

/// `n` writers of `app` (its settings [`let_them_write`]).
pub struct Writers {
    idle: Vec<Writer>,
    running: Vec<tokio::task::JoinHandle<Writer>>,
    stop: Arc<AtomicBool>,
}

impl Writers {
    pub async fn new(app: &TestApp, n: usize) -> Self {
        let mut idle = Vec::new();
        for i in 0..n {
            let (_, client) = app.new_work_user(&format!("writer-{i}@contoso.example")).await;
            let personal = format!("writer-{i}@outlook.example");
            app.new_personal(&personal);
            idle.push(Writer { client, personal, held: Held::Nothing });
        }
        Self { idle, running: Vec::new(), stop: Arc::new(AtomicBool::new(false)) }
    }

    /// Every writer writes until [`Writers::stop`], counting into a new tally.
    pub fn start(&mut self) -> Arc<Tally> {
        let tally = Arc::new(Tally::default());
        self.stop = Arc::new(AtomicBool::new(false));
        for mut writer in self.idle.drain(..) {
            let (tally, stop) = (tally.clone(), self.stop.clone());
            self.running.push(tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    step(&mut writer, &tally).await;
                }
                writer
            }));
        }
        tally
    }

    /// Stops the writers (each after its step), then checks that what each holds is what
    /// idlink holds, noting any difference in `tally` as a loss.
    pub async fn stop(&mut self, tally: &Tally) {
        self.stop.store(true, Ordering::Relaxed);
        for writer in self.running.drain(..) {
            self.idle.push(writer.await.unwrap());
        }
        for writer in &self.idle {
            let found = read_held(&writer.client).await;
            if found != writer.held {
                tally.lost(format!("{}: held {:?}, found {found:?}", writer.personal, writer.held));
            }
        }
    }
}
