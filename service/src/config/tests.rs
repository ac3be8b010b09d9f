use std::time::Duration;

use secrecy::ExposeSecret;

use super::*;
use crate::{
    domain::{CONSUMER_TENANT, TenantId},
    store::redis::RedisOptions,
};

const FILE: &str = r#"
    [auth]
    audience = "api://idlink"
    allowed_tenants = ["3b1d6a6e-5a3c-4f0a-9c7e-2f6b8e1d4c01"]
    [kinds.microsoft_learning]
    authority = "https://login.microsoftonline.com/9188040d-6c67-4c5b-b112-36a304b66dad/v2.0"
    client_id = "abc"
    client_secret = "from-file"
    redirect_uris = ["https://partner.example/cb"]
"#;

fn load(env: &[(&str, &str)]) -> Result<Settings, ConfigError> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("idlink.toml");
    std::fs::write(&path, FILE).unwrap();
    Settings::load(Some(&path), env.iter().map(|(k, v)| (k.to_string(), v.to_string())))
}

#[test]
fn environment_overrides_the_file_and_secrets_stay_masked() {
    let s = load(&[
        ("IDLINK_KINDS__MICROSOFT_LEARNING__CLIENT_SECRET", "from-env"),
        ("IDLINK_FLOWS__TTL_SECONDS", "60"),
        ("IDLINK_TEST_REDIS_URL", "x"),
    ])
    .unwrap();
    let ml = s.kinds.microsoft_learning.as_ref().unwrap();
    assert_eq!(ml.client_secret.expose_secret(), "from-env");
    assert_eq!(s.flows.ttl_seconds, 60);
    assert!(!format!("{s:?}").contains("from-env"), "Debug must mask secrets");
}

#[test]
fn services_are_named_by_tenant_and_client_id_and_issuers_need_https() {
    let services = "5e7ab1c4-0d2f-4a6b-9c8d-3f1e2d4c5b03";
    let inbound = load(&[("IDLINK_AUTH__SERVICE_TENANT", services), ("IDLINK_AUTH__SERVICE_APPS", "[\"learning-feed\"]")])
        .unwrap()
        .inbound()
        .unwrap();
    assert!(inbound.services.admits(&TenantId::parse(services).unwrap(), "learning-feed"));
    assert!(!inbound.services.admits(&inbound.allowed_tenants[0], "learning-feed"));
    assert_eq!(inbound.user_clients, None);
    // Nothing configured: no app may call.
    assert!(load(&[]).unwrap().inbound().unwrap().services.is_empty());
    for (env, expected) in [
        (vec![("IDLINK_AUTH__SERVICE_TENANT", services)], "auth.service_apps is empty"),
        (vec![("IDLINK_AUTH__SERVICE_APPS", "[\"learning-feed\"]")], "auth.service_apps needs auth.service_tenant"),
        (vec![("IDLINK_AUTH__SERVICE_TENANT", "contoso")], "auth.service_tenant: \"contoso\" is not a tenant id"),
        (vec![("IDLINK_AUTH__SERVICE_TENANT", CONSUMER_TENANT)], "auth.service_tenant must not be the consumer tenant"),
        (vec![("IDLINK_AUTH__USER_CLIENTS", "[\"\"]")], "is not a client id"),
        (vec![("IDLINK_AUTH__ISSUER_TEMPLATE", "http://idp.example/{tid}/v2.0")], "http is allowed only with dev.allow_insecure_http"),
        (vec![("IDLINK_AUTH__ISSUER_TEMPLATE", "ftp://idp.example/{tid}/v2.0")], "must be an https URL"),
    ] {
        let err = load(&env).unwrap().inbound().unwrap_err().to_string();
        assert!(err.contains(expected), "{env:?}: {err}");
    }
    let dev_http = [("IDLINK_AUTH__ISSUER_TEMPLATE", "http://127.0.0.1:1/{tid}/v2.0"), ("IDLINK_DEV__ALLOW_INSECURE_HTTP", "true")];
    load(&dev_http).unwrap().inbound().unwrap();
}

