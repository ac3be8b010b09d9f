//! Partner organisations: one per work tenant, carrying its PartnerID.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{DomainError, TenantId};

/// A Microsoft AI Cloud Partner Program PartnerID (formerly MPN ID): 6 to 10 digits.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PartnerId(String);

super::ids::parsed_from_string!(PartnerId);

impl PartnerId {
    pub fn parse(raw: &str) -> Result<Self, DomainError> {
        let raw = raw.trim();
        if (6..=10).contains(&raw.len()) && raw.bytes().all(|b| b.is_ascii_digit()) {
            Ok(Self(raw.to_owned()))
        } else {
            Err(DomainError::InvalidField { field: "partner_id", why: "must be 6 to 10 digits" })
        }
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Organization {
    /// An organisation is its tenant: `organization_id` is the tenant id.
    pub tenant: TenantId,
    pub partner_id: PartnerId,
    pub name: String,
    #[serde(with = "super::compact::time")]
    pub updated_at: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partner_ids_are_digits() {
        assert!(PartnerId::parse("4512345").is_ok());
        for bad in ["", "12345", "12345678901", "45l2345", "4512345 OR 1"] {
            assert!(PartnerId::parse(bad).is_err(), "{bad}");
        }
    }
}
