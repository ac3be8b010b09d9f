//! Who may do what (DESIGN.md, "Who may do what"): one table, pure, consulted by every RPC.
//! The caller is a [`Principal`] built from a validated token; personal data visibility
//! (invariant 9) is decided here too.

use std::collections::BTreeSet;

use super::{AccountKey, DomainError, Link, TenantId};

/// Delegated-token roles that make a work user an admin of their own organisation.
pub const ADMIN_ROLES: [&str; 3] = ["Partner.GlobalAdmin", "Partner.UserManagementAdmin", "Partner.MpnAdmin"];

/// App roles a backend service can hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AppRole {
    LinksRead,
    CertificationsWrite,
    CreditsRecalculate,
    OrganizationsWrite,
}

impl AppRole {
    pub const ALL: [AppRole; 4] =
        [AppRole::LinksRead, AppRole::CertificationsWrite, AppRole::CreditsRecalculate, AppRole::OrganizationsWrite];

    pub fn claim(self) -> &'static str {
        match self {
            AppRole::LinksRead => "Links.Read",
            AppRole::CertificationsWrite => "Certifications.Write",
            AppRole::CreditsRecalculate => "Credits.Recalculate",
            AppRole::OrganizationsWrite => "Organizations.Write",
        }
    }

    pub fn from_claim(claim: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.claim() == claim)
    }
}

/// An authenticated caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Principal {
    /// A work user (delegated token with `Links.Manage`), possibly an admin of their tenant.
    User { key: AccountKey, upn: String, admin: bool },
    /// A backend service (client-credentials token).
    App { tenant: TenantId, app_id: String, roles: BTreeSet<AppRole> },
}

