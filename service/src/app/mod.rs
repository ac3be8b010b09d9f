//! Builds and runs the server: store, identity providers, gRPC services, background tasks.
//!
//! Start-up is honest: `build` validates the configuration, opens the store when it answers
//! and binds the ports; `run_until_stopped` then serves health (readiness NOT_SERVING,
//! liveness SERVING; every other RPC UNAVAILABLE) while it opens the store — retrying while
//! Redis does not answer — and loads every provider's metadata — retrying while a provider is
//! down — and only then serves everything and reports SERVING. On shutdown readiness flips
//! back first. TLS is in [`tls`], the accepted connections in [`listen`], health in [`health`].

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
        detached::DetachedLayer,
        idempotency::Requests,
        link::LinkApi,
        organization::OrganizationApi,
        page_token::PageTokens,
    },
    clock::DynClock,
    config::{Backend, ConfigError, ServerSettings, Settings},
    credits::Credits,
    domain::{Catalog, LinkKind},
    limits::{BeginLimiter, LimitSettings},
    linking::Linker,
    oidc::{AssociationClient, Authenticator, KindSettings, OidcError, provider_http_client},
    store::{
        DynStore, StoreError,
        redis::{RedisOptions, RedisStore},
        sled::{SledOptions, SledStore},
    },
};

mod health;
mod listen;
mod scrape;
mod tls;

pub use health::LIVENESS;
use health::{set_ready, watch_store};
use listen::incoming;
use tls::TlsAcceptor;

const PROVIDER_TIMEOUT: Duration = Duration::from_secs(10);
/// How long idlinkd waits before trying again a provider or a store that did not answer.
const RETRY: Duration = Duration::from_secs(2);
const JWKS_REFRESH: Duration = Duration::from_secs(3600);
const HOUSEKEEPING: Duration = Duration::from_secs(60);
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
    tls: Option<TlsAcceptor>,
    health_listener: Option<Arc<TcpListener>>,
    store: StoreSlot,
    catalog: Arc<Catalog>,
    expiring_soon_days: u32,
    auth: Arc<Authenticator>,
    clock: DynClock,
    retention: chrono::Duration,
    server: ServerSettings,
    providers: Providers,
    metrics: Arc<crate::metrics::Metrics>,
    /// `[telemetry] metrics_listen`, bound.
    metrics_listener: Option<TcpListener>,
    /// The OTLP collector the metrics are pushed to, and how often.
    metrics_push: Option<(crate::metrics::otlp::OtlpMetrics, Duration)>,
}

/// The store, or — when Redis did not answer at start — how to reach it once it does.
enum StoreSlot {
    Open(DynStore),
    Redis(RedisOptions),
}

/// What is needed to bring the association providers up once serving has begun.
struct Providers {
    kinds: Vec<(LinkKind, KindSettings)>,
    http: openidconnect::reqwest::Client,
    allow_insecure_http: bool,
    jwks_refetch: Duration,
    jwks_counted: crate::metrics::JwksCounters,
    flow_ttl: chrono::Duration,
    limits: LimitSettings,
}

/// Everything ready to serve.
struct Ready {
    store: DynStore,
    page_tokens: PageTokens,
    linker: Arc<Linker>,
    credits: Arc<Credits>,
}

