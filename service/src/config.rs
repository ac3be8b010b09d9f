//! Settings: defaults → TOML file → `IDLINK_SECTION__KEY` environment. Unknown keys are an
//! error, secrets are `SecretString` (masked in Debug, never logged).

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use secrecy::SecretString;
use serde::Deserialize;

use crate::{
    domain::{CONSUMER_TENANT, LinkKind, ServiceApps, TenantId},
    oidc::{InboundConfig, KindSettings},
    store::redis::RedisOptions,
};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    #[serde(default)]
    pub store: StoreSettings,
    pub auth: AuthSettings,
    #[serde(default)]
    pub kinds: KindsSettings,
    #[serde(default)]
    pub flows: FlowSettings,
    #[serde(default)]
    pub server: ServerSettings,
    #[serde(default)]
    pub telemetry: crate::telemetry::TelemetrySettings,
    #[serde(default)]
    pub limits: crate::limits::LimitSettings,
    #[serde(default)]
    pub credit: CreditSettings,
    #[serde(default)]
    pub events: EventSettings,
    #[serde(default)]
    pub dev: DevSettings,
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 50051))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreSettings {
    #[serde(default = "default_backend")]
    pub backend: String,
    #[serde(default = "default_path")]
    pub path: PathBuf,
    /// sled's page cache, in MiB (the bulk of idlinkd's memory).
    #[serde(default = "default_cache_mb")]
    pub cache_mb: u64,
    /// Redis: `redis://host:port/db`, or `rediss://` for TLS. No password here: URLs get
    /// logged; use `redis_password` (`IDLINK_STORE__REDIS_PASSWORD`).
    #[serde(default)]
    pub redis_url: Option<String>,
    #[serde(default)]
    pub redis_password: Option<SecretString>,
    /// Redis over TLS with a private certificate authority: its PEM certificate(s).
    #[serde(default)]
    pub redis_ca_file: Option<PathBuf>,
    /// Redis: every key of this deployment starts with `{key_prefix}:` (a Cluster hash tag).
    #[serde(default = "default_key_prefix")]
    pub key_prefix: String,
    /// Redis: refuse to start when the server's persistence could lose acknowledged writes.
    #[serde(default)]
    pub require_durable: bool,
    /// Redis: each call fails with UNAVAILABLE after this long.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Redis: answer a change only once this many replicas hold it (`WAIT`); 0 does not wait.
    #[serde(default)]
    pub wait_replicas: u32,
    #[serde(default = "default_wait_timeout_ms")]
    pub wait_timeout_ms: u64,
}

fn default_key_prefix() -> String {
    "idlink".into()
}

fn default_timeout_ms() -> u64 {
    1000
}

fn default_wait_timeout_ms() -> u64 {
    500
}

fn default_cache_mb() -> u64 {
    128
}

fn default_backend() -> String {
    "sled".into()
}
fn default_path() -> PathBuf {
    "data".into()
}

