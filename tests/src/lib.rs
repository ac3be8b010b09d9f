//! Helpers for the end-to-end tests: the real idlinkd (in-process on port 0, or the built
//! binary), the development identity provider, the real client.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "test helpers fail loudly")]

use std::{
    io::Write,
    net::SocketAddr,
    sync::{Arc, Mutex, OnceLock},
};

use idlink_client::{ClientError, ClientOptions, ClientTls, IdlinkClient, browser, pb};
use idlink_service::{
    app::Application,
    clock::ManualClock,
    dev::{dev_clients, dev_settings},
    domain::AccountKey,
    oidc::devidp::{AccountType, CONTOSO_TENANT, DEV_PORTAL_CLIENT, DEV_REDIRECT_URI, DevClient, DevIdp},
    store::DynStore,
};

pub use idlink_service::oidc::devidp::{FABRIKAM_TENANT, Misbehaviour};

pub mod daemon;
pub mod pki;
pub mod portal;
pub mod proxy;
pub mod redis;
pub mod writers;

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

/// The secrets (at least 8 bytes each) that occur in `haystack`, found in one pass: every
/// 8-byte window is looked up among the secrets' first 8 bytes, so the scan costs the
/// haystack's length, not its length times the number of secrets (the suite's logs run to
/// tens of MiB, its secrets to thousands).
pub fn secrets_in(haystack: &[u8], secrets: &[String]) -> Vec<String> {
    use std::collections::HashMap;
    let mut by_prefix: HashMap<[u8; 8], Vec<&str>> = HashMap::new();
    for secret in secrets.iter().filter(|s| s.len() >= 8) {
        by_prefix.entry(secret.as_bytes()[..8].try_into().unwrap()).or_default().push(secret);
    }
    let mut found = std::collections::BTreeSet::new();
    for at in 0..haystack.len().saturating_sub(7) {
        let window: [u8; 8] = haystack[at..at + 8].try_into().unwrap();
        if let Some(candidates) = by_prefix.get(&window) {
            found.extend(candidates.iter().filter(|s| haystack[at..].starts_with(s.as_bytes())).map(|s| (*s).to_owned()));
        }
    }
    found.into_iter().collect()
}

// --- the service under test ---

