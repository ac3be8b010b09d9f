//! Invariant 6: the built idlinkd binary, killed with SIGKILL right after acknowledging
//! links, restarts on the same data directory with every acknowledged link present and its
//! indexes consistent. Also runs the binary from a TOML file plus environment overrides.
//! Write combining is on (forced, whatever the default): the racing completions commit in
//! shared batches, and a batch's callers hear back only once it is flushed.

use idlink_service::oidc::devidp::{AccountType, CONTOSO_TENANT};
use idlink_tests::{daemon::Harness, *};

const ROUNDS: usize = 5;
const RACERS: usize = 24;
const KILL_AFTER_ACKS: usize = 4;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_links_survive_kill_9() {
    let harness = Harness::new().await;
    let idp = &harness.idp;
    let mut acknowledged: Vec<(String, String)> = Vec::new();
    for round in 0..=ROUNDS {
        let combining = [("IDLINK_STORE__WRITE_COMBINING", "true")];
        let mut daemon = harness.start_with_env(daemon::free_port(), &format!("idlinkd-{round}"), &combining).await;
        for (login, link_id) in &acknowledged {
            let links = harness.user(&daemon.endpoint, login).await.get_links().await.unwrap();
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
            let c = harness.user(&daemon.endpoint, &login).await;
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

    let store = harness.open_store().await;
    let report = store.check_integrity().await.unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert!(report.active_links >= acknowledged.len());

    // What the binary logged holds no secret it handled.
    let mut secrets = idp.secrets_seen();
    secrets.extend(remembered_secrets());
    for round in 0..=ROUNDS {
        let text = harness.logs(&format!("idlinkd-{round}"));
        assert!(text.contains("idlinkd serving"), "round {round}: the capture holds the daemon's logs");
        for secret in &secrets {
            assert!(!text.contains(secret.as_str()), "round {round}: the daemon logged a secret starting {}", &secret[..6]);
        }
        assert!(!text.contains("@outlook.example"), "round {round}: the daemon logged a personal email");
    }
    remember_secrets(idp.secrets_seen());
}
