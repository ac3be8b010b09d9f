//! `RedisStore`: what spans the roles: secrets, the integrity check, health.

use async_trait::async_trait;

use super::{RedisStore, read::*, unavailable};
use crate::{
    domain::{AccountKey, Link},
    store::{
        IntegrityReport, Result, Store, StoreError,
        changes::{self, active_key, entry_link_id, index_key, tenant_key},
    },
};

#[async_trait]
impl Store for RedisStore {
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
        self.here::<()>(&redis::cmd("PING")).await
    }

    async fn footprint(&self) -> Result<crate::store::Footprint> {
        let info: String = self.here(redis::cmd("INFO").arg("memory")).await?;
        let mut conn = self.conn.clone();
        let memory_bytes = info.lines().find_map(|line| line.strip_prefix("used_memory:")).and_then(|v| v.trim().parse().ok());
        let flows_pending: u64 = self.call(redis::cmd("ZCARD").arg(self.keys.key("flows")).query_async(&mut conn)).await?;
        Ok(crate::store::Footprint { bytes_on_disk: None, memory_bytes, flows_pending })
    }
}

impl RedisStore {
    /// Every entry of a uniqueness index points at an active link with the same key.
    pub(super) async fn check_index(&self, name: &str, side: fn(&Link) -> &AccountKey, report: &mut IntegrityReport) -> Result<()> {
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
