//! `Store` for [`SledStore`].

use super::*;

const EXPIRY_BATCH: usize = 256;

#[async_trait]
impl Store for SledStore {
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

    async fn link(&self, new: NewLink, mode: LinkMode, now: DateTime<Utc>) -> Result<Link> {
        let (link, last_event) = self.transact(|tx| changes::link(tx, &self.catalog, &new, mode, now))?;
        // Also for an unchanged link: its creator's flush may not have finished yet.
        self.committed(last_event).await?;
        Ok(link)
    }

    async fn remove(
        &self,
        kind: LinkKind,
        work: &AccountKey,
        by: &AccountKey,
        reason: &str,
        expected_etag: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<Link> {
        let removing = changes::Removing { kind, work, by, reason, expected_etag };
        let (tombstone, last_event) = self.transact(|tx| changes::remove(tx, &self.catalog, &removing, now))?;
        self.committed(last_event).await?;
        Ok(tombstone)
    }

    async fn active_links(&self, work: &AccountKey) -> Result<Vec<Link>> {
        let mut links = Vec::new();
        for kind in LinkKind::ALL {
            links.extend(self.load_indexed(&self.trees.by_work, &index_key(kind, work))?);
        }
        Ok(links)
    }

    async fn active_link_of_personal(&self, kind: LinkKind, personal: &AccountKey) -> Result<Option<Link>> {
        self.load_indexed(&self.trees.by_personal, &index_key(kind, personal))
    }

    async fn links_of_tenant(&self, tenant: &TenantId, query: &ListQuery) -> Result<LinkPage> {
        if !query.include_removed {
            return self.active_links_of_tenant(tenant, query);
        }
        let prefix = tenant_key(tenant, None);
        // Link ids have a fixed length, so `id\0` sorts right after `id` and before any later id.
        let start = match &query.after {
            Some(after) => [tenant_key(tenant, Some(after)), vec![0]].concat(),
            None => prefix.clone(),
        };
        let mut links = Vec::new();
        for entry in self.trees.by_tenant.range(start..) {
            let (key, _) = entry.map_err(unavailable)?;
            if !key.starts_with(&prefix) {
                break;
            }
            let Some(bytes) = self.trees.links.get(&key[prefix.len()..]).map_err(unavailable)? else {
                return Err(StoreError::Corrupt { detail: "the tenant index points at a missing link".into() });
            };
            let link: Link = decode(&bytes)?;
            if query.kind.is_some_and(|k| k != link.kind) || (!query.include_removed && !link.is_active()) {
                continue;
            }
            if links.len() == query.limit {
                // One more matches: the page is full and there is a next one.
                let next = links.last().map(|l: &Link| l.id.clone());
                return Ok(LinkPage { links, next });
            }
            links.push(link);
        }
        Ok(LinkPage { links, next: None })
    }

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

    async fn upsert_organization(&self, organization: &Organization) -> Result<()> {
        self.orgs.insert(organization.tenant.as_str(), encode(organization)?).map_err(unavailable)?;
        self.commit.durable().await
    }

    async fn organization(&self, tenant: &TenantId) -> Result<Option<Organization>> {
        self.orgs.get(tenant.as_str()).map_err(unavailable)?.map(|b| decode(&b)).transpose()
    }

    async fn record_certifications(&self, batch: &[Certification], now: DateTime<Utc>) -> Result<Vec<Recorded>> {
        let (outcomes, _) = self.transact(|tx| changes::record_certifications(tx, &self.catalog, batch, now))?;
        self.commit.durable().await?;
        Ok(outcomes)
    }

    async fn expire_certifications(&self, now: DateTime<Utc>) -> Result<usize> {
        let bound = expiry_bound(now);
        let mut expired = 0;
        loop {
            let due: Vec<Vec<u8>> = self
                .trees
                .expiry
                .range(..bound.to_vec())
                .take(EXPIRY_BATCH)
                .map(|e| e.map(|(k, _)| k.to_vec()))
                .collect::<Result<_, _>>()
                .map_err(unavailable)?;
            if due.is_empty() {
                break;
            }
            expired += self.transact(|tx| changes::expire_due(tx, &self.catalog, &due, now))?.0;
            self.commit.durable().await?;
        }
        Ok(expired)
    }

    async fn credit(&self, tenant: &TenantId) -> Result<Credit> {
        Ok(self.stored_credit(tenant)?.credit)
    }

    async fn credit_tenants(&self, after: Option<&TenantId>, limit: usize) -> Result<Vec<TenantId>> {
        let mut found = std::collections::BTreeSet::new();
        // Tenant ids have a fixed length: `tenant\x01` sorts after every `tenant\0…` key.
        let start = after.map(|a| format!("{}\x01", a.as_str())).unwrap_or_default();
        for entry in self.trees.credit.range(start.as_bytes()..).take(limit) {
            let (key, _) = entry.map_err(unavailable)?;
            found.insert(String::from_utf8_lossy(&key).into_owned());
        }
        let mut cursor = start;
        while found.len() < 2 * limit {
            let Some(entry) = self.trees.by_tenant.range(cursor.as_bytes()..).next() else { break };
            let (key, _) = entry.map_err(unavailable)?;
            let tenant = String::from_utf8_lossy(key.split(|b| *b == 0).next().unwrap_or_default()).into_owned();
            cursor = format!("{tenant}\x01");
            found.insert(tenant);
        }
        found.into_iter().take(limit).map(|t| TenantId::parse(&t).map_err(|e| StoreError::Corrupt { detail: e.to_string() })).collect()
    }

    async fn recompute(&self, tenant: &TenantId) -> Result<Recomputed> {
        let stored = self.stored_credit(tenant)?;
        Ok(Recomputed { stored: stored.credit, version: stored.version, recomputed: self.recompute_tenant(tenant)? })
    }

    async fn recompute_all(&self) -> Result<Option<BTreeMap<TenantId, Recomputed>>> {
        // A pass over a large store takes seconds of synchronous reads: off the async workers.
        let pass = self.pass();
        tokio::task::spawn_blocking(move || pass.run())
            .await
            .map_err(|e| StoreError::Unavailable { detail: format!("recalculation pass failed: {e}") })?
            .map(Some)
    }

    async fn commit_recomputed(&self, tenant: &TenantId, recomputed: &Recomputed) -> Result<bool> {
        let (committed, _) = self.transact(|tx| changes::commit_recalculation(tx, tenant, recomputed.version, &recomputed.recomputed))?;
        if committed && recomputed.stored != recomputed.recomputed {
            self.commit.durable().await?;
        }
        Ok(committed)
    }

    async fn overwrite_credit(&self, tenant: &TenantId, credit: &Credit) -> Result<()> {
        self.transact(|tx| changes::put_credit(tx, tenant, credit.clone()))?;
        self.commit.durable().await
    }

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

    async fn secret(&self, name: &str) -> Result<Vec<u8>> {
        let key = format!("secret/{name}");
        if let Some(existing) = self.trees.meta.get(&key).map_err(unavailable)? {
            return Ok(existing.to_vec());
        }
        let fresh = rand::random::<[u8; 32]>().to_vec();
        // Two first users race: the first write wins and both use it.
        match self.trees.meta.compare_and_swap(&key, None::<&[u8]>, Some(fresh.as_slice())).map_err(unavailable)? {
            Ok(()) => {
                self.commit.durable().await?;
                Ok(fresh)
            }
            Err(conflict) => conflict.current.map(|c| c.to_vec()).ok_or_else(|| StoreError::Corrupt { detail: "secret vanished".into() }),
        }
    }

    async fn check_integrity(&self) -> Result<IntegrityReport> {
        let mut report = IntegrityReport::default();
        self.check_index(&self.trees.by_work, "by_work", |l| &l.work, &mut report)?;
        self.check_index(&self.trees.by_personal, "by_personal", |l| &l.personal, &mut report)?;
        for entry in self.trees.links.iter() {
            let (_, bytes) = entry.map_err(unavailable)?;
            let link: Link = decode(&bytes)?;
            if !self.trees.by_tenant.contains_key(tenant_key(&link.work.tenant, Some(&link.id))).map_err(unavailable)? {
                report.problems.push(format!("link {} is missing from by_tenant", link.id.as_str()));
            }
            if !link.is_active() {
                report.tombstones += 1;
                continue;
            }
            report.active_links += 1;
            for (index, side, name) in
                [(&self.trees.by_work, &link.work, "by_work"), (&self.trees.by_personal, &link.personal, "by_personal")]
            {
                let held = index.get(index_key(link.kind, side)).map_err(unavailable)?;
                report.problems.extend(changes::entry_problem(name, &link, held.as_deref()));
            }
            if !self.trees.active_by_tenant.contains_key(changes::active_key(&link)).map_err(unavailable)? {
                report.problems.push(format!("active link {} is missing from active_by_tenant", link.id.as_str()));
            }
        }
        for entry in self.trees.active_by_tenant.iter() {
            let (key, _) = entry.map_err(unavailable)?;
            let id = key.rsplit(|b| *b == 0).next().unwrap_or_default();
            let link = self.trees.links.get(id).map_err(unavailable)?.map(|b| decode::<Link>(&b)).transpose()?;
            if !link.is_some_and(|l| l.is_active() && changes::active_key(&l) == key.as_ref()) {
                report.problems.push(format!("active_by_tenant: entry {} is not an active link", String::from_utf8_lossy(id)));
            }
        }
        Ok(report)
    }
}
