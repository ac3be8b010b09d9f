//! Reads the roles share: links by id, index entries, sorted-set ranges, key scans.

use chrono::{DateTime, Utc};

use super::RedisStore;
use crate::{
    domain::Link,
    store::{
        Result, StoreError,
        changes::{decode, entry_link_id},
    },
};

/// Entries read per round trip when scanning an index.
pub(super) const BATCH: usize = 512;

pub(super) fn micros(at: DateTime<Utc>) -> i64 {
    at.timestamp_micros()
}

/// `[x` (inclusive) or `(x` (exclusive) for ZRANGEBYLEX.
pub(super) fn lex(bound: u8, key: &[u8]) -> Vec<u8> {
    [&[bound], key].concat()
}

impl RedisStore {
    /// The links of ids an index holds: one missing is corruption.
    pub(super) async fn load_by_ids(&self, ids: &[Vec<u8>]) -> Result<Vec<Link>> {
        self.links_if_any(ids)
            .await?
            .into_iter()
            .map(|link| link.ok_or_else(|| StoreError::Corrupt { detail: "an index points at a missing link".into() }))
            .collect()
    }

    pub(super) async fn load_indexed(&self, index: &str, key: &[u8]) -> Result<Option<Link>> {
        let Some(entry) = self.get(self.keys.entry(index, key)).await? else { return Ok(None) };
        Ok(self.load_by_ids(&[entry_link_id(&entry).to_vec()]).await?.pop().filter(Link::is_active))
    }

    /// Members of a sorted set in lexical order from `start` (a ZRANGEBYLEX bound) to `end`.
    pub(super) async fn lex_range(&self, set: &str, start: &[u8], end: &[u8], limit: usize) -> Result<Vec<Vec<u8>>> {
        let mut conn = self.conn.clone();
        self.call(
            redis::cmd("ZRANGEBYLEX").arg(self.keys.key(set)).arg(start).arg(end).arg("LIMIT").arg(0).arg(limit).query_async(&mut conn),
        )
        .await
    }

    /// Every key matching `{prefix}:name:*`, page by page.
    pub(super) async fn scan(&self, name: &str) -> Result<Vec<Vec<u8>>> {
        let pattern = self.keys.entry(name, b"*");
        let (mut cursor, mut keys) = (0u64, Vec::new());
        loop {
            let (next, page): (u64, Vec<Vec<u8>>) =
                self.here(redis::cmd("SCAN").arg(cursor).arg("MATCH").arg(&pattern).arg("COUNT").arg(1000)).await?;
            keys.extend(page);
            if next == 0 {
                return Ok(keys);
            }
            cursor = next;
        }
    }

    pub(super) async fn mget(&self, keys: Vec<Vec<u8>>) -> Result<Vec<Option<Vec<u8>>>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let mut conn = self.conn.clone();
        self.call(redis::cmd("MGET").arg(keys).query_async(&mut conn)).await
    }

    /// The links of these ids that exist (integrity checks report the rest).
    pub(super) async fn links_if_any(&self, ids: &[Vec<u8>]) -> Result<Vec<Option<Link>>> {
        let found = self.mget(ids.iter().map(|id| self.keys.entry("links", id)).collect()).await?;
        found.into_iter().map(|bytes| bytes.map(|b| decode(&b)).transpose()).collect()
    }
}
