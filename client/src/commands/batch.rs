//! Batch commands: what enrolment, the Learning feed and credit jobs run.

use std::{io::Write, path::Path};

use anyhow::{Context, anyhow};
use idlink_client::{IdlinkClient, pb};

use crate::cli::ImportArgs;
use serde_json::json;
use tokio_stream::StreamExt;

/// Progress on stderr, drawn only for a person watching a terminal (indicatif hides itself
/// otherwise): what is done so far, its rate and the time taken.
struct Progress(indicatif::ProgressBar);

impl Progress {
    fn new() -> Self {
        let bar = indicatif::ProgressBar::new_spinner();
        if let Ok(style) = indicatif::ProgressStyle::with_template("{spinner} {msg} ({elapsed})") {
            bar.set_style(style);
        }
        Self(bar)
    }
    /// Bytes of an input read so far, against its size when known: rate and ETA for a file.
    fn reading(input: &Input) -> Self {
        let (bar, template) = match input.size {
            Some(size) => (indicatif::ProgressBar::new(size), "{bar:30} {bytes}/{total_bytes} ({bytes_per_sec}, eta {eta}) {msg}"),
            None => (indicatif::ProgressBar::new_spinner(), "{spinner} {bytes} read ({bytes_per_sec}, {elapsed}) {msg}"),
        };
        if let Ok(style) = indicatif::ProgressStyle::with_template(template) {
            bar.set_style(style);
        }
        Self(bar)
    }

