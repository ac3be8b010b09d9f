//! Builds and runs the server: store, identity providers, gRPC services, background tasks.
//!
//! Start-up is honest: `build` validates the configuration, opens the store and binds the
//! port; `run_until_stopped` then serves health (NOT_SERVING, every other RPC UNAVAILABLE)
//! while it loads every provider's metadata — retrying while a provider is down — and only
//! then serves everything and reports SERVING. On shutdown health flips back first.

use std::{collections::HashMap, net::SocketAddr, sync::Arc, time::Duration};

use idlink_proto::v1::{
    credit_service_server::CreditServiceServer, link_service_server::LinkServiceServer,
    organization_service_server::OrganizationServiceServer,
};
use tokio::net::TcpListener;
use tonic_health::{ServingStatus, server::HealthReporter};

use crate::{
    api::{
        auth::{AuthLayer, StartingLayer},
        credit::CreditApi,
        idempotency::Requests,
        link::LinkApi,
        organization::OrganizationApi,
        page_token::PageTokens,
    },
    clock::DynClock,
    config::{Backend, ConfigError, ServerSettings, Settings},
    credits::Credits,
    domain::LinkKind,
    limits::{BeginLimiter, LimitSettings},
    linking::Linker,
    oidc::{AssociationClient, Authenticator, KindSettings, OidcError, provider_http_client},
    store::{
        DynStore, StoreError,
        redis::{RedisOptions, RedisStore},
        sled::SledStore,
    },
};

const PROVIDER_TIMEOUT: Duration = Duration::from_secs(10);
const PROVIDER_RETRY: Duration = Duration::from_secs(2);
const JWKS_REFRESH: Duration = Duration::from_secs(3600);
const HOUSEKEEPING: Duration = Duration::from_secs(60);
const STORE_PROBE: Duration = Duration::from_millis(500);
/// The transport's ceiling on a call's metadata (HTTP/2 header list). Far above idlink's own
/// limits (an 8 KiB token, a 128-character request id), so those answer first, per call, with
/// a reason; a call over it is refused by the transport without one, and one over four times
/// it closes the connection (h2's abuse limit).
pub const MAX_HEADER_LIST_BYTES: u32 = 128 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Oidc(#[from] OidcError),
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("cannot listen on {addr}: {source}")]
    Listen { addr: SocketAddr, source: std::io::Error },
    #[error("server: {0}")]
    Serve(String),
}

pub struct Application {
    listener: Arc<TcpListener>,
    addr: SocketAddr,
    store: DynStore,
    credits: Arc<Credits>,
    auth: Arc<Authenticator>,
    clock: DynClock,
    page_tokens: PageTokens,
    retention: chrono::Duration,
    server: ServerSettings,
    providers: Providers,
}

/// What is needed to bring the association providers up once serving has begun.
struct Providers {
    kinds: Vec<(LinkKind, KindSettings)>,
    http: openidconnect::reqwest::Client,
    allow_insecure_http: bool,
    jwks_refetch: Duration,
    flow_ttl: chrono::Duration,
    limits: LimitSettings,
}

/// Everything ready to serve.
struct Ready {
    linker: Arc<Linker>,
}

/// Accepted connections, with Nagle's algorithm off: small gRPC frames would otherwise wait
/// for the peer's delayed ACK (~40 ms a request, measured with `idlink bench`).
fn incoming(listener: Arc<TcpListener>) -> impl tokio_stream::Stream<Item = std::io::Result<tokio::net::TcpStream>> + Send + 'static {
    futures_util::stream::unfold(listener, |listener| async move {
        let accepted = listener.accept().await.and_then(|(socket, _)| socket.set_nodelay(true).map(|()| socket));
        Some((accepted, listener))
    })
}

async fn set_all(health: &HealthReporter, status: ServingStatus) {
    health.set_service_status("", status).await;
    for service in ["idlink.v1.LinkService", "idlink.v1.CreditService", "idlink.v1.OrganizationService"] {
        health.set_service_status(service, status).await;
    }
}

/// Health follows the store: NOT_SERVING while it does not answer, SERVING again when it
/// does (until shutdown, which owns health from then on).
async fn watch_store(store: DynStore, health: HealthReporter, stop: tokio::sync::watch::Receiver<bool>) {
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
                tracing::error!(error = %e, "store unreachable: health NOT_SERVING until it answers");
                set_all(&health, ServingStatus::NotServing).await;
                up = false;
            }
            (false, Ok(())) => {
                tracing::info!("store reachable again: health SERVING");
                set_all(&health, ServingStatus::Serving).await;
                up = true;
            }
            _ => {}
        }
    }
}

