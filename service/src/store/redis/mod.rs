//! The shared backend: many idlinkd replicas on one Redis.
//!
//! - **Keys.** Every key of a deployment starts with `{prefix}:` — the prefix is a Redis
//!   Cluster hash tag, so all of a deployment's keys live in one slot and every script may
//!   touch any of them (on Cluster too). Several deployments share one Redis by prefix.
//! - **Atomicity.** A multi-key change ([`super::changes`]) runs over a snapshot fetched from
//!   Redis; one Lua script ([`tx::CHECK_AND_APPLY`]) then checks that every key the change read
//!   still holds what it read and applies all its writes — or nothing, and the change runs
//!   again on fresh reads (optimistic concurrency, like `WATCH`/`MULTI` but on a shared
//!   multiplexed connection). Scripts are called by SHA and reloaded on `NOSCRIPT`.
//! - **Flows** are keys with a TTL, consumed by `GETDEL`: single use across replicas.
//! - **Events** are a Redis stream whose entry ids are the cursors (`N-0`), assigned by
//!   `INCR` inside the same script, so cursor order is commit order.
//! - **Outages.** Every call has a timeout; errors and timeouts are `Unavailable`.
//! - **Topologies** ([`conn`]): one server at `store.redis_url`, the primary the sentinels of
//!   `store.redis_sentinels` name (followed through a failover), or a Cluster of
//!   `store.redis_cluster` (one slot's primary holds a deployment's keys).

mod conn;
mod credit;
mod events;
mod flows;
mod integrity;
mod links;
mod read;
mod requests;
mod tx;

use std::{sync::Arc, time::Duration};

use redis::{AsyncCommands, aio::ConnectionManager};

use conn::Conn;

use super::{Result, StoreError, changes::Table};
use crate::domain::Catalog;

/// How to reach Redis and how careful to be.
#[derive(Debug, Clone)]
pub struct RedisOptions {
    /// `redis://host:port/db` or `rediss://` for TLS.
    pub url: String,
    /// Overrides a password in the URL (kept out of configuration files); exposed only when
    /// connecting.
    pub password: Option<secrecy::SecretString>,
    /// For `rediss://`: trust these PEM certificates instead of the public web roots (a
    /// private certificate authority).
    pub ca_pem: Option<Vec<u8>>,
    /// The deployment's key prefix and hash tag.
    pub key_prefix: String,
    /// Every Redis call fails with `Unavailable` after this long.
    pub timeout: Duration,
    /// Refuse to start unless acknowledged writes survive a crash (see [`Durability`]).
    pub require_durable: bool,
    /// After each change, wait until this many replicas have it (`WAIT`); 0 does not wait.
    pub wait_replicas: u32,
    pub wait_timeout: Duration,
    /// Reach the primary the sentinels name instead of `url`.
    pub sentinel: Option<SentinelOptions>,
    /// A Cluster, found from these seed nodes (`redis://` or `rediss://` URLs) instead of `url`.
    pub cluster: Option<Vec<String>>,
}

/// A sentinel-monitored primary: `url` is then unused.
#[derive(Debug, Clone)]
pub struct SentinelOptions {
    /// `redis://host:port` (or `rediss://` for TLS, to the sentinels and the primary alike).
    pub sentinels: Vec<String>,
    /// The name the sentinels monitor the primary under.
    pub master: String,
    /// The sentinels' own password, when they require one.
    pub password: Option<secrecy::SecretString>,
}

impl RedisOptions {
    pub fn new(url: impl Into<String>, key_prefix: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            password: None,
            ca_pem: None,
            key_prefix: key_prefix.into(),
            timeout: Duration::from_secs(1),
            require_durable: false,
            wait_replicas: 0,
            wait_timeout: Duration::from_millis(500),
            sentinel: None,
            cluster: None,
        }
    }
}

/// The server's persistence as read at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Durability {
    pub appendonly: String,
    pub appendfsync: String,
    pub save: String,
    pub connected_replicas: u32,
    pub maxmemory_policy: String,
    /// `min-replicas-to-write`: a primary cut off from its replicas stops taking writes.
    pub min_replicas_to_write: String,
}

