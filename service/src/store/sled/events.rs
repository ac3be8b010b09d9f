//! `SledStore`: the change feed.

use super::*;

#[async_trait]
impl EventFeed for SledStore {
    async fn events_after(&self, cursor: u64, limit: usize) -> Result<Vec<LinkEvent>> {
        let purged_through = read_u64(self.trees.meta.get(PURGED_THROUGH).map_err(unavailable)?);
        if cursor < purged_through {
            return Err(StoreError::CursorExpired { cursor, oldest: purged_through });
        }
        let start = cursor.saturating_add(1).to_be_bytes();
        let mut events = Vec::new();
        for entry in self.trees.events.range(start..).take(limit) {
            let (_, bytes) = entry.map_err(unavailable)?;
            events.push(decode(&bytes)?);
        }
        Ok(events)
    }

    async fn wait_for_events(&self, cursor: u64, max_wait: Duration) -> Result<()> {
        let mut feed = self.feed.subscribe();
        let _ = tokio::time::timeout(max_wait, feed.wait_for(|last| *last > cursor)).await;
        Ok(())
    }

    async fn purge_events_before(&self, before: DateTime<Utc>) -> Result<usize> {
        let mut purged = 0;
        for entry in self.trees.events.iter() {
            let (key, bytes) = entry.map_err(unavailable)?;
            let event: LinkEvent = decode(&bytes)?;
            if event.at >= before {
                break;
            }
            // Record the cutoff first: a watcher behind it must learn it missed events.
            self.trees.meta.insert(PURGED_THROUGH, &event.cursor.to_be_bytes()).map_err(unavailable)?;
            self.trees.events.remove(key).map_err(unavailable)?;
            purged += 1;
        }
        if purged > 0 {
            self.commit.durable().await?;
        }
        Ok(purged)
    }
}
