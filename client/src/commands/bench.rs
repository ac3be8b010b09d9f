//! `idlink bench`: a load generator using the real client — many concurrent requests over a
//! few HTTP/2 connections — reporting requests/s and latency percentiles. Every figure should
//! be read against the baseline measured in the same run: `health`, a trivial unary RPC on
//! the same server.

use std::time::{Duration, Instant};

use idlink_client::{ClientOptions, IdlinkClient, browser, pb};
use serde_json::json;

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum Target {
    /// grpc.health.v1.Health/Check: the baseline.
    Health,
    /// LinkService/GetLinks with a work-user token (validated on every call).
    GetLinks,
    /// LinkService/ResolvePersonalAccount with an app token (validated on every call).
    Resolve,
    /// CreditService/GetMyCertifications with a work-user token: the person's own view.
    MyCertifications,
    /// CreditService/GetOrganizationCredit by PartnerID (--partner-id) with a work-user token:
    /// the whole organisation, over its tenants.
    OrgCredit,
    /// Link completions end to end against the development provider (BeginLink, sign-in,
    /// CompleteLink), each followed by its RemoveLink: reported as `link` and `remove`. Each
    /// caller is a work user of its own, and each link a personal account new to the provider
    /// (so the limit on associations, counted per personal account, never refuses a rerun).
    Link,
}

pub struct Settings {
    pub endpoint: String,
    pub tls: idlink_client::ClientTls,
    pub token: Option<String>,
    pub concurrency: usize,
    pub connections: usize,
    pub duration: Duration,
    /// Exactly this many calls in all instead of a timed window (no warm-up left out).
    pub requests: Option<u64>,
    /// For `resolve`: the personal account to resolve.
    pub personal: Option<pb::AccountRef>,
    /// For `org-credit`: the organisation.
    pub partner_id: Option<String>,
    /// The development provider (`link`).
    pub idp: String,
}

enum Caller {
    Health(tonic_health::pb::health_client::HealthClient<tonic::transport::Channel>),
    Links(Box<IdlinkClient>),
}

impl Caller {
    async fn call(&mut self, target: Target, personal: &Option<pb::AccountRef>, partner: &str) -> Result<(), String> {
        match (self, target) {
            (Caller::Health(h), _) => {
                h.check(tonic_health::pb::HealthCheckRequest { service: String::new() }).await.map(drop).map_err(|e| e.to_string())
            }
            (Caller::Links(c), Target::GetLinks) => c.get_links().await.map(drop).map_err(|e| e.to_string()),
            (Caller::Links(c), Target::MyCertifications) => c.my_certifications().await.map(drop).map_err(|e| e.to_string()),
            (Caller::Links(c), Target::OrgCredit) => c
                .organization_credit_of(pb::GetOrganizationCreditRequest { partner_id: partner.to_owned(), ..Default::default() })
                .await
                .map(drop)
                .map_err(|e| e.to_string()),
            (Caller::Links(c), _) => c
                .resolve_personal_account(pb::ResolvePersonalAccountRequest {
                    kind: pb::LinkKind::MicrosoftLearning as i32,
                    personal_account: personal.clone(),
                })
                .await
                .map(drop)
                .map_err(|e| e.to_string()),
        }
    }
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    f64::from(sorted[i]) / 1000.0
}

