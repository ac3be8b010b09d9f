//! [`Kv`] over one sled transaction spanning every tree a change may touch.

use std::cell::Cell;

use sled::transaction::{ConflictableTransactionError, TransactionalTree};

use crate::{
    domain::LinkEvent,
    store::{
        StoreError,
        changes::{Kv, Table, encode},
    },
};

pub(super) type TxError = ConflictableTransactionError<StoreError>;

pub(super) const EVENT_SEQ: &[u8] = b"event_seq";

/// The views of one transaction: the trees of [`Table::ALL`] in order, then `events` and
/// `meta`.
pub(super) struct Tx<'a> {
    pub views: &'a [TransactionalTree],
    /// The cursor of the last event this transaction appended.
    pub last_event: Cell<Option<u64>>,
}

impl Tx<'_> {
    fn tree(&self, table: Table) -> &TransactionalTree {
        &self.views[table as usize]
    }

    fn events(&self) -> &TransactionalTree {
        &self.views[Table::ALL.len()]
    }

    fn meta(&self) -> &TransactionalTree {
        &self.views[Table::ALL.len() + 1]
    }
}

impl Kv for Tx<'_> {
    type Error = TxError;
    type Bytes = sled::IVec;

    fn get(&self, table: Table, key: &[u8]) -> Result<Option<sled::IVec>, TxError> {
        Ok(self.tree(table).get(key)?)
    }

    fn insert(&self, table: Table, key: &[u8], value: &[u8]) -> Result<(), TxError> {
        self.tree(table).insert(key, value)?;
        Ok(())
    }

    fn remove(&self, table: Table, key: &[u8]) -> Result<(), TxError> {
        self.tree(table).remove(key)?;
        Ok(())
    }

    fn append_event(&self, mut event: LinkEvent) -> Result<(), TxError> {
        let last = match self.meta().get(EVENT_SEQ)? {
            Some(bytes) => u64::from_be_bytes(bytes.as_ref().try_into().map_err(|_| StoreError::Corrupt { detail: "event_seq".into() })?),
            None => 0,
        };
        event.cursor = last + 1;
        self.meta().insert(EVENT_SEQ, &event.cursor.to_be_bytes())?;
        self.events().insert(&event.cursor.to_be_bytes(), encode(&event)?)?;
        self.last_event.set(Some(event.cursor));
        Ok(())
    }
}

impl From<StoreError> for TxError {
    fn from(e: StoreError) -> Self {
        ConflictableTransactionError::Abort(e)
    }
}