    fn update(&self, text: &str) {
        self.0.set_message(text.to_owned());
        self.0.tick();
    }
    fn done(&self) {
        self.0.finish_and_clear();
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

/// An achievement's source as a file spells it: empty (Microsoft Learning), or a kind's name.
fn source(raw: &str) -> Result<pb::AchievementSource, (&'static str, String)> {
    match raw {
        "" => Ok(pb::AchievementSource::MicrosoftLearning),
        raw => match idlink_client::parse_kind(raw) {
            Ok(pb::LinkKind::PartnerUniversity) => Ok(pb::AchievementSource::PartnerUniversity),
            Ok(_) => Ok(pb::AchievementSource::MicrosoftLearning),
            Err(_) => Err(("SOURCE_NOT_RECOGNISED", format!("source {raw:?}: use microsoft-learning or partner-university"))),
        },
    }
}

/// A certification's fields as a file gives them: (tenant, object, id, earned_at, expires_at,
/// source).
type CertificationFields = (String, String, String, String, String, String);

/// One line of a JSON-lines certification file.
fn certification_of_json(line: &str) -> Result<pb::Certification, (&'static str, String)> {
    let v: serde_json::Value = serde_json::from_str(line).map_err(|e| ("MALFORMED", format!("not JSON: {e}")))?;
    let s = |ptr: &str| v.pointer(ptr).and_then(|x| x.as_str()).unwrap_or_default().to_owned();
    let fields =
        ["/personal_account/tenant_id", "/personal_account/object_id", "/certification_id", "/earned_at", "/expires_at", "/source"];
    let [a, b, c, d, e, f] = fields.map(s);
    certification((a, b, c, d, e, f))
}

/// Where a CSV's certification fields are: named by its header, or — a file without one — in
/// the documented order `personal_tenant_id,personal_object_id,certification_id,earned_at,
/// expires_at[,source]`.
struct CertificationColumns {
    tenant: Option<usize>,
    object: usize,
    id: usize,
    earned: usize,
    expires: Option<usize>,
    source: Option<usize>,
    /// Without a header, a record must have exactly the documented fields.
    positional: bool,
}

impl CertificationColumns {
    const POSITIONAL: Self = Self { tenant: Some(0), object: 1, id: 2, earned: 3, expires: Some(4), source: Some(5), positional: true };

    /// The documented order, as a header names it.
    const DOCUMENTED: [&str; 6] = ["personal_tenant_id", "personal_object_id", "certification_id", "earned_at", "expires_at", "source"];

    /// The header's columns when `first` is a header (it names `certification_id`). A header in
    /// the documented order keeps the documented rules (an unnamed sixth field is the source).
    fn of(first: &csv::StringRecord) -> anyhow::Result<Option<Self>> {
        if column(first, "certification_id").is_none() {
            return Ok(None);
        }
        let names: Vec<String> = first.iter().map(|h| h.trim().trim_start_matches('\u{feff}').to_ascii_lowercase()).collect();
        if (5..=6).contains(&names.len()) && names.iter().zip(Self::DOCUMENTED).all(|(name, documented)| name == documented) {
            return Ok(Some(Self::POSITIONAL));
        }
        Ok(Some(Self {
            tenant: column(first, "personal_tenant_id"),
            object: required_column(first, "personal_object_id")?,
            id: required_column(first, "certification_id")?,
            earned: required_column(first, "earned_at")?,
            expires: column(first, "expires_at"),
            source: column(first, "source"),
            positional: false,
        }))
    }

    fn fields(&self, record: &csv::StringRecord) -> Result<CertificationFields, (&'static str, String)> {
        if self.positional && !(5..=6).contains(&record.len()) {
            return Err(("MALFORMED", format!("expected 5 or 6 comma-separated fields, found {}", record.len())));
        }
        let needed = [self.object, self.id, self.earned].into_iter().max().unwrap_or_default() + 1;
        if record.len() < needed {
            return Err(("MALFORMED", format!("expected at least {needed} fields, as the header says, found {}", record.len())));
        }
        let field = |i: Option<usize>| i.and_then(|i| record.get(i)).unwrap_or_default().trim().to_owned();
        let tenant = field(self.tenant);
        let tenant = if tenant.is_empty() && !self.positional { idlink_client::CONSUMER_TENANT.to_owned() } else { tenant };
        Ok((tenant, field(Some(self.object)), field(Some(self.id)), field(Some(self.earned)), field(self.expires), field(self.source)))
    }
}

/// The line a record starts on, counting from 1 (of the input as [`Lf`] hands it over).
fn record_line(record: &csv::StringRecord) -> Option<u64> {
    record.position().map(csv::Position::line)
}

/// The input with each CRLF as LF. csv ends a record at a CR and counts its line once the LF
/// after it is read, with the next record: a CRLF file's records would be numbered a line short.
struct Lf<R> {
    inner: std::io::BufReader<R>,
}

impl<R: std::io::Read> Lf<R> {
    fn new(inner: R) -> Self {
        Self { inner: std::io::BufReader::new(inner) }
    }
}

impl<R: std::io::Read> std::io::Read for Lf<R> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        use std::io::BufRead;
        // Waits for input only while nothing is written yet: a pipe's records go on as they come.
        let mut written = 0;
        while written < out.len() {
            let buffered = if written == 0 { self.inner.fill_buf()? } else { self.inner.buffer() };
            let (byte, more) = match buffered {
                [] => break,
                [b'\r'] if written > 0 => break, // what follows the CR decides: next read
                [byte, rest @ ..] => (*byte, rest.first().copied()),
            };
            self.inner.consume(1);
            if byte == b'\r' {
                let next = match more {
                    Some(next) => Some(next),
                    None => self.inner.fill_buf()?.first().copied(),
                };
                if next == Some(b'\n') {
                    continue; // the LF that follows ends the line
                }
            }
            out[written] = byte;
            written += 1;
        }
        Ok(written)
    }
}

/// A certification from its fields; a refusal is (reason, detail).
fn certification(fields: CertificationFields) -> Result<pb::Certification, (&'static str, String)> {
    let malformed = |why: String| ("MALFORMED", why);
    let (tenant, object, id, earned, expires, from) = fields;
    Ok(pb::Certification {
        personal_account: Some(pb::AccountRef { tenant_id: tenant, object_id: object }),
        certification_id: id,
        earned_at: timestamp(&earned, "earned_at").map_err(malformed)?,
        expires_at: timestamp(&expires, "expires_at").map_err(malformed)?,
        source: source(&from)? as i32,
    })
}

/// Rejections kept to list (all are counted): memory stays bounded however bad the file.
const REJECTIONS_KEPT: usize = 1000;

/// What an import did so far.
#[derive(Default)]
struct Imported {
    lines: u64,
    accepted: u64,
    duplicates: u64,
    rejected: u64,
    /// The first rejections: line number, reason, detail.
    rejections: Vec<(u64, String, String)>,
}

impl Imported {
    fn reject(&mut self, line: u64, reason: String, detail: String) {
        self.rejected += 1;
        if self.rejections.len() < REJECTIONS_KEPT {
            self.rejections.push((line, reason, detail));
        }
    }

