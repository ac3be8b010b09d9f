//! The multi-key changes, written once for every backend over [`Kv`]: the smallest
//! transaction a backend offers (get / insert / remove in named tables, append an event).
//! sled runs them inside a sled transaction; Redis runs them over a snapshot and applies
//! the recorded writes with one script that first checks nothing it read has changed.
//! Record formats live here too, and the keys in [`super::keys`], so both backends store the
//! same bytes.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize, de::DeserializeOwned};

pub(crate) use super::keys::*;
use super::{Recorded, StoreError};
use crate::domain::{
    AccountKey, Associations, Catalog, Certification, Credit, EventType, LearningProfile, Link, LinkEvent, LinkKind, LinkMode, LinkPlan,
    Mcid, NewLink, Organization, People, REASON_WORK_ACCOUNT_DELETED, RemovePlan, TenantId, plan_link, plan_remove,
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
    /// personal account → its Microsoft Learning profile's MCID.
    Profiles,
    /// tenant → its [`Organization`] (enrolment: the PartnerID it belongs to).
    Orgs,
    /// (PartnerID, tenant) → (): the tenants of each organisation (ordered).
    PartnerTenants,
    /// (expiry time, personal account, certification id) → () (ordered).
    Expiry,
    /// (kind, personal account) → its [`Associations`] of the last year.
    Associations,
}

impl Table {
    /// Every table, in declaration order (`table as usize` is its position).
    pub(crate) const ALL: [Table; 13] = [
        Table::Links,
        Table::ByWork,
        Table::ByPersonal,
        Table::LastRemoved,
        Table::ByTenant,
        Table::ActiveByTenant,
        Table::Certs,
        Table::Credit,
        Table::Profiles,
        Table::Orgs,
        Table::PartnerTenants,
        Table::Expiry,
        Table::Associations,
    ];
}

#[cfg(test)]
#[test]
fn every_table_is_listed_at_its_position() {
    for (position, table) in Table::ALL.iter().enumerate() {
        assert_eq!(*table as usize, position, "{table:?}");
    }
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
    /// Whether a read of this run answered "absent" only because the record was not fetched
    /// yet (Redis reads ahead of its commit): the run is thrown away and run again with it,
    /// so an inconsistency it sees now is not the store's. It goes on instead of failing, so
    /// that one run finds every record a batch needs, not a person's at a time.
    fn unfetched(&self) -> bool {
        false
    }
}

/// The first byte of a record in the compact format ([postcard], times and identifiers in
/// binary: see `domain::compact`). No JSON text starts with it, so a record of before the
/// format (JSON) is still read; a later format takes the next number.
pub(crate) const COMPACT_FORMAT: u8 = 1;

pub(crate) fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, StoreError> {
    postcard::to_extend(value, vec![COMPACT_FORMAT]).map_err(|e| StoreError::Corrupt { detail: e.to_string() })
}

/// Reads a record in the compact format, or in JSON (written before it).
pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, StoreError> {
    match bytes.split_first() {
        Some((&COMPACT_FORMAT, compact)) => postcard::from_bytes(compact).map_err(|e| StoreError::Corrupt { detail: e.to_string() }),
        _ => serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt { detail: e.to_string() }),
    }
}