/// Runs one target at one concurrency; prints one JSON line (or a table row) per figure.
pub async fn run(target: Target, s: &Settings, json_output: bool) -> anyhow::Result<()> {
    if let Target::Link = target {
        return run_links(s, json_output).await;
    }
    let channels = channels(s).await?;
    let mut workers = Vec::new();
    let window = std::sync::Arc::new(Window::new(s.duration, s.requests));
    for i in 0..s.concurrency.max(1) {
        let channel = channels[i % channels.len()].clone();
        let mut caller = match target {
            Target::Health => Caller::Health(tonic_health::pb::health_client::HealthClient::new(channel)),
            _ => {
                let mut options = ClientOptions::new(s.endpoint.clone());
                if let Some(token) = &s.token {
                    options = options.token(token.clone());
                }
                Caller::Links(Box::new(IdlinkClient::with_channel(channel, options)?))
            }
        };
        let (personal, partner, window) = (s.personal.clone(), s.partner_id.clone().unwrap_or_default(), window.clone());
        workers.push(tokio::spawn(async move {
            let mut sample = Sample::default();
            while window.open() {
                let started = Instant::now();
                let outcome = caller.call(target, &personal, &partner).await;
                sample.record(&window, started, outcome);
            }
            sample
        }));
    }
    let mut all = Sample::default();
    for worker in workers {
        all.merge(worker.await?);
    }
    report(&format!("{target:?}").to_lowercase(), s, all, window.elapsed(), json_output);
    Ok(())
}

/// `link`: each caller links its own personal account end to end, then removes the link,
/// over and over; both steps are timed.
async fn run_links(s: &Settings, json_output: bool) -> anyhow::Result<()> {
    // The benchmark's work users join the tenant of a fixture account.
    let tenant = crate::credentials::dev_user(&s.idp, "alex@contoso.example", None).await?;
    let channels = channels(s).await?;
    let http = browser::http_client()?;
    let mut callers = Vec::new();
    for i in 0..s.concurrency.max(1) {
        let work = format!("bench-{i}@contoso.example");
        crate::credentials::dev_user(&s.idp, &work, Some(&tenant)).await?;
        let options = ClientOptions::new(s.endpoint.clone()).token(crate::credentials::dev_token(&s.idp, "user", &work).await?);
        let client = IdlinkClient::with_channel(channels[i % channels.len()].clone(), options)?;
        // A link left by an earlier run: start from none (no link to remove is fine too).
        let _ = client.remove_link(remove_request()).await;
        callers.push((client, i));
    }
    // Each link is a new personal account's first association (the limit counts per personal
    // account): the accounts of this run are new to the provider, so runs can be repeated.
    let run = rand::random::<u32>();
    let window = std::sync::Arc::new(Window::new(s.duration, s.requests));
    let mut workers = Vec::new();
    for (client, i) in callers {
        let (http, idp, window) = (http.clone(), s.idp.clone(), window.clone());
        workers.push(tokio::spawn(async move {
            let (mut linked, mut removed) = (Sample::default(), Sample::default());
            for n in 0u64.. {
                if !window.open() {
                    break;
                }
                // Added before the clock starts: the provider's bookkeeping is not idlink's cost.
                let personal = format!("bench-{run:08x}-{i}-{n}@outlook.example");
                if let Err(e) = crate::credentials::dev_user(&idp, &personal, None).await {
                    linked.record(&window, Instant::now(), Err(e.to_string()));
                    continue;
                }
                let started = Instant::now();
                let begin = pb::BeginLinkRequest {
                    kind: pb::LinkKind::MicrosoftLearning as i32,
                    redirect_uri: browser::DEV_REDIRECT_URI.into(),
                    login_hint: Some(personal.clone()),
                    ..Default::default()
                };
                let outcome = async {
                    let begun = client.begin_link(begin).await?;
                    let redirect = browser::follow_authorization_with(&http, &begun.authorization_url).await?;
                    client.complete_link(redirect.into_complete_request()).await
                }
                .await;
                linked.record(&window, started, outcome.map(drop).map_err(|e| e.to_string()));
                let started = Instant::now();
                let outcome = client.remove_link(remove_request()).await;
                removed.record(&window, started, outcome.map(drop).map_err(|e| e.to_string()));
            }
            (linked, removed)
        }));
    }
    let (mut linked, mut removed) = (Sample::default(), Sample::default());
    for worker in workers {
        let (l, r) = worker.await?;
        linked.merge(l);
        removed.merge(r);
    }
    report("link", s, linked, window.elapsed(), json_output);
    report("remove", s, removed, window.elapsed(), json_output);
    Ok(())
}

