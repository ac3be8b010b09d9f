//! `request_id` on every mutating RPC: a retry with the same id and the same request gets
//! the first answer, even when retries race (the first reserves the key; the others wait
//! for its answer). A different request under a used id is INVALID_ARGUMENT. Transient
//! failures are not remembered, so a retry can still succeed.
//!
//! Remembering costs the store, so each caller may have at most
//! `limits.request_ids_per_caller_per_day` ids counted a day (RESOURCE_EXHAUSTED past it).
//! Neither the id nor the answer is at rest: records are keyed by a hash of (RPC, caller, id)
//! and answers sealed with a key derived from them ([`crate::sealing`]) — a remembered
//! BeginLink answer holds a flow's `state`.

use std::time::Duration;

use idlink_proto::v1 as pb;
use prost::Message;
use sha2::{Digest, Sha256};
use tonic::{Code, Request, Response, Status};

use super::status::{self, ApiError, Locale, to_status};
use crate::{
    clock::DynClock,
    domain::{Principal, hex},
    sealing,
    store::{DynStore, RequestQuota, Reservation, StoredOutcome},
};

/// How long an answer is remembered.
pub const RETENTION: chrono::Duration = chrono::Duration::hours(24);
/// A reservation older than this is taken over: its owner died.
const ABANDONED_AFTER: chrono::Duration = chrono::Duration::seconds(60);
const WAIT_FOR_FIRST: Duration = Duration::from_secs(10);
const ANSWER_SEAL: &str = "idempotent answer";

pub trait Idempotent: Message + Clone + Default {
    const RPC: &'static str;
    fn request_id(&self) -> &str;
    fn clear_request_id(&mut self);
}

macro_rules! idempotent {
    ($($message:ty => $rpc:literal),*) => {$(
        impl Idempotent for $message {
            const RPC: &'static str = $rpc;
            fn request_id(&self) -> &str {
                &self.request_id
            }
            fn clear_request_id(&mut self) {
                self.request_id.clear();
            }
        }
    )*};
}

idempotent!(
    pb::BeginLinkRequest => "BeginLink",
    pb::CompleteLinkRequest => "CompleteLink",
    pb::RemoveLinkRequest => "RemoveLink",
    pb::UpsertOrganizationRequest => "UpsertOrganization",
    pb::RemoveWorkUserRequest => "RemoveWorkUser"
);

/// Outcomes worth remembering: answers and refusals a retry would get again anyway.
fn definitive(code: Code) -> bool {
    !matches!(
        code,
        Code::Unavailable
            | Code::Internal
            | Code::DeadlineExceeded
            | Code::ResourceExhausted
            | Code::Cancelled
            | Code::Unknown
            | Code::Aborted
    )
}

fn who(principal: Option<&Principal>) -> String {
    match principal {
        Some(Principal::User { key, .. }) => format!("user:{key}"),
        Some(Principal::App { tenant, app_id, .. }) => format!("app:{app_id}@{}", tenant.as_str()),
        None => "anonymous".to_owned(),
    }
}

pub struct Requests {
    store: DynStore,
    clock: DynClock,
    per_caller_per_day: u32,
}

impl Requests {
    pub fn new(store: DynStore, clock: DynClock, per_caller_per_day: u32) -> Self {
        Self { store, clock, per_caller_per_day }
    }

