//! `SledStore`: pending flows.

use super::*;

#[async_trait]
impl FlowStore for SledStore {
    async fn put_flow(&self, state: &StateHash, flow: &SealedFlow) -> Result<()> {
        self.flows.insert(state.as_str(), encode(flow)?).map_err(unavailable)?;
        Ok(())
    }

    async fn take_flow(&self, state: &StateHash) -> Result<Option<SealedFlow>> {
        match self.flows.remove(state.as_str()).map_err(unavailable)? {
            Some(bytes) => decode(&bytes).map(Some),
            None => Ok(None),
        }
    }

    async fn purge_expired_flows(&self, now: DateTime<Utc>) -> Result<usize> {
        let mut purged = 0;
        for entry in self.flows.iter() {
            let (key, bytes) = entry.map_err(unavailable)?;
            // An unreadable flow can never complete: purge it too.
            let expired = decode::<SealedFlow>(&bytes).map(|f| f.is_expired(now)).unwrap_or(true);
            // Compare-and-swap: a flow taken meanwhile is not counted twice.
            if expired && self.flows.compare_and_swap(&key, Some(bytes), None::<&[u8]>).map_err(unavailable)?.is_ok() {
                purged += 1;
            }
        }
        Ok(purged)
    }
}
