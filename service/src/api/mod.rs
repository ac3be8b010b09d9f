//! gRPC: one file per proto service, [`status`] for errors, [`auth`] for callers. Every
//! handler has one shape: [`respond`] (or [`respond_once`] for the mutating RPCs) takes the
//! caller from the request, the body parses with [`convert`], calls the orchestration
//! (`linking`, `credits`), and renders with [`convert`]; any error becomes a localized Status.

pub mod auth;
mod convert;
pub mod credit;
pub mod detached;
pub mod idempotency;
pub mod link;
pub mod messages;
pub mod organization;
pub mod page_token;
pub mod refusals;
pub mod status;

use std::pin::Pin;

use futures_util::{Stream, StreamExt};
use tonic::{Request, Response, Status};

use crate::{domain::Principal, linking::Actor, oidc::AuthError};
use idempotency::{Idempotent, Requests};
use status::{ApiError, Locale, to_status};

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

/// The caller (authenticated by the auth layer) and the request's audit context.
fn actor<T>(request: &Request<T>) -> Result<Actor, ApiError> {
    let principal = request.extensions().get::<Principal>().cloned().ok_or(ApiError::Auth(AuthError::MissingToken))?;
    let request_id = request_id(request.metadata().get("x-request-id").and_then(|v| v.to_str().ok()));
    Ok(Actor { principal, request_id, peer: request.remote_addr() })
}

/// Runs a handler body with its caller and message, and turns its error into a Status in the
/// caller's language.
async fn respond<T, R>(request: Request<T>, body: impl AsyncFnOnce(Actor, T) -> Result<R, ApiError>) -> Result<Response<R>, Status> {
    let locale = Locale::from_metadata(request.metadata());
    let outcome = match actor(&request) {
        Ok(actor) => body(actor, request.into_inner()).await,
        Err(e) => Err(e),
    };
    outcome.map(Response::new).map_err(|e| to_status(&e, locale))
}

/// [`respond`] for a mutating RPC: a retry with the same `request_id` gets the first answer.
async fn respond_once<T: Idempotent, R: prost::Message + Default>(
    requests: &Requests,
    request: Request<T>,
    body: impl AsyncFnOnce(Actor, T) -> Result<R, ApiError>,
) -> Result<Response<R>, Status> {
    requests.run(request, async |request| respond(request, body).await).await
}

pub type Streamed<U> = Pin<Box<dyn Stream<Item = Result<U, Status>> + Send>>;

/// A stream of the orchestration's answers, rendered, its errors localized.
fn streamed<T, U, E: Into<ApiError>>(
    answers: impl Stream<Item = Result<T, E>> + Send + 'static,
    locale: Locale,
    mut render: impl FnMut(T) -> U + Send + 'static,
) -> Streamed<U> {
    Box::pin(answers.map(move |answer| answer.map(&mut render).map_err(|e| to_status(&e.into(), locale))))
}
