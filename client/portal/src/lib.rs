//! The reference portal: Partner Center's "Your learning" panel as a backend-for-frontend.
//! The browser holds a session cookie and nothing else; the portal signs its work user in at
//! the work authority (OpenID Connect, code + PKCE), keeps their access token for idlink
//! server-side, and calls idlinkd with it through `idlink-client`. It is a plain web page:
//! forms and redirects, no script, a strict Content-Security-Policy.

#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "tests fail loudly"))]

mod panel;
mod signin;
mod text;

use std::{net::SocketAddr, sync::Arc};

use axum::{
    Router,
    http::{HeaderValue, header},
    routing::{get, post},
};
use secrecy::SecretString;
use tower_sessions::{MemoryStore, SessionManagerLayer, cookie::SameSite};

pub use signin::WorkSignIn;

/// How the portal is set up. `public_url` is where browsers reach it; its callbacks are
/// `{public_url}/signin/callback` (work sign-in) and `{public_url}/profile/link/callback`
/// (the association flows, registered with idlinkd's kinds).
#[derive(Clone, Debug)]
pub struct PortalConfig {
    pub public_url: String,
    /// idlinkd's gRPC endpoint (`https://` for TLS).
    pub idlink_endpoint: String,
    /// A private CA for idlinkd's certificate (PEM); the public web roots otherwise.
    pub idlink_ca_pem: Option<Vec<u8>>,
    /// The work authority, e.g. `https://login.microsoftonline.com/organizations/v2.0`; its
    /// discovery may name a `{tenantid}` issuer (multi-tenant), checked against each token's `tid`.
    pub work_authority: String,
    pub client_id: String,
    pub client_secret: SecretString,
    /// The scope that gets a token for idlink, e.g. `api://idlink/Links.Manage`.
    pub idlink_scope: String,
    /// Where "view training" goes.
    pub training_url: String,
    /// Development only: the work authority may be `http://`, and cookies are not `Secure`.
    pub development: bool,
}

impl PortalConfig {
    pub fn signin_redirect_uri(&self) -> String {
        format!("{}/signin/callback", self.public_url.trim_end_matches('/'))
    }

    pub fn link_redirect_uri(&self) -> String {
        format!("{}/profile/link/callback", self.public_url.trim_end_matches('/'))
    }
}

pub(crate) struct Portal {
    config: PortalConfig,
    signin: WorkSignIn,
    channel: tonic::transport::Channel,
    templates: minijinja::Environment<'static>,
}

/// The portal's routes, ready to serve: it discovers the work authority and connects to
/// idlinkd (lazily) first.
pub async fn router(config: PortalConfig) -> anyhow::Result<Router> {
    let signin = WorkSignIn::discover(&config).await?;
    let tls = idlink_client::ClientTls { ca_pem: config.idlink_ca_pem.clone(), identity: None };
    let channel = idlink_client::IdlinkClient::channel_with(&config.idlink_endpoint, &tls).await?;
    let origin = |u: &str| url::Url::parse(u).map(|u| u.origin().ascii_serialization());
    let mut providers = vec![origin(&config.work_authority)?, origin(signin.authorization_endpoint())?];
    providers.dedup();
    // The Content-Security-Policy of every page: nothing but this origin's stylesheet, forms
    // that post here or go on to the identity providers.
    let csp = format!(
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self' {}; frame-ancestors 'none'; base-uri 'none'",
        providers.join(" ")
    );
    let csp_header = HeaderValue::from_str(&csp)?;
    let portal = Arc::new(Portal { templates: panel::templates()?, config, signin, channel });
    let sessions = sessions(portal.config.development);
    Ok(Router::new()
        .route("/", get(panel::home))
        .route("/profile", get(panel::profile))
        .route("/profile/link", post(panel::begin_link))
        .route("/profile/link/callback", get(panel::link_callback))
        .route("/profile/remove", post(panel::remove_access))
        .route("/signin", get(panel::sign_in))
        .route("/signin/callback", get(panel::sign_in_callback))
        .route("/signout", post(panel::sign_out))
        .route("/static/portal.css", get(panel::stylesheet))
        .with_state(portal)
        .layer(sessions)
        .layer(axum::middleware::map_response(move |mut response: axum::response::Response| {
            let csp = csp_header.clone();
            async move {
                let headers = response.headers_mut();
                headers.insert(header::CONTENT_SECURITY_POLICY, csp);
                headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
                headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
                headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
                response
            }
        })))
}

/// Server-side sessions; the cookie holds only the session's id: `HttpOnly`, `SameSite=Lax`,
/// and `Secure` unless in development (plain http on loopback).
fn sessions(development: bool) -> SessionManagerLayer<MemoryStore> {
    SessionManagerLayer::new(MemoryStore::default())
        .with_name("idlink_portal")
        .with_http_only(true)
        .with_same_site(SameSite::Lax)
        .with_secure(!development)
}

/// Serves the portal on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    config: PortalConfig,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let app = router(config).await?;
    axum::serve(listener, app).with_graceful_shutdown(shutdown).await?;
    Ok(())
}

/// The portal under `idlinkd --dev`: idlinkd on 127.0.0.1:50051, its development provider on
/// 127.0.0.1:50052 (the portal's client and secret are registered there), the portal at
/// <http://localhost:8080>, which is the development redirect URI's origin.
pub fn dev_config(idlink_endpoint: &str, idp_base: &str, public_url: &str) -> PortalConfig {
    PortalConfig {
        public_url: public_url.to_owned(),
        idlink_endpoint: idlink_endpoint.to_owned(),
        idlink_ca_pem: None,
        work_authority: format!("{}/organizations/v2.0", idp_base.trim_end_matches('/')),
        client_id: "idlink-portal".to_owned(),
        client_secret: SecretString::from("idlink-portal-development-secret"),
        idlink_scope: "api://idlink/Links.Manage".to_owned(),
        training_url: "https://partner.microsoft.com/training".to_owned(),
        development: true,
    }
}

/// Where `--dev` listens.
pub const DEV_LISTEN: &str = "127.0.0.1:8080";

pub fn dev_listen() -> SocketAddr {
    DEV_LISTEN.parse().unwrap_or(SocketAddr::from(([127, 0, 0, 1], 8080)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The cookie a browser gets: HttpOnly and SameSite=Lax always, Secure outside development.
    #[tokio::test]
    async fn the_session_cookie_is_secure_outside_development() {
        for (development, secure) in [(false, true), (true, false)] {
            let app = Router::new()
                .route(
                    "/",
                    get(|session: tower_sessions::Session| async move {
                        session.insert("k", 1).await.unwrap();
                    }),
                )
                .layer(sessions(development));
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            tokio::spawn(async move { axum::serve(listener, app).await });
            let response = reqwest::get(format!("http://{addr}/")).await.unwrap();
            let cookie = response.headers()["set-cookie"].to_str().unwrap().to_owned();
            assert!(cookie.starts_with("idlink_portal=") && cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"), "{cookie}");
            assert_eq!(cookie.contains("Secure"), secure, "development {development}: {cookie}");
        }
    }
}
