//! Write combining: link writes of concurrent callers queue for one committer thread, which
//! applies all it finds queued in one sled transaction; a flusher thread then makes each
//! batch durable with one flush (shared with every batch committed while it ran) before any
//! of its callers hears back. sled serialises transactions under one process-wide lock, so
//! a batch pays that lock, the commit and the flush once instead of once per change.
//!
//! Each change of a batch runs over an [`Overlay`]: it reads what the changes before it in
//! the batch wrote, and its own writes stay in its buffer until it succeeds. A change that
//! is refused (a uniqueness conflict, a stale etag) leaves nothing behind and gets its own
//! refusal; the others commit. Changes apply in queue order, so a batch is exactly the
//! changes run one after another, and sled re-runs the whole batch on a conflict with a
//! transaction outside it.

use std::{
    cell::{Cell, RefCell},
    collections::BTreeMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
        mpsc as std_mpsc,
    },
    thread::JoinHandle,
};

use sled::{IVec, Transactional, transaction::TransactionError};
use tokio::sync::{mpsc, oneshot, watch};

use super::tx::{TREES, Tx, TxError, Views};
use crate::store::{Result, StoreError};

/// The most changes one transaction takes: bounds a batch's time in sled's lock and the
/// memory of its write buffers.
pub(super) const MAX_BATCH: usize = 128;
/// Changes waiting for the committer; a caller past this waits to queue.
const QUEUE: usize = 1024;

/// Writes buffered per tree: `None` removes the key.
#[derive(Default)]
pub(super) struct Writes([BTreeMap<Vec<u8>, Option<IVec>>; TREES]);

impl Writes {
    fn absorb(&mut self, other: Writes) {
        for (mine, theirs) in self.0.iter_mut().zip(other.0) {
            mine.extend(theirs);
        }
    }

    fn apply(self, tx: &Tx<'_>) -> std::result::Result<(), TxError> {
        for (tree, writes) in self.0.into_iter().enumerate() {
            for (key, value) in writes {
                match value {
                    Some(value) => tx.insert_at(tree, &key, value)?,
                    None => tx.remove_at(tree, &key)?,
                }
            }
        }
        Ok(())
    }
}

/// One change's view of a batch: its own writes, over the batch's accepted writes, over the
/// transaction.
pub(super) struct Overlay<'a> {
    base: &'a Tx<'a>,
    batch: &'a Writes,
    mine: RefCell<Writes>,
    last_event: Cell<Option<u64>>,
}

impl Views for Overlay<'_> {
    fn get_at(&self, tree: usize, key: &[u8]) -> std::result::Result<Option<IVec>, TxError> {
        if let Some(value) = self.mine.borrow().0[tree].get(key) {
            return Ok(value.clone());
        }
        match self.batch.0[tree].get(key) {
            Some(value) => Ok(value.clone()),
            None => self.base.get_at(tree, key),
        }
    }

    fn insert_at(&self, tree: usize, key: &[u8], value: IVec) -> std::result::Result<(), TxError> {
        self.mine.borrow_mut().0[tree].insert(key.to_vec(), Some(value));
        Ok(())
    }

    fn remove_at(&self, tree: usize, key: &[u8]) -> std::result::Result<(), TxError> {
        self.mine.borrow_mut().0[tree].insert(key.to_vec(), None);
        Ok(())
    }

    fn appended(&self, cursor: u64) {
        self.last_event.set(Some(cursor));
    }
}

/// A queued change and the caller waiting for its outcome.
trait Job: Send {
    /// Runs the change; `Ok(false)` when it was refused (its writes are dropped), `Err` when
    /// the transaction must run again or cannot commit.
    fn run(&mut self, kv: &dyn Views) -> std::result::Result<bool, TxError>;
    /// Answers the caller: its outcome, or `failure` (the batch did not become durable).
    fn finish(self: Box<Self>, failure: Option<&str>);
}

struct Change<T, F> {
    change: F,
    outcome: Option<Result<T>>,
    reply: oneshot::Sender<Result<T>>,
}

