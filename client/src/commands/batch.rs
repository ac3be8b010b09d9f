//! Batch commands: what enrolment, the Learning feed and credit jobs run.

use std::{
    io::{IsTerminal, Write},
    path::Path,
};

use anyhow::{Context, anyhow};
use idlink_client::{IdlinkClient, pb};
use serde_json::json;
use tokio::io::AsyncBufReadExt;
use tokio_stream::StreamExt;

/// Progress on stderr, only for a person watching a terminal.
struct Progress {
    shown: bool,
}

impl Progress {
    fn new() -> Self {
        Self { shown: std::io::stderr().is_terminal() }
    }
    fn update(&self, text: &str) {
        if self.shown {
            eprint!("\r\x1b[2K{text}");
            let _ = std::io::stderr().flush();
        }
    }
    fn done(&self) {
        if self.shown {
            eprintln!();
        }
    }
}

fn timestamp(raw: &str, field: &str) -> Result<Option<prost_types::Timestamp>, String> {
    if raw.is_empty() {
        return Ok(None);
    }
    chrono::DateTime::parse_from_rfc3339(raw)
        .map(|t| Some(prost_types::Timestamp { seconds: t.timestamp(), nanos: 0 }))
        .map_err(|_| format!("{field} is not an RFC 3339 time"))
}

/// One line of a CSV (`personal_tenant_id,personal_object_id,certification_id,earned_at,expires_at`)
/// or JSON-lines file.
fn parse_line(line: &str, jsonl: bool) -> Result<pb::Certification, String> {
    let (tenant, object, id, earned, expires) = if jsonl {
        let v: serde_json::Value = serde_json::from_str(line).map_err(|e| format!("not JSON: {e}"))?;
        let s = |ptr: &str| v.pointer(ptr).and_then(|x| x.as_str()).unwrap_or_default().to_owned();
        (s("/personal_account/tenant_id"), s("/personal_account/object_id"), s("/certification_id"), s("/earned_at"), s("/expires_at"))
    } else {
        let f: Vec<&str> = line.split(',').map(str::trim).collect();
        if f.len() != 5 {
            return Err(format!("expected 5 comma-separated fields, found {}", f.len()));
        }
        (f[0].to_owned(), f[1].to_owned(), f[2].to_owned(), f[3].to_owned(), f[4].to_owned())
    };
    Ok(pb::Certification {
        personal_account: Some(pb::AccountRef { tenant_id: tenant, object_id: object }),
        certification_id: id,
        earned_at: timestamp(&earned, "earned_at")?,
        expires_at: timestamp(&expires, "expires_at")?,
    })
}

/// Streams a certification file to the service: constant memory however large the file.
pub async fn import(client: &IdlinkClient, path: &Path, json_output: bool) -> anyhow::Result<()> {
    let jsonl = path.extension().is_some_and(|e| e == "jsonl" || e == "json" || e == "ndjson");
    let file = tokio::fs::File::open(path).await.with_context(|| format!("cannot open {}", path.display()))?;
    let mut lines = tokio::io::BufReader::new(file).lines();
    let (tx, rx) = tokio::sync::mpsc::channel(1024);
    let reader = tokio::spawn(async move {
        let progress = Progress::new();
        let (mut line_no, mut sent_lines, mut local) = (0u64, Vec::new(), Vec::new());
        while let Ok(Some(line)) = lines.next_line().await {
            line_no += 1;
            if line.trim().is_empty() || (line_no == 1 && line.starts_with("personal_tenant_id")) {
                continue;
            }
            match parse_line(&line, jsonl) {
                Ok(cert) => {
                    sent_lines.push(line_no);
                    if tx.send(cert).await.is_err() {
                        break;
                    }
                }
                Err(why) => local.push((line_no, "MALFORMED".to_owned(), why)),
            }
            if line_no % 5000 == 0 {
                progress.update(&format!("{line_no} lines read"));
            }
        }
        progress.done();
        (line_no, sent_lines, local)
    });
    let response = client.record_certifications(tokio_stream::wrappers::ReceiverStream::new(rx)).await?;
    let (lines_read, sent_lines, mut rejections) = reader.await?;
    for r in &response.rejections {
        let line = usize::try_from(r.index).ok().and_then(|i| sent_lines.get(i)).copied().unwrap_or(0);
        rejections.push((line, r.reason.clone(), r.detail.clone()));
    }
    rejections.sort();
    let rejected = response.rejected + (rejections.len() as u64 - response.rejections.len() as u64);
    if json_output {
        let listed: Vec<_> =
            rejections.iter().take(100).map(|(line, reason, detail)| json!({"line": line, "reason": reason, "detail": detail})).collect();
        println!(
            "{}",
            json!({"lines": lines_read, "accepted": response.accepted, "duplicates": response.duplicates, "rejected": rejected, "rejections": listed})
        );
    } else {
        println!("{lines_read} lines: {} accepted, {} duplicates, {rejected} rejected", response.accepted, response.duplicates);
        for (line, reason, detail) in rejections.iter().take(20) {
            println!("  line {line}: {reason}: {detail}");
        }
        if rejections.len() > 20 {
            println!("  … and {} more", rejections.len() - 20);
        }
    }
    Ok(())
}

