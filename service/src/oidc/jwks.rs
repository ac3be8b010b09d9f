//! A provider's signing keys. The `openidconnect` crate never refreshes keys by itself: on an
//! unknown `kid` we refetch once — one fetch at a time, at most once per interval — then fail
//! closed; a failed fetch keeps the last good keys.

use std::{
    sync::{
        RwLock,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use openidconnect::{JsonWebKeySetUrl, core::CoreJsonWebKeySet, reqwest};

use super::OidcError;

pub struct JwksCache {
    uri: JsonWebKeySetUrl,
    http: reqwest::Client,
    keys: RwLock<CoreJsonWebKeySet>,
    generation: AtomicU64,
    /// When the last refetch on an unknown `kid` happened; held while one is in flight.
    last_unknown_kid_fetch: tokio::sync::Mutex<Option<Instant>>,
    min_refetch_interval: Duration,
    counted: crate::metrics::JwksCounters,
}

impl JwksCache {
    pub fn new(
        uri: JsonWebKeySetUrl,
        http: reqwest::Client,
        keys: CoreJsonWebKeySet,
        min_refetch_interval: Duration,
        counted: crate::metrics::JwksCounters,
    ) -> Self {
        Self {
            uri,
            http,
            keys: RwLock::new(keys),
            generation: AtomicU64::new(0),
            last_unknown_kid_fetch: tokio::sync::Mutex::new(None),
            min_refetch_interval,
            counted,
        }
    }

    /// A fetch of these keys, counted (and its failure too).
    async fn counted_fetch(&self) -> Result<CoreJsonWebKeySet, OidcError> {
        self.counted.fetches.inc();
        let fetched = Self::fetch(&self.uri, &self.http).await;
        if fetched.is_err() {
            self.counted.failures.inc();
        }
        fetched
    }

    pub async fn fetch(uri: &JsonWebKeySetUrl, http: &reqwest::Client) -> Result<CoreJsonWebKeySet, OidcError> {
        CoreJsonWebKeySet::fetch_async(uri, http)
            .await
            .map_err(|e| OidcError::Provider { detail: format!("JWKS fetch from {} failed: {e}", uri.as_str()) })
    }

    /// The current keys and their generation (pass it to [`Self::refetch_for_unknown_kid`]).
    pub fn current(&self) -> (CoreJsonWebKeySet, u64) {
        let keys = self.keys.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        (keys, self.generation.load(Ordering::SeqCst))
    }

    fn replace(&self, keys: CoreJsonWebKeySet) {
        *self.keys.write().unwrap_or_else(std::sync::PoisonError::into_inner) = keys;
        self.generation.fetch_add(1, Ordering::SeqCst);
    }

    /// Scheduled refresh (hourly). Failure keeps the last good keys.
    pub async fn refresh(&self) {
        match self.counted_fetch().await {
            Ok(keys) => self.replace(keys),
            Err(e) => tracing::warn!(error = %e, "JWKS refresh failed; keeping the last good keys"),
        }
    }

    /// A token named a `kid` missing from generation `seen`. Returns true when newer keys are
    /// there to try (fetched now, or by a concurrent caller); false when rate limited or the
    /// fetch failed, and the caller must fail closed.
    pub async fn refetch_for_unknown_kid(&self, seen: u64) -> bool {
        let mut last = self.last_unknown_kid_fetch.lock().await;
        if self.generation.load(Ordering::SeqCst) != seen {
            return true;
        }
        if last.is_some_and(|at| at.elapsed() < self.min_refetch_interval) {
            tracing::debug!("unknown kid, JWKS refetch rate limited");
            return false;
        }
        *last = Some(Instant::now());
        match self.counted_fetch().await {
            Ok(keys) => {
                self.replace(keys);
                true
            }
            Err(e) => {
                tracing::warn!(error = %e, "JWKS refetch on unknown kid failed; keeping the last good keys");
                false
            }
        }
    }
}
