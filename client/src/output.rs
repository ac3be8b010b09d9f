//! How links are shown: a line for people, an object for `--json`.

use idlink_client::pb;
use serde_json::json;

use crate::cli::Cli;

pub(crate) fn kind_name(kind: i32) -> &'static str {
    match pb::LinkKind::try_from(kind) {
        Ok(pb::LinkKind::PartnerUniversity) => "partner-university",
        Ok(pb::LinkKind::MicrosoftLearning) => "microsoft-learning",
        _ => "unknown",
    }
}

pub(crate) fn link_json(link: &pb::Link) -> serde_json::Value {
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
        "created_at": link.created_at.map(|t| t.seconds), "removal": removal, "etag": link.etag,
    })
}

pub(crate) fn link_line(link: &pb::Link) -> String {
    let work = link.work_user.clone().unwrap_or_default();
    let personal = link.personal_account.clone().unwrap_or_default();
    let who = if personal.email.is_empty() { personal.object_id.clone() } else { format!("{} ({})", personal.email, personal.object_id) };
    let state = match &link.removal {
        Some(r) => format!("removed: {}", r.reason),
        None => "active".to_owned(),
    };
    format!("{:<20} {} -> {who}  [{state}]  link {}", kind_name(link.kind), work.user_principal_name, link.id)
}

pub(crate) fn print_link(cli: &Cli, link: &pb::Link) {
    if cli.json { println!("{}", link_json(link)) } else { println!("{}", link_line(link)) }
}
