//! The Learning feed's RecordCertifications: one session per stream, authorized when it opens,
//! written in batches (one transaction and one flush each), answered with what was accepted,
//! recorded already, or rejected and why, and audited when it ends.

use chrono::{DateTime, Utc};

use super::Credits;
use crate::{
    domain::{Certification, DomainError, Operation},
    linking::{Actor, Result},
    store::Recorded,
};

/// Certifications written per transaction (and per flush).
const RECORD_BATCH: usize = 512;
/// Rejections listed in the answer (all are counted).
const MAX_REJECTIONS_LISTED: usize = 1000;

/// What a recording session did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RecordSummary {
    pub accepted: u64,
    pub duplicates: u64,
    pub rejected: u64,
    /// The first rejections: position in the stream (from 0) and why.
    pub rejections: Vec<(u64, DomainError)>,
}

/// One RecordCertifications stream in progress.
pub struct Recording<'a> {
    credits: &'a Credits,
    actor: &'a Actor,
    batch: Vec<Certification>,
    next_index: u64,
    summary: RecordSummary,
}

impl Credits {
    /// Opens a recording session for a caller with `Certifications.Write`.
    pub fn start_recording<'a>(&'a self, actor: &'a Actor) -> Result<Recording<'a>> {
        self.authorize(actor, Operation::RecordCertifications)?;
        Ok(Recording { credits: self, actor, batch: Vec::with_capacity(RECORD_BATCH), next_index: 0, summary: RecordSummary::default() })
    }
}

impl Recording<'_> {
    /// The next certification of the stream, as parsed: kept for the batch, or counted as
    /// rejected. A full batch is written.
    pub async fn add(&mut self, parsed: Result<Certification, DomainError>, now: DateTime<Utc>) -> Result<()> {
        let index = self.next_index;
        self.next_index += 1;
        match parsed {
            Ok(certification) => self.batch.push(certification),
            Err(rejected) => {
                self.summary.rejected += 1;
                if self.summary.rejections.len() < MAX_REJECTIONS_LISTED {
                    self.summary.rejections.push((index, rejected));
                }
            }
        }
        if self.batch.len() == RECORD_BATCH { self.write(now).await } else { Ok(()) }
    }

    async fn write(&mut self, now: DateTime<Utc>) -> Result<()> {
        if self.batch.is_empty() {
            return Ok(());
        }
        for outcome in self.credits.store.record_certifications(&self.batch, now).await? {
            match outcome {
                Recorded::Accepted => self.summary.accepted += 1,
                Recorded::Duplicate => self.summary.duplicates += 1,
            }
        }
        self.batch.clear();
        Ok(())
    }

    /// Writes the rest and answers the session's summary.
    pub async fn finish(mut self, now: DateTime<Utc>) -> Result<RecordSummary> {
        self.write(now).await?;
        let s = &self.summary;
        tracing::info!(target: "audit", action = "certifications.record", outcome = "ok", request_id = self.actor.request_id,
            accepted = s.accepted, duplicates = s.duplicates, rejected = s.rejected, "mutation");
        Ok(self.summary)
    }
}
