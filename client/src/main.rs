//! `idlink`: the command-line client. Human-readable output by default, `--json` for scripts.

use std::{process::ExitCode, time::Duration};

use anyhow::{Context, anyhow};
use clap::{Args, Parser, Subcommand};
use idlink_client::{ClientError, ClientOptions, IdlinkClient, browser, parse_kind, pb};

mod batch;
mod bench;
use serde_json::json;

#[derive(Parser)]
#[command(name = "idlink", about = "Link work accounts to personal Microsoft accounts through idlink.")]
struct Cli {
    /// The idlink gRPC endpoint.
    #[arg(long, global = true, env = "IDLINK_ENDPOINT", default_value = "http://127.0.0.1:50051")]
    endpoint: String,
    /// A bearer access token for idlink.
    #[arg(long, global = true, env = "IDLINK_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Development: get a token for this fixture user from the development provider.
    #[arg(long, global = true)]
    user: Option<String>,
    /// Development: get a token for this fixture app (partner-university, learning-feed, …).
    #[arg(long = "as-app", global = true, conflicts_with = "user")]
    as_app: Option<String>,
    /// Development: the development identity provider.
    #[arg(long, global = true, env = "IDLINK_DEV_IDP", default_value = "http://127.0.0.1:50052")]
    idp: String,
    /// Preferred language of error messages (accept-language), e.g. fr or ko.
    #[arg(long, global = true)]
    lang: Option<String>,
    /// Machine-readable output.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Development: print an access token of a fixture work user (--user) or app (--app).
    Token {
        /// A fixture app: partner-university, learning-feed, credit-recalculation, enrolment, no-roles.
        #[arg(long, conflicts_with = "user")]
        app: Option<String>,
    },
    /// Manage links (yours, or as an admin or service, an organisation's).
    #[command(subcommand, alias = "links")]
    Link(LinkCommand),
    /// Enrolment: organisations and their PartnerIDs.
    #[command(subcommand)]
    Orgs(OrgsCommand),
    /// The Learning feed: certifications.
    #[command(subcommand)]
    Certs(CertsCommand),
    /// Organisations' certification credit.
    #[command(subcommand)]
    Credit(CreditCommand),
    /// The change feed.
    #[command(subcommand)]
    Events(EventsCommand),
    /// Health of the server; with --wait, polls until SERVING and prints how long that took.
    Health {
        #[arg(long)]
        wait: bool,
        #[arg(long, default_value_t = 30.0)]
        timeout_seconds: f64,
    },
    /// Load generator: requests/s and latency percentiles of one RPC at each concurrency.
    Bench {
        #[arg(value_enum)]
        target: bench::Target,
        /// Comma-separated concurrency levels.
        #[arg(long, default_value = "1,16,64", value_delimiter = ',')]
        concurrency: Vec<usize>,
        /// HTTP/2 connections shared by the concurrent callers.
        #[arg(long, default_value_t = 4)]
        connections: usize,
        /// Seconds per concurrency level.
        #[arg(long, default_value_t = 5.0)]
        seconds: f64,
        /// For `resolve`: the personal account's object id (consumer tenant).
        #[arg(long)]
        object_id: Option<String>,
    },
    /// Services: the work user a personal account is linked to.
    Resolve {
        #[arg(long)]
        kind: String,
        /// The personal account's object id (consumer tenant).
        #[arg(long)]
        object_id: String,
        #[arg(long, default_value = "9188040d-6c67-4c5b-b112-36a304b66dad")]
        tenant_id: String,
    },
    /// Runs a whole flow against `idlinkd --dev`: begin, sign in, complete, list, remove.
    Demo {
        #[arg(long, default_value = "alex@contoso.example")]
        work_user: String,
        #[arg(long, default_value = "jordan@outlook.example")]
        personal: String,
        #[arg(long, default_value = "microsoft-learning")]
        kind: String,
        #[arg(long, default_value = browser::DEV_REDIRECT_URI)]
        redirect_uri: String,
        /// Stop after listing: keep the link.
        #[arg(long)]
        keep: bool,
    },
}

#[derive(Subcommand)]
enum OrgsCommand {
    /// Create or update a tenant's organisation (Organizations.Write).
    Upsert {
        #[arg(long)]
        tenant_id: String,
        #[arg(long)]
        partner_id: String,
        #[arg(long)]
        name: String,
        /// Idempotency key: safe to rerun.
        #[arg(long, default_value = "")]
        request_id: String,
    },
}

