//! Invariant 6: the built idlinkd binary, killed with SIGKILL right after acknowledging
//! links, restarts on the same data directory with every acknowledged link present and its
//! indexes consistent. Also runs the binary from a TOML file plus environment overrides.

use std::{path::Path, process::Stdio, sync::Arc, time::Duration};

use idlink_client::{ClientOptions, IdlinkClient};
use idlink_service::{
    clock::SystemClock,
    dev::dev_clients,
    oidc::devidp::{AccountType, CONTOSO_TENANT, DEV_REDIRECT_URI, DevIdp, FABRIKAM_TENANT},
    store::{Store, sled::SledStore},
};
use idlink_tests::*;

const ROUNDS: usize = 5;
const RACERS: usize = 24;
const KILL_AFTER_ACKS: usize = 4;

fn idlinkd_binary() -> std::path::PathBuf {
    // tests run from target/<profile>/deps; cargo builds the binary into target/<profile>
    // because idlink-service has an integration test of its own.
    let exe = std::env::current_exe().unwrap();
    let path = exe.parent().unwrap().parent().unwrap().join("idlinkd");
    assert!(path.exists(), "{} is missing: run the tests with `cargo test --workspace`", path.display());
    path
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

struct Daemon {
    child: tokio::process::Child,
    endpoint: String,
}

async fn start(config: &Path, secret: &str, logs: &Path, round: usize) -> Daemon {
    let port = free_port();
    let log = |suffix: &str| std::fs::File::create(logs.join(format!("idlinkd-{round}.{suffix}"))).unwrap();
    let child = tokio::process::Command::new(idlinkd_binary())
        .arg("--config")
        .arg(config)
        .env("IDLINK_LISTEN", format!("127.0.0.1:{port}"))
        .env("IDLINK_KINDS__MICROSOFT_LEARNING__CLIENT_SECRET", secret)
        .env("RUST_LOG", "debug,h2=info,hyper=info,hyper_util=info,tower=info,sled=info")
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
    panic!("idlinkd did not start; see {}", logs.display());
}

async fn client(idp: &DevIdp, endpoint: &str, login: &str) -> IdlinkClient {
    IdlinkClient::connect(ClientOptions::new(endpoint).token(idp.access_token(login).unwrap())).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_links_survive_kill_9() {
    capture_logs();
    let clients = dev_clients();
    let ml = clients[1].clone();
    let idp = DevIdp::start("127.0.0.1:0".parse().unwrap(), clients, Arc::new(SystemClock)).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = dir.path().join("idlink.toml");
    // The secret is not in the file: it comes from the environment, as in production.
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:1\"\n[store]\npath = {data:?}\n[auth]\naudience = \"api://idlink\"\n\
             allowed_tenants = [\"{CONTOSO_TENANT}\", \"{FABRIKAM_TENANT}\"]\nissuer_template = \"{}\"\n\
             [kinds.microsoft_learning]\nauthority = \"{}\"\nclient_id = \"{}\"\nredirect_uris = [\"{DEV_REDIRECT_URI}\"]\n\
             [dev]\nallow_insecure_http = true\n",
            idp.issuer_template(),
            idp.consumer_authority(),
            ml.client_id
        ),
    )
    .unwrap();

    let mut acknowledged: Vec<(String, String)> = Vec::new();
    for round in 0..=ROUNDS {
        let mut daemon = start(&config, &ml.client_secret, dir.path(), round).await;
        for (login, link_id) in &acknowledged {
            let links = client(&idp, &daemon.endpoint, login).await.get_links().await.unwrap();
            assert!(links.iter().any(|l| &l.id == link_id), "round {round}: acknowledged link of {login} lost");
        }
        if round == ROUNDS {
            daemon.child.kill().await.unwrap();
            break;
        }
        // Everyone begins and signs in, then all complete at once; kill -9 right after the
        // first acknowledgements while the rest are in flight.
        let mut ready = Vec::new();
        for i in 0..RACERS {
            let login = format!("crash{i}.r{round}@contoso.example");
            idp.add_user(CONTOSO_TENANT, &login, AccountType::Work);
            let personal = format!("crash{i}.r{round}@outlook.example");
            idp.add_user(CONTOSO_TENANT, &personal, AccountType::Personal);
            let c = client(&idp, &daemon.endpoint, &login).await;
            let complete = begin_and_sign_in(&c, ML, &personal).await;
            ready.push((login, c, complete));
        }
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        for (login, c, complete) in ready {
            let tx = tx.clone();
            tokio::spawn(async move {
                let _ = tx.send((login, c.complete_link(complete).await));
            });
        }
        drop(tx);
        let mut acks = 0;
        while let Some((login, outcome)) = rx.recv().await {
            if let Ok(link) = outcome {
                acknowledged.push((login, link.id));
                acks += 1;
                if acks == KILL_AFTER_ACKS {
                    daemon.child.start_kill().unwrap(); // SIGKILL
                }
            }
        }
        daemon.child.wait().await.unwrap();
        assert!(acks >= KILL_AFTER_ACKS, "round {round}: only {acks} acknowledgements");
    }
    assert!(acknowledged.len() >= ROUNDS * KILL_AFTER_ACKS);

    let store = SledStore::open(&data, Arc::new(idlink_service::domain::Catalog::default_catalog())).unwrap();
    let report = store.check_integrity().await.unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert!(report.active_links >= acknowledged.len());

    // What the binary logged holds no secret it handled.
    let mut secrets = idp.secrets_seen();
    secrets.extend(remembered_secrets());
    for round in 0..=ROUNDS {
        let read = |suffix: &str| std::fs::read_to_string(dir.path().join(format!("idlinkd-{round}.{suffix}"))).unwrap();
        let text = read("out") + &read("err");
        assert!(text.contains("idlinkd serving"), "round {round}: the capture holds the daemon's logs");
        for secret in &secrets {
            assert!(!text.contains(secret.as_str()), "round {round}: the daemon logged a secret starting {}", &secret[..6]);
        }
        assert!(!text.contains("@outlook.example"), "round {round}: the daemon logged a personal email");
    }
    remember_secrets(idp.secrets_seen());
}
