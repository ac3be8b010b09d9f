//! `idlink.v1.CreditService`: the Learning feed in, credit out, recalculation streamed.

use std::sync::Arc;

use idlink_proto::v1::{self as pb, credit_service_server::CreditService};
use tonic::{Request, Response, Status, Streaming};

use super::{Streamed, convert, page_token::PageTokens, respond, status::ApiError, status::Locale, streamed};
use crate::{clock::DynClock, credits::Credits};

pub struct CreditApi {
    credits: Arc<Credits>,
    clock: DynClock,
    page_tokens: PageTokens,
}

impl CreditApi {
    pub fn new(credits: Arc<Credits>, clock: DynClock, page_tokens: PageTokens) -> Self {
        Self { credits, clock, page_tokens }
    }
}

#[tonic::async_trait]
impl CreditService for CreditApi {
    type RecalculateCreditsStream = Streamed<pb::RecalculateCreditsResponse>;

    async fn record_certifications(
        &self,
        request: Request<Streaming<pb::Certification>>,
    ) -> Result<Response<pb::RecordCertificationsResponse>, Status> {
        respond(request, async |actor, mut certifications| {
            let mut recording = self.credits.start_recording(&actor)?;
            while let Some(message) = certifications.message().await.map_err(|_| ApiError::MalformedStream)? {
                recording.add(convert::certification(self.credits.catalog(), &message), self.clock.now()).await?;
            }
            Ok(convert::record_summary(recording.finish(self.clock.now()).await?))
        })
        .await
    }

    async fn record_learning_profiles(
        &self,
        request: Request<Streaming<pb::LearningProfile>>,
    ) -> Result<Response<pb::RecordLearningProfilesResponse>, Status> {
        respond(request, async |actor, mut profiles| {
            let mut recording = self.credits.start_recording(&actor)?;
            while let Some(message) = profiles.message().await.map_err(|_| ApiError::MalformedStream)? {
                recording.add(convert::learning_profile(&message), self.clock.now()).await?;
            }
            Ok(convert::profiles_summary(recording.finish(self.clock.now()).await?))
        })
        .await
    }

    async fn get_my_certifications(
        &self,
        request: Request<pb::GetMyCertificationsRequest>,
    ) -> Result<Response<pb::MyCertifications>, Status> {
        respond(request, async |actor, r| {
            let mine = self.credits.my_achievements(&actor, convert::named_user(r.work_account.as_ref())?, self.clock.now()).await?;
            Ok(convert::my_certifications(self.credits.catalog(), &mine))
        })
        .await
    }

    async fn list_organization_people(
        &self,
        request: Request<pb::ListOrganizationPeopleRequest>,
    ) -> Result<Response<pb::ListOrganizationPeopleResponse>, Status> {
        respond(request, async |actor, r| {
            let (named, from, limit) = convert::people_request(&r, &self.page_tokens)?;
            let page = self.credits.people(&actor, &named, from, limit).await?;
            Ok(convert::people_page(self.credits.catalog(), &page, &named, &self.page_tokens))
        })
        .await
    }

    async fn get_organization_credit(
        &self,
        request: Request<pb::GetOrganizationCreditRequest>,
    ) -> Result<Response<pb::OrganizationCredit>, Status> {
        respond(request, async |actor, r| {
            let named = convert::organization_ref(&r.organization_id, &r.partner_id)?;
            let (credit, scope) = self.credits.credit_of(&actor, &named).await?;
            Ok(convert::organization_credit(self.credits.catalog(), &scope, &credit))
        })
        .await
    }

    async fn recalculate_credits(
        &self,
        request: Request<pb::RecalculateCreditsRequest>,
    ) -> Result<Response<Self::RecalculateCreditsStream>, Status> {
        let locale = Locale::from_metadata(request.metadata());
        respond(request, async |actor, r| {
            let recalculations = self.credits.recalculation(&actor, convert::tenants("organization_ids", &r.organization_ids)?)?;
            let catalog = self.credits.shared_catalog();
            Ok(streamed(recalculations, locale, move |item| convert::recalculation_item(&catalog, item)))
        })
        .await
    }
}