#[test]
fn unknown_keys_are_errors() {
    let err = load(&[("IDLINK_AUTH__AUDIENCES", "x")]).unwrap_err();
    assert!(err.to_string().contains("audiences"), "{err}");
}

#[test]
fn redis_settings_are_checked_and_the_password_stays_out_of_the_url() {
    let redis = |env: &[(&str, &str)]| RedisOptions::try_from(&load(&[&[("IDLINK_STORE__BACKEND", "redis")], env].concat()).unwrap().store);
    let err = redis(&[]).unwrap_err().to_string();
    assert!(err.contains("store.redis_url (or store.redis_sentinels) is required"), "{err}");
    let err = redis(&[("IDLINK_STORE__REDIS_URL", "redis://:hunter2@cache:6379")]).unwrap_err().to_string();
    assert!(err.contains("store.redis_password") && !err.contains("hunter2"), "{err}");
    let err = redis(&[("IDLINK_STORE__REDIS_URL", "http://cache:6379")]).unwrap_err().to_string();
    assert!(err.contains("redis:// or rediss://"), "{err}");
    let err = redis(&[("IDLINK_STORE__REDIS_URL", "rediss://cache:6380/0#insecure")]).unwrap_err().to_string();
    assert!(err.contains("store.redis_url") && err.contains("#insecure"), "{err}");

    let env = [
        ("IDLINK_STORE__REDIS_URL", "rediss://cache:6380/2"),
        ("IDLINK_STORE__REDIS_PASSWORD", "123456"),
        ("IDLINK_STORE__REQUIRE_DURABLE", "true"),
        ("IDLINK_STORE__TIMEOUT_MS", "250"),
    ];
    let options = redis(&env).unwrap();
    // A password that looks like a number stays text.
    assert_eq!(
        (options.url.as_str(), options.password.as_ref().map(ExposeSecret::expose_secret)),
        ("rediss://cache:6380/2", Some("123456"))
    );
    assert_eq!((options.key_prefix.as_str(), options.require_durable, options.timeout), ("idlink", true, Duration::from_millis(250)));
    let settings = load(&[&[("IDLINK_STORE__BACKEND", "redis")], &env[..]].concat()).unwrap();
    assert!(!format!("{settings:?}").contains("123456"), "Debug must mask the Redis password");
}

