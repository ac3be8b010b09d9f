//! `Store` for [`RedisStore`].

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use redis::{AsyncCommands, streams::StreamRangeReply};

use super::{RedisStore, unavailable};
use crate::{
    domain::{
        AccountKey, Certification, Credit, Link, LinkEvent, LinkId, LinkKind, LinkMode, NewLink, Organization, SealedFlow, StateHash,
        TenantId,
    },
    store::{
        IntegrityReport, LinkPage, ListQuery, Recomputed, Recorded, RequestQuota, RequestRecord, Reservation, Result, Store, StoreError,
        StoredOutcome,
        changes::{
            self, StoredCredit, active_key, active_prefix, decode, encode, entry_link_id, expiry_bound, index_key, personal_key, tenant_key,
        },
        quota_day, until_next_quota_day,
    },
};

/// Entries read per round trip when scanning an index.
const BATCH: usize = 512;
/// How often a watcher looks for events written through other replicas.
const FEED_POLL: Duration = Duration::from_millis(200);
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

/// Flows outlive their expiry in Redis by this much, so an expired flow is refused as
/// expired rather than as unknown; `purge_expired_flows` removes them sooner.
const FLOW_KEEP: chrono::Duration = chrono::Duration::minutes(5);

fn micros(at: DateTime<Utc>) -> i64 {
    at.timestamp_micros()
}

/// `[x` (inclusive) or `(x` (exclusive) for ZRANGEBYLEX.
fn lex(bound: u8, key: &[u8]) -> Vec<u8> {
    [&[bound], key].concat()
}

impl RedisStore {
    fn flow_key(&self, state: &StateHash) -> Vec<u8> {
        self.keys.entry("flow", state.as_str().as_bytes())
    }

    /// The links of ids an index holds: one missing is corruption.
    async fn load_by_ids(&self, ids: &[Vec<u8>]) -> Result<Vec<Link>> {
        self.links_if_any(ids)
            .await?
            .into_iter()
            .map(|link| link.ok_or_else(|| StoreError::Corrupt { detail: "an index points at a missing link".into() }))
            .collect()
    }

    async fn load_indexed(&self, index: &str, key: &[u8]) -> Result<Option<Link>> {
        let Some(entry) = self.get(self.keys.entry(index, key)).await? else { return Ok(None) };
        Ok(self.load_by_ids(&[entry_link_id(&entry).to_vec()]).await?.pop().filter(Link::is_active))
    }

    /// Members of a sorted set in lexical order from `start` (a ZRANGEBYLEX bound) to `end`.
    async fn lex_range(&self, set: &str, start: &[u8], end: &[u8], limit: usize) -> Result<Vec<Vec<u8>>> {
        let mut conn = self.conn.clone();
        self.call(
            redis::cmd("ZRANGEBYLEX").arg(self.keys.key(set)).arg(start).arg(end).arg("LIMIT").arg(0).arg(limit).query_async(&mut conn),
        )
        .await
    }

    /// Every key matching `{prefix}:name:*`, page by page.
    async fn scan(&self, name: &str) -> Result<Vec<Vec<u8>>> {
        let pattern = self.keys.entry(name, b"*");
        let (mut cursor, mut keys) = (0u64, Vec::new());
        loop {
            let mut conn = self.conn.clone();
            let (next, page): (u64, Vec<Vec<u8>>) =
                self.call(redis::cmd("SCAN").arg(cursor).arg("MATCH").arg(&pattern).arg("COUNT").arg(1000).query_async(&mut conn)).await?;
            keys.extend(page);
            if next == 0 {
                return Ok(keys);
            }
            cursor = next;
        }
    }