impl Durability {
    /// Why acknowledged writes could be lost, naming the setting; `None` when they cannot
    /// (append-only file fsynced on every write, or on every second with replica acknowledgement).
    pub fn risk(&self, wait_replicas: u32) -> Option<String> {
        if self.appendonly != "yes" {
            return Some(format!(
                "Redis has appendonly={} (save=\"{}\"): writes acknowledged since the last snapshot are lost when Redis stops",
                self.appendonly, self.save
            ));
        }
        match self.appendfsync.as_str() {
            "always" => None,
            "everysec" if wait_replicas > 0 => None,
            other => Some(format!(
                "Redis has appendfsync={other}: up to a second of acknowledged writes is lost if its machine crashes \
                 (use appendfsync always, or store.wait_replicas >= 1)"
            )),
        }
    }
}

pub struct RedisStore {
    conn: Conn,
    keys: Keys,
    catalog: Arc<Catalog>,
    options: RedisOptions,
    scripts: tx::Scripts,
    /// The last event cursor this replica committed, for its own watchers (others poll).
    feed: tokio::sync::watch::Sender<u64>,
}

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable { detail: format!("redis: {e}") }
}

/// A failed first connection: Redis refusing the password, or presenting a certificate the
/// configured roots do not vouch for, will not mend by waiting (start-up stops, naming the
/// key); anything else is an outage (idlinkd keeps trying).
fn first_connection_failed(e: &redis::RedisError) -> StoreError {
    let untrusted = {
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
        let mut found = false;
        while let Some(error) = source {
            found |= matches!(error.downcast_ref::<rustls::Error>(), Some(rustls::Error::InvalidCertificate(_)))
                || error.to_string().contains("invalid peer certificate");
            source = error.source();
        }
        found
    };
    if e.kind() == redis::ErrorKind::AuthenticationFailed {
        StoreError::Misconfigured { detail: "Redis refused the authentication (store.redis_password)".into() }
    } else if untrusted {
        StoreError::Misconfigured { detail: format!("Redis's TLS certificate is not trusted (store.redis_ca_file): {e}") }
    } else {
        unavailable(e)
    }
}

