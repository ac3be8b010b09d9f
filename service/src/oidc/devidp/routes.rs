//! The development provider's HTTP endpoints, laid out like Microsoft's:
//! `/{tenant}/v2.0/.well-known/openid-configuration`, `/{tenant}/discovery/v2.0/keys`,
//! `/{tenant}/oauth2/v2.0/authorize`, `/{tenant}/oauth2/v2.0/token`, plus `/dev/token`
//! which hands out access tokens for calling idlink and `/dev/users` which adds accounts.

use std::{collections::HashMap, sync::Arc, sync::atomic::Ordering};

use axum::{
    Form, Json, Router,
    extract::{Path, Query, State},
    http::{HeaderMap, StatusCode, header},
    response::{Html, IntoResponse, Redirect, Response},
    routing::get,
};
use base64::{Engine, engine::general_purpose::STANDARD, engine::general_purpose::URL_SAFE_NO_PAD};
use serde_json::json;
use sha2::{Digest, Sha256};

use super::{AccountType, DEV_AUDIENCE, DevUser, Grant, Inner, Misbehaviour, ORGANIZATIONS, lock};
use crate::domain::{CONSUMER_TENANT, TenantId};

type Shared = State<Arc<Inner>>;

pub fn router(inner: Arc<Inner>) -> Router {
    Router::new()
        .route("/{tenant}/v2.0/.well-known/openid-configuration", get(discovery))
        .route("/{tenant}/discovery/v2.0/keys", get(jwks))
        .route("/{tenant}/oauth2/v2.0/authorize", get(authorize))
        .route("/{tenant}/oauth2/v2.0/token", axum::routing::post(token))
        .route("/dev/token", get(dev_token))
        .route("/dev/users", axum::routing::post(dev_add_user))
        .route("/dev/trap", get(trap).post(trap))
        .layer(axum::middleware::from_fn_with_state(inner.clone(), outage))
        .with_state(inner)
}

/// While the provider is "down", everything answers 503.
async fn outage(State(idp): Shared, request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    if request.uri().path().ends_with("/.well-known/openid-configuration") {
        idp.discovery_requests.fetch_add(1, Ordering::SeqCst);
    }
    if idp.down.load(Ordering::SeqCst) {
        return (StatusCode::SERVICE_UNAVAILABLE, "down for a test").into_response();
    }
    next.run(request).await
}

fn not_found() -> Response {
    (StatusCode::NOT_FOUND, "unknown tenant").into_response()
}

async fn discovery(State(idp): Shared, Path(tenant): Path<String>) -> Response {
    if !idp.known_tenant(&tenant) {
        return not_found();
    }
    let base = &idp.base;
    // Like Entra's: the multi-tenant work authority names a template, not one issuer.
    let issuer = if tenant == ORGANIZATIONS { idp.issuer("{tenantid}") } else { idp.issuer(&tenant) };
    Json(json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{base}/{tenant}/oauth2/v2.0/authorize"),
        "token_endpoint": format!("{base}/{tenant}/oauth2/v2.0/token"),
        "jwks_uri": format!("{base}/{tenant}/discovery/v2.0/keys"),
        "response_types_supported": ["code"],
        "subject_types_supported": ["pairwise"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "scopes_supported": ["openid", "profile", "email"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "code_challenge_methods_supported": ["S256"],
        "claims_supported": ["sub", "iss", "aud", "exp", "iat", "nbf", "nonce", "tid", "oid", "email", "name", "preferred_username"],
        "authorization_response_iss_parameter_supported": true,
    }))
    .into_response()
}

async fn jwks(State(idp): Shared, Path(tenant): Path<String>) -> Response {
    if !idp.known_tenant(&tenant) {
        return not_found();
    }
    idp.jwks_fetches.fetch_add(1, Ordering::SeqCst);
    let keys = lock(&idp.keys).published.clone();
    Json(json!({ "keys": keys })).into_response()
}

fn redirect_with(redirect_uri: &str, params: &[(&str, &str)]) -> Response {
    match url::Url::parse(redirect_uri) {
        Ok(mut url) => {
            url.query_pairs_mut().extend_pairs(params);
            Redirect::to(url.as_str()).into_response()
        }
        Err(_) => (StatusCode::BAD_REQUEST, "bad redirect_uri").into_response(),
    }
}

