//! `idlink.v1.LinkService`: parse, take the caller, call the linker, render.

use std::sync::Arc;

use idlink_proto::v1::{self as pb, link_service_server::LinkService};
use tonic::{Request, Response, Status};

use super::{
    convert,
    status::{ApiError, Locale, to_status},
};
use crate::{
    clock::DynClock,
    domain::{DomainError, LinkMode},
    linking::{Actor, BeginRequest, CompleteRequest, Linker},
    oidc::{AuthError, Caller},
};

pub struct LinkApi {
    linker: Arc<Linker>,
    clock: DynClock,
}

impl LinkApi {
    pub fn new(linker: Arc<Linker>, clock: DynClock) -> Self {
        Self { linker, clock }
    }
}

fn actor<T>(request: &Request<T>) -> Result<Actor, ApiError> {
    match request.extensions().get::<Caller>() {
        Some(Caller::User { key, upn, .. }) => Ok(Actor { key: key.clone(), upn: upn.clone() }),
        Some(Caller::App { .. }) => Err(ApiError::CallerNotAUser),
        None => Err(ApiError::Auth(AuthError::MissingToken)),
    }
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

#[tonic::async_trait]
impl LinkService for LinkApi {
    async fn begin_link(&self, request: Request<pb::BeginLinkRequest>) -> Result<Response<pb::BeginLinkResponse>, Status> {
        respond(request, async |actor, r| {
            let begun = self
                .linker
                .begin(
                    &actor,
                    BeginRequest {
                        kind: convert::kind(r.kind)?,
                        redirect_uri: convert::text("redirect_uri", &r.redirect_uri, 2048)?,
                        login_hint: convert::optional_text("login_hint", r.login_hint.as_deref(), 256)?,
                        mode: LinkMode { replace_existing: r.replace_existing, transfer: r.transfer },
                    },
                    self.clock.now(),
                )
                .await?;
            Ok(pb::BeginLinkResponse {
                authorization_url: begun.authorization_url,
                state: begun.state,
                expires_at: Some(convert::timestamp(begun.expires_at)),
            })
        })
        .await
    }

    async fn complete_link(&self, request: Request<pb::CompleteLinkRequest>) -> Result<Response<pb::Link>, Status> {
        respond(request, async |actor, r| {
            let error = convert::optional_text("error", r.error.as_deref(), 256)?;
            let code = if error.is_some() { "" } else { convert::text("code", &r.code, 4096)? };
            let link = self
                .linker
                .complete(
                    &actor,
                    CompleteRequest {
                        state: convert::text("state", &r.state, 512)?,
                        code,
                        iss: convert::optional_text("iss", r.iss.as_deref(), 2048)?,
                        error,
                        redirect_uri: convert::optional_text("redirect_uri", r.redirect_uri.as_deref(), 2048)?,
                    },
                    self.clock.now(),
                )
                .await?;
            Ok(convert::link(&link, &actor.key))
        })
        .await
    }

    async fn get_links(&self, request: Request<pb::GetLinksRequest>) -> Result<Response<pb::GetLinksResponse>, Status> {
        respond(request, async |actor, r| {
            let user = convert::subject_user(r.user.as_ref(), &actor.key)?;
            if user != actor.key {
                return Err(DomainError::NotYourLink.into());
            }
            let links = self.linker.links_of(&user).await?;
            Ok(pb::GetLinksResponse { links: links.iter().map(|l| convert::link(l, &actor.key)).collect() })
        })
        .await
    }

    async fn remove_link(&self, request: Request<pb::RemoveLinkRequest>) -> Result<Response<pb::Link>, Status> {
        respond(request, async |actor, r| {
            let owner = convert::subject_user(r.user.as_ref(), &actor.key)?;
            if owner != actor.key {
                return Err(DomainError::NotYourLink.into());
            }
            let reason = convert::optional_text("reason", Some(r.reason.as_str()), 200)?.unwrap_or("user_request");
            let tombstone = self.linker.remove(&actor, convert::kind(r.kind)?, &owner, reason, self.clock.now()).await?;
            Ok(convert::link(&tombstone, &actor.key))
        })
        .await
    }
}
