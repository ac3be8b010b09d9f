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

/// Set to `redis` to run the end-to-end suite on the Redis backend.
pub const BACKEND_VAR: &str = "IDLINK_TEST_BACKEND";

pub fn redis_backend_requested() -> bool {
    std::env::var(BACKEND_VAR).is_ok_and(|b| b == "redis")
}

use idlink_service::test_support::{test_redis_url, unavailable};

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

pub fn store_env(url: &str, prefix: &str) -> Vec<(String, String)> {
    vec![
        ("IDLINK_STORE__BACKEND".into(), "redis".into()),
        ("IDLINK_STORE__REDIS_URL".into(), url.into()),
        ("IDLINK_STORE__KEY_PREFIX".into(), prefix.into()),
    ]
}

pub async fn open_store(url: &str, prefix: &str) -> DynStore {
    Arc::new(RedisStore::connect(RedisOptions::new(url, prefix), Arc::new(Catalog::default_catalog())).await.unwrap())
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

    /// Waits until `n` replicas are connected and in sync with this server.
    pub fn wait_for_replicas(&self, n: usize) {
        for _ in 0..200 {
            let info: String = redis::Client::open(self.url().as_str())
                .and_then(|c| c.get_connection_with_timeout(Duration::from_millis(200)))
                .and_then(|mut c| redis::cmd("INFO").arg("replication").query(&mut c))
                .unwrap_or_default();
            if info.lines().filter(|l| l.starts_with("slave") && l.contains("state=online")).count() >= n {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("redis-server on port {} never had {n} replicas in sync", self.port);
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