fn remove_request() -> pb::RemoveLinkRequest {
    pb::RemoveLinkRequest { kind: pb::LinkKind::MicrosoftLearning as i32, reason: "bench".into(), ..Default::default() }
}

async fn channels(s: &Settings) -> anyhow::Result<Vec<tonic::transport::Channel>> {
    let mut channels = Vec::new();
    for _ in 0..s.connections.max(1) {
        channels.push(IdlinkClient::channel_with(&s.endpoint, &s.tls).await?);
    }
    Ok(channels)
}

/// The measured window: a 300 ms warm-up (connections, the server's key cache), then the
/// run's duration.
struct Window {
    measure_from: Instant,
    deadline: Instant,
    /// With a fixed number of calls: how many are still to be made.
    calls_left: Option<std::sync::atomic::AtomicU64>,
}

impl Window {
    /// A timed window after 300 ms of warm-up, or exactly `requests` calls, all counted.
    fn new(duration: Duration, requests: Option<u64>) -> Self {
        match requests {
            Some(n) => Self { measure_from: Instant::now(), deadline: Instant::now(), calls_left: Some(n.into()) },
            None => {
                let measure_from = Instant::now() + Duration::from_millis(300);
                Self { measure_from, deadline: measure_from + duration, calls_left: None }
            }
        }
    }

    /// Whether the caller may make another call (taking it from the count, if there is one).
    fn open(&self) -> bool {
        use std::sync::atomic::Ordering;
        match &self.calls_left {
            Some(left) => left.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1)).is_ok(),
            None => Instant::now() < self.deadline,
        }
    }

    fn elapsed(&self) -> Duration {
        match self.calls_left {
            Some(_) => self.measure_from.elapsed(),
            None => self.deadline.saturating_duration_since(self.measure_from),
        }
    }
}

/// Latencies (µs) of the calls that succeeded in the window, how many failed, and the first
/// failure (shown, so a run full of errors says why).
#[derive(Default)]
struct Sample {
    latencies: Vec<u32>,
    errors: u64,
    first_error: Option<String>,
}

impl Sample {
    fn record(&mut self, window: &Window, started: Instant, outcome: Result<(), String>) {
        if started < window.measure_from {
            return;
        }
        match outcome {
            Ok(()) => self.latencies.push(u32::try_from(started.elapsed().as_micros()).unwrap_or(u32::MAX)),
            Err(e) => {
                self.errors += 1;
                self.first_error.get_or_insert(e);
            }
        }
    }

    fn merge(&mut self, other: Sample) {
        self.latencies.extend(other.latencies);
        self.errors += other.errors;
        self.first_error = self.first_error.take().or(other.first_error);
    }
}

/// Prints one figure: a JSON line or a table row.
fn report(target: &str, s: &Settings, mut sample: Sample, elapsed: Duration, json_output: bool) {
    if let Some(e) = &sample.first_error {
        eprintln!("{target} c={}: {} calls failed; the first: {e}", s.concurrency, sample.errors);
    }
    sample.latencies.sort_unstable();
    let latencies = &sample.latencies;
    let rps = latencies.len() as f64 / elapsed.as_secs_f64().max(1e-9);
    let result = json!({
        "target": target, "concurrency": s.concurrency, "connections": s.connections,
        "seconds": elapsed.as_secs_f64(), "requests": latencies.len(), "errors": sample.errors, "rps": rps.round(),
        "p50_ms": percentile(latencies, 0.50), "p90_ms": percentile(latencies, 0.90), "p99_ms": percentile(latencies, 0.99),
    });
    if json_output {
        println!("{result}");
    } else {
        println!(
            "{target:<10} c={:<3} {rps:>9.0} req/s  p50 {:>7.3} ms  p90 {:>7.3} ms  p99 {:>7.3} ms  errors {}",
            s.concurrency,
            percentile(latencies, 0.50),
            percentile(latencies, 0.90),
            percentile(latencies, 0.99),
            sample.errors
        );
    }
}