    /// One batch of the organisation's links (tombstones too) from `start`, a ZRANGEBYLEX
    /// bound (`None`: from its first link); and where the next batch starts, if there may be one.
    async fn tenant_batch(&self, tenant: &TenantId, start: Option<Vec<u8>>) -> Result<(Vec<Link>, Option<Vec<u8>>)> {
        let prefix = tenant_key(tenant, None);
        let end = lex(b'(', format!("{}\x01", tenant.as_str()).as_bytes());
        let start = start.unwrap_or_else(|| lex(b'[', &prefix));
        let members = self.lex_range("by_tenant", &start, &end, BATCH).await?;
        let ids: Vec<Vec<u8>> = members.iter().map(|m| m[prefix.len()..].to_vec()).collect();
        let next = members.last().filter(|_| members.len() == BATCH).map(|last| lex(b'(', last));
        Ok((self.load_by_ids(&ids).await?, next))
    }

    /// A page of the organisation's active links (of one kind, or of all merged in id order)
    /// from the active index: a few round trips of the page's size, whatever its history.
    async fn active_links_of_tenant(&self, tenant: &TenantId, query: &ListQuery) -> Result<LinkPage> {
        let kinds = query.kind.map_or_else(|| LinkKind::ALL.to_vec(), |kind| vec![kind]);
        let mut after = query.after.clone();
        let mut links = Vec::new();
        let want = query.limit + 1;
        loop {
            // Up to `want` ids of each kind after `after`. Ids past the smallest last id of a kind
            // that filled its batch may have gaps (that kind has more below them): cut there.
            let (mut ids, mut cut) = (Vec::new(), None::<Vec<u8>>);
            for kind in &kinds {
                let prefix = active_prefix(tenant, *kind);
                let start = match &after {
                    Some(after) => lex(b'(', &[prefix.as_slice(), after.as_str().as_bytes()].concat()),
                    None => lex(b'[', &prefix),
                };
                let end = lex(b'(', &[&prefix[..prefix.len() - 1], b"\x01"].concat());
                let members = self.lex_range("active_by_tenant", &start, &end, want).await?;
                let batch: Vec<Vec<u8>> = members.iter().map(|m| m[prefix.len()..].to_vec()).collect();
                if batch.len() == want {
                    let last = batch.last().cloned().unwrap_or_default();
                    cut = Some(cut.map_or(last.clone(), |c| c.min(last)));
                }
                ids.extend(batch);
            }
            ids.sort();
            if let Some(cut) = &cut {
                ids.retain(|id| id <= cut);
            }
            let Some(last_id) = ids.last().cloned() else { return Ok(LinkPage { links, next: None }) };
            for link in self.load_by_ids(&ids).await? {
                if !link.is_active() {
                    continue; // an entry a concurrent backfill left behind: the integrity check names it
                }
                if links.len() == query.limit {
                    // One more matches: the page is full and there is a next one.
                    let next = links.last().map(|l: &Link| l.id.clone());
                    return Ok(LinkPage { links, next });
                }
                links.push(link);
            }
            if cut.is_none() {
                return Ok(LinkPage { links, next: None });
            }
            after = Some(LinkId::parse(&String::from_utf8_lossy(&last_id)).map_err(|e| StoreError::Corrupt { detail: e.to_string() })?);
        }
    }

    /// Builds the active index of a store written before it existed (once: a marker says it
    /// is built). Concurrent writers keep it themselves; an entry of a link removed during the
    /// build is skipped by listings and named by the integrity check.
    pub(super) async fn build_active_index(&self) -> Result<()> {
        if self.get(self.keys.key("active_index_built")).await?.is_some() {
            return Ok(());
        }
        let prefix_len = self.keys.entry("links", b"").len();
        let ids: Vec<Vec<u8>> = self.scan("links").await?.into_iter().map(|key| key[prefix_len..].to_vec()).collect();
        for chunk in ids.chunks(BATCH) {
            let active: Vec<Vec<u8>> =
                self.links_if_any(chunk).await?.into_iter().flatten().filter(Link::is_active).map(|l| active_key(&l)).collect();
            if !active.is_empty() {
                let mut conn = self.conn.clone();
                let members: Vec<(u8, Vec<u8>)> = active.into_iter().map(|m| (0, m)).collect();
                self.call(conn.zadd_multiple::<_, _, _, ()>(self.keys.key("active_by_tenant"), &members)).await?;
            }
        }
        let mut conn = self.conn.clone();
        self.call(conn.set::<_, _, ()>(self.keys.key("active_index_built"), "1")).await
    }

