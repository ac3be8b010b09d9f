//! The metrics port: `GET /metrics` on `[telemetry] metrics_listen`, plaintext (like the
//! probes' port, it carries nothing personal). Each scrape reads the store's footprint (at
//! most a second): `idlink_store_up` is whether that answer came, what the scrape itself saw.

use std::{
    sync::{Arc, OnceLock},
    time::Duration,
};

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

async fn scrape(State(scrape): State<Scrape>) -> impl IntoResponse {
    let mut sample = Sample::default();
    if let Some(serving) = scrape.serving.get() {
        let answered = tokio::time::timeout(Duration::from_secs(1), serving.store.footprint()).await;
        if let Ok(Ok(footprint)) = answered {
            sample.store_up = true;
            sample.footprint = Some(footprint);
        }
        sample.watch_streams = serving.linker.watch_streams();
    }
    ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], scrape.metrics.encode(sample))
}
