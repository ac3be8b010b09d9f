//! Every RPC but health and reflection needs a valid work-user access token; forged,
//! misdirected and lookalike tokens are refused with `UNAUTHENTICATED` and no detail.

use futures_util::StreamExt;
use idlink_client::{IdlinkClient, pb};
use idlink_service::oidc::devidp::{AccountType, CONTOSO_TENANT};
use idlink_tests::*;
use serde_json::{Value, json};
use tonic::Code;

async fn refused_with(app: &TestApp, token: Option<String>, code: Code, reason: &str, case: &str) {
    assert_every_rpc_refused(&app.client_with_token(token).await, code, reason, case).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_reflection_need_no_token_and_say_serving() {
    let app = TestApp::spawn().await;
    let channel = tonic::transport::Endpoint::from_shared(app.endpoint()).unwrap().connect().await.unwrap();
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
    let status =
        health.check(tonic_health::pb::HealthCheckRequest { service: "idlink.v1.LinkService".into() }).await.unwrap().into_inner().status;
    assert_eq!(status, tonic_health::pb::health_check_response::ServingStatus::Serving as i32);

    use tonic_reflection::pb::v1::{
        ServerReflectionRequest, server_reflection_client::ServerReflectionClient, server_reflection_request::MessageRequest,
        server_reflection_response::MessageResponse,
    };
    let mut reflection = ServerReflectionClient::new(channel.clone());
    let request = ServerReflectionRequest { host: String::new(), message_request: Some(MessageRequest::ListServices(String::new())) };
    let mut stream = reflection.server_reflection_info(tokio_stream_once(request)).await.unwrap().into_inner();
    let Some(Ok(response)) = stream.next().await else { panic!("no reflection answer") };
    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else { panic!("unexpected answer") };
    let names: Vec<_> = list.service.into_iter().map(|s| s.name).collect();
    assert!(names.contains(&"idlink.v1.LinkService".to_owned()), "{names:?}");

    // The older protocol too, for the tools that ask only v1alpha.
    use tonic_reflection::pb::v1alpha as alpha;
    let mut old = alpha::server_reflection_client::ServerReflectionClient::new(channel);
    let request = alpha::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(alpha::server_reflection_request::MessageRequest::ListServices(String::new())),
    };
    let mut stream = old.server_reflection_info(tokio_stream_once(request)).await.unwrap().into_inner();
    let Some(Ok(response)) = stream.next().await else { panic!("no v1alpha reflection answer") };
    let Some(alpha::server_reflection_response::MessageResponse::ListServicesResponse(list)) = response.message_response else {
        panic!("unexpected v1alpha answer")
    };
    let names: Vec<_> = list.service.into_iter().map(|s| s.name).collect();
    assert!(names.contains(&"idlink.v1.CreditService".to_owned()), "{names:?}");
}

/// Every answer carries the call's `x-request-id`: the caller's when it sent a sane one, else
/// one of ours — refusals included, so a caller can quote it to the operators.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_answer_echoes_its_request_id() {
    use idlink_client::pb::link_service_client::LinkServiceClient;
    let app = TestApp::spawn().await;
    let channel = tonic::transport::Endpoint::from_shared(app.endpoint()).unwrap().connect().await.unwrap();
    let mut links = LinkServiceClient::new(channel);
    let call = |request_id: Option<&str>, token: Option<String>| {
        let mut request = tonic::Request::new(pb::GetLinksRequest::default());
        if let Some(id) = request_id {
            request.metadata_mut().insert("x-request-id", id.parse().unwrap());
        }
        if let Some(token) = token {
            request.metadata_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
        }
        request
    };
    let echoed = |metadata: &tonic::metadata::MetadataMap| metadata.get("x-request-id").map(|v| v.to_str().unwrap().to_owned());
    let token = || Some(app.idp.access_token("alex@contoso.example").unwrap());
    let answer = links.get_links(call(Some("portal-7f3a"), token())).await.unwrap();
    assert_eq!(echoed(answer.metadata()).as_deref(), Some("portal-7f3a"));
    let refused = links.get_links(call(Some("portal-7f3b"), None)).await.unwrap_err();
    assert_eq!(echoed(refused.metadata()).as_deref(), Some("portal-7f3b"), "refusals too");
    let ours = echoed(links.get_links(call(None, token())).await.unwrap().metadata()).expect("one of ours when none was sent");
    let insane = "x".repeat(200);
    let replaced = echoed(links.get_links(call(Some(&insane), token())).await.unwrap().metadata()).unwrap();
    assert!(ours.len() >= 16 && replaced != insane && replaced != ours, "{ours} {replaced}");
}

