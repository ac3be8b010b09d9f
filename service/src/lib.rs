//! idlinkd: links a partner employee's work account to their personal Microsoft account.
//! Data flows one way: `api` → `domain` → `store`; `oidc` talks to identity providers.

#![cfg_attr(
    test,
    allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        reason = "tests fail loudly"
    )
)]

pub mod domain;
pub mod store;
