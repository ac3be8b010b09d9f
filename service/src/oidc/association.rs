//! The association flow of one link kind against its configured authority: sign in with the
//! personal account (authorization code + PKCE S256 + nonce + state), then prove who signed
//! in from a verified ID token. Works the same against any standards-conforming provider.

use std::{sync::Arc, time::Duration};

use chrono::{DateTime, Utc};
use openidconnect::{
    AdditionalClaims, AdditionalProviderMetadata, AuthenticationFlow, AuthorizationCode, ClientId, ClientSecret, CsrfToken, IdToken,
    IdTokenVerifier, IssuerUrl, LoginHint, Nonce, PkceCodeChallenge, PkceCodeVerifier, ProviderMetadata, RedirectUrl, Scope, TokenResponse,
    core::{
        CoreAuthDisplay, CoreAuthPrompt, CoreClaimName, CoreClaimType, CoreClient, CoreClientAuthMethod, CoreGenderClaim, CoreGrantType,
        CoreJsonWebKey, CoreJweContentEncryptionAlgorithm, CoreJweKeyManagementAlgorithm, CoreJwsSigningAlgorithm, CoreResponseMode,
        CoreResponseType, CoreSubjectIdentifierType,
    },
    reqwest,
};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use super::{OidcError, jwks::JwksCache};
use crate::domain::{AccountKey, FlowSecret, LinkKind, PersonalProfile};

/// Microsoft's claims beyond the standard ones.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
struct MicrosoftClaims {
    tid: Option<String>,
    oid: Option<String>,
}
impl AdditionalClaims for MicrosoftClaims {}

type MicrosoftIdToken = IdToken<MicrosoftClaims, CoreGenderClaim, CoreJweContentEncryptionAlgorithm, CoreJwsSigningAlgorithm>;

/// Discovery metadata beyond the standard's core: RFC 9207's promise to name the issuer on
/// every authorization response.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
struct IssParameter {
    #[serde(default)]
    authorization_response_iss_parameter_supported: bool,
}
impl AdditionalProviderMetadata for IssParameter {}

type Metadata = ProviderMetadata<
    IssParameter,
    CoreAuthDisplay,
    CoreClientAuthMethod,
    CoreClaimName,
    CoreClaimType,
    CoreGrantType,
    CoreJweContentEncryptionAlgorithm,
    CoreJweKeyManagementAlgorithm,
    CoreJsonWebKey,
    CoreResponseMode,
    CoreResponseType,
    CoreSubjectIdentifierType,
>;

#[derive(Clone)]
pub struct KindSettings {
    pub authority: String,
    pub client_id: String,
    pub client_secret: SecretString,
    pub redirect_uris: Vec<String>,
    pub rules: crate::domain::KindRules,
}

/// What BeginLink hands out and what the flow must remember. The verifier and nonce are
/// secrets: they go to the store, never to a log or a caller.
pub struct Authorization {
    pub url: url::Url,
    pub state: String,
    pub pkce_verifier: FlowSecret,
    pub nonce: FlowSecret,
}

/// The personal account proven by a verified ID token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedPersonal {
    pub key: AccountKey,
    pub subject: String,
    pub profile: PersonalProfile,
}

/// What CompleteLink received on the redirect.
pub struct Callback<'a> {
    pub code: &'a str,
    pub iss: Option<&'a str>,
}

pub struct AssociationClient {
    kind: LinkKind,
    settings: KindSettings,
    metadata: Metadata,
    jwks: Arc<JwksCache>,
    http: reqwest::Client,
    /// How far `iat` may be in the future (clock skew) and how old an ID token may be.
    leeway: chrono::Duration,
    max_id_token_age: chrono::Duration,
}

