//! `RedisStore`: the change feed.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use redis::{AsyncCommands, streams::StreamRangeReply};

use super::{RedisStore, read::*};
use crate::{
    domain::LinkEvent,
    store::{EventFeed, Result, StoreError, changes::decode},
};

/// How often a watcher looks for events written through other replicas.
const FEED_POLL: Duration = Duration::from_millis(200);

#[async_trait]
impl EventFeed for RedisStore {
    async fn events_after(&self, cursor: u64, limit: usize) -> Result<Vec<LinkEvent>> {
        let mut conn = self.conn.clone();
        let purged_through: Option<u64> = self.call(conn.get(self.keys.key("events_purged_through"))).await?;
        let purged_through = purged_through.unwrap_or(0);
        if cursor < purged_through {
            return Err(StoreError::CursorExpired { cursor, oldest: purged_through });
        }
        self.read_events(format!("{}-0", cursor.saturating_add(1)), limit).await
    }

    async fn wait_for_events(&self, cursor: u64, max_wait: Duration) -> Result<()> {
        let deadline = tokio::time::Instant::now() + max_wait;
        let mut feed = self.feed.subscribe();
        loop {
            if self.last_event().await? > cursor {
                return Ok(());
            }
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                return Ok(());
            }
            // Our own commits wake us at once; other replicas' are seen by polling.
            let _ = tokio::time::timeout(left.min(FEED_POLL), feed.wait_for(|last| *last > cursor)).await;
        }
    }

    async fn purge_events_before(&self, before: DateTime<Utc>) -> Result<usize> {
        let mut through = None;
        let mut start = "-".to_owned();
        'pages: loop {
            let page = self.read_events(start, BATCH).await?;
            for event in &page {
                if event.at >= before {
                    break 'pages;
                }
                through = Some(event.cursor);
            }
            match page.last() {
                Some(last) if page.len() == BATCH => start = format!("({}-0", last.cursor),
                _ => break,
            }
        }
        let Some(through) = through else { return Ok(0) };
        let mut invocation = self.scripts.purge_events.prepare_invoke();
        invocation.key(self.keys.key("events_purged_through")).key(self.keys.key("events")).arg(through);
        let mut conn = self.conn.clone();
        self.call(invocation.invoke_async(&mut conn)).await
    }
}

impl RedisStore {
    pub(super) async fn last_event(&self) -> Result<u64> {
        let mut conn = self.conn.clone();
        Ok(self.call(conn.get::<_, Option<u64>>(self.keys.key("event_seq"))).await?.unwrap_or(0))
    }

    /// Events from the stream, with their cursors taken from the entry ids.
    pub(super) async fn read_events(&self, start: String, limit: usize) -> Result<Vec<LinkEvent>> {
        let mut conn = self.conn.clone();
        let reply: StreamRangeReply = self
            .call(redis::cmd("XRANGE").arg(self.keys.key("events")).arg(start).arg("+").arg("COUNT").arg(limit).query_async(&mut conn))
            .await?;
        reply
            .ids
            .into_iter()
            .map(|entry| {
                let cursor = entry.id.split('-').next().and_then(|n| n.parse().ok());
                let body: Option<Vec<u8>> = entry.get("e");
                match (cursor, body) {
                    (Some(cursor), Some(body)) => Ok(LinkEvent { cursor, ..decode(&body)? }),
                    _ => Err(StoreError::Corrupt { detail: format!("unreadable event entry {}", entry.id) }),
                }
            })
            .collect()
    }
}