#[derive(Subcommand)]
enum CertsCommand {
    /// Stream a CSV (personal_tenant_id,personal_object_id,certification_id,earned_at,expires_at)
    /// or JSON-lines (.jsonl) file (Certifications.Write). Safe to rerun: duplicates are counted.
    Import { file: std::path::PathBuf },
}

#[derive(Subcommand)]
enum CreditCommand {
    /// An organisation's credit per competency area.
    Show { organization_id: String },
    /// Recompute from the source records and repair drift (Credits.Recalculate).
    Recalc {
        /// Every organisation.
        #[arg(long, conflicts_with = "org")]
        all: bool,
        #[arg(long)]
        org: Vec<String>,
    },
}

#[derive(Subcommand)]
enum EventsCommand {
    /// Follow the change feed (Links.Read); resume with the last cursor printed.
    Watch {
        #[arg(long, default_value_t = 0)]
        from: u64,
        /// Stop after this many events.
        #[arg(long)]
        limit: Option<u64>,
    },
}

#[derive(Subcommand)]
enum LinkCommand {
    /// Start linking: prints the URL to open and the state.
    Begin(BeginArgs),
    /// Finish linking with what the redirect carried (or the whole redirect URL).
    Complete {
        #[arg(long, required_unless_present = "callback_url")]
        state: Option<String>,
        #[arg(long)]
        code: Option<String>,
        #[arg(long)]
        iss: Option<String>,
        /// The full URL the browser was redirected to.
        #[arg(long)]
        callback_url: Option<String>,
    },
    /// Your active links; with --org, an organisation's (admins, services).
    List {
        /// The organisation (its tenant id).
        #[arg(long)]
        org: Option<String>,
        /// Another user's links (admins): TENANT_ID/OBJECT_ID.
        #[arg(long, conflicts_with = "org")]
        of: Option<String>,
        #[arg(long, requires = "org")]
        kind: Option<String>,
        #[arg(long, requires = "org")]
        include_removed: bool,
    },
    /// Remove access (idempotent); admins may name a user of their organisation.
    Remove {
        #[arg(long)]
        kind: String,
        /// TENANT_ID/OBJECT_ID of the user whose access to remove (admins).
        #[arg(long)]
        of: Option<String>,
        #[arg(long, default_value = "user_request")]
        reason: String,
    },
}

#[derive(Args)]
struct BeginArgs {
    #[arg(long)]
    kind: String,
    #[arg(long, default_value = browser::DEV_REDIRECT_URI)]
    redirect_uri: String,
    #[arg(long)]
    login_hint: Option<String>,
    #[arg(long)]
    replace_existing: bool,
    #[arg(long)]
    transfer: bool,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            match e.downcast_ref::<ClientError>() {
                Some(ClientError::Rpc { code, reason, message, .. }) if cli.json => {
                    println!("{}", json!({"error": {"code": format!("{code:?}"), "reason": reason, "message": message}}));
                }
                Some(ClientError::Rpc { reason, message, .. }) => eprintln!("idlink: {reason}: {message}"),
                _ => eprintln!("idlink: {e:#}"),
            }
            ExitCode::FAILURE
        }
    }
}

fn account(raw: &str) -> anyhow::Result<pb::AccountRef> {
    let (tenant_id, object_id) = raw.split_once('/').ok_or_else(|| anyhow!("expected TENANT_ID/OBJECT_ID, got {raw:?}"))?;
    Ok(pb::AccountRef { tenant_id: tenant_id.to_owned(), object_id: object_id.to_owned() })
}

/// Adds an account to the development provider, or finds it: a work account of `tenant`, or a
/// personal account without one. Answers its tenant id.
async fn dev_user(idp: &str, login: &str, tenant: Option<&str>) -> anyhow::Result<String> {
    let mut url = url::Url::parse_with_params(&format!("{idp}/dev/users"), [("login", login)])?;
    if let Some(tenant) = tenant {
        url.query_pairs_mut().append_pair("tenant", tenant);
    }
    let refused = |status| anyhow!("the development provider refused account {login:?} ({status})");
    dev_provider(idp, reqwest::Method::POST, url, "tenant_id", refused).await
}

