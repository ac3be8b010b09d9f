//! Helpers for the end-to-end tests: the real idlinkd (in-process on port 0, or the built
//! binary), the development identity provider, the real client.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "test helpers fail loudly")]

use std::{
    io::Write,
    net::SocketAddr,
    sync::{Arc, Mutex, OnceLock},
};

use idlink_client::{ClientError, ClientOptions, IdlinkClient, browser, pb};
use idlink_service::{
    app::Application,
    clock::ManualClock,
    dev::{dev_clients, dev_settings},
    domain::AccountKey,
    oidc::devidp::{AccountType, CONTOSO_TENANT, DEV_REDIRECT_URI, DevIdp},
    store::DynStore,
};

pub use idlink_service::oidc::devidp::{FABRIKAM_TENANT, Misbehaviour};

pub mod daemon;
pub mod redis;

// --- log capture: every test in this binary logs into one buffer that tests can scan ---

static LOGS: OnceLock<Mutex<Vec<u8>>> = OnceLock::new();
static SECRETS: Mutex<Vec<String>> = Mutex::new(Vec::new());

struct CaptureWriter;

impl Write for CaptureWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        LOGS.get_or_init(Default::default).lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Installs the capturing subscriber once: the service's own default filter, with idlink and
/// the OAuth crates turned up to `trace` so a leak anywhere in them would show.
pub fn capture_logs() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        let filter = format!("{},idlink_service=trace,openidconnect=trace,oauth2=trace", idlink_service::telemetry::DEFAULT_FILTER);
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_ansi(false)
            .with_writer(|| CaptureWriter)
            .try_init();
    });
}

pub fn captured_logs() -> String {
    String::from_utf8_lossy(&LOGS.get_or_init(Default::default).lock().unwrap()).into_owned()
}

/// Registers strings that must never appear in any log.
pub fn remember_secrets(secrets: impl IntoIterator<Item = String>) {
    SECRETS.lock().unwrap().extend(secrets.into_iter().filter(|s| s.len() >= 8));
}

pub fn remembered_secrets() -> Vec<String> {
    SECRETS.lock().unwrap().clone()
}

// --- the service under test ---

pub struct TestApp {
    pub idp: DevIdp,
    pub clock: Arc<ManualClock>,
    pub addr: SocketAddr,
    pub store: DynStore,
    _data: tempfile::TempDir,
    _redis: Option<redis::SharedRedis>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        remember_secrets(self.idp.secrets_seen());
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

impl TestApp {
    pub async fn spawn() -> Self {
        Self::spawn_with(|_| {}).await
    }

    /// Starts with the development settings changed by `adjust`. The global BeginLink limit
    /// is lifted first: the manual clock never refills it, and the races begin 1,280 flows.
    pub async fn spawn_with(adjust: impl FnOnce(&mut idlink_service::config::Settings)) -> Self {
        capture_logs();
        let clock = Arc::new(ManualClock::default());
        let clients = dev_clients();
        let idp = DevIdp::start("127.0.0.1:0".parse().unwrap(), clients.clone(), clock.clone()).await.unwrap();
        let data = tempfile::tempdir().unwrap();
        let mut settings = dev_settings(idp.base_url(), &clients, "127.0.0.1:0".parse().unwrap(), data.path().join("data"));
        settings.limits.begin_global_burst = 1_000_000;
        let redis =
            redis::redis_backend_requested().then(|| redis::SharedRedis::new().expect("IDLINK_TEST_BACKEND=redis needs a reachable Redis"));
        if let Some(redis) = &redis {
            settings.store.backend = "redis".into();
            settings.store.redis_url = Some(redis.url.clone());
            settings.store.key_prefix = redis.prefix.clone();
        }
        adjust(&mut settings);
        let app = Application::build(&settings, clock.clone()).await.unwrap();
        let (addr, store) = (app.addr(), app.store());
        let (tx, rx) = tokio::sync::oneshot::channel();
        tokio::spawn(app.run_until_stopped(async move {
            let _ = rx.await;
        }));
        wait_until_serving(&format!("http://{addr}")).await;
        Self { idp, clock, addr, store, _data: data, _redis: redis, shutdown: Some(tx) }
    }

