//! `idlink.v1.OrganizationService`.

use std::sync::Arc;

use idlink_proto::v1::{self as pb, organization_service_server::OrganizationService};
use tonic::{Request, Response, Status};

use super::{convert, idempotency::Requests, respond_once};
use crate::{clock::DynClock, credits::Credits, linking::Linker};

pub struct OrganizationApi {
    credits: Arc<Credits>,
    linker: Arc<Linker>,
    clock: DynClock,
    requests: Arc<Requests>,
}

impl OrganizationApi {
    pub fn new(credits: Arc<Credits>, linker: Arc<Linker>, clock: DynClock, requests: Arc<Requests>) -> Self {
        Self { credits, linker, clock, requests }
    }
}

#[tonic::async_trait]
impl OrganizationService for OrganizationApi {
    async fn upsert_organization(&self, request: Request<pb::UpsertOrganizationRequest>) -> Result<Response<pb::Organization>, Status> {
        respond_once(&self.requests, request, async |actor, r| {
            let saved = self.credits.upsert_organization(&actor, convert::organization(&r, self.clock.now())?).await?;
            Ok(convert::organization_answer(saved))
        })
        .await
    }

    async fn remove_work_user(&self, request: Request<pb::RemoveWorkUserRequest>) -> Result<Response<pb::RemoveWorkUserResponse>, Status> {
        respond_once(&self.requests, request, async |actor, r| {
            let user = convert::work_user(r.user.as_ref())?;
            let note = convert::optional_text("reason", Some(&r.reason), 256)?.unwrap_or_default();
            let removed = self.linker.remove_work_user(&actor, &user, note, self.clock.now()).await?;
            Ok(pb::RemoveWorkUserResponse { removed: convert::links(&removed, &actor.principal) })
        })
        .await
    }
}
