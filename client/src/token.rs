//! Where the client's bearer token comes from: a fixed string, anything that refreshes tokens
//! out of band, or — for unattended jobs — OAuth 2.0 client credentials, fetched from the
//! authority's token endpoint and fetched again before they expire.

use std::{
    sync::{Mutex, PoisonError},
    time::{Duration, Instant},
};

use serde::Deserialize;

use crate::{ClientError, Result};

/// Where the client gets its bearer token, asked before every call.
pub trait TokenProvider: Send + Sync + 'static {
    fn bearer_token(&self) -> Option<String>;
}

impl TokenProvider for String {
    fn bearer_token(&self) -> Option<String> {
        Some(self.clone())
    }
}

impl<F: Fn() -> Option<String> + Send + Sync + 'static> TokenProvider for F {
    fn bearer_token(&self) -> Option<String> {
        self()
    }
}

/// How early a token is fetched again: five minutes before it expires, or half-way through a
/// shorter life.
pub fn refresh_at(obtained: Instant, lifetime: Duration) -> Instant {
    obtained + lifetime - (lifetime / 2).min(Duration::from_secs(300))
}

struct Cached {
    token: String,
    refresh_at: Instant,
}

/// An app's tokens by the client-credentials grant (`client_secret_post`), cached until
/// [`refresh_at`]; a token the server refused is dropped ([`Self::invalidate`]) and fetched
/// anew. The secret is never shown, not even by Debug.
pub struct ClientCredentials {
    token_endpoint: String,
    client_id: String,
    secret: String,
    scope: String,
    http: reqwest::Client,
    cached: Mutex<Option<Cached>>,
    fetching: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for ClientCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientCredentials").field("token_endpoint", &self.token_endpoint).field("client_id", &self.client_id).finish()
    }
}

#[derive(Deserialize)]
struct Discovery {
    token_endpoint: String,
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    expires_in: Option<u64>,
}

impl ClientCredentials {
    /// For `client_id` at the authority's token endpoint (found by OpenID discovery), asking for
    /// `scope` (e.g. `api://idlink/.default`).
    pub async fn discover(authority: &str, client_id: &str, secret: String, scope: &str) -> Result<Self> {
        let http = crate::browser::http_client()?;
        let url = format!("{}/.well-known/openid-configuration", authority.trim_end_matches('/'));
        let discovery: Discovery = http
            .get(&url)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|e| ClientError::Transport(format!("discovery at {url}: {e}")))?
            .bytes()
            .await
            .map_err(|e| ClientError::Transport(format!("discovery at {url}: {e}")))
            .and_then(|body| serde_json::from_slice(&body).map_err(|e| ClientError::Invalid(format!("discovery at {url}: {e}"))))?;
        Ok(Self::new(discovery.token_endpoint, client_id, secret, scope, http))
    }

    pub fn new(token_endpoint: String, client_id: &str, secret: String, scope: &str, http: reqwest::Client) -> Self {
        Self {
            token_endpoint,
            client_id: client_id.to_owned(),
            secret,
            scope: scope.to_owned(),
            http,
            cached: Mutex::new(None),
            fetching: tokio::sync::Mutex::new(()),
        }
    }

    fn cached(&self) -> std::sync::MutexGuard<'_, Option<Cached>> {
        self.cached.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Fetches a token unless the cached one is good for a while yet.
    pub async fn ensure_fresh(&self) -> Result<()> {
        let due = |cached: &Option<Cached>| cached.as_ref().is_none_or(|c| Instant::now() >= c.refresh_at);
        if !due(&self.cached()) {
            return Ok(());
        }
        // One fetch at a time; whoever waited finds the token fetched.
        let _fetching = self.fetching.lock().await;
        if !due(&self.cached()) {
            return Ok(());
        }
        let obtained = Instant::now();
        let form = [
            ("grant_type", "client_credentials"),
            ("client_id", self.client_id.as_str()),
            ("client_secret", self.secret.as_str()),
            ("scope", self.scope.as_str()),
        ];
        let response = self
            .http
            .post(&self.token_endpoint)
            .form(&form)
            .send()
            .await
            .map_err(|e| ClientError::Transport(format!("token endpoint {}: {e}", self.token_endpoint)))?;
        let status = response.status();
        if !status.is_success() {
            // The endpoint's own words: they name what is wrong, never the secret.
            let why = response.text().await.unwrap_or_default();
            return Err(ClientError::Invalid(format!(
                "token endpoint refused {} ({status}): {}",
                self.client_id,
                why.chars().take(300).collect::<String>()
            )));
        }
        let body = response.bytes().await.map_err(|e| ClientError::Transport(format!("token endpoint answer: {e}")))?;
        let token: TokenResponse =
            serde_json::from_slice(&body).map_err(|e| ClientError::Invalid(format!("token endpoint answer: {e}")))?;
        let lifetime = Duration::from_secs(token.expires_in.unwrap_or(3600).max(1));
        *self.cached() = Some(Cached { token: token.access_token, refresh_at: refresh_at(obtained, lifetime) });
        Ok(())
    }

    /// Forgets the cached token (the server refused it: revoked, or the clocks disagree).
    pub fn invalidate(&self) {
        *self.cached() = None;
    }
}

impl TokenProvider for ClientCredentials {
    fn bearer_token(&self) -> Option<String> {
        self.cached().as_ref().map(|c| c.token.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_fetched_again_well_before_they_expire() {
        let obtained = Instant::now();
        let hour = Duration::from_secs(3600);
        assert_eq!(refresh_at(obtained, hour), obtained + hour - Duration::from_secs(300), "five minutes early");
        assert_eq!(refresh_at(obtained, Duration::from_secs(60)), obtained + Duration::from_secs(30), "half-way through a short life");
        assert_eq!(refresh_at(obtained, Duration::from_secs(1)), obtained + Duration::from_millis(500));
    }
}
