//! What a browser does between BeginLink and CompleteLink: open the authorization URL and
//! come back on the redirect. Used by `idlink demo` and the tests against the development
//! provider, which signs in without a page when `login_hint` names one of its accounts.

use std::time::Duration;

use crate::{ClientError, Result, pb};

/// The portal's callback that `idlinkd --dev` registers for both kinds of link.
pub const DEV_REDIRECT_URI: &str = "http://localhost:8080/profile/link/callback";

/// The parameters the provider put on the redirect back to the portal.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Redirect {
    pub code: Option<String>,
    pub state: Option<String>,
    pub iss: Option<String>,
    pub error: Option<String>,
    pub error_description: Option<String>,
}

impl Redirect {
    pub fn parse(location: &str) -> Result<Self> {
        let url = url::Url::parse(location).map_err(|e| ClientError::Invalid(format!("redirect is not a URL: {e}")))?;
        let mut redirect = Redirect::default();
        for (key, value) in url.query_pairs() {
            let slot = match key.as_ref() {
                "code" => &mut redirect.code,
                "state" => &mut redirect.state,
                "iss" => &mut redirect.iss,
                "error" => &mut redirect.error,
                "error_description" => &mut redirect.error_description,
                _ => continue,
            };
            *slot = Some(value.into_owned());
        }
        Ok(redirect)
    }

    /// The CompleteLink request this redirect makes.
    pub fn into_complete_request(self) -> pb::CompleteLinkRequest {
        pb::CompleteLinkRequest {
            state: self.state.unwrap_or_default(),
            code: self.code.unwrap_or_default(),
            iss: self.iss,
            error: self.error,
            error_description: self.error_description,
            redirect_uri: None,
            request_id: String::new(),
        }
    }
}

/// An HTTP client that behaves like the browser here: it does not follow redirects.
pub fn http_client() -> Result<reqwest::Client> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| ClientError::Transport(e.to_string()))
}

/// GETs the authorization URL without following the redirect and returns where it points.
pub async fn follow_authorization(authorization_url: &str) -> Result<Redirect> {
    follow_authorization_with(&http_client()?, authorization_url).await
}

/// [`follow_authorization`] with a client of the caller's ([`http_client`]), reused across
/// sign-ins (load tests).
pub async fn follow_authorization_with(http: &reqwest::Client, authorization_url: &str) -> Result<Redirect> {
    let response = http.get(authorization_url).send().await.map_err(|e| ClientError::Transport(format!("identity provider: {e}")))?;
    let location = response.headers().get(reqwest::header::LOCATION).and_then(|v| v.to_str().ok()).ok_or_else(|| {
        ClientError::Invalid(format!(
            "the identity provider answered {} without a redirect (does login_hint name an account?)",
            response.status()
        ))
    })?;
    Redirect::parse(location)
}
