//! Builds and runs the server: store, identity providers, gRPC services, background tasks.

use std::{collections::HashMap, net::SocketAddr, sync::Arc, time::Duration};

use idlink_proto::v1::link_service_server::LinkServiceServer;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;

use crate::{
    api::{auth::AuthLayer, link::LinkApi, page_token::PageTokens},
    clock::DynClock,
    config::{ConfigError, Settings},
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
    auth: Arc<Authenticator>,
    clock: DynClock,
    page_tokens: PageTokens,
}

impl Application {
    /// Opens the store, discovers every configured provider, binds the listener. Refuses to
    /// start on a bad configuration, naming the key.
    pub async fn build(settings: &Settings, clock: DynClock) -> Result<Self, StartupError> {
        let inbound = settings.inbound()?;
        let http = provider_http_client(PROVIDER_TIMEOUT)?;
        let refetch = inbound.jwks_refetch_interval;
        let store: DynStore = match settings.store.backend.as_str() {
            "sled" => Arc::new(SledStore::open(&settings.store.path)?),
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
        let linker = Arc::new(Linker::new(store, kinds, flow_ttl, limiter));
        let auth = Arc::new(Authenticator::new(inbound, http));
        let listener = TcpListener::bind(settings.listen).await.map_err(|source| StartupError::Listen { addr: settings.listen, source })?;
        let addr = listener.local_addr().map_err(|source| StartupError::Listen { addr: settings.listen, source })?;
        Ok(Self { listener, addr, linker, auth, clock, page_tokens })
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
        let reflection = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(idlink_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .build_v1()
            .map_err(|e| StartupError::Serve(e.to_string()))?;
        let background = self.spawn_background_tasks();
        tracing::info!(addr = %self.addr, "idlinkd serving");
        let result = tonic::transport::Server::builder()
            .layer(AuthLayer::new(self.auth.clone(), self.clock.clone()))
            .add_service(health_service)
            .add_service(reflection)
            .add_service(LinkServiceServer::new(LinkApi::new(self.linker.clone(), self.clock.clone(), self.page_tokens)))
            .serve_with_incoming_shutdown(TcpListenerStream::new(self.listener), shutdown)
            .await
            .map_err(|e| StartupError::Serve(e.to_string()));
        background.abort();
        result
    }

    fn spawn_background_tasks(&self) -> tokio::task::JoinHandle<()> {
        let (linker, auth, clock) = (self.linker.clone(), self.auth.clone(), self.clock.clone());
        tokio::spawn(async move {
            let mut purge = tokio::time::interval(FLOW_PURGE);
            let mut keys = tokio::time::interval(JWKS_REFRESH);
            keys.tick().await; // keys were just fetched at start
            loop {
                tokio::select! {
                    _ = purge.tick() => match linker.purge_expired_flows(clock.now()).await {
                        Ok(0) => {}
                        Ok(n) => tracing::debug!(purged = n, "expired flows purged"),
                        Err(e) => tracing::warn!(error = %e, "flow purge failed"),
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
