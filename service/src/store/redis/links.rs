//! `RedisStore`: links, tombstones and their indexes.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use redis::AsyncCommands;

use super::{RedisStore, read::*};
use crate::{
    domain::{AccountKey, Associations, Link, LinkId, LinkKind, LinkMode, NewLink, TenantId},
    store::{
        LinkPage, LinkStore, ListQuery, Result, StoreError,
        changes::{self, active_key, active_prefix, decode, entry_link_id, index_key, partner_tenant_key, tenant_key},
    },
};

#[async_trait]
impl LinkStore for RedisStore {
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

    async fn remove_work_user(&self, work: &AccountKey, by: &AccountKey, now: DateTime<Utc>) -> Result<Vec<Link>> {
        Ok(self.transact(|tx| changes::remove_work_user(tx, &self.catalog, work, by, now)).await?.0)
    }

    async fn active_links(&self, work: &AccountKey) -> Result<Vec<Link>> {
        let entries = self.mget(LinkKind::ALL.iter().map(|kind| self.keys.entry("by_work", &index_key(*kind, work))).collect()).await?;
        let ids: Vec<Vec<u8>> = entries.iter().flatten().map(|entry| entry_link_id(entry).to_vec()).collect();
        // Two reads, not one snapshot: an entry read just before a removal may lead to its tombstone.
        Ok(self.load_by_ids(&ids).await?.into_iter().filter(Link::is_active).collect())
    }

    async fn last_removed(&self, kind: LinkKind, work: &AccountKey) -> Result<Option<Link>> {
        let Some(entry) = self.get(self.keys.entry("last_removed", &index_key(kind, work))).await? else { return Ok(None) };
        Ok(self.load_by_ids(&[entry_link_id(&entry).to_vec()]).await?.pop())
    }

    async fn associations(&self, kind: LinkKind, personal: &AccountKey) -> Result<Option<Associations>> {
        self.get(self.keys.entry("associations", &index_key(kind, personal))).await?.map(|bytes| decode(&bytes)).transpose()
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
}

impl RedisStore {
    /// One batch of the organisation's links (tombstones too) from `start`, a ZRANGEBYLEX
    /// bound (`None`: from its first link); and where the next batch starts, if there may be one.
    pub(super) async fn tenant_batch(&self, tenant: &TenantId, start: Option<Vec<u8>>) -> Result<(Vec<Link>, Option<Vec<u8>>)> {
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
    pub(super) async fn active_links_of_tenant(&self, tenant: &TenantId, query: &ListQuery) -> Result<LinkPage> {
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
    /// Stores from before organisations had several tenants: index each by its PartnerID, once.
    pub(super) async fn build_partner_index(&self) -> Result<()> {
        if self.get(self.keys.key("partner_index_built")).await?.is_some() {
            return Ok(());
        }
        let keys = self.scan("org").await?;
        for chunk in keys.chunks(BATCH) {
            let mut members = Vec::new();
            for bytes in self.mget(chunk.to_vec()).await?.into_iter().flatten() {
                let organization: crate::domain::Organization = decode(&bytes)?;
                members.push((0u8, partner_tenant_key(&organization.partner_id, &organization.tenant)));
            }
            if !members.is_empty() {
                let mut conn = self.conn.clone();
                self.call(conn.zadd_multiple::<_, _, _, ()>(self.keys.key("partner_tenants"), &members)).await?;
            }
        }
        let mut conn = self.conn.clone();
        self.call(conn.set::<_, _, ()>(self.keys.key("partner_index_built"), "1")).await
    }

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
}