async fn authorize(State(idp): Shared, Path(tenant): Path<String>, Query(q): Query<HashMap<String, String>>) -> Response {
    if !idp.known_tenant(&tenant) {
        return not_found();
    }
    let get = |k: &str| q.get(k).map(String::as_str).unwrap_or_default();
    let (client_id, redirect_uri, state) = (get("client_id"), get("redirect_uri"), get("state"));
    // Never redirect to an unregistered URI: that is how codes get stolen.
    let Some(client) = idp.clients.iter().find(|c| c.client_id == client_id) else {
        return (StatusCode::BAD_REQUEST, "unknown client_id").into_response();
    };
    if !client.redirect_uris.iter().any(|r| r == redirect_uri) {
        return (StatusCode::BAD_REQUEST, "redirect_uri is not registered for this client").into_response();
    }
    let invalid = |why: &str| redirect_with(redirect_uri, &[("error", "invalid_request"), ("error_description", why), ("state", state)]);
    if get("response_type") != "code" {
        return invalid("response_type must be code");
    }
    if !get("scope").split(' ').any(|s| s == "openid") {
        return invalid("scope must include openid");
    }
    if get("code_challenge_method") != "S256" || get("code_challenge").len() < 43 {
        return invalid("PKCE with S256 is required");
    }
    if state.is_empty() || get("nonce").is_empty() {
        return invalid("state and nonce are required");
    }
    if q.contains_key("login_hint") && get("prompt") == "select_account" {
        return invalid("prompt=select_account cannot be combined with login_hint");
    }
    let organizations = tenant == ORGANIZATIONS;
    let Some(user) = idp.find_user(get("login_hint")).filter(|u| !organizations || u.account_type != AccountType::Personal) else {
        return account_picker(&idp, &q, organizations);
    };
    idp.remember_secret(get("nonce"));
    let code = URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>());
    idp.remember_secret(&code);
    // At the multi-tenant authority, the issuer is the account's own tenant's.
    let issuer = if organizations { idp.issuer(user.key.tenant.as_str()) } else { idp.issuer(&tenant) };
    lock(&idp.codes).insert(
        code.clone(),
        Grant {
            client_id: client_id.to_owned(),
            redirect_uri: redirect_uri.to_owned(),
            code_challenge: get("code_challenge").to_owned(),
            nonce: get("nonce").to_owned(),
            user,
            issuer: issuer.clone(),
            issued_at: idp.clock.now().timestamp(),
            scope: get("scope").to_owned(),
        },
    );
    match *lock(&idp.misbehaviour) {
        Misbehaviour::NoCallbackIss => redirect_with(redirect_uri, &[("code", &code), ("state", state)]),
        Misbehaviour::WrongCallbackIss => {
            redirect_with(redirect_uri, &[("code", &code), ("state", state), ("iss", &idp.issuer("attacker"))])
        }
        _ => redirect_with(redirect_uri, &[("code", &code), ("state", state), ("iss", &issuer)]),
    }
}

/// Without a known `login_hint`: a small page to pick a fixture account (browser use). The
/// multi-tenant work authority offers work accounts only, as Entra's does.
fn account_picker(idp: &Inner, q: &HashMap<String, String>, organizations: bool) -> Response {
    let mut items = String::new();
    for user in lock(&idp.users).iter().filter(|u| !organizations || u.account_type != AccountType::Personal) {
        let mut params: Vec<(&str, &str)> =
            q.iter().filter(|(k, _)| *k != "prompt" && *k != "login_hint").map(|(k, v)| (k.as_str(), v.as_str())).collect();
        params.push(("login_hint", &user.login));
        let query = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(params).finish();
        let login = html_escape(&user.login);
        items.push_str(&format!("<li><a href=\"?{}\">{login}</a> ({:?})</li>", html_escape(&query), user.account_type));
    }
    // Cancelling answers the client as Microsoft's does: `access_denied`, with the state.
    let get = |k: &str| q.get(k).map(String::as_str).unwrap_or_default();
    let cancel = url::Url::parse(get("redirect_uri"))
        .map(|mut url| {
            url.query_pairs_mut().extend_pairs([
                ("error", "access_denied"),
                ("error_description", "the user cancelled the sign-in"),
                ("state", get("state")),
            ]);
            url.to_string()
        })
        .unwrap_or_default();
    Html(format!(
        "<!doctype html><html lang=\"en\"><title>Development sign-in</title><h1>Pick an account</h1>\
         <p>This is idlink's development identity provider. Choose who signs in:</p><ul>{items}</ul>\
         <p><a href=\"{}\">Cancel</a></p>",
        html_escape(&cancel)
    ))
    .into_response()
}

fn html_escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

