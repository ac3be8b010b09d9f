//! The portal's own sign-in: its work user at the work authority, OpenID Connect code flow with
//! PKCE, asking for idlink's scope so the token response carries an access token for idlink.
//! A multi-tenant authority (Entra's `organizations`) names its issuer `{tenantid}`: the ID
//! token's issuer must then be that template with the token's own `tid`.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use openidconnect::{
    AuthenticationFlow, AuthorizationCode, ClientId, ClientSecret, CsrfToken, Nonce, OAuth2TokenResponse, PkceCodeChallenge,
    PkceCodeVerifier, RedirectUrl, Scope, TokenResponse,
    core::{CoreClient, CoreJsonWebKeySet, CoreProviderMetadata, CoreResponseType},
};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};

use crate::PortalConfig;

/// A work sign-in begun in this browser session: what its callback must match.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct PendingSignIn {
    pub state: String,
    pub nonce: String,
    pub pkce_verifier: String,
}

/// Who is signed in, and their token for idlink (kept server-side, in the session store).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct WorkUser {
    pub name: String,
    pub username: String,
    pub access_token: String,
    /// Unix seconds.
    pub expires_at: i64,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum SignInError {
    #[error("the callback does not belong to a sign-in begun in this session")]
    NotThisSession,
    #[error("the identity provider answered {0}")]
    Provider(String),
    #[error("the token response is not acceptable: {0}")]
    Token(String),
}

pub struct WorkSignIn {
    metadata: CoreProviderMetadata,
    http: reqwest::Client,
    client_id: String,
    client_secret: secrecy::SecretString,
    redirect_uri: String,
    idlink_scope: String,
    issuer_template: String,
}

impl WorkSignIn {
    /// Reads the authority's discovery document and keys. The issuer is not required to equal
    /// the authority: a multi-tenant authority's is a template, checked per token instead.
    pub async fn discover(config: &PortalConfig) -> anyhow::Result<Self> {
        let authority = config.work_authority.trim_end_matches('/');
        if !config.development && !authority.starts_with("https://") {
            anyhow::bail!("the work authority must be https ({authority})");
        }
        let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build()?;
        let discovery = format!("{authority}/.well-known/openid-configuration");
        let fetch = async |url: &str| anyhow::Ok(http.get(url).send().await?.error_for_status()?.bytes().await?);
        let metadata: CoreProviderMetadata = serde_json::from_slice(&fetch(&discovery).await?)?;
        let jwks: CoreJsonWebKeySet = serde_json::from_slice(&fetch(metadata.jwks_uri().url().as_str()).await?)?;
        let issuer_template = metadata.issuer().as_str().to_owned();
        Ok(Self {
            metadata: metadata.set_jwks(jwks),
            http,
            client_id: config.client_id.clone(),
            client_secret: config.client_secret.clone(),
            redirect_uri: config.signin_redirect_uri(),
            idlink_scope: config.idlink_scope.clone(),
            issuer_template,
        })
    }

    pub fn authorization_endpoint(&self) -> &str {
        self.metadata.authorization_endpoint().as_str()
    }

    fn client(
        &self,
    ) -> anyhow::Result<
        CoreClient<
            openidconnect::EndpointSet,
            openidconnect::EndpointNotSet,
            openidconnect::EndpointNotSet,
            openidconnect::EndpointNotSet,
            openidconnect::EndpointMaybeSet,
            openidconnect::EndpointMaybeSet,
        >,
    > {
        Ok(CoreClient::from_provider_metadata(
            self.metadata.clone(),
            ClientId::new(self.client_id.clone()),
            Some(ClientSecret::new(self.client_secret.expose_secret().to_owned())),
        )
        .set_redirect_uri(RedirectUrl::new(self.redirect_uri.clone())?))
    }

    /// The URL to send the browser to, and what its callback must match.
    pub(crate) fn begin(&self) -> anyhow::Result<(String, PendingSignIn)> {
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256_len(64);
        let (url, state, nonce) = self
            .client()?
            .authorize_url(
                AuthenticationFlow::<CoreResponseType>::AuthorizationCode,
                || CsrfToken::new_random_len(32),
                || Nonce::new_random_len(32),
            )
            .add_scope(Scope::new("profile".into()))
            .add_scope(Scope::new(self.idlink_scope.clone()))
            .set_pkce_challenge(challenge)
            .url();
        let pending =
            PendingSignIn { state: state.secret().clone(), nonce: nonce.secret().clone(), pkce_verifier: verifier.secret().clone() };
        Ok((url.to_string(), pending))
    }

    /// Exchanges the code and verifies the ID token (signature, audience, nonce, expiry, and
    /// the issuer of the token's own tenant) before trusting anything in it.
    pub(crate) async fn complete(&self, pending: &PendingSignIn, state: &str, code: &str) -> Result<WorkUser, SignInError> {
        if !constant_time_eq(pending.state.as_bytes(), state.as_bytes()) {
            return Err(SignInError::NotThisSession);
        }
        let client = self.client().map_err(|e| SignInError::Provider(e.to_string()))?;
        let response = client
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .map_err(|e| SignInError::Provider(e.to_string()))?
            .set_pkce_verifier(PkceCodeVerifier::new(pending.pkce_verifier.clone()))
            .request_async(&self.http)
            .await
            .map_err(|e| SignInError::Provider(e.to_string()))?;
        let id_token = response.id_token().ok_or_else(|| SignInError::Token("no id_token".into()))?;
        let verifier = client.id_token_verifier().require_issuer_match(false);
        let claims = id_token.claims(&verifier, &Nonce::new(pending.nonce.clone())).map_err(|e| SignInError::Token(e.to_string()))?;
        // Signature checked: the payload's tid is the signed one.
        let tid = tenant_of(&id_token.to_string()).ok_or_else(|| SignInError::Token("no tid".into()))?;
        let expected = self.issuer_template.replace("{tenantid}", &tid);
        if claims.issuer().as_str() != expected {
            return Err(SignInError::Token(format!("issuer {} is not the authority's for tenant {tid}", claims.issuer().as_str())));
        }
        let username = claims.preferred_username().map(|u| u.as_str().to_owned()).unwrap_or_default();
        let name = claims.name().and_then(|n| n.get(None)).map(|n| n.as_str().to_owned()).unwrap_or_else(|| username.clone());
        let expires_in = response.expires_in().map_or(3600, |d| d.as_secs());
        Ok(WorkUser {
            name,
            username,
            access_token: response.access_token().secret().clone(),
            expires_at: chrono::Utc::now().timestamp() + i64::try_from(expires_in).unwrap_or(3600),
        })
    }
}

fn tenant_of(jwt: &str) -> Option<String> {
    let payload = URL_SAFE_NO_PAD.decode(jwt.split('.').nth(1)?).ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&payload).ok()?;
    claims.get("tid")?.as_str().map(str::to_owned)
}

pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
