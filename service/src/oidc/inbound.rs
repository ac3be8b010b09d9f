//! Who is calling: validates the bearer access token (Entra v2) of every idlink RPC.
//!
//! Order matters: the header is vetted (pinned RS256, no `jku`/`jwk`/`x5u`/`x5c`/`crit`),
//! the unverified `tid` only selects which trusted issuer's keys to use, the signature is
//! checked, and only then are claims believed. Trusted issuers are the partner tenants
//! (`auth.allowed_tenants`, whose members are work users) and the service tenant
//! (`auth.service_tenant`, whose named apps are our services); neither gives the other's
//! kind of caller anything.

use std::{
    collections::{BTreeSet, HashMap},
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    time::Duration,
};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use chrono::{DateTime, Utc};
use openidconnect::{
    IssuerUrl, JsonWebKey, JsonWebKeyId,
    core::{CoreJsonWebKeySet, CoreJwsSigningAlgorithm, CoreProviderMetadata},
    reqwest,
};
use serde::Deserialize;
use sha2::Digest;
use tokio::sync::OnceCell;

use super::jwks::JwksCache;
use crate::domain::{ADMIN_ROLES, AccountKey, AppRole, CONSUMER_TENANT, Membership, Principal, ServiceApps, TenantId};

/// The delegated scope a work user's token must carry.
pub const SCOPE_LINKS_MANAGE: &str = "Links.Manage";

