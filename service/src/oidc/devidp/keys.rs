//! RS256 signing keys of the development provider, generated at start (never stored).

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use openidconnect::{
    JsonWebKeyId, PrivateSigningKey,
    core::{CoreJsonWebKey, CoreJwsSigningAlgorithm, CoreRsaPrivateSigningKey},
};
use rsa::pkcs1::{EncodeRsaPrivateKey, LineEnding};

use crate::oidc::OidcError;

pub struct SigningKey {
    pub kid: String,
    key: CoreRsaPrivateSigningKey,
}

impl SigningKey {
    pub fn generate() -> Result<Self, OidcError> {
        let fail = |e: String| OidcError::Config { detail: format!("development provider key: {e}") };
        let private = rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048).map_err(|e| fail(e.to_string()))?;
        let pem = private.to_pkcs1_pem(LineEnding::LF).map_err(|e| fail(e.to_string()))?;
        let kid = crate::domain::LinkId::random().as_str()[..16].to_owned();
        let key = CoreRsaPrivateSigningKey::from_pem(&pem, Some(JsonWebKeyId::new(kid.clone()))).map_err(fail)?;
        Ok(Self { kid, key })
    }

    pub fn public_jwk(&self) -> CoreJsonWebKey {
        self.key.as_verification_key()
    }

    /// A compact JWS of `claims` with `header` as given (tests craft odd headers with it).
    pub fn sign_raw(&self, header: &serde_json::Value, claims: &serde_json::Value) -> String {
        let input = format!("{}.{}", URL_SAFE_NO_PAD.encode(header.to_string()), URL_SAFE_NO_PAD.encode(claims.to_string()));
        // RS256 signing of a well-formed key cannot fail; an empty signature would be refused.
        let signature = self.key.sign(&CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256, input.as_bytes()).unwrap_or_default();
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature))
    }

    /// A normal RS256 JWT with this key's `kid`.
    pub fn sign(&self, claims: &serde_json::Value) -> String {
        self.sign_raw(&serde_json::json!({"alg": "RS256", "typ": "JWT", "kid": self.kid}), claims)
    }
}