/// Refuses authorities that cannot be validated strictly: multi-tenant aliases resolve to an
/// issuer with a `{tenantid}` placeholder or another tenant's id.
pub fn check_authority(authority: &str, allow_insecure_http: bool) -> Result<url::Url, OidcError> {
    let bad = |why: &str| OidcError::Config { detail: format!("authority {authority:?}: {why}") };
    let url = url::Url::parse(authority).map_err(|_| bad("not a URL"))?;
    match url.scheme() {
        "https" => {}
        "http" if allow_insecure_http => {}
        "http" => return Err(bad("http is allowed only with dev.allow_insecure_http")),
        _ => return Err(bad("scheme must be https")),
    }
    let segments: Vec<String> = url.path_segments().map(|s| s.map(str::to_ascii_lowercase).collect()).unwrap_or_default();
    for alias in ["common", "organizations", "consumers", "{tenantid}", "%7btenantid%7d"] {
        if segments.iter().any(|s| s == alias) {
            return Err(bad("name the tenant by id, not a multi-tenant alias (common, organizations, consumers, {tenantid})"));
        }
    }
    Ok(url)
}

impl AssociationClient {
    /// What can be checked without the network: the authority and the redirect URIs. Start-up
    /// runs it for every kind, so a bad configuration stops the process at once.
    pub fn check_settings(kind: LinkKind, settings: &KindSettings, allow_insecure_http: bool) -> Result<(), OidcError> {
        check_authority(&settings.authority, allow_insecure_http).map_err(|e| match e {
            OidcError::Config { detail } => OidcError::Config { detail: format!("kinds.{kind}.authority: {detail}") },
            other => other,
        })?;
        if settings.redirect_uris.is_empty() {
            return Err(OidcError::Config { detail: format!("kinds.{kind}.redirect_uris is empty") });
        }
        let limit = settings.rules.limit;
        if limit.per_year > crate::domain::MAX_PER_YEAR || limit.days_between > crate::domain::MAX_DAYS_BETWEEN {
            return Err(OidcError::Config {
                detail: format!(
                    "kinds.{kind}: associations_per_year is at most {} and days_between_associations at most {}",
                    crate::domain::MAX_PER_YEAR,
                    crate::domain::MAX_DAYS_BETWEEN
                ),
            });
        }
        for uri in &settings.redirect_uris {
            let scheme_ok = match url::Url::parse(uri).map(|u| u.scheme().to_owned()) {
                Ok(scheme) => scheme == "https" || (scheme == "http" && allow_insecure_http),
                Err(_) => false,
            };
            if !scheme_ok {
                return Err(OidcError::Config {
                    detail: format!("kinds.{kind}.redirect_uris: {uri:?} must be an https URL (http only with dev.allow_insecure_http)"),
                });
            }
        }
        Ok(())
    }

    /// Discovers the authority's metadata and keys. The discovered issuer must equal the
    /// authority (openidconnect enforces it), which is what makes strict issuer checks work.
    pub async fn discover(
        kind: LinkKind,
        settings: KindSettings,
        http: reqwest::Client,
        allow_insecure_http: bool,
        jwks_refetch_interval: Duration,
        jwks_counted: crate::metrics::JwksCounters,
    ) -> Result<Self, OidcError> {
        Self::check_settings(kind, &settings, allow_insecure_http)?;
        let issuer = IssuerUrl::new(settings.authority.clone()).map_err(|e| OidcError::Config { detail: e.to_string() })?;
        let metadata = Metadata::discover_async(issuer, &http)
            .await
            .map_err(|e| OidcError::Provider { detail: format!("discovery of {} failed: {e}", settings.authority) })?;
        let jwks = Arc::new(JwksCache::new(
            metadata.jwks_uri().clone(),
            http.clone(),
            metadata.jwks().clone(),
            jwks_refetch_interval,
            jwks_counted,
        ));
        Ok(Self {
            kind,
            settings,
            metadata,
            jwks,
            http,
            leeway: chrono::Duration::minutes(5),
            max_id_token_age: chrono::Duration::hours(1),
        })
    }

    /// What a completion of this kind does with an account linked elsewhere, and the limit on
    /// associations it is held to.
    pub fn rules(&self) -> crate::domain::KindRules {
        self.settings.rules
    }