impl Application {
    /// Validates the configuration (naming the bad key), opens the store, binds the port.
    pub async fn build(settings: &Settings, clock: DynClock) -> Result<Self, StartupError> {
        let inbound = settings.inbound()?;
        if inbound.services.is_empty() {
            tracing::warn!("auth.service_tenant and auth.service_apps are not set: no app may call idlink, whatever roles it holds");
        }
        let kinds = settings.kinds();
        for (kind, kind_settings) in &kinds {
            AssociationClient::check_settings(*kind, kind_settings, settings.dev.allow_insecure_http)?;
        }
        if kinds.is_empty() {
            tracing::warn!("no [kinds.*] configured: BeginLink will refuse every kind");
        }
        let http = provider_http_client(PROVIDER_TIMEOUT)?;
        let catalog = Arc::new(settings.credit.load_catalog()?);
        let store: DynStore = match settings.store.backend {
            Backend::Sled => {
                Arc::new(SledStore::open_with_cache(&settings.store.path, catalog.clone(), settings.store.cache_mb * 1024 * 1024)?)
            }
            Backend::Redis => Arc::new(RedisStore::connect(RedisOptions::try_from(&settings.store)?, catalog.clone()).await?),
        };
        let page_tokens = PageTokens::new(store.secret("page-token").await?);
        let listener = TcpListener::bind(settings.listen).await.map_err(|source| StartupError::Listen { addr: settings.listen, source })?;
        let addr = listener.local_addr().map_err(|source| StartupError::Listen { addr: settings.listen, source })?;
        Ok(Self {
            listener: Arc::new(listener),
            addr,
            credits: Arc::new(Credits::new(store.clone(), catalog)),
            auth: Arc::new(Authenticator::new(inbound.clone(), http.clone())),
            providers: Providers {
                kinds,
                http,
                allow_insecure_http: settings.dev.allow_insecure_http,
                jwks_refetch: inbound.jwks_refetch_interval,
                flow_ttl: chrono::Duration::seconds(i64::try_from(settings.flows.ttl_seconds).unwrap_or(600)),
                limits: settings.limits.clone(),
            },
            store,
            clock,
            page_tokens,
            retention: chrono::Duration::days(i64::from(settings.events.retention_days)),
            server: settings.server.clone(),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn store(&self) -> DynStore {
        self.store.clone()
    }

    /// Loads every provider's metadata, retrying while one is unreachable, until `stop`.
    async fn bring_up(&self, stop: &mut tokio::sync::watch::Receiver<bool>) -> Option<Ready> {
        let p = &self.providers;
        let mut kinds = HashMap::new();
        for (kind, settings) in &p.kinds {
            loop {
                match AssociationClient::discover(*kind, settings.clone(), p.http.clone(), p.allow_insecure_http, p.jwks_refetch).await {
                    Ok(client) => {
                        tracing::info!(%kind, issuer = client.issuer(), "identity provider ready");
                        kinds.insert(*kind, client);
                        break;
                    }
                    Err(e) => tracing::warn!(%kind, error = %e, "identity provider not reachable yet; retrying"),
                }
                tokio::select! {
                    _ = tokio::time::sleep(PROVIDER_RETRY) => {}
                    _ = stop.wait_for(|s| *s) => return None,
                }
            }
        }
        let linker =
            Linker::new(self.store.clone(), kinds, p.flow_ttl, BeginLimiter::new(p.limits.clone()), p.limits.watch_streams_per_caller);
        Some(Ready { linker: Arc::new(linker) })
    }

    /// Serves until `shutdown` resolves, then lets in-flight RPCs finish (within the grace period).
    pub async fn run_until_stopped(self, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<(), StartupError> {
        let (health, health_service) = tonic_health::server::health_reporter();
        set_all(&health, ServingStatus::NotServing).await;
        let (stop_tx, mut stop) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            shutdown.await;
            tracing::info!("shutting down");
            let _ = stop_tx.send(true);
        });

        // Starting: only health answers (NOT_SERVING); every other RPC is UNAVAILABLE.
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel::<()>();
        let starting = tonic::transport::Server::builder()
            .http2_max_header_list_size(MAX_HEADER_LIST_BYTES)
            .layer(StartingLayer)
            .add_service(health_service.clone())
            .serve_with_incoming_shutdown(incoming(self.listener.clone()), async move {
                let _ = ready_rx.await;
            });
        let starting = tokio::spawn(starting);
        tracing::info!(addr = %self.addr, "idlinkd listening; loading identity providers");
        let ready = self.bring_up(&mut stop).await;
        let _ = ready_tx.send(());
        let _ = starting.await;
        let Some(ready) = ready else { return Ok(()) };

        let requests =
            Arc::new(Requests::new(self.store.clone(), self.clock.clone(), self.providers.limits.request_ids_per_caller_per_day));
        let background = self.spawn_background_tasks(&ready, requests.clone());
        let reflection = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(idlink_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .build_v1()
            .map_err(|e| StartupError::Serve(e.to_string()))?;
        let (stopping, stopped) = tokio::sync::watch::channel(false);
        let (signalled_tx, signalled) = tokio::sync::oneshot::channel::<()>();
        let drain = {
            let (health, mut stop) = (health.clone(), stop.clone());
            async move {
                let _ = stop.wait_for(|s| *s).await;
                // Tell load balancers first, then end watch streams (they would hold graceful
                // shutdown forever), then let tonic drain in-flight RPCs.
                set_all(&health, ServingStatus::NotServing).await;
                let _ = stopping.send(true);
                let _ = signalled_tx.send(());
            }
        };
        let limits = &self.server;
        let max = limits.max_message_bytes;
        let link_api = LinkApi::new(ready.linker.clone(), self.clock.clone(), self.page_tokens, stopped, requests.clone());
        let serve = tonic::transport::Server::builder()
            .timeout(Duration::from_secs(limits.request_timeout_seconds))
            .http2_max_header_list_size(MAX_HEADER_LIST_BYTES)
            .max_concurrent_streams(u32::try_from(limits.concurrency_per_connection).unwrap_or(u32::MAX))
            .concurrency_limit_per_connection(limits.concurrency_per_connection)
            .http2_keepalive_interval(Some(Duration::from_secs(limits.keepalive_seconds)))
            .http2_keepalive_timeout(Some(Duration::from_secs(20)))
            .tcp_keepalive(Some(Duration::from_secs(limits.keepalive_seconds)))
            .layer(AuthLayer::new(self.auth.clone(), self.clock.clone()))
            .add_service(health_service)
            .add_service(reflection)
            .add_service(LinkServiceServer::new(link_api).max_decoding_message_size(max).max_encoding_message_size(max))
            .add_service(
                CreditServiceServer::new(CreditApi::new(self.credits.clone(), self.clock.clone()))
                    .max_decoding_message_size(max)
                    .max_encoding_message_size(max),
            )
            .add_service(
                OrganizationServiceServer::new(OrganizationApi::new(self.credits.clone(), self.clock.clone(), requests))
                    .max_decoding_message_size(max)
                    .max_encoding_message_size(max),
            )
            .serve_with_incoming_shutdown(incoming(self.listener.clone()), drain);
        set_all(&health, ServingStatus::Serving).await;
        tracing::info!(addr = %self.addr, "idlinkd serving");
        let probe = tokio::spawn(watch_store(self.store.clone(), health.clone(), stop.clone()));
        // The self check reads every link: in the background, so a large store (or a Redis
        // shared by many replicas) does not hold up start-up. It reports; it does not repair.
        let store = self.store.clone();
        tokio::spawn(async move {
            match store.check_integrity().await {
                Ok(report) if report.problems.is_empty() => {
                    tracing::info!(active_links = report.active_links, tombstones = report.tombstones, "store integrity check passed")
                }
                Ok(report) => tracing::error!(problems = ?report.problems, "store integrity check found problems"),
                Err(e) => tracing::warn!(error = %e, "store integrity check could not run"),
            }
        });
        let grace = Duration::from_secs(limits.grace_seconds);
        let result = tokio::select! {
            served = serve => served.map_err(|e| StartupError::Serve(e.to_string())),
            () = async {
                let _ = signalled.await;
                tokio::time::sleep(grace).await;
            } => {
                tracing::warn!(grace_seconds = grace.as_secs(), "grace period over: exiting with RPCs still in flight");
                Ok(())
            }
        };
        background.abort();
        probe.abort();
        result
    }

    fn spawn_background_tasks(&self, ready: &Ready, requests: Arc<Requests>) -> tokio::task::JoinHandle<()> {
        let (linker, auth, clock, credits, retention) =
            (ready.linker.clone(), self.auth.clone(), self.clock.clone(), self.credits.clone(), self.retention);
        tokio::spawn(async move {
            let mut housekeeping = tokio::time::interval(HOUSEKEEPING);
            let mut keys = tokio::time::interval(JWKS_REFRESH);
            keys.tick().await; // keys were just fetched at start
            loop {
                tokio::select! {
                    _ = housekeeping.tick() => {
                        let now = clock.now();
                        if let Err(e) = linker.purge_expired_flows(now).await {
                            tracing::warn!(error = %e, "flow purge failed");
                        }
                        match credits.expire(now).await {
                            Ok(0) => {}
                            Ok(n) => tracing::info!(expired = n, "certifications expired"),
                            Err(e) => tracing::warn!(error = %e, "certification expiry failed"),
                        }
                        if let Err(e) = linker.store().purge_events_before(now - retention).await {
                            tracing::warn!(error = %e, "event retention failed");
                        }
                        requests.purge().await;
                    },
                    _ = keys.tick() => {
                        auth.refresh_keys().await;
                        for client in linker.kinds().values() {
                            client.jwks().refresh().await;
                        }
                    }
                }
            }
        })
    }
}
