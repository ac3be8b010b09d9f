//! Opaque, tamper-evident page tokens for ListLinks and ListOrganizationPeople: the cursor and
//! the query it belongs to, MACed with a secret kept in the store (and the RPC's name, so a
//! token of one never opens for the other). A modified token, or one used with another
//! organisation or other filters, is refused — never read as a different page.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use super::status::ApiError;
use crate::{
    credits::PeopleCursor,
    domain::{LinkId, LinkKind, TenantId},
};

#[derive(Serialize, Deserialize, PartialEq, Eq)]
struct Cursor {
    org: String,
    kind: Option<LinkKind>,
    removed: bool,
    after: String,
}

#[derive(Clone)]
pub struct PageTokens {
    key: Vec<u8>,
}

const INVALID: ApiError = ApiError::InvalidArgument { field: "page_token", why: "is not a page token of this query" };

impl PageTokens {
    pub fn new(key: Vec<u8>) -> Self {
        Self { key }
    }

    fn mac(&self) -> Hmac<Sha256> {
        // HMAC takes keys of any length.
        Hmac::<Sha256>::new_from_slice(&self.key).unwrap_or_else(|_| unreachable!("HMAC accepts any key length"))
    }

    fn sealed<T: Serialize>(&self, purpose: &str, cursor: &T) -> String {
        let payload = serde_json::to_vec(cursor).unwrap_or_default();
        let mut mac = self.mac();
        mac.update(purpose.as_bytes());
        mac.update(&[0]);
        mac.update(&payload);
        format!("{}.{}", URL_SAFE_NO_PAD.encode(&payload), URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes()))
    }

    fn opened<T: serde::de::DeserializeOwned>(&self, purpose: &str, token: &str) -> Result<T, ApiError> {
        let (payload, tag) = token.split_once('.').ok_or(INVALID)?;
        let payload = URL_SAFE_NO_PAD.decode(payload).map_err(|_| INVALID)?;
        let tag = URL_SAFE_NO_PAD.decode(tag).map_err(|_| INVALID)?;
        let mut mac = self.mac();
        mac.update(purpose.as_bytes());
        mac.update(&[0]);
        mac.update(&payload);
        mac.verify_slice(&tag).map_err(|_| INVALID)?;
        serde_json::from_slice(&payload).map_err(|_| INVALID)
    }

    pub fn seal(&self, org: &TenantId, kind: Option<LinkKind>, include_removed: bool, after: &LinkId) -> String {
        let cursor = Cursor { org: org.as_str().to_owned(), kind, removed: include_removed, after: after.as_str().to_owned() };
        self.sealed("ListLinks", &cursor)
    }

    /// The link to resume after, if `token` was sealed for exactly this query.
    pub fn open(&self, token: &str, org: &TenantId, kind: Option<LinkKind>, include_removed: bool) -> Result<LinkId, ApiError> {
        let cursor: Cursor = self.opened("ListLinks", token)?;
        if cursor.org != org.as_str() || cursor.kind != kind || cursor.removed != include_removed {
            return Err(INVALID);
        }
        LinkId::parse(&cursor.after).map_err(|_| INVALID)
    }

    /// A ListOrganizationPeople token for the organisation as the caller `named` it.
    pub fn seal_people(&self, named: &str, cursor: &PeopleCursor) -> String {
        let cursor = PeopleToken {
            org: named.to_owned(),
            tenant: cursor.tenant.as_str().to_owned(),
            kind: cursor.kind,
            after: cursor.after.as_ref().map(|a| a.as_str().to_owned()),
        };
        self.sealed("ListOrganizationPeople", &cursor)
    }

    /// Where to resume, if `token` was sealed for the organisation named the same way.
    pub fn open_people(&self, token: &str, named: &str) -> Result<PeopleCursor, ApiError> {
        let cursor: PeopleToken = self.opened("ListOrganizationPeople", token)?;
        if cursor.org != named {
            return Err(INVALID);
        }
        Ok(PeopleCursor {
            tenant: TenantId::parse(&cursor.tenant).map_err(|_| INVALID)?,
            kind: cursor.kind,
            after: cursor.after.as_deref().map(LinkId::parse).transpose().map_err(|_| INVALID)?,
        })
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PeopleToken {
    org: String,
    tenant: String,
    kind: LinkKind,
    after: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_opens_only_for_its_own_query_and_untouched() {
        let tokens = PageTokens::new(vec![7; 32]);
        let org = TenantId::parse("3b1d6a6e-5a3c-4f0a-9c7e-2f6b8e1d4c01").unwrap();
        let other = TenantId::parse("8e2f4b7a-1c9d-4e3f-a5b6-7c8d9e0f1a02").unwrap();
        let after = LinkId::random();
        let token = tokens.seal(&org, Some(LinkKind::MicrosoftLearning), false, &after);
        assert_eq!(tokens.open(&token, &org, Some(LinkKind::MicrosoftLearning), false).unwrap(), after);
        assert!(tokens.open(&token, &other, Some(LinkKind::MicrosoftLearning), false).is_err());
        assert!(tokens.open(&token, &org, None, false).is_err());
        assert!(tokens.open(&token, &org, Some(LinkKind::MicrosoftLearning), true).is_err());
        let mut bytes = token.clone().into_bytes();
        bytes[3] ^= 1;
        assert!(tokens.open(&String::from_utf8_lossy(&bytes), &org, Some(LinkKind::MicrosoftLearning), false).is_err());
        assert!(PageTokens::new(vec![8; 32]).open(&token, &org, Some(LinkKind::MicrosoftLearning), false).is_err());
        // A token of one RPC never opens for the other.
        assert!(tokens.open_people(&token, org.as_str()).is_err());
        let people =
            tokens.seal_people("p:4512345", &PeopleCursor { tenant: org.clone(), kind: LinkKind::PartnerUniversity, after: Some(after) });
        assert!(tokens.open(&people, &org, Some(LinkKind::MicrosoftLearning), false).is_err());
        assert_eq!(tokens.open_people(&people, "p:4512345").unwrap().kind, LinkKind::PartnerUniversity);
        assert!(tokens.open_people(&people, "p:4599999").is_err());
    }
}
