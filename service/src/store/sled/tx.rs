//! [`Kv`] over one sled transaction spanning every tree a change may touch, directly
//! ([`Tx`]) or through the write buffer of one change of a combined batch
//! ([`super::combine::Overlay`]).

use std::cell::Cell;

use sled::{
    IVec,
    transaction::{ConflictableTransactionError, TransactionalTree},
};

use crate::{
    domain::LinkEvent,
    store::{
        StoreError,
        changes::{Kv, Table, encode},
    },
};

pub(super) type TxError = ConflictableTransactionError<StoreError>;

pub(super) const EVENT_SEQ: &[u8] = b"event_seq";

/// The trees of a transaction by position: those of [`Table::ALL`] in order, then `events`
/// and `meta`.
pub(super) const EVENTS: usize = Table::ALL.len();
pub(super) const META: usize = Table::ALL.len() + 1;
pub(super) const TREES: usize = Table::ALL.len() + 2;

/// Reads and writes by tree position within one transaction.
pub(super) trait Views {
    fn get_at(&self, tree: usize, key: &[u8]) -> Result<Option<IVec>, TxError>;
    fn insert_at(&self, tree: usize, key: &[u8], value: IVec) -> Result<(), TxError>;
    fn remove_at(&self, tree: usize, key: &[u8]) -> Result<(), TxError>;
    /// Notes the cursor of the last event appended.
    fn appended(&self, cursor: u64);
}

/// The views of one transaction, in the order of [`TREES`].
pub(super) struct Tx<'a> {
    pub views: &'a [TransactionalTree],
    /// The cursor of the last event this transaction appended.
    pub last_event: Cell<Option<u64>>,
}

impl Views for Tx<'_> {
    fn get_at(&self, tree: usize, key: &[u8]) -> Result<Option<IVec>, TxError> {
        Ok(self.views[tree].get(key)?)
    }

    fn insert_at(&self, tree: usize, key: &[u8], value: IVec) -> Result<(), TxError> {
        self.views[tree].insert(key, value)?;
        Ok(())
    }

    fn remove_at(&self, tree: usize, key: &[u8]) -> Result<(), TxError> {
        self.views[tree].remove(key)?;
        Ok(())
    }

    fn appended(&self, cursor: u64) {
        self.last_event.set(Some(cursor));
    }
}

impl<V: Views + ?Sized> Views for &V {
    fn get_at(&self, tree: usize, key: &[u8]) -> Result<Option<IVec>, TxError> {
        (**self).get_at(tree, key)
    }

    fn insert_at(&self, tree: usize, key: &[u8], value: IVec) -> Result<(), TxError> {
        (**self).insert_at(tree, key, value)
    }

    fn remove_at(&self, tree: usize, key: &[u8]) -> Result<(), TxError> {
        (**self).remove_at(tree, key)
    }

    fn appended(&self, cursor: u64) {
        (**self).appended(cursor);
    }
}

impl<V: Views> Kv for V {
    type Error = TxError;
    type Bytes = IVec;

    fn get(&self, table: Table, key: &[u8]) -> Result<Option<IVec>, TxError> {
        self.get_at(table as usize, key)
    }

    fn insert(&self, table: Table, key: &[u8], value: &[u8]) -> Result<(), TxError> {
        self.insert_at(table as usize, key, value.into())
    }

    fn remove(&self, table: Table, key: &[u8]) -> Result<(), TxError> {
        self.remove_at(table as usize, key)
    }

    fn append_event(&self, mut event: LinkEvent) -> Result<(), TxError> {
        let last = match self.get_at(META, EVENT_SEQ)? {
            Some(bytes) => u64::from_be_bytes(bytes.as_ref().try_into().map_err(|_| StoreError::Corrupt { detail: "event_seq".into() })?),
            None => 0,
        };
        event.cursor = last + 1;
        self.insert_at(META, EVENT_SEQ, event.cursor.to_be_bytes().as_slice().into())?;
        self.insert_at(EVENTS, &event.cursor.to_be_bytes(), encode(&event)?.into())?;
        self.appended(event.cursor);
        Ok(())
    }
}

impl From<StoreError> for TxError {
    fn from(e: StoreError) -> Self {
        ConflictableTransactionError::Abort(e)
    }
}
