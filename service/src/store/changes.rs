//! The multi-key changes, written once for every backend over [`Kv`]: the smallest
//! transaction a backend offers (get / insert / remove in named tables, append an event).
//! sled runs them inside a sled transaction; Redis runs them over a snapshot and applies
//! the recorded writes with one script that first checks nothing it read has changed.
//! Key layouts and record formats live here too, so both backends store the same bytes.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize, de::DeserializeOwned};

use super::{Recorded, StoreError};
use crate::domain::{
    AccountKey, Catalog, Certification, Credit, EventType, Link, LinkEvent, LinkId, LinkKind, LinkMode, LinkPlan, NewLink, RemovePlan,
    TenantId, plan_link, plan_remove,
};

/// The record types a change touches. Keys and values are bytes; see the `*_key` functions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Table {
    /// link id → link.
    Links,
    /// (kind, work account) → [`index_entry`] of its active link.
    ByWork,
    /// (kind, personal account) → [`index_entry`] of the active link holding it.
    ByPersonal,
    /// (kind, work account) → [`index_entry`] of its latest tombstone, for idempotent removal.
    LastRemoved,
    /// (work tenant, link id) → (): every link and tombstone of an organisation (ordered).
    ByTenant,
    /// (work tenant, kind, link id) → (): an organisation's active links of a kind (ordered),
    /// so a listing without tombstones reads its page, not the organisation's history.
    ActiveByTenant,
    /// personal account → its certifications.
    Certs,
    /// tenant → its credit.
    Credit,
    /// (expiry time, personal account, certification id) → () (ordered).
    Expiry,
}

/// One transaction of a backend. A change may be run more than once (conflicts), so it
/// must only read and write through `self`.
pub(crate) trait Kv {
    type Error: From<StoreError>;
    type Bytes: AsRef<[u8]>;
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Self::Bytes>, Self::Error>;
    fn insert(&self, table: Table, key: &[u8], value: &[u8]) -> Result<(), Self::Error>;
    fn remove(&self, table: Table, key: &[u8]) -> Result<(), Self::Error>;
    /// Appends to the change feed; the backend gives it the next cursor in commit order.
    fn append_event(&self, event: LinkEvent) -> Result<(), Self::Error>;
}

pub(crate) fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(value).map_err(|e| StoreError::Corrupt { detail: e.to_string() })
}

pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt { detail: e.to_string() })
}

/// (kind, account): the kind's [`index_prefix`], then the account's [`personal_key`].
pub(crate) fn index_key(kind: LinkKind, account: &AccountKey) -> Vec<u8> {
    let mut key = index_prefix(kind);
    key.extend_from_slice(&personal_key(account));
    key
}

pub(crate) fn index_prefix(kind: LinkKind) -> Vec<u8> {
    format!("{}\0", kind.key()).into_bytes()
}

/// The value of an index entry: the link's id, then its organisation, so a pass over an
/// index in key order learns whose link each entry is without loading the link.
pub(crate) fn index_entry(link: &Link) -> Vec<u8> {
    format!("{}\0{}", link.id.as_str(), link.work.tenant.as_str()).into_bytes()
}

/// The link id of an index entry (entries written before the organisation was added hold
/// the id alone).
pub(crate) fn entry_link_id(entry: &[u8]) -> &[u8] {
    entry.split(|b| *b == 0).next().unwrap_or_default()
}

/// The organisation of an index entry, when it holds one.
pub(crate) fn entry_tenant(entry: &[u8]) -> Result<Option<TenantId>, StoreError> {
    let Some(split) = entry.iter().position(|b| *b == 0) else { return Ok(None) };
    let raw = std::str::from_utf8(&entry[split + 1..]).map_err(|e| StoreError::Corrupt { detail: e.to_string() })?;
    TenantId::parse(raw).map(Some).map_err(|e| StoreError::Corrupt { detail: e.to_string() })
}

/// What the integrity check reports when an active link's entry in `index` is not
/// [`index_entry`]; `None` when it is.
pub(crate) fn entry_problem(index: &str, link: &Link, held: Option<&[u8]>) -> Option<String> {
    match held {
        Some(held) if held == index_entry(link) => None,
        Some(held) if entry_link_id(held) == link.id.as_str().as_bytes() => {
            Some(format!("{index}: entry of link {} does not name its organisation", link.id.as_str()))
        }
        _ => Some(format!("active link {} is missing from {index}", link.id.as_str())),
    }
}

