//! Who may do what (docs/design.md, "Who may do what"): one table, pure, consulted by every RPC.
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

/// The apps whose app roles count (invariant 11): registrations in our own service tenant,
/// each named by client id. An app of any other tenant — a partner tenant included, whose
/// admin can register an app and consent to idlink's roles there — is given nothing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServiceApps {
    tenant: Option<TenantId>,
    apps: BTreeSet<String>,
}

impl ServiceApps {
    pub fn new(tenant: Option<TenantId>, apps: impl IntoIterator<Item = String>) -> Self {
        Self { tenant, apps: apps.into_iter().collect() }
    }

    /// The service tenant, whose tokens are validated beside the partner tenants'.
    pub fn tenant(&self) -> Option<&TenantId> {
        self.tenant.as_ref()
    }

    /// No app may call (neither `service_tenant` nor `service_apps` configured).
    pub fn is_empty(&self) -> bool {
        self.tenant.is_none() || self.apps.is_empty()
    }

    /// Whether an app-only token of `tenant` issued to `app_id` counts as one of our services.
    pub fn admits(&self, tenant: &TenantId, app_id: &str) -> bool {
        self.tenant.as_ref() == Some(tenant) && self.apps.contains(app_id)
    }
}

/// What a work user's token says about their place in its tenant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Membership {
    Member,
    /// A personal Microsoft account invited into the tenant ("personal email IDs aren't
    /// supported").
    PersonalGuest,
    /// Any other guest: another work tenant's user (B2B), a Google or one-time-passcode guest.
    Guest,
}

impl Membership {
    /// Decides from the token's `idp` and `acct` claims. `own_issuers` are the values of
    /// `idp` that name the token's own tenant (Entra omits `idp` for members, or names the
    /// tenant's own issuer). Guests cannot own links: Partner Center does not let them in, and
    /// credit would go to the host organisation (invariant 11).
    pub fn of(idp: Option<&str>, acct: Option<i64>, own_issuers: &[&str]) -> Self {
        match idp {
            Some(idp) if idp.eq_ignore_ascii_case("live.com") || idp.to_ascii_lowercase().contains(super::CONSUMER_TENANT) => {
                Membership::PersonalGuest
            }
            Some(idp) if !own_issuers.iter().any(|own| own.trim_end_matches('/') == idp.trim_end_matches('/')) => Membership::Guest,
            _ if acct == Some(1) => Membership::Guest,
            _ => Membership::Member,
        }
    }
}

/// An authenticated caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Principal {
    /// A work user (delegated token with `Links.Manage`), possibly an admin of their tenant.
    User { key: AccountKey, upn: String, admin: bool },
    /// One of our backend services (a client-credentials token of an app [`ServiceApps`] admits).
    App { tenant: TenantId, app_id: String, roles: BTreeSet<AppRole> },
}

/// What a caller asks to do.
#[derive(Clone, Copy, Debug)]
pub enum Operation<'a> {
    BeginLink,
    CompleteLink,
    GetLinks {
        of: &'a AccountKey,
    },
    RemoveLink {
        of: &'a AccountKey,
    },
    ListLinks {
        organization: &'a TenantId,
    },
    ResolvePersonalAccount,
    WatchLinkEvents,
    RecordCertifications,
    RecordLearningProfiles,
    /// A person's own view of their achievements: theirs alone, admins included.
    ReadOwnAchievements {
        of: &'a AccountKey,
    },
    /// An organisation's credit, numbers only: `tenants` are all of the organisation's.
    ReadCredit {
        tenants: &'a [TenantId],
    },
    /// The skills report: an organisation's people one by one (`tenants`, all of its).
    ListPeople {
        tenants: &'a [TenantId],
    },
    RecalculateCredits,
    UpsertOrganization,
    /// A deleted work account's links: its tenant's admins, or enrolment.
    RemoveWorkUser {
        of: &'a AccountKey,
    },
}

