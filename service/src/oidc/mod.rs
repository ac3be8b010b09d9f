//! Identity providers: the association flow (personal account sign-in), inbound access
//! token validation, the JWKS cache, and the development provider.

pub mod association;
pub mod devidp;
mod http;
pub mod inbound;
pub mod jwks;

pub use association::{AssociationClient, Authorization, Callback, KindSettings, VerifiedPersonal, check_authority};
pub use http::provider_http_client;
pub use inbound::{AuthError, Authenticator, InboundConfig};

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum OidcError {
    #[error("configuration: {detail}")]
    Config { detail: String },
    #[error("identity provider unavailable: {detail}")]
    Provider { detail: String },
    #[error("redirect URI is not on the kind's allow-list")]
    RedirectUriNotAllowed,
    #[error("the callback's iss names another issuer")]
    IssuerMismatch,
    #[error("the token endpoint refused the code")]
    CodeRejected,
    #[error("the ID token names a key we do not have")]
    UnknownSigningKey,
    #[error("ID token refused: {why}")]
    IdTokenInvalid { why: &'static str },
    #[error("the ID token's nonce is not the flow's")]
    NonceMismatch,
    #[error("the account that signed in is not a personal Microsoft account")]
    NotAPersonalAccount,
}