    /// Sum of the contributions of the organisation's active Microsoft Learning links.
    async fn recompute_tenant(&self, tenant: &TenantId) -> Result<Credit> {
        let mut credit = Credit::default();
        let mut start = None;
        loop {
            let (links, next) = self.tenant_batch(tenant, start).await?;
            let people: Vec<Vec<u8>> = links
                .iter()
                .filter(|link| link.is_active() && link.kind.earns_credit())
                .map(|link| self.keys.entry("certs", &personal_key(&link.personal)))
                .collect();
            for bytes in self.mget(people).await?.into_iter().flatten() {
                credit.add(&Credit::of_person(&self.catalog, &decode::<Vec<Certification>>(&bytes)?), 1);
            }
            match next {
                Some(next) => start = Some(next),
                None => return Ok(credit),
            }
        }
    }

    async fn stored_credit(&self, tenant: &TenantId) -> Result<StoredCredit> {
        match self.get(self.keys.entry("credit", tenant.as_str().as_bytes())).await? {
            Some(bytes) => decode(&bytes),
            None => Ok(StoredCredit::default()),
        }
    }

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

    async fn last_event(&self) -> Result<u64> {
        let mut conn = self.conn.clone();
        Ok(self.call(conn.get::<_, Option<u64>>(self.keys.key("event_seq"))).await?.unwrap_or(0))
    }

    /// Events from the stream, with their cursors taken from the entry ids.
    async fn read_events(&self, start: String, limit: usize) -> Result<Vec<LinkEvent>> {
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

    async fn mget(&self, keys: Vec<Vec<u8>>) -> Result<Vec<Option<Vec<u8>>>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let mut conn = self.conn.clone();
        self.call(redis::cmd("MGET").arg(keys).query_async(&mut conn)).await
    }

    /// The links of these ids that exist (integrity checks report the rest).
    async fn links_if_any(&self, ids: &[Vec<u8>]) -> Result<Vec<Option<Link>>> {
        let found = self.mget(ids.iter().map(|id| self.keys.entry("links", id)).collect()).await?;
        found.into_iter().map(|bytes| bytes.map(|b| decode(&b)).transpose()).collect()
    }

    /// Every entry of a uniqueness index points at an active link with the same key.
    async fn check_index(&self, name: &str, side: fn(&Link) -> &AccountKey, report: &mut IntegrityReport) -> Result<()> {
        let prefix_len = self.keys.entry(name, b"").len();
        for keys in self.scan(name).await?.chunks(BATCH) {
            let ids: Vec<Vec<u8>> =
                self.mget(keys.to_vec()).await?.into_iter().map(|held| entry_link_id(&held.unwrap_or_default()).to_vec()).collect();
            for ((key, id), link) in keys.iter().zip(&ids).zip(self.links_if_any(&ids).await?) {
                let Some(link) = link else {
                    report.problems.push(format!("{name}: entry points at missing link {}", String::from_utf8_lossy(id)));
                    continue;
                };
                if !link.is_active() {
                    report.problems.push(format!("{name}: entry points at tombstone {}", link.id.as_str()));
                }
                if index_key(link.kind, side(&link)) != key[prefix_len..] {
                    report.problems.push(format!("{name}: entry key does not match link {}", link.id.as_str()));
                }
            }
        }
        Ok(())
    }
}

#[async_trait]
impl Store for RedisStore {
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

    async fn link(&self, new: NewLink, mode: LinkMode, now: DateTime<Utc>) -> Result<Link> {
        Ok(self.transact(|tx| changes::link(tx, &self.catalog, &new, mode, now)).await?.0)
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
        Ok(self.transact(|tx| changes::remove(tx, &self.catalog, &removing, now)).await?.0)
    }

