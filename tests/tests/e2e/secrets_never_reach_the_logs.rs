//! Invariant 10 (and the log half of 9): after full flows — successes and refusals — the
//! logs of this test binary hold no code, token, PKCE verifier, nonce, state, client secret
//! or personal email that the run used.

use idlink_client::pb;
use idlink_tests::*;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_or_personal_email_is_ever_logged() {
    let app = TestApp::spawn().await;
    let client = app.client_for("alex@contoso.example").await;
    for kind in [ML, PU] {
        link(&client, kind, "jordan@outlook.example").await.unwrap();
    }
    // Refusals log too: a replay, a bad nonce, a forged bearer token, an error callback.
    let complete = begin_and_sign_in(&client, ML, "sam@outlook.example").await;
    let _ = client.complete_link(complete.clone()).await;
    let _ = client.complete_link(complete).await;
    app.idp.misbehave(Misbehaviour::WrongNonce).await.unwrap();
    let _ = link(&client, PU, "sam@outlook.example").await;
    app.idp.misbehave(Misbehaviour::None).await.unwrap();
    let mut forged = app.idp.access_token_claims("blair@contoso.example").unwrap();
    forged["aud"] = json!("api://other");
    let forged = app.idp.sign_raw(&json!({"alg": "RS256", "kid": app.idp.active_kid()}), &forged);
    let _ = app.client_with_token(Some(forged.clone())).await.get_links().await;
    for kind in [ML, PU] {
        client
            .remove_link(pb::RemoveLinkRequest { kind: kind as i32, user: None, reason: String::new(), ..Default::default() })
            .await
            .unwrap();
    }

    let mut secrets = app.idp.secrets_seen();
    secrets.push(forged);
    secrets.extend(remembered_secrets());
    // A JWT's signature alone is as unique as the token.
    let signatures: Vec<String> =
        secrets.iter().filter_map(|s| s.rsplit('.').next().filter(|sig| sig.len() > 40).map(str::to_owned)).collect();
    secrets.extend(signatures);
    assert!(secrets.len() > 10, "the run used secrets to look for");

    let logs = captured_logs();
    assert!(logs.contains("link.create") && logs.contains("mutation refused"), "the capture holds this run's audit events");
    let leaked = secrets_in(logs.as_bytes(), &secrets);
    assert!(leaked.is_empty(), "secrets starting {:?} reached the logs", leaked.iter().map(|s| &s[..6]).collect::<Vec<_>>());
    assert!(!logs.contains("@outlook.example"), "a personal email reached the logs");
}
