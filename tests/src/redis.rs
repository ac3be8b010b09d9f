//! Redis for the tests: the shared server of `IDLINK_TEST_REDIS_URL` (default
//! `redis://127.0.0.1:6379`) under a key prefix of the test's own, or a `redis-server` the
//! test starts, kills and restarts itself.

use std::{path::PathBuf, process::Stdio, sync::Arc, time::Duration};

use idlink_service::{
    domain::Catalog,
    store::{
        DynStore,
        redis::{RedisOptions, RedisStore, ScratchPrefix},
    },
};

/// Set to `redis` to run the end-to-end suite on the Redis backend (the shared Redis), or to
/// `redis-cluster` to run it on a Redis Cluster of each test's own.
pub const BACKEND_VAR: &str = "IDLINK_TEST_BACKEND";

pub fn redis_backend_requested() -> bool {
    std::env::var(BACKEND_VAR).is_ok_and(|b| b == "redis")
}

pub fn cluster_backend_requested() -> bool {
    std::env::var(BACKEND_VAR).is_ok_and(|b| b == "redis-cluster")
}

/// A Redis Cluster of three primaries for one test, started off the runtime's threads.
pub async fn start_cluster() -> idlink_service::test_support::TestCluster {
    tokio::task::spawn_blocking(|| idlink_service::test_support::TestCluster::start(3, 0))
        .await
        .unwrap()
        .expect("IDLINK_TEST_BACKEND=redis-cluster needs redis-server and redis-cli")
}

/// The key prefix of a test's store on its own cluster.
pub const CLUSTER_PREFIX: &str = "e2e";

use idlink_service::test_support::{is_primary, query, test_redis_url, unavailable, within_a_minute};

/// A key prefix on the shared Redis, its keys deleted when dropped.
pub struct SharedRedis(ScratchPrefix);

impl std::ops::Deref for SharedRedis {
    type Target = ScratchPrefix;
    fn deref(&self) -> &ScratchPrefix {
        &self.0
    }
}

impl SharedRedis {
    /// `None` (after saying why) when the shared Redis does not answer, outside CI.
    pub fn new() -> Option<Self> {
        let url = test_redis_url();
        let answers = redis::Client::open(url.as_str())
            .and_then(|c| c.get_connection_with_timeout(Duration::from_secs(2)))
            .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c));
        if let Err(e) = answers {
            unavailable(&format!("Redis at {url} is unreachable ({e}); set IDLINK_TEST_REDIS_URL or start redis-server"))?;
        }
        Some(Self(ScratchPrefix::new(&url, "idlink-e2e")))
    }
}

/// A daemon's store settings: the Redis at `url`, or (with `cluster`) the Cluster of these seeds.
pub fn store_env(url: &str, prefix: &str, cluster: Option<&[String]>) -> Vec<(String, String)> {
    let place = match cluster {
        Some(seeds) => ("IDLINK_STORE__REDIS_CLUSTER".into(), format!("{seeds:?}")),
        None => ("IDLINK_STORE__REDIS_URL".into(), url.into()),
    };
    vec![("IDLINK_STORE__BACKEND".into(), "redis".into()), place, ("IDLINK_STORE__KEY_PREFIX".into(), prefix.into())]
}

pub async fn open_store(url: &str, prefix: &str, cluster: Option<&[String]>) -> DynStore {
    let mut options = RedisOptions::new(url, prefix);
    options.cluster = cluster.map(<[String]>::to_vec);
    Arc::new(RedisStore::connect(options, Arc::new(Catalog::default_catalog())).await.unwrap())
}

/// A `redis-server` of the test's own on a free port, its data in a temporary directory.
pub struct RedisServer {
    child: Option<std::process::Child>,
    pub port: u16,
    dir: tempfile::TempDir,
    args: Vec<String>,
}