impl Principal {
    /// Whose links a request is about: the work user it names, or the calling user when it
    /// names none. A service has no links of its own, and may not read a user's (it lists or
    /// resolves), so it must name one — and is then refused by [`Self::authorize`].
    pub fn subject(&self, named: Option<AccountKey>) -> Result<AccountKey, DomainError> {
        match (named, self.user()) {
            (Some(named), _) => Ok(named),
            (None, Some(own)) => Ok(own.clone()),
            (None, None) => Err(DomainError::NotPermitted),
        }
    }

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
            (_, Operation::RecordCertifications | Operation::RecordLearningProfiles) => self.has_role(AppRole::CertificationsWrite),
            (Principal::User { key, .. }, Operation::ReadOwnAchievements { of }) => key == of,
            (Principal::App { .. }, Operation::ReadOwnAchievements { .. }) => return Err(DomainError::CallerNotAUser),
            (_, Operation::RecalculateCredits) => self.has_role(AppRole::CreditsRecalculate),
            (_, Operation::UpsertOrganization) => self.has_role(AppRole::OrganizationsWrite),
            (_, Operation::RemoveWorkUser { of }) => self.admin_of(&of.tenant) || self.has_role(AppRole::OrganizationsWrite),
            // Everyone reads their own organisation's credit; the recalculation job any.
            (Principal::User { key, .. }, Operation::ReadCredit { tenants }) => tenants.contains(&key.tenant),
            (Principal::App { .. }, Operation::ReadCredit { .. }) => self.has_role(AppRole::CreditsRecalculate),
            (_, Operation::ListPeople { tenants }) => {
                tenants.iter().any(|t| self.admin_of(t)) || self.has_role(AppRole::CreditsRecalculate)
            }
        };
        if allowed { Ok(()) } else { Err(DomainError::NotPermitted) }
    }

    /// Whether the personal email and name of `link` may be shown to this caller: only to
    /// the work user it belongs to, whatever role anyone else holds (invariant 9).
    pub fn sees_personal_details_of(&self, link: &Link) -> bool {
        self.user() == Some(&link.work)
    }

    /// Whether this caller may see who removed `link`. A transferred link was "removed" by its
    /// new owner, at their new employer: the old organisation, its former user and services
    /// learn that it moved, never to whom (invariant 13). The store and the audit log keep it.
    pub fn sees_remover_of(&self, link: &Link) -> bool {
        match &link.removal {
            Some(removal) if removal.reason == super::REASON_TRANSFERRED => self.user() == Some(&removal.by),
            _ => true,
        }
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
        assert!(user(CONTOSO, 2, false).authorize(Operation::ReadCredit { tenants: std::slice::from_ref(&contoso) }).is_ok());
        assert!(user(FABRIKAM, 9, true).authorize(Operation::ReadCredit { tenants: std::slice::from_ref(&contoso) }).is_err());
        assert!(app(&[AppRole::CreditsRecalculate]).authorize(Operation::ReadCredit { tenants: std::slice::from_ref(&contoso) }).is_ok());
        assert!(app(&[AppRole::LinksRead]).authorize(Operation::ReadCredit { tenants: std::slice::from_ref(&contoso) }).is_err());
    }

    #[test]
    fn an_organisation_of_several_tenants_is_read_from_any_of_them() {
        let (contoso, fabrikam) = (TenantId::parse(CONTOSO).unwrap(), TenantId::parse(FABRIKAM).unwrap());
        let both = [contoso.clone(), fabrikam.clone()];
        assert!(user(FABRIKAM, 2, false).authorize(Operation::ReadCredit { tenants: &both }).is_ok());
        assert!(user(FABRIKAM, 2, false).authorize(Operation::ReadCredit { tenants: std::slice::from_ref(&contoso) }).is_err());
        // People one by one: admins of any of its tenants and the credit job, nobody else.
        assert!(user(FABRIKAM, 9, true).authorize(Operation::ListPeople { tenants: &both }).is_ok());
        assert!(user(FABRIKAM, 9, true).authorize(Operation::ListPeople { tenants: std::slice::from_ref(&contoso) }).is_err());
        assert!(user(CONTOSO, 2, false).authorize(Operation::ListPeople { tenants: &both }).is_err());
        assert!(app(&[AppRole::CreditsRecalculate]).authorize(Operation::ListPeople { tenants: &both }).is_ok());
        assert!(app(&[AppRole::LinksRead]).authorize(Operation::ListPeople { tenants: &both }).is_err());
    }

    #[test]
    fn a_deleted_work_account_is_removed_by_its_admins_or_enrolment() {
        let leaver = AccountKey::parse(CONTOSO, "00000000-0000-0000-0000-000000000002").unwrap();
        assert!(user(CONTOSO, 9, true).authorize(Operation::RemoveWorkUser { of: &leaver }).is_ok());
        assert!(app(&[AppRole::OrganizationsWrite]).authorize(Operation::RemoveWorkUser { of: &leaver }).is_ok());
        for refused in [user(FABRIKAM, 9, true), user(CONTOSO, 2, false), app(&[AppRole::LinksRead, AppRole::CreditsRecalculate])] {
            assert_eq!(refused.authorize(Operation::RemoveWorkUser { of: &leaver }), Err(DomainError::NotPermitted), "{refused:?}");
        }
    }

    #[test]
    fn a_persons_achievements_are_theirs_alone() {
        let own = AccountKey::parse(CONTOSO, "00000000-0000-0000-0000-000000000002").unwrap();
        assert!(user(CONTOSO, 2, false).authorize(Operation::ReadOwnAchievements { of: &own }).is_ok());
        assert_eq!(user(CONTOSO, 9, true).authorize(Operation::ReadOwnAchievements { of: &own }), Err(DomainError::NotPermitted));
        assert_eq!(user(CONTOSO, 3, false).authorize(Operation::ReadOwnAchievements { of: &own }), Err(DomainError::NotPermitted));
        assert_eq!(app(&AppRole::ALL).authorize(Operation::ReadOwnAchievements { of: &own }), Err(DomainError::CallerNotAUser));
        assert!(app(&[AppRole::CertificationsWrite]).authorize(Operation::RecordLearningProfiles).is_ok());
        assert!(app(&[AppRole::LinksRead]).authorize(Operation::RecordLearningProfiles).is_err());
    }

    #[test]
    fn only_named_apps_of_the_service_tenant_are_services() {
        let services = TenantId::parse("5e7ab1c4-0d2f-4a6b-9c8d-3f1e2d4c5b03").unwrap();
        let contoso = TenantId::parse(CONTOSO).unwrap();
        let apps = ServiceApps::new(Some(services.clone()), ["learning-feed".to_owned()]);
        assert!(apps.admits(&services, "learning-feed"));
        assert!(!apps.admits(&contoso, "learning-feed"), "a partner tenant's app of the same name");
        assert!(!apps.admits(&services, "another-app"), "an unlisted app of the service tenant");
        assert!(!ServiceApps::default().admits(&services, "learning-feed"), "nothing configured: no app");
        assert!(ServiceApps::new(Some(services), []).is_empty());
    }

    #[test]
    fn guests_of_any_kind_are_not_members() {
        let own = ["https://sts.windows.net/3b1d6a6e-5a3c-4f0a-9c7e-2f6b8e1d4c01/"];
        assert_eq!(Membership::of(None, None, &own), Membership::Member);
        assert_eq!(Membership::of(None, Some(0), &own), Membership::Member);
        assert_eq!(Membership::of(Some(own[0]), None, &own), Membership::Member);
        assert_eq!(Membership::of(Some("live.com"), None, &own), Membership::PersonalGuest);
        assert_eq!(
            Membership::of(Some("https://sts.windows.net/9188040d-6c67-4c5b-b112-36a304b66dad/"), None, &own),
            Membership::PersonalGuest
        );
        for idp in ["https://sts.windows.net/8e2f4b7a-1c9d-4e3f-a5b6-7c8d9e0f1a02/", "google.com", "mail", "facebook.com"] {
            assert_eq!(Membership::of(Some(idp), None, &own), Membership::Guest, "{idp}");
        }
        assert_eq!(Membership::of(None, Some(1), &own), Membership::Guest);
        assert_eq!(Membership::of(Some(own[0]), Some(1), &own), Membership::Guest);
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
            mcid: None,
        };
        assert!(owner.sees_personal_details_of(&link));
        assert!(!user(CONTOSO, 9, true).sees_personal_details_of(&link));
        assert!(!app(&AppRole::ALL).sees_personal_details_of(&link));

        let new_owner = user(FABRIKAM, 3, false);
        let moved = crate::domain::Link {
            removal: Some(crate::domain::Removal {
                by: new_owner.user().unwrap().clone(),
                at: chrono::Utc::now(),
                reason: crate::domain::REASON_TRANSFERRED.into(),
            }),
            ..link.clone()
        };
        assert!(new_owner.sees_remover_of(&moved));
        for viewer in [owner.clone(), user(CONTOSO, 9, true), app(&AppRole::ALL)] {
            assert!(!viewer.sees_remover_of(&moved), "{viewer:?}");
        }
        let removed_by_admin = crate::domain::Link {
            removal: Some(crate::domain::Removal {
                by: user(CONTOSO, 9, true).user().unwrap().clone(),
                at: chrono::Utc::now(),
                reason: "left".into(),
            }),
            ..link
        };
        assert!(owner.sees_remover_of(&removed_by_admin));
    }
}
