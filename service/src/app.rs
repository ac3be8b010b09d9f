//! Builds and runs the server: store, identity providers, gRPC services, background tasks.

use std::{collections::HashMap, net::SocketAddr, sync::Arc, time::Duration};

use idlink_proto::v1::{
    credit_service_server::CreditServiceServer, link_service_server::LinkServiceServer,
    organization_service_server::OrganizationServiceServer,
};
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;

use crate::{
    api::{
        auth::AuthLayer, credit::CreditApi, idempotency::Requests, link::LinkApi, organization::OrganizationApi, page_token::PageTokens,
    },
    clock::DynClock,
    config::{ConfigError, Settings},
    credits::Credits,
    limits::BeginLimiter,
    linking::Linker,
    oidc::{AssociationClient, Authenticator, OidcError, provider_http_client},
    store::{DynStore, StoreError, sled::SledStore},
};

const PROVIDER_TIMEOUT: Duration = Duration::from_secs(10);
const JWKS_REFRESH: Duration = Duration::from_secs(3600);
const FLOW_PURGE: Duration = Duration::from_secs(60);

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
    listener: TcpListener,
    addr: SocketAddr,
    linker: Arc<Linker>,
    credits: Arc<Credits>,
    auth: Arc<Authenticator>,
    clock: DynClock,
    page_tokens: PageTokens,
    retention: chrono::Duration,
    server: crate::config::ServerSettings,
}

impl Application {
    /// Opens the store, discovers every configured provider, binds the listener. Refuses to
    /// start on a bad configuration, naming the key.
    pub async fn build(settings: &Settings, clock: DynClock) -> Result<Self, StartupError> {
        let inbound = settings.inbound()?;
        let http = provider_http_client(PROVIDER_TIMEOUT)?;
        let refetch = inbound.jwks_refetch_interval;
        let catalog = Arc::new(settings.credit.load_catalog()?);
        let store: DynStore = match settings.store.backend.as_str() {
            "sled" => Arc::new(SledStore::open(&settings.store.path, catalog.clone())?),
            other => {
                return Err(ConfigError::Invalid(format!("store.backend {other:?}: only \"sled\" is available")).into());
            }
        };
        let report = store.check_integrity().await?;
        if !report.problems.is_empty() {
            tracing::error!(problems = ?report.problems, "store integrity check found problems");
        }
        let mut kinds = HashMap::new();
        for (kind, kind_settings) in settings.kinds() {
            let client = AssociationClient::discover(kind, kind_settings, http.clone(), settings.dev.allow_insecure_http, refetch)
                .await
                .map_err(|e| match e {
                    OidcError::Config { detail } => OidcError::Config { detail: format!("kinds.{kind}: {detail}") },
                    other => other,
                })?;
            tracing::info!(%kind, issuer = client.issuer(), "identity provider ready");
            kinds.insert(kind, client);
        }
        if kinds.is_empty() {
            tracing::warn!("no [kinds.*] configured: BeginLink will refuse every kind");
        }
        let flow_ttl = chrono::Duration::seconds(i64::try_from(settings.flows.ttl_seconds).unwrap_or(600));
        let page_tokens = PageTokens::new(store.secret("page-token").await?);
        let limiter = BeginLimiter::new(settings.limits.clone());
        let credits = Arc::new(Credits::new(store.clone(), catalog));
        let linker = Arc::new(Linker::new(store, kinds, flow_ttl, limiter));
        let retention = chrono::Duration::days(i64::from(settings.events.retention_days));
        let auth = Arc::new(Authenticator::new(inbound, http));
        let listener = TcpListener::bind(settings.listen).await.map_err(|source| StartupError::Listen { addr: settings.listen, source })?;
        let addr = listener.local_addr().map_err(|source| StartupError::Listen { addr: settings.listen, source })?;
        Ok(Self { listener, addr, linker, credits, auth, clock, page_tokens, retention, server: settings.server.clone() })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn store(&self) -> DynStore {
        self.linker.store().clone()
    }

    /// Serves until `shutdown` resolves, then lets in-flight RPCs finish.
    pub async fn run_until_stopped(self, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<(), StartupError> {
        let (health, health_service) = tonic_health::server::health_reporter();
        // Everything health depends on (store, providers) was made ready by `build`.
        health.set_serving::<LinkServiceServer<LinkApi>>().await;
        health.set_serving::<CreditServiceServer<CreditApi>>().await;
        health.set_serving::<OrganizationServiceServer<OrganizationApi>>().await;
        let reflection = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(idlink_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .build_v1()
            .map_err(|e| StartupError::Serve(e.to_string()))?;
        let requests = Arc::new(Requests::new(self.linker.store().clone(), self.clock.clone()));
        let background = self.spawn_background_tasks(requests.clone());
        let (stopping, stopped) = tokio::sync::watch::channel(false);
        let (signalled_tx, signalled) = tokio::sync::oneshot::channel::<()>();
        let shutdown = {
            let health = health.clone();
            async move {
                shutdown.await;
                // Tell load balancers first, then end watch streams (they would hold
                // graceful shutdown forever), then let tonic drain in-flight RPCs.
                health.set_not_serving::<LinkServiceServer<LinkApi>>().await;
                health.set_not_serving::<CreditServiceServer<CreditApi>>().await;
                health.set_not_serving::<OrganizationServiceServer<OrganizationApi>>().await;
                health.set_service_status("", tonic_health::ServingStatus::NotServing).await;
                let _ = stopping.send(true);
                let _ = signalled_tx.send(());
            }
        };
        let limits = &self.server;
        let max = limits.max_message_bytes;
        tracing::info!(addr = %self.addr, "idlinkd serving");
        let serve = tonic::transport::Server::builder()
            .timeout(Duration::from_secs(limits.request_timeout_seconds))
            .concurrency_limit_per_connection(limits.concurrency_per_connection)
            .http2_keepalive_interval(Some(Duration::from_secs(limits.keepalive_seconds)))
            .http2_keepalive_timeout(Some(Duration::from_secs(20)))
            .tcp_keepalive(Some(Duration::from_secs(limits.keepalive_seconds)))
            .layer(AuthLayer::new(self.auth.clone(), self.clock.clone()))
            .add_service(health_service)
            .add_service(reflection)
            .add_service(
                LinkServiceServer::new(LinkApi::new(self.linker.clone(), self.clock.clone(), self.page_tokens, stopped, requests.clone()))
                    .max_decoding_message_size(max)
                    .max_encoding_message_size(max),
            )
            .add_service(
                CreditServiceServer::new(CreditApi::new(self.credits.clone(), self.clock.clone()))
                    .max_decoding_message_size(max)
                    .max_encoding_message_size(max),
            )
            .add_service(
                OrganizationServiceServer::new(OrganizationApi::new(self.credits.clone(), self.clock.clone(), requests.clone()))
                    .max_decoding_message_size(max)
                    .max_encoding_message_size(max),
            )
            .serve_with_incoming_shutdown(TcpListenerStream::new(self.listener), shutdown);
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
        result
    }

    fn spawn_background_tasks(&self, requests: Arc<Requests>) -> tokio::task::JoinHandle<()> {
        let (linker, auth, clock, credits, retention) =
            (self.linker.clone(), self.auth.clone(), self.clock.clone(), self.credits.clone(), self.retention);
        tokio::spawn(async move {
            let mut purge = tokio::time::interval(FLOW_PURGE);
            let mut keys = tokio::time::interval(JWKS_REFRESH);
            keys.tick().await; // keys were just fetched at start
            loop {
                tokio::select! {
                    _ = purge.tick() => {
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
