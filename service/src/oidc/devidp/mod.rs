//! The development identity provider: a real OpenID provider on loopback (discovery, JWKS,
//! authorize, token; RS256; PKCE verified; client secrets checked) for two work tenants and
//! the consumer tenant. idlinkd talks to it exactly as to Microsoft's; nothing in the
//! service knows which one it is. Tests can make it misbehave to attack the service.

mod fixtures;
mod keys;
mod routes;

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{
        Arc, Mutex, MutexGuard, PoisonError,
        atomic::{AtomicUsize, Ordering},
    },
};

pub use fixtures::{
    AccountType, CONTOSO_TENANT, DEV_AUDIENCE, DEV_PORTAL_CLIENT, DEV_PORTAL_SIGNIN_URI, DEV_REDIRECT_URI, DevApp, DevUser,
    FABRIKAM_TENANT, SERVICES_TENANT, default_apps, default_users,
};
use keys::SigningKey;
use openidconnect::core::CoreJsonWebKey;
use serde_json::json;

use crate::{
    clock::DynClock,
    domain::{AccountKey, CONSUMER_TENANT},
    oidc::OidcError,
};

/// A registered OAuth client (one per link kind in `--dev`).
#[derive(Clone, Debug)]
pub struct DevClient {
    pub client_id: String,
    pub client_secret: String,
    pub redirect_uris: Vec<String>,
}

/// Ways to make the next tokens wrong, for adversarial tests. Lasts until reset.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Misbehaviour {
    #[default]
    None,
    WrongNonce,
    WrongIssuer,
    WrongAudience,
    ExpiredIdToken,
    /// Sign ID tokens with a key that is not in the JWKS.
    ForeignKey,
    /// Put another issuer in the redirect's `iss` parameter (RFC 9207 mix-up).
    WrongCallbackIss,
    /// Leave `iss` off the redirect, although discovery promises it (RFC 9207).
    NoCallbackIss,
    /// Answer the token request with a redirect to `/dev/trap` (which counts visitors): a
    /// client that follows it would resend the code and client secret.
    RedirectTokenRequest,
    /// Answer token requests only after 1.5 s (an RPC in flight during shutdown).
    SlowTokenResponse,
}

struct Grant {
    client_id: String,
    redirect_uri: String,
    code_challenge: String,
    nonce: String,
    user: DevUser,
    issuer: String,
    issued_at: i64,
    /// The scopes asked for: `api://idlink/Links.Manage` among them gets an access token for
    /// idlink (what a portal signing in its work user asks Entra for).
    scope: String,
}

struct Keys {
    active: SigningKey,
    /// Keys in the JWKS: the active one and those retired by rotation.
    published: Vec<CoreJsonWebKey>,
    foreign: Option<SigningKey>,
}

struct Inner {
    base: String,
    clock: DynClock,
    keys: Mutex<Keys>,
    users: Mutex<Vec<DevUser>>,
    clients: Vec<DevClient>,
    apps: Vec<DevApp>,
    /// While set, every endpoint answers 503 (an outage).
    down: std::sync::atomic::AtomicBool,
    codes: Mutex<HashMap<String, Grant>>,
    misbehaviour: Mutex<Misbehaviour>,
    jwks_fetches: AtomicUsize,
    /// Discovery requests, answered or not (an outage answers 503).
    discovery_requests: AtomicUsize,
    token_requests: AtomicUsize,
    trap_visits: AtomicUsize,
    /// Seconds an app token lives (one hour unless a test shortens it).
    app_token_seconds: std::sync::atomic::AtomicI64,
    /// Every secret this provider handed out or received, for log-leak tests.
    secrets: Mutex<Vec<String>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

pub struct DevIdp {
    inner: Arc<Inner>,
    addr: SocketAddr,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for DevIdp {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// Entra's multi-tenant work authority: any work tenant's members sign in there, and the
/// issuer of their tokens is their own tenant's (discovery says `{tenantid}`).
pub const ORGANIZATIONS: &str = "organizations";

/// The authority and issuer of `tenant` at the development provider served from `base`.
pub fn authority(base: &str, tenant: &str) -> String {
    format!("{base}/{tenant}/v2.0")
}

impl DevIdp {
    /// Binds `listen` (port 0 for any) and serves until dropped.
    pub async fn start(listen: SocketAddr, clients: Vec<DevClient>, clock: DynClock) -> Result<Self, OidcError> {
        // It signs tokens of any role for whoever asks: never reachable from another machine.
        if !listen.ip().is_loopback() {
            return Err(OidcError::Config { detail: format!("development provider on {listen}: loopback addresses only") });
        }
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|e| OidcError::Config { detail: format!("development provider cannot bind {listen}: {e}") })?;
        let addr = listener.local_addr().map_err(|e| OidcError::Config { detail: e.to_string() })?;
        let active = tokio::task::spawn_blocking(SigningKey::generate).await.map_err(|e| OidcError::Config { detail: e.to_string() })??;
        let published = vec![active.public_jwk()];
        let inner = Arc::new(Inner {
            base: format!("http://{addr}"),
            clock,
            keys: Mutex::new(Keys { active, published, foreign: None }),
            users: Mutex::new(default_users()),
            clients,
            apps: default_apps(),
            down: std::sync::atomic::AtomicBool::new(false),
            codes: Mutex::new(HashMap::new()),
            misbehaviour: Mutex::new(Misbehaviour::None),
            jwks_fetches: AtomicUsize::new(0),
            discovery_requests: AtomicUsize::new(0),
            token_requests: AtomicUsize::new(0),
            trap_visits: AtomicUsize::new(0),
            app_token_seconds: std::sync::atomic::AtomicI64::new(3600),
            secrets: Mutex::new(Vec::new()),
        });
        for client in &inner.clients {
            inner.remember_secret(&client.client_secret);
        }
        let app = routes::router(inner.clone());
        let server = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!(error = %e, "development provider stopped");
            }
        });
        Ok(Self { inner, addr, server })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn base_url(&self) -> &str {
        &self.inner.base
    }