/// `who` is `user` (a fixture login) or `app` (a fixture app's client id).
async fn dev_token(idp: &str, who: &str, name: &str) -> anyhow::Result<String> {
    let url = url::Url::parse_with_params(&format!("{idp}/dev/token"), [(who, name)])?;
    let refused = |status| anyhow!("the development provider has no {who} {name:?} ({status})");
    dev_provider(idp, reqwest::Method::GET, url, "access_token", refused).await
}

/// One call to the development provider: the string `field` of its JSON answer.
async fn dev_provider(
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
async fn bearer(cli: &Cli, default_user: Option<&str>) -> anyhow::Result<Option<String>> {
    Ok(match (&cli.token, &cli.as_app, cli.user.as_deref().or(default_user)) {
        (Some(token), _, _) => Some(token.clone()),
        (None, Some(app), _) => Some(dev_token(&cli.idp, "app", app).await?),
        (None, None, Some(user)) => Some(dev_token(&cli.idp, "user", user).await?),
        (None, None, None) => None,
    })
}

async fn connect(cli: &Cli, default_user: Option<&str>) -> anyhow::Result<IdlinkClient> {
    let token = bearer(cli, default_user)
        .await?
        .ok_or_else(|| anyhow!("no credentials: pass --token (or IDLINK_TOKEN), or --user / --as-app with `idlinkd --dev`"))?;
    let mut options = ClientOptions::new(cli.endpoint.clone()).token(token);
    if let Some(lang) = &cli.lang {
        options = options.accept_language(lang.clone());
    }
    Ok(IdlinkClient::connect(options).await?)
}

fn kind_name(kind: i32) -> &'static str {
    match pb::LinkKind::try_from(kind) {
        Ok(pb::LinkKind::PartnerUniversity) => "partner-university",
        Ok(pb::LinkKind::MicrosoftLearning) => "microsoft-learning",
        _ => "unknown",
    }
}

fn link_json(link: &pb::Link) -> serde_json::Value {
    let work = link.work_user.clone().unwrap_or_default();
    let personal = link.personal_account.clone().unwrap_or_default();
    let removal = link.removal.as_ref().map(|r| {
        json!({
            "removed_by": r.removed_by.as_ref().map(|b| format!("{}/{}", b.tenant_id, b.object_id)),
            "removed_at": r.removed_at.map(|t| t.seconds),
            "reason": r.reason,
        })
    });
    json!({
        "id": link.id, "kind": kind_name(link.kind),
        "state": if link.state == pb::LinkState::Active as i32 { "active" } else { "removed" },
        "work_user": {"tenant_id": work.tenant_id, "object_id": work.object_id, "upn": work.user_principal_name},
        "personal_account": {"tenant_id": personal.tenant_id, "object_id": personal.object_id, "email": personal.email, "name": personal.display_name},
        "created_at": link.created_at.map(|t| t.seconds), "removal": removal,
    })
}

fn link_line(link: &pb::Link) -> String {
    let work = link.work_user.clone().unwrap_or_default();
    let personal = link.personal_account.clone().unwrap_or_default();
    let who = if personal.email.is_empty() { personal.object_id.clone() } else { format!("{} ({})", personal.email, personal.object_id) };
    let state = match &link.removal {
        Some(r) => format!("removed: {}", r.reason),
        None => "active".to_owned(),
    };
    format!("{:<20} {} -> {who}  [{state}]  link {}", kind_name(link.kind), work.user_principal_name, link.id)
}

fn print_link(cli: &Cli, link: &pb::Link) {
    if cli.json { println!("{}", link_json(link)) } else { println!("{}", link_line(link)) }
}

