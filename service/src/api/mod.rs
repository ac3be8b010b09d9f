//! gRPC: one file per proto service, [`status`] for errors, [`auth`] for callers.

pub mod auth;
mod convert;
pub mod credit;
pub mod idempotency;
pub mod link;
pub mod messages;
pub mod organization;
pub mod page_token;
pub mod refusals;
pub mod status;

/// The longest `x-request-id` (and `request_id`) taken from a caller.
pub const MAX_REQUEST_ID: usize = 128;

/// The request id an audit line carries: the caller's `x-request-id` when it is sane (at most
/// [`MAX_REQUEST_ID`] printable characters), else one of ours, so lines correlate and no caller
/// can write arbitrary text, or kilobytes of it, into the log.
pub fn request_id(sent: Option<&str>) -> String {
    sent.filter(|v| !v.is_empty() && v.len() <= MAX_REQUEST_ID && v.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_owned)
        .unwrap_or_else(|| crate::domain::LinkId::random().as_str().to_owned())
}

/// An RPC path as logged: the method's path when it looks like one, else a placeholder (the
/// path is the caller's to choose, and unknown paths are refused like any other).
pub fn rpc_name(path: &str) -> &str {
    let sane =
        path.len() <= MAX_REQUEST_ID && path.starts_with('/') && path.bytes().all(|b| b.is_ascii_alphanumeric() || b"/._".contains(&b));
    if sane { path } else { "(unrecognised path)" }
}