    /// `{base}/{tenant}/v2.0`, the authority and issuer of a tenant.
    pub fn authority(&self, tenant: &str) -> String {
        authority(&self.inner.base, tenant)
    }

    pub fn consumer_authority(&self) -> String {
        self.authority(CONSUMER_TENANT)
    }

    pub fn issuer_template(&self) -> String {
        self.authority("{tid}")
    }

    pub fn add_user(&self, tenant: &str, login: &str, account_type: AccountType) -> AccountKey {
        self.inner.add_user(DevUser::new(tenant, login, account_type))
    }

    /// Changes an account's sign-in name and email, keeping its object id (an alias change).
    pub fn rename_user(&self, login: &str, new_login: &str) -> bool {
        let login = login.trim().to_ascii_lowercase();
        let mut users = lock(&self.inner.users);
        match users.iter_mut().find(|u| u.login == login) {
            Some(user) => {
                user.login = new_login.trim().to_ascii_lowercase();
                true
            }
            None => false,
        }
    }

    pub fn user(&self, login: &str) -> Option<DevUser> {
        self.inner.find_user(login)
    }

    /// A delegated v2 access token for calling idlink as `login` (scope `Links.Manage`).
    pub fn access_token(&self, login: &str) -> Result<String, OidcError> {
        let user = self.inner.find_user(login).ok_or_else(|| OidcError::Config { detail: format!("no fixture user {login}") })?;
        Ok(self.inner.access_token(&user, "Links.Manage"))
    }

    /// A client-credentials access token of a fixture app (`partner-university`, …).
    pub fn app_token(&self, client_id: &str) -> Result<String, OidcError> {
        let app = self
            .inner
            .apps
            .iter()
            .find(|a| a.client_id == client_id)
            .ok_or_else(|| OidcError::Config { detail: format!("no fixture app {client_id}") })?;
        Ok(self.inner.app_token(app))
    }

    /// A client-credentials token of any app in any tenant, genuinely signed: what a partner
    /// tenant's admin can obtain by registering an app of their own and consenting to idlink's
    /// roles there (adversarial tests).
    pub fn app_token_of(&self, tenant: &str, client_id: &str, roles: &[&str]) -> String {
        let app =
            DevApp { client_id: client_id.to_owned(), tenant: tenant.to_owned(), roles: roles.iter().map(|r| (*r).to_owned()).collect() };
        self.inner.app_token(&app)
    }

    /// How long the app tokens issued from now on live (`exp`, and `expires_in` at the token
    /// endpoint): tests of jobs that outlive their token.
    pub fn set_app_token_lifetime(&self, lifetime: std::time::Duration) {
        self.inner.app_token_seconds.store(i64::try_from(lifetime.as_secs()).unwrap_or(i64::MAX).max(1), Ordering::SeqCst);
    }

    /// Simulates an outage: every endpoint answers 503 until brought back.
    pub fn set_down(&self, down: bool) {
        self.inner.down.store(down, Ordering::SeqCst);
    }

    /// The standard access-token claims of `login`, for tests that tamper with them.
    pub fn access_token_claims(&self, login: &str) -> Option<serde_json::Value> {
        self.inner.find_user(login).map(|u| self.inner.access_token_claims(&u, "Links.Manage"))
    }

    /// Signs any claims with the active key and a header of the caller's choosing.
    pub fn sign_raw(&self, header: &serde_json::Value, claims: &serde_json::Value) -> String {
        lock(&self.inner.keys).active.sign_raw(header, claims)
    }

    pub fn active_kid(&self) -> String {
        lock(&self.inner.keys).active.kid.clone()
    }

    /// Starts signing with a new key, publishing it beside the old ones.
    pub async fn rotate_signing_key(&self) -> Result<(), OidcError> {
        let fresh = tokio::task::spawn_blocking(SigningKey::generate).await.map_err(|e| OidcError::Config { detail: e.to_string() })??;
        let mut keys = lock(&self.inner.keys);
        keys.published.push(fresh.public_jwk());
        keys.active = fresh;
        Ok(())
    }

