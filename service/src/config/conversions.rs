//! What the settings mean to each part of idlinkd, validated: a bad value is refused naming
//! its key. Secrets stay `SecretString` until they are used.

use std::time::Duration;

use super::{ConfigError, RedisCluster, Settings, StoreSettings};
use crate::{
    domain::{CONSUMER_TENANT, LinkKind, ServiceApps, TenantId},
    oidc::{InboundConfig, KindSettings},
    store::redis::{RedisOptions, SentinelOptions},
};

impl TryFrom<&StoreSettings> for RedisOptions {
    type Error = ConfigError;

    /// The Redis connection settings, validated (`store.backend = "redis"`).
    fn try_from(store: &StoreSettings) -> Result<Self, ConfigError> {
        let invalid = |why: &str| Err(ConfigError::Invalid(why.into()));
        let sentinels = &store.redis_sentinels;
        let seeds = match &store.redis_cluster {
            None | Some(RedisCluster::Enabled(false)) => None,
            Some(RedisCluster::Enabled(true)) => match &store.redis_url {
                Some(url) => Some(vec![url.clone()]),
                None => return invalid("store.redis_cluster = true needs store.redis_url (a seed node)"),
            },
            Some(RedisCluster::Seeds(seeds)) if seeds.is_empty() => return invalid("store.redis_cluster: name at least one seed node"),
            Some(RedisCluster::Seeds(_)) if store.redis_url.is_some() => {
                return invalid("store.redis_url and store.redis_cluster's seed nodes: set one");
            }
            Some(RedisCluster::Seeds(seeds)) => Some(seeds.clone()),
        };
        if seeds.is_some() && !sentinels.is_empty() {
            return invalid("store.redis_cluster and store.redis_sentinels: set one");
        }
        if store.redis_sentinel_master.is_some() && sentinels.is_empty() {
            return invalid("store.redis_sentinel_master needs store.redis_sentinels");
        }
        let (url, sentinel, cluster, tls) = match (seeds, &store.redis_url, sentinels.is_empty()) {
            (Some(seeds), _, _) => {
                let (seeds, tls) = redis_urls("store.redis_cluster", &seeds)?;
                (String::new(), None, Some(seeds), tls)
            }
            (None, Some(_), false) => {
                return invalid("store.redis_url and store.redis_sentinels: set one (the sentinels name the primary)");
            }
            (None, Some(url), true) => (url.clone(), None, None, redis_url("store.redis_url", url)?.scheme() == "rediss"),
            (None, None, true) => return invalid("store.redis_url (or store.redis_sentinels) is required when store.backend = \"redis\""),
            (None, None, false) => {
                let Some(master) = store.redis_sentinel_master.clone().filter(|m| !m.trim().is_empty()) else {
                    return invalid("store.redis_sentinels needs store.redis_sentinel_master (the name they monitor)");
                };
                let (sentinels, tls) = redis_urls("store.redis_sentinels", sentinels)?;
                (String::new(), Some(SentinelOptions { sentinels, master, password: store.redis_sentinel_password.clone() }), None, tls)
            }
        };
        let ca_pem = match &store.redis_ca_file {
            Some(path) if tls => Some(std::fs::read(path).map_err(|source| ConfigError::Read { path: path.clone(), source })?),
            Some(_) => {
                return Err(ConfigError::Invalid(
                    "store.redis_ca_file needs rediss:// (TLS) in store.redis_url or store.redis_sentinels".into(),
                ));
            }
            None => None,
        };
        if store.timeout_ms == 0 {
            return Err(ConfigError::Invalid("store.timeout_ms must be at least 1".into()));
        }
        Ok(RedisOptions {
            url: url.clone(),
            password: store.redis_password.clone(),
            ca_pem,
            key_prefix: store.key_prefix.clone(),
            timeout: Duration::from_millis(store.timeout_ms),
            require_durable: store.require_durable,
            wait_replicas: store.wait_replicas,
            wait_timeout: Duration::from_millis(store.wait_timeout_ms),
            sentinel,
            cluster,
        })
    }
}

/// The addresses of `key` (`host:port` or URLs) as checked URLs, and whether they are TLS: all
/// of them, or none.
fn redis_urls(key: &str, entries: &[String]) -> Result<(Vec<String>, bool), ConfigError> {
    let mut urls = Vec::new();
    for entry in entries {
        let url = if entry.contains("://") { entry.clone() } else { format!("redis://{entry}") };
        urls.push(redis_url(key, &url)?);
    }
    let tls = urls.first().is_some_and(|u| u.scheme() == "rediss");
    if urls.iter().any(|u| (u.scheme() == "rediss") != tls) {
        return Err(ConfigError::Invalid(format!("{key}: all redis:// or all rediss:// (TLS)")));
    }
    Ok((urls.iter().map(url::Url::to_string).collect(), tls))
}

