//! `idlink.v1.LinkService`: parse, take the caller, call the linker, render.

use std::sync::Arc;

use idlink_proto::v1::{self as pb, link_service_server::LinkService};
use tonic::{Request, Response, Status};

use super::{Streamed, convert, idempotency::Requests, page_token::PageTokens, respond, respond_once, status::Locale, streamed};
use crate::{clock::DynClock, linking::Linker};

pub struct LinkApi {
    linker: Arc<Linker>,
    clock: DynClock,
    page_tokens: PageTokens,
    /// Flips to true when the server stops: watch streams end so shutdown can finish.
    stopping: tokio::sync::watch::Receiver<bool>,
    requests: Arc<Requests>,
    /// Each event's age when a change-feed stream delivers it.
    feed_lag: prometheus_client::metrics::histogram::Histogram,
}

impl LinkApi {
    pub fn new(
        linker: Arc<Linker>,
        clock: DynClock,
        page_tokens: PageTokens,
        stopping: tokio::sync::watch::Receiver<bool>,
        requests: Arc<Requests>,
        feed_lag: prometheus_client::metrics::histogram::Histogram,
    ) -> Self {
        Self { linker, clock, page_tokens, stopping, requests, feed_lag }
    }
}

#[tonic::async_trait]
impl LinkService for LinkApi {
    type WatchLinkEventsStream = Streamed<pb::LinkEvent>;

    async fn begin_link(&self, request: Request<pb::BeginLinkRequest>) -> Result<Response<pb::BeginLinkResponse>, Status> {
        respond_once(&self.requests, request, async |actor, r| {
            Ok(convert::begun(self.linker.begin(&actor, convert::begin_request(&r)?, self.clock.now()).await?))
        })
        .await
    }

    async fn complete_link(&self, request: Request<pb::CompleteLinkRequest>) -> Result<Response<pb::Link>, Status> {
        respond_once(&self.requests, request, async |actor, r| {
            let link = self.linker.complete(&actor, convert::complete_request(&r)?, self.clock.now()).await?;
            Ok(convert::link(&link, &actor.principal))
        })
        .await
    }

    async fn get_links(&self, request: Request<pb::GetLinksRequest>) -> Result<Response<pb::GetLinksResponse>, Status> {
        respond(request, async |actor, r| {
            let links = self.linker.links_of(&actor, convert::named_user(r.user.as_ref())?, self.clock.now()).await?;
            Ok(convert::links_of(&links, &actor.principal))
        })
        .await
    }

    async fn remove_link(&self, request: Request<pb::RemoveLinkRequest>) -> Result<Response<pb::Link>, Status> {
        respond_once(&self.requests, request, async |actor, r| {
            let tombstone = self.linker.remove(&actor, convert::remove_request(&r)?, self.clock.now()).await?;
            Ok(convert::link(&tombstone, &actor.principal))
        })
        .await
    }

    async fn list_links(&self, request: Request<pb::ListLinksRequest>) -> Result<Response<pb::ListLinksResponse>, Status> {
        respond(request, async |actor, r| {
            let (organization, query) = convert::list_request(&r, &self.page_tokens)?;
            let page = self.linker.list(&actor, &organization, &query).await?;
            Ok(convert::link_page(&page, &organization, &query, &self.page_tokens, &actor.principal))
        })
        .await
    }

    async fn resolve_personal_account(
        &self,
        request: Request<pb::ResolvePersonalAccountRequest>,
    ) -> Result<Response<pb::ResolvePersonalAccountResponse>, Status> {
        respond(request, async |actor, r| {
            let personal = convert::personal_account(r.personal_account.as_ref())?;
            let link = self.linker.resolve(&actor, convert::kind(r.kind)?, &personal).await?;
            Ok(convert::resolved(&link, &actor.principal))
        })
        .await
    }

    async fn watch_link_events(
        &self,
        request: Request<pb::WatchLinkEventsRequest>,
    ) -> Result<Response<Self::WatchLinkEventsStream>, Status> {
        let locale = Locale::from_metadata(request.metadata());
        respond(request, async |actor, r| {
            let events = self.linker.watch(&actor, r.after_cursor, self.stopping.clone()).await?;
            let (viewer, clock, lag) = (actor.principal, self.clock.clone(), self.feed_lag.clone());
            Ok(streamed(events, locale, move |event| {
                lag.observe((clock.now() - event.at).to_std().map_or(0.0, |age| age.as_secs_f64()));
                convert::event(&event, &viewer)
            }))
        })
        .await
    }
}
