//! `SledStore`: links, tombstones and their indexes.

use super::*;

#[async_trait]
impl LinkStore for SledStore {
    async fn link(&self, new: NewLink, mode: LinkMode, now: DateTime<Utc>) -> Result<Link> {
        let catalog = self.catalog.clone();
        self.write(move |kv| changes::link(&kv, &catalog, &new, mode, now)).await
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
        let catalog = self.catalog.clone();
        let (work, by, reason, expected_etag) = (work.clone(), by.clone(), reason.to_owned(), expected_etag.map(str::to_owned));
        self.write(move |kv| {
            let removing = changes::Removing { kind, work: &work, by: &by, reason: &reason, expected_etag: expected_etag.as_deref() };
            changes::remove(&kv, &catalog, &removing, now)
        })
        .await
    }

    async fn remove_work_user(&self, work: &AccountKey, by: &AccountKey, now: DateTime<Utc>) -> Result<Vec<Link>> {
        let catalog = self.catalog.clone();
        let (work, by) = (work.clone(), by.clone());
        self.write(move |kv| changes::remove_work_user(&kv, &catalog, &work, &by, now)).await
    }

    async fn active_links(&self, work: &AccountKey) -> Result<Vec<Link>> {
        let mut links = Vec::new();
        for kind in LinkKind::ALL {
            links.extend(self.load_indexed(&self.trees.by_work, &index_key(kind, work))?);
        }
        Ok(links)
    }

    async fn last_removed(&self, kind: LinkKind, work: &AccountKey) -> Result<Option<Link>> {
        self.load_indexed(&self.trees.last_removed, &index_key(kind, work))
    }

    async fn associations(&self, kind: LinkKind, personal: &AccountKey) -> Result<Option<Associations>> {
        self.trees.associations.get(index_key(kind, personal)).map_err(unavailable)?.map(|bytes| decode(&bytes)).transpose()
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
}

impl SledStore {
    /// A page of the organisation's active links (of one kind, or of all merged in id order)
    /// from the active index: the cost is the page's, whatever the organisation's history.
    fn active_links_of_tenant(&self, tenant: &TenantId, query: &ListQuery) -> Result<LinkPage> {
        let kinds = query.kind.map_or_else(|| LinkKind::ALL.to_vec(), |kind| vec![kind]);
        let mut cursors: Vec<Box<dyn Iterator<Item = Result<sled::IVec>>>> = kinds
            .into_iter()
            .map(|kind| {
                let prefix = active_prefix(tenant, kind);
                // Link ids have a fixed length, so `id\0` sorts right after `id` and before any later id.
                let start = match &query.after {
                    Some(after) => [prefix.as_slice(), after.as_str().as_bytes(), &[0]].concat(),
                    None => prefix.clone(),
                };
                let len = prefix.len();
                let ids = self
                    .trees
                    .active_by_tenant
                    .range(start..)
                    .take_while(move |entry| entry.as_ref().map_or(true, |(key, _)| key.starts_with(&prefix)))
                    .map(move |entry| entry.map(|(key, _)| key.subslice(len, key.len() - len)).map_err(unavailable));
                Box::new(ids) as Box<dyn Iterator<Item = Result<sled::IVec>>>
            })
            .collect();
        let mut heads: Vec<Option<sled::IVec>> = cursors.iter_mut().map(|c| c.next().transpose()).collect::<Result<_>>()?;
        let mut links = Vec::new();
        // The smallest head id next: the kinds merged in id order, as the unfiltered listing.
        while let Some(i) =
            heads.iter().enumerate().filter_map(|(i, h)| h.as_ref().map(|h| (i, h))).min_by(|a, b| a.1.cmp(b.1)).map(|(i, _)| i)
        {
            let id = std::mem::replace(&mut heads[i], cursors[i].next().transpose()?);
            let Some(bytes) = self.trees.links.get(id.unwrap_or_default()).map_err(unavailable)? else {
                return Err(StoreError::Corrupt { detail: "the active index points at a missing link".into() });
            };
            let link: Link = decode(&bytes)?;
            if !link.is_active() {
                continue; // an entry a crash left behind: the integrity check names it
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
}