    pub fn issuer(&self) -> &str {
        self.metadata.issuer().as_str()
    }

    pub fn jwks(&self) -> &Arc<JwksCache> {
        &self.jwks
    }

    pub fn redirect_uri_allowed(&self, redirect_uri: &str) -> bool {
        self.settings.redirect_uris.iter().any(|allowed| allowed == redirect_uri)
    }

    fn client(
        &self,
        redirect_uri: &str,
    ) -> Result<
        CoreClient<
            openidconnect::EndpointSet,
            openidconnect::EndpointNotSet,
            openidconnect::EndpointNotSet,
            openidconnect::EndpointNotSet,
            openidconnect::EndpointMaybeSet,
            openidconnect::EndpointMaybeSet,
        >,
        OidcError,
    > {
        let redirect = RedirectUrl::new(redirect_uri.to_owned()).map_err(|_| OidcError::RedirectUriNotAllowed)?;
        Ok(CoreClient::from_provider_metadata(
            self.metadata.clone(),
            ClientId::new(self.settings.client_id.clone()),
            Some(ClientSecret::new(self.settings.client_secret.expose_secret().to_owned())),
        )
        .set_redirect_uri(redirect))
    }

    /// Builds the authorization request: fresh state (256 bits), nonce (256 bits) and PKCE
    /// S256 verifier for every flow; `prompt=select_account` unless a login hint is given.
    pub fn authorize(&self, redirect_uri: &str, login_hint: Option<&str>) -> Result<Authorization, OidcError> {
        if !self.redirect_uri_allowed(redirect_uri) {
            return Err(OidcError::RedirectUriNotAllowed);
        }
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256_len(64);
        let client = self.client(redirect_uri)?;
        let mut request = client
            .authorize_url(
                AuthenticationFlow::<CoreResponseType>::AuthorizationCode,
                || CsrfToken::new_random_len(32),
                || Nonce::new_random_len(32),
            )
            .add_scope(Scope::new("profile".into()))
            .add_scope(Scope::new("email".into()))
            .set_pkce_challenge(challenge);
        request = match login_hint {
            Some(hint) => request.set_login_hint(LoginHint::new(hint.to_owned())),
            None => request.add_prompt(CoreAuthPrompt::SelectAccount),
        };
        let (url, state, nonce) = request.url();
        Ok(Authorization {
            url,
            state: state.secret().clone(),
            pkce_verifier: FlowSecret::new(verifier.secret().clone()),
            nonce: FlowSecret::new(nonce.secret().clone()),
        })
    }