async fn run(cli: &Cli) -> anyhow::Result<()> {
    match &cli.command {
        Command::Token { app } => {
            let token = match app {
                Some(app) => dev_token(&cli.idp, "app", app).await?,
                None => dev_token(&cli.idp, "user", cli.user.as_deref().unwrap_or("alex@contoso.example")).await?,
            };
            if cli.json { println!("{}", json!({"access_token": token})) } else { println!("{token}") }
        }
        Command::Link(command) => run_link(cli, command).await?,
        Command::Demo { work_user, personal, kind, redirect_uri, keep } => {
            demo(cli, work_user, personal, kind, redirect_uri, *keep).await?
        }
        Command::Health { wait, timeout_seconds } => health(cli, *wait, *timeout_seconds).await?,
        Command::Orgs(OrgsCommand::Upsert { tenant_id, partner_id, name, request_id }) => {
            let client = connect(cli, None).await?;
            let request = pb::UpsertOrganizationRequest {
                tenant_id: tenant_id.clone(),
                partner_id: partner_id.clone(),
                name: name.clone(),
                request_id: request_id.clone(),
            };
            let org = client.upsert_organization(request).await?;
            if cli.json {
                println!("{}", json!({"organization_id": org.organization_id, "partner_id": org.partner_id, "name": org.name}));
            } else {
                println!("{} {} (PartnerID {})", org.organization_id, org.name, org.partner_id);
            }
        }
        Command::Certs(CertsCommand::Import { file }) => batch::import(&connect(cli, None).await?, file, cli.json).await?,
        Command::Credit(CreditCommand::Show { organization_id }) => {
            batch::show_credit(&connect(cli, None).await?, organization_id, cli.json).await?
        }
        Command::Credit(CreditCommand::Recalc { all, org }) => {
            if !*all && org.is_empty() {
                return Err(anyhow!("name organisations with --org, or recalculate every one with --all"));
            }
            batch::recalculate(&connect(cli, None).await?, org.clone(), cli.json).await?;
        }
        Command::Events(EventsCommand::Watch { from, limit }) => batch::watch(&connect(cli, None).await?, *from, *limit, cli.json).await?,
        Command::Bench { target, concurrency, connections, seconds, object_id } => {
            let token = match target {
                bench::Target::Health | bench::Target::Link => None,
                _ => bearer(cli, Some("alex@contoso.example")).await?,
            };
            let personal = object_id
                .as_ref()
                .map(|o| pb::AccountRef { tenant_id: "9188040d-6c67-4c5b-b112-36a304b66dad".into(), object_id: o.clone() });
            for c in concurrency {
                let settings = bench::Settings {
                    endpoint: cli.endpoint.clone(),
                    token: token.clone(),
                    concurrency: *c,
                    connections: *connections,
                    duration: std::time::Duration::from_secs_f64(*seconds),
                    personal: personal.clone(),
                    idp: cli.idp.clone(),
                };
                bench::run(*target, &settings, cli.json).await?;
            }
        }
        Command::Resolve { kind, object_id, tenant_id } => {
            let client = connect(cli, None).await?;
            let account = pb::AccountRef { tenant_id: tenant_id.clone(), object_id: object_id.clone() };
            let r = client
                .resolve_personal_account(pb::ResolvePersonalAccountRequest {
                    kind: parse_kind(kind)? as i32,
                    personal_account: Some(account),
                })
                .await?;
            let work = r.work_user.unwrap_or_default();
            if cli.json {
                println!(
                    "{}",
                    json!({"organization_id": r.organization_id, "link_id": r.link_id, "work_user": {"tenant_id": work.tenant_id, "object_id": work.object_id, "upn": work.user_principal_name}})
                );
            } else {
                println!(
                    "{} ({}/{}) in organisation {}, link {}",
                    work.user_principal_name, work.tenant_id, work.object_id, r.organization_id, r.link_id
                );
            }
        }
    }
    Ok(())
}