pub(crate) fn tenant_key(tenant: &TenantId, id: Option<&LinkId>) -> Vec<u8> {
    format!("{}\0{}", tenant.as_str(), id.map(LinkId::as_str).unwrap_or_default()).into_bytes()
}

/// The [`Table::ActiveByTenant`] keys of a tenant's active links of `kind`, up to the id.
pub(crate) fn active_prefix(tenant: &TenantId, kind: LinkKind) -> Vec<u8> {
    format!("{}\0{}\0", tenant.as_str(), kind.key()).into_bytes()
}

pub(crate) fn active_key(link: &Link) -> Vec<u8> {
    [active_prefix(&link.work.tenant, link.kind), link.id.as_str().as_bytes().to_vec()].concat()
}

pub(crate) fn personal_key(personal: &AccountKey) -> Vec<u8> {
    format!("{}\0{}", personal.tenant.as_str(), personal.object.as_str()).into_bytes()
}

/// Expiry index key: time first (sortable), then whose certification.
pub(crate) fn expiry_key(cert: &Certification) -> Option<Vec<u8>> {
    let at = cert.expires_at?;
    let mut key = sortable_micros(at).to_be_bytes().to_vec();
    key.extend_from_slice(&personal_key(&cert.personal));
    key.push(0);
    key.extend_from_slice(cert.id.as_str().as_bytes());
    Some(key)
}

/// Microseconds since the epoch, as an unsigned number that sorts like the time (big-endian).
pub(crate) fn sortable_micros(at: DateTime<Utc>) -> u64 {
    (at.timestamp_micros() as u64) ^ (1 << 63)
}

/// Exclusive upper bound of the expiry keys due at `now`: everything whose time is ≤ now,
/// whatever account follows it in the key.
pub(crate) fn expiry_bound(now: DateTime<Utc>) -> [u8; 8] {
    (sortable_micros(now) + 1).to_be_bytes()
}

/// The personal account of an expiry key.
fn expiry_personal(key: &[u8]) -> Result<Option<AccountKey>, StoreError> {
    let rest = key.get(8..).unwrap_or_default();
    let Some(split) = rest.iter().rposition(|b| *b == 0) else { return Ok(None) };
    let raw = String::from_utf8_lossy(&rest[..split]);
    let Some((tid, oid)) = raw.split_once('\0') else { return Ok(None) };
    AccountKey::parse(tid, oid).map(Some).map_err(|e| StoreError::Corrupt { detail: e.to_string() })
}

/// Credit as stored: the tallies and a version bumped by every change, so a recalculation
/// can commit only if nothing changed while it recomputed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct StoredCredit {
    pub credit: Credit,
    pub version: u64,
}

pub(crate) fn load_indexed<K: Kv>(kv: &K, index: Table, key: &[u8]) -> Result<Option<Link>, K::Error> {
    let Some(entry) = kv.get(index, key)? else { return Ok(None) };
    match kv.get(Table::Links, entry_link_id(entry.as_ref()))? {
        Some(bytes) => Ok(Some(decode(bytes.as_ref())?)),
        None => Err(StoreError::Corrupt { detail: "an index points at a missing link".into() }.into()),
    }
}

fn put_link<K: Kv>(kv: &K, link: &Link) -> Result<(), K::Error> {
    kv.insert(Table::Links, link.id.as_str().as_bytes(), &encode(link)?)
}

pub(crate) fn certs_of<K: Kv>(kv: &K, personal: &AccountKey) -> Result<Vec<Certification>, K::Error> {
    match kv.get(Table::Certs, &personal_key(personal))? {
        Some(bytes) => Ok(decode(bytes.as_ref())?),
        None => Ok(Vec::new()),
    }
}

fn contribution<K: Kv>(kv: &K, catalog: &Catalog, personal: &AccountKey) -> Result<Credit, K::Error> {
    Ok(Credit::of_person(catalog, &certs_of(kv, personal)?))
}

pub(crate) fn stored_credit<K: Kv>(kv: &K, tenant: &TenantId) -> Result<StoredCredit, K::Error> {
    match kv.get(Table::Credit, tenant.as_str().as_bytes())? {
        Some(bytes) => Ok(decode(bytes.as_ref())?),
        None => Ok(StoredCredit::default()),
    }
}

