//! What each command does.

pub(crate) mod batch;
pub(crate) mod bench;
mod demo;
mod health;
mod link;

use anyhow::anyhow;
use idlink_client::{parse_kind, pb};
use serde_json::json;

use crate::{
    cli::{
        CertsCommand, Cli, Command, CreditCommand, EnrolmentCommand, EventsCommand, LearningFeedCommand, OrgsCommand, ProfilesCommand,
        ReportCommand, UsersCommand,
    },
    credentials::{bearer, connect, dev_token, request_id},
};

pub(crate) async fn run(cli: &Cli) -> anyhow::Result<()> {
    match &cli.command {
        Command::Token { app } => {
            let token = match app {
                Some(app) => dev_token(&cli.idp, "app", app).await?,
                None => dev_token(&cli.idp, "user", cli.user.as_deref().unwrap_or("alex@contoso.example")).await?,
            };
            if cli.json { println!("{}", json!({"access_token": token})) } else { println!("{token}") }
        }
        Command::Link(command) => link::run(cli, command).await?,
        Command::Completions { shell } => {
            let mut command = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(*shell, &mut command, "idlink", &mut std::io::stdout());
        }
        Command::Man => clap_mangen::Man::new(<Cli as clap::CommandFactory>::command()).render(&mut std::io::stdout())?,
        Command::Demo { work_user, personal, kind, redirect_uri, keep } => {
            demo::run(cli, work_user, personal.as_deref(), kind, redirect_uri, *keep).await?
        }
        Command::Health { wait, timeout_seconds } => health::run(cli, *wait, *timeout_seconds).await?,
        Command::Orgs(OrgsCommand::Upsert { tenant_id, partner_id, name }) => {
            let client = connect(cli, None).await?;
            let request = pb::UpsertOrganizationRequest {
                tenant_id: tenant_id.clone(),
                partner_id: partner_id.clone(),
                name: name.clone(),
                request_id: request_id(cli),
            };
            let org = client.upsert_organization(request).await?;
            if cli.json {
                println!("{}", json!({"organization_id": org.organization_id, "partner_id": org.partner_id, "name": org.name}));
            } else {
                println!("{} {} (PartnerID {})", org.organization_id, org.name, org.partner_id);
            }
        }
        Command::Certs(CertsCommand::Import(args)) => batch::import(&connect(cli, None).await?, args, cli.json).await?,
        Command::Enrolment(EnrolmentCommand::Users(UsersCommand::Remove { tenant_id, object_id, file, jsonl, reason })) => {
            let client = connect(cli, None).await?;
            match (tenant_id, object_id, file) {
                (Some(tenant_id), Some(object_id), None) => {
                    let user = pb::AccountRef { tenant_id: tenant_id.clone(), object_id: object_id.clone() };
                    batch::remove_user(&client, user, reason, &request_id(cli), cli.json).await?
                }
                (None, None, Some(file)) => batch::remove_users(&client, file, *jsonl, reason, cli.json).await?,
                _ => return Err(anyhow!("name one user with --tenant-id and --object-id, or a --file of them")),
            }
        }
        Command::Report(ReportCommand::Skills { org, csv, page_size }) => {
            batch::skills_report(&connect(cli, None).await?, org, csv.as_deref(), *page_size, cli.json).await?
        }
        Command::Certs(CertsCommand::Mine) => batch::show_mine(&connect(cli, None).await?, cli.json).await?,
        Command::LearningFeed(LearningFeedCommand::Profiles(ProfilesCommand::Import(args))) => {
            batch::import_profiles(&connect(cli, None).await?, args, cli.json).await?
        }
        Command::Credit(CreditCommand::Show { organization_id }) => {
            batch::show_credit(&connect(cli, None).await?, organization_id, cli.json).await?
        }
        Command::Credit(CreditCommand::Recalc { all, org }) => {
            if !*all && org.is_empty() {
                return Err(anyhow!("name organisations with --org, or recalculate every one with --all"));
            }
            batch::recalculate(&connect(cli, None).await?, org.clone(), cli.json).await?;
        }
        Command::Events(EventsCommand::Watch { from, limit }) => {
            batch::watch(&connect(cli, None).await?, *from, *limit, cli.retry_seconds > 0.0, cli.json).await?
        }
        Command::Bench { target, concurrency, connections, seconds, requests, object_id, partner_id } => {
            let token = match target {
                bench::Target::Health | bench::Target::Link => None,
                _ => bearer(cli, Some("alex@contoso.example")).await?,
            };
            let personal =
                object_id.as_ref().map(|o| pb::AccountRef { tenant_id: idlink_client::CONSUMER_TENANT.into(), object_id: o.clone() });
            for c in concurrency {
                let settings = bench::Settings {
                    endpoint: cli.endpoint.clone(),
                    tls: crate::credentials::tls(cli)?,
                    token: token.clone(),
                    concurrency: *c,
                    connections: *connections,
                    duration: std::time::Duration::from_secs_f64(*seconds),
                    requests: *requests,
                    personal: personal.clone(),
                    partner_id: partner_id.clone(),
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
