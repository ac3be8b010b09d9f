//! Health, honest and in two parts. Readiness — `""` and each idlink service — is SERVING only
//! while idlinkd can serve: providers loaded, store answering, not shutting down. Liveness —
//! the service `liveness` — is SERVING while the process answers at all, whatever the store
//! does, so an orchestrator restarts a pod that hangs, not every pod during a Redis blip.

use std::time::Duration;

use tonic_health::{ServingStatus, server::HealthReporter};

use crate::store::DynStore;

/// The health service name a liveness probe asks.
pub const LIVENESS: &str = "liveness";
const SERVICES: [&str; 4] = ["", "idlink.v1.LinkService", "idlink.v1.CreditService", "idlink.v1.OrganizationService"];
const STORE_PROBE: Duration = Duration::from_millis(500);

pub async fn set_ready(health: &HealthReporter, status: ServingStatus) {
    for service in SERVICES {
        health.set_service_status(service, status).await;
    }
}

/// Readiness follows the store: NOT_SERVING while it does not answer, SERVING again when it
/// does (until shutdown, which owns health from then on).
pub async fn watch_store(store: DynStore, health: HealthReporter, stop: tokio::sync::watch::Receiver<bool>) {
    let mut up = true;
    let mut probe = tokio::time::interval(STORE_PROBE);
    probe.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        probe.tick().await;
        let answered = store.ping().await;
        if *stop.borrow() {
            return;
        }
        match (up, answered) {
            (true, Err(e)) => {
                tracing::error!(error = %e, "store unreachable: readiness NOT_SERVING until it answers");
                set_ready(&health, ServingStatus::NotServing).await;
                up = false;
            }
            (false, Ok(())) => {
                tracing::info!("store reachable again: readiness SERVING");
                set_ready(&health, ServingStatus::Serving).await;
                up = true;
            }
            _ => {}
        }
    }
}