/// Tries `attempt` until it succeeds, every [`RETRY`], saying why it waits; `None` when `stop`
/// comes first, `Err` for an error waiting cannot mend.
async fn until_up<T, F: Future<Output = Result<T, StartupError>>>(
    what: &str,
    stop: &mut tokio::sync::watch::Receiver<bool>,
    mut attempt: impl FnMut() -> F,
) -> Option<Result<T, StartupError>> {
    loop {
        match attempt().await {
            Ok(up) => return Some(Ok(up)),
            Err(StartupError::Store(StoreError::Unavailable { detail })) => tracing::warn!(%detail, "{what} not reachable yet; retrying"),
            Err(StartupError::Oidc(e @ OidcError::Provider { .. })) => tracing::warn!(error = %e, "{what} not reachable yet; retrying"),
            Err(e) => return Some(Err(e)),
        }
        tokio::select! {
            _ = tokio::time::sleep(RETRY) => {}
            _ = stop.wait_for(|s| *s) => return None,
        }
    }
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, StartupError> {
    TcpListener::bind(addr).await.map_err(|source| StartupError::Listen { addr, source })
}

impl Application {
    /// Validates the configuration (naming the bad key), opens the store when it answers, binds
    /// the ports. A Redis that does not answer yet is not an error: idlinkd starts NOT_SERVING
    /// and keeps trying.
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
        let tls = settings.server.tls.as_ref().map(TlsAcceptor::new).transpose()?;
        if tls.is_none() && !settings.listen.ip().is_loopback() && !settings.server.allow_plaintext {
            return Err(ConfigError::Invalid(format!(
                "listen {} is not a loopback address and [server.tls] is not configured: set server.tls.cert_file and \
                 server.tls.key_file, or server.allow_plaintext = true where a mesh terminates TLS in front of idlinkd",
                settings.listen
            ))
            .into());
        }
        let http = provider_http_client(PROVIDER_TIMEOUT)?;
        let metrics = crate::metrics::Metrics::new();
        let catalog = Arc::new(settings.credit.load_catalog()?);
        let store = match settings.store.backend {
            Backend::Sled => {
                let options = SledOptions {
                    cache_bytes: settings.store.cache_mb * 1024 * 1024,
                    write_combining: settings.store.write_combining,
                    compression: settings.store.compression,
                };
                StoreSlot::Open(metrics.store.measure(Arc::new(SledStore::open_with(&settings.store.path, catalog.clone(), options)?)))
            }
            Backend::Redis => {
                let options = RedisOptions::try_from(&settings.store)?;
                match RedisStore::connect(options.clone(), catalog.clone()).await {
                    Ok(store) => StoreSlot::Open(metrics.store.measure(Arc::new(store))),
                    Err(StoreError::Unavailable { detail }) => {
                        tracing::warn!(%detail, "Redis does not answer: idlinkd starts NOT_SERVING and keeps trying");
                        StoreSlot::Redis(options)
                    }
                    Err(e) => return Err(e.into()),
                }
            }
        };
        let listener = bind(settings.listen).await?;
        let addr = listener.local_addr().map_err(|source| StartupError::Listen { addr: settings.listen, source })?;
        let health_listener = match settings.server.health_listen {
            Some(health) => Some(Arc::new(bind(health).await?)),
            None => None,
        };
        let metrics_listener = match settings.telemetry.metrics_listen {
            Some(at) => Some(bind(at).await?),
            None => None,
        };
        let metrics_push = match settings.telemetry.collector()? {
            Some(collector) => Some((
                crate::metrics::otlp::OtlpMetrics::new(&collector, &crate::telemetry::resource())?,
                settings.telemetry.metrics_interval()?,
            )),
            None => None,
        };
        Ok(Self {
            metrics_push,
            metrics_listener,
            metrics: metrics.clone(),
            listener: Arc::new(listener),
            addr,
            tls,
            health_listener,
            auth: Arc::new(Authenticator::new(inbound.clone(), http.clone(), metrics.jwks.clone())),
            providers: Providers {
                kinds,
                http,
                allow_insecure_http: settings.dev.allow_insecure_http,
                jwks_refetch: inbound.jwks_refetch_interval,
                jwks_counted: metrics.jwks.clone(),
                flow_ttl: chrono::Duration::seconds(i64::try_from(settings.flows.ttl_seconds).unwrap_or(600)),
                limits: settings.limits.clone(),
            },
            store,
            catalog,
            expiring_soon_days: settings.credit.expiring_soon_days,
            clock,
            retention: chrono::Duration::days(i64::from(settings.events.retention_days)),
            server: settings.server.clone(),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The metrics port's address, when one is configured.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_listener.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// The plaintext health port's address, when one is configured.
    pub fn health_addr(&self) -> Option<SocketAddr> {
        self.health_listener.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// The store, when it answered at start (it always does for sled).
    pub fn store(&self) -> Option<DynStore> {
        match &self.store {
            StoreSlot::Open(store) => Some(store.clone()),
            StoreSlot::Redis(_) => None,
        }
    }

    /// Opens the store (retrying while Redis does not answer), then loads every provider's
    /// metadata (retrying while one is unreachable), until `stop`.
    async fn bring_up(&self, stop: &mut tokio::sync::watch::Receiver<bool>) -> Option<Result<Ready, StartupError>> {
        let store: DynStore = match &self.store {
            StoreSlot::Open(store) => store.clone(),
            StoreSlot::Redis(options) => match until_up("Redis", stop, || async {
                Ok(self.metrics.store.measure(Arc::new(RedisStore::connect(options.clone(), self.catalog.clone()).await?)))
            })
            .await?
            {
                Ok(store) => {
                    tracing::info!("Redis answers");
                    store
                }
                Err(e) => return Some(Err(e)),
            },
        };
        let page_tokens = match until_up("the store", stop, || async { Ok(store.secret("page-token").await?) }).await? {
            Ok(secret) => PageTokens::new(secret),
            Err(e) => return Some(Err(e)),
        };
        let p = &self.providers;
        let mut kinds = HashMap::new();
        for (kind, settings) in &p.kinds {
            let discovered = until_up(&format!("the {kind} identity provider"), stop, || async {
                Ok(AssociationClient::discover(
                    *kind,
                    settings.clone(),
                    p.http.clone(),
                    p.allow_insecure_http,
                    p.jwks_refetch,
                    p.jwks_counted.clone(),
                )
                .await?)
            })
            .await?;
            match discovered {
                Ok(client) => {
                    tracing::info!(%kind, issuer = client.issuer(), "identity provider ready");
                    kinds.insert(*kind, client);
                }
                Err(e) => return Some(Err(e)),
            }
        }
        let linker = Linker::new(store.clone(), kinds, p.flow_ttl, BeginLimiter::new(p.limits.clone()), p.limits.watch_streams_per_caller);
        let credits = Arc::new(
            Credits::new(store.clone(), self.catalog.clone())
                .with_expiring_soon_days(self.expiring_soon_days)
                .counting_into(self.metrics.recalculation.clone()),
        );
        Some(Ok(Ready { store, page_tokens, linker: Arc::new(linker), credits }))
    }

    /// Serves until `shutdown` resolves, then lets in-flight RPCs finish (within the grace period).
    pub async fn run_until_stopped(mut self, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<(), StartupError> {
        let (health, health_service) = tonic_health::server::health_reporter();
        set_ready(&health, ServingStatus::NotServing).await;
        health.set_service_status(LIVENESS, ServingStatus::Serving).await;
        let (stop_tx, mut stop) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            shutdown.await;
            tracing::info!("shutting down");
            let _ = stop_tx.send(true);
        });
        // The probes' port: health alone, plaintext, from start to exit.
        let health_port = self.health_listener.clone().map(|listener| {
            let server = tonic::transport::Server::builder().add_service(health_service.clone());
            tokio::spawn(server.serve_with_incoming(incoming(listener, None)))
        });

        // The metrics port, from start to exit: a scrape while starting says the store is down.
        let serving = Arc::new(std::sync::OnceLock::new());
        let metrics_port = self.metrics_listener.take().map(|listener| scrape::spawn(listener, self.metrics.clone(), serving.clone()));
        let metrics_push = self
            .metrics_push
            .take()
            .map(|(exporter, interval)| scrape::spawn_push(exporter, interval, self.metrics.clone(), serving.clone(), stop.clone()));
        // Starting: only health answers (NOT_SERVING); every other RPC is UNAVAILABLE.
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel::<()>();
        let starting = tonic::transport::Server::builder()
            .http2_max_header_list_size(MAX_HEADER_LIST_BYTES)
            .layer(StartingLayer)
            .add_service(health_service.clone())
            .serve_with_incoming_shutdown(incoming(self.listener.clone(), self.tls.clone()), async move {
                let _ = ready_rx.await;
            });
        let starting = tokio::spawn(starting);
        tracing::info!(addr = %self.addr, tls = self.tls.is_some(), "idlinkd listening; opening the store and loading identity providers");
        let ready = self.bring_up(&mut stop).await;
        let _ = ready_tx.send(());
        let _ = starting.await;
        let ready = match ready {
            None => return Ok(()),
            Some(ready) => ready?,
        };
        let _ = serving.set(scrape::Serving { store: ready.store.clone(), linker: ready.linker.clone() });
        let result = self.serve(ready, health, health_service, stop).await;
        health_port.inspect(tokio::task::JoinHandle::abort);
        metrics_port.inspect(tokio::task::JoinHandle::abort);
        if let Some(push) = metrics_push {
            // The last export, with what the drain counted; bounded like any export.
            let _ = tokio::time::timeout(Duration::from_secs(12), push).await;
        }
        result
    }

    /// Serves everything until `stop`, then drains.
    async fn serve(
        self,
        ready: Ready,
        health: HealthReporter,
        health_service: tonic_health::pb::health_server::HealthServer<impl tonic_health::pb::health_server::Health>,
        stop: tokio::sync::watch::Receiver<bool>,
    ) -> Result<(), StartupError> {
        let requests =
            Arc::new(Requests::new(ready.store.clone(), self.clock.clone(), self.providers.limits.request_ids_per_caller_per_day));
        let background = self.spawn_background_tasks(&ready, requests.clone());
        let reflection = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(idlink_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .build_v1()
            .map_err(|e| StartupError::Serve(e.to_string()))?;
        // The older protocol too: some tools (Postman, Kreya, older grpcurl) ask only v1alpha.
        let reflection_v1alpha = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(idlink_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .build_v1alpha()
            .map_err(|e| StartupError::Serve(e.to_string()))?;
        let (stopping, stopped) = tokio::sync::watch::channel(false);
        let (signalled_tx, signalled) = tokio::sync::oneshot::channel::<()>();
        let drain = {
            let (health, mut stop) = (health.clone(), stop.clone());
            async move {
                let _ = stop.wait_for(|s| *s).await;
                // Tell load balancers first, then end watch streams (they would hold graceful
                // shutdown forever), then let tonic drain in-flight RPCs.
                set_ready(&health, ServingStatus::NotServing).await;
                let _ = stopping.send(true);
                let _ = signalled_tx.send(());
            }
        };
        let limits = &self.server;
        let max = limits.max_message_bytes;
        let link_api = LinkApi::new(
            ready.linker.clone(),
            self.clock.clone(),
            ready.page_tokens.clone(),
            stopped,
            requests.clone(),
            self.metrics.feed_lag.clone(),
        );
        let serve = tonic::transport::Server::builder()
            .http2_max_header_list_size(MAX_HEADER_LIST_BYTES)
            .max_concurrent_streams(u32::try_from(limits.concurrency_per_connection).unwrap_or(u32::MAX))
            .concurrency_limit_per_connection(limits.concurrency_per_connection)
            .http2_keepalive_interval(Some(Duration::from_secs(limits.keepalive_seconds)))
            .http2_keepalive_timeout(Some(Duration::from_secs(20)))
            .tcp_keepalive(Some(Duration::from_secs(limits.keepalive_seconds)))
            .layer(crate::metrics::MetricsLayer { metrics: self.metrics.clone() })
            .layer(DetachedLayer { timeout: Duration::from_secs(limits.request_timeout_seconds) })
            .layer(AuthLayer::new(self.auth.clone(), self.clock.clone()))
            .add_service(health_service)
            .add_service(reflection)
            .add_service(reflection_v1alpha)
            .add_service(LinkServiceServer::new(link_api).max_decoding_message_size(max).max_encoding_message_size(max))
            .add_service(
                CreditServiceServer::new(CreditApi::new(ready.credits.clone(), self.clock.clone(), ready.page_tokens.clone()))
                    .max_decoding_message_size(max)
                    .max_encoding_message_size(max),
            )
            .add_service(
                OrganizationServiceServer::new(OrganizationApi::new(
                    ready.credits.clone(),
                    ready.linker.clone(),
                    self.clock.clone(),
                    requests,
                ))
                .max_decoding_message_size(max)
                .max_encoding_message_size(max),
            )
            .serve_with_incoming_shutdown(incoming(self.listener.clone(), self.tls.clone()), drain);
        set_ready(&health, ServingStatus::Serving).await;
        tracing::info!(addr = %self.addr, "idlinkd serving");
        let probe = tokio::spawn(watch_store(ready.store.clone(), health.clone(), stop.clone()));
        // The self check reads every link: in the background, so a large store (or a Redis
        // shared by many replicas) does not hold up start-up. It reports; it does not repair.
        let store = ready.store.clone();
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
            (ready.linker.clone(), self.auth.clone(), self.clock.clone(), ready.credits.clone(), self.retention);
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
