//! The key layout every backend shares: how a table's keys and index entries are spelled, in
//! bytes that sort the way the listings and sweeps need (ids have fixed lengths, times are
//! big-endian). sled uses them as tree keys; Redis puts them after `{prefix}:table:`, or as
//! sorted-set members for the tables it scans in order.

use chrono::{DateTime, Utc};

use super::StoreError;
use crate::domain::{AccountKey, Certification, Link, LinkId, LinkKind, PartnerId, TenantId};

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

/// Partner index key: the PartnerID's [`partner_prefix`], then one of its tenants.
pub(crate) fn partner_tenant_key(partner: &PartnerId, tenant: &TenantId) -> Vec<u8> {
    [partner_prefix(partner), tenant.as_str().as_bytes().to_vec()].concat()
}

pub(crate) fn partner_prefix(partner: &PartnerId) -> Vec<u8> {
    format!("{}\0", partner.as_str()).into_bytes()
}

/// The tenant of a partner index key under `prefix`.
pub(crate) fn partner_key_tenant(prefix: &[u8], key: &[u8]) -> Result<TenantId, StoreError> {
    let tenant = key.strip_prefix(prefix).unwrap_or(key);
    TenantId::parse(&String::from_utf8_lossy(tenant)).map_err(|e| StoreError::Corrupt { detail: e.to_string() })
}

/// Expiry index key: time first (sortable), then whose achievement and which (a Partner
/// University one's id after `partner_university/`; Learning's as they always were).
pub(crate) fn expiry_key(cert: &Certification) -> Option<Vec<u8>> {
    let at = cert.expires_at?;
    let mut key = sortable_micros(at).to_be_bytes().to_vec();
    key.extend_from_slice(&personal_key(&cert.personal));
    key.push(0);
    if cert.source != LinkKind::MicrosoftLearning {
        key.extend_from_slice(format!("{}/", cert.source.key()).as_bytes());
    }
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
pub(crate) fn expiry_personal(key: &[u8]) -> Result<Option<AccountKey>, StoreError> {
    let rest = key.get(8..).unwrap_or_default();
    let Some(split) = rest.iter().rposition(|b| *b == 0) else { return Ok(None) };
    let raw = String::from_utf8_lossy(&rest[..split]);
    let Some((tid, oid)) = raw.split_once('\0') else { return Ok(None) };
    AccountKey::parse(tid, oid).map(Some).map_err(|e| StoreError::Corrupt { detail: e.to_string() })
}