    /// Counts one call's answer; `sent_lines[i]` is the line of the batch's `i`-th item.
    fn add(&mut self, answer: Answer, sent_lines: &[u64]) {
        self.accepted += answer.accepted;
        self.duplicates += answer.duplicates;
        for r in &answer.rejections {
            let line = usize::try_from(r.index).ok().and_then(|i| sent_lines.get(i)).copied().unwrap_or(0);
            self.reject(line, r.reason.clone(), r.detail.clone());
        }
        // Rejections the answer counted but did not list.
        self.rejected += answer.rejected.saturating_sub(answer.rejections.len() as u64);
    }

    /// Prints the summary: a line and the first rejections, or one JSON object.
    fn report(self, json_output: bool) {
        let Imported { lines, accepted, duplicates, rejected, mut rejections } = self;
        rejections.sort();
        if json_output {
            let listed: Vec<_> = rejections
                .iter()
                .take(100)
                .map(|(line, reason, detail)| json!({"line": line, "reason": reason, "detail": detail}))
                .collect();
            println!(
                "{}",
                json!({"lines": lines, "accepted": accepted, "duplicates": duplicates, "rejected": rejected, "rejections": listed})
            );
        } else {
            println!("{lines} lines: {accepted} accepted, {duplicates} duplicates, {rejected} rejected");
            for (line, reason, detail) in rejections.iter().take(20) {
                println!("  line {line}: {reason}: {detail}");
            }
            if rejected > 20 {
                println!("  … and {} more", rejected - 20);
            }
        }
    }
}

/// What one recording call answered, whatever it recorded.
struct Answer {
    accepted: u64,
    duplicates: u64,
    rejected: u64,
    rejections: Vec<pb::Rejection>,
}

impl From<pb::RecordCertificationsResponse> for Answer {
    fn from(r: pb::RecordCertificationsResponse) -> Self {
        Self { accepted: r.accepted, duplicates: r.duplicates, rejected: r.rejected, rejections: r.rejections }
    }
}

impl From<pb::RecordLearningProfilesResponse> for Answer {
    fn from(r: pb::RecordLearningProfilesResponse) -> Self {
        Self { accepted: r.accepted, duplicates: r.duplicates, rejected: r.rejected, rejections: r.rejections }
    }
}

