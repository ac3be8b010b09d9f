//! Proto ↔ domain. Requests are parsed into domain types here; links are rendered here, and
//! this is the one place that decides whether personal fields are shown (invariant 9).

use chrono::{DateTime, Utc};
use idlink_proto::v1 as pb;

use super::status::ApiError;
use crate::domain::{
    AccountKey, Catalog, Certification, CertificationId, Credit, DomainError, EventType, Link, LinkEvent, LinkKind, Organization,
    Principal, Tally, TenantId,
};

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

/// The work user a request names, if it names one (an empty reference names nobody).
pub fn named_user(requested: Option<&pb::AccountRef>) -> Result<Option<AccountKey>, ApiError> {
    match requested {
        Some(r) if !(r.tenant_id.is_empty() && r.object_id.is_empty()) => Ok(Some(AccountKey::parse(&r.tenant_id, &r.object_id)?)),
        _ => Ok(None),
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
            removed_by: viewer.sees_remover_of(link).then(|| account_ref(&r.by)),
            removed_at: Some(timestamp(r.at)),
            reason: r.reason.clone(),
        }),
        etag: link.etag(),
    }
}

pub fn event(event: &LinkEvent, viewer: &Principal) -> pb::LinkEvent {
    pb::LinkEvent {
        cursor: event.cursor,
        r#type: match event.event_type {
            EventType::Created => pb::LinkEventType::LinkCreated,
            EventType::Removed => pb::LinkEventType::LinkRemoved,
            EventType::Transferred => pb::LinkEventType::LinkTransferred,
        }
        .into(),
        link: Some(link(&event.link, viewer)),
        previous_link_id: event.previous.as_ref().map(|p| p.as_str().to_owned()).unwrap_or_default(),
        at: Some(timestamp(event.at)),
    }
}

fn area_credit(catalog: &Catalog, area: &str, tally: Tally) -> pb::AreaCredit {
    let name = catalog.areas().iter().find(|a| a.id == area).map(|a| a.name.clone()).unwrap_or_default();
    pb::AreaCredit { area_id: area.to_owned(), name, people: tally.people, certifications: tally.certifications }
}

pub fn credit(catalog: &Catalog, organization: &TenantId, credit: &Credit, org: Option<&Organization>) -> pb::OrganizationCredit {
    pb::OrganizationCredit {
        organization_id: organization.as_str().to_owned(),
        partner_id: org.map(|o| o.partner_id.as_str().to_owned()).unwrap_or_default(),
        areas: credit.0.iter().map(|(area, tally)| area_credit(catalog, area, *tally)).collect(),
    }
}

pub fn drift(catalog: &Catalog, stored: &Credit, recomputed: &Credit) -> Vec<pb::AreaDrift> {
    stored
        .drift_from(recomputed)
        .into_iter()
        .map(|(area, (s, r))| pb::AreaDrift {
            stored: Some(area_credit(catalog, &area, s)),
            recomputed: Some(area_credit(catalog, &area, r)),
            area_id: area,
        })
        .collect()
}

fn time(field: &'static str, t: Option<&prost_types::Timestamp>) -> Result<Option<DateTime<Utc>>, DomainError> {
    t.map(|t| {
        DateTime::from_timestamp(t.seconds, u32::try_from(t.nanos).unwrap_or(0))
            .ok_or(DomainError::InvalidField { field, why: "is out of range" })
    })
    .transpose()
}

/// A certification from the Learning feed, parsed, then held to the domain's rules.
pub fn certification(catalog: &Catalog, c: &pb::Certification) -> Result<Certification, DomainError> {
    let account = c.personal_account.as_ref().ok_or(DomainError::InvalidField { field: "personal_account", why: "is required" })?;
    let personal = AccountKey::parse(&account.tenant_id, &account.object_id)?;
    let id = CertificationId::parse(&c.certification_id)?;
    let earned_at = time("earned_at", c.earned_at.as_ref())?.ok_or(DomainError::InvalidField { field: "earned_at", why: "is required" })?;
    Certification::parse(catalog, personal, id, earned_at, time("expires_at", c.expires_at.as_ref())?)
}