fn token_error(status: StatusCode, error: &str, description: &str) -> Response {
    (status, Json(json!({ "error": error, "error_description": description }))).into_response()
}

/// `client_secret_basic` (form-urlencoded id and secret, RFC 6749 §2.3.1) or `client_secret_post`.
fn client_credentials(headers: &HeaderMap, form: &HashMap<String, String>) -> Option<(String, String)> {
    if let Some(basic) = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Basic ")) {
        let decoded = String::from_utf8(STANDARD.decode(basic.trim()).ok()?).ok()?;
        let (id, secret) = decoded.split_once(':')?;
        let unescape = |s: &str| url::form_urlencoded::parse(format!("v={s}").as_bytes()).next().map(|(_, v)| v.into_owned());
        return Some((unescape(id)?, unescape(secret)?));
    }
    Some((form.get("client_id")?.clone(), form.get("client_secret")?.clone()))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn token(State(idp): Shared, Path(tenant): Path<String>, headers: HeaderMap, Form(form): Form<HashMap<String, String>>) -> Response {
    idp.token_requests.fetch_add(1, Ordering::SeqCst);
    if !idp.known_tenant(&tenant) {
        return not_found();
    }
    let how = *lock(&idp.misbehaviour);
    if how == Misbehaviour::SlowTokenResponse {
        tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    }
    if how == Misbehaviour::RedirectTokenRequest {
        return (StatusCode::TEMPORARY_REDIRECT, [(header::LOCATION, format!("{}/dev/trap", idp.base))]).into_response();
    }
    if form.get("grant_type").map(String::as_str) == Some("client_credentials") {
        return client_credentials_grant(&idp, &headers, &form);
    }
    let Some((client_id, secret)) = client_credentials(&headers, &form) else {
        return token_error(StatusCode::UNAUTHORIZED, "invalid_client", "client authentication required");
    };
    let client = idp.clients.iter().find(|c| c.client_id == client_id);
    if !client.is_some_and(|c| constant_time_eq(c.client_secret.as_bytes(), secret.as_bytes())) {
        return token_error(StatusCode::UNAUTHORIZED, "invalid_client", "client authentication failed");
    }
    if form.get("grant_type").map(String::as_str) != Some("authorization_code") {
        return token_error(StatusCode::BAD_REQUEST, "unsupported_grant_type", "only authorization_code");
    }
    let verifier = form.get("code_verifier").cloned().unwrap_or_default();
    idp.remember_secret(&verifier);
    // Single use: the code is gone whatever happens next.
    let Some(grant) = form.get("code").and_then(|c| lock(&idp.codes).remove(c)) else {
        return token_error(StatusCode::BAD_REQUEST, "invalid_grant", "unknown or used code");
    };
    let now = idp.clock.now().timestamp();
    if now - grant.issued_at > 300 || grant.client_id != client_id || form.get("redirect_uri") != Some(&grant.redirect_uri) {
        return token_error(StatusCode::BAD_REQUEST, "invalid_grant", "code expired or issued to another client or redirect");
    }
    if URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes())) != grant.code_challenge {
        return token_error(StatusCode::BAD_REQUEST, "invalid_grant", "PKCE verification failed");
    }
    let id_token = id_token(&idp, &grant, now);
    let idlink_scope = format!("{DEV_AUDIENCE}/Links.Manage");
    let access_token = if grant.scope.split(' ').any(|s| s == idlink_scope) {
        idp.access_token_for(&grant.user, "Links.Manage", &grant.client_id)
    } else {
        URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>())
    };
    idp.remember_secret(&id_token);
    idp.remember_secret(&access_token);
    Json(json!({
        "token_type": "Bearer", "scope": "openid profile email", "expires_in": 3600,
        "access_token": access_token, "id_token": id_token,
    }))
    .into_response()
}

/// Service tokens. The development apps authenticate with their client id and the secret
/// `dev-secret-<client id>` (development only; printed nowhere else).
fn client_credentials_grant(idp: &Inner, headers: &HeaderMap, form: &HashMap<String, String>) -> Response {
    let Some((client_id, secret)) = client_credentials(headers, form) else {
        return token_error(StatusCode::UNAUTHORIZED, "invalid_client", "client authentication required");
    };
    let Some(app) = idp.apps.iter().find(|a| a.client_id == client_id) else {
        return token_error(StatusCode::UNAUTHORIZED, "invalid_client", "unknown client");
    };
    if !constant_time_eq(secret.as_bytes(), format!("dev-secret-{client_id}").as_bytes()) {
        return token_error(StatusCode::UNAUTHORIZED, "invalid_client", "client authentication failed");
    }
    let expires_in = idp.app_token_seconds.load(Ordering::SeqCst);
    Json(json!({ "token_type": "Bearer", "expires_in": expires_in, "access_token": idp.app_token(app) })).into_response()
}

