//! `idlink.v1.CreditService`: the Learning feed in, credit out, recalculation streamed.

use std::sync::Arc;

use idlink_proto::v1::{self as pb, credit_service_server::CreditService};
use tonic::{Request, Response, Status, Streaming};

use super::{
    convert,
    link::actor,
    status::{ApiError, Locale, to_status},
};
use crate::{
    clock::DynClock,
    credits::{Credits, MAX_NAMED_ORGANIZATIONS},
    domain::{Certification, Operation, TenantId},
    store::Recorded,
};

/// Certifications written per transaction (and per flush).
const RECORD_BATCH: usize = 512;
const MAX_REJECTIONS_LISTED: usize = 1000;

pub struct CreditApi {
    credits: Arc<Credits>,
    clock: DynClock,
}

impl CreditApi {
    pub fn new(credits: Arc<Credits>, clock: DynClock) -> Self {
        Self { credits, clock }
    }

    async fn flush(&self, batch: &mut Vec<Certification>, response: &mut pb::RecordCertificationsResponse) -> Result<(), ApiError> {
        if batch.is_empty() {
            return Ok(());
        }
        for outcome in self.credits.record(batch, self.clock.now()).await? {
            match outcome {
                Recorded::Accepted => response.accepted += 1,
                Recorded::Duplicate => response.duplicates += 1,
            }
        }
        batch.clear();
        Ok(())
    }
}

pub type RecalculationStream = std::pin::Pin<Box<dyn tokio_stream::Stream<Item = Result<pb::RecalculateCreditsResponse, Status>> + Send>>;

#[tonic::async_trait]
impl CreditService for CreditApi {
    async fn record_certifications(
        &self,
        request: Request<Streaming<pb::Certification>>,
    ) -> Result<Response<pb::RecordCertificationsResponse>, Status> {
        let locale = Locale::from_metadata(request.metadata());
        let fail = |e: ApiError| to_status(&e, locale);
        let actor = actor(&request).map_err(fail)?;
        self.credits.authorize(&actor, Operation::RecordCertifications).map_err(|e| fail(e.into()))?;
        let mut stream = request.into_inner();
        let mut response = pb::RecordCertificationsResponse::default();
        let mut batch = Vec::with_capacity(RECORD_BATCH);
        let mut index = 0u64;
        while let Some(message) = stream.message().await? {
            match convert::certification(self.credits.catalog(), &message) {
                Ok(cert) => batch.push(cert),
                Err(rejected) => {
                    response.rejected += 1;
                    if response.rejections.len() < MAX_REJECTIONS_LISTED {
                        let reason = super::status::reason(&rejected.clone().into()).to_owned();
                        response.rejections.push(pb::Rejection { index, reason, detail: rejected.to_string() });
                    }
                }
            }
            index += 1;
            if batch.len() == RECORD_BATCH {
                self.flush(&mut batch, &mut response).await.map_err(fail)?;
            }
        }
        self.flush(&mut batch, &mut response).await.map_err(fail)?;
        tracing::info!(target: "audit", action = "certifications.record", outcome = "ok", request_id = actor.request_id,
            accepted = response.accepted, duplicates = response.duplicates, rejected = response.rejected, "mutation");
        Ok(Response::new(response))
    }

    async fn get_organization_credit(
        &self,
        request: Request<pb::GetOrganizationCreditRequest>,
    ) -> Result<Response<pb::OrganizationCredit>, Status> {
        let locale = Locale::from_metadata(request.metadata());
        let outcome = async {
            let actor = actor(&request)?;
            let organization = convert::tenant("organization_id", &request.get_ref().organization_id)?;
            let (credit, org) = self.credits.credit_of(&actor, &organization).await?;
            Ok::<_, ApiError>(convert::credit(self.credits.catalog(), &organization, &credit, org.as_ref()))
        }
        .await;
        outcome.map(Response::new).map_err(|e| to_status(&e, locale))
    }

    type RecalculateCreditsStream = RecalculationStream;

    async fn recalculate_credits(&self, request: Request<pb::RecalculateCreditsRequest>) -> Result<Response<RecalculationStream>, Status> {
        let locale = Locale::from_metadata(request.metadata());
        let fail = move |e: ApiError| to_status(&e, locale);
        let actor = actor(&request).map_err(fail)?;
        self.credits.authorize(&actor, Operation::RecalculateCredits).map_err(|e| fail(e.into()))?;
        let ids = request.into_inner().organization_ids;
        if ids.len() > MAX_NAMED_ORGANIZATIONS {
            return Err(fail(ApiError::InvalidArgument { field: "organization_ids", why: "names more than 1000 organisations" }));
        }
        let named = ids.iter().map(|id| convert::tenant("organization_ids", id)).collect::<Result<Vec<TenantId>, _>>().map_err(fail)?;
        // Refused here (a full run already going), so the caller learns it before the stream.
        let mut recalculations = if named.is_empty() {
            self.credits.recalculate_all(&actor).map_err(|e| fail(e.into()))?
        } else {
            self.credits.recalculate_named(named)
        };
        // A small channel: the job reads as fast as the client takes results.
        let (tx, rx) = tokio::sync::mpsc::channel(8);
        let credits = self.credits.clone();
        tokio::spawn(async move {
            let mut summary = pb::RecalculationSummary::default();
            let result: Result<(), ApiError> = async {
                // Answered in order; when the caller goes, the rest stop.
                while let Some(outcome) = recalculations.next().await {
                    let (tenant, outcome) = outcome?;
                    let org = credits.organization(&tenant).await?;
                    let drift = convert::drift(credits.catalog(), &outcome.stored, &outcome.recomputed);
                    summary.organizations += 1;
                    summary.drifted += u64::from(!drift.is_empty());
                    let item = pb::OrganizationRecalculation {
                        credit: Some(convert::credit(credits.catalog(), &tenant, &outcome.recomputed, org.as_ref())),
                        drift,
                    };
                    let message = pb::RecalculateCreditsResponse { item: Some(pb::recalculate_credits_response::Item::Organization(item)) };
                    if tx.send(Ok(message)).await.is_err() {
                        return Ok(());
                    }
                }
                Ok(())
            }
            .await;
            let last = match result {
                Ok(()) => {
                    tracing::info!(target: "audit", action = "credit.recalculate", organizations = summary.organizations, drifted = summary.drifted, "recalculated");
                    Ok(pb::RecalculateCreditsResponse { item: Some(pb::recalculate_credits_response::Item::Summary(summary)) })
                }
                Err(e) => Err(to_status(&e, locale)),
            };
            let _ = tx.send(last).await;
        });
        Ok(Response::new(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))))
    }
}
