use std::time::Duration;

use openidconnect::reqwest;

use super::OidcError;

/// The client for every call to an identity provider: follows no redirects (a redirect could
/// send the code or client secret elsewhere, RFC 6749 §10.6 style) and never hangs.
pub fn provider_http_client(timeout: Duration) -> Result<reqwest::Client, OidcError> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(timeout)
        .connect_timeout(timeout)
        .build()
        .map_err(|e| OidcError::Provider { detail: format!("cannot build HTTP client: {e}") })
}
