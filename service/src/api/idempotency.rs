//! `request_id` on every mutating RPC: a retry with the same id and the same request gets
//! the first answer, even when retries race (the first reserves the key; the others wait
//! for its answer). A different request under a used id is INVALID_ARGUMENT. Transient
//! failures are not remembered, so a retry can still succeed.

use std::time::Duration;

use idlink_proto::v1 as pb;
use prost::Message;
use sha2::{Digest, Sha256};
use tonic::{Code, Request, Response, Status};

use super::status::{ApiError, Locale, to_status};
use crate::{
    clock::DynClock,
    domain::{Principal, hex},
    store::{DynStore, Reservation, StoredOutcome},
};

/// How long an answer is remembered.
pub const RETENTION: chrono::Duration = chrono::Duration::hours(24);
/// A reservation older than this is taken over: its owner died.
const ABANDONED_AFTER: chrono::Duration = chrono::Duration::seconds(60);
const WAIT_FOR_FIRST: Duration = Duration::from_secs(10);

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
    pb::UpsertOrganizationRequest => "UpsertOrganization"
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
}

impl Requests {
    pub fn new(store: DynStore, clock: DynClock) -> Self {
        Self { store, clock }
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
        let refuse = |why| to_status(&ApiError::InvalidArgument { field: "request_id", why }, locale);
        if id.len() > 128 || !id.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(refuse("must be at most 128 printable characters"));
        }
        // Keyed by caller, so one caller's ids never answer another's requests.
        let key = format!("{}\0{}\0{id}", Req::RPC, who(request.extensions().get::<Principal>()));
        let mut content = request.get_ref().clone();
        content.clear_request_id();
        let fingerprint = hex(&Sha256::digest(content.encode_to_vec()));
        let give_up = tokio::time::Instant::now() + WAIT_FOR_FIRST;
        loop {
            let now = self.clock.now();
            match self.store.reserve_request(&key, &fingerprint, now, now - ABANDONED_AFTER).await {
                Ok(Reservation::Reserved) => break,
                Ok(Reservation::Done(outcome)) => return replay(outcome),
                Ok(Reservation::Mismatch) => return Err(refuse("was already used for a different request")),
                Ok(Reservation::InFlight) if tokio::time::Instant::now() < give_up => tokio::time::sleep(Duration::from_millis(20)).await,
                Ok(Reservation::InFlight) => {
                    return Err(Status::unavailable("the first attempt with this request_id is still running; retry"));
                }
                Err(e) => return Err(to_status(&ApiError::Linking(e.into()), locale)),
            }
        }
        let result = handle(request).await;
        let outcome = match &result {
            Ok(response) => Some(StoredOutcome { code: 0, message: String::new(), body: response.get_ref().encode_to_vec() }),
            Err(status) if definitive(status.code()) => {
                Some(StoredOutcome { code: status.code() as i32, message: status.message().to_owned(), body: status.details().to_vec() })
            }
            Err(_) => None,
        };
        if let Err(e) = self.store.finish_request(&key, outcome).await {
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

fn replay<Resp: Message + Default>(outcome: StoredOutcome) -> Result<Response<Resp>, Status> {
    if outcome.code == 0 {
        Resp::decode(outcome.body.as_slice()).map(Response::new).map_err(|_| Status::internal("a remembered answer is unreadable"))
    } else {
        Err(Status::with_details(Code::from(outcome.code), outcome.message, outcome.body.into()))
    }
}
