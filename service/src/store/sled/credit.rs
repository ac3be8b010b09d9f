//! `SledStore`: organisations, certifications and credit.

use std::collections::HashMap;

use super::*;
use crate::domain::{LearningProfile, Mcid, PartnerId, People};

#[async_trait]
impl CreditStore for SledStore {
    #[cfg(any(test, feature = "test-support"))]
    async fn overwrite_credit(&self, tenant: &TenantId, credit: &Credit) -> Result<()> {
        self.transact(|tx| changes::put_credit(tx, tenant, credit.clone()))?;
        self.commit.durable().await
    }

    async fn upsert_organization(&self, organization: &Organization) -> Result<()> {
        self.transact(|tx| changes::upsert_organization(tx, organization))?;
        self.commit.durable().await
    }

    async fn organization(&self, tenant: &TenantId) -> Result<Option<Organization>> {
        self.trees.orgs.get(tenant.as_str()).map_err(unavailable)?.map(|b| decode(&b)).transpose()
    }

    async fn partner_tenants(&self, partner: &PartnerId, limit: usize) -> Result<Vec<TenantId>> {
        let prefix = partner_prefix(partner);
        let mut tenants = Vec::new();
        for entry in self.trees.partner_tenants.scan_prefix(&prefix).take(limit) {
            let (key, _) = entry.map_err(unavailable)?;
            tenants.push(partner_key_tenant(&prefix, &key)?);
        }
        Ok(tenants)
    }

    async fn credits(&self, tenants: &[TenantId]) -> Result<Vec<Credit>> {
        let (credits, _) = self.transact(|tx| {
            tenants.iter().map(|t| Ok(changes::stored_credit(tx, t)?.credit)).collect::<std::result::Result<Vec<_>, TxError>>()
        })?;
        Ok(credits)
    }

    async fn record_certifications(&self, batch: &[Certification], now: DateTime<Utc>) -> Result<Vec<Recorded>> {
        let (outcomes, _) = self.transact(|tx| changes::record_certifications(tx, &self.catalog, batch, now))?;
        self.commit.durable().await?;
        Ok(outcomes)
    }

    async fn achievements(&self, personal: &AccountKey) -> Result<Vec<Certification>> {
        self.certs_of(personal)
    }

    async fn record_learning_profiles(&self, batch: &[LearningProfile]) -> Result<Vec<Recorded>> {
        let (outcomes, _) = self.transact(|tx| changes::record_profiles(tx, batch))?;
        self.commit.durable().await?;
        Ok(outcomes)
    }

    async fn mcids(&self, personal: &[AccountKey]) -> Result<Vec<Option<Mcid>>> {
        personal.iter().map(|p| self.trees.profiles.get(personal_key(p)).map_err(unavailable)?.map(|b| decode(&b)).transpose()).collect()
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
    /// Sum of the contributions of the organisation's people, from its active links streamed
    /// from the tenant index (memory: one small tally per person).
    fn recompute_tenant(&self, tenant: &TenantId) -> Result<Credit> {
        let prefix = tenant_key(tenant, None);
        let mut people = People::default();
        for entry in self.trees.by_tenant.scan_prefix(&prefix) {
            let (key, _) = entry.map_err(unavailable)?;
            let Some(bytes) = self.trees.links.get(&key[prefix.len()..]).map_err(unavailable)? else {
                return Err(StoreError::Corrupt { detail: "the tenant index points at a missing link".into() });
            };
            let link: Link = decode(&bytes)?;
            if link.is_active() {
                people.add(&self.catalog, &link, &self.certs_of(&link.personal)?);
            }
        }
        Ok(people.credit())
    }
}

/// The one pass of a full recalculation ([`Store::recompute_all`]), holding the trees it
/// reads so it can run on a blocking thread.
struct Pass {
    links: sled::Tree,
    by_work: sled::Tree,
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
            by_work: t.by_work.clone(),
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
        // A person with both links counts once per area: the Partner University holders go
        // first (the fewer), each joined to the personal account of its work user's Learning
        // link, where the Learning pass picks it up.
        let mut joining = self.partner_university_holders(&mut all)?;
        // The holders come in personal-key order, the order certifications are kept in, so
        // both trees are read front to back: each page read serves the entries that follow.
        let prefix = index_prefix(LinkKind::MicrosoftLearning);
        for entry in self.by_personal.scan_prefix(&prefix) {
            let (key, held) = entry.map_err(unavailable)?;
            let personal = &key[prefix.len()..];
            let mut credit = Credit::through(&self.catalog, LinkKind::MicrosoftLearning, &self.certs(personal)?);
            if let Some(university) = joining.remove(personal) {
                credit.join_person(&university);
            }
            all.entry(self.tenant_of(&held)?).or_default().recomputed.add(&credit, 1);
        }
        if !joining.is_empty() {
            return Err(StoreError::Corrupt { detail: "a Learning link's personal account is missing from the index".into() });
        }
        Ok(all)
    }

