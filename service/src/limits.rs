//! Flood protection for BeginLink: a token bucket per work user and one for everyone, per
//! replica. `now` is a parameter, so refill is tested without sleeping.

use std::{
    collections::HashMap,
    sync::{Mutex, PoisonError},
};

use chrono::{DateTime, Duration, Utc};
use serde::Deserialize;

use crate::domain::AccountKey;

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitSettings {
    /// Flows one work user may begin in a burst, refilled at `begin_per_user_per_minute`.
    pub begin_per_user_burst: u32,
    pub begin_per_user_per_minute: u32,
    /// Flows all users together may begin in a burst, refilled at `begin_global_per_second`.
    pub begin_global_burst: u32,
    pub begin_global_per_second: u32,
    /// Request ids one caller may have remembered per day (UTC), across replicas.
    pub request_ids_per_caller_per_day: u32,
    /// Change-feed streams one caller may hold open at a time, per replica.
    pub watch_streams_per_caller: u32,
}

impl Default for LimitSettings {
    fn default() -> Self {
        Self {
            begin_per_user_burst: 10,
            begin_per_user_per_minute: 10,
            begin_global_burst: 500,
            begin_global_per_second: 200,
            request_ids_per_caller_per_day: 10_000,
            watch_streams_per_caller: 4,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: DateTime<Utc>,
}

impl Bucket {
    fn full(capacity: f64, now: DateTime<Utc>) -> Self {
        Self { tokens: capacity, updated: now }
    }

    /// Takes one token, or says in how many seconds one will be there.
    fn take(&mut self, now: DateTime<Utc>, capacity: f64, per_second: f64) -> Result<(), u64> {
        let elapsed = (now - self.updated).num_milliseconds().max(0) as f64 / 1000.0;
        self.tokens = (self.tokens + elapsed * per_second).min(capacity);
        self.updated = now.max(self.updated);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - self.tokens) / per_second).ceil().max(1.0) as u64)
        }
    }
}

pub struct BeginLimiter {
    settings: LimitSettings,
    users: Mutex<HashMap<AccountKey, Bucket>>,
    global: Mutex<Option<Bucket>>,
}

/// Past this many tracked users, buckets idle for long enough to be full again are dropped.
const MAX_TRACKED_USERS: usize = 100_000;

impl BeginLimiter {
    pub fn new(settings: LimitSettings) -> Self {
        Self { settings, users: Mutex::new(HashMap::new()), global: Mutex::new(None) }
    }

    /// Ok, or the seconds after which to retry.
    pub fn check(&self, user: &AccountKey, now: DateTime<Utc>) -> Result<(), u64> {
        let s = &self.settings;
        let (user_capacity, user_rate) = (f64::from(s.begin_per_user_burst), f64::from(s.begin_per_user_per_minute.max(1)) / 60.0);
        let (global_capacity, global_rate) = (f64::from(s.begin_global_burst), f64::from(s.begin_global_per_second.max(1)));

        let mut users = self.users.lock().unwrap_or_else(PoisonError::into_inner);
        if users.len() >= MAX_TRACKED_USERS {
            let refill_time = Duration::seconds((user_capacity / user_rate).ceil() as i64);
            users.retain(|_, b| now - b.updated < refill_time);
        }
        let bucket = users.entry(user.clone()).or_insert_with(|| Bucket::full(user_capacity, now));
        bucket.take(now, user_capacity, user_rate)?;

        let mut global = self.global.lock().unwrap_or_else(PoisonError::into_inner);
        let global = global.get_or_insert_with(|| Bucket::full(global_capacity, now));
        global.take(now, global_capacity, global_rate).inspect_err(|_| {
            // The user's token was not spent: give it back.
            bucket.tokens += 1.0;
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(n: u8) -> AccountKey {
        AccountKey::parse("3b1d6a6e-5a3c-4f0a-9c7e-2f6b8e1d4c01", &format!("00000000-0000-0000-0000-0000000000{n:02x}")).unwrap()
    }

    #[test]
    fn a_user_is_limited_alone_and_refills_over_time() {
        let limiter = BeginLimiter::new(LimitSettings { begin_per_user_burst: 3, begin_per_user_per_minute: 6, ..Default::default() });
        let now = Utc::now();
        for _ in 0..3 {
            limiter.check(&user(1), now).unwrap();
        }
        assert_eq!(limiter.check(&user(1), now), Err(10), "6 a minute: one every 10 s");
        limiter.check(&user(2), now).unwrap();
        assert!(limiter.check(&user(1), now + Duration::seconds(9)).is_err());
        limiter.check(&user(1), now + Duration::seconds(10)).unwrap();
    }

    #[test]
    fn everyone_together_is_limited_without_spending_users_tokens() {
        let settings = LimitSettings { begin_per_user_burst: 1, begin_global_burst: 2, begin_global_per_second: 1, ..Default::default() };
        let limiter = BeginLimiter::new(settings);
        let now = Utc::now();
        limiter.check(&user(1), now).unwrap();
        limiter.check(&user(2), now).unwrap();
        assert_eq!(limiter.check(&user(3), now), Err(1));
        // User 3's own token was given back when the global bucket refused.
        limiter.check(&user(3), now + Duration::seconds(1)).unwrap();
    }
}
