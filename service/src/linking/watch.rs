//! The change feed as a watcher sees it: every event after a cursor, in commit order, then
//! new ones as they are committed, until the watcher goes or the server stops. Each caller
//! holds at most `limits.watch_streams_per_caller` streams on a replica.

use std::{
    collections::{HashMap, VecDeque},
    pin::Pin,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use futures_util::Stream;

use super::{Actor, Linker, LinkingError, Result, Who, audit};
use crate::domain::{LinkEvent, Operation};

/// How long a watcher waits for news before looking again (it wakes at once on this replica's
/// own commits; the store says how it learns of other replicas').
const WATCH_POLL: Duration = Duration::from_secs(15);
const WATCH_BATCH: usize = 256;

pub type EventStream = Pin<Box<dyn Stream<Item = Result<LinkEvent>> + Send>>;

/// Open change-feed streams per caller, on this replica.
pub(super) struct Watchers {
    limit: u32,
    open: Mutex<HashMap<String, u32>>,
}

impl Watchers {
    pub(super) fn new(limit: u32) -> Self {
        Self { limit, open: Mutex::default() }
    }

    /// Streams open now, of every caller.
    pub(super) fn open(&self) -> u64 {
        self.open.lock().unwrap_or_else(PoisonError::into_inner).values().map(|n| u64::from(*n)).sum()
    }
}

/// One open change-feed stream: its caller's count goes down when it is dropped.
struct WatchSlot {
    watchers: Arc<Watchers>,
    who: String,
}

impl Drop for WatchSlot {
    fn drop(&mut self) {
        let mut open = self.watchers.open.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = open.get_mut(&self.who) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.who);
            }
        }
    }
}

/// A stream's state between events.
struct Watching {
    linker: Arc<Linker>,
    _slot: WatchSlot,
    cursor: u64,
    pending: VecDeque<LinkEvent>,
    stopping: tokio::sync::watch::Receiver<bool>,
    ended: bool,
}

/// Resolves when the server starts shutting down (the watch guard is not kept across awaits).
async fn until_stopping(stopping: &mut tokio::sync::watch::Receiver<bool>) {
    let _ = stopping.wait_for(|stop| *stop).await.map(|_| ());
}

impl Watching {
    async fn next(mut self) -> Option<(Result<LinkEvent>, Self)> {
        if self.ended {
            return None;
        }
        loop {
            if let Some(event) = self.pending.pop_front() {
                self.cursor = event.cursor;
                return Some((Ok(event), self));
            }
            tokio::select! {
                // Streams would hold graceful shutdown forever: they end, and the watcher
                // reconnects elsewhere with its last cursor.
                () = until_stopping(&mut self.stopping) => return self.end(LinkingError::ShuttingDown),
                waited = self.linker.wait_for_events(self.cursor) => if let Err(e) = waited {
                    return self.end(e);
                },
            }
            match self.linker.events_after(self.cursor).await {
                Ok(batch) => self.pending = batch.into(),
                Err(e) => return self.end(e),
            }
        }
    }

    fn end(mut self, why: LinkingError) -> Option<(Result<LinkEvent>, Self)> {
        self.ended = true;
        Some((Err(why), self))
    }
}

impl Linker {
    /// The change feed after `cursor` for a service with `Links.Read`, holding one of its
    /// caller's stream slots until the stream is dropped. An expired cursor (or a refusal) is
    /// answered before the stream starts; `stopping` ends it with [`LinkingError::ShuttingDown`].
    pub async fn watch(self: &Arc<Self>, actor: &Actor, cursor: u64, stopping: tokio::sync::watch::Receiver<bool>) -> Result<EventStream> {
        let slot = self.take_watch_slot(actor);
        if slot.is_err() {
            audit(actor, "events.watch", None, &slot, |_| None);
        }
        let watching = Watching {
            linker: self.clone(),
            _slot: slot?,
            cursor,
            pending: self.events_after(cursor).await?.into(),
            stopping,
            ended: false,
        };
        Ok(Box::pin(futures_util::stream::unfold(watching, Watching::next)))
    }

    fn take_watch_slot(&self, actor: &Actor) -> Result<WatchSlot> {
        actor.authorize(Operation::WatchLinkEvents)?;
        let who = Who(&actor.principal).to_string();
        let mut open = self.watchers.open.lock().unwrap_or_else(PoisonError::into_inner);
        let count = open.entry(who.clone()).or_default();
        if *count >= self.watchers.limit {
            return Err(LinkingError::TooManyWatchers { limit: self.watchers.limit });
        }
        *count += 1;
        Ok(WatchSlot { watchers: self.watchers.clone(), who })
    }

    async fn events_after(&self, cursor: u64) -> Result<Vec<LinkEvent>> {
        Ok(self.store.events_after(cursor, WATCH_BATCH).await?)
    }

    async fn wait_for_events(&self, cursor: u64) -> Result<()> {
        Ok(self.store.wait_for_events(cursor, WATCH_POLL).await?)
    }
}
