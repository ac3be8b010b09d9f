//! Everything one sled transaction may touch, and the multi-key changes built from it:
//! a link with its indexes, tombstones, events and credit; certifications with credit.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use sled::transaction::{ConflictableTransactionError, TransactionalTree};

use crate::{
    domain::{AccountKey, Catalog, Certification, Credit, EventType, Link, LinkEvent, LinkId, LinkKind, LinkPlan, TenantId},
    store::StoreError,
};

pub(super) type TxResult<T> = std::result::Result<T, ConflictableTransactionError<StoreError>>;

pub(super) fn abort<T>(e: impl Into<StoreError>) -> TxResult<T> {
    Err(ConflictableTransactionError::Abort(e.into()))
}

pub(super) fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(value).map_err(|e| StoreError::Corrupt { detail: e.to_string() })
}

pub(super) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt { detail: e.to_string() })
}

pub(super) fn index_key(kind: LinkKind, account: &AccountKey) -> Vec<u8> {
    format!("{}\0{}\0{}", kind.key(), account.tenant.as_str(), account.object.as_str()).into_bytes()
}

pub(super) fn tenant_key(tenant: &TenantId, id: Option<&LinkId>) -> Vec<u8> {
    format!("{}\0{}", tenant.as_str(), id.map(LinkId::as_str).unwrap_or_default()).into_bytes()
}

pub(super) fn personal_key(personal: &AccountKey) -> Vec<u8> {
    format!("{}\0{}", personal.tenant.as_str(), personal.object.as_str()).into_bytes()
}

/// Expiry index key: time first (sortable), then whose certification.
pub(super) fn expiry_key(cert: &Certification) -> Option<Vec<u8>> {
    let at = cert.expires_at?;
    let sortable = (at.timestamp_micros() as u64) ^ (1 << 63);
    let mut key = sortable.to_be_bytes().to_vec();
    key.extend_from_slice(&personal_key(&cert.personal));
    key.push(0);
    key.extend_from_slice(cert.id.as_str().as_bytes());
    Some(key)
}

/// Exclusive upper bound of the expiry keys due at `now`: everything whose time is ≤ now,
/// whatever account follows it in the key.
pub(super) fn expiry_bound(now: DateTime<Utc>) -> [u8; 8] {
    (((now.timestamp_micros() as u64) ^ (1 << 63)) + 1).to_be_bytes()
}

pub(super) const EVENT_SEQ: &[u8] = b"event_seq";

/// Credit as stored: the tallies and a version bumped by every change, so a recalculation
/// can commit only if nothing changed while it recomputed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct StoredCredit {
    pub credit: Credit,
    pub version: u64,
}

pub(super) struct Tx<'a> {
    pub links: &'a TransactionalTree,
    pub by_work: &'a TransactionalTree,
    pub by_personal: &'a TransactionalTree,
    pub last_removed: &'a TransactionalTree,
    pub by_tenant: &'a TransactionalTree,
    pub events: &'a TransactionalTree,
    pub meta: &'a TransactionalTree,
    pub certs: &'a TransactionalTree,
    pub credit: &'a TransactionalTree,
    pub expiry: &'a TransactionalTree,
    pub catalog: &'a Catalog,
}

