//! Settings: the schema and its defaults (one `impl Default` a section), read in layers —
//! defaults → TOML file → `IDLINK_SECTION__KEY` environment ([`layered`]) — and turned into
//! what each part of idlinkd needs, validated ([`conversions`]). Unknown keys are an error;
//! secrets are `SecretString` (masked in Debug, never logged).

mod conversions;
mod layered;
#[cfg(test)]
mod tests;

use std::{net::SocketAddr, path::PathBuf};

use secrecy::SecretString;
use serde::Deserialize;

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

/// Where links are kept.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// Embedded, on the local disk: exactly one replica.
    #[default]
    Sled,
    /// Shared by many replicas.
    Redis,
}

#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreSettings {
    pub backend: Backend,
    pub path: PathBuf,
    /// sled's page cache, in MiB (the bulk of idlinkd's memory).
    pub cache_mb: u64,
    /// sled: commit concurrent link writes together, one transaction and one flush a batch.
    pub write_combining: bool,
    /// sled: zstd-compress its pages on disk. Applies to a new store; an existing one keeps
    /// what it was created with.
    pub compression: bool,
    /// Redis: `redis://host:port/db`, or `rediss://` for TLS. No password here: URLs get
    /// logged; use `redis_password` (`IDLINK_STORE__REDIS_PASSWORD`).
    pub redis_url: Option<String>,
    pub redis_password: Option<SecretString>,
    /// Redis behind sentinels, instead of `redis_url`: their addresses (`host:port`, or
    /// `redis://` / `rediss://` URLs; TLS to them means TLS to the primary too).
    pub redis_sentinels: Vec<String>,
    /// The name the sentinels monitor the primary under.
    pub redis_sentinel_master: Option<String>,
    /// The sentinels' own password (`IDLINK_STORE__REDIS_SENTINEL_PASSWORD`).
    pub redis_sentinel_password: Option<SecretString>,
    /// Redis Cluster: `true` (with `redis_url` as the one seed node) or the seed nodes
    /// (`host:port` or URLs) instead of `redis_url`.
    pub redis_cluster: Option<RedisCluster>,
    /// Redis over TLS with a private certificate authority: its PEM certificate(s).
    pub redis_ca_file: Option<PathBuf>,
    /// Redis: every key of this deployment starts with `{key_prefix}:` (a Cluster hash tag).
    pub key_prefix: String,
    /// Redis: refuse to start when the server's persistence could lose acknowledged writes.
    pub require_durable: bool,
    /// Redis: each call fails with UNAVAILABLE after this long.
    pub timeout_ms: u64,
    /// Redis: answer a change only once this many replicas hold it (`WAIT`); 0 does not wait.
    pub wait_replicas: u32,
    pub wait_timeout_ms: u64,
}

/// `store.redis_cluster`: on (seeded by `redis_url`), or its seed nodes.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum RedisCluster {
    Enabled(bool),
    Seeds(Vec<String>),
}

impl Default for StoreSettings {
    fn default() -> Self {
        Self {
            backend: Backend::Sled,
            path: "data".into(),
            cache_mb: 128,
            write_combining: true,
            compression: false,
            redis_url: None,
            redis_password: None,
            redis_sentinels: Vec::new(),
            redis_sentinel_master: None,
            redis_sentinel_password: None,
            redis_cluster: None,
            redis_ca_file: None,
            key_prefix: "idlink".into(),
            require_durable: false,
            timeout_ms: 1000,
            wait_replicas: 0,
            wait_timeout_ms: 500,
        }
    }
}

/// Who may call: `audience` and `allowed_tenants` have no default.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSettings {
    pub audience: String,
    pub allowed_tenants: Vec<String>,
    #[serde(default = "AuthSettings::default_issuer_template")]
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
    #[serde(default = "AuthSettings::default_leeway")]
    pub leeway_seconds: u64,
    /// Refetch JWKS on an unknown `kid` at most this often.
    #[serde(default = "AuthSettings::default_refetch")]
    pub jwks_refetch_seconds: u64,
}

impl AuthSettings {
    /// The settings of these callers, every other key at its default.
    pub fn new(audience: impl Into<String>, allowed_tenants: Vec<String>) -> Self {
        Self {
            audience: audience.into(),
            allowed_tenants,
            issuer_template: Self::default_issuer_template(),
            service_tenant: None,
            service_apps: Vec::new(),
            user_clients: Vec::new(),
            leeway_seconds: Self::default_leeway(),
            jwks_refetch_seconds: Self::default_refetch(),
        }
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
    /// "move" or "refuse"; unset: move for Microsoft Learning, refuse for Partner University.
    #[serde(default)]
    pub on_linked_elsewhere: Option<crate::domain::OnLinkedElsewhere>,
    /// Associations a personal account may make in 365 days (0: no limit); unset: 3 for
    /// Microsoft Learning, none for Partner University.
    #[serde(default)]
    pub associations_per_year: Option<u32>,
    /// Days a personal account waits between associations (0: none); unset: 30 for Microsoft
    /// Learning, none for Partner University.
    #[serde(default)]
    pub days_between_associations: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FlowSettings {
    pub ttl_seconds: u64,
}

impl Default for FlowSettings {
    fn default() -> Self {
        Self { ttl_seconds: 600 }
    }
}

/// TLS on the gRPC port: the certificate chain and key (PEM), re-read when they change on
/// disk, and optionally the CA whose client certificates are required (mTLS).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSettings {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    #[serde(default)]
    pub client_ca_file: Option<PathBuf>,
}

/// Transport limits and shutdown, with safe defaults.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerSettings {
    /// TLS on `listen`; without it idlinkd listens in plaintext on loopback only, unless
    /// `allow_plaintext` says a mesh terminates TLS in front of it.
    pub tls: Option<TlsSettings>,
    pub allow_plaintext: bool,
    /// A plaintext port serving only `grpc.health.v1`, for the kubelet's probes (which cannot
    /// speak TLS).
    pub health_listen: Option<SocketAddr>,
    /// After SIGTERM, how long in-flight RPCs may take before the process exits anyway.
    pub grace_seconds: u64,
    pub max_message_bytes: usize,
    pub concurrency_per_connection: usize,
    /// Unary RPCs; streams (the change feed, recalculation) are not cut.
    pub request_timeout_seconds: u64,
    pub keepalive_seconds: u64,
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            tls: None,
            allow_plaintext: false,
            health_listen: None,
            grace_seconds: 20,
            max_message_bytes: 4 * 1024 * 1024,
            concurrency_per_connection: 256,
            request_timeout_seconds: 30,
            keepalive_seconds: 30,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CreditSettings {
    /// A catalog TOML replacing the shipped one.
    pub catalog: Option<PathBuf>,
    /// An achievement expiring within this many days is "expiring soon" in its owner's view
    /// (renewal opens six months before expiry).
    pub expiring_soon_days: u32,
}

impl Default for CreditSettings {
    fn default() -> Self {
        Self { catalog: None, expiring_soon_days: crate::credits::DEFAULT_EXPIRING_SOON_DAYS }
    }
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
#[serde(default, deny_unknown_fields)]
pub struct EventSettings {
    /// How long the change feed keeps events.
    pub retention_days: u32,
}

impl Default for EventSettings {
    fn default() -> Self {
        Self { retention_days: 30 }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DevSettings {
    /// Allows `http://` authorities: local development and tests only.
    pub allow_insecure_http: bool,
}