/// Tokens larger than this are refused before any parsing (Entra tokens are 1–3 KiB).
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// After a failed discovery of an issuer, calls naming it are refused at once for this long
/// instead of each fetching again (an outage, or a tenant whose metadata does not exist).
pub const DISCOVERY_RETRY_AFTER: chrono::Duration = chrono::Duration::seconds(30);

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum AuthError {
    #[error("no bearer token")]
    MissingToken,
    #[error("the bearer token is larger than {MAX_TOKEN_BYTES} bytes")]
    TokenTooLarge,
    /// `why` is for logs only; callers just learn the token is not accepted.
    #[error("token refused: {why}")]
    InvalidToken { why: &'static str },
    #[error("the token issuer's keys cannot be fetched")]
    ProviderUnavailable,
    #[error("a guest personal account cannot own links")]
    PersonalAccountGuest,
    #[error("a guest of the tenant cannot own links")]
    Guest,
    #[error("the token lacks the required scope")]
    MissingScope,
    /// An app-only token of an app that is not one of ours (invariant 11).
    #[error("app {app_id} of tenant {} is not one of auth.service_apps in auth.service_tenant", tenant.as_str())]
    AppNotAllowed { tenant: TenantId, app_id: String },
    /// A delegated token issued to a client that is not one of `auth.user_clients`.
    #[error("the token was issued to client {client_id:?}, which is not one of auth.user_clients")]
    ClientNotAllowed { client_id: String },
}

#[derive(Debug, Clone)]
pub struct InboundConfig {
    pub audience: String,
    /// Partner tenants: their members are work users.
    pub allowed_tenants: Vec<TenantId>,
    /// The only apps whose app roles count.
    pub services: ServiceApps,
    /// When set, delegated tokens must have been issued to one of these clients (`azp`).
    pub user_clients: Option<BTreeSet<String>>,
    /// `https://login.microsoftonline.com/{tid}/v2.0`
    pub issuer_template: String,
    pub leeway: Duration,
    pub jwks_refetch_interval: Duration,
}

/// One trusted issuer: its keys, discovered on first use, and when discovery last failed.
#[derive(Default)]
struct Issuer {
    keys: OnceCell<Arc<JwksCache>>,
    failed_at: Mutex<Option<DateTime<Utc>>>,
}

pub struct Authenticator {
    config: InboundConfig,
    http: reqwest::Client,
    /// Per trusted tenant (partner tenants and the service tenant).
    issuers: HashMap<TenantId, Issuer>,
    /// Tokens already validated, by SHA-256 of the token (never the token itself), until
    /// they expire: a signature check and two JSON parses per call otherwise (see
    /// BENCHMARKS.md). Refusals are never cached.
    validated: Mutex<HashMap<[u8; 32], (Principal, i64)>>,
    jwks_counted: crate::metrics::JwksCounters,
}

/// Past this many cached tokens, expired ones are dropped (and all, if none had expired).
const MAX_CACHED_TOKENS: usize = 100_000;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

#[derive(Deserialize)]
struct Header {
    alg: String,
    kid: Option<String>,
    jku: Option<serde_json::Value>,
    jwk: Option<serde_json::Value>,
    x5u: Option<serde_json::Value>,
    x5c: Option<serde_json::Value>,
    crit: Option<serde_json::Value>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
struct Claims {
    iss: String,
    aud: Audience,
    exp: i64,
    nbf: Option<i64>,
    tid: String,
    oid: Option<String>,
    sub: Option<String>,
    ver: Option<String>,
    scp: Option<String>,
    #[serde(default)]
    roles: Vec<String>,
    idtyp: Option<String>,
    idp: Option<String>,
    /// Entra's optional `acct` claim: 0 member, 1 guest.
    acct: Option<serde_json::Value>,
    azp: Option<String>,
    appid: Option<String>,
    preferred_username: Option<String>,
    upn: Option<String>,
    nonce: Option<serde_json::Value>,
}

fn refuse<T>(why: &'static str) -> Result<T, AuthError> {
    Err(AuthError::InvalidToken { why })
}

fn decode_part(part: &str) -> Result<Vec<u8>, AuthError> {
    URL_SAFE_NO_PAD.decode(part).or_else(|_| refuse("malformed base64url"))
}

impl Authenticator {
    pub fn new(config: InboundConfig, http: reqwest::Client, jwks_counted: crate::metrics::JwksCounters) -> Self {
        let issuers = config.allowed_tenants.iter().chain(config.services.tenant()).map(|t| (t.clone(), Issuer::default())).collect();
        Self { config, http, issuers, validated: Mutex::new(HashMap::new()), jwks_counted }
    }

    fn issuer_of(&self, tenant: &TenantId) -> String {
        self.config.issuer_template.replace("{tid}", tenant.as_str())
    }

    /// The issuer's keys, discovering them on first use. A failed discovery is remembered for
    /// [`DISCOVERY_RETRY_AFTER`]: until then calls naming the issuer fail at once.
    async fn keys_for(&self, tenant: &TenantId, now: DateTime<Utc>) -> Result<&Arc<JwksCache>, AuthError> {
        let issuer = self.issuers.get(tenant).ok_or(AuthError::InvalidToken { why: "tenant not allowed" })?;
        if let Some(keys) = issuer.keys.get() {
            return Ok(keys);
        }
        if lock(&issuer.failed_at).is_some_and(|failed| now < failed + DISCOVERY_RETRY_AFTER) {
            return Err(AuthError::ProviderUnavailable);
        }
        issuer
            .keys
            .get_or_try_init(|| async {
                let url = IssuerUrl::new(self.issuer_of(tenant)).map_err(|_| AuthError::ProviderUnavailable)?;
                let metadata = CoreProviderMetadata::discover_async(url, &self.http).await.map_err(|e| {
                    tracing::warn!(tenant = tenant.as_str(), error = %e, retry_after_seconds = DISCOVERY_RETRY_AFTER.num_seconds(),
                        "inbound issuer discovery failed");
                    *lock(&issuer.failed_at) = Some(now);
                    AuthError::ProviderUnavailable
                })?;
                let uri = metadata.jwks_uri().clone();
                let (keys, interval, counted) = (metadata.jwks().clone(), self.config.jwks_refetch_interval, self.jwks_counted.clone());
                Ok(Arc::new(JwksCache::new(uri, self.http.clone(), keys, interval, counted)))
            })
            .await
    }

    /// Refreshes every discovered issuer's keys (the hourly background task).
    pub async fn refresh_keys(&self) {
        for issuer in self.issuers.values() {
            if let Some(cache) = issuer.keys.get() {
                cache.refresh().await;
            }
        }
    }

    /// Validates `authorization: Bearer <jwt>` at `now`.
    pub async fn authenticate(&self, authorization: Option<&str>, now: DateTime<Utc>) -> Result<Principal, AuthError> {
        let token = authorization
            .and_then(|h| h.strip_prefix("Bearer ").or_else(|| h.strip_prefix("bearer ")))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or(AuthError::MissingToken)?;
        if token.len() > MAX_TOKEN_BYTES {
            return Err(AuthError::TokenTooLarge);
        }
        let key: [u8; 32] = sha2::Sha256::digest(token.as_bytes()).into();
        let leeway = i64::try_from(self.config.leeway.as_secs()).unwrap_or(300);
        let now_s = now.timestamp();
        if let Some((principal, exp)) = self.cache().get(&key)
            && exp + leeway > now_s
        {
            return Ok(principal.clone());
        }
        let (principal, exp) = self.validate(token, now).await?;
        let mut cache = self.cache();
        if cache.len() >= MAX_CACHED_TOKENS {
            cache.retain(|_, (_, exp)| *exp + leeway > now_s);
            if cache.len() >= MAX_CACHED_TOKENS {
                cache.clear();
            }
        }
        cache.insert(key, (principal.clone(), exp));
        Ok(principal)
    }

    fn cache(&self) -> MutexGuard<'_, HashMap<[u8; 32], (Principal, i64)>> {
        lock(&self.validated)
    }

    /// The full validation of a token not seen before; answers the caller and its expiry.
    async fn validate(&self, token: &str, now: DateTime<Utc>) -> Result<(Principal, i64), AuthError> {
        let mut parts = token.split('.');
        let (Some(h), Some(p), Some(s), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
            return refuse("not a compact JWS");
        };
        let header: Header = serde_json::from_slice(&decode_part(h)?).or_else(|_| refuse("malformed header"))?;
        if header.alg != "RS256" {
            return refuse("algorithm not RS256");
        }
        if header.jku.is_some() || header.jwk.is_some() || header.x5u.is_some() || header.x5c.is_some() || header.crit.is_some() {
            return refuse("header names its own key or critical extensions");
        }
        let kid = header.kid.ok_or(AuthError::InvalidToken { why: "no kid" })?;
        let payload = decode_part(p)?;
        let signature = decode_part(s)?;
        // Unverified: only picks which allowed issuer's keys to check the signature with.
        let claims: Claims = serde_json::from_slice(&payload).or_else(|_| refuse("malformed claims"))?;
        let tenant = TenantId::parse(&claims.tid).or_else(|_| refuse("tid is not a GUID"))?;
        if tenant.as_str() == CONSUMER_TENANT || !self.issuers.contains_key(&tenant) {
            return refuse("tenant not allowed");
        }
        self.verify_signature(&tenant, &kid, &token.as_bytes()[..h.len() + 1 + p.len()], &signature, now).await?;
        let exp = claims.exp;
        Ok((self.check_claims(claims, tenant, now)?, exp))
    }

    async fn verify_signature(
        &self,
        tenant: &TenantId,
        kid: &str,
        message: &[u8],
        signature: &[u8],
        now: DateTime<Utc>,
    ) -> Result<(), AuthError> {
        let cache = self.keys_for(tenant, now).await?;
        let kid = JsonWebKeyId::new(kid.to_owned());
        let (mut keys, generation) = cache.current();
        if find_key(&keys, &kid).is_none() && cache.refetch_for_unknown_kid(generation).await {
            keys = cache.current().0;
        }
        let key = find_key(&keys, &kid).ok_or(AuthError::InvalidToken { why: "unknown kid" })?;
        key.verify_signature(&CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256, message, signature).or_else(|_| refuse("bad signature"))
    }

    fn check_claims(&self, claims: Claims, tenant: TenantId, now: DateTime<Utc>) -> Result<Principal, AuthError> {
        let leeway = i64::try_from(self.config.leeway.as_secs()).unwrap_or(300);
        let now = now.timestamp();
        if claims.iss != self.issuer_of(&tenant) {
            return refuse("issuer mismatch");
        }
        let audience_ok = match &claims.aud {
            Audience::One(aud) => aud == &self.config.audience,
            Audience::Many(auds) => auds.len() == 1 && auds[0] == self.config.audience,
        };
        if !audience_ok {
            return refuse("audience mismatch");
        }
        if claims.exp + leeway <= now {
            return refuse("expired");
        }
        if claims.nbf.is_some_and(|nbf| nbf - leeway > now) {
            return refuse("not yet valid");
        }
        if claims.ver.as_deref() != Some("2.0") {
            return refuse("not a v2.0 access token");
        }
        if claims.nonce.is_some() {
            // ID tokens carry a nonce; access tokens from Entra do not.
            return refuse("an ID token is not an access token");
        }
        let oid = claims.oid.as_deref().ok_or(AuthError::InvalidToken { why: "no oid" })?;
        let is_app = claims.idtyp.as_deref() == Some("app") || (claims.scp.is_none() && claims.sub.as_deref() == Some(oid));
        if is_app {
            if claims.scp.is_some() {
                return refuse("an app token with delegated scopes");
            }
            let app_id = claims.azp.or(claims.appid).ok_or(AuthError::InvalidToken { why: "app token without azp" })?;
            // Genuinely signed by a trusted tenant is not enough: only our named apps are services.
            if !self.config.services.admits(&tenant, &app_id) {
                return Err(AuthError::AppNotAllowed { tenant, app_id });
            }
            // Unknown roles are ignored: they grant nothing here.
            let roles = claims.roles.iter().filter_map(|r| AppRole::from_claim(r)).collect();
            return Ok(Principal::App { tenant, app_id, roles });
        }
        // Work users are members of a partner tenant; the service tenant has none of them.
        if !self.config.allowed_tenants.contains(&tenant) {
            return refuse("tenant not allowed for work users");
        }
        let own_issuers = [format!("https://sts.windows.net/{}/", tenant.as_str()), claims.iss.clone()];
        let own_issuers: Vec<&str> = own_issuers.iter().map(String::as_str).collect();
        let acct = claims.acct.as_ref().and_then(|a| a.as_i64().or_else(|| a.as_str().and_then(|s| s.parse().ok())));
        match Membership::of(claims.idp.as_deref(), acct, &own_issuers) {
            Membership::Member => {}
            Membership::PersonalGuest => return Err(AuthError::PersonalAccountGuest),
            Membership::Guest => return Err(AuthError::Guest),
        }
        if let Some(allowed) = &self.config.user_clients {
            let client_id = claims.azp.or(claims.appid).unwrap_or_default();
            if !allowed.contains(&client_id) {
                return Err(AuthError::ClientNotAllowed { client_id });
            }
        }
        let scopes: Vec<String> =
            claims.scp.as_deref().unwrap_or_default().split(' ').filter(|s| !s.is_empty()).map(str::to_owned).collect();
        if !scopes.iter().any(|s| s == SCOPE_LINKS_MANAGE) {
            return Err(AuthError::MissingScope);
        }
        let key = AccountKey::parse(tenant.as_str(), oid).or_else(|_| refuse("oid is not a GUID"))?;
        let upn = claims.upn.or(claims.preferred_username).unwrap_or_default();
        let admin = claims.roles.iter().any(|r| ADMIN_ROLES.contains(&r.as_str()));
        Ok(Principal::User { key, upn, admin })
    }
}

fn find_key<'k>(keys: &'k CoreJsonWebKeySet, kid: &JsonWebKeyId) -> Option<&'k openidconnect::core::CoreJsonWebKey> {
    keys.keys().iter().find(|k| k.key_id() == Some(kid))
}