fn tokio_stream_once<T: Send + 'static>(item: T) -> impl futures_util::Stream<Item = T> + Send + 'static {
    futures_util::stream::iter([item])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_token_is_unauthenticated_on_every_rpc() {
    let app = TestApp::spawn().await;
    refused_with(&app, None, Code::Unauthenticated, "MISSING_TOKEN", "no token").await;
    refused_with(&app, Some("not-a-jwt".into()), Code::Unauthenticated, "INVALID_TOKEN", "garbage").await;
}

fn b64(v: &Value) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_and_misdirected_access_tokens_are_refused() {
    let app = TestApp::spawn().await;
    let other_idp = TestApp::spawn().await; // a second provider: a key idlink never trusted
    let kid = app.idp.active_kid();
    let rs256 = json!({"alg": "RS256", "typ": "JWT", "kid": kid});
    let good = app.idp.access_token_claims("alex@contoso.example").unwrap();
    let with = |patch: Value| {
        let mut claims = good.clone();
        for (k, v) in patch.as_object().unwrap() {
            if v.is_null() {
                claims.as_object_mut().unwrap().remove(k);
            } else {
                claims[k] = v.clone();
            }
        }
        app.idp.sign_raw(&rs256, &claims)
    };
    let now = app.now().timestamp();
    let valid = app.idp.sign_raw(&rs256, &good);
    let mut parts: Vec<String> = valid.split('.').map(str::to_owned).collect();
    let tampered = {
        let mut c = good.clone();
        c["oid"] = json!(app.idp.user("blair@contoso.example").unwrap().key.object.as_str());
        format!("{}.{}.{}", parts[0], b64(&c), parts[2])
    };
    parts[2] = String::new();
    let unsigned_with_kid = parts.join(".");
    let consumer = app.idp.user("jordan@outlook.example").unwrap().key;
    let cases: Vec<(&str, String)> = vec![
        ("alg none", format!("{}.{}.", b64(&json!({"alg": "none", "typ": "JWT"})), b64(&good))),
        ("HS256 header (algorithm confusion)", app.idp.sign_raw(&json!({"alg": "HS256", "typ": "JWT", "kid": kid}), &good)),
        ("jku header", app.idp.sign_raw(&json!({"alg": "RS256", "kid": kid, "jku": "https://evil.example/keys"}), &good)),
        ("embedded jwk", app.idp.sign_raw(&json!({"alg": "RS256", "kid": kid, "jwk": {"kty": "RSA", "n": "AQAB", "e": "AQAB"}}), &good)),
        ("x5u header", app.idp.sign_raw(&json!({"alg": "RS256", "kid": kid, "x5u": "https://evil.example/cert"}), &good)),
        ("empty signature", unsigned_with_kid),
        ("tampered payload", tampered),
        ("signed by an unknown key", other_idp.idp.sign_raw(&json!({"alg": "RS256", "kid": other_idp.idp.active_kid()}), &good)),
        ("signed by another key under our kid", other_idp.idp.sign_raw(&rs256, &good)),
        ("expired", with(json!({"exp": now - 600, "iat": now - 4000, "nbf": now - 4000}))),
        ("not yet valid", with(json!({"nbf": now + 3600}))),
        ("wrong audience", with(json!({"aud": "api://someone-else"}))),
        ("audience list with a stranger", with(json!({"aud": ["api://idlink", "api://someone-else"]}))),
        ("wrong issuer", with(json!({"iss": "https://login.microsoftonline.com/3b1d6a6e-5a3c-4f0a-9c7e-2f6b8e1d4c01/v2.0"}))),
        (
            "tenant not allowed",
            with(json!({"tid": "0b0b0b0b-0000-4000-8000-000000000000", "iss": app.idp.authority("0b0b0b0b-0000-4000-8000-000000000000")})),
        ),
        (
            "consumer-tenant token",
            with(json!({"tid": consumer.tenant.as_str(), "oid": consumer.object.as_str(), "iss": app.idp.consumer_authority()})),
        ),
        ("v1.0 token", with(json!({"ver": "1.0"}))),
        ("an ID token as bearer", with(json!({"aud": "idlink-microsoft-learning", "nonce": "n", "scp": null}))),
        ("an ID token with our audience", with(json!({"nonce": "n"}))),
        ("unknown kid", app.idp.sign_raw(&json!({"alg": "RS256", "kid": "not-a-key-we-published"}), &good)),
        ("kid path traversal", app.idp.sign_raw(&json!({"alg": "RS256", "kid": "../../../../dev/null"}), &good)),
        ("kid SQL-ish injection", app.idp.sign_raw(&json!({"alg": "RS256", "kid": "x' OR '1'='1"}), &good)),
        ("no kid", app.idp.sign_raw(&json!({"alg": "RS256", "typ": "JWT"}), &good)),
        ("RS512 instead of the pinned RS256", app.idp.sign_raw(&json!({"alg": "RS512", "kid": kid}), &good)),
        ("critical header extension", app.idp.sign_raw(&json!({"alg": "RS256", "kid": kid, "crit": ["exp"]}), &good)),
        ("issuer of one allowed tenant, tid of another", with(json!({"tid": idlink_service::oidc::devidp::FABRIKAM_TENANT}))),
        ("genuinely signed for a tenant not allowed", {
            app.idp.add_user("0b0b0b0b-0000-4000-8000-000000000000", "eve@elsewhere.example", AccountType::Work);
            app.idp.access_token("eve@elsewhere.example").unwrap()
        }),
        ("missing exp", with(json!({"exp": null}))),
        ("garbage base64", "!!!.@@@.###".to_owned()),
        ("a trailing second signature", {
            let t = app.idp.sign_raw(&rs256, &good);
            let sig = t.rsplit('.').next().unwrap().to_owned();
            format!("{t}.{sig}")
        }),
        ("two parts only", valid.rsplit_once('.').unwrap().0.to_owned()),
    ];
    assert!(cases.len() >= 25, "the attack suite has {} cases", cases.len());
    println!("forged and misdirected tokens: {} cases x {} RPCs, none accepted", cases.len(), rpc_names().len());
    for (case, token) in cases {
        refused_with(&app, Some(token), Code::Unauthenticated, "INVALID_TOKEN", case).await;
    }
    assert_eq!(app.integrity().await.active_links, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn valid_tokens_of_callers_who_cannot_own_links_are_denied() {
    let app = TestApp::spawn().await;
    // A guest MSA in the work tenant: "personal email IDs aren't supported".
    let guest = app.idp.access_token("river@outlook.example").unwrap();
    refused_with(&app, Some(guest), Code::PermissionDenied, "PERSONAL_ACCOUNT_CANNOT_OWN_LINKS", "guest MSA").await;
    let rs256 = json!({"alg": "RS256", "typ": "JWT", "kid": app.idp.active_kid()});
    let mut claims = app.idp.access_token_claims("alex@contoso.example").unwrap();
    claims["idp"] = json!("https://sts.windows.net/9188040d-6c67-4c5b-b112-36a304b66dad/");
    refused_with(
        &app,
        Some(app.idp.sign_raw(&rs256, &claims)),
        Code::PermissionDenied,
        "PERSONAL_ACCOUNT_CANNOT_OWN_LINKS",
        "guest by idp",
    )
    .await;

    // Every other kind of guest (invariant 11): another work tenant's user (B2B), a Google
    // guest, an email one-time-passcode guest, and a token that only says `acct` = 1.
    let guests = [
        ("B2B guest of another work tenant", json!({"idp": "https://sts.windows.net/8e2f4b7a-1c9d-4e3f-a5b6-7c8d9e0f1a02/"})),
        ("Google guest", json!({"idp": "google.com"})),
        ("one-time-passcode guest", json!({"idp": "mail"})),
        ("acct = 1", json!({"acct": 1})),
    ];
    for (case, patch) in guests {
        let mut claims = app.idp.access_token_claims("alex@contoso.example").unwrap();
        for (k, v) in patch.as_object().unwrap() {
            claims[k] = v.clone();
        }
        let request_id = format!("guest-{}", rand::random::<u32>());
        app.next_refusal_window();
        let client = app.client_with_request_id(Some(app.idp.sign_raw(&rs256, &claims)), Some(&request_id)).await;
        assert_every_rpc_refused(&client, Code::PermissionDenied, "GUEST_CANNOT_OWN_LINKS", case).await;
        assert_audited(&request_id, "GUEST_CANNOT_OWN_LINKS");
    }
    // A member whose `idp` names their own tenant is a member.
    let mut claims = app.idp.access_token_claims("alex@contoso.example").unwrap();
    claims["idp"] = json!(format!("https://sts.windows.net/{}/", claims["tid"].as_str().unwrap()));
    claims["acct"] = json!(0);
    app.client_with_token(Some(app.idp.sign_raw(&rs256, &claims))).await.get_links().await.unwrap();

    // A delegated token issued to a client other than the portal (auth.user_clients): an app
    // that phished the user's consent.
    let mut claims = app.idp.access_token_claims("alex@contoso.example").unwrap();
    claims["azp"] = json!("f00dfeed-0000-4000-8000-00000000beef");
    let request_id = format!("phished-{}", rand::random::<u32>());
    app.next_refusal_window();
    let client = app.client_with_request_id(Some(app.idp.sign_raw(&rs256, &claims)), Some(&request_id)).await;
    assert_every_rpc_refused(&client, Code::PermissionDenied, "CLIENT_NOT_ALLOWED", "unlisted client").await;
    assert_audited(&request_id, "CLIENT_NOT_ALLOWED");

    let mut claims = app.idp.access_token_claims("alex@contoso.example").unwrap();
    claims["scp"] = json!("User.Read");
    refused_with(&app, Some(app.idp.sign_raw(&rs256, &claims)), Code::PermissionDenied, "INSUFFICIENT_SCOPE", "no Links.Manage").await;

    // App tokens on user RPCs: see who_may_do_what.
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_cannot_see_or_remove_another_users_links() {
    let app = TestApp::spawn().await;
    let alex = app.client_for("alex@contoso.example").await;
    let blair_key = app.idp.add_user(CONTOSO_TENANT, "blair@contoso.example", AccountType::Work);
    let blair = app.client_for("blair@contoso.example").await;
    link(&blair, ML, "sam@outlook.example").await.unwrap();
    let blair_ref = pb::AccountRef { tenant_id: blair_key.tenant.as_str().into(), object_id: blair_key.object.as_str().into() };
    assert_refused(alex.get_links_of(blair_ref.clone()).await, Code::PermissionDenied, "NOT_PERMITTED");
    let removal =
        alex.remove_link(pb::RemoveLinkRequest { kind: ML as i32, user: Some(blair_ref), reason: "x".into(), ..Default::default() }).await;
    assert_refused(removal, Code::PermissionDenied, "NOT_PERMITTED");
    assert_eq!(blair.get_links().await.unwrap().len(), 1, "blair's link is untouched");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cached_token_is_still_refused_once_it_expires() {
    let app = TestApp::spawn().await;
    let alex = app.client_for("alex@contoso.example").await;
    for _ in 0..3 {
        alex.get_links().await.unwrap(); // validated once, then served from the cache
    }
    // The token lives an hour; past that (and the leeway) the cache must not keep it alive.
    app.clock.advance(chrono::Duration::minutes(63));
    assert_refused(alex.get_links().await, Code::Unauthenticated, "INVALID_TOKEN");
}

/// Under concurrent load, with the validated-token cache warm and eight users' calls
/// interleaved on the same two HTTP/2 connections, every answer is its own caller's: 64
/// tasks, 8 users, each GetLinks checked against the user who asked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_callers_on_shared_connections_each_see_only_their_own_links() {
    let app = TestApp::spawn().await;
    let channels = [IdlinkClient::channel(&app.endpoint()).await.unwrap(), IdlinkClient::channel(&app.endpoint()).await.unwrap()];
    let mut users = Vec::new();
    for n in 0..8 {
        let (work, client) = app.new_work_user(&format!("concurrent-{n}@contoso.example")).await;
        let personal = format!("concurrent-{n}@outlook.example");
        let personal_key = app.new_personal(&personal);
        link(&client, ML, &personal).await.unwrap();
        users.push((format!("concurrent-{n}@contoso.example"), work, personal_key));
    }
    let mut tasks = Vec::new();
    for t in 0..64 {
        let (login, work, personal) = users[t % 8].clone();
        let options = app.client_options().token(app.idp.access_token(&login).unwrap());
        let client = IdlinkClient::with_channel(channels[t % 2].clone(), options).unwrap();
        tasks.push(tokio::spawn(async move {
            for _ in 0..25 {
                let links = client.get_links().await.unwrap();
                assert_eq!(links.len(), 1, "{login}: {links:?}");
                let (w, p) = (links[0].work_user.as_ref().unwrap(), links[0].personal_account.as_ref().unwrap());
                assert_eq!(
                    (w.object_id.as_str(), p.object_id.as_str()),
                    (work.object.as_str(), personal.object.as_str()),
                    "{login} got another's link"
                );
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
}