pub struct TestApp {
    pub idp: DevIdp,
    pub clock: Arc<ManualClock>,
    pub addr: SocketAddr,
    pub store: DynStore,
    /// How clients reach it: TLS settings when it serves TLS (`https://`).
    pub client_tls: Option<ClientTls>,
    /// The plaintext health port, when `server.health_listen` is set.
    pub health_addr: Option<SocketAddr>,
    /// The development provider's registration of the reference portal (its work sign-in).
    pub portal_client: DevClient,
    /// The metrics port, when `telemetry.metrics_listen` is set.
    pub metrics_addr: Option<SocketAddr>,
    _data: tempfile::TempDir,
    _redis: Option<redis::SharedRedis>,
    _cluster: Option<idlink_service::test_support::TestCluster>,
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
        Self::spawn_serving(adjust, None, None).await
    }

    /// For a portal served at `origin`: the development provider sends the link kinds' flows
    /// back to `{origin}/profile/link/callback` and the portal's work sign-in to
    /// `{origin}/signin/callback`, and idlinkd's kinds allow that redirect URI.
    pub async fn spawn_for_portal(origin: &str, adjust: impl FnOnce(&mut idlink_service::config::Settings)) -> Self {
        Self::spawn_serving(adjust, None, Some(origin)).await
    }

    /// Serves TLS with a server certificate of `pki` (for 127.0.0.1); with `mtls`, requires
    /// client certificates of `pki`, and the app's clients present one.
    pub async fn spawn_tls(pki: &pki::TestPki, mtls: bool, adjust: impl FnOnce(&mut idlink_service::config::Settings)) -> Self {
        let (cert_file, key_file) = pki.write("server", &pki.server());
        let identity = mtls.then(|| pki.client("portal.test")).map(|c| (c.cert_pem.into_bytes(), c.key_pem.into_bytes()));
        let client_tls = ClientTls { ca_pem: Some(pki.ca_pem.clone().into_bytes()), identity };
        let client_ca_file = mtls.then(|| pki.ca_file());
        Self::spawn_serving(
            |settings| {
                settings.server.tls = Some(idlink_service::config::TlsSettings { cert_file, key_file, client_ca_file });
                adjust(settings);
            },
            Some(client_tls),
            None,
        )
        .await
    }

    async fn spawn_serving(
        adjust: impl FnOnce(&mut idlink_service::config::Settings),
        client_tls: Option<ClientTls>,
        portal: Option<&str>,
    ) -> Self {
        capture_logs();
        let clock = Arc::new(ManualClock::default());
        let mut clients = dev_clients();
        if let Some(origin) = portal {
            for client in &mut clients {
                let path = if client.client_id == DEV_PORTAL_CLIENT { "/signin/callback" } else { "/profile/link/callback" };
                client.redirect_uris = vec![format!("{origin}{path}")];
            }
        }
        let idp = DevIdp::start("127.0.0.1:0".parse().unwrap(), clients.clone(), clock.clone()).await.unwrap();
        let data = tempfile::tempdir().unwrap();
        let mut settings = dev_settings(idp.base_url(), &clients, "127.0.0.1:0".parse().unwrap(), data.path().join("data"));
        settings.limits.begin_global_burst = 1_000_000;
        adjust(&mut settings);
        // The suite's backend, unless the test chose a Redis of its own.
        let suite_store = settings.store.backend == idlink_service::config::Backend::Sled;
        let redis = (suite_store && redis::redis_backend_requested())
            .then(|| redis::SharedRedis::new().expect("IDLINK_TEST_BACKEND=redis needs a reachable Redis"));
        if let Some(redis) = &redis {
            settings.store.backend = idlink_service::config::Backend::Redis;
            settings.store.redis_url = Some(redis.url.clone());
            settings.store.key_prefix = redis.prefix.clone();
        }
        let cluster = match suite_store && redis::cluster_backend_requested() {
            true => Some(redis::start_cluster().await),
            false => None,
        };
        if let Some(cluster) = &cluster {
            settings.store.backend = idlink_service::config::Backend::Redis;
            settings.store.redis_cluster = Some(idlink_service::config::RedisCluster::Seeds(cluster.seeds()));
            settings.store.key_prefix = redis::CLUSTER_PREFIX.into();
        }
        let app = Application::build(&settings, clock.clone()).await.unwrap();
        let (addr, health_addr, store) = (app.addr(), app.health_addr(), app.store().expect("the test store answers at start"));
        let metrics_addr = app.metrics_addr();
        let (tx, rx) = tokio::sync::oneshot::channel();
        tokio::spawn(app.run_until_stopped(async move {
            let _ = rx.await;
        }));
        let portal_client = clients.iter().find(|c| c.client_id == DEV_PORTAL_CLIENT).expect("--dev registers the portal").clone();
        let app = Self {
            idp,
            clock,
            addr,
            store,
            client_tls,
            health_addr,
            portal_client,
            metrics_addr,
            _data: data,
            _redis: redis,
            _cluster: cluster,
            shutdown: Some(tx),
        };
        wait_until_serving_with(&app.endpoint(), app.client_tls.as_ref()).await;
        app
    }

    /// Moves the clock past the refusal log's window: identical refusal lines from one peer
    /// (every test calls from 127.0.0.1) are written a few a minute, so a test that looks for
    /// its own refusal's line starts a fresh window first.
    pub fn next_refusal_window(&self) {
        self.clock.advance(idlink_service::api::refusals::WINDOW + chrono::Duration::seconds(1));
    }

    /// sled's data directory (also when the suite runs on Redis: then it stays empty).
    pub fn data_dir(&self) -> std::path::PathBuf {
        self._data.path().join("data")
    }

    /// The Redis URL and key prefix, when the suite runs on Redis.
    pub fn redis(&self) -> Option<(String, String)> {
        if let Some(cluster) = &self._cluster {
            let prefix = redis::CLUSTER_PREFIX;
            let holder = cluster.primary_of(cluster.slot_of(&format!("{{{prefix}}}:x")))?;
            return Some((format!("redis://127.0.0.1:{holder}"), prefix.into()));
        }
        self._redis.as_ref().map(|r| (r.url.clone(), r.prefix.clone()))
    }

    pub fn now(&self) -> chrono::DateTime<chrono::Utc> {
        idlink_service::clock::Clock::now(&*self.clock)
    }

    /// A client calling as the development provider's app `client_id` (its app-only token).
    pub async fn app_client(&self, client_id: &str) -> IdlinkClient {
        self.client_with_token(Some(self.idp.app_token(client_id).unwrap())).await
    }

    /// Has the Learning feed record a Microsoft Learning certification `id` of the development
    /// account `login`, earned a day ago, never expiring.
    pub async fn record_earned(&self, login: &str, id: &str) {
        let personal = self.idp.user(login).unwrap().key;
        let certification = pb::Certification {
            personal_account: Some(pb::AccountRef {
                tenant_id: personal.tenant.as_str().into(),
                object_id: personal.object.as_str().into(),
            }),
            certification_id: id.into(),
            earned_at: Some(prost_types::Timestamp { seconds: self.now().timestamp() - 86_400, nanos: 0 }),
            ..Default::default()
        };
        let feed = self.app_client("learning-feed").await;
        let recorded = feed.record_certifications(tokio_stream::iter(vec![certification])).await.unwrap();
        assert_eq!(recorded.rejected, 0, "{recorded:?}");
    }

    /// The `idlink` CLI, aimed at this app and its development provider.
    pub fn idlink(&self) -> tokio::process::Command {
        let mut command = tokio::process::Command::new(daemon::idlink_binary());
        command.args(["--endpoint", &self.endpoint(), "--idp", self.idp.base_url()]);
        command
    }

    pub fn endpoint(&self) -> String {
        let scheme = if self.client_tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// Options of a client of this app (its TLS, when it serves TLS).
    pub fn client_options(&self) -> ClientOptions {
        ClientOptions::new(self.endpoint()).tls(self.client_tls.clone().unwrap_or_default())
    }

    /// A client calling as `login` (a fixture or added user).
    pub async fn client_for(&self, login: &str) -> IdlinkClient {
        self.client_with_token(Some(self.idp.access_token(login).unwrap())).await
    }

    pub async fn client_with_token(&self, token: Option<String>) -> IdlinkClient {
        self.client_with_request_id(token, None).await
    }

    /// A client whose every call carries `x-request-id: request_id`, so its refusals can be
    /// found in the audit log ([`assert_audited`]).
    pub async fn client_with_request_id(&self, token: Option<String>, request_id: Option<&str>) -> IdlinkClient {
        let mut options = self.client_options();
        if let Some(token) = token {
            options = options.token(token);
        }
        if let Some(id) = request_id {
            options = options.header("x-request-id", id);
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

    /// Every sample of a scrape of the metrics port: `name{labels}` → value, and the text.
    pub async fn scrape(&self) -> (String, std::collections::BTreeMap<String, f64>) {
        let url = format!("http://{}/metrics", self.metrics_addr.expect("metrics_listen is set"));
        let response = reqwest::get(url).await.unwrap();
        assert_eq!(response.headers()["content-type"], "application/openmetrics-text; version=1.0.0; charset=utf-8");
        let text = response.text().await.unwrap();
        let samples = text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .filter_map(|l| l.rsplit_once(' ').map(|(k, v)| (k.to_owned(), v.parse().unwrap())))
            .collect();
        (text, samples)
    }

    pub async fn integrity(&self) -> idlink_service::store::IntegrityReport {
        let report = self.store.check_integrity().await.unwrap();
        assert!(report.problems.is_empty(), "store inconsistent: {:?}", report.problems);
        report
    }
}

/// The health status of `service` at `endpoint` (plaintext), if it answers.
pub async fn health_status(endpoint: &str, service: &str) -> Option<i32> {
    health_status_with(endpoint, None, service).await
}

/// [`health_status`], over TLS when `tls` is given.
pub async fn health_status_with(endpoint: &str, tls: Option<&ClientTls>, service: &str) -> Option<i32> {
    let channel = IdlinkClient::channel_with(endpoint, tls.unwrap_or(&ClientTls::default())).await.ok()?;
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    let request = tonic_health::pb::HealthCheckRequest { service: service.to_owned() };
    health.check(request).await.ok().map(|r| r.into_inner().status)
}

/// Waits until idlinkd at `endpoint` reports SERVING.
pub async fn wait_until_serving(endpoint: &str) {
    wait_until_serving_with(endpoint, None).await;
}

pub async fn wait_until_serving_with(endpoint: &str, tls: Option<&ClientTls>) {
    for _ in 0..600 {
        if health_status_with(endpoint, tls, "").await == Some(tonic_health::pb::health_check_response::ServingStatus::Serving as i32) {
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

/// Asserts a refusal's code and stable reason (the failing line names the case; in a loop,
/// [`assert_refused_in`] names it).
#[track_caller]
pub fn assert_refused<T: std::fmt::Debug>(result: Result<T, ClientError>, code: tonic::Code, reason: &str) -> String {
    assert_refused_in("", result, code, reason)
}

/// [`assert_refused`] for one case of several: a failure names `case`.
#[track_caller]
pub fn assert_refused_in<T: std::fmt::Debug>(
    case: impl std::fmt::Display,
    result: Result<T, ClientError>,
    code: tonic::Code,
    reason: &str,
) -> String {
    match result {
        Err(ClientError::Rpc { code: c, reason: r, message, .. }) => {
            assert_eq!((c, r.as_str()), (code, reason), "{case}: message: {message}");
            assert!(!message.is_empty(), "{case}: a refusal carries a message for the person");
            message
        }
        other => panic!("{case}: expected {code:?} {reason}, got {other:?}"),
    }
}

/// For tests that relink or move one personal account on purpose and are not about the limit
/// on associations: Microsoft Learning without it (`--dev` keeps Partner Center's three a
/// year, 30 days apart).
pub fn without_association_limit(settings: &mut idlink_service::config::Settings) {
    let learning = settings.kinds.microsoft_learning.as_mut().expect("--dev configures Learning");
    learning.associations_per_year = Some(0);
    learning.days_between_associations = Some(0);
}

pub const ML: pb::LinkKind = pb::LinkKind::MicrosoftLearning;
pub const PU: pb::LinkKind = pb::LinkKind::PartnerUniversity;

// --- every RPC, for the attack suites ---

/// The full names of every RPC idlink serves (`Service/Method`), read from the contract's
/// descriptors, so a test that walks [`every_rpc`] cannot miss one added later.
pub fn rpc_names() -> Vec<String> {
    let mut names: Vec<String> = idlink_proto::rpc_paths().iter().map(|path| path.trim_start_matches("/idlink.v1.").to_owned()).collect();
    names.sort();
    assert!(names.len() > 10, "the contract's descriptors name its RPCs: {names:?}");
    names
}

/// Calls every RPC once with a harmless request and answers each outcome, by full name
/// ([`rpc_names`]; a name missing here fails the call). Streams count as answered when they
/// open. Mutations touch only fixtures nobody else uses.
pub async fn every_rpc(client: &IdlinkClient) -> Vec<(String, Result<(), ClientError>)> {
    let contoso = CONTOSO_TENANT.to_owned();
    let someone = pb::AccountRef {
        tenant_id: idlink_service::domain::CONSUMER_TENANT.into(),
        object_id: "00000000-0000-4000-8000-00000000e2e0".into(),
    };
    let mut outcomes = Vec::new();
    for name in rpc_names() {
        let outcome = match name.as_str() {
            "LinkService/BeginLink" => client.begin_link(begin_request(ML, "jordan@outlook.example")).await.map(drop),
            "LinkService/CompleteLink" => client
                .complete_link(pb::CompleteLinkRequest { state: "s".repeat(43), code: "c".into(), ..Default::default() })
                .await
                .map(drop),
            "LinkService/GetLinks" => client.get_links().await.map(drop),
            "LinkService/RemoveLink" => client
                .remove_link(pb::RemoveLinkRequest { kind: PU as i32, reason: "every rpc".into(), ..Default::default() })
                .await
                .map(drop),
            "LinkService/ListLinks" => {
                client.list_links(pb::ListLinksRequest { organization_id: contoso.clone(), ..Default::default() }).await.map(drop)
            }
            "LinkService/ResolvePersonalAccount" => client
                .resolve_personal_account(pb::ResolvePersonalAccountRequest { kind: ML as i32, personal_account: Some(someone.clone()) })
                .await
                .map(drop),
            "LinkService/WatchLinkEvents" => client.watch_link_events(0).await.map(drop),
            "CreditService/RecordCertifications" => {
                let cert = pb::Certification {
                    personal_account: Some(someone.clone()),
                    certification_id: "azure-administrator-associate".into(),
                    earned_at: Some(prost_types::Timestamp { seconds: 1_700_000_000, nanos: 0 }),
                    ..Default::default()
                };
                client.record_certifications(tokio_stream::iter([cert])).await.map(drop)
            }
            "CreditService/RecordLearningProfiles" => {
                let profile = pb::LearningProfile { personal_account: Some(someone.clone()), mcid: "990000001".into() };
                client.record_learning_profiles(tokio_stream::iter([profile])).await.map(drop)
            }
            "CreditService/GetMyCertifications" => client.my_certifications().await.map(drop),
            "CreditService/ListOrganizationPeople" => client
                .list_organization_people(pb::ListOrganizationPeopleRequest { organization_id: contoso.clone(), ..Default::default() })
                .await
                .map(drop),
            "CreditService/GetOrganizationCredit" => client.organization_credit(&contoso).await.map(drop),
            "CreditService/RecalculateCredits" => client.recalculate_credits(vec![contoso.clone()]).await.map(drop),
            "OrganizationService/UpsertOrganization" => client
                .upsert_organization(pb::UpsertOrganizationRequest {
                    tenant_id: "0e2e0e2e-0000-4000-8000-000000000000".into(),
                    partner_id: "9999999".into(),
                    name: "every rpc".into(),
                    request_id: String::new(),
                })
                .await
                .map(drop),
            "OrganizationService/RemoveWorkUser" => client
                .remove_work_user(pb::RemoveWorkUserRequest {
                    user: Some(pb::AccountRef { tenant_id: contoso.clone(), object_id: "00000000-0000-4000-8000-00000000e2e1".into() }),
                    ..Default::default()
                })
                .await
                .map(drop),
            other => panic!("every_rpc does not call {other}: add it"),
        };
        outcomes.push((name, outcome));
    }
    outcomes
}

/// Asserts that every RPC called with `client` is refused with `code` and `reason`.
pub async fn assert_every_rpc_refused(client: &IdlinkClient, code: tonic::Code, reason: &str, case: &str) {
    let outcomes = every_rpc(client).await;
    assert_eq!(outcomes.len(), 15, "{case}: idlink has 15 RPCs");
    for (rpc, outcome) in outcomes {
        match outcome {
            Err(ClientError::Rpc { code: c, reason: r, message, .. }) => {
                assert_eq!((c, r.as_str()), (code, reason), "{case}: {rpc}");
                assert!(!message.to_lowercase().contains("signature") && !message.contains("kid"), "{case}: no detail leaks: {message}");
            }
            other => panic!("{case}: {rpc} was not refused: {other:?}"),
        }
    }
}

/// The audit lines the capture holds for calls sent with this `x-request-id`.
pub fn audit_lines(request_id: &str) -> Vec<String> {
    captured_logs().lines().filter(|l| l.contains(" audit: ") && l.contains(request_id)).map(str::to_owned).collect()
}

/// Asserts that a refusal with this `x-request-id` was audited with this stable reason.
#[track_caller]
pub fn assert_audited(request_id: &str, reason: &str) {
    let lines = audit_lines(request_id);
    assert!(lines.iter().any(|l| l.contains(reason)), "no audit line names {reason} for request {request_id}: {lines:?}");
}

#[cfg(test)]
mod tests {
    #[test]
    fn secrets_are_found_wherever_they_sit() {
        let secrets = ["state-value-123".to_owned(), "short".to_owned(), "another-secret".to_owned(), "another-secre7".to_owned()];
        let haystack = b"xx state-value-123 yy another-secre7state-value-12";
        assert_eq!(super::secrets_in(haystack, &secrets), ["another-secre7", "state-value-123"]);
        assert!(super::secrets_in(b"", &secrets).is_empty());
    }
}