/// What a caller asks to do.
#[derive(Clone, Copy, Debug)]
pub enum Operation<'a> {
    BeginLink,
    CompleteLink,
    GetLinks { of: &'a AccountKey },
    RemoveLink { of: &'a AccountKey },
    ListLinks { organization: &'a TenantId },
    ResolvePersonalAccount,
    WatchLinkEvents,
    RecordCertifications,
    ReadCredit { organization: &'a TenantId },
    RecalculateCredits,
    UpsertOrganization,
}

impl Principal {
    /// The work user acting, for operations only users may perform.
    pub fn user(&self) -> Option<&AccountKey> {
        match self {
            Principal::User { key, .. } => Some(key),
            Principal::App { .. } => None,
        }
    }

    fn has_role(&self, role: AppRole) -> bool {
        matches!(self, Principal::App { roles, .. } if roles.contains(&role))
    }

    fn admin_of(&self, tenant: &TenantId) -> bool {
        matches!(self, Principal::User { key, admin: true, .. } if &key.tenant == tenant)
    }

    /// May this caller perform `operation`?
    pub fn authorize(&self, operation: Operation<'_>) -> Result<(), DomainError> {
        let allowed = match (self, operation) {
            (Principal::User { .. }, Operation::BeginLink | Operation::CompleteLink) => true,
            (Principal::App { .. }, Operation::BeginLink | Operation::CompleteLink) => return Err(DomainError::CallerNotAUser),
            (Principal::User { key, .. }, Operation::GetLinks { of } | Operation::RemoveLink { of }) => {
                key == of || self.admin_of(&of.tenant)
            }
            (Principal::App { .. }, Operation::GetLinks { .. } | Operation::RemoveLink { .. }) => false,
            (_, Operation::ListLinks { organization }) => self.admin_of(organization) || self.has_role(AppRole::LinksRead),
            (_, Operation::ResolvePersonalAccount | Operation::WatchLinkEvents) => self.has_role(AppRole::LinksRead),
            (_, Operation::RecordCertifications) => self.has_role(AppRole::CertificationsWrite),
            (_, Operation::RecalculateCredits) => self.has_role(AppRole::CreditsRecalculate),
            (_, Operation::UpsertOrganization) => self.has_role(AppRole::OrganizationsWrite),
            // Everyone reads their own organisation's credit; the recalculation job any.
            (Principal::User { key, .. }, Operation::ReadCredit { organization }) => &key.tenant == organization,
            (Principal::App { .. }, Operation::ReadCredit { .. }) => self.has_role(AppRole::CreditsRecalculate),
        };
        if allowed { Ok(()) } else { Err(DomainError::NotPermitted) }
    }

    /// Whether the personal email and name of `link` may be shown to this caller: only to
    /// the work user it belongs to, whatever role anyone else holds (invariant 9).
    pub fn sees_personal_details_of(&self, link: &Link) -> bool {
        self.user() == Some(&link.work)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::CONSUMER_TENANT;

    const CONTOSO: &str = "3b1d6a6e-5a3c-4f0a-9c7e-2f6b8e1d4c01";
    const FABRIKAM: &str = "8e2f4b7a-1c9d-4e3f-a5b6-7c8d9e0f1a02";

    fn user(tenant: &str, n: u8, admin: bool) -> Principal {
        let key = AccountKey::parse(tenant, &format!("00000000-0000-0000-0000-0000000000{n:02x}")).unwrap();
        Principal::User { key, upn: String::new(), admin }
    }

    fn app(roles: &[AppRole]) -> Principal {
        Principal::App { tenant: TenantId::parse(CONTOSO).unwrap(), app_id: "a".into(), roles: roles.iter().copied().collect() }
    }

    #[test]
    fn admins_act_only_within_their_own_tenant() {
        let target = user(CONTOSO, 1, false).user().unwrap().clone();
        let contoso = TenantId::parse(CONTOSO).unwrap();
        assert!(user(CONTOSO, 9, true).authorize(Operation::RemoveLink { of: &target }).is_ok());
        assert!(user(FABRIKAM, 9, true).authorize(Operation::RemoveLink { of: &target }).is_err());
        assert!(user(CONTOSO, 2, false).authorize(Operation::GetLinks { of: &target }).is_err());
        assert!(user(CONTOSO, 9, true).authorize(Operation::ListLinks { organization: &contoso }).is_ok());
        assert!(user(FABRIKAM, 9, true).authorize(Operation::ListLinks { organization: &contoso }).is_err());
    }

    #[test]
    fn services_need_the_right_app_role() {
        let contoso = TenantId::parse(CONTOSO).unwrap();
        assert!(app(&[AppRole::LinksRead]).authorize(Operation::ResolvePersonalAccount).is_ok());
        assert!(app(&[AppRole::LinksRead]).authorize(Operation::ListLinks { organization: &contoso }).is_ok());
        for roles in [&[][..], &[AppRole::CertificationsWrite, AppRole::CreditsRecalculate, AppRole::OrganizationsWrite]] {
            assert!(app(roles).authorize(Operation::ResolvePersonalAccount).is_err());
        }
        assert_eq!(app(&AppRole::ALL).authorize(Operation::BeginLink), Err(DomainError::CallerNotAUser));
        assert!(user(CONTOSO, 9, true).authorize(Operation::ResolvePersonalAccount).is_err());
        for (role, op) in [
            (AppRole::CertificationsWrite, Operation::RecordCertifications),
            (AppRole::CreditsRecalculate, Operation::RecalculateCredits),
            (AppRole::OrganizationsWrite, Operation::UpsertOrganization),
            (AppRole::LinksRead, Operation::WatchLinkEvents),
        ] {
            assert!(app(&[role]).authorize(op).is_ok());
            let others: Vec<AppRole> = AppRole::ALL.into_iter().filter(|r| *r != role).collect();
            assert!(app(&others).authorize(op).is_err(), "{op:?} needs {role:?}");
            assert!(user(CONTOSO, 9, true).authorize(op).is_err());
        }
        assert!(user(CONTOSO, 2, false).authorize(Operation::ReadCredit { organization: &contoso }).is_ok());
        assert!(user(FABRIKAM, 9, true).authorize(Operation::ReadCredit { organization: &contoso }).is_err());
        assert!(app(&[AppRole::CreditsRecalculate]).authorize(Operation::ReadCredit { organization: &contoso }).is_ok());
        assert!(app(&[AppRole::LinksRead]).authorize(Operation::ReadCredit { organization: &contoso }).is_err());
    }

    #[test]
    fn only_the_owner_sees_personal_details() {
        let owner = user(CONTOSO, 1, false);
        let link = crate::domain::Link {
            id: crate::domain::LinkId::random(),
            kind: crate::domain::LinkKind::MicrosoftLearning,
            work: owner.user().unwrap().clone(),
            work_upn: String::new(),
            personal: AccountKey::parse(CONSUMER_TENANT, "00000000-0000-0000-0000-0000000000ff").unwrap(),
            personal_sub: String::new(),
            profile: Default::default(),
            created_at: chrono::Utc::now(),
            removal: None,
        };
        assert!(owner.sees_personal_details_of(&link));
        assert!(!user(CONTOSO, 9, true).sees_personal_details_of(&link));
        assert!(!app(&AppRole::ALL).sees_personal_details_of(&link));
    }
}