impl RedisServer {
    /// Starts `redis-server` with these extra arguments (e.g. `--appendonly yes`); `None`
    /// (after saying why) when there is no `redis-server`, outside CI.
    pub fn start(args: &[&str]) -> Option<Self> {
        if std::process::Command::new("redis-server").arg("--version").output().is_err() {
            unavailable("redis-server is not installed")?;
        }
        let mut server = Self {
            child: None,
            port: crate::daemon::free_port(),
            dir: tempfile::tempdir().unwrap(),
            args: args.iter().map(|a| (*a).to_owned()).collect(),
        };
        server.restart();
        Some(server)
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn dir(&self) -> PathBuf {
        self.dir.path().to_owned()
    }

    /// Waits (up to 60 s) until `n` replicas are connected and in sync with this server.
    pub fn wait_for_replicas(&self, n: usize) {
        for _ in 0..1200 {
            let info: String = redis::Client::open(self.url().as_str())
                .and_then(|c| c.get_connection_with_timeout(Duration::from_millis(200)))
                .and_then(|mut c| redis::cmd("INFO").arg("replication").query(&mut c))
                .unwrap_or_default();
            if info.lines().filter(|l| l.starts_with("slave") && l.contains("state=online")).count() >= n {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("redis-server on port {} had not {n} replicas in sync within 60 s; its log ends:\n{}", self.port, self.log_tail());
    }

    /// The last lines of its log (the test's diagnosis when it misbehaves).
    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.path().join("redis.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// SIGKILL: no shutdown, no final save.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    /// Starts it again on the same port and data; returns once it answers PING.
    pub fn restart(&mut self) {
        self.kill();
        let child = std::process::Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", ""])
            .arg("--dir")
            .arg(self.dir.path())
            .arg("--logfile")
            .arg(self.dir.path().join("redis.log"))
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.child = Some(child);
        for _ in 0..100 {
            let answers = redis::Client::open(self.url().as_str())
                .and_then(|c| c.get_connection_with_timeout(Duration::from_millis(200)))
                .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c));
            // Up: it answers, even if only to say a password is needed.
            if answers.as_ref().map_or_else(|e| !e.is_io_error() && !e.is_connection_refusal(), |_| true) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("redis-server on port {} did not start", self.port);
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The name the test sentinels monitor their primary under.
pub const SENTINEL_MASTER: &str = "idlink";

/// A `redis-server --sentinel` of the test's own, its configuration (which it rewrites) in a
/// temporary directory.
struct Sentinel {
    child: std::process::Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Sentinel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Redis as a sentinel deployment runs it, on loopback: a primary and a replica (append-only
/// file fsynced every second, as production runs them) and three sentinels (quorum 2) that
/// declare a primary down after a second.
pub struct SentinelSet {
    pub servers: Vec<RedisServer>,
    sentinels: Vec<Sentinel>,
}

impl SentinelSet {
    /// `None` (after saying why) when there is no `redis-server`, outside CI.
    pub fn start() -> Option<Self> {
        let durable = ["--appendonly", "yes", "--appendfsync", "everysec", "--min-replicas-to-write", "1", "--min-replicas-max-lag", "10"];
        let primary = RedisServer::start(&durable)?;
        let primary_port = primary.port.to_string();
        let replica = RedisServer::start(&[&durable[..], &["--replicaof", "127.0.0.1", &primary_port]].concat())?;
        primary.wait_for_replicas(1);
        let sentinels = (0..3)
            .map(|_| {
                let dir = tempfile::tempdir().unwrap();
                let port = crate::daemon::free_port();
                let conf = dir.path().join("sentinel.conf");
                std::fs::write(
                    &conf,
                    format!(
                        "port {port}\nbind 127.0.0.1\ndir {}\nsentinel monitor {SENTINEL_MASTER} 127.0.0.1 {primary_port} 2\n\
                         sentinel down-after-milliseconds {SENTINEL_MASTER} 1000\nsentinel failover-timeout {SENTINEL_MASTER} 10000\n",
                        dir.path().display()
                    ),
                )
                .unwrap();
                let child = std::process::Command::new("redis-server")
                    .arg(&conf)
                    .arg("--sentinel")
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .unwrap();
                Sentinel { child, port, _dir: dir }
            })
            .collect();
        let set = Self { servers: vec![primary, replica], sentinels };
        // Each sentinel knows the replica and the two other sentinels: a failover can be agreed.
        within_a_minute("every sentinel sees the replica and the other sentinels", || {
            set.sentinels.iter().all(|s| {
                let master: redis::RedisResult<std::collections::HashMap<String, String>> =
                    query(s.port, redis::cmd("SENTINEL").arg("MASTER").arg(SENTINEL_MASTER));
                master.is_ok_and(|m| {
                    m.get("num-slaves").map(String::as_str) == Some("1") && m.get("num-other-sentinels").map(String::as_str) == Some("2")
                })
            })
        });
        Some(set)
    }

    /// The sentinels' addresses, as `store.redis_sentinels` takes them.
    pub fn sentinels(&self) -> Vec<String> {
        self.sentinels.iter().map(|s| format!("127.0.0.1:{}", s.port)).collect()
    }

    /// The primary's port, as the sentinels name it.
    pub fn primary_port(&self) -> Option<u16> {
        self.sentinels.iter().find_map(|s| {
            let addr: redis::RedisResult<Vec<String>> =
                query(s.port, redis::cmd("SENTINEL").arg("GET-MASTER-ADDR-BY-NAME").arg(SENTINEL_MASTER));
            addr.ok()?.get(1)?.parse().ok()
        })
    }

    /// The server on this port.
    pub fn server(&mut self, port: u16) -> &mut RedisServer {
        self.servers.iter_mut().find(|s| s.port == port).expect("one of the set's servers")
    }

    /// Waits (up to 60 s) until the failover is over — every sentinel names the same primary,
    /// not `old`, with no failover in progress, and it answers as primary — and returns it.
    pub fn until_promoted(&self, old: u16) -> u16 {
        let mut promoted = None;
        within_a_minute("the sentinels promote the replica", || {
            let named: Vec<Option<u16>> = self
                .sentinels
                .iter()
                .map(|s| {
                    let master: std::collections::HashMap<String, String> =
                        query(s.port, redis::cmd("SENTINEL").arg("MASTER").arg(SENTINEL_MASTER)).ok()?;
                    (master.get("flags").map(String::as_str) == Some("master")).then(|| master.get("port")?.parse().ok()).flatten()
                })
                .collect();
            let agreed = named[0].filter(|p| *p != old && named.iter().all(|n| *n == Some(*p)));
            promoted = agreed.filter(|p| is_primary(*p));
            promoted.is_some()
        });
        promoted.unwrap_or(old)
    }

    /// Starts the server on `port` again as the replica of `primary` (what the sentinels would
    /// make of it in their own time: the test does not wait for them).
    pub fn rejoin(&mut self, port: u16, primary: u16) {
        self.server(port).restart();
        let _: () = query(port, redis::cmd("REPLICAOF").arg("127.0.0.1").arg(primary)).unwrap();
        self.server(primary).wait_for_replicas(1);
    }
}