    pub async fn misbehave(&self, how: Misbehaviour) -> Result<(), OidcError> {
        if how == Misbehaviour::ForeignKey && lock(&self.inner.keys).foreign.is_none() {
            let foreign =
                tokio::task::spawn_blocking(SigningKey::generate).await.map_err(|e| OidcError::Config { detail: e.to_string() })??;
            lock(&self.inner.keys).foreign = Some(foreign);
        }
        *lock(&self.inner.misbehaviour) = how;
        Ok(())
    }

    pub fn jwks_fetches(&self) -> usize {
        self.inner.jwks_fetches.load(Ordering::SeqCst)
    }

    /// Discovery requests received, including those an outage refused.
    pub fn discovery_requests(&self) -> usize {
        self.inner.discovery_requests.load(Ordering::SeqCst)
    }

    pub fn token_requests(&self) -> usize {
        self.inner.token_requests.load(Ordering::SeqCst)
    }

    /// How often anyone followed [`Misbehaviour::RedirectTokenRequest`]'s redirect.
    pub fn trap_visits(&self) -> usize {
        self.inner.trap_visits.load(Ordering::SeqCst)
    }

    /// Secrets this provider handed out or received so far: codes, tokens, PKCE verifiers,
    /// nonces, client secrets.
    pub fn secrets_seen(&self) -> Vec<String> {
        lock(&self.inner.secrets).clone()
    }
}

impl Inner {
    fn remember_secret(&self, secret: &str) {
        if !secret.is_empty() {
            lock(&self.secrets).push(secret.to_owned());
        }
    }

    fn add_user(&self, user: DevUser) -> AccountKey {
        let key = user.key.clone();
        let mut users = lock(&self.users);
        if !users.iter().any(|u| u.login == user.login && u.key == user.key) {
            users.push(user);
        }
        key
    }

    fn find_user(&self, login: &str) -> Option<DevUser> {
        let login = login.trim().to_ascii_lowercase();
        lock(&self.users).iter().find(|u| u.login == login).cloned()
    }

    fn known_tenant(&self, tenant: &str) -> bool {
        tenant == CONSUMER_TENANT
            || tenant == ORGANIZATIONS
            || self.apps.iter().any(|a| a.tenant == tenant)
            || lock(&self.users).iter().any(|u| u.key.tenant.as_str() == tenant)
    }

    fn issuer(&self, tenant: &str) -> String {
        format!("{}/{tenant}/v2.0", self.base)
    }

    fn access_token_claims(&self, user: &DevUser, scope: &str) -> serde_json::Value {
        self.access_token_claims_for(user, scope, fixtures::DEV_PORTAL_CLIENT)
    }

    /// Delegated claims for idlink as issued to `client_id` (its `azp`).
    fn access_token_claims_for(&self, user: &DevUser, scope: &str, client_id: &str) -> serde_json::Value {
        let now = self.clock.now().timestamp();
        let tenant = user.key.tenant.as_str();
        let mut claims = json!({
            "iss": self.issuer(tenant), "aud": DEV_AUDIENCE, "tid": tenant,
            "oid": user.key.object.as_str(), "sub": format!("sub-{}", user.key.object.as_str()),
            "scp": scope, "ver": "2.0", "azp": client_id,
            "preferred_username": user.login, "name": user.name,
            "iat": now, "nbf": now, "exp": now + 3600,
        });
        if user.account_type == AccountType::GuestMsa {
            claims["idp"] = json!("live.com");
        }
        if !user.roles.is_empty() {
            claims["roles"] = json!(user.roles);
        }
        claims
    }

    fn app_token(&self, app: &DevApp) -> String {
        let now = self.clock.now().timestamp();
        let service_principal = DevUser::new(&app.tenant, &format!("{}@apps", app.client_id), AccountType::Work).key;
        let claims = json!({
            "iss": self.issuer(&app.tenant), "aud": DEV_AUDIENCE, "tid": app.tenant,
            "oid": service_principal.object.as_str(), "sub": service_principal.object.as_str(),
            "azp": app.client_id, "roles": app.roles, "idtyp": "app", "ver": "2.0",
            "iat": now, "nbf": now, "exp": now + self.app_token_seconds.load(Ordering::SeqCst),
        });
        let token = lock(&self.keys).active.sign(&claims);
        self.remember_secret(&token);
        token
    }

    fn access_token(&self, user: &DevUser, scope: &str) -> String {
        self.access_token_for(user, scope, fixtures::DEV_PORTAL_CLIENT)
    }

    fn access_token_for(&self, user: &DevUser, scope: &str, client_id: &str) -> String {
        let token = lock(&self.keys).active.sign(&self.access_token_claims_for(user, scope, client_id));
        self.remember_secret(&token);
        token
    }
}
