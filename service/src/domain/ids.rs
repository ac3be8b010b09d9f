//! Identifiers, parsed once at the boundary. The domain never handles raw strings: an
//! account is `(tenant id, object id)` — never an email, a UPN or `preferred_username`.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::DomainError;

/// The Microsoft consumer tenant: every personal Microsoft account (MSA) lives here.
pub const CONSUMER_TENANT: &str = "9188040d-6c67-4c5b-b112-36a304b66dad";

/// A GUID in canonical lowercase form (`8-4-4-4-12` hex digits).
/// Checked byte by byte without splitting: every stored link is parsed back through here (four
/// GUIDs a link, by [`parsed_from_string`]), so this is on the path of every read and of
/// recalculation.
fn canonical_guid(field: &'static str, raw: &str) -> Result<String, DomainError> {
    let raw = raw.trim();
    let shape_ok = raw.len() == 36
        && raw.bytes().enumerate().all(|(i, b)| if matches!(i, 8 | 13 | 18 | 23) { b == b'-' } else { b.is_ascii_hexdigit() });
    if shape_ok { Ok(raw.to_ascii_lowercase()) } else { Err(DomainError::InvalidField { field, why: "must be a GUID" }) }
}

/// An Entra / Microsoft account tenant id.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TenantId(String);

impl TenantId {
    pub fn parse(raw: &str) -> Result<Self, DomainError> {
        canonical_guid("tenant_id", raw).map(Self)
    }
    pub fn consumer() -> Self {
        Self(CONSUMER_TENANT.to_owned())
    }
    pub fn is_consumer(&self) -> bool {
        self.0 == CONSUMER_TENANT
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An account's object id (`oid`) inside its tenant.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectId(String);

impl ObjectId {
    pub fn parse(raw: &str) -> Result<Self, DomainError> {
        canonical_guid("object_id", raw).map(Self)
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The key of an account: `(tid, oid)`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct AccountKey {
    pub tenant: TenantId,
    pub object: ObjectId,
}

impl AccountKey {
    pub fn parse(tenant: &str, object: &str) -> Result<Self, DomainError> {
        Ok(Self { tenant: TenantId::parse(tenant)?, object: ObjectId::parse(object)? })
    }
}

impl fmt::Display for AccountKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.tenant.as_str(), self.object.as_str())
    }
}

/// What a link is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkKind {
    PartnerUniversity,
    MicrosoftLearning,
}

impl LinkKind {
    pub const ALL: [LinkKind; 2] = [LinkKind::PartnerUniversity, LinkKind::MicrosoftLearning];

    /// The configuration key of the kind (`[kinds.<key>]`).
    pub fn key(self) -> &'static str {
        match self {
            LinkKind::PartnerUniversity => "partner_university",
            LinkKind::MicrosoftLearning => "microsoft_learning",
        }
    }
}

impl fmt::Display for LinkKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.key())
    }
}

/// A link's id: 128 random bits, hex.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LinkId(String);

impl LinkId {
    pub fn random() -> Self {
        Self(hex(&rand::random::<[u8; 16]>()))
    }
    pub fn parse(raw: &str) -> Result<Self, DomainError> {
        if raw.len() == 32 && raw.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()) {
            Ok(Self(raw.to_owned()))
        } else {
            Err(DomainError::InvalidField { field: "link_id", why: "must be 32 lowercase hex digits" })
        }
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Identifiers deserialize through their `parse`, never around it: a record holding a
/// malformed id is unreadable rather than quietly believed.
macro_rules! parsed_from_string {
    ($($id:ty),*) => {$(
        impl TryFrom<String> for $id {
            type Error = $crate::domain::DomainError;
            fn try_from(raw: String) -> Result<Self, Self::Error> {
                Self::parse(&raw)
            }
        }
        impl From<$id> for String {
            fn from(id: $id) -> String {
                id.0
            }
        }
    )*};
}
pub(crate) use parsed_from_string;

parsed_from_string!(TenantId, ObjectId, LinkId);
super::compact::compact_id!(TenantId, super::compact::guid_string);
super::compact::compact_id!(ObjectId, super::compact::guid_string);
super::compact::compact_id!(LinkId, hex);

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_ids_are_parsed_when_read_back() {
        let key = AccountKey::parse(CONSUMER_TENANT, "00000000-0000-4000-8000-000000000001").unwrap();
        let stored = serde_json::to_string(&key).unwrap();
        assert_eq!(serde_json::from_str::<AccountKey>(&stored).unwrap(), key);
        let tampered = stored.replace("00000000-0000-4000-8000-000000000001", "alex@contoso.example");
        assert!(serde_json::from_str::<AccountKey>(&tampered).is_err(), "a malformed id in a record is refused");
        assert!(serde_json::from_str::<LinkId>("\"../../etc\"").is_err());
        assert!(serde_json::from_str::<TenantId>("\"9188040D-6C67-4C5B-B112-36A304B66DAD\"").unwrap().is_consumer());
    }

    #[test]
    fn guids_are_canonicalised_and_garbage_refused() {
        let t = TenantId::parse(" 9188040D-6C67-4C5B-B112-36A304B66DAD ").unwrap();
        assert!(t.is_consumer());
        for bad in [
            "",
            "not-a-guid",
            "9188040d6c674c5bb11236a304b66dad",
            "9188040d-6c67-4c5b-b112-36a304b66dag",
            "9188040d6-c67-4c5b-b112-36a304b66dad",
            "9188040d-6c67-4c5b-b112-36a304b66dä",
            "9188040d-6c67-4c5b-b112-36a304b66d-",
            "+188040d-6c67-4c5b-b112-36a304b66dad",
        ] {
            assert!(TenantId::parse(bad).is_err(), "{bad}");
        }
    }
}