fn area_line(a: &pb::AreaCredit) -> String {
    format!("  {:<36} {:>6} people  {:>6} certifications", a.name, a.people, a.certifications)
}

pub async fn show_credit(client: &IdlinkClient, organization: &str, json_output: bool) -> anyhow::Result<()> {
    let credit = client.organization_credit(organization).await?;
    if json_output {
        let areas: Vec<_> = credit
            .areas
            .iter()
            .map(|a| json!({"area_id": a.area_id, "name": a.name, "people": a.people, "certifications": a.certifications}))
            .collect();
        println!("{}", json!({"organization_id": credit.organization_id, "partner_id": credit.partner_id, "areas": areas}));
    } else {
        let partner = if credit.partner_id.is_empty() { "not enrolled".to_owned() } else { format!("PartnerID {}", credit.partner_id) };
        println!("{} ({partner})", credit.organization_id);
        if credit.areas.is_empty() {
            println!("  no credit yet");
        }
        credit.areas.iter().for_each(|a| println!("{}", area_line(a)));
    }
    Ok(())
}

pub async fn recalculate(client: &IdlinkClient, organizations: Vec<String>, json_output: bool) -> anyhow::Result<()> {
    let mut stream = client.recalculate_credits(organizations).await?;
    let progress = Progress::new();
    let mut done = 0u64;
    while let Some(item) = stream.next().await {
        match item.map_err(idlink_client::ClientError::from)?.item {
            Some(pb::recalculate_credits_response::Item::Organization(o)) => {
                done += 1;
                progress.update(&format!("{done} organisations recalculated"));
                let id = o.credit.as_ref().map(|c| c.organization_id.clone()).unwrap_or_default();
                for d in &o.drift {
                    let (s, r) = (d.stored.clone().unwrap_or_default(), d.recomputed.clone().unwrap_or_default());
                    if json_output {
                        println!(
                            "{}",
                            json!({"drift": {"organization_id": id, "area_id": d.area_id, "stored": [s.people, s.certifications], "recomputed": [r.people, r.certifications]}})
                        );
                    } else {
                        progress.done();
                        println!(
                            "drift repaired in {id} / {}: stored {}p {}c, recomputed {}p {}c",
                            d.area_id, s.people, s.certifications, r.people, r.certifications
                        );
                    }
                }
            }
            Some(pb::recalculate_credits_response::Item::Summary(s)) => {
                progress.done();
                if json_output {
                    println!("{}", json!({"summary": {"organizations": s.organizations, "drifted": s.drifted}}));
                } else {
                    println!("{} organisations recalculated, {} had drifted (repaired)", s.organizations, s.drifted);
                }
                return Ok(());
            }
            None => {}
        }
    }
    Err(anyhow!("the recalculation stream ended without a summary"))
}

pub async fn watch(client: &IdlinkClient, from: u64, limit: Option<u64>, json_output: bool) -> anyhow::Result<()> {
    let mut stream = client.watch_link_events(from).await?;
    let mut seen = 0;
    while let Some(event) = stream.next().await {
        let event = event.map_err(idlink_client::ClientError::from)?;
        let kind = pb::LinkEventType::try_from(event.r#type).map(|t| t.as_str_name()).unwrap_or("UNKNOWN");
        let link = event.link.unwrap_or_default();
        let work = link.work_user.unwrap_or_default();
        if json_output {
            println!(
                "{}",
                json!({"cursor": event.cursor, "type": kind, "link_id": link.id, "previous_link_id": event.previous_link_id,
                       "work_user": {"tenant_id": work.tenant_id, "object_id": work.object_id}, "at": event.at.map(|t| t.seconds)})
            );
        } else {
            println!("{:>8}  {kind:<17} link {}  {}/{}", event.cursor, link.id, work.tenant_id, work.object_id);
        }
        seen += 1;
        if limit.is_some_and(|l| seen >= l) {
            break;
        }
    }
    Ok(())
}