impl Default for StoreSettings {
    fn default() -> Self {
        Self {
            backend: default_backend(),
            path: default_path(),
            cache_mb: default_cache_mb(),
            redis_url: None,
            redis_password: None,
            redis_ca_file: None,
            key_prefix: default_key_prefix(),
            require_durable: false,
            timeout_ms: default_timeout_ms(),
            wait_replicas: 0,
            wait_timeout_ms: default_wait_timeout_ms(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSettings {
    pub audience: String,
    pub allowed_tenants: Vec<String>,
    #[serde(default = "default_issuer_template")]
    pub issuer_template: String,
    /// The tenant where the calling services' app registrations live. Independent of
    /// `allowed_tenants`: being a partner tenant gives an app nothing.
    #[serde(default)]
    pub service_tenant: Option<String>,
    /// The only apps (client ids: `azp`, or `appid` on v1-shaped claims) whose app roles count.
    #[serde(default)]
    pub service_apps: Vec<String>,
    /// When not empty, delegated tokens must have been issued to one of these clients (the
    /// portal's): an app that phished a user's consent gets nothing.
    #[serde(default)]
    pub user_clients: Vec<String>,
    /// Clock skew allowed on `exp` / `nbf`.
    #[serde(default = "default_leeway")]
    pub leeway_seconds: u64,
    /// Refetch JWKS on an unknown `kid` at most this often.
    #[serde(default = "default_refetch")]
    pub jwks_refetch_seconds: u64,
}

fn default_issuer_template() -> String {
    "https://login.microsoftonline.com/{tid}/v2.0".into()
}
fn default_leeway() -> u64 {
    120
}
fn default_refetch() -> u64 {
    300
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KindsSettings {
    pub partner_university: Option<KindConfig>,
    pub microsoft_learning: Option<KindConfig>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KindConfig {
    pub authority: String,
    pub client_id: String,
    pub client_secret: SecretString,
    pub redirect_uris: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlowSettings {
    #[serde(default = "default_flow_ttl")]
    pub ttl_seconds: u64,
}

fn default_flow_ttl() -> u64 {
    600
}

impl Default for FlowSettings {
    fn default() -> Self {
        Self { ttl_seconds: default_flow_ttl() }
    }
}

/// Transport limits and shutdown, with safe defaults.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSettings {
    /// After SIGTERM, how long in-flight RPCs may take before the process exits anyway.
    #[serde(default = "default_grace")]
    pub grace_seconds: u64,
    #[serde(default = "default_message_bytes")]
    pub max_message_bytes: usize,
    #[serde(default = "default_concurrency")]
    pub concurrency_per_connection: usize,
    /// Unary RPCs; streams (the change feed, recalculation) are not cut.
    #[serde(default = "default_request_timeout")]
    pub request_timeout_seconds: u64,
    #[serde(default = "default_keepalive")]
    pub keepalive_seconds: u64,
}

fn default_grace() -> u64 {
    20
}
fn default_message_bytes() -> usize {
    4 * 1024 * 1024
}
fn default_concurrency() -> usize {
    256
}
fn default_request_timeout() -> u64 {
    30
}
fn default_keepalive() -> u64 {
    30
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            grace_seconds: default_grace(),
            max_message_bytes: default_message_bytes(),
            concurrency_per_connection: default_concurrency(),
            request_timeout_seconds: default_request_timeout(),
            keepalive_seconds: default_keepalive(),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreditSettings {
    /// A catalog TOML replacing the shipped one.
    pub catalog: Option<PathBuf>,
}

impl CreditSettings {
    pub fn load_catalog(&self) -> Result<crate::domain::Catalog, ConfigError> {
        match &self.catalog {
            None => Ok(crate::domain::Catalog::default_catalog()),
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.clone(), source })?;
                crate::domain::Catalog::parse(&text).map_err(|e| ConfigError::Invalid(format!("credit.catalog {}: {e}", path.display())))
            }
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventSettings {
    /// How long the change feed keeps events.
    #[serde(default = "default_retention")]
    pub retention_days: u32,
}

fn default_retention() -> u32 {
    30
}

impl Default for EventSettings {
    fn default() -> Self {
        Self { retention_days: default_retention() }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DevSettings {
    /// Allows `http://` authorities: local development and tests only.
    #[serde(default)]
    pub allow_insecure_http: bool,
}

const SECTIONS: &[&str] = &["listen", "store", "auth", "kinds", "flows", "server", "telemetry", "limits", "credit", "events", "dev"];

impl Settings {
    /// Reads the TOML file (if any), then applies `IDLINK_SECTION__KEY` variables from `env`.
    pub fn load(path: Option<&std::path::Path>, env: impl IntoIterator<Item = (String, String)>) -> Result<Self, ConfigError> {
        let mut table = match path {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
                toml::from_str::<toml::Table>(&text).map_err(|e| ConfigError::Invalid(e.to_string()))?
            }
            None => toml::Table::new(),
        };
        for (name, value) in env {
            let Some(rest) = name.strip_prefix("IDLINK_") else {
                continue;
            };
            let path: Vec<String> = rest.split("__").map(str::to_ascii_lowercase).collect();
            // Other IDLINK_* variables (a test's, a tool's) are not settings.
            if !SECTIONS.contains(&path[0].as_str()) {
                continue;
            }
            // A secret is text whatever it looks like: a password `1234` is not a number.
            let value = match path.last() {
                Some(key) if key.ends_with("secret") || key.ends_with("password") => toml::Value::String(value),
                _ => parse_env_value(&value),
            };
            set_path(&mut table, &path, value)?;
        }
        Self::deserialize(toml::Value::Table(table)).map_err(|e| ConfigError::Invalid(e.to_string()))
    }

    /// The Redis connection settings, validated (`store.backend = "redis"`).
    pub fn redis(&self) -> Result<RedisOptions, ConfigError> {
        use secrecy::ExposeSecret;
        let store = &self.store;
        let Some(url) = &store.redis_url else {
            return Err(ConfigError::Invalid("store.redis_url is required when store.backend = \"redis\"".into()));
        };
        let parsed = url::Url::parse(url).map_err(|e| ConfigError::Invalid(format!("store.redis_url: {e}")))?;
        if !matches!(parsed.scheme(), "redis" | "rediss") {
            return Err(ConfigError::Invalid("store.redis_url must start with redis:// or rediss:// (TLS)".into()));
        }
        if parsed.fragment().is_some() {
            return Err(ConfigError::Invalid(
                "store.redis_url must not end in a #fragment: #insecure turns off TLS certificate checks (use store.redis_ca_file for a private CA)"
                    .into(),
            ));
        }
        if parsed.password().is_some() {
            return Err(ConfigError::Invalid(
                "store.redis_url must not hold a password (URLs get logged): set store.redis_password, e.g. IDLINK_STORE__REDIS_PASSWORD"
                    .into(),
            ));
        }
        let ca_pem = match &store.redis_ca_file {
            Some(path) if parsed.scheme() == "rediss" => {
                Some(std::fs::read(path).map_err(|source| ConfigError::Read { path: path.clone(), source })?)
            }
            Some(_) => return Err(ConfigError::Invalid("store.redis_ca_file needs a rediss:// (TLS) store.redis_url".into())),
            None => None,
        };
        if store.timeout_ms == 0 {
            return Err(ConfigError::Invalid("store.timeout_ms must be at least 1".into()));
        }
        Ok(RedisOptions {
            url: url.clone(),
            password: store.redis_password.as_ref().map(|p| p.expose_secret().to_owned()),
            ca_pem,
            key_prefix: store.key_prefix.clone(),
            timeout: Duration::from_millis(store.timeout_ms),
            require_durable: store.require_durable,
            wait_replicas: store.wait_replicas,
            wait_timeout: Duration::from_millis(store.wait_timeout_ms),
        })
    }

    pub fn inbound(&self) -> Result<InboundConfig, ConfigError> {
        let auth = &self.auth;
        let tenant = |key: &str, t: &str| {
            let parsed = TenantId::parse(t).map_err(|_| ConfigError::Invalid(format!("{key}: {t:?} is not a tenant id")))?;
            if parsed.is_consumer() {
                return Err(ConfigError::Invalid(format!("{key} must not be the consumer tenant")));
            }
            Ok(parsed)
        };
        let allowed_tenants = auth.allowed_tenants.iter().map(|t| tenant("auth.allowed_tenants", t)).collect::<Result<Vec<_>, _>>()?;
        let service_tenant = auth.service_tenant.as_deref().map(|t| tenant("auth.service_tenant", t)).transpose()?;
        if let Some(app) = auth.service_apps.iter().chain(&auth.user_clients).find(|a| a.trim().is_empty() || a.len() > 128) {
            return Err(ConfigError::Invalid(format!("auth.service_apps / auth.user_clients: {app:?} is not a client id")));
        }
        match (&service_tenant, auth.service_apps.is_empty()) {
            (Some(_), true) => {
                return Err(ConfigError::Invalid(
                    "auth.service_tenant is set but auth.service_apps is empty: name the apps whose roles count".into(),
                ));
            }
            (None, false) => {
                return Err(ConfigError::Invalid(
                    "auth.service_apps needs auth.service_tenant, the tenant those apps are registered in".into(),
                ));
            }
            _ => {}
        }
        if !auth.issuer_template.contains("{tid}") {
            return Err(ConfigError::Invalid("auth.issuer_template must contain {tid}".into()));
        }
        match url::Url::parse(&auth.issuer_template.replace("{tid}", CONSUMER_TENANT)).map(|u| u.scheme().to_owned()).as_deref() {
            Ok("https") => {}
            Ok("http") if self.dev.allow_insecure_http => {}
            Ok("http") => {
                return Err(ConfigError::Invalid("auth.issuer_template: http is allowed only with dev.allow_insecure_http".into()));
            }
            _ => return Err(ConfigError::Invalid("auth.issuer_template must be an https URL".into())),
        }
        Ok(InboundConfig {
            audience: auth.audience.clone(),
            allowed_tenants,
            services: ServiceApps::new(service_tenant, auth.service_apps.iter().cloned()),
            user_clients: (!auth.user_clients.is_empty()).then(|| auth.user_clients.iter().cloned().collect()),
            issuer_template: auth.issuer_template.clone(),
            leeway: Duration::from_secs(auth.leeway_seconds),
            jwks_refetch_interval: Duration::from_secs(auth.jwks_refetch_seconds),
        })
    }

    pub fn kinds(&self) -> Vec<(LinkKind, KindSettings)> {
        [(LinkKind::PartnerUniversity, &self.kinds.partner_university), (LinkKind::MicrosoftLearning, &self.kinds.microsoft_learning)]
            .into_iter()
            .filter_map(|(kind, config)| {
                config.as_ref().map(|c| {
                    (
                        kind,
                        KindSettings {
                            authority: c.authority.clone(),
                            client_id: c.client_id.clone(),
                            client_secret: c.client_secret.clone(),
                            redirect_uris: c.redirect_uris.clone(),
                        },
                    )
                })
            })
            .collect()
    }
}

fn parse_env_value(raw: &str) -> toml::Value {
    toml::from_str::<toml::Table>(&format!("v = {raw}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_owned()))
}

fn set_path(table: &mut toml::Table, path: &[String], value: toml::Value) -> Result<(), ConfigError> {
    match path {
        [] => Ok(()),
        [last] => {
            table.insert(last.clone(), value);
            Ok(())
        }
        [first, rest @ ..] => {
            let entry = table.entry(first.clone()).or_insert_with(|| toml::Value::Table(toml::Table::new()));
            match entry {
                toml::Value::Table(inner) => set_path(inner, rest, value),
                _ => Err(ConfigError::Invalid(format!("{first} is not a section"))),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;

    use super::*;

    const FILE: &str = r#"
        [auth]
        audience = "api://idlink"
        allowed_tenants = ["3b1d6a6e-5a3c-4f0a-9c7e-2f6b8e1d4c01"]
        [kinds.microsoft_learning]
        authority = "https://login.microsoftonline.com/9188040d-6c67-4c5b-b112-36a304b66dad/v2.0"
        client_id = "abc"
        client_secret = "from-file"
        redirect_uris = ["https://partner.example/cb"]
    "#;

    fn load(env: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("idlink.toml");
        std::fs::write(&path, FILE).unwrap();
        Settings::load(Some(&path), env.iter().map(|(k, v)| (k.to_string(), v.to_string())))
    }

    #[test]
    fn environment_overrides_the_file_and_secrets_stay_masked() {
        let s = load(&[
            ("IDLINK_KINDS__MICROSOFT_LEARNING__CLIENT_SECRET", "from-env"),
            ("IDLINK_FLOWS__TTL_SECONDS", "60"),
            ("IDLINK_TEST_REDIS_URL", "x"),
        ])
        .unwrap();
        let ml = s.kinds.microsoft_learning.as_ref().unwrap();
        assert_eq!(ml.client_secret.expose_secret(), "from-env");
        assert_eq!(s.flows.ttl_seconds, 60);
        assert!(!format!("{s:?}").contains("from-env"), "Debug must mask secrets");
    }

    #[test]
    fn services_are_named_by_tenant_and_client_id_and_issuers_need_https() {
        let services = "5e7ab1c4-0d2f-4a6b-9c8d-3f1e2d4c5b03";
        let inbound = load(&[("IDLINK_AUTH__SERVICE_TENANT", services), ("IDLINK_AUTH__SERVICE_APPS", "[\"learning-feed\"]")])
            .unwrap()
            .inbound()
            .unwrap();
        assert!(inbound.services.admits(&TenantId::parse(services).unwrap(), "learning-feed"));
        assert!(!inbound.services.admits(&inbound.allowed_tenants[0], "learning-feed"));
        assert_eq!(inbound.user_clients, None);
        // Nothing configured: no app may call.
        assert!(load(&[]).unwrap().inbound().unwrap().services.is_empty());
        for (env, expected) in [
            (vec![("IDLINK_AUTH__SERVICE_TENANT", services)], "auth.service_apps is empty"),
            (vec![("IDLINK_AUTH__SERVICE_APPS", "[\"learning-feed\"]")], "auth.service_apps needs auth.service_tenant"),
            (vec![("IDLINK_AUTH__SERVICE_TENANT", "contoso")], "auth.service_tenant: \"contoso\" is not a tenant id"),
            (vec![("IDLINK_AUTH__SERVICE_TENANT", CONSUMER_TENANT)], "auth.service_tenant must not be the consumer tenant"),
            (vec![("IDLINK_AUTH__USER_CLIENTS", "[\"\"]")], "is not a client id"),
            (vec![("IDLINK_AUTH__ISSUER_TEMPLATE", "http://idp.example/{tid}/v2.0")], "http is allowed only with dev.allow_insecure_http"),
            (vec![("IDLINK_AUTH__ISSUER_TEMPLATE", "ftp://idp.example/{tid}/v2.0")], "must be an https URL"),
        ] {
            let err = load(&env).unwrap().inbound().unwrap_err().to_string();
            assert!(err.contains(expected), "{env:?}: {err}");
        }
        let dev_http = [("IDLINK_AUTH__ISSUER_TEMPLATE", "http://127.0.0.1:1/{tid}/v2.0"), ("IDLINK_DEV__ALLOW_INSECURE_HTTP", "true")];
        load(&dev_http).unwrap().inbound().unwrap();
    }

    #[test]
    fn unknown_keys_are_errors() {
        let err = load(&[("IDLINK_AUTH__AUDIENCES", "x")]).unwrap_err();
        assert!(err.to_string().contains("audiences"), "{err}");
    }

    #[test]
    fn redis_settings_are_checked_and_the_password_stays_out_of_the_url() {
        let redis = |env: &[(&str, &str)]| load(&[&[("IDLINK_STORE__BACKEND", "redis")], env].concat()).unwrap().redis();
        let err = redis(&[]).unwrap_err().to_string();
        assert!(err.contains("store.redis_url is required"), "{err}");
        let err = redis(&[("IDLINK_STORE__REDIS_URL", "redis://:hunter2@cache:6379")]).unwrap_err().to_string();
        assert!(err.contains("store.redis_password") && !err.contains("hunter2"), "{err}");
        let err = redis(&[("IDLINK_STORE__REDIS_URL", "http://cache:6379")]).unwrap_err().to_string();
        assert!(err.contains("redis:// or rediss://"), "{err}");
        let err = redis(&[("IDLINK_STORE__REDIS_URL", "rediss://cache:6380/0#insecure")]).unwrap_err().to_string();
        assert!(err.contains("store.redis_url") && err.contains("#insecure"), "{err}");

        let env = [
            ("IDLINK_STORE__REDIS_URL", "rediss://cache:6380/2"),
            ("IDLINK_STORE__REDIS_PASSWORD", "123456"),
            ("IDLINK_STORE__REQUIRE_DURABLE", "true"),
            ("IDLINK_STORE__TIMEOUT_MS", "250"),
        ];
        let options = redis(&env).unwrap();
        // A password that looks like a number stays text.
        assert_eq!((options.url.as_str(), options.password.as_deref()), ("rediss://cache:6380/2", Some("123456")));
        assert_eq!((options.key_prefix.as_str(), options.require_durable, options.timeout), ("idlink", true, Duration::from_millis(250)));
        let settings = load(&[&[("IDLINK_STORE__BACKEND", "redis")], &env[..]].concat()).unwrap();
        assert!(!format!("{settings:?}").contains("123456"), "Debug must mask the Redis password");
    }
}
