//! The built `idlinkd` binary as a child process, configured by a TOML file plus environment
//! overrides against an in-process development identity provider: for the tests where a
//! crash or a restart is the point.

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    sync::Arc,
    time::Duration,
};

use idlink_client::{ClientOptions, IdlinkClient};

use crate::redis::SharedRedis;
use idlink_service::{
    clock::SystemClock,
    dev::dev_clients,
    domain::Catalog,
    oidc::devidp::{
        CONTOSO_TENANT, DEV_PORTAL_CLIENT, DEV_REDIRECT_URI, DevClient, DevIdp, FABRIKAM_TENANT, SERVICES_TENANT, default_apps,
    },
    store::{DynStore, sled::SledStore},
};

pub fn idlinkd_binary() -> PathBuf {
    // Tests run from target/<profile>/deps; cargo builds the binary into target/<profile>
    // because idlink-service has an integration test of its own.
    let exe = std::env::current_exe().unwrap();
    let path = exe.parent().unwrap().parent().unwrap().join("idlinkd");
    assert!(path.exists(), "{} is missing: run the tests with `cargo test --workspace`", path.display());
    path
}

/// The `idlink` CLI, built beside `idlinkd`.
pub fn idlink_binary() -> PathBuf {
    let path = idlinkd_binary().with_file_name("idlink");
    assert!(path.exists(), "{} is missing: run the tests with `cargo test --workspace`", path.display());
    path
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

pub struct Harness {
    pub idp: DevIdp,
    pub dir: tempfile::TempDir,
    ml: DevClient,
    store: HarnessStore,
}

/// Where the daemons keep their data: sled in `dir`, or a Redis key prefix.
enum HarnessStore {
    Sled,
    Redis { url: String, prefix: String, _shared: Option<SharedRedis> },
    Cluster(idlink_service::test_support::TestCluster),
}

pub struct Daemon {
    pub child: tokio::process::Child,
    pub endpoint: String,
}

impl Daemon {
    /// SIGTERM: graceful shutdown; returns whether it exited 0.
    pub async fn terminate(mut self) -> bool {
        let pid = self.child.id().unwrap().to_string();
        std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        self.child.wait().await.unwrap().success()
    }
}

impl Harness {
    /// sled, or the shared Redis when the suite runs with `IDLINK_TEST_BACKEND=redis`.
    pub async fn new() -> Self {
        let store = if crate::redis::cluster_backend_requested() {
            HarnessStore::Cluster(crate::redis::start_cluster().await)
        } else if crate::redis::redis_backend_requested() {
            let shared = SharedRedis::new().expect("IDLINK_TEST_BACKEND=redis needs a reachable Redis");
            HarnessStore::Redis { url: shared.url.clone(), prefix: shared.prefix.clone(), _shared: Some(shared) }
        } else {
            HarnessStore::Sled
        };
        Self::with_store(store).await
    }

    /// Daemons sharing this Redis key prefix (the test cleans up after itself).
    pub async fn on_redis(url: &str, prefix: &str) -> Self {
        Self::with_store(HarnessStore::Redis { url: url.into(), prefix: prefix.into(), _shared: None }).await
    }

    /// The daemons' store, opened by the test itself (with no daemon running, for sled).
    pub async fn open_store(&self) -> DynStore {
        match &self.store {
            HarnessStore::Sled => Arc::new(SledStore::open(&self.data_dir(), Arc::new(Catalog::default_catalog())).unwrap()),
            HarnessStore::Redis { url, prefix, .. } => crate::redis::open_store(url, prefix, None).await,
            HarnessStore::Cluster(cluster) => crate::redis::open_store("", crate::redis::CLUSTER_PREFIX, Some(&cluster.seeds())).await,
        }
    }

    async fn with_store(store: HarnessStore) -> Self {
        crate::capture_logs();
        let clients = dev_clients();
        let ml = clients[1].clone();
        let idp = DevIdp::start("127.0.0.1:0".parse().unwrap(), clients, Arc::new(SystemClock)).await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        // The secret is not in the file: it comes from the environment, as in production. Its
        // tests race for accounts, so Learning refuses an account linked elsewhere, as
        // Partner University does (set in the file, as an operator would).
        let config = format!(
            "listen = \"127.0.0.1:1\"\n[store]\npath = {:?}\n[auth]\naudience = \"api://idlink\"\n\
             allowed_tenants = [\"{CONTOSO_TENANT}\", \"{FABRIKAM_TENANT}\"]\nissuer_template = \"{}\"\n\
             service_tenant = \"{SERVICES_TENANT}\"\nservice_apps = {:?}\nuser_clients = [\"{DEV_PORTAL_CLIENT}\"]\n\
             [kinds.microsoft_learning]\nauthority = \"{}\"\nclient_id = \"{}\"\nredirect_uris = [\"{DEV_REDIRECT_URI}\"]\non_linked_elsewhere = \"refuse\"\n\
             [limits]\nbegin_global_burst = 100000\n[dev]\nallow_insecure_http = true\n",
            dir.path().join("data"),
            idp.issuer_template(),
            default_apps().into_iter().map(|a| a.client_id).collect::<Vec<_>>(),
            idp.consumer_authority(),
            ml.client_id
        );
        std::fs::write(dir.path().join("idlink.toml"), config).unwrap();
        Self { idp, dir, ml, store }
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Starts idlinkd on `port`, its output in `<label>.out` / `<label>.err`.
    pub async fn start(&self, port: u16, label: &str) -> Daemon {
        self.start_with_env(port, label, &[]).await
    }

    pub async fn start_with_env(&self, port: u16, label: &str, env: &[(&str, &str)]) -> Daemon {
        let daemon = self.start_listening(port, label, env).await;
        crate::wait_until_serving(&daemon.endpoint).await;
        daemon
    }

    /// Starts idlinkd and returns as soon as it accepts connections (it may not be ready).
    pub async fn start_listening(&self, port: u16, label: &str, env: &[(&str, &str)]) -> Daemon {
        let log = |suffix: &str| std::fs::File::create(self.dir.path().join(format!("{label}.{suffix}"))).unwrap();
        let store_env = match &self.store {
            HarnessStore::Sled => Vec::new(),
            HarnessStore::Redis { url, prefix, .. } => crate::redis::store_env(url, prefix, None),
            HarnessStore::Cluster(cluster) => crate::redis::store_env("", crate::redis::CLUSTER_PREFIX, Some(&cluster.seeds())),
        };
        let child = tokio::process::Command::new(idlinkd_binary())
            .arg("--config")
            .arg(self.dir.path().join("idlink.toml"))
            .env("IDLINK_LISTEN", format!("127.0.0.1:{port}"))
            .env("IDLINK_KINDS__MICROSOFT_LEARNING__CLIENT_SECRET", &self.ml.client_secret)
            .env("RUST_LOG", "debug,h2=info,hyper=info,hyper_util=info,tower=info,sled=info")
            .envs(store_env)
            .envs(env.iter().copied())
            .stdout(Stdio::from(log("out")))
            .stderr(Stdio::from(log("err")))
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let endpoint = format!("http://127.0.0.1:{port}");
        for _ in 0..300 {
            if tonic::transport::Endpoint::from_shared(endpoint.clone()).unwrap().connect().await.is_ok() {
                return Daemon { child, endpoint };
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("idlinkd did not start; see {}", self.dir.path().display());
    }

    pub async fn client(&self, endpoint: &str, token: String) -> IdlinkClient {
        IdlinkClient::connect(ClientOptions::new(endpoint).token(token)).await.unwrap()
    }

    pub async fn user(&self, endpoint: &str, login: &str) -> IdlinkClient {
        self.client(endpoint, self.idp.access_token(login).unwrap()).await
    }

    /// The daemon's output of run `label`.
    pub fn logs(&self, label: &str) -> String {
        let read = |suffix: &str| std::fs::read_to_string(log_path(self.dir.path(), label, suffix)).unwrap_or_default();
        read("out") + read("err").as_str()
    }
}

fn log_path(dir: &Path, label: &str, suffix: &str) -> PathBuf {
    dir.join(format!("{label}.{suffix}"))
}