    /// Exchanges the code (with the flow's redirect URI and PKCE verifier) and verifies the ID
    /// token before using any of its claims.
    pub async fn complete(
        &self,
        callback: Callback<'_>,
        redirect_uri: &str,
        pkce_verifier: &FlowSecret,
        nonce: &FlowSecret,
        now: DateTime<Utc>,
    ) -> Result<VerifiedPersonal, OidcError> {
        // RFC 9207: a provider that names itself on the redirect must be the one we asked, and
        // one that promised to name itself must have: a redirect without `iss` then comes from
        // somewhere else (a mix-up attack).
        match callback.iss {
            Some(iss) if iss != self.issuer() => return Err(OidcError::IssuerMismatch),
            None if self.metadata.additional_metadata().authorization_response_iss_parameter_supported => {
                return Err(OidcError::IssuerMismatch);
            }
            _ => {}
        }
        let client = self.client(redirect_uri)?;
        let response = client
            .exchange_code(AuthorizationCode::new(callback.code.to_owned()))
            .map_err(|e| OidcError::Provider { detail: format!("no token endpoint: {e}") })?
            .set_pkce_verifier(PkceCodeVerifier::new(pkce_verifier.expose().to_owned()))
            .request_async(&self.http)
            .await
            .map_err(|e| match e {
                openidconnect::RequestTokenError::ServerResponse(body) => {
                    tracing::info!(kind = %self.kind, error = body.error().as_ref(), "token endpoint refused the code");
                    OidcError::CodeRejected
                }
                // Display only: the Debug form of a parse error carries the response body.
                other => OidcError::Provider { detail: format!("token request failed: {other}") },
            })?;
        let raw = response.id_token().ok_or(OidcError::IdTokenInvalid { why: "no id_token in the token response" })?.to_string();
        let id_token: MicrosoftIdToken = raw.parse().map_err(|_| OidcError::IdTokenInvalid { why: "malformed id_token" })?;
        let nonce = Nonce::new(nonce.expose().to_owned());

        let (keys, generation) = self.jwks.current();
        let verified = match self.verify(&id_token, keys, &nonce, now) {
            Err(OidcError::UnknownSigningKey) if self.jwks.refetch_for_unknown_kid(generation).await => {
                self.verify(&id_token, self.jwks.current().0, &nonce, now)
            }
            other => other,
        };
        let claims = match verified {
            Err(OidcError::UnknownSigningKey) => {
                return Err(OidcError::IdTokenInvalid { why: "signed by an unknown key" });
            }
            other => other?,
        };

        let extra = claims.additional_claims();
        let (Some(tid), Some(oid)) = (extra.tid.as_deref(), extra.oid.as_deref()) else {
            return Err(OidcError::NotAPersonalAccount);
        };
        let key = AccountKey::parse(tid, oid).map_err(|_| OidcError::NotAPersonalAccount)?;
        if !key.tenant.is_consumer() {
            return Err(OidcError::NotAPersonalAccount);
        }
        let email = claims
            .email()
            .map(|e| e.as_str().to_owned())
            .or_else(|| claims.preferred_username().map(|u| u.as_str().to_owned()))
            .unwrap_or_default();
        let name = claims.name().and_then(|n| n.get(None)).map(|n| n.as_str().to_owned()).unwrap_or_default();
        Ok(VerifiedPersonal { key, subject: claims.subject().as_str().to_owned(), profile: PersonalProfile { email, name } })
    }

    fn verify(
        &self,
        id_token: &MicrosoftIdToken,
        keys: openidconnect::core::CoreJsonWebKeySet,
        nonce: &Nonce,
        now: DateTime<Utc>,
    ) -> Result<openidconnect::IdTokenClaims<MicrosoftClaims, CoreGenderClaim>, OidcError> {
        let (leeway, max_age) = (self.leeway, self.max_id_token_age);
        // A public-client verifier: the client secret is never usable as an HMAC key.
        let verifier =
            IdTokenVerifier::new_public_client(ClientId::new(self.settings.client_id.clone()), self.metadata.issuer().clone(), keys)
                .set_allowed_algs([CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256])
                .set_time_fn(move || now)
                .set_issue_time_verifier_fn(move |iat| {
                    if iat > now + leeway {
                        Err("issued in the future".into())
                    } else if iat < now - max_age {
                        Err("issued too long ago".into())
                    } else {
                        Ok(())
                    }
                });
        id_token.clone().into_claims(&verifier, nonce).map_err(|e| {
            use openidconnect::{ClaimsVerificationError as C, SignatureVerificationError as S};
            tracing::info!(kind = %self.kind, error = %e, "ID token refused");
            match e {
                C::SignatureVerification(S::NoMatchingKey) => OidcError::UnknownSigningKey,
                C::InvalidIssuer(_) => OidcError::NotAPersonalAccount,
                C::InvalidNonce(_) => OidcError::NonceMismatch,
                C::Expired(_) => OidcError::IdTokenInvalid { why: "expired" },
                C::InvalidAudience(_) => OidcError::IdTokenInvalid { why: "wrong audience" },
                C::SignatureVerification(_) => OidcError::IdTokenInvalid { why: "bad signature" },
                _ => OidcError::IdTokenInvalid { why: "claims rejected" },
            }
        })
    }
}
