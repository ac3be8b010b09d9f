//! `idlinkd --dev`: everything on one machine with no outside service — sled under ./data and
//! the development identity provider on loopback, configured exactly like production would
//! configure Microsoft's (the service cannot tell the difference).

use std::{net::SocketAddr, path::PathBuf};

use secrecy::SecretString;

use crate::{
    config::{AuthSettings, Backend, ConfigError, DevSettings, FlowSettings, KindConfig, KindsSettings, Settings, StoreSettings},
    domain::CONSUMER_TENANT,
    limits::LimitSettings,
    oidc::devidp::{
        CONTOSO_TENANT, DEV_AUDIENCE, DEV_PORTAL_CLIENT, DEV_PORTAL_SIGNIN_URI, DEV_REDIRECT_URI, DevClient, DevIdp, FABRIKAM_TENANT,
        SERVICES_TENANT, authority, default_apps,
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

/// The link kinds' clients (Partner University's first, then Learning's), then the reference
/// portal's (its work users' sign-in).
fn clients(secret: impl Fn(&str) -> String) -> Vec<DevClient> {
    let mut clients: Vec<DevClient> = CLIENT_IDS
        .into_iter()
        .map(|id| DevClient { client_id: id.to_owned(), client_secret: secret(id), redirect_uris: vec![DEV_REDIRECT_URI.to_owned()] })
        .collect();
    clients.push(DevClient {
        client_id: DEV_PORTAL_CLIENT.to_owned(),
        client_secret: secret(DEV_PORTAL_CLIENT),
        redirect_uris: vec![DEV_PORTAL_SIGNIN_URI.to_owned()],
    });
    clients
}

/// Settings pointing idlinkd at the development provider served from `idp_base`.
pub fn dev_settings(idp_base: &str, clients: &[DevClient], listen: SocketAddr, data: PathBuf) -> Settings {
    let kind = |client: &DevClient| KindConfig {
        authority: authority(idp_base, CONSUMER_TENANT),
        client_id: client.client_id.clone(),
        client_secret: SecretString::from(client.client_secret.clone()),
        redirect_uris: client.redirect_uris.clone(),
        on_linked_elsewhere: None,
        associations_per_year: None,
        days_between_associations: None,
    };
    Settings {
        listen,
        store: StoreSettings { path: data, ..StoreSettings::default() },
        auth: AuthSettings {
            issuer_template: authority(idp_base, "{tid}"),
            service_tenant: Some(SERVICES_TENANT.into()),
            service_apps: default_apps().into_iter().map(|app| app.client_id).collect(),
            user_clients: vec![DEV_PORTAL_CLIENT.into()],
            ..AuthSettings::new(DEV_AUDIENCE, vec![CONTOSO_TENANT.into(), FABRIKAM_TENANT.into()])
        },
        kinds: KindsSettings { partner_university: clients.first().map(kind), microsoft_learning: clients.get(1).map(kind) },
        flows: FlowSettings::default(),
        server: Default::default(),
        telemetry: Default::default(),
        limits: LimitSettings::default(),
        credit: Default::default(),
        events: Default::default(),
        dev: DevSettings { allow_insecure_http: true },
    }
}

/// The `--dev` flags of idlinkd.
#[derive(Debug, clap::Args)]
pub struct DevArgs {
    /// With --dev: where idlinkd listens.
    #[arg(long, default_value = "127.0.0.1:50051")]
    pub dev_listen: SocketAddr,
    /// With --dev: where the development identity provider listens.
    #[arg(long, default_value = "127.0.0.1:50052")]
    pub dev_idp_listen: SocketAddr,
    /// With --dev: the data directory.
    #[arg(long, default_value = "data")]
    pub data: PathBuf,
    /// With --dev: keep links in this Redis (e.g. redis://127.0.0.1:6379) instead of sled.
    #[arg(long, requires = "dev")]
    pub dev_redis: Option<String>,
    /// With --dev-redis: the key prefix (default idlink-dev; never idlink, production's).
    #[arg(long, requires = "dev_redis")]
    pub dev_prefix: Option<String>,
    /// With --dev: use the development identity provider another `idlinkd --dev` started at
    /// this URL (e.g. http://127.0.0.1:50052) instead of starting one: a second replica.
    #[arg(long, requires = "dev")]
    pub dev_idp: Option<String>,
    /// With --dev: no BeginLink rate limits (load tests such as `idlink bench link`, whose
    /// callers begin far more flows than a person would).
    #[arg(long, requires = "dev")]
    pub dev_no_rate_limits: bool,
    /// With --dev: serve TLS with this certificate chain (PEM), e.g. to try a client's
    /// https:// settings or measure what TLS costs; still on loopback.
    #[arg(long, requires = "dev", requires = "dev_tls_key")]
    pub dev_tls_cert: Option<PathBuf>,
    /// With --dev-tls-cert: its private key (PEM).
    #[arg(long, requires = "dev_tls_cert")]
    pub dev_tls_key: Option<PathBuf>,
}

/// What `--dev` runs: the development provider (or another process's), and settings pointing
/// idlinkd at it. The provider, if started here, lives as long as the returned handle.
pub async fn dev_setup(
    args: &DevArgs,
    clock: crate::clock::DynClock,
) -> Result<(Option<DevIdp>, String, Settings), crate::app::StartupError> {
    let listen = loopback_only("--dev-listen", args.dev_listen)?;
    let idp_listen = loopback_only("--dev-idp-listen", args.dev_idp_listen)?;
    let clients = shared_dev_clients();
    let (idp, idp_base) = match &args.dev_idp {
        Some(base) => (None, base.trim_end_matches('/').to_owned()),
        None => {
            let idp = DevIdp::start(idp_listen, clients.clone(), clock).await?;
            let base = idp.base_url().to_owned();
            (Some(idp), base)
        }
    };
    let mut settings = dev_settings(&idp_base, &clients, listen, args.data.clone());
    if let Some(url) = &args.dev_redis {
        settings.store.backend = Backend::Redis;
        settings.store.redis_url = Some(url.clone());
        settings.store.key_prefix = dev_key_prefix(args.dev_prefix.as_deref())?;
    }
    if let (Some(cert_file), Some(key_file)) = (&args.dev_tls_cert, &args.dev_tls_key) {
        settings.server.tls =
            Some(crate::config::TlsSettings { cert_file: cert_file.clone(), key_file: key_file.clone(), client_ca_file: None });
    }
    if args.dev_no_rate_limits {
        settings.limits = LimitSettings {
            begin_per_user_burst: u32::MAX,
            begin_per_user_per_minute: u32::MAX,
            begin_global_burst: u32::MAX,
            begin_global_per_second: u32::MAX,
            ..LimitSettings::default()
        };
    }
    Ok((idp, idp_base, settings))
}

/// What `idlinkd --dev` prints once it listens.
pub fn banner(grpc: SocketAddr, idp_base: &str, args: &DevArgs) -> String {
    format!(
        "idlinkd --dev\n  gRPC:              {}://{grpc}\n  identity provider: {idp_base}\n  data:              {}\n  redirect URI:      {DEV_REDIRECT_URI}\n\
         Try it:  cargo run --bin idlink -- demo\n         cargo run --bin idlink -- token --user alex@contoso.example",
        if args.dev_tls_cert.is_some() { "https" } else { "http" },
        args.dev_redis.as_deref().unwrap_or(&args.data.display().to_string())
    )
}
