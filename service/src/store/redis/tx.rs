//! Multi-key changes on Redis: run the change over a snapshot, fetching what it reads, then
//! check-and-apply its writes in one script.

use std::{
    cell::RefCell,
    collections::{HashMap, HashSet},
};

use redis::Script;

use super::{RedisStore, Slot, unavailable};
use crate::{
    domain::LinkEvent,
    store::{
        Result, StoreError,
        changes::{Kv, Table, encode},
    },
};

/// KEYS: event sequence, event stream, one key per guard, one per write (events take none).
/// ARGV: guard count; per guard kind (`v` value / `m` member), member, present (`1`/`0`),
/// value; then the writes: `set` value | `del` | `zadd` member | `zrem` member | `event` body.
/// Answers -1 (and writes nothing) when a guarded key changed, else the last event cursor or 0.
pub(super) const CHECK_AND_APPLY: &str = r"
local guards = tonumber(ARGV[1])
local a, k = 2, 3
for _ = 1, guards do
  local current
  if ARGV[a] == 'm' then
    current = redis.call('ZSCORE', KEYS[k], ARGV[a + 1])
    if current then current = '' end
  else
    current = redis.call('GET', KEYS[k])
  end
  if ARGV[a + 2] == '1' then
    if current ~= ARGV[a + 3] then return -1 end
  elseif current then
    return -1
  end
  a, k = a + 4, k + 1
end
local last = 0
while a <= #ARGV do
  local op = ARGV[a]
  if op == 'event' then
    last = redis.call('INCR', KEYS[1])
    redis.call('XADD', KEYS[2], string.format('%d-0', last), 'e', ARGV[a + 1])
    a = a + 2
  elseif op == 'del' then
    redis.call('DEL', KEYS[k])
    a, k = a + 1, k + 1
  else
    if op == 'set' then
      redis.call('SET', KEYS[k], ARGV[a + 1])
    elseif op == 'zadd' then
      redis.call('ZADD', KEYS[k], 0, ARGV[a + 1])
    else
      redis.call('ZREM', KEYS[k], ARGV[a + 1])
    end
    a, k = a + 2, k + 1
  end
end
return last
";

/// A compare-and-set of one idempotency record, with its creation-time index and its caller's
/// count for the day beside it. KEYS: records hash, time index, the day's counts hash.
/// ARGV: field, expected present (`1`/`0`), expected value, new present, new value, index
/// score, caller, count change, quota, counts TTL (s). Answers 1 when applied, 0 when the
/// field held something else, -1 (nothing written) when counting would pass the quota.
pub(super) const REQUEST_SWAP: &str = r"
local current = redis.call('HGET', KEYS[1], ARGV[1])
if ARGV[2] == '1' then
  if current ~= ARGV[3] then return 0 end
elseif current then
  return 0
end
local delta = tonumber(ARGV[8])
if delta ~= 0 then
  local used = tonumber(redis.call('HGET', KEYS[3], ARGV[7]) or '0')
  if delta > 0 and used + delta > tonumber(ARGV[9]) then return -1 end
  if used + delta <= 0 then
    redis.call('HDEL', KEYS[3], ARGV[7])
  else
    redis.call('HSET', KEYS[3], ARGV[7], used + delta)
    redis.call('EXPIRE', KEYS[3], ARGV[10])
  end
end
if ARGV[4] == '1' then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[5])
  redis.call('ZADD', KEYS[2], ARGV[6], ARGV[1])
else
  redis.call('HDEL', KEYS[1], ARGV[1])
  redis.call('ZREM', KEYS[2], ARGV[1])
end
return 1
";

