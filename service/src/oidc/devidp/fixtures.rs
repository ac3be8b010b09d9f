//! Who exists at the development provider. Object ids derive from tenant + name, so they are
//! stable across restarts of `idlinkd --dev` (links under ./data stay meaningful).

use sha2::{Digest, Sha256};

use crate::domain::{AccountKey, CONSUMER_TENANT};

pub const CONTOSO_TENANT: &str = "3b1d6a6e-5a3c-4f0a-9c7e-2f6b8e1d4c01";
pub const FABRIKAM_TENANT: &str = "8e2f4b7a-1c9d-4e3f-a5b6-7c8d9e0f1a02";
/// Where the development services' app registrations live: a tenant of their own, no partner's.
pub const SERVICES_TENANT: &str = "5e7ab1c4-0d2f-4a6b-9c8d-3f1e2d4c5b03";
pub const DEV_AUDIENCE: &str = "api://idlink";
/// The client the development provider issues work users' delegated tokens to (the portal).
pub const DEV_PORTAL_CLIENT: &str = "idlink-portal";
pub const DEV_REDIRECT_URI: &str = "http://localhost:8080/profile/link/callback";
/// Where the development provider sends the reference portal's work sign-in back to.
pub const DEV_PORTAL_SIGNIN_URI: &str = "http://localhost:8080/signin/callback";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AccountType {
    /// A member of a work tenant.
    Work,
    /// A personal Microsoft account (consumer tenant).
    Personal,
    /// A personal Microsoft account invited as a guest into a work tenant (`idp = live.com`).
    GuestMsa,
}

#[derive(Clone, Debug)]
pub struct DevUser {
    pub key: AccountKey,
    pub login: String,
    pub name: String,
    pub account_type: AccountType,
    /// App roles assigned to the user (Partner Center admin roles).
    pub roles: Vec<String>,
}

/// A backend service's app registration: client-credentials tokens carry its roles.
#[derive(Clone, Debug)]
pub struct DevApp {
    pub client_id: String,
    pub tenant: String,
    pub roles: Vec<String>,
}

/// One app per role, and one without any (README lists them), in the services tenant.
pub fn default_apps() -> Vec<DevApp> {
    let app = |client_id: &str, roles: &[&str]| DevApp {
        client_id: client_id.to_owned(),
        tenant: SERVICES_TENANT.to_owned(),
        roles: roles.iter().map(|r| (*r).to_owned()).collect(),
    };
    vec![
        app("partner-university", &["Links.Read"]),
        app("learning-feed", &["Certifications.Write"]),
        app("credit-recalculation", &["Credits.Recalculate"]),
        app("enrolment", &["Organizations.Write"]),
        app("no-roles", &[]),
    ]
}

fn derived_guid(seed: &str) -> String {
    let d = Sha256::digest(seed.as_bytes());
    let h: String = d.iter().take(16).map(|b| format!("{b:02x}")).collect();
    format!("{}-{}-4{}-a{}-{}", &h[0..8], &h[8..12], &h[13..16], &h[17..20], &h[20..32])
}

impl DevUser {
    pub fn new(tenant: &str, login: &str, account_type: AccountType) -> Self {
        let tenant = if account_type == AccountType::Personal { CONSUMER_TENANT } else { tenant };
        let login = login.to_ascii_lowercase();
        let key = AccountKey::parse(tenant, &derived_guid(&format!("{tenant}/{login}")))
            .unwrap_or_else(|_| unreachable!("derived ids are GUIDs"));
        let name = login.split('@').next().unwrap_or_default().replace('.', " ");
        Self { key, login, name, account_type, roles: Vec::new() }
    }

    pub fn with_roles(mut self, roles: &[&str]) -> Self {
        self.roles = roles.iter().map(|r| (*r).to_owned()).collect();
        self
    }
}

/// The accounts every development provider starts with (README lists them).
pub fn default_users() -> Vec<DevUser> {
    vec![
        DevUser::new(CONTOSO_TENANT, "alex@contoso.example", AccountType::Work),
        DevUser::new(CONTOSO_TENANT, "blair@contoso.example", AccountType::Work),
        DevUser::new(FABRIKAM_TENANT, "casey@fabrikam.example", AccountType::Work),
        DevUser::new(CONSUMER_TENANT, "jordan@outlook.example", AccountType::Personal),
        DevUser::new(CONSUMER_TENANT, "sam@outlook.example", AccountType::Personal),
        DevUser::new(CONTOSO_TENANT, "river@outlook.example", AccountType::GuestMsa),
        DevUser::new(CONTOSO_TENANT, "admin@contoso.example", AccountType::Work).with_roles(&["Partner.GlobalAdmin"]),
        DevUser::new(FABRIKAM_TENANT, "admin@fabrikam.example", AccountType::Work).with_roles(&["Partner.MpnAdmin"]),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_ids_are_stable_guids() {
        let a = DevUser::new(CONTOSO_TENANT, "Alex@Contoso.example", AccountType::Work);
        let b = DevUser::new(CONTOSO_TENANT, "alex@contoso.example", AccountType::Work);
        assert_eq!(a.key, b.key);
        assert!(DevUser::new("x", "jordan@outlook.example", AccountType::Personal).key.tenant.is_consumer());
    }
}
