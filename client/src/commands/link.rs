//! `idlink link …`: begin, complete, list and remove one's own links.

use idlink_client::{browser, parse_kind, pb};
use serde_json::json;

use crate::{
    cli::{Cli, LinkCommand},
    credentials::{account, connect, request_id},
    output::{kind_name, link_json, link_line, print_link},
};

pub(super) async fn run(cli: &Cli, command: &LinkCommand) -> anyhow::Result<()> {
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
                    request_id: request_id(cli),
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
            print_link(cli, &client.complete_link(pb::CompleteLinkRequest { request_id: request_id(cli), ..request }).await?);
        }
        LinkCommand::List { org, of, kind, include_removed } => {
            let mut next_associations = Vec::new();
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
                (None, None) => {
                    let mine = client.my_links().await?;
                    next_associations = mine.next_associations;
                    mine.links
                }
            };
            let next_at =
                |n: &pb::NextAssociation| n.next_association_available_at.and_then(|t| chrono::DateTime::from_timestamp(t.seconds, 0));
            if cli.json {
                let next: Vec<_> = next_associations
                    .iter()
                    .map(|n| json!({"kind": kind_name(n.kind), "next_association_available_at": next_at(n).map(|t| t.to_rfc3339())}))
                    .collect();
                println!("{}", json!({"links": links.iter().map(link_json).collect::<Vec<_>>(), "next_associations": next}));
            } else if links.is_empty() {
                println!("No linked accounts.");
            } else {
                links.iter().for_each(|l| println!("{}", link_line(l)));
            }
            if !cli.json {
                for (n, at) in next_associations.iter().filter_map(|n| next_at(n).map(|at| (n, at))) {
                    println!("{:<20} next association available on {}", kind_name(n.kind), at.format("%Y-%m-%d %H:%M UTC"));
                }
            }
        }
        LinkCommand::Remove { kind, of, reason, etag } => {
            let user = of.as_deref().map(account).transpose()?;
            let tombstone = client
                .remove_link(pb::RemoveLinkRequest {
                    kind: parse_kind(kind)? as i32,
                    user,
                    reason: reason.clone(),
                    etag: etag.clone().unwrap_or_default(),
                    request_id: request_id(cli),
                })
                .await?;
            print_link(cli, &tombstone);
        }
    }
    Ok(())
}
