//! gRPC: one file per proto service, [`status`] for errors, [`auth`] for callers.

pub mod auth;
mod convert;
pub mod credit;
pub mod idempotency;
pub mod link;
pub mod organization;
pub mod page_token;
pub mod status;
