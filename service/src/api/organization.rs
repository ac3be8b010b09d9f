//! `idlink.v1.OrganizationService`.

use std::sync::Arc;

use idlink_proto::v1::{self as pb, organization_service_server::OrganizationService};
use tonic::{Request, Response, Status};

use super::{
    convert,
    idempotency::Requests,
    link::actor,
    status::{ApiError, Locale, to_status},
};
use crate::{
    clock::DynClock,
    credits::Credits,
    domain::{Organization, PartnerId},
};

pub struct OrganizationApi {
    credits: Arc<Credits>,
    clock: DynClock,
    requests: Arc<Requests>,
}

impl OrganizationApi {
    pub fn new(credits: Arc<Credits>, clock: DynClock, requests: Arc<Requests>) -> Self {
        Self { credits, clock, requests }
    }
}

#[tonic::async_trait]
impl OrganizationService for OrganizationApi {
    async fn upsert_organization(&self, request: Request<pb::UpsertOrganizationRequest>) -> Result<Response<pb::Organization>, Status> {
        self.requests.run(request, async |request| self.upsert(request).await).await
    }
}

impl OrganizationApi {
    async fn upsert(&self, request: Request<pb::UpsertOrganizationRequest>) -> Result<Response<pb::Organization>, Status> {
        let locale = Locale::from_metadata(request.metadata());
        let outcome = async {
            let actor = actor(&request)?;
            let r = request.get_ref();
            let organization = Organization {
                tenant: convert::tenant("tenant_id", &r.tenant_id)?,
                partner_id: PartnerId::parse(&r.partner_id)?,
                name: convert::text("name", &r.name, 256)?.to_owned(),
                updated_at: self.clock.now(),
            };
            let saved = self.credits.upsert_organization(&actor, organization).await?;
            Ok::<_, ApiError>(pb::Organization {
                organization_id: saved.tenant.as_str().to_owned(),
                partner_id: saved.partner_id.as_str().to_owned(),
                name: saved.name,
                updated_at: Some(convert::timestamp(saved.updated_at)),
            })
        }
        .await;
        outcome.map(Response::new).map_err(|e| to_status(&e, locale))
    }
}