/// Retention of idempotency records: KEYS: records hash, time index. ARGV: the first score to
/// keep, batch size. Drops up to a batch of records created before it; answers how many.
pub(super) const PURGE_REQUESTS: &str = r"
local old = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', '(' .. ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, field in ipairs(old) do
  redis.call('HDEL', KEYS[1], field)
  redis.call('ZREM', KEYS[2], field)
end
return #old
";

/// Retention: KEYS: purged-through marker, stream. ARGV: the last cursor to drop. The
/// marker only moves forward and is set before the events go.
pub(super) const PURGE_EVENTS: &str = r"
local through = tonumber(ARGV[1])
if tonumber(redis.call('GET', KEYS[1]) or '0') < through then
  redis.call('SET', KEYS[1], through)
end
return redis.call('XTRIM', KEYS[2], 'MINID', string.format('%d-0', through + 1))
";

pub(super) struct Scripts {
    pub check_and_apply: Script,
    pub request_swap: Script,
    pub purge_requests: Script,
    pub purge_events: Script,
}

impl Scripts {
    pub fn new() -> Self {
        Self {
            check_and_apply: Script::new(CHECK_AND_APPLY),
            request_swap: Script::new(REQUEST_SWAP),
            purge_requests: Script::new(PURGE_REQUESTS),
            purge_events: Script::new(PURGE_EVENTS),
        }
    }
}

/// How many times a change is retried when others keep changing what it read.
const MAX_CONFLICTS: usize = 64;
/// A change reads a chain of records (index → link → certifications → credit): a few rounds.
const MAX_ROUNDS: usize = 32;

type Entry = (Table, Vec<u8>);

enum Write {
    Put(Table, Vec<u8>, Vec<u8>),
    Delete(Table, Vec<u8>),
    Event(Vec<u8>),
}

/// One run of a change over a snapshot. A read of something not fetched yet answers
/// "absent" and is noted; a run that noted any is thrown away once they are fetched.
pub(super) struct Attempt<'a> {
    snapshot: &'a HashMap<Entry, Option<Vec<u8>>>,
    /// This run's own writes, visible to its later reads.
    written: RefCell<HashMap<Entry, Option<Vec<u8>>>>,
    /// Snapshot entries this run read: the guards.
    read: RefCell<HashSet<Entry>>,
    missing: RefCell<HashSet<Entry>>,
    writes: RefCell<Vec<Write>>,
}

impl Kv for Attempt<'_> {
    type Error = StoreError;
    type Bytes = Vec<u8>;

    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let entry = (table, key.to_vec());
        if let Some(value) = self.written.borrow().get(&entry) {
            return Ok(value.clone());
        }
        match self.snapshot.get(&entry) {
            Some(value) => {
                let value = value.clone();
                self.read.borrow_mut().insert(entry);
                Ok(value)
            }
            None => {
                self.missing.borrow_mut().insert(entry);
                Ok(None)
            }
        }
    }

    fn insert(&self, table: Table, key: &[u8], value: &[u8]) -> Result<()> {
        self.written.borrow_mut().insert((table, key.to_vec()), Some(value.to_vec()));
        self.writes.borrow_mut().push(Write::Put(table, key.to_vec(), value.to_vec()));
        Ok(())
    }

    fn remove(&self, table: Table, key: &[u8]) -> Result<()> {
        self.written.borrow_mut().insert((table, key.to_vec()), None);
        self.writes.borrow_mut().push(Write::Delete(table, key.to_vec()));
        Ok(())
    }

    fn append_event(&self, event: LinkEvent) -> Result<()> {
        // The cursor is assigned by the script; readers take it from the stream entry id.
        self.writes.borrow_mut().push(Write::Event(encode(&event)?));
        Ok(())
    }

    fn unfetched(&self) -> bool {
        !self.missing.borrow().is_empty()
    }
}

