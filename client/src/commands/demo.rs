//! `idlink demo`: the whole association, step by step, against `idlinkd --dev`.

use idlink_client::{browser, parse_kind, pb};

use crate::{
    cli::Cli,
    credentials::{connect, request_id},
    output::{kind_name, print_link},
};

pub(super) async fn run(cli: &Cli, work_user: &str, personal: &str, kind: &str, redirect_uri: &str, keep: bool) -> anyhow::Result<()> {
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
            request_id: request_id(cli),
            ..Default::default()
        })
        .await?;
    let shown = begun.authorization_url.split('?').next().unwrap_or_default();
    step(2, &format!("sign in as {personal} at {shown}"));
    let redirect = browser::follow_authorization(&begun.authorization_url).await?;
    step(3, "CompleteLink with the code from the redirect");
    let link = client.complete_link(pb::CompleteLinkRequest { request_id: request_id(cli), ..redirect.into_complete_request() }).await?;
    print_link(cli, &link);
    step(4, "GetLinks");
    for l in client.get_links().await? {
        print_link(cli, &l);
    }
    if keep {
        return Ok(());
    }
    step(5, "RemoveLink (\"remove access\")");
    let tombstone = client
        .remove_link(pb::RemoveLinkRequest {
            kind: kind as i32,
            user: None,
            reason: "demo".into(),
            request_id: request_id(cli),
            ..Default::default()
        })
        .await?;
    print_link(cli, &tombstone);
    step(6, &format!("GetLinks again: {} active", client.get_links().await?.len()));
    Ok(())
}
