//! `RedisStore`: pending flows.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use redis::AsyncCommands;

use super::{RedisStore, read::*};
use crate::{
    domain::{SealedFlow, StateHash},
    store::{
        FlowStore, Result,
        changes::{decode, encode},
    },
};

/// Flows outlive their expiry in Redis by this much, so an expired flow is refused as
/// expired rather than as unknown; `purge_expired_flows` removes them sooner.
const FLOW_KEEP: chrono::Duration = chrono::Duration::minutes(5);

#[async_trait]
impl FlowStore for RedisStore {
    async fn put_flow(&self, state: &StateHash, flow: &SealedFlow) -> Result<()> {
        let keep = (flow.expires_at - flow.created_at).max(chrono::Duration::zero()) + FLOW_KEEP;
        let keep_ms = u64::try_from(keep.num_milliseconds()).unwrap_or(1);
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("SET")
            .arg(self.flow_key(state))
            .arg(encode(flow)?)
            .arg("PX")
            .arg(keep_ms)
            .ignore()
            .zadd(self.keys.key("flows"), state.as_str(), micros(flow.expires_at))
            .ignore();
        let mut conn = self.conn.clone();
        self.call(pipe.query_async::<()>(&mut conn)).await
    }

    async fn take_flow(&self, state: &StateHash) -> Result<Option<SealedFlow>> {
        let mut pipe = redis::pipe();
        pipe.atomic().cmd("GETDEL").arg(self.flow_key(state)).zrem(self.keys.key("flows"), state.as_str()).ignore();
        let mut conn = self.conn.clone();
        let (taken,): (Option<Vec<u8>>,) = self.call(pipe.query_async(&mut conn)).await?;
        taken.map(|bytes| decode(&bytes)).transpose()
    }

    async fn purge_expired_flows(&self, now: DateTime<Utc>) -> Result<usize> {
        let mut purged = 0;
        loop {
            let mut conn = self.conn.clone();
            let due: Vec<String> =
                self.call(conn.zrangebyscore_limit(self.keys.key("flows"), "-inf", micros(now), 0, BATCH as isize)).await?;
            if due.is_empty() {
                return Ok(purged);
            }
            let mut pipe = redis::pipe();
            for state in &due {
                pipe.del(self.keys.entry("flow", state.as_bytes())).zrem(self.keys.key("flows"), state).ignore();
            }
            // A flow taken meanwhile deletes nothing here and is not counted.
            let deleted: Vec<usize> = self.call(pipe.query_async(&mut conn)).await?;
            purged += deleted.iter().sum::<usize>();
        }
    }
}

impl RedisStore {
    pub(super) fn flow_key(&self, state: &StateHash) -> Vec<u8> {
        self.keys.entry("flow", state.as_str().as_bytes())
    }
}