async fn run_link(cli: &Cli, command: &LinkCommand) -> anyhow::Result<()> {
    let client = connect(cli, None).await?;
    match command {
        LinkCommand::Begin(a) => {
            let begun = client
                .begin_link(pb::BeginLinkRequest {
                    kind: parse_kind(&a.kind)? as i32,
                    redirect_uri: a.redirect_uri.clone(),
                    login_hint: a.login_hint.clone(),
                    replace_existing: a.replace_existing,
                    transfer: a.transfer,
                    ..Default::default()
                })
                .await?;
            if cli.json {
                println!(
                    "{}",
                    json!({"authorization_url": begun.authorization_url, "state": begun.state, "expires_at": begun.expires_at.map(|t| t.seconds)})
                );
            } else {
                println!("Open this URL and sign in with the personal account:\n  {}\nstate: {}", begun.authorization_url, begun.state);
                println!("Then: idlink link complete --callback-url '<the URL you were redirected to>'");
            }
        }
        LinkCommand::Complete { state, code, iss, callback_url } => {
            let request = match callback_url {
                Some(url) => browser::Redirect::parse(url)?.into_complete_request(),
                None => pb::CompleteLinkRequest {
                    state: state.clone().unwrap_or_default(),
                    code: code.clone().unwrap_or_default(),
                    iss: iss.clone(),
                    ..Default::default()
                },
            };
            print_link(cli, &client.complete_link(request).await?);
        }
        LinkCommand::List { org, of, kind, include_removed } => {
            let links = match (org, of) {
                (Some(org), _) => {
                    let kind = kind.as_deref().map(parse_kind).transpose()?.map_or(0, |k| k as i32);
                    client
                        .list_all_links(pb::ListLinksRequest {
                            organization_id: org.clone(),
                            kind,
                            include_removed: *include_removed,
                            ..Default::default()
                        })
                        .await?
                }
                (None, Some(of)) => client.get_links_of(account(of)?).await?,
                (None, None) => client.get_links().await?,
            };
            if cli.json {
                println!("{}", json!({"links": links.iter().map(link_json).collect::<Vec<_>>()}));
            } else if links.is_empty() {
                println!("No linked accounts.");
            } else {
                links.iter().for_each(|l| println!("{}", link_line(l)));
            }
        }
        LinkCommand::Remove { kind, of, reason } => {
            let user = of.as_deref().map(account).transpose()?;
            let tombstone = client
                .remove_link(pb::RemoveLinkRequest { kind: parse_kind(kind)? as i32, user, reason: reason.clone(), ..Default::default() })
                .await?;
            print_link(cli, &tombstone);
        }
    }
    Ok(())
}

async fn health(cli: &Cli, wait: bool, timeout_seconds: f64) -> anyhow::Result<()> {
    use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient};
    let started = std::time::Instant::now();
    loop {
        let status = match IdlinkClient::channel(&cli.endpoint).await {
            Ok(channel) => {
                HealthClient::new(channel).check(HealthCheckRequest { service: String::new() }).await.ok().map(|r| r.into_inner().status)
            }
            Err(_) => None,
        };
        let serving = status == Some(ServingStatus::Serving as i32);
        if serving || !wait || started.elapsed().as_secs_f64() > timeout_seconds {
            let name = status.and_then(|s| ServingStatus::try_from(s).ok()).map_or("UNREACHABLE", |s| s.as_str_name());
            if cli.json {
                println!("{}", json!({"status": name, "waited_ms": started.elapsed().as_millis()}));
            } else {
                println!("{name} (after {} ms)", started.elapsed().as_millis());
            }
            return if serving { Ok(()) } else { Err(anyhow!("not serving")) };
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

async fn demo(cli: &Cli, work_user: &str, personal: &str, kind: &str, redirect_uri: &str, keep: bool) -> anyhow::Result<()> {
    let kind = parse_kind(kind)?;
    let client = connect(cli, Some(work_user)).await?;
    let step = |n: u8, text: &str| {
        if !cli.json {
            println!("{n}. {text}")
        }
    };

    step(1, &format!("BeginLink as {work_user} ({})", kind_name(kind as i32)));
    let begun = client
        .begin_link(pb::BeginLinkRequest {
            kind: kind as i32,
            redirect_uri: redirect_uri.to_owned(),
            login_hint: Some(personal.to_owned()),
            ..Default::default()
        })
        .await?;
    let shown = begun.authorization_url.split('?').next().unwrap_or_default();
    step(2, &format!("sign in as {personal} at {shown}"));
    let redirect = browser::follow_authorization(&begun.authorization_url).await?;
    step(3, "CompleteLink with the code from the redirect");
    let link = client.complete_link(redirect.into_complete_request()).await?;
    print_link(cli, &link);
    step(4, "GetLinks");
    for l in client.get_links().await? {
        print_link(cli, &l);
    }
    if keep {
        return Ok(());
    }
    step(5, "RemoveLink (\"remove access\")");
    let tombstone =
        client.remove_link(pb::RemoveLinkRequest { kind: kind as i32, user: None, reason: "demo".into(), ..Default::default() }).await?;
    print_link(cli, &tombstone);
    step(6, &format!("GetLinks again: {} active", client.get_links().await?.len()));
    Ok(())
}
