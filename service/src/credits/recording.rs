//! The Learning feed's RecordCertifications and RecordLearningProfiles: one session per
//! stream, authorized when it opens, written in batches (one transaction and one flush each),
//! answered with what was accepted, recorded already, or rejected and why, and audited when
//! it ends.

use chrono::{DateTime, Utc};

use super::Credits;
use crate::{
    domain::{Certification, DomainError, LearningProfile, Operation},
    linking::{Actor, Result},
    store::{DynStore, Recorded},
};

/// What a recording session records: a batch at a time, in one transaction.
pub trait Recordable: Sized + Send + Sync + 'static {
    /// The operation a caller must be allowed, checked when the session opens.
    const OPERATION: Operation<'static>;
    /// The audit line's action.
    const ACTION: &'static str;
    fn record(
        store: &DynStore,
        batch: &[Self],
        now: DateTime<Utc>,
    ) -> impl std::future::Future<Output = crate::store::Result<Vec<Recorded>>> + Send;
}

impl Recordable for Certification {
    const OPERATION: Operation<'static> = Operation::RecordCertifications;
    const ACTION: &'static str = "certifications.record";
    async fn record(store: &DynStore, batch: &[Self], now: DateTime<Utc>) -> crate::store::Result<Vec<Recorded>> {
        store.record_certifications(batch, now).await
    }
}

impl Recordable for LearningProfile {
    const OPERATION: Operation<'static> = Operation::RecordLearningProfiles;
    const ACTION: &'static str = "learning_profiles.record";
    async fn record(store: &DynStore, batch: &[Self], _now: DateTime<Utc>) -> crate::store::Result<Vec<Recorded>> {
        store.record_learning_profiles(batch).await
    }
}

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

/// One recording stream in progress.
pub struct Recording<'a, T> {
    credits: &'a Credits,
    actor: &'a Actor,
    batch: Vec<T>,
    next_index: u64,
    summary: RecordSummary,
}

impl Credits {
    /// Opens a recording session for a caller with `Certifications.Write`.
    pub fn start_recording<'a, T: Recordable>(&'a self, actor: &'a Actor) -> Result<Recording<'a, T>> {
        self.authorize(actor, T::OPERATION)?;
        Ok(Recording { credits: self, actor, batch: Vec::with_capacity(RECORD_BATCH), next_index: 0, summary: RecordSummary::default() })
    }
}

impl<T: Recordable> Recording<'_, T> {
    /// The next item of the stream, as parsed: kept for the batch, or counted as rejected. A
    /// full batch is written.
    pub async fn add(&mut self, parsed: Result<T, DomainError>, now: DateTime<Utc>) -> Result<()> {
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
        for outcome in T::record(&self.credits.store, &self.batch, now).await? {
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
        tracing::info!(target: "audit", action = T::ACTION, outcome = "ok", request_id = self.actor.request_id,
            accepted = s.accepted, duplicates = s.duplicates, rejected = s.rejected, "mutation");
        Ok(self.summary)
    }
}