impl RedisStore {
    /// Connects (within the timeout), reads the server's persistence settings and refuses
    /// when `require_durable` is set and acknowledged writes could be lost.
    pub async fn connect(options: RedisOptions, catalog: Arc<Catalog>) -> Result<Self> {
        if options.key_prefix.is_empty() || !options.key_prefix.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) {
            return Err(StoreError::Misconfigured {
                detail: format!("store.key_prefix {:?}: use letters, digits, '-', '_' or '.'", options.key_prefix),
            });
        }
        let conn = match (&options.sentinel, &options.cluster) {
            (Some(sentinel), _) => Self::open_sentinel(&options, sentinel).await?,
            (None, Some(seeds)) => Self::open_cluster(&options, seeds).await?,
            (None, None) => Self::open_server(&options).await?,
        };
        let store = Self {
            conn,
            keys: Keys(format!("{{{}}}:", options.key_prefix)),
            catalog,
            options,
            scripts: tx::Scripts::new(),
            feed: tokio::sync::watch::Sender::new(0),
        };
        store.build_active_index().await?;
        store.build_partner_index().await?;
        let durability = store.durability().await?;
        match durability.risk(store.options.wait_replicas) {
            Some(risk) if store.options.require_durable => {
                return Err(StoreError::Misconfigured { detail: format!("store.require_durable is set but {risk}") });
            }
            Some(risk) => tracing::warn!(%risk, "acknowledged writes could be lost"),
            None => tracing::info!(appendfsync = %durability.appendfsync, replicas = durability.connected_replicas, "redis persistence"),
        }
        if store.options.wait_replicas > durability.connected_replicas {
            tracing::warn!(
                wanted = store.options.wait_replicas,
                connected = durability.connected_replicas,
                "store.wait_replicas exceeds the replicas connected now: changes fail UNAVAILABLE until they connect"
            );
        }
        if store.options.sentinel.is_some() && durability.min_replicas_to_write == "0" {
            tracing::warn!(
                "Redis behind sentinels has min-replicas-to-write 0: a primary cut off from its replicas keeps taking writes \
                 that the failover then discards; set min-replicas-to-write 1 (and store.wait_replicas >= 1)"
            );
        }
        if durability.maxmemory_policy != "noeviction" {
            tracing::warn!(
                policy = %durability.maxmemory_policy,
                "Redis may evict idlink's keys under memory pressure: set maxmemory-policy noeviction"
            );
        }
        Ok(store)
    }

    async fn open_server(options: &RedisOptions) -> Result<Conn> {
        let mut info = redis::IntoConnectionInfo::into_connection_info(options.url.as_str()).map_err(unavailable)?;
        if let Some(password) = &options.password {
            let settings = info.redis_settings().clone().set_password(secrecy::ExposeSecret::expose_secret(password));
            info = info.set_redis_settings(settings);
        }
        let client = match &options.ca_pem {
            Some(pem) => redis::Client::build_with_tls(info, redis::TlsCertificates { client_tls: None, root_cert: Some(pem.clone()) }),
            None => redis::Client::open(info),
        }
        .map_err(unavailable)?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(options.timeout))
            .set_response_timeout(Some(options.timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        let conn = tokio::time::timeout(options.timeout, ConnectionManager::new_with_config(client, config))
            .await
            .map_err(|_| unavailable(format!("no answer within {:?}", options.timeout)))?
            .map_err(|e| first_connection_failed(&e))?;
        Ok(Conn::Server(conn))
    }

    /// The sentinels, asked for the primary now (and again after each failover).
    async fn open_sentinel(options: &RedisOptions, sentinel: &SentinelOptions) -> Result<Conn> {
        use redis::sentinel::{SentinelClientBuilder, SentinelServerType};
        use secrecy::ExposeSecret;
        let mut addrs = Vec::new();
        for url in &sentinel.sentinels {
            addrs.push(redis::IntoConnectionInfo::into_connection_info(url.as_str()).map_err(unavailable)?.addr().clone());
        }
        let tls = addrs.iter().any(|a| matches!(a, redis::ConnectionAddr::TcpTls { .. }));
        let mut builder = SentinelClientBuilder::new(addrs, &sentinel.master, SentinelServerType::Master).map_err(unavailable)?;
        if let Some(password) = &options.password {
            builder = builder.set_client_to_redis_password(password.expose_secret());
        }
        if let Some(password) = &sentinel.password {
            builder = builder.set_client_to_sentinel_password(password.expose_secret());
        }
        if tls {
            builder = builder.set_client_to_redis_tls_mode(redis::TlsMode::Secure);
        }
        if let Some(pem) = &options.ca_pem {
            let certificates = || redis::TlsCertificates { client_tls: None, root_cert: Some(pem.clone()) };
            builder = builder.set_client_to_redis_certificates(certificates()).set_client_to_sentinel_certificates(certificates());
        }
        let follower = conn::Follower::new(builder.build().map_err(unavailable)?, options.timeout);
        follower.connection().await.map_err(|e| first_connection_failed(&e))?;
        Ok(Conn::Sentinel(std::sync::Arc::new(follower)))
    }

    /// A Cluster, its topology read from the seed nodes now (and again on `MOVED`).
    async fn open_cluster(options: &RedisOptions, seeds: &[String]) -> Result<Conn> {
        use secrecy::ExposeSecret;
        let mut builder = redis::cluster::ClusterClientBuilder::new(seeds.iter().map(String::as_str))
            .connection_timeout(options.timeout)
            .response_timeout(options.timeout)
            .retries(3);
        if let Some(password) = &options.password {
            builder = builder.password(password.expose_secret());
        }
        if let Some(pem) = &options.ca_pem {
            builder = builder.certs(redis::TlsCertificates { client_tls: None, root_cert: Some(pem.clone()) });
        }
        let client = builder.build().map_err(unavailable)?;
        let conn = tokio::time::timeout(options.timeout, client.get_async_connection())
            .await
            .map_err(|_| unavailable(format!("no answer within {:?}", options.timeout)))?
            .map_err(|e| first_connection_failed(&e))?;
        Ok(Conn::Cluster(conn))
    }

    /// Reads `appendonly`, `appendfsync`, `save`, `maxmemory-policy` and the replica count.
    pub async fn durability(&self) -> Result<Durability> {
        let info: String = self.here(redis::cmd("INFO").arg("replication")).await?;
        let connected_replicas =
            info.lines().find_map(|line| line.strip_prefix("connected_slaves:")).and_then(|n| n.trim().parse().ok()).unwrap_or(0);
        Ok(Durability {
            appendonly: self.config("appendonly").await?,
            appendfsync: self.config("appendfsync").await?,
            save: self.config("save").await?,
            maxmemory_policy: self.config("maxmemory-policy").await?,
            min_replicas_to_write: self.config("min-replicas-to-write").await?,
            connected_replicas,
        })
    }

    /// One server setting; managed services that refuse `CONFIG` answer "unknown".
    async fn config(&self, name: &str) -> Result<String> {
        let pair: Vec<String> = match self.here(redis::cmd("CONFIG").arg("GET").arg(name)).await {
            Ok(pair) => pair,
            Err(e) => {
                tracing::warn!(setting = name, error = %e, "cannot read the Redis setting");
                Vec::new()
            }
        };
        Ok(pair.get(1).cloned().unwrap_or_else(|| "unknown".into()))
    }

    /// Runs one Redis call within the timeout.
    async fn call<T>(&self, fut: impl Future<Output = redis::RedisResult<T>>) -> Result<T> {
        match tokio::time::timeout(self.options.timeout, fut).await {
            Ok(result) => result.map_err(unavailable),
            Err(_) => Err(unavailable(format!("no answer within {:?}", self.options.timeout))),
        }
    }

    /// A command that names no key, on the server holding this deployment's keys (on Cluster,
    /// the primary of their slot), within the timeout.
    async fn here<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T> {
        let mut conn = self.conn.clone();
        self.call(conn.query_at(cmd, &self.keys.key(""))).await
    }

    /// Answers once this many replicas hold every write made so far (`store.wait_replicas`).
    async fn replicated(&self) -> Result<()> {
        let wanted = self.options.wait_replicas;
        if wanted == 0 {
            return Ok(());
        }
        let millis = u64::try_from(self.options.wait_timeout.as_millis()).unwrap_or(u64::MAX);
        let acked: u32 = self.here(redis::cmd("WAIT").arg(wanted).arg(millis)).await?;
        if acked < wanted {
            return Err(unavailable(format!("the change is written but only {acked} of {wanted} replicas acknowledged it")));
        }
        Ok(())
    }

    async fn get(&self, key: Vec<u8>) -> Result<Option<Vec<u8>>> {
        let mut conn = self.conn.clone();
        self.call(conn.get(key)).await
    }
}