pub(crate) fn put_credit<K: Kv>(kv: &K, tenant: &TenantId, credit: Credit) -> Result<(), K::Error> {
    let version = stored_credit(kv, tenant)?.version + 1;
    kv.insert(Table::Credit, tenant.as_str().as_bytes(), &encode(&StoredCredit { credit, version })?)
}

fn add_credit<K: Kv>(kv: &K, tenant: &TenantId, delta: &Credit, sign: i64) -> Result<(), K::Error> {
    if delta.0.is_empty() {
        return Ok(());
    }
    let mut credit = stored_credit(kv, tenant)?.credit;
    credit.add(delta, sign);
    put_credit(kv, tenant, credit)
}

/// Takes a link out of both uniqueness indexes and, for Microsoft Learning, its person's
/// contribution out of the organisation's credit.
fn retire<K: Kv>(kv: &K, catalog: &Catalog, tombstone: &Link) -> Result<(), K::Error> {
    let work_key = index_key(tombstone.kind, &tombstone.work);
    put_link(kv, tombstone)?;
    kv.remove(Table::ByWork, &work_key)?;
    kv.remove(Table::ByPersonal, &index_key(tombstone.kind, &tombstone.personal))?;
    kv.insert(Table::LastRemoved, &work_key, &index_entry(tombstone))?;
    kv.remove(Table::ActiveByTenant, &active_key(tombstone))?;
    if tombstone.kind.earns_credit() {
        add_credit(kv, &tombstone.work.tenant, &contribution(kv, catalog, &tombstone.personal)?, -1)?;
    }
    Ok(())
}

/// Records a verified association per [`plan_link`]: tombstones first (leaving the
/// indexes), then the new link, its events, and the credit of every organisation involved.
pub(crate) fn link<K: Kv>(kv: &K, catalog: &Catalog, new: &NewLink, mode: LinkMode, now: DateTime<Utc>) -> Result<Link, K::Error> {
    let of_work = load_indexed(kv, Table::ByWork, &index_key(new.kind, &new.work))?;
    let of_personal = load_indexed(kv, Table::ByPersonal, &index_key(new.kind, &new.personal))?;
    let plan = plan_link(new.clone(), mode, of_work.as_ref(), of_personal.as_ref(), now).map_err(StoreError::from)?;
    if let LinkPlan::Create { create, retire: old } = &plan {
        for old in old {
            retire(kv, catalog, old)?;
        }
        put_link(kv, create)?;
        kv.insert(Table::ByTenant, &tenant_key(&create.work.tenant, Some(&create.id)), &[])?;
        kv.insert(Table::ActiveByTenant, &active_key(create), &[])?;
        let entry = index_entry(create);
        kv.insert(Table::ByWork, &index_key(create.kind, &create.work), &entry)?;
        kv.insert(Table::ByPersonal, &index_key(create.kind, &create.personal), &entry)?;
        if create.kind.earns_credit() {
            add_credit(kv, &create.work.tenant, &contribution(kv, catalog, &create.personal)?, 1)?;
        }
        for (event_type, link, previous) in plan.events() {
            kv.append_event(LinkEvent::new(0, event_type, link, previous, now))?;
        }
    }
    Ok(match plan {
        LinkPlan::Unchanged(link) | LinkPlan::Create { create: link, .. } => link,
    })
}

/// What a removal asks for: the `kind` link of `work`, removed by `by` for `reason`, when it
/// still has `expected_etag` (if given).
pub(crate) struct Removing<'a> {
    pub kind: LinkKind,
    pub work: &'a AccountKey,
    pub by: &'a AccountKey,
    pub reason: &'a str,
    pub expected_etag: Option<&'a str>,
}