impl Tx<'_> {
    pub fn load_indexed(&self, index: &TransactionalTree, key: &[u8]) -> TxResult<Option<Link>> {
        let Some(id) = index.get(key)? else { return Ok(None) };
        match self.links.get(&id)? {
            Some(bytes) => decode(&bytes).map(Some).or_else(abort),
            None => abort(StoreError::Corrupt { detail: "an index points at a missing link".into() }),
        }
    }

    fn put_link(&self, link: &Link) -> TxResult<()> {
        self.links.insert(link.id.as_str().as_bytes(), encode(link).or_else(abort)?)?;
        Ok(())
    }

    pub fn certs_of(&self, personal: &AccountKey) -> TxResult<Vec<Certification>> {
        match self.certs.get(personal_key(personal))? {
            Some(bytes) => decode(&bytes).or_else(abort),
            None => Ok(Vec::new()),
        }
    }

    pub fn put_certs(&self, personal: &AccountKey, certs: &[Certification]) -> TxResult<()> {
        self.certs.insert(personal_key(personal), encode(&certs).or_else(abort)?)?;
        Ok(())
    }

    fn contribution(&self, personal: &AccountKey) -> TxResult<Credit> {
        Ok(Credit::of_person(self.catalog, &self.certs_of(personal)?))
    }

    pub fn stored_credit(&self, tenant: &TenantId) -> TxResult<StoredCredit> {
        match self.credit.get(tenant.as_str())? {
            Some(bytes) => decode(&bytes).or_else(abort),
            None => Ok(StoredCredit::default()),
        }
    }

    pub fn put_credit(&self, tenant: &TenantId, credit: Credit) -> TxResult<()> {
        let version = self.stored_credit(tenant)?.version + 1;
        self.credit.insert(tenant.as_str(), encode(&StoredCredit { credit, version }).or_else(abort)?)?;
        Ok(())
    }

    pub fn add_credit(&self, tenant: &TenantId, delta: &Credit, sign: i64) -> TxResult<()> {
        if delta.0.is_empty() {
            return Ok(());
        }
        let mut credit = self.stored_credit(tenant)?.credit;
        credit.add(delta, sign);
        self.put_credit(tenant, credit)
    }

    fn append_event(&self, event_type: EventType, link: &Link, previous: Option<LinkId>, at: DateTime<Utc>) -> TxResult<u64> {
        let last = match self.meta.get(EVENT_SEQ)? {
            Some(bytes) => {
                u64::from_be_bytes(bytes.as_ref().try_into().or_else(|_| abort(StoreError::Corrupt { detail: "event_seq".into() }))?)
            }
            None => 0,
        };
        let cursor = last + 1;
        self.meta.insert(EVENT_SEQ, &cursor.to_be_bytes())?;
        let event = LinkEvent::new(cursor, event_type, link, previous, at);
        self.events.insert(&cursor.to_be_bytes(), encode(&event).or_else(abort)?)?;
        Ok(cursor)
    }

    /// Writes a link plan: tombstones first (leaving the indexes), then the new link, its
    /// events, and the credit of every organisation involved.
    pub fn apply_link_plan(&self, plan: &LinkPlan, now: DateTime<Utc>) -> TxResult<Option<u64>> {
        let LinkPlan::Create { create, retire } = plan else { return Ok(None) };
        for old in retire {
            self.put_link(old)?;
            let old_work = index_key(old.kind, &old.work);
            self.by_work.remove(old_work.as_slice())?;
            self.by_personal.remove(index_key(old.kind, &old.personal))?;
            self.last_removed.insert(old_work, old.id.as_str().as_bytes())?;
            if old.kind == LinkKind::MicrosoftLearning {
                self.add_credit(&old.work.tenant, &self.contribution(&old.personal)?, -1)?;
            }
        }
        self.put_link(create)?;
        self.by_tenant.insert(tenant_key(&create.work.tenant, Some(&create.id)), &[])?;
        self.by_work.insert(index_key(create.kind, &create.work), create.id.as_str().as_bytes())?;
        self.by_personal.insert(index_key(create.kind, &create.personal), create.id.as_str().as_bytes())?;
        if create.kind == LinkKind::MicrosoftLearning {
            self.add_credit(&create.work.tenant, &self.contribution(&create.personal)?, 1)?;
        }
        let mut last = None;
        for (event_type, link, previous) in plan.events() {
            last = Some(self.append_event(event_type, link, previous, now)?);
        }
        Ok(last)
    }

    /// Writes a tombstone in place of the active link.
    pub fn apply_removal(&self, tombstone: &Link, now: DateTime<Utc>) -> TxResult<u64> {
        let work_key = index_key(tombstone.kind, &tombstone.work);
        self.put_link(tombstone)?;
        self.by_work.remove(work_key.as_slice())?;
        self.by_personal.remove(index_key(tombstone.kind, &tombstone.personal))?;
        self.last_removed.insert(work_key, tombstone.id.as_str().as_bytes())?;
        if tombstone.kind == LinkKind::MicrosoftLearning {
            self.add_credit(&tombstone.work.tenant, &self.contribution(&tombstone.personal)?, -1)?;
        }
        self.append_event(EventType::Removed, tombstone, None, now)
    }

    /// Replaces a person's certifications, moving the difference in their contribution into
    /// the credit of the organisation their Microsoft Learning link belongs to, if any.
    pub fn replace_certs(&self, personal: &AccountKey, before: &[Certification], after: &[Certification]) -> TxResult<()> {
        self.put_certs(personal, after)?;
        let holder = self.load_indexed(self.by_personal, &index_key(LinkKind::MicrosoftLearning, personal))?;
        if let Some(link) = holder {
            let mut delta = Credit::of_person(self.catalog, after);
            delta.add(&Credit::of_person(self.catalog, before), -1);
            self.add_credit(&link.work.tenant, &delta, 1)?;
        }
        Ok(())
    }
}