    /// Adds what Partner University links bring to their organisations, except for people who
    /// also hold a Learning link: theirs are answered, keyed by that link's personal account.
    /// Each step's lookups are sorted by key first, so that every tree is swept in order and
    /// each of its pages read once, however many holders there are.
    fn partner_university_holders(&self, all: &mut BTreeMap<TenantId, Recomputed>) -> Result<HashMap<Vec<u8>, Credit>> {
        let prefix = index_prefix(LinkKind::PartnerUniversity);
        // Holders whose achievements count, by their link's id.
        let mut counting: Vec<(Vec<u8>, Credit)> = Vec::new();
        for entry in self.by_personal.scan_prefix(&prefix) {
            let (key, held) = entry.map_err(unavailable)?;
            let credit = Credit::through(&self.catalog, LinkKind::PartnerUniversity, &self.certs(&key[prefix.len()..])?);
            if !credit.0.is_empty() {
                counting.push((entry_link_id(&held).to_vec(), credit));
            }
        }
        counting.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        // Their work users, by the key of the Learning link they may hold.
        let mut by_work: Vec<(Vec<u8>, TenantId, Credit)> = Vec::with_capacity(counting.len());
        for (id, credit) in counting {
            let work = self.link(&id)?.work;
            by_work.push((index_key(LinkKind::MicrosoftLearning, &work), work.tenant, credit));
        }
        by_work.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let mut learning: Vec<(Vec<u8>, Credit)> = Vec::new();
        for (key, tenant, credit) in by_work {
            match self.by_work.get(key).map_err(unavailable)? {
                Some(entry) => learning.push((entry_link_id(&entry).to_vec(), credit)),
                None => all.entry(tenant).or_default().recomputed.add(&credit, 1),
            }
        }
        learning.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let mut joining = HashMap::with_capacity(learning.len());
        for (id, credit) in learning {
            joining.insert(personal_key(&self.link(&id)?.personal), credit);
        }
        Ok(joining)
    }

    fn link(&self, id: &[u8]) -> Result<Link> {
        let bytes = self.links.get(id).map_err(unavailable)?;
        decode(&bytes.ok_or_else(|| StoreError::Corrupt { detail: "an index points at a missing link".into() })?)
    }

    /// The organisation of an index entry (loading its link when the entry is from before
    /// entries named it).
    fn tenant_of(&self, held: &[u8]) -> Result<TenantId> {
        match entry_tenant(held)? {
            Some(tenant) => Ok(tenant),
            None => Ok(self.link(entry_link_id(held))?.work.tenant),
        }
    }

    fn certs(&self, personal: &[u8]) -> Result<Vec<Certification>> {
        match self.certs.get(personal).map_err(unavailable)? {
            Some(bytes) => decode(&bytes),
            None => Ok(Vec::new()),
        }
    }
}
