//! `idlinkd --dev`: everything on one machine with no outside service — sled under ./data and
//! the development identity provider on loopback, configured exactly like production would
//! configure Microsoft's (the service cannot tell the difference).

use std::{net::SocketAddr, path::PathBuf};

use secrecy::SecretString;

use crate::{
    config::{AuthSettings, DevSettings, FlowSettings, KindConfig, KindsSettings, Settings, StoreSettings},
    oidc::devidp::{CONTOSO_TENANT, DEV_AUDIENCE, DEV_REDIRECT_URI, DevClient, DevIdp, FABRIKAM_TENANT},
};

/// One OAuth client per link kind, with a fresh random secret per run.
pub fn dev_clients() -> Vec<DevClient> {
    ["idlink-partner-university", "idlink-microsoft-learning"]
        .into_iter()
        .map(|id| DevClient {
            client_id: id.to_owned(),
            client_secret: crate::domain::LinkId::random().as_str().to_owned(),
            redirect_uris: vec![DEV_REDIRECT_URI.to_owned()],
        })
        .collect()
}

/// Settings pointing idlinkd at a running development provider.
pub fn dev_settings(idp: &DevIdp, clients: &[DevClient], listen: SocketAddr, data: PathBuf) -> Settings {
    let kind = |client: &DevClient| KindConfig {
        authority: idp.consumer_authority(),
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
            issuer_template: idp.issuer_template(),
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
