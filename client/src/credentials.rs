//! Who the command calls as: client credentials (`--authority`, `--client-id`, the secret
//! from the environment or a file), `--token`, or a token of a fixture user or app from the
//! development provider (`--user`, `--as-app`); and the connection made with it (TLS, retries).

use std::{sync::Arc, time::Duration};

use anyhow::{Context, anyhow};
use idlink_client::{ClientCredentials, ClientOptions, ClientTls, IdlinkClient, RetryPolicy, pb};

use crate::cli::Cli;

pub(crate) fn account(raw: &str) -> anyhow::Result<pb::AccountRef> {
    let (tenant_id, object_id) = raw.split_once('/').ok_or_else(|| anyhow!("expected TENANT_ID/OBJECT_ID, got {raw:?}"))?;
    Ok(pb::AccountRef { tenant_id: tenant_id.to_owned(), object_id: object_id.to_owned() })
}

/// Adds an account to the development provider, or finds it: a work account of `tenant`, or a
/// personal account without one. Answers its tenant id.
pub(crate) async fn dev_user(idp: &str, login: &str, tenant: Option<&str>) -> anyhow::Result<String> {
    let mut url = url::Url::parse_with_params(&format!("{idp}/dev/users"), [("login", login)])?;
    if let Some(tenant) = tenant {
        url.query_pairs_mut().append_pair("tenant", tenant);
    }
    let refused = |status| anyhow!("the development provider refused account {login:?} ({status})");
    dev_provider(idp, reqwest::Method::POST, url, "tenant_id", refused).await
}

/// `who` is `user` (a fixture login) or `app` (a fixture app's client id).
pub(crate) async fn dev_token(idp: &str, who: &str, name: &str) -> anyhow::Result<String> {
    let url = url::Url::parse_with_params(&format!("{idp}/dev/token"), [(who, name)])?;
    let refused = |status| anyhow!("the development provider has no {who} {name:?} ({status})");
    dev_provider(idp, reqwest::Method::GET, url, "access_token", refused).await
}

/// One call to the development provider: the string `field` of its JSON answer.
pub(crate) async fn dev_provider(
    idp: &str,
    method: reqwest::Method,
    url: url::Url,
    field: &str,
    refused: impl FnOnce(reqwest::StatusCode) -> anyhow::Error,
) -> anyhow::Result<String> {
    let response = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?
        .request(method, url)
        .send()
        .await
        .with_context(|| format!("cannot reach the development identity provider at {idp} (is `idlinkd --dev` running?)"))?;
    if !response.status().is_success() {
        return Err(refused(response.status()));
    }
    let body: serde_json::Value = serde_json::from_slice(&response.bytes().await?)?;
    body[field].as_str().map(str::to_owned).ok_or_else(|| anyhow!("no {field} in the answer"))
}

/// The bearer token the flags ask for: --token, else a development token for --as-app or
/// --user (or `default_user`); None when nothing names one.
pub(crate) async fn bearer(cli: &Cli, default_user: Option<&str>) -> anyhow::Result<Option<String>> {
    Ok(match (&cli.token, &cli.as_app, cli.user.as_deref().or(default_user)) {
        (Some(token), _, _) => Some(token.clone()),
        (None, Some(app), _) => Some(dev_token(&cli.idp, "app", app).await?),
        (None, None, Some(user)) => Some(dev_token(&cli.idp, "user", user).await?),
        (None, None, None) => None,
    })
}

fn read(path: &std::path::Path, what: &str) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("cannot read the {what} {}", path.display()))
}

/// TLS as `--ca-file`, `--client-cert` and `--client-key` say.
pub(crate) fn tls(cli: &Cli) -> anyhow::Result<ClientTls> {
    let identity = match (&cli.client_cert, &cli.client_key) {
        (Some(cert), Some(key)) => Some((read(cert, "client certificate")?, read(key, "client key")?)),
        _ => None,
    };
    Ok(ClientTls { ca_pem: cli.ca_file.as_deref().map(|p| read(p, "CA file")).transpose()?, identity })
}

/// The client secret: IDLINK_CLIENT_SECRET, else the file `--client-secret-file` names (its
/// first line). A secret never comes from a flag: flags show in `ps` and shell history.
fn client_secret(cli: &Cli) -> anyhow::Result<String> {
    if let Ok(secret) = std::env::var("IDLINK_CLIENT_SECRET")
        && !secret.is_empty()
    {
        return Ok(secret);
    }
    let path = cli
        .client_secret_file
        .as_deref()
        .ok_or_else(|| anyhow!("--client-id needs its secret: set IDLINK_CLIENT_SECRET or --client-secret-file"))?;
    let text = String::from_utf8(read(path, "client secret file")?).context("the client secret file is not UTF-8")?;
    let secret = text.lines().next().unwrap_or_default().trim().to_owned();
    if secret.is_empty() {
        return Err(anyhow!("the client secret file {} is empty", path.display()));
    }
    Ok(secret)
}

/// The id a mutation is sent with: `--request-id`, else a new one. With it, a retried call
/// answers the first attempt's outcome instead of acting twice.
pub(crate) fn request_id(cli: &Cli) -> String {
    cli.request_id.clone().unwrap_or_else(|| format!("idlink-cli-{:032x}", rand::random::<u128>()))
}

pub(crate) async fn connect(cli: &Cli, default_user: Option<&str>) -> anyhow::Result<IdlinkClient> {
    let mut options = ClientOptions::new(cli.endpoint.clone()).tls(tls(cli)?);
    options = match (&cli.authority, &cli.client_id) {
        (Some(authority), Some(client_id)) => {
            let credentials = ClientCredentials::discover(authority, client_id, client_secret(cli)?, &cli.scope).await?;
            options.client_credentials(Arc::new(credentials))
        }
        _ => options.token(bearer(cli, default_user).await?.ok_or_else(|| {
            anyhow!("no credentials: pass --authority and --client-id (secret in IDLINK_CLIENT_SECRET), --token (or IDLINK_TOKEN), or --user / --as-app with `idlinkd --dev`")
        })?),
    };
    if cli.retry_seconds > 0.0 {
        let max_total = Duration::try_from_secs_f64(cli.retry_seconds)
            .map_err(|_| anyhow!("--retry-seconds: {} is out of range", cli.retry_seconds))?;
        options = options.retry(RetryPolicy { max_total, ..RetryPolicy::default() });
    }
    if let Some(lang) = &cli.lang {
        options = options.accept_language(lang.clone());
    }
    Ok(IdlinkClient::connect(options).await?)
}
