//! `idlinkd --dev`: everything on one machine with no outside service — sled under ./data and
//! the development identity provider on loopback, configured exactly like production would
//! configure Microsoft's (the service cannot tell the difference).

use std::{net::SocketAddr, path::PathBuf};

use secrecy::SecretString;

use crate::{
    config::{AuthSettings, ConfigError, DevSettings, FlowSettings, KindConfig, KindsSettings, Settings, StoreSettings},
    domain::CONSUMER_TENANT,
    oidc::devidp::{
        CONTOSO_TENANT, DEV_AUDIENCE, DEV_PORTAL_CLIENT, DEV_REDIRECT_URI, DevClient, FABRIKAM_TENANT, SERVICES_TENANT, authority,
        default_apps,
    },
};

const CLIENT_IDS: [&str; 2] = ["idlink-partner-university", "idlink-microsoft-learning"];

/// `--dev-redis` keeps its keys under this prefix unless `--dev-prefix` names another.
pub const DEV_KEY_PREFIX: &str = "idlink-dev";

/// `--dev` listens on loopback only: its provider hands out tokens of any role to whoever
/// reaches it, and idlinkd trusts them.
pub fn loopback_only(flag: &str, addr: SocketAddr) -> Result<SocketAddr, ConfigError> {
    if addr.ip().is_loopback() {
        Ok(addr)
    } else {
        Err(ConfigError::Invalid(format!("{flag} {addr}: --dev listens on loopback addresses only (127.0.0.1 or ::1)")))
    }
}

/// The key prefix of `--dev --dev-redis`: never the production default, so a development
/// replica pointed at a shared Redis by mistake cannot write a deployment's keys.
pub fn dev_key_prefix(requested: Option<&str>) -> Result<String, ConfigError> {
    match requested.unwrap_or(DEV_KEY_PREFIX) {
        "idlink" => Err(ConfigError::Invalid("--dev-prefix idlink: that is the production default; --dev uses idlink-dev".into())),
        prefix => Ok(prefix.to_owned()),
    }
}

/// One OAuth client per link kind, with a fresh random secret per run (tests).
pub fn dev_clients() -> Vec<DevClient> {
    clients(|_| crate::domain::LinkId::random().as_str().to_owned())
}

/// The clients of `idlinkd --dev`: their secrets are derived from the client id, so that a
/// second `idlinkd --dev --dev-idp URL` can use the provider the first one started (loopback,
/// development only).
pub fn shared_dev_clients() -> Vec<DevClient> {
    clients(|id| format!("{id}-development-secret"))
}

fn clients(secret: impl Fn(&str) -> String) -> Vec<DevClient> {
    CLIENT_IDS
        .into_iter()
        .map(|id| DevClient { client_id: id.to_owned(), client_secret: secret(id), redirect_uris: vec![DEV_REDIRECT_URI.to_owned()] })
        .collect()
}

/// Settings pointing idlinkd at the development provider served from `idp_base`.
pub fn dev_settings(idp_base: &str, clients: &[DevClient], listen: SocketAddr, data: PathBuf) -> Settings {
    let kind = |client: &DevClient| KindConfig {
        authority: authority(idp_base, CONSUMER_TENANT),
        client_id: client.client_id.clone(),
        client_secret: SecretString::from(client.client_secret.clone()),
        redirect_uris: client.redirect_uris.clone(),
    };
    Settings {
        listen,
        store: StoreSettings { path: data, ..StoreSettings::default() },
        auth: AuthSettings {
            audience: DEV_AUDIENCE.into(),
            allowed_tenants: vec![CONTOSO_TENANT.into(), FABRIKAM_TENANT.into()],
            issuer_template: authority(idp_base, "{tid}"),
            service_tenant: Some(SERVICES_TENANT.into()),
            service_apps: default_apps().into_iter().map(|app| app.client_id).collect(),
            user_clients: vec![DEV_PORTAL_CLIENT.into()],
            leeway_seconds: 120,
            jwks_refetch_seconds: 300,
        },
        kinds: KindsSettings { partner_university: clients.first().map(kind), microsoft_learning: clients.get(1).map(kind) },
        flows: FlowSettings::default(),
        server: Default::default(),
        telemetry: Default::default(),
        limits: crate::limits::LimitSettings::default(),
        credit: Default::default(),
        events: Default::default(),
        dev: DevSettings { allow_insecure_http: true },
    }
}
