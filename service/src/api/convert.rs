//! Proto ↔ domain. Requests are parsed into domain types here; links are rendered here, and
//! this is the one place that decides whether personal fields are shown (invariant 9).

use chrono::{DateTime, Utc};
use idlink_proto::v1 as pb;

use super::{page_token::PageTokens, status::ApiError};
use crate::{
    credits::{
        DEFAULT_PEOPLE_PAGE, MAX_PEOPLE_PAGE, MyAchievements, OrganizationRef, OrganizationScope, PeopleCursor, PeoplePage,
        RecalculationItem, RecordSummary,
    },
    domain::{
        AccountKey, Catalog, Certification, CertificationId, Credit, DomainError, EventType, LearningProfile, Link, LinkEvent, LinkKind,
        LinkMode, NotCounting, Organization, PartnerId, Principal, Tally, TenantId,
    },
    linking::{BeginRequest, Begun, CompleteRequest, RemoveRequest},
    store::{LinkPage, ListQuery},
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

/// A work account a request must name (a consumer-tenant account is not one).
pub fn work_user(requested: Option<&pb::AccountRef>) -> Result<AccountKey, ApiError> {
    let user = named_user(requested)?.ok_or(ApiError::InvalidArgument { field: "user", why: "is required" })?;
    if user.tenant.is_consumer() {
        return Err(ApiError::InvalidArgument { field: "user", why: "must be a work account" });
    }
    Ok(user)
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
        mcid: link.mcid.as_ref().map(|m| m.as_str().to_owned()).unwrap_or_default(),
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
    let name = catalog.area_name(area).to_owned();
    pb::AreaCredit { area_id: area.to_owned(), name, people: tally.people, certifications: tally.certifications }
}

fn source_to_proto(source: LinkKind) -> pb::AchievementSource {
    match source {
        LinkKind::MicrosoftLearning => pb::AchievementSource::MicrosoftLearning,
        LinkKind::PartnerUniversity => pb::AchievementSource::PartnerUniversity,
    }
}

/// A person's own view: every achievement with what it credits, or why not.
pub fn my_certifications(catalog: &Catalog, mine: &MyAchievements) -> pb::MyCertifications {
    let organization_id = mine.organization.as_str();
    let partner_id = mine.enrolled.as_ref().map(|o| o.partner_id.as_str()).unwrap_or_default();
    let certifications = mine
        .achievements
        .iter()
        .map(|own| {
            let a = &own.achievement;
            let (credits, not_counting) = match &own.counts {
                Ok(areas) => (areas.as_slice(), pb::NotCountingReason::Unspecified),
                Err(NotCounting::Expired) => (&[][..], pb::NotCountingReason::Expired),
                Err(NotCounting::NotInCatalog) => (&[][..], pb::NotCountingReason::NotInCatalog),
                Err(NotCounting::NotLinked) => (&[][..], pb::NotCountingReason::NotLinked),
            };
            pb::MyCertification {
                personal_account: Some(account_ref(&a.personal)),
                certification_id: a.id.as_str().to_owned(),
                title: catalog.title(a.source, &a.id).to_owned(),
                source: source_to_proto(a.source).into(),
                earned_at: Some(timestamp(a.earned_at)),
                expires_at: a.expires_at.map(timestamp),
                expiring_soon: own.expiring_soon,
                credits: credits
                    .iter()
                    .map(|area| pb::CreditedArea {
                        area_id: area.clone(),
                        name: catalog.area_name(area).to_owned(),
                        organization_id: organization_id.to_owned(),
                        partner_id: partner_id.to_owned(),
                    })
                    .collect(),
                not_counting: not_counting.into(),
            }
        })
        .collect();
    pb::MyCertifications { certifications, mcid: mine.mcid.as_ref().map(|m| m.as_str().to_owned()).unwrap_or_default() }
}

/// One tenant's credit (a recalculation's).
pub fn credit(catalog: &Catalog, organization: &TenantId, credit: &Credit, org: Option<&Organization>) -> pb::OrganizationCredit {
    pb::OrganizationCredit {
        organization_id: organization.as_str().to_owned(),
        partner_id: org.map(|o| o.partner_id.as_str().to_owned()).unwrap_or_default(),
        areas: credit.0.iter().map(|(area, tally)| area_credit(catalog, area, *tally)).collect(),
        tenant_ids: vec![organization.as_str().to_owned()],
    }
}

/// A whole organisation's credit, over its tenants.
pub fn organization_credit(catalog: &Catalog, scope: &OrganizationScope, credit: &Credit) -> pb::OrganizationCredit {
    pb::OrganizationCredit {
        organization_id: scope.asked.as_ref().map(|t| t.as_str().to_owned()).unwrap_or_default(),
        partner_id: scope.partner.as_ref().map(|p| p.as_str().to_owned()).unwrap_or_default(),
        areas: credit.0.iter().map(|(area, tally)| area_credit(catalog, area, *tally)).collect(),
        tenant_ids: scope.tenants.iter().map(|t| t.as_str().to_owned()).collect(),
    }
}

/// How a page token names the organisation: as the caller did.
fn named_as(named: &OrganizationRef) -> String {
    match named {
        OrganizationRef::Tenant(t) => format!("t:{}", t.as_str()),
        OrganizationRef::Partner(p) => format!("p:{}", p.as_str()),
    }
}

pub fn people_request(
    r: &pb::ListOrganizationPeopleRequest,
    tokens: &PageTokens,
) -> Result<(OrganizationRef, Option<PeopleCursor>, usize), ApiError> {
    let named = organization_ref(&r.organization_id, &r.partner_id)?;
    let from = match r.page_token.as_str() {
        "" => None,
        token => Some(tokens.open_people(text("page_token", token, 1024)?, &named_as(&named))?),
    };
    Ok((named, from, page_size_of(r.page_size, DEFAULT_PEOPLE_PAGE, MAX_PEOPLE_PAGE)?))
}

/// The skills report's page: ids, UPNs, MCIDs and achievement ids — no personal email or name.
pub fn people_page(
    catalog: &Catalog,
    page: &PeoplePage,
    named: &OrganizationRef,
    tokens: &PageTokens,
) -> pb::ListOrganizationPeopleResponse {
    let people = page
        .people
        .iter()
        .map(|p| pb::OrganizationPerson {
            work_user: Some(pb::WorkUser {
                tenant_id: p.work.tenant.as_str().to_owned(),
                object_id: p.work.object.as_str().to_owned(),
                user_principal_name: p.upn.clone(),
            }),
            partner_university_linked: p.university,
            microsoft_learning_linked: p.learning,
            mcid: p.mcid.as_ref().map(|m| m.as_str().to_owned()).unwrap_or_default(),
            areas: p
                .areas
                .iter()
                .map(|(area, ids)| pb::AreaAchievements {
                    area_id: area.clone(),
                    name: catalog.area_name(area).to_owned(),
                    certification_ids: ids.iter().map(|id| id.as_str().to_owned()).collect(),
                })
                .collect(),
        })
        .collect();
    pb::ListOrganizationPeopleResponse {
        people,
        next_page_token: page.next.as_ref().map(|c| tokens.seal_people(&named_as(named), c)).unwrap_or_default(),
        tenant_ids: page.scope.tenants.iter().map(|t| t.as_str().to_owned()).collect(),
    }
}

/// An organisation by one of its tenants or its PartnerID: exactly one of the two.
pub fn organization_ref(organization_id: &str, partner_id: &str) -> Result<OrganizationRef, ApiError> {
    match (organization_id.is_empty(), partner_id.is_empty()) {
        (false, true) => Ok(OrganizationRef::Tenant(tenant("organization_id", organization_id)?)),
        (true, false) => Ok(OrganizationRef::Partner(PartnerId::parse(partner_id)?)),
        _ => Err(ApiError::InvalidArgument {
            field: "organization_id",
            why: "name the organisation by organization_id or partner_id, one of them",
        }),
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
    let source = match pb::AchievementSource::try_from(c.source) {
        Ok(pb::AchievementSource::Unspecified | pb::AchievementSource::MicrosoftLearning) => LinkKind::MicrosoftLearning,
        Ok(pb::AchievementSource::PartnerUniversity) => LinkKind::PartnerUniversity,
        Err(_) => return Err(DomainError::SourceNotRecognised),
    };
    let id = CertificationId::parse(&c.certification_id)?;
    let earned_at = time("earned_at", c.earned_at.as_ref())?.ok_or(DomainError::InvalidField { field: "earned_at", why: "is required" })?;
    Certification::parse(catalog, personal, source, id, earned_at, time("expires_at", c.expires_at.as_ref())?)
}

pub fn learning_profile(p: &pb::LearningProfile) -> Result<LearningProfile, DomainError> {
    let account = p.personal_account.as_ref().ok_or(DomainError::InvalidField { field: "personal_account", why: "is required" })?;
    LearningProfile::parse(AccountKey::parse(&account.tenant_id, &account.object_id)?, &p.mcid)
}

// --- requests ---

pub fn begin_request(r: &pb::BeginLinkRequest) -> Result<BeginRequest<'_>, ApiError> {
    Ok(BeginRequest {
        kind: kind(r.kind)?,
        redirect_uri: text("redirect_uri", &r.redirect_uri, 2048)?,
        login_hint: optional_text("login_hint", r.login_hint.as_deref(), 256)?,
        mode: LinkMode { replace_existing: r.replace_existing, transfer: r.transfer, ..LinkMode::default() },
    })
}

pub fn complete_request(r: &pb::CompleteLinkRequest) -> Result<CompleteRequest<'_>, ApiError> {
    let error = optional_text("error", r.error.as_deref(), 256)?;
    Ok(CompleteRequest {
        state: text("state", &r.state, 512)?,
        code: if error.is_some() { "" } else { text("code", &r.code, 4096)? },
        iss: optional_text("iss", r.iss.as_deref(), 2048)?,
        error,
        redirect_uri: optional_text("redirect_uri", r.redirect_uri.as_deref(), 2048)?,
    })
}