impl RedisStore {
    /// Runs a change until it applies without conflict; returns its result and the cursor
    /// of its last event. A refusal (an `Err` of the change) is returned only after the
    /// reads it was decided on are confirmed current, so it is never based on a torn view.
    pub(super) async fn transact<T>(&self, change: impl Fn(&Attempt<'_>) -> Result<T>) -> Result<(T, Option<u64>)> {
        let mut snapshot = HashMap::new();
        for _ in 0..MAX_CONFLICTS {
            let mut rounds = 0;
            let (outcome, attempt) = loop {
                let attempt = Attempt {
                    snapshot: &snapshot,
                    written: RefCell::default(),
                    read: RefCell::default(),
                    missing: RefCell::default(),
                    writes: RefCell::default(),
                };
                let outcome = change(&attempt);
                let missing = attempt.missing.take();
                if missing.is_empty() {
                    break (outcome, (attempt.read.take(), attempt.writes.take()));
                }
                rounds += 1;
                if rounds > MAX_ROUNDS {
                    return Err(StoreError::Corrupt { detail: "a change kept reading records it had not fetched".into() });
                }
                drop(attempt);
                let fetched = self.fetch(missing).await?;
                snapshot.extend(fetched);
            };
            let (read, writes) = attempt;
            let writes = if outcome.is_ok() { writes } else { Vec::new() };
            if read.is_empty() && writes.is_empty() {
                return outcome.map(|value| (value, None));
            }
            match self.check_and_apply(&snapshot, &read, &writes).await? {
                Some(last) => {
                    let value = outcome?;
                    // Also when nothing was written: the answer may rest on a change whose
                    // own caller was refused because too few replicas held it yet.
                    self.replicated().await?;
                    super::super::announce(&self.feed, last);
                    return Ok((value, (last > 0).then_some(last)));
                }
                None => snapshot.clear(),
            }
        }
        Err(unavailable("a change kept conflicting with concurrent writers; try again"))
    }

    async fn fetch(&self, entries: HashSet<Entry>) -> Result<Vec<(Entry, Option<Vec<u8>>)>> {
        let mut pipe = redis::pipe();
        let entries: Vec<(Entry, bool)> = entries
            .into_iter()
            .map(|entry| {
                // Sorted-set members answer with a score: only presence matters.
                let member = match self.keys.slot(entry.0, &entry.1) {
                    Slot::Value(key) => {
                        pipe.get(key);
                        false
                    }
                    Slot::Member { set, member } => {
                        pipe.zscore(set, member);
                        true
                    }
                };
                (entry, member)
            })
            .collect();
        let mut conn = self.conn.clone();
        let values: Vec<redis::Value> = self.call(pipe.query_async(&mut conn)).await?;
        entries
            .into_iter()
            .zip(values)
            .map(|((entry, member), value)| {
                let value = match (member, value) {
                    (_, redis::Value::Nil) => None,
                    (true, _) => Some(Vec::new()),
                    (false, redis::Value::BulkString(bytes)) => Some(bytes),
                    (false, other) => return Err(StoreError::Corrupt { detail: format!("unexpected reply {other:?}") }),
                };
                Ok((entry, value))
            })
            .collect()
    }

    /// `Some(last event cursor or 0)` when applied, `None` when a guard failed.
    async fn check_and_apply(
        &self,
        snapshot: &HashMap<Entry, Option<Vec<u8>>>,
        read: &HashSet<Entry>,
        writes: &[Write],
    ) -> Result<Option<u64>> {
        let mut invocation = self.scripts.check_and_apply.prepare_invoke();
        invocation.key(self.keys.key("event_seq")).key(self.keys.key("events")).arg(read.len());
        for entry @ (table, key) in read {
            let value = snapshot.get(entry).cloned().flatten();
            let present = if value.is_some() { "1" } else { "0" };
            match self.keys.slot(*table, key) {
                Slot::Value(key) => invocation.key(key).arg("v").arg("").arg(present).arg(value.unwrap_or_default()),
                Slot::Member { set, member } => invocation.key(set).arg("m").arg(member).arg(present).arg(""),
            };
        }
        for write in writes {
            match write {
                Write::Event(body) => {
                    invocation.arg("event").arg(body.as_slice());
                }
                Write::Put(table, key, value) => {
                    match self.keys.slot(*table, key) {
                        Slot::Value(slot) => invocation.key(slot).arg("set").arg(value.as_slice()),
                        Slot::Member { set, member } => invocation.key(set).arg("zadd").arg(member),
                    };
                    // Organisations with links or credit, for recalculation to find.
                    if let Some(tenant) = tenant_of(*table, key) {
                        invocation.key(self.keys.tenants()).arg("zadd").arg(tenant);
                    }
                }
                Write::Delete(table, key) => {
                    match self.keys.slot(*table, key) {
                        Slot::Value(slot) => invocation.key(slot).arg("del"),
                        Slot::Member { set, member } => invocation.key(set).arg("zrem").arg(member),
                    };
                }
            }
        }
        let mut conn = self.conn.clone();
        let last: i64 = self.call(invocation.invoke_async(&mut conn)).await?;
        Ok(u64::try_from(last).ok())
    }
}

/// The organisation an entry belongs to, for the tables that make one worth recalculating.
fn tenant_of(table: Table, key: &[u8]) -> Option<Vec<u8>> {
    match table {
        Table::Credit => Some(key.to_vec()),
        Table::ByTenant => key.split(|b| *b == 0).next().map(<[u8]>::to_vec),
        _ => None,
    }
}
