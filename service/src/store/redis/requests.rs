//! `RedisStore`: remembered requests and their quota.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use redis::AsyncCommands;

use super::{RedisStore, read::*, unavailable};
use crate::store::{
    RequestLog, RequestQuota, RequestRecord, Reservation, Result, StoreError, StoredOutcome,
    changes::{decode, encode},
    quota_day, until_next_quota_day,
};

/// A day's request-id counts outlive the day by a day, then Redis drops them.
const COUNTS_KEPT: Duration = Duration::from_secs(2 * 24 * 3600);

/// How a request-record swap moves its caller's count for a day.
struct RequestCount<'a> {
    caller: &'a str,
    day: DateTime<Utc>,
    delta: i64,
    quota: u32,
}

impl<'a> RequestCount<'a> {
    fn unchanged(caller: &'a str, day: DateTime<Utc>) -> Self {
        Self { caller, day, delta: 0, quota: u32::MAX }
    }
}

#[async_trait]
impl RequestLog for RedisStore {
    async fn reserve_request(
        &self,
        key: &str,
        fingerprint: &str,
        quota: RequestQuota<'_>,
        now: DateTime<Utc>,
        stale_before: DateTime<Utc>,
    ) -> Result<Reservation> {
        let pending = encode(&RequestRecord { fingerprint: fingerprint.to_owned(), created_at: now, outcome: None })?;
        for _ in 0..64 {
            let current = self.request_record(key).await?;
            let record = current.as_deref().map(decode::<RequestRecord>).transpose()?;
            // A stale reservation taken over was counted already; a new key counts now.
            let count = match &record {
                None => RequestCount { caller: quota.caller, day: now, delta: 1, quota: quota.per_day },
                Some(_) => RequestCount::unchanged(quota.caller, now),
            };
            if let Some(found) = record.and_then(|r| r.found_by(fingerprint, stale_before)) {
                return Ok(found);
            }
            // Compare-and-swap: of racing first attempts exactly one reserves, and counts once.
            match self.swap_request(key, current.as_deref(), Some((&pending, now)), count).await? {
                Some(true) => return Ok(Reservation::Reserved),
                Some(false) => continue,
                None => return Ok(Reservation::OverQuota { retry_after: until_next_quota_day(now) }),
            }
        }
        Err(unavailable("an idempotency key kept changing; try again"))
    }

    async fn finish_request(&self, key: &str, caller: &str, outcome: Option<StoredOutcome>) -> Result<()> {
        let Some(current) = self.request_record(key).await? else {
            return match outcome {
                None => Ok(()),
                Some(_) => Err(StoreError::Corrupt { detail: "an idempotency reservation vanished".into() }),
            };
        };
        let record: RequestRecord = decode(&current)?;
        let created_at = record.created_at;
        let (new, count) = match outcome {
            Some(outcome) => {
                (Some(encode(&RequestRecord { outcome: Some(outcome), ..record })?), RequestCount::unchanged(caller, created_at))
            }
            // Released (a transient failure): forgotten, and no longer counted.
            None => (None, RequestCount { caller, day: created_at, delta: -1, quota: u32::MAX }),
        };
        if self.swap_request(key, Some(&current), new.as_deref().map(|n| (n, created_at)), count).await? != Some(true) {
            return Err(StoreError::Corrupt { detail: "an idempotency reservation changed under its owner".into() });
        }
        self.replicated().await
    }

    async fn purge_requests_before(&self, before: DateTime<Utc>) -> Result<usize> {
        // Until nothing older is left: however fast ids arrive, the purge keeps up.
        let mut purged = 0;
        loop {
            let mut invocation = self.scripts.purge_requests.prepare_invoke();
            invocation.key(self.keys.key("requests")).key(self.keys.key("requests_by_time")).arg(micros(before)).arg(4 * BATCH);
            let mut conn = self.conn.clone();
            let dropped: usize = self.call(invocation.invoke_async(&mut conn)).await?;
            purged += dropped;
            if dropped < 4 * BATCH {
                return Ok(purged);
            }
        }
    }
}

impl RedisStore {
    /// Compare-and-set of one idempotency record (see [`super::tx::REQUEST_SWAP`]), moving
    /// `caller`'s count for the day of `counted_at` by `delta` within `quota`. `None`: the
    /// count would pass the quota; `Some(false)`: the record held something else.
    async fn swap_request(
        &self,
        key: &str,
        expected: Option<&[u8]>,
        new: Option<(&[u8], DateTime<Utc>)>,
        count: RequestCount<'_>,
    ) -> Result<Option<bool>> {
        let mut invocation = self.scripts.request_swap.prepare_invoke();
        invocation
            .key(self.keys.key("requests"))
            .key(self.keys.key("requests_by_time"))
            .key(self.keys.entry("request_counts", quota_day(count.day).as_bytes()))
            .arg(key)
            .arg(if expected.is_some() { "1" } else { "0" })
            .arg(expected.unwrap_or_default())
            .arg(if new.is_some() { "1" } else { "0" })
            .arg(new.map(|(value, _)| value).unwrap_or_default())
            .arg(new.map(|(_, at)| micros(at)).unwrap_or_default())
            .arg(count.caller)
            .arg(count.delta)
            .arg(count.quota)
            .arg(COUNTS_KEPT.as_secs());
        let mut conn = self.conn.clone();
        let applied: i64 = self.call(invocation.invoke_async(&mut conn)).await?;
        Ok((applied >= 0).then_some(applied == 1))
    }

    async fn request_record(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let mut conn = self.conn.clone();
        self.call(conn.hget(self.keys.key("requests"), key)).await
    }
}
