//! The metrics' two ways out. The metrics port: `GET /metrics` on `[telemetry]
//! metrics_listen`, plaintext (like the probes' port, it carries nothing personal). The push:
//! every interval, and once more on the way out, to the OTLP collector when one is configured.
//! Each reads the store's footprint first (at most a second): `idlink_store_up` is whether that
//! answer came, what the reading itself saw.

use std::{
    sync::{Arc, OnceLock},
    time::Duration,
};

use crate::metrics::otlp::OtlpMetrics;

use axum::{Router, extract::State, http::header, response::IntoResponse, routing::get};
use tokio::net::TcpListener;

use crate::{
    linking::Linker,
    metrics::{Metrics, Sample},
    store::DynStore,
};

/// What a scrape reads once idlinkd is serving (before that: store down, nothing open).
pub(super) struct Serving {
    pub store: DynStore,
    pub linker: Arc<Linker>,
}

#[derive(Clone)]
struct Scrape {
    metrics: Arc<Metrics>,
    serving: Arc<OnceLock<Serving>>,
}

pub(super) fn spawn(listener: TcpListener, metrics: Arc<Metrics>, serving: Arc<OnceLock<Serving>>) -> tokio::task::JoinHandle<()> {
    let app = Router::new().route("/metrics", get(scrape)).with_state(Scrape { metrics, serving });
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "the metrics port stopped");
        }
    })
}

/// What the gauges read now (before serving: store down, nothing open).
async fn sample(serving: &OnceLock<Serving>) -> Sample {
    let mut sample = Sample::default();
    if let Some(serving) = serving.get() {
        let answered = tokio::time::timeout(Duration::from_secs(1), serving.store.footprint()).await;
        if let Ok(Ok(footprint)) = answered {
            sample.store_up = true;
            sample.footprint = Some(footprint);
        }
        sample.watch_streams = serving.linker.watch_streams();
    }
    sample
}

async fn scrape(State(scrape): State<Scrape>) -> impl IntoResponse {
    let sample = sample(&scrape.serving).await;
    ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], scrape.metrics.encode(sample))
}

/// Pushes every `interval` until `stop`, then once more. A failed export is logged and the
/// next one tried: the collector's outage costs its data points, never the service.
pub(super) fn spawn_push(
    mut exporter: OtlpMetrics,
    interval: Duration,
    metrics: Arc<Metrics>,
    serving: Arc<OnceLock<Serving>>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let last = tokio::select! {
                _ = ticks.tick() => false,
                _ = stop.wait_for(|s| *s) => true,
            };
            let families = metrics.families(sample(&serving).await);
            if let Err(e) = exporter.export(&families, metrics.started()).await {
                tracing::warn!(error = %e, "metrics export to the OTLP collector failed");
            }
            if last {
                return;
            }
        }
    })
}