impl<T, F> Job for Change<T, F>
where
    T: Send,
    F: FnMut(&dyn Views) -> std::result::Result<T, TxError> + Send,
{
    fn run(&mut self, kv: &dyn Views) -> std::result::Result<bool, TxError> {
        match (self.change)(kv) {
            Ok(value) => {
                self.outcome = Some(Ok(value));
                Ok(true)
            }
            Err(TxError::Abort(refusal)) => {
                self.outcome = Some(Err(refusal));
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    fn finish(self: Box<Self>, failure: Option<&str>) {
        let outcome = match (self.outcome, failure) {
            // A refusal wrote nothing: it stands whatever became of the batch.
            (Some(Err(refusal)), _) => Err(refusal),
            (Some(Ok(value)), None) => Ok(value),
            (_, failure) => Err(StoreError::Unavailable { detail: failure.unwrap_or("the change did not run").to_owned() }),
        };
        let _ = self.reply.send(outcome);
    }
}

/// Runs `jobs` in one transaction over `trees` (in the order of [`TREES`]); answers the
/// cursor of the last event appended.
fn commit(trees: &[sled::Tree], jobs: &mut [Box<dyn Job>]) -> Result<Option<u64>> {
    let jobs = RefCell::new(jobs);
    let result = trees.transaction(|views| {
        let tx = Tx { views, last_event: Cell::new(None) };
        let mut batch = Writes::default();
        let mut last_event = None;
        for job in jobs.borrow_mut().iter_mut() {
            let overlay = Overlay { base: &tx, batch: &batch, mine: RefCell::default(), last_event: Cell::new(None) };
            if job.run(&overlay)? {
                last_event = overlay.last_event.get().or(last_event);
                let mine = overlay.mine.into_inner();
                batch.absorb(mine);
            }
        }
        batch.apply(&tx)?;
        Ok(last_event)
    });
    result.map_err(|e| match e {
        TransactionError::Abort(e) => e,
        TransactionError::Storage(e) => super::unavailable(e),
    })
}

/// A batch committed (or not) and waiting for its flush.
struct Committed {
    jobs: Vec<Box<dyn Job>>,
    outcome: std::result::Result<Option<u64>, String>,
}

/// The committer and flusher threads; dropping it lets them finish what is queued and waits.
pub(super) struct Combiner {
    queue: Option<mpsc::Sender<Box<dyn Job>>>,
    threads: Vec<JoinHandle<()>>,
    tally: Arc<Tally>,
}

/// What the committer has done, and a gate it passes before taking a batch (a test holds it
/// to make the batch it wants).
#[derive(Default)]
struct Tally {
    gate: Mutex<()>,
    batches: AtomicU64,
    changes: AtomicU64,
}

impl Combiner {
    /// `trees` in the order of [`TREES`]; `feed` learns the last event of each durable batch.
    pub(super) fn start(db: sled::Db, trees: Vec<sled::Tree>, feed: Arc<watch::Sender<u64>>) -> std::io::Result<Self> {
        debug_assert_eq!(trees.len(), TREES);
        let (queue, mut queued) = mpsc::channel::<Box<dyn Job>>(QUEUE);
        let (to_flush, committed) = std_mpsc::channel::<Committed>();
        let tally = Arc::new(Tally::default());
        let counts = tally.clone();
        let committer = std::thread::Builder::new().name("sled-committer".into()).spawn(move || {
            while let Some(first) = queued.blocking_recv() {
                let gate = counts.gate.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                let mut jobs = vec![first];
                while jobs.len() < MAX_BATCH {
                    let Ok(job) = queued.try_recv() else { break };
                    jobs.push(job);
                }
                drop(gate);
                let outcome = commit(&trees, &mut jobs).map_err(|e| e.to_string());
                counts.batches.fetch_add(1, Ordering::Relaxed);
                counts.changes.fetch_add(jobs.len() as u64, Ordering::Relaxed);
                if to_flush.send(Committed { jobs, outcome }).is_err() {
                    return;
                }
            }
        })?;
        let flusher = std::thread::Builder::new().name("sled-flusher".into()).spawn(move || {
            while let Ok(first) = committed.recv() {
                // Every batch committed by now shares this flush.
                let batches: Vec<Committed> = std::iter::once(first).chain(committed.try_iter()).collect();
                let flushed = db.flush().map(drop).map_err(|e| e.to_string());
                for Committed { jobs, outcome } in batches {
                    let failure = match (&outcome, &flushed) {
                        (Err(e), _) | (Ok(_), Err(e)) => Some(e.as_str()),
                        (Ok(last_event), Ok(())) => {
                            if let Some(cursor) = *last_event {
                                crate::store::announce(&feed, cursor);
                            }
                            None
                        }
                    };
                    for job in jobs {
                        job.finish(failure);
                    }
                }
            }
        })?;
        Ok(Self { queue: Some(queue), threads: vec![committer, flusher], tally })
    }

    /// Batches committed so far, and the changes in them.
    pub(super) fn tally(&self) -> (u64, u64) {
        (self.tally.batches.load(Ordering::Relaxed), self.tally.changes.load(Ordering::Relaxed))
    }

    /// While held, the committer takes no batch (beyond the change it already holds).
    #[cfg(test)]
    pub(super) fn hold(&self) -> std::sync::MutexGuard<'_, ()> {
        self.tally.gate.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Changes queued and not yet taken by the committer.
    #[cfg(test)]
    pub(super) fn queued(&self) -> usize {
        self.queue.as_ref().map_or(0, |q| q.max_capacity() - q.capacity())
    }

    /// Queues `change` and answers its outcome once its batch is durable.
    pub(super) async fn run<T, F>(&self, change: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnMut(&dyn Views) -> std::result::Result<T, TxError> + Send + 'static,
    {
        let stopped = || StoreError::Unavailable { detail: "the store's committer has stopped".into() };
        let (reply, outcome) = oneshot::channel();
        let queue = self.queue.as_ref().ok_or_else(stopped)?;
        queue.send(Box::new(Change { change, outcome: None, reply })).await.map_err(|_| stopped())?;
        outcome.await.map_err(|_| stopped())?
    }
}

impl Drop for Combiner {
    fn drop(&mut self) {
        self.queue = None;
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}