fn id_token(idp: &Inner, grant: &Grant, now: i64) -> String {
    let how = *lock(&idp.misbehaviour);
    let user = &grant.user;
    let tenant = user.key.tenant.as_str();
    // Pairwise subject: differs per client, like Microsoft's.
    let sub = URL_SAFE_NO_PAD.encode(Sha256::digest(format!("{}|{tenant}|{}", grant.client_id, user.key.object.as_str())));
    let mut claims = json!({
        "iss": if how == Misbehaviour::WrongIssuer { idp.issuer("attacker") } else { grant.issuer.clone() },
        "aud": if how == Misbehaviour::WrongAudience { "someone-else".to_owned() } else { grant.client_id.clone() },
        "sub": sub, "tid": tenant, "oid": user.key.object.as_str(),
        "nonce": if how == Misbehaviour::WrongNonce { "not-the-flow-nonce".to_owned() } else { grant.nonce.clone() },
        "iat": now, "nbf": now,
        "exp": if how == Misbehaviour::ExpiredIdToken { now - 600 } else { now + 3600 },
        "email": user.login, "preferred_username": user.login, "name": user.name, "ver": "2.0",
    });
    if user.account_type == super::AccountType::GuestMsa {
        claims["idp"] = json!("live.com");
    }
    let keys = lock(&idp.keys);
    match (&keys.foreign, how) {
        (Some(foreign), Misbehaviour::ForeignKey) => foreign.sign(&claims),
        _ => keys.active.sign(&claims),
    }
}

async fn trap(State(idp): Shared) -> Response {
    idp.trap_visits.fetch_add(1, Ordering::SeqCst);
    token_error(StatusCode::BAD_REQUEST, "invalid_request", "trapped")
}

/// Development only: an access token for calling idlink as a fixture user.
/// Adds an account, for load tests and demos that need more than the fixtures: `login`, and
/// `tenant` (a work tenant's id) for a work account; a personal account without it. An
/// existing login is answered as it is (409 when `tenant` names another tenant). Answers
/// the account's tenant and object ids.
async fn dev_add_user(State(idp): Shared, Query(q): Query<HashMap<String, String>>) -> Response {
    let login = q.get("login").map(String::as_str).unwrap_or_default();
    if !login.contains('@') {
        return (StatusCode::BAD_REQUEST, "login=name@domain is required").into_response();
    }
    let tenant = q.get("tenant").map(String::as_str);
    let key = match (idp.find_user(login), tenant) {
        (Some(user), Some(tenant)) if user.key.tenant.as_str() != tenant => {
            return (StatusCode::CONFLICT, "that login belongs to another tenant").into_response();
        }
        (Some(user), _) => user.key,
        (None, Some(tenant)) if TenantId::parse(tenant).is_err() || tenant == CONSUMER_TENANT => {
            return (StatusCode::BAD_REQUEST, "tenant must be a work tenant's id").into_response();
        }
        (None, Some(tenant)) => idp.add_user(DevUser::new(tenant, login, AccountType::Work)),
        (None, None) => idp.add_user(DevUser::new(CONSUMER_TENANT, login, AccountType::Personal)),
    };
    Json(json!({ "tenant_id": key.tenant.as_str(), "object_id": key.object.as_str() })).into_response()
}

async fn dev_token(State(idp): Shared, Query(q): Query<HashMap<String, String>>) -> Response {
    if let Some(client_id) = q.get("app") {
        return match idp.apps.iter().find(|a| &a.client_id == client_id) {
            Some(app) => Json(json!({ "access_token": idp.app_token(app), "token_type": "Bearer", "expires_in": 3600 })).into_response(),
            None => (StatusCode::NOT_FOUND, "no such fixture app").into_response(),
        };
    }
    let login = q.get("user").map(String::as_str).unwrap_or_default();
    match idp.find_user(login) {
        Some(user) => {
            let scope = q.get("scope").map(String::as_str).unwrap_or("Links.Manage");
            Json(json!({ "access_token": idp.access_token(&user, scope), "token_type": "Bearer", "expires_in": 3600 })).into_response()
        }
        None => (StatusCode::NOT_FOUND, "no such fixture user").into_response(),
    }
}
