//! Proto ↔ domain. Requests are parsed into domain types here; links are rendered here, and
//! this is the one place that decides whether personal fields are shown (invariant 9).

use chrono::{DateTime, Utc};
use idlink_proto::v1 as pb;

use super::status::ApiError;
use crate::domain::{AccountKey, Link, LinkKind, Principal, TenantId};

pub fn kind(raw: i32) -> Result<LinkKind, ApiError> {
    match pb::LinkKind::try_from(raw) {
        Ok(pb::LinkKind::PartnerUniversity) => Ok(LinkKind::PartnerUniversity),
        Ok(pb::LinkKind::MicrosoftLearning) => Ok(LinkKind::MicrosoftLearning),
        _ => Err(ApiError::InvalidArgument { field: "kind", why: "must be PARTNER_UNIVERSITY or MICROSOFT_LEARNING" }),
    }
}

fn kind_to_proto(kind: LinkKind) -> pb::LinkKind {
    match kind {
        LinkKind::PartnerUniversity => pb::LinkKind::PartnerUniversity,
        LinkKind::MicrosoftLearning => pb::LinkKind::MicrosoftLearning,
    }
}

/// A bounded, non-empty printable string.
pub fn text<'a>(field: &'static str, value: &'a str, max: usize) -> Result<&'a str, ApiError> {
    if value.is_empty() {
        return Err(ApiError::InvalidArgument { field, why: "is required" });
    }
    if value.len() > max || value.chars().any(char::is_control) {
        return Err(ApiError::InvalidArgument { field, why: "is too long or has control characters" });
    }
    Ok(value)
}

pub fn optional_text<'a>(field: &'static str, value: Option<&'a str>, max: usize) -> Result<Option<&'a str>, ApiError> {
    value.filter(|v| !v.is_empty()).map(|v| text(field, v, max)).transpose()
}

/// The work user a request names, or the calling user when it names none.
pub fn subject_user(requested: Option<&pb::AccountRef>, caller: &Principal) -> Result<AccountKey, ApiError> {
    match (requested, caller.user()) {
        (Some(r), _) if !(r.tenant_id.is_empty() && r.object_id.is_empty()) => {
            AccountKey::parse(&r.tenant_id, &r.object_id).map_err(ApiError::from)
        }
        (_, Some(own)) => Ok(own.clone()),
        // A service has no links of its own, and may not read a user's (it lists or resolves).
        (_, None) => Err(crate::domain::DomainError::NotPermitted.into()),
    }
}

pub fn tenant(field: &'static str, raw: &str) -> Result<TenantId, ApiError> {
    TenantId::parse(raw).map_err(|_| ApiError::InvalidArgument { field, why: "must be a tenant id (GUID)" })
}

pub fn timestamp(at: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp { seconds: at.timestamp(), nanos: i32::try_from(at.timestamp_subsec_nanos()).unwrap_or(0) }
}

fn account_ref(key: &AccountKey) -> pb::AccountRef {
    pb::AccountRef { tenant_id: key.tenant.as_str().to_owned(), object_id: key.object.as_str().to_owned() }
}

/// Renders a link for `viewer`: the personal email and name only when the domain says the
/// viewer may see them (the work user the link belongs to). Every RPC renders links here.
pub fn link(link: &Link, viewer: &Principal) -> pb::Link {
    let owner_views = viewer.sees_personal_details_of(link);
    pb::Link {
        id: link.id.as_str().to_owned(),
        kind: kind_to_proto(link.kind).into(),
        work_user: Some(pb::WorkUser {
            tenant_id: link.work.tenant.as_str().to_owned(),
            object_id: link.work.object.as_str().to_owned(),
            user_principal_name: link.work_upn.clone(),
        }),
        personal_account: Some(pb::PersonalAccount {
            tenant_id: link.personal.tenant.as_str().to_owned(),
            object_id: link.personal.object.as_str().to_owned(),
            subject: link.personal_sub.clone(),
            email: if owner_views { link.profile.email.clone() } else { String::new() },
            display_name: if owner_views { link.profile.name.clone() } else { String::new() },
        }),
        state: if link.is_active() { pb::LinkState::Active } else { pb::LinkState::Removed }.into(),
        created_at: Some(timestamp(link.created_at)),
        removal: link.removal.as_ref().map(|r| pb::Removal {
            removed_by: Some(account_ref(&r.by)),
            removed_at: Some(timestamp(r.at)),
            reason: r.reason.clone(),
        }),
    }
}
