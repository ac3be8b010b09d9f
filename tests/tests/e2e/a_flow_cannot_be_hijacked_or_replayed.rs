//! Invariants 3 and 5: a flow is single use, expires, completes only for the work user who
//! began it with the redirect URI it began with, and only a verified personal account links.
//! Every refusal carries its reason and leaves nothing stored.

use chrono::Duration;
use idlink_client::{IdlinkClient, browser, pb};
use idlink_tests::*;
use tonic::Code;

async fn assert_nothing_linked(app: &TestApp, client: &IdlinkClient) {
    assert!(client.get_links().await.unwrap().is_empty());
    assert_eq!(app.integrity().await.active_links, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_state_is_refused() {
    let app = TestApp::spawn().await;
    let client = app.client_for("alex@contoso.example").await;
    let complete = begin_and_sign_in(&client, ML, "jordan@outlook.example").await;
    let linked = client.complete_link(complete.clone()).await.unwrap();
    assert_refused(client.complete_link(complete).await, Code::NotFound, "FLOW_NOT_FOUND");
    assert_eq!(client.get_links().await.unwrap(), vec![linked]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flow_completed_by_another_work_user_is_refused_and_consumed() {
    let app = TestApp::spawn().await;
    let alex = app.client_for("alex@contoso.example").await;
    let blair = app.client_for("blair@contoso.example").await;
    let complete = begin_and_sign_in(&alex, ML, "jordan@outlook.example").await;
    let before = app.idp.token_requests();

    let message = assert_refused(blair.complete_link(complete.clone()).await, Code::PermissionDenied, "FLOW_OWNED_BY_ANOTHER_USER");
    assert!(!message.contains("alex"), "the refusal names nobody: {message}");
    assert_eq!(app.idp.token_requests(), before, "the code was never exchanged");
    // Consumed by the first attempt, whatever its outcome.
    assert_refused(alex.complete_link(complete).await, Code::NotFound, "FLOW_NOT_FOUND");
    assert_nothing_linked(&app, &alex).await;
    assert_nothing_linked(&app, &blair).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flow_expires_after_ten_minutes() {
    let app = TestApp::spawn().await;
    let client = app.client_for("alex@contoso.example").await;

    let complete = begin_and_sign_in(&client, ML, "jordan@outlook.example").await;
    app.clock.advance(Duration::minutes(10));
    let before = app.idp.token_requests();
    assert_refused(client.complete_link(complete).await, Code::FailedPrecondition, "FLOW_EXPIRED");
    assert_eq!(app.idp.token_requests(), before);
    assert_nothing_linked(&app, &client).await;

    // Lingering on the sign-in page just inside the window still links.
    let begun = client.begin_link(begin_request(ML, "jordan@outlook.example")).await.unwrap();
    remember_secrets([begun.state.clone()]);
    app.clock.advance(Duration::minutes(9) + Duration::seconds(59));
    let redirect = browser::follow_authorization(&begun.authorization_url).await.unwrap();
    client.complete_link(redirect.into_complete_request()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_flows_are_purged_from_the_store() {
    let app = TestApp::spawn().await;
    let client = app.client_for("alex@contoso.example").await;
    let complete = begin_and_sign_in(&client, ML, "jordan@outlook.example").await;
    app.clock.advance(Duration::minutes(11));
    assert_eq!(app.store.purge_expired_flows(app.now()).await.unwrap(), 1);
    assert_refused(client.complete_link(complete).await, Code::NotFound, "FLOW_NOT_FOUND");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirect_uris_must_match_the_allow_list_exactly() {
    let app = TestApp::spawn().await;
    let client = app.client_for("alex@contoso.example").await;
    for near_miss in [
        "http://localhost:8080/profile/link/callback/",
        "http://LOCALHOST:8080/profile/link/callback",
        "http://localhost:8080/profile/link/callback?next=https://evil.example",
        "http://localhost:8081/profile/link/callback",
        "https://evil.example/profile/link/callback",
    ] {
        let mut request = begin_request(ML, "jordan@outlook.example");
        request.redirect_uri = near_miss.into();
        assert_refused(client.begin_link(request).await, Code::InvalidArgument, "REDIRECT_URI_NOT_ALLOWED");
    }
    // Completion with another redirect URI than the flow's is refused too.
    let mut complete = begin_and_sign_in(&client, ML, "jordan@outlook.example").await;
    complete.redirect_uri = Some("https://evil.example/cb".into());
    assert_refused(client.complete_link(complete).await, Code::InvalidArgument, "REDIRECT_URI_MISMATCH");
    assert_nothing_linked(&app, &client).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_flow_has_fresh_state_nonce_and_pkce_s256() {
    let app = TestApp::spawn().await;
    let client = app.client_for("alex@contoso.example").await;
    let mut seen = std::collections::HashSet::new();
    for hint in [None, Some("jordan@outlook.example")] {
        let mut request = begin_request(PU, "x");
        request.login_hint = hint.map(str::to_owned);
        let begun = client.begin_link(request).await.unwrap();
        assert!(begun.state.len() >= 43, "state carries at least 256 bits");
        let url = url::Url::parse(&begun.authorization_url).unwrap();
        let q: std::collections::HashMap<_, _> = url.query_pairs().into_owned().collect();
        assert_eq!(q["code_challenge_method"], "S256");
        assert_eq!(q["response_type"], "code");
        assert_eq!(q["state"], begun.state);
        assert!(q["scope"].split(' ').collect::<std::collections::HashSet<_>>().is_superset(&["openid", "profile", "email"].into()));
        // prompt=select_account, never together with login_hint.
        assert_eq!(q.get("prompt").map(String::as_str), if hint.is_some() { None } else { Some("select_account") });
        for value in [&q["state"], &q["nonce"], &q["code_challenge"]] {
            assert!(seen.insert(value.clone()), "reused {value}");
        }
        remember_secrets([begun.state]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_error_callback_never_reaches_the_token_endpoint() {
    let app = TestApp::spawn().await;
    let client = app.client_for("alex@contoso.example").await;
    let begun = client.begin_link(begin_request(ML, "jordan@outlook.example")).await.unwrap();
    let before = app.idp.token_requests();
    let cancelled = pb::CompleteLinkRequest {
        state: begun.state.clone(),
        error: Some("access_denied".into()),
        error_description: Some("AADSTS65004: User declined to consent".into()),
        ..Default::default()
    };
    assert_refused(client.complete_link(cancelled.clone()).await, Code::FailedPrecondition, "SIGN_IN_CANCELLED");
    assert_refused(client.complete_link(cancelled).await, Code::NotFound, "FLOW_NOT_FOUND");
    assert_eq!(app.idp.token_requests(), before);
    assert_nothing_linked(&app, &client).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callback_naming_another_issuer_is_refused_before_the_code_is_used() {
    let app = TestApp::spawn().await;
    let client = app.client_for("alex@contoso.example").await;
    app.idp.misbehave(Misbehaviour::WrongCallbackIss).await.unwrap();
    let complete = begin_and_sign_in(&client, ML, "jordan@outlook.example").await;
    let before = app.idp.token_requests();
    assert_refused(client.complete_link(complete).await, Code::PermissionDenied, "ISSUER_MISMATCH");
    assert_eq!(app.idp.token_requests(), before);
    assert_nothing_linked(&app, &client).await;
}

/// RFC 9207: the provider's discovery promises `iss` on every authorization response, so a
/// callback without one did not come from it — refused before the code is used.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callback_without_the_promised_issuer_is_refused_before_the_code_is_used() {
    let app = TestApp::spawn().await;
    let client = app.client_for("alex@contoso.example").await;
    app.idp.misbehave(Misbehaviour::NoCallbackIss).await.unwrap();
    let complete = begin_and_sign_in(&client, ML, "jordan@outlook.example").await;
    assert_eq!(complete.iss, None);
    let before = app.idp.token_requests();
    assert_refused(client.complete_link(complete).await, Code::PermissionDenied, "ISSUER_MISMATCH");
    assert_eq!(app.idp.token_requests(), before, "the code was never exchanged");
    assert_nothing_linked(&app, &client).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_or_stale_code_is_rejected_by_the_provider() {
    let app = TestApp::spawn().await;
    let client = app.client_for("alex@contoso.example").await;
    let mut complete = begin_and_sign_in(&client, ML, "jordan@outlook.example").await;
    complete.code = format!("{}x", complete.code);
    assert_refused(client.complete_link(complete).await, Code::FailedPrecondition, "CODE_REJECTED");
    assert_nothing_linked(&app, &client).await;
}

/// ID tokens the provider got wrong, each refused with its reason and nothing stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_id_token_that_fails_any_check_links_nothing() {
    let app = TestApp::spawn().await;
    let client = app.client_for("alex@contoso.example").await;
    let cases = [
        (Misbehaviour::WrongNonce, Code::PermissionDenied, "NONCE_MISMATCH"),
        (Misbehaviour::WrongIssuer, Code::FailedPrecondition, "NOT_A_PERSONAL_ACCOUNT"),
        (Misbehaviour::WrongAudience, Code::PermissionDenied, "ID_TOKEN_INVALID"),
        (Misbehaviour::ExpiredIdToken, Code::PermissionDenied, "ID_TOKEN_INVALID"),
    ];
    for (how, code, reason) in cases {
        app.idp.misbehave(how).await.unwrap();
        let result = link(&client, ML, "jordan@outlook.example").await;
        assert_refused_in(format!("{how:?}"), result, code, reason);
        assert_nothing_linked(&app, &client).await;
    }
    // The same flow with a well-behaved provider links: the refusals were the checks.
    app.idp.misbehave(Misbehaviour::None).await.unwrap();
    link(&client, ML, "jordan@outlook.example").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_work_account_cannot_be_the_personal_account() {
    let app = TestApp::spawn().await;
    let client = app.client_for("alex@contoso.example").await;
    // blair is a Contoso member: the provider lets them sign in, the service must refuse.
    let complete = begin_and_sign_in(&client, ML, "blair@contoso.example").await;
    let message = assert_refused(client.complete_link(complete).await, Code::FailedPrecondition, "NOT_A_PERSONAL_ACCOUNT");
    assert!(message.contains("personal Microsoft account"), "{message}");
    // A guest MSA signs in with tid = the work tenant: not a personal account either.
    let complete = begin_and_sign_in(&client, ML, "river@outlook.example").await;
    assert_refused(client.complete_link(complete).await, Code::FailedPrecondition, "NOT_A_PERSONAL_ACCOUNT");
    assert_nothing_linked(&app, &client).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_authorization_page_lists_accounts_when_no_hint_is_given() {
    let app = TestApp::spawn().await;
    let client = app.client_for("alex@contoso.example").await;
    let mut request = begin_request(ML, "");
    request.login_hint = None;
    let begun = client.begin_link(request).await.unwrap();
    remember_secrets([begun.state.clone()]);
    // Without a hint there is no redirect: a person picks an account on a page.
    assert!(browser::follow_authorization(&begun.authorization_url).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirected_token_request_is_not_followed() {
    let app = TestApp::spawn().await;
    let client = app.client_for("alex@contoso.example").await;
    app.idp.misbehave(Misbehaviour::RedirectTokenRequest).await.unwrap();
    let result = link(&client, ML, "jordan@outlook.example").await;
    assert_refused(result, Code::Unavailable, "IDENTITY_PROVIDER_UNAVAILABLE");
    assert_eq!(app.idp.trap_visits(), 0, "the code and client secret were not resent elsewhere");
    assert_nothing_linked(&app, &client).await;
}