    pub async fn run<Req: Idempotent, Resp: Message + Default>(
        &self,
        request: Request<Req>,
        handle: impl AsyncFnOnce(Request<Req>) -> Result<Response<Resp>, Status>,
    ) -> Result<Response<Resp>, Status> {
        let id = request.get_ref().request_id().to_owned();
        if id.is_empty() {
            return handle(request).await;
        }
        let locale = Locale::from_metadata(request.metadata());
        let refuse = |e: ApiError| to_status(&e, locale);
        if id.len() > super::MAX_REQUEST_ID || !id.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(refuse(ApiError::InvalidArgument { field: "request_id", why: "must be at most 128 printable characters" }));
        }
        // Keyed by caller, so one caller's ids never answer another's requests.
        let caller = who(request.extensions().get::<Principal>());
        let material = format!("{}\0{caller}\0{id}", Req::RPC);
        let key = hex(&Sha256::digest(material.as_bytes()));
        let mut content = request.get_ref().clone();
        content.clear_request_id();
        let fingerprint = hex(&Sha256::digest(content.encode_to_vec()));
        let quota = RequestQuota { caller: &caller, per_day: self.per_caller_per_day };
        let give_up = tokio::time::Instant::now() + WAIT_FOR_FIRST;
        loop {
            let now = self.clock.now();
            match self.store.reserve_request(&key, &fingerprint, quota, now, now - ABANDONED_AFTER).await {
                Ok(Reservation::Reserved) => break,
                Ok(Reservation::Done(outcome)) => return replay(outcome, material.as_bytes(), locale),
                Ok(Reservation::Mismatch) => {
                    return Err(refuse(ApiError::InvalidArgument { field: "request_id", why: "was already used for a different request" }));
                }
                Ok(Reservation::OverQuota { retry_after }) => {
                    let peer = request.remote_addr().map(|p| p.to_string()).unwrap_or_default();
                    let request_id = super::request_id(request.metadata().get("x-request-id").and_then(|v| v.to_str().ok()));
                    tracing::info!(target: "audit", action = Req::RPC, outcome = "refused", reason = "REQUEST_IDS_EXHAUSTED", who = caller,
                        per_day = self.per_caller_per_day, request_id, peer, "mutation refused");
                    return Err(refuse(ApiError::RequestIdsExhausted { retry_after_seconds: retry_after.as_secs().max(1) }));
                }
                Ok(Reservation::InFlight) if tokio::time::Instant::now() < give_up => tokio::time::sleep(Duration::from_millis(20)).await,
                Ok(Reservation::InFlight) => return Err(refuse(ApiError::RequestInFlight)),
                Err(e) => return Err(refuse(ApiError::Linking(e.into()))),
            }
        }
        let result = handle(request).await;
        let outcome = match &result {
            Ok(response) => Some((0, String::new(), response.get_ref().encode_to_vec())),
            Err(status) if definitive(status.code()) => {
                Some((status.code() as i32, status.message().to_owned(), status.details().to_vec()))
            }
            Err(_) => None,
        };
        let sealed = outcome
            .map(|(code, message, body)| {
                sealing::seal(material.as_bytes(), ANSWER_SEAL, &body).map(|body| StoredOutcome { code, message, body })
            })
            .transpose();
        let finished = match sealed {
            Ok(outcome) => self.store.finish_request(&key, &caller, outcome).await.map_err(|e| e.to_string()),
            Err(e) => self.store.finish_request(&key, &caller, None).await.map_err(|_| e.to_string()),
        };
        if let Err(e) = finished {
            tracing::warn!(error = %e, rpc = Req::RPC, "could not record an idempotent answer");
        }
        result
    }

    /// Forgets answers older than [`RETENTION`] (run periodically).
    pub async fn purge(&self) {
        if let Err(e) = self.store.purge_requests_before(self.clock.now() - RETENTION).await {
            tracing::warn!(error = %e, "idempotency purge failed");
        }
    }
}

fn replay<Resp: Message + Default>(outcome: StoredOutcome, material: &[u8], locale: Locale) -> Result<Response<Resp>, Status> {
    let unreadable = |_| to_status(&ApiError::StoredAnswerUnreadable, locale);
    let body = sealing::open(material, ANSWER_SEAL, &outcome.body).map_err(unreadable)?;
    if outcome.code == 0 {
        Resp::decode(body.as_slice()).map(Response::new).map_err(|_| to_status(&ApiError::StoredAnswerUnreadable, locale))
    } else {
        Err(status::replayed(outcome.code, outcome.message, body))
    }
}