/// "Remove access" per [`plan_remove`]: a tombstone in place of the active link, or the
/// latest tombstone again when nothing is active.
pub(crate) fn remove<K: Kv>(kv: &K, catalog: &Catalog, removing: &Removing<'_>, now: DateTime<Utc>) -> Result<Link, K::Error> {
    let Removing { kind, work, by, reason, expected_etag } = *removing;
    let work_key = index_key(kind, work);
    let active = load_indexed(kv, Table::ByWork, &work_key)?;
    let last = load_indexed(kv, Table::LastRemoved, &work_key)?;
    match plan_remove(kind, active.as_ref(), last, by, reason, expected_etag, now).map_err(StoreError::from)? {
        RemovePlan::AlreadyRemoved(tombstone) => Ok(tombstone),
        RemovePlan::Retire(tombstone) => {
            retire(kv, catalog, &tombstone)?;
            kv.append_event(LinkEvent::new(0, EventType::Removed, &tombstone, None, now))?;
            Ok(tombstone)
        }
    }
}

/// Replaces a person's certifications, moving the difference in their contribution into
/// the credit of the organisation each of their crediting links belongs to, if any.
fn replace_certs<K: Kv>(
    kv: &K,
    catalog: &Catalog,
    personal: &AccountKey,
    before: &[Certification],
    after: &[Certification],
) -> Result<(), K::Error> {
    kv.insert(Table::Certs, &personal_key(personal), &encode(&after)?)?;
    for kind in LinkKind::crediting() {
        if let Some(link) = load_indexed(kv, Table::ByPersonal, &index_key(kind, personal))? {
            let mut delta = Credit::of_person(catalog, after);
            delta.add(&Credit::of_person(catalog, before), -1);
            add_credit(kv, &link.work.tenant, &delta, 1)?;
        }
    }
    Ok(())
}

/// Records certifications (idempotent per person and certification id; a later expiry
/// renews) with the credit of the organisations they count for.
pub(crate) fn record_certifications<K: Kv>(
    kv: &K,
    catalog: &Catalog,
    batch: &[Certification],
    now: DateTime<Utc>,
) -> Result<Vec<Recorded>, K::Error> {
    let mut outcomes = Vec::with_capacity(batch.len());
    for incoming in batch {
        let before = certs_of(kv, &incoming.personal)?;
        let mut after = before.clone();
        let fresh = Certification { expired: incoming.is_past_expiry(now), ..incoming.clone() };
        let outcome = match after.iter_mut().find(|c| c.id == incoming.id) {
            // A renewal: a later (or no) expiry replaces the recorded one.
            Some(current) if current.renewed_by(&fresh) => {
                if let Some(key) = expiry_key(current) {
                    kv.remove(Table::Expiry, &key)?;
                }
                *current = fresh.clone();
                Recorded::Accepted
            }
            Some(_) => Recorded::Duplicate,
            None => {
                after.push(fresh.clone());
                Recorded::Accepted
            }
        };
        if outcome == Recorded::Accepted {
            if let Some(key) = expiry_key(&fresh).filter(|_| !fresh.expired) {
                kv.insert(Table::Expiry, &key, &[])?;
            }
            replace_certs(kv, catalog, &incoming.personal, &before, &after)?;
        }
        outcomes.push(outcome);
    }
    Ok(outcomes)
}

/// Expires the certifications of these expiry-index entries (found due at `now`), taking
/// them out of credit; returns how many expired. Entries gone meanwhile are skipped.
pub(crate) fn expire_due<K: Kv>(kv: &K, catalog: &Catalog, due: &[Vec<u8>], now: DateTime<Utc>) -> Result<usize, K::Error> {
    let mut count = 0;
    for key in due {
        if kv.get(Table::Expiry, key)?.is_none() {
            continue; // renewed or expired meanwhile
        }
        kv.remove(Table::Expiry, key)?;
        let Some(personal) = expiry_personal(key)? else { continue };
        let before = certs_of(kv, &personal)?;
        let mut after = before.clone();
        for cert in after.iter_mut().filter(|c| !c.expired && c.is_past_expiry(now)) {
            cert.expired = true;
            count += 1;
        }
        replace_certs(kv, catalog, &personal, &before, &after)?;
    }
    Ok(count)
}

/// Stores a recomputed credit if no write touched the organisation's credit since version
/// `seen` was read; false when one did (recompute and try again).
pub(crate) fn commit_recalculation<K: Kv>(kv: &K, tenant: &TenantId, seen: u64, recomputed: &Credit) -> Result<bool, K::Error> {
    let current = stored_credit(kv, tenant)?;
    if current.version != seen {
        return Ok(false);
    }
    if current.credit != *recomputed {
        put_credit(kv, tenant, recomputed.clone())?;
    }
    Ok(true)
}
