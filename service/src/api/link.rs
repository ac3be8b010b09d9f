//! `idlink.v1.LinkService`: parse, take the caller, call the linker, render.

use std::sync::Arc;

use idlink_proto::v1::{self as pb, link_service_server::LinkService};
use tonic::{Request, Response, Status};

use super::{
    convert,
    idempotency::Requests,
    page_token::PageTokens,
    status::{ApiError, Locale, to_status},
};
use crate::{
    clock::DynClock,
    domain::{LinkMode, Principal},
    linking::{Actor, BeginRequest, CompleteRequest, Linker, RemoveRequest},
    oidc::AuthError,
    store::ListQuery,
};

pub const DEFAULT_PAGE_SIZE: usize = 50;
pub const MAX_PAGE_SIZE: usize = 200;

pub struct LinkApi {
    linker: Arc<Linker>,
    clock: DynClock,
    page_tokens: PageTokens,
    /// Flips to true when the server stops: watch streams end so shutdown can finish.
    stopping: tokio::sync::watch::Receiver<bool>,
    requests: Arc<Requests>,
}

impl LinkApi {
    pub fn new(
        linker: Arc<Linker>,
        clock: DynClock,
        page_tokens: PageTokens,
        stopping: tokio::sync::watch::Receiver<bool>,
        requests: Arc<Requests>,
    ) -> Self {
        Self { linker, clock, page_tokens, stopping, requests }
    }
}

pub(super) fn actor<T>(request: &Request<T>) -> Result<Actor, ApiError> {
    let principal = request.extensions().get::<Principal>().cloned().ok_or(ApiError::Auth(AuthError::MissingToken))?;
    let request_id = super::request_id(request.metadata().get("x-request-id").and_then(|v| v.to_str().ok()));
    Ok(Actor { principal, request_id, peer: request.remote_addr() })
}

/// Runs a handler body and turns its error into a localized Status.
async fn respond<T, R>(request: Request<T>, body: impl AsyncFnOnce(Actor, T) -> Result<R, ApiError>) -> Result<Response<R>, Status> {
    let locale = Locale::from_metadata(request.metadata());
    let outcome = match actor(&request) {
        Ok(actor) => body(actor, request.into_inner()).await,
        Err(e) => Err(e),
    };
    outcome.map(Response::new).map_err(|e| to_status(&e, locale))
}

/// How long a watcher waits for news before checking it is still connected.
const WATCH_POLL: std::time::Duration = std::time::Duration::from_secs(15);
const WATCH_BATCH: usize = 256;

/// Resolves when the server starts shutting down (the watch guard is not kept across awaits).
async fn until_stopping(stopping: &mut tokio::sync::watch::Receiver<bool>) {
    let _ = stopping.wait_for(|stop| *stop).await.map(|_| ());
}

pub type EventStream = std::pin::Pin<Box<dyn tokio_stream::Stream<Item = Result<pb::LinkEvent, Status>> + Send>>;

#[tonic::async_trait]
impl LinkService for LinkApi {
    type WatchLinkEventsStream = EventStream;

