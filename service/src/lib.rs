//! idlinkd: links a partner employee's work account to their personal Microsoft account.
//! Data flows one way: `api` → `linking` → `domain` / `store`; `oidc` talks to identity
//! providers.

#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "tests fail loudly"))]

pub mod api;
pub mod app;
pub mod clock;
pub mod config;
pub mod credits;
pub mod dev;
pub mod domain;
pub mod limits;
pub mod linking;
pub mod metrics;
pub mod oidc;
pub mod sealing;
pub mod store;
pub mod telemetry;
#[cfg(any(test, feature = "test-support"))]
pub mod test_support;