/// Key names: `{prefix}:name` and `{prefix}:name:key`.
struct Keys(String);

/// Where a table's entry lives: its own string key, or a member of one sorted set (for the
/// tables that are scanned in order).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Slot {
    Value(Vec<u8>),
    Member { set: Vec<u8>, member: Vec<u8> },
}

impl Keys {
    fn key(&self, name: &str) -> Vec<u8> {
        format!("{}{name}", self.0).into_bytes()
    }

    fn entry(&self, name: &str, key: &[u8]) -> Vec<u8> {
        [self.0.as_bytes(), name.as_bytes(), b":", key].concat()
    }

    fn slot(&self, table: Table, key: &[u8]) -> Slot {
        let name = match table {
            Table::ByTenant => return Slot::Member { set: self.key("by_tenant"), member: key.to_vec() },
            Table::ActiveByTenant => return Slot::Member { set: self.key("active_by_tenant"), member: key.to_vec() },
            Table::Expiry => return Slot::Member { set: self.key("expiry"), member: key.to_vec() },
            Table::PartnerTenants => return Slot::Member { set: self.key("partner_tenants"), member: key.to_vec() },
            Table::Orgs => "org",
            Table::Links => "links",
            Table::ByWork => "by_work",
            Table::ByPersonal => "by_personal",
            Table::LastRemoved => "last_removed",
            Table::Certs => "certs",
            Table::Credit => "credit",
            Table::Profiles => "profiles",
            Table::Associations => "associations",
        };
        Slot::Value(self.entry(name, key))
    }

    /// Tenants with links or stored credit (sorted set, by name).
    fn tenants(&self) -> Vec<u8> {
        self.key("tenants")
    }
}

/// A key prefix of its own for a test or a benchmark run, its keys deleted when dropped
/// (with `KEYS`: never point this at a production Redis). Test support only.
#[cfg(any(test, feature = "test-support"))]
pub struct ScratchPrefix {
    pub url: String,
    pub prefix: String,
}

#[cfg(any(test, feature = "test-support"))]
impl ScratchPrefix {
    /// `{label}-{random}` on the Redis at `url`.
    pub fn new(url: &str, label: &str) -> Self {
        Self { url: url.to_owned(), prefix: format!("{label}-{:016x}", rand::random::<u64>()) }
    }
}

#[cfg(any(test, feature = "test-support"))]
impl Drop for ScratchPrefix {
    fn drop(&mut self) {
        let Ok(mut conn) = redis::Client::open(self.url.as_str()).and_then(|c| c.get_connection()) else { return };
        let keys: Vec<Vec<u8>> = redis::cmd("KEYS").arg(format!("{{{}}}:*", self.prefix)).query(&mut conn).unwrap_or_default();
        if !keys.is_empty() {
            let _: redis::RedisResult<()> = redis::cmd("DEL").arg(keys).query(&mut conn);
        }
    }
}

#[cfg(test)]
mod tests;