/// Whether a record is in the current format.
pub(crate) fn is_current(bytes: &[u8]) -> bool {
    bytes.first() == Some(&COMPACT_FORMAT)
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
        None if kv.unfetched() => Ok(None),
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

/// What a work user contributes to their organisation now, joined across their active links
/// exactly as a recomputation joins them ([`People`]).
fn contribution<K: Kv>(kv: &K, catalog: &Catalog, work: &AccountKey) -> Result<Credit, K::Error> {
    let mut person = People::default();
    for kind in LinkKind::ALL {
        if let Some(link) = load_indexed(kv, Table::ByWork, &index_key(kind, work))? {
            person.add(catalog, &link, &certs_of(kv, &link.personal)?);
        }
    }
    Ok(person.credit())
}

/// Runs `change` and moves the difference it makes to each of `people`'s contributions into
/// their organisation's credit.
fn moving_credit<K: Kv, T>(
    kv: &K,
    catalog: &Catalog,
    people: &[&AccountKey],
    change: impl FnOnce() -> Result<T, K::Error>,
) -> Result<T, K::Error> {
    let before = people.iter().map(|work| contribution(kv, catalog, work)).collect::<Result<Vec<_>, _>>()?;
    let result = change()?;
    for (work, before) in people.iter().zip(before) {
        let mut delta = contribution(kv, catalog, work)?;
        delta.add(&before, -1);
        add_credit(kv, &work.tenant, &delta, 1)?;
    }
    Ok(result)
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

/// Takes a link out of both uniqueness indexes, and what it brought out of the organisation's
/// credit.
fn retire<K: Kv>(kv: &K, catalog: &Catalog, tombstone: &Link) -> Result<(), K::Error> {
    moving_credit(kv, catalog, &[&tombstone.work], || {
        let work_key = index_key(tombstone.kind, &tombstone.work);
        put_link(kv, tombstone)?;
        kv.remove(Table::ByWork, &work_key)?;
        kv.remove(Table::ByPersonal, &index_key(tombstone.kind, &tombstone.personal))?;
        kv.insert(Table::LastRemoved, &work_key, &index_entry(tombstone))?;
        kv.remove(Table::ActiveByTenant, &active_key(tombstone))
    })
}

/// Records a verified association per [`plan_link`]: tombstones first (leaving the
/// indexes), then the new link, its events, and the credit of every organisation involved.
pub(crate) fn link<K: Kv>(kv: &K, catalog: &Catalog, new: &NewLink, mode: LinkMode, now: DateTime<Utc>) -> Result<Link, K::Error> {
    let of_work = load_indexed(kv, Table::ByWork, &index_key(new.kind, &new.work))?;
    let of_personal = load_indexed(kv, Table::ByPersonal, &index_key(new.kind, &new.personal))?;
    let plan = plan_link(new.clone(), mode, of_work.as_ref(), of_personal.as_ref(), now).map_err(StoreError::from)?;
    if let LinkPlan::Create { create, retire: old } = &plan {
        // A new link is an association of its personal account, within the kind's limit.
        let key = index_key(new.kind, &new.personal);
        let mut history = Associations::recorded_or_held(recorded_associations(kv, &key)?, of_personal.as_ref());
        mode.limit.check(new.kind, &history, now).map_err(StoreError::from)?;
        history.record(now);
        kv.insert(Table::Associations, &key, &encode(&history)?)?;
        for old in old {
            retire(kv, catalog, old)?;
        }
        moving_credit(kv, catalog, &[&create.work], || {
            put_link(kv, create)?;
            kv.insert(Table::ByTenant, &tenant_key(&create.work.tenant, Some(&create.id)), &[])?;
            kv.insert(Table::ActiveByTenant, &active_key(create), &[])?;
            let entry = index_entry(create);
            kv.insert(Table::ByWork, &index_key(create.kind, &create.work), &entry)?;
            kv.insert(Table::ByPersonal, &index_key(create.kind, &create.personal), &entry)
        })?;
        for (event_type, link, previous) in plan.events() {
            kv.append_event(LinkEvent::new(0, event_type, link, previous, now))?;
        }
    }
    Ok(match plan {
        LinkPlan::Unchanged(link) | LinkPlan::Create { create: link, .. } => link,
    })
}

/// The associations recorded for this (kind, personal account) [`index_key`].
pub(crate) fn recorded_associations<K: Kv>(kv: &K, key: &[u8]) -> Result<Option<Associations>, K::Error> {
    Ok(kv.get(Table::Associations, key)?.map(|bytes| decode(bytes.as_ref())).transpose()?)
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

/// Tombstones every active link of `work` (a deleted work account) with its events, moving
/// its credit; answers the tombstones written (none when nothing was active).
pub(crate) fn remove_work_user<K: Kv>(
    kv: &K,
    catalog: &Catalog,
    work: &AccountKey,
    by: &AccountKey,
    now: DateTime<Utc>,
) -> Result<Vec<Link>, K::Error> {
    let mut removed = Vec::new();
    for kind in LinkKind::ALL {
        if load_indexed(kv, Table::ByWork, &index_key(kind, work))?.is_some() {
            let removing = Removing { kind, work, by, reason: REASON_WORK_ACCOUNT_DELETED, expected_etag: None };
            removed.push(remove(kv, catalog, &removing, now)?);
        }
    }
    Ok(removed)
}

/// Replaces a personal account's achievements, moving the difference into the credit of the
/// organisation of each work user it is linked to (one per kind at most, maybe the same).
fn replace_certs<K: Kv>(kv: &K, catalog: &Catalog, personal: &AccountKey, after: &[Certification]) -> Result<(), K::Error> {
    let mut holders = Vec::new();
    for kind in LinkKind::ALL {
        if let Some(link) = load_indexed(kv, Table::ByPersonal, &index_key(kind, personal))?
            && !holders.contains(&link.work)
        {
            holders.push(link.work);
        }
    }
    let people: Vec<&AccountKey> = holders.iter().collect();
    moving_credit(kv, catalog, &people, || kv.insert(Table::Certs, &personal_key(personal), &encode(&after)?))
}

/// Enrols a tenant in the organisation of its PartnerID: a tenant belongs to one organisation,
/// so moving it to another PartnerID takes it out of the one it was in.
pub(crate) fn upsert_organization<K: Kv>(kv: &K, organization: &Organization) -> Result<(), K::Error> {
    let key = organization.tenant.as_str().as_bytes();
    if let Some(bytes) = kv.get(Table::Orgs, key)? {
        let before: Organization = decode(bytes.as_ref())?;
        if before.partner_id != organization.partner_id {
            kv.remove(Table::PartnerTenants, &partner_tenant_key(&before.partner_id, &before.tenant))?;
        }
    }
    kv.insert(Table::Orgs, key, &encode(organization)?)?;
    kv.insert(Table::PartnerTenants, &partner_tenant_key(&organization.partner_id, &organization.tenant), &[])
}

/// Records Learning profiles: a new MCID for an account replaces the one it had; the same
/// one again is a duplicate.
pub(crate) fn record_profiles<K: Kv>(kv: &K, batch: &[LearningProfile]) -> Result<Vec<Recorded>, K::Error> {
    let mut outcomes = Vec::with_capacity(batch.len());
    for profile in batch {
        let key = personal_key(&profile.personal);
        let known: Option<Mcid> = kv.get(Table::Profiles, &key)?.map(|bytes| decode(bytes.as_ref())).transpose()?;
        if known.as_ref() == Some(&profile.mcid) {
            outcomes.push(Recorded::Duplicate);
        } else {
            kv.insert(Table::Profiles, &key, &encode(&profile.mcid)?)?;
            outcomes.push(Recorded::Accepted);
        }
    }
    Ok(outcomes)
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
        let mut after = certs_of(kv, &incoming.personal)?;
        let fresh = Certification { expired: incoming.is_past_expiry(now), ..incoming.clone() };
        let outcome = match after.iter_mut().find(|c| c.same_as(incoming)) {
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
            replace_certs(kv, catalog, &incoming.personal, &after)?;
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
        let mut after = certs_of(kv, &personal)?;
        for cert in after.iter_mut().filter(|c| !c.expired && c.is_past_expiry(now)) {
            cert.expired = true;
            count += 1;
        }
        replace_certs(kv, catalog, &personal, &after)?;
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
