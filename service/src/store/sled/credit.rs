//! `SledStore`: organisations, certifications and credit.

use super::*;

#[async_trait]
impl CreditStore for SledStore {
    #[cfg(any(test, feature = "test-support"))]
    async fn overwrite_credit(&self, tenant: &TenantId, credit: &Credit) -> Result<()> {
        self.transact(|tx| changes::put_credit(tx, tenant, credit.clone()))?;
        self.commit.durable().await
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
}

impl SledStore {
    /// Sum of the contributions of the organisation's active Microsoft Learning links,
    /// streamed from the tenant index (memory: one link at a time).
    fn recompute_tenant(&self, tenant: &TenantId) -> Result<Credit> {
        let prefix = tenant_key(tenant, None);
        let mut credit = Credit::default();
        for entry in self.trees.by_tenant.scan_prefix(&prefix) {
            let (key, _) = entry.map_err(unavailable)?;
            let Some(bytes) = self.trees.links.get(&key[prefix.len()..]).map_err(unavailable)? else {
                return Err(StoreError::Corrupt { detail: "the tenant index points at a missing link".into() });
            };
            let link: Link = decode(&bytes)?;
            if link.is_active() && link.kind.earns_credit() {
                credit.add(&Credit::of_person(&self.catalog, &self.certs_of(&link.personal)?), 1);
            }
        }
        Ok(credit)
    }
}

/// The one pass of a full recalculation ([`Store::recompute_all`]), holding the trees it
/// reads so it can run on a blocking thread.
struct Pass {
    links: sled::Tree,
    by_personal: sled::Tree,
    certs: sled::Tree,
    credit: sled::Tree,
    catalog: Arc<Catalog>,
}

impl SledStore {
    fn pass(&self) -> Pass {
        let t = &self.trees;
        Pass {
            links: t.links.clone(),
            by_personal: t.by_personal.clone(),
            certs: t.certs.clone(),
            credit: t.credit.clone(),
            catalog: self.catalog.clone(),
        }
    }
}

impl Pass {
    fn run(&self) -> Result<BTreeMap<TenantId, Recomputed>> {
        let corrupt = |detail: String| StoreError::Corrupt { detail };
        let mut all = BTreeMap::new();
        // Versions first: a change during the pass moves its organisation's version.
        for entry in self.credit.iter() {
            let (key, bytes) = entry.map_err(unavailable)?;
            let tenant = TenantId::parse(&String::from_utf8_lossy(&key)).map_err(|e| corrupt(e.to_string()))?;
            let stored: StoredCredit = decode(&bytes)?;
            all.insert(tenant, Recomputed { stored: stored.credit, version: stored.version, recomputed: Credit::default() });
        }
        // The holders come in personal-key order, the order certifications are kept in, so
        // both trees are read front to back: each page read serves the entries that follow.
        for kind in LinkKind::crediting() {
            self.add_holders(kind, &mut all)?;
        }
        Ok(all)
    }

    /// Adds the contribution of every holder of a `kind` link to its organisation's recomputation.
    fn add_holders(&self, kind: LinkKind, all: &mut BTreeMap<TenantId, Recomputed>) -> Result<()> {
        let corrupt = |detail: String| StoreError::Corrupt { detail };
        let prefix = index_prefix(kind);
        for entry in self.by_personal.scan_prefix(&prefix) {
            let (key, held) = entry.map_err(unavailable)?;
            let tenant = match entry_tenant(&held)? {
                Some(tenant) => tenant,
                None => {
                    let bytes = self.links.get(entry_link_id(&held)).map_err(unavailable)?;
                    decode::<Link>(&bytes.ok_or_else(|| corrupt("an index points at a missing link".into()))?)?.work.tenant
                }
            };
            let certs: Vec<Certification> = match self.certs.get(&key[prefix.len()..]).map_err(unavailable)? {
                Some(bytes) => decode(&bytes)?,
                None => Vec::new(),
            };
            all.entry(tenant).or_default().recomputed.add(&Credit::of_person(&self.catalog, &certs), 1);
        }
        Ok(())
    }
}