/// A Redis URL of `key`, checked: redis:// or rediss://, no password (URLs get logged), no
/// `#insecure`.
fn redis_url(key: &str, url: &str) -> Result<url::Url, ConfigError> {
    let parsed = url::Url::parse(url).map_err(|e| ConfigError::Invalid(format!("{key}: {e}")))?;
    if !matches!(parsed.scheme(), "redis" | "rediss") {
        return Err(ConfigError::Invalid(format!("{key} must start with redis:// or rediss:// (TLS)")));
    }
    if parsed.fragment().is_some() {
        return Err(ConfigError::Invalid(format!(
            "{key} must not end in a #fragment: #insecure turns off TLS certificate checks (use store.redis_ca_file for a private CA)"
        )));
    }
    if parsed.password().is_some() {
        return Err(ConfigError::Invalid(format!(
            "{key} must not hold a password (URLs get logged): set store.redis_password (store.redis_sentinel_password for the sentinels), e.g. IDLINK_STORE__REDIS_PASSWORD"
        )));
    }
    Ok(parsed)
}

impl Settings {
    pub fn inbound(&self) -> Result<InboundConfig, ConfigError> {
        let auth = &self.auth;
        let tenant = |key: &str, t: &str| {
            let parsed = TenantId::parse(t).map_err(|_| ConfigError::Invalid(format!("{key}: {t:?} is not a tenant id")))?;
            if parsed.is_consumer() {
                return Err(ConfigError::Invalid(format!("{key} must not be the consumer tenant")));
            }
            Ok(parsed)
        };
        let allowed_tenants = auth.allowed_tenants.iter().map(|t| tenant("auth.allowed_tenants", t)).collect::<Result<Vec<_>, _>>()?;
        let service_tenant = auth.service_tenant.as_deref().map(|t| tenant("auth.service_tenant", t)).transpose()?;
        if let Some(app) = auth.service_apps.iter().chain(&auth.user_clients).find(|a| a.trim().is_empty() || a.len() > 128) {
            return Err(ConfigError::Invalid(format!("auth.service_apps / auth.user_clients: {app:?} is not a client id")));
        }
        match (&service_tenant, auth.service_apps.is_empty()) {
            (Some(_), true) => {
                return Err(ConfigError::Invalid(
                    "auth.service_tenant is set but auth.service_apps is empty: name the apps whose roles count".into(),
                ));
            }
            (None, false) => {
                return Err(ConfigError::Invalid(
                    "auth.service_apps needs auth.service_tenant, the tenant those apps are registered in".into(),
                ));
            }
            _ => {}
        }
        if !auth.issuer_template.contains("{tid}") {
            return Err(ConfigError::Invalid("auth.issuer_template must contain {tid}".into()));
        }
        match url::Url::parse(&auth.issuer_template.replace("{tid}", CONSUMER_TENANT)).map(|u| u.scheme().to_owned()).as_deref() {
            Ok("https") => {}
            Ok("http") if self.dev.allow_insecure_http => {}
            Ok("http") => {
                return Err(ConfigError::Invalid("auth.issuer_template: http is allowed only with dev.allow_insecure_http".into()));
            }
            _ => return Err(ConfigError::Invalid("auth.issuer_template must be an https URL".into())),
        }
        Ok(InboundConfig {
            audience: auth.audience.clone(),
            allowed_tenants,
            services: ServiceApps::new(service_tenant, auth.service_apps.iter().cloned()),
            user_clients: (!auth.user_clients.is_empty()).then(|| auth.user_clients.iter().cloned().collect()),
            issuer_template: auth.issuer_template.clone(),
            leeway: Duration::from_secs(auth.leeway_seconds),
            jwks_refetch_interval: Duration::from_secs(auth.jwks_refetch_seconds),
        })
    }

    pub fn kinds(&self) -> Vec<(LinkKind, KindSettings)> {
        [(LinkKind::PartnerUniversity, &self.kinds.partner_university), (LinkKind::MicrosoftLearning, &self.kinds.microsoft_learning)]
            .into_iter()
            .filter_map(|(kind, config)| {
                config.as_ref().map(|c| {
                    (
                        kind,
                        KindSettings {
                            authority: c.authority.clone(),
                            client_id: c.client_id.clone(),
                            client_secret: c.client_secret.clone(),
                            redirect_uris: c.redirect_uris.clone(),
                            rules: c.rules(kind),
                        },
                    )
                })
            })
            .collect()
    }
}

impl super::KindConfig {
    /// The kind's rules: what is set here, Partner Center's documented defaults for the rest.
    fn rules(&self, kind: LinkKind) -> crate::domain::KindRules {
        let defaults = crate::domain::KindRules::default_for(kind);
        crate::domain::KindRules {
            on_linked_elsewhere: self.on_linked_elsewhere.unwrap_or(defaults.on_linked_elsewhere),
            limit: crate::domain::AssociationLimit {
                per_year: self.associations_per_year.unwrap_or(defaults.limit.per_year),
                days_between: self.days_between_associations.unwrap_or(defaults.limit.days_between),
            },
        }
    }
}
