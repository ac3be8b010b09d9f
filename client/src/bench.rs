//! `idlink bench`: a load generator using the real client — many concurrent requests over a
//! few HTTP/2 connections — reporting requests/s and latency percentiles. Every figure should
//! be read against the baseline measured in the same run: `health`, a trivial unary RPC on
//! the same server.

use std::time::{Duration, Instant};

use idlink_client::{ClientOptions, IdlinkClient, pb};
use serde_json::json;

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum Target {
    /// grpc.health.v1.Health/Check: the baseline.
    Health,
    /// LinkService/GetLinks with a work-user token (validated on every call).
    GetLinks,
    /// LinkService/ResolvePersonalAccount with an app token (validated on every call).
    Resolve,
}

pub struct Settings {
    pub endpoint: String,
    pub token: Option<String>,
    pub concurrency: usize,
    pub connections: usize,
    pub duration: Duration,
    /// For `resolve`: the personal account to resolve.
    pub personal: Option<pb::AccountRef>,
}

enum Caller {
    Health(tonic_health::pb::health_client::HealthClient<tonic::transport::Channel>),
    Links(Box<IdlinkClient>),
}

impl Caller {
    async fn call(&mut self, target: Target, personal: &Option<pb::AccountRef>) -> bool {
        match (self, target) {
            (Caller::Health(h), _) => h.check(tonic_health::pb::HealthCheckRequest { service: String::new() }).await.is_ok(),
            (Caller::Links(c), Target::GetLinks) => c.get_links().await.is_ok(),
            (Caller::Links(c), _) => c
                .resolve_personal_account(pb::ResolvePersonalAccountRequest {
                    kind: pb::LinkKind::MicrosoftLearning as i32,
                    personal_account: personal.clone(),
                })
                .await
                .is_ok(),
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

/// Runs one target at one concurrency; prints one JSON line (or a table row) and returns it.
pub async fn run(target: Target, s: &Settings, json_output: bool) -> anyhow::Result<serde_json::Value> {
    let mut channels = Vec::new();
    for _ in 0..s.connections.max(1) {
        channels.push(IdlinkClient::channel(&s.endpoint).await?);
    }
    let mut workers = Vec::new();
    // Warm up the connections (and the server's key cache) before measuring.
    let deadline = Instant::now() + Duration::from_millis(300) + s.duration;
    let measure_from = Instant::now() + Duration::from_millis(300);
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
        let personal = s.personal.clone();
        workers.push(tokio::spawn(async move {
            let (mut latencies, mut errors) = (Vec::new(), 0u64);
            while Instant::now() < deadline {
                let started = Instant::now();
                let ok = caller.call(target, &personal).await;
                if started >= measure_from {
                    if ok {
                        latencies.push(u32::try_from(started.elapsed().as_micros()).unwrap_or(u32::MAX));
                    } else {
                        errors += 1;
                    }
                }
            }
            (latencies, errors)
        }));
    }
    let (mut latencies, mut errors) = (Vec::new(), 0);
    for worker in workers {
        let (l, e) = worker.await?;
        latencies.extend(l);
        errors += e;
    }
    latencies.sort_unstable();
    let rps = latencies.len() as f64 / s.duration.as_secs_f64();
    let result = json!({
        "target": format!("{target:?}").to_lowercase(), "concurrency": s.concurrency, "connections": s.connections,
        "seconds": s.duration.as_secs_f64(), "requests": latencies.len(), "errors": errors, "rps": rps.round(),
        "p50_ms": percentile(&latencies, 0.50), "p90_ms": percentile(&latencies, 0.90), "p99_ms": percentile(&latencies, 0.99),
    });
    if json_output {
        println!("{result}");
    } else {
        println!(
            "{:<10} c={:<3} {:>9.0} req/s  p50 {:>7.3} ms  p90 {:>7.3} ms  p99 {:>7.3} ms  errors {}",
            result["target"].as_str().unwrap_or_default(),
            s.concurrency,
            rps,
            percentile(&latencies, 0.50),
            percentile(&latencies, 0.90),
            percentile(&latencies, 0.99),
            errors
        );
    }
    Ok(result)
}