/// Items of an import gathered into calls of `batch_lines`: constant memory however large the
/// input, each call retried alone (by the client) and sent with a token fresh enough.
struct Batches<T> {
    batch_lines: usize,
    batch: Vec<T>,
    sent_lines: Vec<u64>,
    imported: Imported,
    progress: Progress,
    /// Bytes of the input read so far.
    read: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl<T> Batches<T> {
    fn new(batch_lines: usize, input: &Input) -> Self {
        Self {
            batch_lines,
            batch: Vec::with_capacity(batch_lines),
            sent_lines: Vec::with_capacity(batch_lines),
            imported: Imported::default(),
            progress: Progress::reading(input),
            read: input.read.clone(),
        }
    }

    /// Counts line `line` (parsed, or refused with a reason) and sends a full batch.
    async fn push<F, A>(&mut self, line: u64, parsed: Result<T, (&str, String)>, send: &F) -> anyhow::Result<()>
    where
        F: AsyncFn(&[T]) -> Result<A, idlink_client::ClientError>,
        A: Into<Answer>,
    {
        self.imported.lines = line;
        match parsed {
            Ok(item) => {
                self.batch.push(item);
                self.sent_lines.push(line);
            }
            Err((reason, why)) => self.imported.reject(line, reason.to_owned(), why),
        }
        if self.batch.len() >= self.batch_lines { self.send(send).await } else { Ok(()) }
    }

    /// Sends what is gathered. A call that still fails stops the import and says how far it
    /// got; rerunning is safe (what was recorded counts as duplicates).
    async fn send<F, A>(&mut self, send: &F) -> anyhow::Result<()>
    where
        F: AsyncFn(&[T]) -> Result<A, idlink_client::ClientError>,
        A: Into<Answer>,
    {
        if self.batch.is_empty() {
            return Ok(());
        }
        let answer = send(&self.batch).await.map_err(|e| {
            let at = self.sent_lines.first().copied().unwrap_or_default();
            anyhow::Error::new(e).context(format!(
                "stopped at line {at}: {} accepted and {} duplicates before it; rerunning is safe",
                self.imported.accepted, self.imported.duplicates
            ))
        })?;
        self.imported.add(answer.into(), &self.sent_lines);
        self.batch.clear();
        self.sent_lines.clear();
        self.progress.0.set_position(self.read.load(std::sync::atomic::Ordering::Relaxed));
        self.progress.update(&format!("{} lines sent", self.imported.lines));
        Ok(())
    }

    /// Every line of a JSON-lines input, parsed by `parse` (blank lines skipped, still counted).
    async fn push_json_lines<F, A>(
        &mut self,
        input: impl std::io::Read,
        parse: impl Fn(&str) -> Result<T, (&'static str, String)>,
        send: &F,
    ) -> anyhow::Result<()>
    where
        F: AsyncFn(&[T]) -> Result<A, idlink_client::ClientError>,
        A: Into<Answer>,
    {
        for (n, line) in std::io::BufRead::lines(std::io::BufReader::new(input)).enumerate() {
            let number = n as u64 + 1;
            let line = line.with_context(|| format!("reading line {number}"))?;
            if line.trim().is_empty() {
                self.imported.lines = number;
            } else {
                self.push(number, parse(&line), send).await?;
            }
        }
        Ok(())
    }

    /// Sends the rest and prints the summary.
    async fn finish<F, A>(mut self, send: &F, json_output: bool) -> anyhow::Result<()>
    where
        F: AsyncFn(&[T]) -> Result<A, idlink_client::ClientError>,
        A: Into<Answer>,
    {
        self.send(send).await?;
        self.progress.done();
        self.imported.report(json_output);
        Ok(())
    }
}

/// An import's input: a file (its size known) or standard input, counting the bytes read.
struct Input {
    reader: Counting,
    read: std::sync::Arc<std::sync::atomic::AtomicU64>,
    size: Option<u64>,
}

struct Counting {
    inner: Box<dyn std::io::Read + Send>,
    read: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl std::io::Read for Counting {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(out)?;
        self.read.fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
        Ok(n)
    }
}

fn open_input(path: &Path) -> anyhow::Result<Input> {
    let (inner, size): (Box<dyn std::io::Read + Send>, _) = if path == Path::new("-") {
        (Box::new(std::io::stdin()), None)
    } else {
        let file = std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
        let size = file.metadata().ok().map(|m| m.len());
        (Box::new(file), size)
    };
    let read = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    Ok(Input { reader: Counting { inner, read: read.clone() }, read, size })
}

fn is_jsonl(path: &Path, jsonl: bool) -> bool {
    jsonl || (path != Path::new("-") && path.extension().is_some_and(|e| e == "jsonl" || e == "json" || e == "ndjson"))
}

/// Sends a certification file (or standard input, `-`) to the service in calls of
/// `batch_lines` certifications: constant memory however large the input, each call retried
/// alone and sent with a token fresh enough. A call that still fails stops the import and says
/// how far it got; rerunning is safe (what was recorded counts as duplicates).
pub async fn import(client: &IdlinkClient, args: &ImportArgs, json_output: bool) -> anyhow::Result<()> {
    let path = args.file.as_path();
    let send = async |batch: &[pb::Certification]| client.record_certification_batch(batch).await;
    let input = open_input(path)?;
    let mut batches = Batches::new(args.batch_lines as usize, &input);
    let input = input.reader;
    if is_jsonl(path, args.jsonl) {
        batches.push_json_lines(input, certification_of_json, &send).await?;
        return batches.finish(&send, json_output).await;
    }
    // Quoting, CRLF, a byte-order mark and columns in any order (with a header) are the csv
    // crate's; each record is numbered by the line it starts on.
    let mut reader = csv::ReaderBuilder::new().has_headers(false).flexible(true).trim(csv::Trim::All).from_reader(Lf::new(input));
    let mut record = csv::StringRecord::new();
    let mut columns = None;
    loop {
        let read = reader.read_record(&mut record);
        let line = record_line(&record).unwrap_or(batches.imported.lines + 1);
        let parsed = match read {
            Ok(false) => break,
            Err(e) => Err(("MALFORMED", e.to_string())),
            Ok(true) if record.iter().all(str::is_empty) => {
                batches.imported.lines = line;
                continue;
            }
            Ok(true) => {
                // The first record says whether the file has a header.
                if columns.is_none()
                    && let Some(named) = CertificationColumns::of(&record)?
                {
                    columns = Some(named);
                    batches.imported.lines = line;
                    continue;
                }
                columns.get_or_insert(CertificationColumns::POSITIONAL).fields(&record).and_then(certification)
            }
        };
        batches.push(line, parsed, &send).await?;
    }
    batches.finish(&send, json_output).await
}

/// One Learning profile of a CSV record: columns found by their header's names
/// (`personal_object_id` and `mcid`; `personal_tenant_id` defaults to the consumer tenant).
fn profile_of_record(columns: &ProfileColumns, record: &csv::StringRecord) -> Result<pb::LearningProfile, (&'static str, String)> {
    let field = |i: Option<usize>| i.and_then(|i| record.get(i)).unwrap_or_default().trim().to_owned();
    Ok(pb::LearningProfile {
        personal_account: Some(personal_ref(field(columns.tenant), field(Some(columns.object)))),
        mcid: field(Some(columns.mcid)),
    })
}

/// A personal account as a file names it: the consumer tenant when the tenant is left out.
fn personal_ref(tenant: String, object: String) -> pb::AccountRef {
    let tenant_id = if tenant.is_empty() { idlink_client::CONSUMER_TENANT.to_owned() } else { tenant };
    pb::AccountRef { tenant_id, object_id: object }
}

/// The position of the column a CSV header names `name` (case-insensitive, a leading
/// byte-order mark ignored), if it has one.
fn column(headers: &csv::StringRecord, name: &str) -> Option<usize> {
    headers.iter().position(|h| h.trim().trim_start_matches('\u{feff}').eq_ignore_ascii_case(name))
}

/// As [`column`], for a column the file must have.
fn required_column(headers: &csv::StringRecord, name: &str) -> anyhow::Result<usize> {
    column(headers, name)
        .ok_or_else(|| anyhow!("the header has no {name} column (it has: {})", headers.iter().collect::<Vec<_>>().join(", ")))
}

struct ProfileColumns {
    tenant: Option<usize>,
    object: usize,
    mcid: usize,
}

impl ProfileColumns {
    fn of(headers: &csv::StringRecord) -> anyhow::Result<Self> {
        Ok(Self {
            tenant: column(headers, "personal_tenant_id"),
            object: required_column(headers, "personal_object_id")?,
            mcid: required_column(headers, "mcid")?,
        })
    }
}

fn profile_of_json(line: &str) -> Result<pb::LearningProfile, (&'static str, String)> {
    let v: serde_json::Value = serde_json::from_str(line).map_err(|e| ("MALFORMED", format!("not JSON: {e}")))?;
    let s = |ptr: &str| v.pointer(ptr).and_then(|x| x.as_str()).unwrap_or_default().to_owned();
    Ok(pb::LearningProfile {
        personal_account: Some(personal_ref(s("/personal_account/tenant_id"), s("/personal_account/object_id"))),
        mcid: s("/mcid"),
    })
}

/// Sends a Learning profile file (CSV with a header naming its columns, or JSON lines; `-`
/// for standard input) in calls of `batch_lines` profiles (Certifications.Write). Safe to
/// rerun: profiles already recorded count as duplicates.
pub async fn import_profiles(client: &IdlinkClient, args: &ImportArgs, json_output: bool) -> anyhow::Result<()> {
    let send = async |batch: &[pb::LearningProfile]| client.record_learning_profile_batch(batch).await;
    let path = args.file.as_path();
    let input = open_input(path)?;
    let mut batches = Batches::new(args.batch_lines as usize, &input);
    let input = input.reader;
    if is_jsonl(path, args.jsonl) {
        batches.push_json_lines(input, profile_of_json, &send).await?;
    } else {
        let mut reader = csv::ReaderBuilder::new().flexible(true).trim(csv::Trim::All).from_reader(Lf::new(input));
        let columns = ProfileColumns::of(reader.headers().context("reading the header")?)?;
        let mut record = csv::StringRecord::new();
        batches.imported.lines = 1;
        // Each record numbered by the line it starts on (the header is line 1).
        loop {
            let read = reader.read_record(&mut record);
            let line = record_line(&record).unwrap_or(batches.imported.lines + 1);
            let parsed = match read {
                Ok(false) => break,
                Ok(true) => profile_of_record(&columns, &record),
                Err(e) => Err(("MALFORMED", e.to_string())),
            };
            batches.push(line, parsed, &send).await?;
        }
    }
    batches.finish(&send, json_output).await
}

/// The signed-in person's achievements, and what each does for their organisation.
pub async fn show_mine(client: &IdlinkClient, json_output: bool) -> anyhow::Result<()> {
    let mine = client.my_certifications().await?;
    let why = |c: &pb::MyCertification| match c.not_counting() {
        pb::NotCountingReason::Unspecified => "",
        pb::NotCountingReason::Expired => "EXPIRED",
        pb::NotCountingReason::NotInCatalog => "NOT_IN_CATALOG",
        pb::NotCountingReason::NotLinked => "NOT_LINKED",
    };
    let source = |c: &pb::MyCertification| match c.source() {
        pb::AchievementSource::PartnerUniversity => "partner-university",
        _ => "microsoft-learning",
    };
    let time = |t: &Option<prost_types::Timestamp>| {
        t.as_ref()
            .and_then(|t| chrono::DateTime::from_timestamp(t.seconds, 0))
            .map(|t| t.format("%Y-%m-%d").to_string())
            .unwrap_or_default()
    };
    if json_output {
        let listed: Vec<_> = mine
            .certifications
            .iter()
            .map(|c| {
                let credits: Vec<_> = c
                    .credits
                    .iter()
                    .map(
                        |a| json!({"area_id": a.area_id, "name": a.name, "organization_id": a.organization_id, "partner_id": a.partner_id}),
                    )
                    .collect();
                json!({"certification_id": c.certification_id, "title": c.title, "source": source(c), "earned_at": time(&c.earned_at),
                       "expires_at": time(&c.expires_at), "expiring_soon": c.expiring_soon, "credits": credits, "not_counting": why(c)})
            })
            .collect();
        println!("{}", json!({"mcid": mine.mcid, "certifications": listed}));
        return Ok(());
    }
    println!("MCID: {}", if mine.mcid.is_empty() { "none (no Microsoft Learning link, or no profile yet)" } else { &mine.mcid });
    if mine.certifications.is_empty() {
        println!("  no achievements of your linked accounts");
    }
    for c in &mine.certifications {
        let expiry = match (time(&c.expires_at), c.expiring_soon) {
            (at, _) if at.is_empty() => String::new(),
            (at, true) => format!(", expires {at} (renew now)"),
            (at, false) => format!(", expires {at}"),
        };
        let counts = if c.credits.is_empty() {
            format!("counts for nothing: {}", why(c))
        } else {
            format!("counts for {}", c.credits.iter().map(|a| a.name.as_str()).collect::<Vec<_>>().join(", "))
        };
        println!("  {} ({}, earned {}{expiry}): {counts}", c.title, source(c), time(&c.earned_at));
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
                        progress.0.suspend(|| {
                            println!(
                                "drift repaired in {id} / {}: stored {}p {}c, recomputed {}p {}c",
                                d.area_id, s.people, s.certifications, r.people, r.certifications
                            )
                        });
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

/// Follows the change feed from `from`, printing each event once. When the stream breaks —
/// the server restarts, a rolling update moves the connection — it is opened again after the
/// last cursor printed (opening retries while the server is away, within --retry-seconds), so
/// nothing is missed or repeated. A refusal (an expired cursor, no permission) ends it, and
/// so does a break when `reconnect` is off.
pub async fn watch(client: &IdlinkClient, from: u64, limit: Option<u64>, reconnect: bool, json_output: bool) -> anyhow::Result<()> {
    let (mut cursor, mut seen) = (from, 0u64);
    // Breaks in a row without an event between them: each waits longer before reopening.
    let mut barren = 0u32;
    loop {
        let seen_before = seen;
        let mut stream = client.watch_link_events(cursor).await?;
        let broke = loop {
            let event = match stream.next().await {
                None => break None,
                Some(Err(status)) => break Some(idlink_client::ClientError::from(status)),
                Some(Ok(event)) => event,
            };
            print_event(&event, json_output);
            cursor = event.cursor;
            seen += 1;
            if limit.is_some_and(|l| seen >= l) {
                return Ok(());
            }
        };
        match broke {
            Some(e) if !reconnect || !e.is_transient() => return Err(e.into()),
            None if !reconnect => return Err(anyhow!("the server ended the change feed after cursor {cursor}")),
            _ => note(&format!("the change feed broke; reopening after cursor {cursor}")),
        }
        barren = if seen == seen_before { barren + 1 } else { 0 };
        if barren > 0 {
            tokio::time::sleep(idlink_client::RetryPolicy::default().delay(barren - 1, None)).await;
        }
    }
}

/// A note for a person on stderr (never on stdout, which scripts read).
fn note(text: &str) {
    eprintln!("idlink: {text}");
}

fn print_event(event: &pb::LinkEvent, json_output: bool) {
    let kind = pb::LinkEventType::try_from(event.r#type).map(|t| t.as_str_name()).unwrap_or("UNKNOWN");
    let link = event.link.clone().unwrap_or_default();
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
}

/// The report's columns: one row per person and area (a person counting in no area has one
/// row with the area empty), so that it streams and pivots in any spreadsheet.
const SKILLS_COLUMNS: [&str; 8] =
    ["user_principal_name", "tenant_id", "object_id", "partner_university", "microsoft_learning", "mcid", "area_id", "achievements"];

fn skills_rows(person: &pb::OrganizationPerson) -> Vec<[String; 8]> {
    let work = person.work_user.clone().unwrap_or_default();
    let yes = |b: bool| if b { "yes" } else { "no" }.to_owned();
    let row = |area: &str, ids: String| {
        [
            work.user_principal_name.clone(),
            work.tenant_id.clone(),
            work.object_id.clone(),
            yes(person.partner_university_linked),
            yes(person.microsoft_learning_linked),
            person.mcid.clone(),
            area.to_owned(),
            ids,
        ]
    };
    if person.areas.is_empty() {
        return vec![row("", String::new())];
    }
    person.areas.iter().map(|a| row(&a.area_id, a.certification_ids.join(";"))).collect()
}

/// Streams the skills report page by page: CSV to a file (or `-`), JSON lines with --json, or
/// a table; a progress line on a terminal.
pub async fn skills_report(
    client: &IdlinkClient,
    org: &str,
    csv_path: Option<&Path>,
    page_size: i32,
    json_output: bool,
) -> anyhow::Result<()> {
    let mut request = pb::ListOrganizationPeopleRequest { page_size, ..Default::default() };
    if org.bytes().all(|b| b.is_ascii_digit()) {
        request.partner_id = org.to_owned();
    } else {
        request.organization_id = org.to_owned();
    }
    let mut writer = match csv_path {
        Some(path) if path == Path::new("-") => Some(csv::Writer::from_writer(Box::new(std::io::stdout()) as Box<dyn Write>)),
        Some(path) => {
            let file = std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
            Some(csv::Writer::from_writer(Box::new(std::io::BufWriter::new(file)) as Box<dyn Write>))
        }
        None => None,
    };
    if let Some(w) = writer.as_mut() {
        w.write_record(SKILLS_COLUMNS)?;
    }
    let progress = indicatif::ProgressBar::new_spinner();
    progress.set_style(indicatif::ProgressStyle::with_template("{spinner} {pos} people ({per_sec}, {elapsed})")?);
    let mut people = 0u64;
    loop {
        let page = client.list_organization_people(request.clone()).await?;
        for person in &page.people {
            people += 1;
            for row in skills_rows(person) {
                match writer.as_mut() {
                    Some(w) => w.write_record(&row)?,
                    None if json_output => {
                        println!(
                            "{}",
                            serde_json::Value::Object(SKILLS_COLUMNS.iter().zip(&row).map(|(k, v)| ((*k).to_owned(), json!(v))).collect())
                        )
                    }
                    None => progress.suspend(|| println!("{}", row.join("  "))),
                }
            }
        }
        progress.set_position(people);
        if page.next_page_token.is_empty() {
            break;
        }
        request.page_token = page.next_page_token;
    }
    progress.finish_and_clear();
    if let Some(mut w) = writer {
        w.flush()?;
        if csv_path != Some(Path::new("-")) {
            eprintln!("{people} people written");
        }
    }
    Ok(())
}

/// Removes one deleted work account's links and says what was tombstoned.
pub async fn remove_user(
    client: &IdlinkClient,
    user: pb::AccountRef,
    reason: &str,
    request_id: &str,
    json_output: bool,
) -> anyhow::Result<()> {
    let request = pb::RemoveWorkUserRequest { user: Some(user.clone()), reason: reason.to_owned(), request_id: request_id.to_owned() };
    let removed = client.remove_work_user(request).await?.removed;
    if json_output {
        let ids: Vec<_> = removed.iter().map(|l| l.id.clone()).collect();
        println!("{}", json!({"tenant_id": user.tenant_id, "object_id": user.object_id, "removed": ids}));
    } else if removed.is_empty() {
        println!("{}/{}: no active link", user.tenant_id, user.object_id);
    } else {
        println!("{}/{}: {} link(s) removed", user.tenant_id, user.object_id, removed.len());
    }
    Ok(())
}

/// The users of a removal file: CSV with `tenant_id` and `object_id` columns (by header name),
/// or JSON lines `{"tenant_id": …, "object_id": …}`; a line that names nobody is an error
/// naming it.
fn users_of(path: &Path, jsonl: bool) -> anyhow::Result<Vec<(u64, pb::AccountRef)>> {
    let input = open_input(path)?.reader;
    let mut users = Vec::new();
    if is_jsonl(path, jsonl) {
        for (n, line) in std::io::BufRead::lines(std::io::BufReader::new(input)).enumerate() {
            let line = line.with_context(|| format!("reading line {}", n + 1))?;
            if line.trim().is_empty() {
                continue;
            }
            let v: serde_json::Value = serde_json::from_str(&line).with_context(|| format!("line {}: not JSON", n + 1))?;
            let s = |k: &str| v.get(k).and_then(|x| x.as_str()).unwrap_or_default().to_owned();
            users.push((n as u64 + 1, pb::AccountRef { tenant_id: s("tenant_id"), object_id: s("object_id") }));
        }
        return Ok(users);
    }
    let mut reader = csv::ReaderBuilder::new().flexible(true).trim(csv::Trim::All).from_reader(Lf::new(input));
    let headers = reader.headers().context("reading the header")?.clone();
    let (tenant, object) = (required_column(&headers, "tenant_id")?, required_column(&headers, "object_id")?);
    for (n, record) in reader.records().enumerate() {
        let record = record.with_context(|| format!("line {}", n + 2))?;
        let field = |i: usize| record.get(i).unwrap_or_default().to_owned();
        users.push((n as u64 + 2, pb::AccountRef { tenant_id: field(tenant), object_id: field(object) }));
    }
    Ok(users)
}

/// Removes every user of a file, one call each with its own request id, so a retry never acts
/// twice and a rerun of the whole file is safe (users already removed answer no tombstone).
/// Refusals are counted and listed; a call that still fails after its retries stops the run,
/// naming the line.
pub async fn remove_users(client: &IdlinkClient, path: &Path, jsonl: bool, reason: &str, json_output: bool) -> anyhow::Result<()> {
    let users = users_of(path, jsonl)?;
    let progress = indicatif::ProgressBar::new(users.len() as u64);
    progress.set_style(indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} users ({per_sec}, eta {eta})")?);
    let (mut links, mut refused) = (0usize, Vec::new());
    for (line, user) in &users {
        let request = pb::RemoveWorkUserRequest {
            user: Some(user.clone()),
            reason: reason.to_owned(),
            request_id: format!("idlink-cli-{:032x}", rand::random::<u128>()),
        };
        match client.remove_work_user(request).await {
            Ok(answer) => links += answer.removed.len(),
            Err(idlink_client::ClientError::Rpc { reason, message, .. }) if !reason.is_empty() => refused.push((*line, reason, message)),
            Err(e) => return Err(anyhow::Error::new(e).context(format!("stopped at line {line}; rerunning is safe"))),
        }
        progress.inc(1);
    }
    progress.finish_and_clear();
    if json_output {
        let listed: Vec<_> =
            refused.iter().map(|(line, reason, detail)| json!({"line": line, "reason": reason, "detail": detail})).collect();
        println!("{}", json!({"users": users.len(), "links_removed": links, "refused": listed.len(), "refusals": listed}));
    } else {
        println!("{} users: {links} links removed, {} refused", users.len(), refused.len());
        for (line, reason, detail) in refused.iter().take(20) {
            println!("  line {line}: {reason}: {detail}");
        }
    }
    Ok(())
}