    async fn watch_link_events(&self, request: Request<pb::WatchLinkEventsRequest>) -> Result<Response<EventStream>, Status> {
        let locale = Locale::from_metadata(request.metadata());
        let actor = actor(&request).map_err(|e| to_status(&e, locale))?;
        let slot = self.linker.start_watch(&actor).map_err(|e| to_status(&e.into(), locale))?;
        let mut cursor = request.into_inner().after_cursor;
        // Fail fast on an expired cursor, before the stream starts.
        let first = self.linker.events_after(cursor, WATCH_BATCH).await.map_err(|e| to_status(&e.into(), locale))?;
        let (tx, rx) = tokio::sync::mpsc::channel(WATCH_BATCH);
        let linker = self.linker.clone();
        let mut stopping = self.stopping.clone();
        tokio::spawn(async move {
            let _slot = slot; // the caller's stream slot, until this stream ends
            let mut batch = first;
            loop {
                for event in &batch {
                    if tx.send(Ok(convert::event(event, &actor.principal))).await.is_err() {
                        return; // the watcher left
                    }
                    cursor = event.cursor;
                }
                if batch.is_empty() {
                    tokio::select! {
                        _ = tx.closed() => return,
                        _ = until_stopping(&mut stopping) => {
                            let _ = tx.send(Err(to_status(&ApiError::ShuttingDown, locale))).await;
                            return;
                        }
                        waited = linker.wait_for_events(cursor, WATCH_POLL) => if let Err(e) = waited {
                            let _ = tx.send(Err(to_status(&e.into(), locale))).await;
                            return;
                        },
                    }
                }
                batch = match linker.events_after(cursor, WATCH_BATCH).await {
                    Ok(batch) => batch,
                    Err(e) => {
                        let _ = tx.send(Err(to_status(&e.into(), locale))).await;
                        return;
                    }
                };
            }
        });
        Ok(Response::new(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))))
    }

    async fn begin_link(&self, request: Request<pb::BeginLinkRequest>) -> Result<Response<pb::BeginLinkResponse>, Status> {
        self.requests
            .run(request, async |request| {
                respond(request, async |actor, r| {
                    let request = BeginRequest {
                        kind: convert::kind(r.kind)?,
                        redirect_uri: convert::text("redirect_uri", &r.redirect_uri, 2048)?,
                        login_hint: convert::optional_text("login_hint", r.login_hint.as_deref(), 256)?,
                        mode: LinkMode { replace_existing: r.replace_existing, transfer: r.transfer },
                    };
                    let begun = self.linker.begin(&actor, request, self.clock.now()).await?;
                    Ok(pb::BeginLinkResponse {
                        authorization_url: begun.authorization_url,
                        state: begun.state,
                        expires_at: Some(convert::timestamp(begun.expires_at)),
                    })
                })
                .await
            })
            .await
    }

    async fn complete_link(&self, request: Request<pb::CompleteLinkRequest>) -> Result<Response<pb::Link>, Status> {
        self.requests
            .run(request, async |request| {
                respond(request, async |actor, r| {
                    let error = convert::optional_text("error", r.error.as_deref(), 256)?;
                    let request = CompleteRequest {
                        state: convert::text("state", &r.state, 512)?,
                        code: if error.is_some() { "" } else { convert::text("code", &r.code, 4096)? },
                        iss: convert::optional_text("iss", r.iss.as_deref(), 2048)?,
                        error,
                        redirect_uri: convert::optional_text("redirect_uri", r.redirect_uri.as_deref(), 2048)?,
                    };
                    let link = self.linker.complete(&actor, request, self.clock.now()).await?;
                    Ok(convert::link(&link, &actor.principal))
                })
                .await
            })
            .await
    }

    async fn get_links(&self, request: Request<pb::GetLinksRequest>) -> Result<Response<pb::GetLinksResponse>, Status> {
        respond(request, async |actor, r| {
            let links = self.linker.links_of(&actor, convert::named_user(r.user.as_ref())?).await?;
            Ok(pb::GetLinksResponse { links: links.iter().map(|l| convert::link(l, &actor.principal)).collect() })
        })
        .await
    }

    async fn remove_link(&self, request: Request<pb::RemoveLinkRequest>) -> Result<Response<pb::Link>, Status> {
        self.requests
            .run(request, async |request| {
                respond(request, async |actor, r| {
                    let request = RemoveRequest {
                        kind: convert::kind(r.kind)?,
                        named: convert::named_user(r.user.as_ref())?,
                        reason: convert::optional_text("reason", Some(r.reason.as_str()), 200)?,
                        etag: convert::optional_text("etag", Some(r.etag.as_str()), 64)?,
                    };
                    let tombstone = self.linker.remove(&actor, request, self.clock.now()).await?;
                    Ok(convert::link(&tombstone, &actor.principal))
                })
                .await
            })
            .await
    }

    async fn list_links(&self, request: Request<pb::ListLinksRequest>) -> Result<Response<pb::ListLinksResponse>, Status> {
        respond(request, async |actor, r| {
            let organization = convert::tenant("organization_id", &r.organization_id)?;
            let kind = if r.kind == pb::LinkKind::Unspecified as i32 { None } else { Some(convert::kind(r.kind)?) };
            let limit = match r.page_size {
                0 => DEFAULT_PAGE_SIZE,
                n if n < 0 => return Err(ApiError::InvalidArgument { field: "page_size", why: "must not be negative" }),
                n => usize::try_from(n).unwrap_or(MAX_PAGE_SIZE).min(MAX_PAGE_SIZE),
            };
            let after = match r.page_token.as_str() {
                "" => None,
                token => Some(self.page_tokens.open(token, &organization, kind, r.include_removed)?),
            };
            let query = ListQuery { kind, include_removed: r.include_removed, after, limit };
            let page = self.linker.list(&actor, &organization, &query).await?;
            Ok(pb::ListLinksResponse {
                links: page.links.iter().map(|l| convert::link(l, &actor.principal)).collect(),
                next_page_token: page.next.map(|n| self.page_tokens.seal(&organization, kind, r.include_removed, &n)).unwrap_or_default(),
            })
        })
        .await
    }

    async fn resolve_personal_account(
        &self,
        request: Request<pb::ResolvePersonalAccountRequest>,
    ) -> Result<Response<pb::ResolvePersonalAccountResponse>, Status> {
        respond(request, async |actor, r| {
            let personal =
                r.personal_account.as_ref().ok_or(ApiError::InvalidArgument { field: "personal_account", why: "is required" })?;
            let personal = crate::domain::AccountKey::parse(&personal.tenant_id, &personal.object_id)?;
            let link = self.linker.resolve(&actor, convert::kind(r.kind)?, &personal).await?;
            let rendered = convert::link(&link, &actor.principal);
            Ok(pb::ResolvePersonalAccountResponse {
                work_user: rendered.work_user,
                organization_id: link.work.tenant.as_str().to_owned(),
                link_id: link.id.as_str().to_owned(),
            })
        })
        .await
    }
}
