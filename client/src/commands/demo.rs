//! `idlink demo`: the whole association, step by step, against `idlinkd --dev`.

use idlink_client::{browser, parse_kind, pb};

use crate::{
    cli::Cli,
    credentials::{connect, dev_user, request_id},
    output::{kind_name, print_link},
};

pub(super) async fn run(
    cli: &Cli,
    work_user: &str,
    personal: Option<&str>,
    kind: &str,
    redirect_uri: &str,
    keep: bool,
) -> anyhow::Result<()> {
    let kind = parse_kind(kind)?;
    let client = connect(cli, Some(work_user)).await?;
    let step = |n: u8, text: &str| {
        if !cli.json {
            println!("{n}. {text}")
        }
    };
    let personal = match personal {
        Some(personal) => personal.to_owned(),
        None => {
            // Each personal account may be associated three times a year, 30 days apart: a
            // fresh one per run keeps the demo repeatable, as a new person's first link is.
            let fresh = format!("demo-{:08x}@outlook.example", rand::random::<u32>());
            dev_user(&cli.idp, &fresh, None).await?;
            fresh
        }
    };
    let personal = personal.as_str();

    step(1, &format!("BeginLink as {work_user} ({})", kind_name(kind as i32)));
    let begun = client
        .begin_link(pb::BeginLinkRequest {
            kind: kind as i32,
            redirect_uri: redirect_uri.to_owned(),
            login_hint: Some(personal.to_owned()),
            request_id: request_id(cli),
            // A link kept by an earlier `demo --keep` gives way to this run's account.
            replace_existing: true,
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
    let mine = client.my_links().await?;
    for l in &mine.links {
        print_link(cli, l);
    }
    for next in &mine.next_associations {
        if let Some(at) = next.next_association_available_at.and_then(|t| chrono::DateTime::from_timestamp(t.seconds, 0))
            && !cli.json
        {
            println!("   {personal}'s next {} association is available from {}", kind_name(next.kind), at.format("%Y-%m-%d"));
        }
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
