//! Who the command calls as: `--token`, or a token of a fixture user or app from the
//! development provider (`--user`, `--as-app`); and the connection made with it.

use std::time::Duration;

use anyhow::{Context, anyhow};
use idlink_client::{ClientOptions, IdlinkClient, pb};

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

pub(crate) async fn connect(cli: &Cli, default_user: Option<&str>) -> anyhow::Result<IdlinkClient> {
    let token = bearer(cli, default_user)
        .await?
        .ok_or_else(|| anyhow!("no credentials: pass --token (or IDLINK_TOKEN), or --user / --as-app with `idlinkd --dev`"))?;
    let mut options = ClientOptions::new(cli.endpoint.clone()).token(token);
    if let Some(lang) = &cli.lang {
        options = options.accept_language(lang.clone());
    }
    Ok(IdlinkClient::connect(options).await?)
}