    async fn active_links(&self, work: &AccountKey) -> Result<Vec<Link>> {
        let entries = self.mget(LinkKind::ALL.iter().map(|kind| self.keys.entry("by_work", &index_key(*kind, work))).collect()).await?;
        let ids: Vec<Vec<u8>> = entries.iter().flatten().map(|entry| entry_link_id(entry).to_vec()).collect();
        // Two reads, not one snapshot: an entry read just before a removal may lead to its tombstone.
        Ok(self.load_by_ids(&ids).await?.into_iter().filter(Link::is_active).collect())
    }

    async fn active_link_of_personal(&self, kind: LinkKind, personal: &AccountKey) -> Result<Option<Link>> {
        self.load_indexed("by_personal", &index_key(kind, personal)).await
    }

    async fn links_of_tenant(&self, tenant: &TenantId, query: &ListQuery) -> Result<LinkPage> {
        if !query.include_removed {
            return self.active_links_of_tenant(tenant, query).await;
        }
        let mut start = query.after.as_ref().map(|after| lex(b'(', &tenant_key(tenant, Some(after))));
        let mut links = Vec::new();
        loop {
            let (batch, next) = self.tenant_batch(tenant, start).await?;
            for link in batch {
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
            match next {
                Some(next) => start = Some(next),
                None => return Ok(LinkPage { links, next: None }),
            }
        }
    }

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

    async fn upsert_organization(&self, organization: &Organization) -> Result<()> {
        let mut conn = self.conn.clone();
        self.call(conn.set::<_, _, ()>(self.keys.entry("org", organization.tenant.as_str().as_bytes()), encode(organization)?)).await?;
        self.replicated().await
    }

    async fn organization(&self, tenant: &TenantId) -> Result<Option<Organization>> {
        self.get(self.keys.entry("org", tenant.as_str().as_bytes())).await?.map(|b| decode(&b)).transpose()
    }

    async fn record_certifications(&self, batch: &[Certification], now: DateTime<Utc>) -> Result<Vec<Recorded>> {
        Ok(self.transact(|tx| changes::record_certifications(tx, &self.catalog, batch, now)).await?.0)
    }

    async fn expire_certifications(&self, now: DateTime<Utc>) -> Result<usize> {
        let end = lex(b'(', &expiry_bound(now));
        let mut expired = 0;
        loop {
            let due = self.lex_range("expiry", b"-", &end, BATCH).await?;
            if due.is_empty() {
                return Ok(expired);
            }
            expired += self.transact(|tx| changes::expire_due(tx, &self.catalog, &due, now)).await?.0;
        }
    }

    async fn credit(&self, tenant: &TenantId) -> Result<Credit> {
        Ok(self.stored_credit(tenant).await?.credit)
    }

    async fn credit_tenants(&self, after: Option<&TenantId>, limit: usize) -> Result<Vec<TenantId>> {
        let start = after.map(|a| lex(b'(', a.as_str().as_bytes())).unwrap_or_else(|| b"-".to_vec());
        let found = self.lex_range("tenants", &start, b"+", limit).await?;
        found
            .iter()
            .map(|t| TenantId::parse(&String::from_utf8_lossy(t)).map_err(|e| StoreError::Corrupt { detail: e.to_string() }))
            .collect()
    }

    async fn recompute(&self, tenant: &TenantId) -> Result<Recomputed> {
        let stored = self.stored_credit(tenant).await?;
        Ok(Recomputed { stored: stored.credit, version: stored.version, recomputed: self.recompute_tenant(tenant).await? })
    }

    async fn commit_recomputed(&self, tenant: &TenantId, recomputed: &Recomputed) -> Result<bool> {
        let (version, credit) = (recomputed.version, &recomputed.recomputed);
        Ok(self.transact(|tx| changes::commit_recalculation(tx, tenant, version, credit)).await?.0)
    }

    async fn overwrite_credit(&self, tenant: &TenantId, credit: &Credit) -> Result<()> {
        self.transact(|tx| changes::put_credit(tx, tenant, credit.clone())).await.map(drop)
    }

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

    async fn secret(&self, name: &str) -> Result<Vec<u8>> {
        let key = self.keys.entry("secret", name.as_bytes());
        let fresh = rand::random::<[u8; 32]>().to_vec();
        // Two first users race: the first write wins and both use it.
        let mut conn = self.conn.clone();
        self.call(redis::cmd("SET").arg(&key).arg(fresh).arg("NX").query_async::<()>(&mut conn)).await?;
        self.get(key).await?.ok_or_else(|| StoreError::Corrupt { detail: "secret vanished".into() })
    }

    async fn check_integrity(&self) -> Result<IntegrityReport> {
        let mut report = IntegrityReport::default();
        self.check_index("by_work", |l| &l.work, &mut report).await?;
        self.check_index("by_personal", |l| &l.personal, &mut report).await?;
        let prefix_len = self.keys.entry("links", b"").len();
        let ids: Vec<Vec<u8>> = self.scan("links").await?.into_iter().map(|key| key[prefix_len..].to_vec()).collect();
        for chunk in ids.chunks(BATCH) {
            let links: Vec<Link> = self.links_if_any(chunk).await?.into_iter().flatten().collect();
            // Per link, in one round trip: listed for its organisation, and both index entries.
            let mut pipe = redis::pipe();
            for link in &links {
                pipe.zscore(self.keys.key("by_tenant"), tenant_key(&link.work.tenant, Some(&link.id)))
                    .get(self.keys.entry("by_work", &index_key(link.kind, &link.work)))
                    .get(self.keys.entry("by_personal", &index_key(link.kind, &link.personal)))
                    .zscore(self.keys.key("active_by_tenant"), active_key(link));
            }
            let mut conn = self.conn.clone();
            let found: Vec<(Option<f64>, Option<Vec<u8>>, Option<Vec<u8>>, Option<f64>)> = if links.is_empty() {
                Vec::new()
            } else {
                let flat: Vec<redis::Value> = self.call(pipe.query_async(&mut conn)).await?;
                flat.chunks(4)
                    .map(|c| redis::from_redis_value(redis::Value::Array(c.to_vec())).map_err(unavailable))
                    .collect::<Result<_>>()?
            };
            for (link, (listed, by_work, by_personal, active)) in links.iter().zip(found) {
                if listed.is_none() {
                    report.problems.push(format!("link {} is missing from by_tenant", link.id.as_str()));
                }
                if !link.is_active() {
                    report.tombstones += 1;
                    continue;
                }
                report.active_links += 1;
                for (index, held) in [("by_work", by_work), ("by_personal", by_personal)] {
                    report.problems.extend(changes::entry_problem(index, link, held.as_deref()));
                }
                if active.is_none() {
                    report.problems.push(format!("active link {} is missing from active_by_tenant", link.id.as_str()));
                }
            }
        }
        let mut start = b"-".to_vec();
        loop {
            let members = self.lex_range("active_by_tenant", &start, b"+", BATCH).await?;
            let ids: Vec<Vec<u8>> = members.iter().map(|m| m.rsplit(|b| *b == 0).next().unwrap_or_default().to_vec()).collect();
            for ((member, id), link) in members.iter().zip(&ids).zip(self.links_if_any(&ids).await?) {
                if !link.is_some_and(|l| l.is_active() && active_key(&l) == *member) {
                    report.problems.push(format!("active_by_tenant: entry {} is not an active link", String::from_utf8_lossy(id)));
                }
            }
            match members.last() {
                Some(last) if members.len() == BATCH => start = lex(b'(', last),
                _ => return Ok(report),
            }
        }
    }

    async fn ping(&self) -> Result<()> {
        let mut conn = self.conn.clone();
        self.call(redis::cmd("PING").query_async::<()>(&mut conn)).await
    }
}