    pub fn now(&self) -> chrono::DateTime<chrono::Utc> {
        idlink_service::clock::Clock::now(&*self.clock)
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A client calling as `login` (a fixture or added user).
    pub async fn client_for(&self, login: &str) -> IdlinkClient {
        self.client_with_token(Some(self.idp.access_token(login).unwrap())).await
    }

    pub async fn client_with_token(&self, token: Option<String>) -> IdlinkClient {
        let mut options = ClientOptions::new(self.endpoint());
        if let Some(token) = token {
            options = options.token(token);
        }
        IdlinkClient::connect(options).await.unwrap()
    }

    /// A fresh Contoso work user, with a client calling as them.
    pub async fn new_work_user(&self, login: &str) -> (AccountKey, IdlinkClient) {
        let key = self.idp.add_user(CONTOSO_TENANT, login, AccountType::Work);
        (key, self.client_for(login).await)
    }

    pub fn new_personal(&self, login: &str) -> AccountKey {
        self.idp.add_user(CONTOSO_TENANT, login, AccountType::Personal)
    }

    pub async fn integrity(&self) -> idlink_service::store::IntegrityReport {
        let report = self.store.check_integrity().await.unwrap();
        assert!(report.problems.is_empty(), "store inconsistent: {:?}", report.problems);
        report
    }
}

/// The overall health status of the server at `endpoint`, if it answers.
pub async fn health_status(endpoint: &str, service: &str) -> Option<i32> {
    let channel = tonic::transport::Endpoint::from_shared(endpoint.to_owned()).ok()?.connect().await.ok()?;
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    let request = tonic_health::pb::HealthCheckRequest { service: service.to_owned() };
    health.check(request).await.ok().map(|r| r.into_inner().status)
}

/// Waits until idlinkd at `endpoint` reports SERVING.
pub async fn wait_until_serving(endpoint: &str) {
    for _ in 0..600 {
        if health_status(endpoint, "").await == Some(tonic_health::pb::health_check_response::ServingStatus::Serving as i32) {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("{endpoint} never reported SERVING");
}

pub fn begin_request(kind: pb::LinkKind, login_hint: &str) -> pb::BeginLinkRequest {
    pb::BeginLinkRequest {
        kind: kind as i32,
        redirect_uri: DEV_REDIRECT_URI.to_owned(),
        login_hint: Some(login_hint.to_owned()),
        ..Default::default()
    }
}

/// BeginLink, then what the browser does: sign in as `personal` and come back.
pub async fn begin_and_sign_in(client: &IdlinkClient, kind: pb::LinkKind, personal: &str) -> pb::CompleteLinkRequest {
    begin_with(client, begin_request(kind, personal)).await
}

pub async fn begin_with(client: &IdlinkClient, request: pb::BeginLinkRequest) -> pb::CompleteLinkRequest {
    let begun = client.begin_link(request).await.unwrap();
    remember_secrets([begun.state.clone()]);
    let redirect = browser::follow_authorization(&begun.authorization_url).await.unwrap();
    assert_eq!(redirect.state.as_deref(), Some(begun.state.as_str()), "the provider echoes the state");
    let complete = redirect.into_complete_request();
    remember_secrets([complete.code.clone()]);
    complete
}

/// A whole association flow: begin, sign in, complete.
pub async fn link(client: &IdlinkClient, kind: pb::LinkKind, personal: &str) -> Result<pb::Link, ClientError> {
    let complete = begin_and_sign_in(client, kind, personal).await;
    client.complete_link(complete).await
}

/// Asserts a refusal's code and stable reason.
#[track_caller]
pub fn assert_refused<T: std::fmt::Debug>(result: Result<T, ClientError>, code: tonic::Code, reason: &str) -> String {
    match result {
        Err(ClientError::Rpc { code: c, reason: r, message, .. }) => {
            assert_eq!((c, r.as_str()), (code, reason), "message: {message}");
            assert!(!message.is_empty(), "a refusal carries a message for the person");
            message
        }
        other => panic!("expected {code:?} {reason}, got {other:?}"),
    }
}

pub const ML: pb::LinkKind = pb::LinkKind::MicrosoftLearning;
pub const PU: pb::LinkKind = pb::LinkKind::PartnerUniversity;