#[test]
fn sentinels_replace_the_url_and_are_checked_like_it() {
    let redis = |env: &[(&str, &str)]| RedisOptions::try_from(&load(&[&[("IDLINK_STORE__BACKEND", "redis")], env].concat()).unwrap().store);
    let sentinels = ("IDLINK_STORE__REDIS_SENTINELS", r#"["sentinel-0:26379", "redis://sentinel-1:26379"]"#);
    let err = redis(&[sentinels]).unwrap_err().to_string();
    assert!(err.contains("store.redis_sentinel_master"), "{err}");
    let err = redis(&[sentinels, ("IDLINK_STORE__REDIS_SENTINEL_MASTER", "idlink"), ("IDLINK_STORE__REDIS_URL", "redis://cache:6379")])
        .unwrap_err()
        .to_string();
    assert!(err.contains("set one"), "{err}");
    let err = redis(&[
        ("IDLINK_STORE__REDIS_SENTINELS", r#"["redis://:hunter2@sentinel-0:26379"]"#),
        ("IDLINK_STORE__REDIS_SENTINEL_MASTER", "idlink"),
    ])
    .unwrap_err()
    .to_string();
    assert!(err.contains("store.redis_sentinel_password") && !err.contains("hunter2"), "{err}");
    let err = redis(&[
        ("IDLINK_STORE__REDIS_SENTINELS", r#"["rediss://a:26379", "b:26379"]"#),
        ("IDLINK_STORE__REDIS_SENTINEL_MASTER", "idlink"),
    ])
    .unwrap_err()
    .to_string();
    assert!(err.contains("all redis:// or all rediss://"), "{err}");
    let err = redis(&[("IDLINK_STORE__REDIS_URL", "redis://cache:6379"), ("IDLINK_STORE__REDIS_SENTINEL_MASTER", "idlink")])
        .unwrap_err()
        .to_string();
    assert!(err.contains("needs store.redis_sentinels"), "{err}");

    let options =
        redis(&[sentinels, ("IDLINK_STORE__REDIS_SENTINEL_MASTER", "idlink"), ("IDLINK_STORE__REDIS_SENTINEL_PASSWORD", "4321")]).unwrap();
    let sentinel = options.sentinel.unwrap();
    assert_eq!(sentinel.sentinels, ["redis://sentinel-0:26379", "redis://sentinel-1:26379"], "bare addresses become redis:// URLs");
    assert_eq!((sentinel.master.as_str(), sentinel.password.as_ref().map(ExposeSecret::expose_secret)), ("idlink", Some("4321")));
}

#[test]
fn a_cluster_is_named_by_its_seed_nodes_or_by_the_url() {
    let redis = |env: &[(&str, &str)]| RedisOptions::try_from(&load(&[&[("IDLINK_STORE__BACKEND", "redis")], env].concat()).unwrap().store);
    let seeds = redis(&[("IDLINK_STORE__REDIS_CLUSTER", r#"["redis-0:6379", "rediss://redis-1:6379"]"#)]).unwrap_err().to_string();
    assert!(seeds.contains("all redis:// or all rediss://"), "{seeds}");
    let options = redis(&[("IDLINK_STORE__REDIS_CLUSTER", r#"["redis-0:6379", "redis://redis-1:6379"]"#)]).unwrap();
    assert_eq!(options.cluster.unwrap(), ["redis://redis-0:6379", "redis://redis-1:6379"]);
    let options = redis(&[("IDLINK_STORE__REDIS_CLUSTER", "true"), ("IDLINK_STORE__REDIS_URL", "redis://redis-0:6379")]).unwrap();
    assert_eq!(options.cluster.unwrap(), ["redis://redis-0:6379"], "the URL is the one seed");
    let off = redis(&[("IDLINK_STORE__REDIS_CLUSTER", "false"), ("IDLINK_STORE__REDIS_URL", "redis://redis-0:6379")]).unwrap();
    assert!(off.cluster.is_none() && off.url == "redis://redis-0:6379");
    for (env, why) in [
        (vec![("IDLINK_STORE__REDIS_CLUSTER", "true")], "needs store.redis_url"),
        (vec![("IDLINK_STORE__REDIS_CLUSTER", r#"["a:6379"]"#), ("IDLINK_STORE__REDIS_URL", "redis://b:6379")], "set one"),
        (vec![("IDLINK_STORE__REDIS_CLUSTER", "[]")], "at least one seed"),
        (vec![("IDLINK_STORE__REDIS_CLUSTER", r#"["a:6379"]"#), ("IDLINK_STORE__REDIS_SENTINELS", r#"["s:26379"]"#)], "set one"),
        (vec![("IDLINK_STORE__REDIS_CLUSTER", r#"["redis://:hunter2@a:6379"]"#)], "must not hold a password"),
    ] {
        let err = redis(&env).unwrap_err().to_string();
        assert!(err.contains(why) && !err.contains("hunter2"), "{env:?}: {err}");
    }
}

#[test]
fn an_account_linked_elsewhere_moves_for_learning_unless_configured_to_refuse() {
    use crate::domain::{KindRules, LinkKind, LinkMode, OnLinkedElsewhere};
    let kinds = load(&[]).unwrap().kinds();
    assert_eq!(kinds[0].1.rules.on_linked_elsewhere, OnLinkedElsewhere::Move, "the documented default for Learning");
    let refusing = load(&[("IDLINK_KINDS__MICROSOFT_LEARNING__ON_LINKED_ELSEWHERE", "refuse")]).unwrap().kinds();
    assert_eq!(refusing[0].1.rules.on_linked_elsewhere, OnLinkedElsewhere::Refuse);
    assert!(load(&[("IDLINK_KINDS__MICROSOFT_LEARNING__ON_LINKED_ELSEWHERE", "steal")]).is_err(), "an unknown rule is refused");
    assert_eq!(OnLinkedElsewhere::default_for(LinkKind::PartnerUniversity), OnLinkedElsewhere::Refuse);
    // Refusing still lets a flow begun with `transfer` move the account.
    let begun = LinkMode { transfer: true, ..LinkMode::default() };
    let refuse = KindRules { on_linked_elsewhere: OnLinkedElsewhere::Refuse, ..KindRules::default_for(LinkKind::MicrosoftLearning) };
    assert!(refuse.applied_to(begun).transfer);
    assert!(!refuse.applied_to(LinkMode::default()).transfer);
    assert!(KindRules::default_for(LinkKind::MicrosoftLearning).applied_to(LinkMode::default()).transfer);
}

#[test]
fn learning_limits_associations_as_partner_center_documents_unless_configured() {
    use crate::domain::{AssociationLimit, LinkKind};
    let kinds = load(&[]).unwrap().kinds();
    assert_eq!(kinds[0].0, LinkKind::MicrosoftLearning);
    assert_eq!(kinds[0].1.rules.limit, AssociationLimit { per_year: 3, days_between: 30 }, "three a year, 30 days apart");
    assert!(AssociationLimit::default_for(LinkKind::PartnerUniversity).is_none());
    let set = load(&[
        ("IDLINK_KINDS__MICROSOFT_LEARNING__ASSOCIATIONS_PER_YEAR", "0"),
        ("IDLINK_KINDS__MICROSOFT_LEARNING__DAYS_BETWEEN_ASSOCIATIONS", "7"),
    ])
    .unwrap()
    .kinds();
    assert_eq!(set[0].1.rules.limit, AssociationLimit { per_year: 0, days_between: 7 });
    // Beyond what a record keeps, start-up refuses the file, naming the key.
    let too_many = load(&[("IDLINK_KINDS__MICROSOFT_LEARNING__ASSOCIATIONS_PER_YEAR", "101")]).unwrap().kinds();
    let err = crate::oidc::AssociationClient::check_settings(LinkKind::MicrosoftLearning, &too_many[0].1, false).unwrap_err();
    assert!(err.to_string().contains("associations_per_year"), "{err}");
}

/// docs/configuration.md lists exactly the keys idlinkd reads: the fields of every settings
/// struct (read from their source), no more, no fewer.
#[test]
fn the_configuration_reference_lists_every_key() {
    let doc = include_str!("../../../docs/configuration.md");
    let documented: Vec<String> = doc
        .lines()
        .filter_map(|line| line.strip_prefix("| `").and_then(|rest| rest.split_once('`')).map(|(key, _)| key.to_owned()))
        .collect();
    assert!(documented.len() > 50, "{documented:?}");
    let sections: &[(&str, &str, &str)] = &[
        ("store", "pub struct StoreSettings {", include_str!("mod.rs")),
        ("auth", "pub struct AuthSettings {", include_str!("mod.rs")),
        ("kinds.<kind>", "pub struct KindConfig {", include_str!("mod.rs")),
        ("flows", "pub struct FlowSettings {", include_str!("mod.rs")),
        ("server", "pub struct ServerSettings {", include_str!("mod.rs")),
        ("server.tls", "pub struct TlsSettings {", include_str!("mod.rs")),
        ("credit", "pub struct CreditSettings {", include_str!("mod.rs")),
        ("events", "pub struct EventSettings {", include_str!("mod.rs")),
        ("dev", "pub struct DevSettings {", include_str!("mod.rs")),
        ("telemetry", "pub struct TelemetrySettings {", include_str!("../telemetry.rs")),
        ("limits", "pub struct LimitSettings {", include_str!("../limits.rs")),
    ];
    let mut read = vec!["listen".to_owned()];
    for (section, start, source) in sections {
        let body = &source[source.find(start).unwrap() + start.len()..];
        let body = &body[..body.find("\n}").unwrap()];
        for line in body.lines().map(str::trim) {
            if let Some(field) = line.strip_prefix("pub ").and_then(|l| l.split_once(':')).map(|(f, _)| f)
                && field != "tls"
            {
                read.push(format!("{section}.{field}"));
            }
        }
    }
    read.sort();
    let mut listed = documented.clone();
    listed.sort();
    assert_eq!(listed, read, "docs/configuration.md and the settings disagree");
}
