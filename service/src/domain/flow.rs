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

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Flow {
    pub kind: LinkKind,
    pub owner: AccountKey,
    pub owner_upn: String,
    pub redirect_uri: String,
    pub pkce_verifier: String,
    pub nonce: String,
    pub mode: LinkMode,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

impl Flow {
    /// May `caller` complete this flow at `now`? Ownership is checked first, so a stranger
    /// holding the state learns nothing about the flow, not even whether it expired.
    pub fn check_completion(&self, caller: &AccountKey, now: DateTime<Utc>) -> Result<()> {
        if &self.owner != caller {
            return Err(DomainError::FlowOwnedByAnotherUser);
        }
        if now >= self.expires_at {
            return Err(DomainError::FlowExpired);
        }
        Ok(())
    }

    pub fn is_expired(&self, now: DateTime<Utc>) -> bool {
        now >= self.expires_at
    }
}
