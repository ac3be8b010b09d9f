//! `SledStore`: what spans the roles: secrets, the integrity check, health.

use super::*;

#[async_trait]
impl Store for SledStore {
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

    async fn footprint(&self) -> Result<crate::store::Footprint> {
        // Flows live ten minutes and BeginLink is rate limited: counting them stays small.
        let flows_pending = u64::try_from(self.flows.len()).unwrap_or(u64::MAX);
        Ok(crate::store::Footprint { bytes_on_disk: Some(self.db.size_on_disk().map_err(unavailable)?), memory_bytes: None, flows_pending })
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

impl SledStore {
    fn check_index(&self, index: &sled::Tree, name: &str, side: fn(&Link) -> &AccountKey, report: &mut IntegrityReport) -> Result<()> {
        for entry in index.iter() {
            let (key, held) = entry.map_err(unavailable)?;
            let Some(bytes) = self.trees.links.get(entry_link_id(&held)).map_err(unavailable)? else {
                report.problems.push(format!("{name}: entry points at missing link {}", String::from_utf8_lossy(entry_link_id(&held))));
                continue;
            };
            let link: Link = decode(&bytes)?;
            if !link.is_active() {
                report.problems.push(format!("{name}: entry points at tombstone {}", link.id.as_str()));
            }
            if index_key(link.kind, side(&link)) != key.as_ref() {
                report.problems.push(format!("{name}: entry key does not match link {}", link.id.as_str()));
            }
        }
        Ok(())
    }
}
