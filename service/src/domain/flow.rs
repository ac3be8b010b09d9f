//! A pending association flow: what BeginLink remembers for CompleteLink.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{AccountKey, DomainError, LinkKind, LinkMode, Result, ids::hex};

/// How long a flow may take by default (invariant 5).
pub const DEFAULT_FLOW_TTL: Duration = Duration::minutes(10);

/// The store's key for a flow: the SHA-256 of its `state`, so the state itself (a bearer
/// handle) is never at rest and lookups need no constant-time comparison.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct StateHash(String);

impl StateHash {
    pub fn of(state: &str) -> Self {
        Self(hex(&Sha256::digest(state.as_bytes())))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A value that must never reach a log or a caller: its Debug says only that it is there.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct FlowSecret(String);

impl FlowSecret {
    pub fn new(secret: String) -> Self {
        Self(secret)
    }

    /// The secret itself, at the one place it is used.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for FlowSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FlowSecret(***)")
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Flow {
    pub kind: LinkKind,
    pub owner: AccountKey,
    pub owner_upn: String,
    pub redirect_uri: String,
    pub pkce_verifier: FlowSecret,
    pub nonce: FlowSecret,
    pub mode: LinkMode,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

impl Flow {
    /// May `caller` complete this flow at `now`, on the redirect URI the callback names (if it
    /// names one)? Ownership is checked first, so a stranger holding the state learns nothing
    /// about the flow, not even whether it expired.
    pub fn check_completion(&self, caller: &AccountKey, redirect_uri: Option<&str>, now: DateTime<Utc>) -> Result<()> {
        if &self.owner != caller {
            return Err(DomainError::FlowOwnedByAnotherUser);
        }
        if now >= self.expires_at {
            return Err(DomainError::FlowExpired);
        }
        if redirect_uri.is_some_and(|uri| uri != self.redirect_uri) {
            return Err(DomainError::RedirectUriMismatch);
        }
        Ok(())
    }

    pub fn is_expired(&self, now: DateTime<Utc>) -> bool {
        now >= self.expires_at
    }

    /// The flow as stored: its times in the clear (for purging), everything else — the PKCE
    /// verifier and nonce among it — sealed with a key derived from the `state`, which only
    /// the caller holds (see [`crate::sealing`]).
    pub fn seal(&self, state: &str) -> Result<SealedFlow, crate::sealing::Unreadable> {
        let plaintext = serde_json::to_vec(self).map_err(|_| crate::sealing::Unreadable)?;
        Ok(SealedFlow {
            created_at: self.created_at,
            expires_at: self.expires_at,
            sealed: crate::sealing::seal(state.as_bytes(), FLOW_SEAL, &plaintext)?,
        })
    }
}

const FLOW_SEAL: &str = "flow";

/// A pending flow at rest: see [`Flow::seal`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedFlow {
    #[serde(with = "super::compact::time")]
    pub created_at: DateTime<Utc>,
    #[serde(with = "super::compact::time")]
    pub expires_at: DateTime<Utc>,
    #[serde(with = "base64_bytes")]
    pub sealed: Vec<u8>,
}

impl SealedFlow {
    pub fn is_expired(&self, now: DateTime<Utc>) -> bool {
        now >= self.expires_at
    }

    /// The flow, given the `state` it was sealed with. Any other state (or a tampered record)
    /// opens nothing: to the caller that is a flow that does not exist.
    pub fn open(&self, state: &str) -> Result<Flow> {
        let plaintext = crate::sealing::open(state.as_bytes(), FLOW_SEAL, &self.sealed).map_err(|_| DomainError::FlowNotFound)?;
        serde_json::from_slice(&plaintext).map_err(|_| DomainError::FlowNotFound)
    }
}

mod base64_bytes {
    use base64::{Engine, engine::general_purpose::STANDARD_NO_PAD};
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    /// Base64 text when human-readable (JSON), the bytes themselves when compact.
    pub fn serialize<S: Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            serializer.serialize_str(&STANDARD_NO_PAD.encode(bytes))
        } else {
            serializer.serialize_bytes(bytes)
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
        if deserializer.is_human_readable() {
            STANDARD_NO_PAD.decode(String::deserialize(deserializer)?).map_err(D::Error::custom)
        } else {
            serde_bytes_vec(deserializer)
        }
    }

    fn serde_bytes_vec<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
        struct Bytes;
        impl serde::de::Visitor<'_> for Bytes {
            type Value = Vec<u8>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("bytes")
            }
            fn visit_bytes<E: Error>(self, bytes: &[u8]) -> Result<Vec<u8>, E> {
                Ok(bytes.to_vec())
            }
        }
        deserializer.deserialize_bytes(Bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_flow_opens_only_with_its_state_and_shows_no_secret() {
        let now = Utc::now();
        let flow = Flow {
            kind: LinkKind::MicrosoftLearning,
            owner: AccountKey::parse("3b1d6a6e-5a3c-4f0a-9c7e-2f6b8e1d4c01", "00000000-0000-4000-8000-000000000001").unwrap(),
            owner_upn: "alex@contoso.example".into(),
            redirect_uri: "https://portal.example/cb".into(),
            pkce_verifier: FlowSecret::new("the-pkce-verifier-0123456789".into()),
            nonce: FlowSecret::new("the-nonce-0123456789".into()),
            mode: LinkMode::default(),
            created_at: now,
            expires_at: now + DEFAULT_FLOW_TTL,
        };
        let sealed = flow.seal("the-state").unwrap();
        let at_rest = serde_json::to_string(&sealed).unwrap();
        for secret in ["the-pkce-verifier", "the-nonce", "the-state", "alex@contoso.example"] {
            assert!(!at_rest.contains(secret), "{secret} is at rest: {at_rest}");
        }
        assert_eq!(serde_json::from_str::<SealedFlow>(&at_rest).unwrap().open("the-state").unwrap(), flow);
        assert_eq!(sealed.open("another-state"), Err(DomainError::FlowNotFound));
        assert_eq!(sealed.expires_at, flow.expires_at);
        assert!(!format!("{flow:?}").contains("the-nonce"), "Debug keeps the secrets out of logs");
    }
}
