//! `SledStore`: remembered requests and their quota.

use super::*;

#[async_trait]
impl RequestLog for SledStore {
    async fn reserve_request(
        &self,
        key: &str,
        fingerprint: &str,
        quota: RequestQuota<'_>,
        now: DateTime<Utc>,
        stale_before: DateTime<Utc>,
    ) -> Result<Reservation> {
        use sled::transaction::ConflictableTransactionError::Abort;
        let pending = encode(&RequestRecord { fingerprint: fingerprint.to_owned(), created_at: now, outcome: None })?;
        let count_key = request_count_key(&super::super::quota_day(now), quota.caller);
        loop {
            let current = self.requests.get(key).map_err(unavailable)?;
            let replaced = match &current {
                None => None,
                Some(bytes) => {
                    let record = decode::<RequestRecord>(bytes)?;
                    let created_at = record.created_at;
                    if let Some(found) = record.found_by(fingerprint, stale_before) {
                        return Ok(found);
                    }
                    Some(created_at) // a stale reservation, taken over: already counted
                }
            };
            // Of racing first attempts exactly one reserves, and counts once.
            let outcome = (&self.requests, &self.requests_by_time, &self.request_counts).transaction(|(requests, by_time, counts)| {
                if requests.get(key)? != current {
                    return Err(Abort(None));
                }
                match replaced {
                    None => {
                        let used = read_u64(counts.get(&count_key)?);
                        if used >= u64::from(quota.per_day) {
                            return Err(Abort(Some(Reservation::OverQuota { retry_after: super::super::until_next_quota_day(now) })));
                        }
                        counts.insert(count_key.as_slice(), &(used + 1).to_be_bytes())?;
                    }
                    Some(created_at) => {
                        by_time.remove(request_time_key(created_at, key))?;
                    }
                }
                requests.insert(key, pending.as_slice())?;
                by_time.insert(request_time_key(now, key), &[])?;
                Ok(())
            });
            match outcome {
                Ok(()) => return Ok(Reservation::Reserved),
                Err(TransactionError::Abort(Some(refusal))) => return Ok(refusal),
                Err(TransactionError::Abort(None)) => continue,
                Err(TransactionError::Storage(e)) => return Err(unavailable(e)),
            }
        }
    }

    async fn finish_request(&self, key: &str, caller: &str, outcome: Option<StoredOutcome>) -> Result<()> {
        let Some(bytes) = self.requests.get(key).map_err(unavailable)? else {
            return match outcome {
                None => Ok(()),
                Some(_) => Err(StoreError::Corrupt { detail: "an idempotency reservation vanished".into() }),
            };
        };
        let record: RequestRecord = decode(&bytes)?;
        let Some(outcome) = outcome else {
            // Released (a transient failure): forgotten, and no longer counted.
            let count_key = request_count_key(&super::super::quota_day(record.created_at), caller);
            let released = (&self.requests, &self.requests_by_time, &self.request_counts).transaction(|(requests, by_time, counts)| {
                requests.remove(key)?;
                by_time.remove(request_time_key(record.created_at, key))?;
                let used = read_u64(counts.get(&count_key)?);
                counts.insert(count_key.as_slice(), &used.saturating_sub(1).to_be_bytes())?;
                Ok::<_, sled::transaction::ConflictableTransactionError<()>>(())
            });
            return released.map_err(|e| match e {
                TransactionError::Storage(e) => unavailable(e),
                TransactionError::Abort(()) => StoreError::Corrupt { detail: "an idempotency release aborted".into() },
            });
        };
        self.requests.insert(key, encode(&RequestRecord { outcome: Some(outcome), ..record })?).map_err(unavailable)?;
        self.commit.durable().await
    }

    async fn purge_requests_before(&self, before: DateTime<Utc>) -> Result<usize> {
        let bound = changes::sortable_micros(before).to_be_bytes().to_vec();
        let mut purged = 0;
        loop {
            let due: Vec<sled::IVec> = self
                .requests_by_time
                .range(..bound.clone())
                .take(EXPIRY_BATCH)
                .map(|e| e.map(|(k, _)| k))
                .collect::<Result<_, _>>()
                .map_err(unavailable)?;
            if due.is_empty() {
                break;
            }
            for time_key in &due {
                let key = &time_key[8..];
                self.requests.remove(key).map_err(unavailable)?;
                self.requests_by_time.remove(time_key).map_err(unavailable)?;
            }
            purged += due.len();
        }
        // Counts of days before the retention's start can no longer matter.
        let first_kept_day = request_count_key(&super::super::quota_day(before), "");
        for entry in self.request_counts.range(..first_kept_day) {
            let (key, _) = entry.map_err(unavailable)?;
            self.request_counts.remove(key).map_err(unavailable)?;
        }
        Ok(purged)
    }
}