pub fn remove_request(r: &pb::RemoveLinkRequest) -> Result<RemoveRequest<'_>, ApiError> {
    Ok(RemoveRequest {
        kind: kind(r.kind)?,
        named: named_user(r.user.as_ref())?,
        reason: optional_text("reason", Some(r.reason.as_str()), 200)?,
        etag: optional_text("etag", Some(r.etag.as_str()), 64)?,
    })
}

pub const DEFAULT_PAGE_SIZE: usize = 50;
pub const MAX_PAGE_SIZE: usize = 200;

/// A ListLinks page size: [`DEFAULT_PAGE_SIZE`] for 0, at most [`MAX_PAGE_SIZE`].
pub fn page_limit(page_size: i32) -> Result<usize, ApiError> {
    page_size_of(page_size, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
}

/// A listing's page size: `default` for 0, at most `max`, never negative.
fn page_size_of(page_size: i32, default: usize, max: usize) -> Result<usize, ApiError> {
    match page_size {
        0 => Ok(default),
        n if n < 0 => Err(ApiError::InvalidArgument { field: "page_size", why: "must not be negative" }),
        n => Ok(usize::try_from(n).unwrap_or(max).min(max)),
    }
}

/// The organisation, the listing query and, from the page token, where it resumes.
pub fn list_request(r: &pb::ListLinksRequest, tokens: &PageTokens) -> Result<(TenantId, ListQuery), ApiError> {
    let organization = tenant("organization_id", &r.organization_id)?;
    let kind = if r.kind == pb::LinkKind::Unspecified as i32 { None } else { Some(kind(r.kind)?) };
    let after = match r.page_token.as_str() {
        "" => None,
        token => Some(tokens.open(token, &organization, kind, r.include_removed)?),
    };
    Ok((organization, ListQuery { kind, include_removed: r.include_removed, after, limit: page_limit(r.page_size)? }))
}

pub fn personal_account(raw: Option<&pb::AccountRef>) -> Result<AccountKey, ApiError> {
    let raw = raw.ok_or(ApiError::InvalidArgument { field: "personal_account", why: "is required" })?;
    Ok(AccountKey::parse(&raw.tenant_id, &raw.object_id)?)
}

pub fn tenants(field: &'static str, raw: &[String]) -> Result<Vec<TenantId>, ApiError> {
    raw.iter().map(|id| tenant(field, id)).collect()
}

pub fn organization(r: &pb::UpsertOrganizationRequest, now: DateTime<Utc>) -> Result<Organization, ApiError> {
    Ok(Organization {
        tenant: tenant("tenant_id", &r.tenant_id)?,
        partner_id: PartnerId::parse(&r.partner_id)?,
        name: text("name", &r.name, 256)?.to_owned(),
        updated_at: now,
    })
}

// --- answers ---

pub fn begun(begun: Begun) -> pb::BeginLinkResponse {
    pb::BeginLinkResponse { authorization_url: begun.authorization_url, state: begun.state, expires_at: Some(timestamp(begun.expires_at)) }
}

pub fn links(links: &[Link], viewer: &Principal) -> Vec<pb::Link> {
    links.iter().map(|l| link(l, viewer)).collect()
}

/// GetLinks' answer: the links as `viewer` may see them, and the owner's next associations.
pub fn links_of(of: &crate::linking::LinksOf, viewer: &Principal) -> pb::GetLinksResponse {
    pb::GetLinksResponse {
        links: links(&of.links, viewer),
        next_associations: of
            .next_associations
            .iter()
            .map(|(kind, at)| pb::NextAssociation { kind: kind_to_proto(*kind) as i32, next_association_available_at: at.map(timestamp) })
            .collect(),
    }
}

pub fn link_page(
    page: &LinkPage,
    organization: &TenantId,
    query: &ListQuery,
    tokens: &PageTokens,
    viewer: &Principal,
) -> pb::ListLinksResponse {
    pb::ListLinksResponse {
        links: links(&page.links, viewer),
        next_page_token: page.next.as_ref().map(|n| tokens.seal(organization, query.kind, query.include_removed, n)).unwrap_or_default(),
    }
}

pub fn resolved(resolved: &Link, viewer: &Principal) -> pb::ResolvePersonalAccountResponse {
    pb::ResolvePersonalAccountResponse {
        work_user: link(resolved, viewer).work_user,
        organization_id: resolved.work.tenant.as_str().to_owned(),
        link_id: resolved.id.as_str().to_owned(),
    }
}

pub fn organization_answer(saved: Organization) -> pb::Organization {
    pb::Organization {
        organization_id: saved.tenant.as_str().to_owned(),
        partner_id: saved.partner_id.as_str().to_owned(),
        name: saved.name,
        updated_at: Some(timestamp(saved.updated_at)),
    }
}

fn rejections(rejections: Vec<(u64, DomainError)>) -> Vec<pb::Rejection> {
    rejections
        .into_iter()
        .map(|(index, why)| pb::Rejection { index, reason: super::status::reason(&why.clone().into()).to_owned(), detail: why.to_string() })
        .collect()
}

pub fn record_summary(s: RecordSummary) -> pb::RecordCertificationsResponse {
    pb::RecordCertificationsResponse {
        accepted: s.accepted,
        duplicates: s.duplicates,
        rejected: s.rejected,
        rejections: rejections(s.rejections),
    }
}

pub fn profiles_summary(s: RecordSummary) -> pb::RecordLearningProfilesResponse {
    pb::RecordLearningProfilesResponse {
        accepted: s.accepted,
        duplicates: s.duplicates,
        rejected: s.rejected,
        rejections: rejections(s.rejections),
    }
}

pub fn recalculation_item(catalog: &Catalog, item: RecalculationItem) -> pb::RecalculateCreditsResponse {
    use pb::recalculate_credits_response::Item;
    let item = match item {
        RecalculationItem::Organization { tenant, outcome, organization } => Item::Organization(pb::OrganizationRecalculation {
            credit: Some(credit(catalog, &tenant, &outcome.recomputed, organization.as_ref())),
            drift: drift(catalog, &outcome.stored, &outcome.recomputed),
        }),
        RecalculationItem::Summary { organizations, drifted } => Item::Summary(pb::RecalculationSummary { organizations, drifted }),
    };
    pb::RecalculateCreditsResponse { item: Some(item) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_sizes_default_to_fifty_and_stop_at_two_hundred() {
        for (asked, got) in [(0, 50), (1, 1), (200, 200), (201, 200), (100_000, 200), (i32::MAX, 200)] {
            assert_eq!(page_limit(asked).unwrap(), got, "{asked}");
        }
        for negative in [-1, i32::MIN] {
            assert!(matches!(page_limit(negative), Err(ApiError::InvalidArgument { field: "page_size", .. })));
        }
    }
}
