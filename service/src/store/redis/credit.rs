//! `RedisStore`: organisations, certifications and credit.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{RedisStore, read::*};
use crate::{
    domain::{AccountKey, Certification, Credit, LearningProfile, Link, Mcid, Organization, PartnerId, People, TenantId},
    store::{
        CreditStore, Recomputed, Recorded, Result, StoreError,
        changes::{self, StoredCredit, decode, expiry_bound, partner_key_tenant, partner_prefix, personal_key},
    },
};

#[async_trait]
impl CreditStore for RedisStore {
    #[cfg(any(test, feature = "test-support"))]
    async fn overwrite_credit(&self, tenant: &TenantId, credit: &Credit) -> Result<()> {
        self.transact(|tx| changes::put_credit(tx, tenant, credit.clone())).await.map(drop)
    }

    async fn upsert_organization(&self, organization: &Organization) -> Result<()> {
        self.transact(|tx| changes::upsert_organization(tx, organization)).await.map(drop)
    }

    async fn organization(&self, tenant: &TenantId) -> Result<Option<Organization>> {
        self.get(self.keys.entry("org", tenant.as_str().as_bytes())).await?.map(|b| decode(&b)).transpose()
    }

    async fn partner_tenants(&self, partner: &PartnerId, limit: usize) -> Result<Vec<TenantId>> {
        let prefix = partner_prefix(partner);
        let end = lex(b'(', &[&prefix[..prefix.len() - 1], b"\x01"].concat());
        let members = self.lex_range("partner_tenants", &lex(b'[', &prefix), &end, limit).await?;
        members.iter().map(|m| partner_key_tenant(&prefix, m)).collect()
    }

    async fn credits(&self, tenants: &[TenantId]) -> Result<Vec<Credit>> {
        // One MGET: Redis answers it at one instant.
        let found = self.mget(tenants.iter().map(|t| self.keys.entry("credit", t.as_str().as_bytes())).collect()).await?;
        found.into_iter().map(|bytes| Ok(bytes.map(|b| decode::<StoredCredit>(&b)).transpose()?.unwrap_or_default().credit)).collect()
    }

    async fn record_certifications(&self, batch: &[Certification], now: DateTime<Utc>) -> Result<Vec<Recorded>> {
        Ok(self.transact(|tx| changes::record_certifications(tx, &self.catalog, batch, now)).await?.0)
    }

    async fn achievements(&self, personal: &AccountKey) -> Result<Vec<Certification>> {
        self.get(self.keys.entry("certs", &personal_key(personal))).await?.map(|b| decode(&b)).transpose().map(Option::unwrap_or_default)
    }

    async fn record_learning_profiles(&self, batch: &[LearningProfile]) -> Result<Vec<Recorded>> {
        Ok(self.transact(|tx| changes::record_profiles(tx, batch)).await?.0)
    }

    async fn mcids(&self, personal: &[AccountKey]) -> Result<Vec<Option<Mcid>>> {
        let found = self.mget(personal.iter().map(|p| self.keys.entry("profiles", &personal_key(p))).collect()).await?;
        found.into_iter().map(|bytes| bytes.map(|b| decode(&b)).transpose()).collect()
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
}

impl RedisStore {
    /// Sum of the contributions of the organisation's people, from its active links read a
    /// batch at a time (memory: one small tally per person).
    pub(super) async fn recompute_tenant(&self, tenant: &TenantId) -> Result<Credit> {
        let mut people = People::default();
        let mut start = None;
        loop {
            let (links, next) = self.tenant_batch(tenant, start).await?;
            let active: Vec<&Link> = links.iter().filter(|link| link.is_active()).collect();
            let certs = self.mget(active.iter().map(|link| self.keys.entry("certs", &personal_key(&link.personal))).collect()).await?;
            for (link, bytes) in active.into_iter().zip(certs) {
                let achievements: Vec<Certification> = bytes.map(|b| decode(&b)).transpose()?.unwrap_or_default();
                people.add(&self.catalog, link, &achievements);
            }
            match next {
                Some(next) => start = Some(next),
                None => return Ok(people.credit()),
            }
        }
    }

    pub(super) async fn stored_credit(&self, tenant: &TenantId) -> Result<StoredCredit> {
        match self.get(self.keys.entry("credit", tenant.as_str().as_bytes())).await? {
            Some(bytes) => decode(&bytes),
            None => Ok(StoredCredit::default()),
        }
    }
}
