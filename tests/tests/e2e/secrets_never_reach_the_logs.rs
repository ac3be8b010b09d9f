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
    // Refusals log too: a second account for a kind already linked, its replay, a bad nonce, a
    // forged bearer token, an error callback. Each is asserted refused: a wrong success would
    // log something else.
    let complete = begin_and_sign_in(&client, ML, "sam@outlook.example").await;
    assert_refused(client.complete_link(complete.clone()).await, tonic::Code::AlreadyExists, "ALREADY_LINKED");
    assert_refused(client.complete_link(complete).await, tonic::Code::NotFound, "FLOW_NOT_FOUND");
    app.idp.misbehave(Misbehaviour::WrongNonce).await.unwrap();
    assert_refused(link(&client, PU, "sam@outlook.example").await, tonic::Code::PermissionDenied, "NONCE_MISMATCH");
    app.idp.misbehave(Misbehaviour::None).await.unwrap();
    let mut forged = app.idp.access_token_claims("blair@contoso.example").unwrap();
    forged["aud"] = json!("api://other");
    let forged = app.idp.sign_raw(&json!({"alg": "RS256", "kid": app.idp.active_kid()}), &forged);
    assert_refused(app.client_with_token(Some(forged.clone())).await.get_links().await, tonic::Code::Unauthenticated, "INVALID_TOKEN");
    let begun = client.begin_link(begin_request(PU, "sam@outlook.example")).await.unwrap();
    remember_secrets([begun.state.clone()]);
    let cancelled = pb::CompleteLinkRequest { state: begun.state, error: Some("access_denied".into()), ..Default::default() };
    assert_refused(client.complete_link(cancelled).await, tonic::Code::FailedPrecondition, "SIGN_IN_CANCELLED");
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
