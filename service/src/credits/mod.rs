//! Certification credit and organisations as callers see them: authorization (the domain
//! table), then the store; every mutation and refusal audited. Knows nothing of gRPC. The
//! Learning feed's recording session is [`recording`], recalculation [`recalculation`].

mod recalculation;
mod recording;

use std::sync::Arc;

use chrono::{DateTime, Utc};

pub use recalculation::{MAX_NAMED_ORGANIZATIONS, RecalculationItem, RecalculationStream};
pub use recording::{RecordSummary, Recording};

use crate::{
    domain::{Catalog, Credit, Operation, Organization, TenantId},
    linking::{Actor, LinkingError, Result},
    store::DynStore,
};

pub struct Credits {
    store: DynStore,
    catalog: Arc<Catalog>,
    /// One full recalculation at a time on this replica (one peaks at hundreds of MiB).
    full_run: Arc<tokio::sync::Semaphore>,
    /// Organisations recalculated at once on this replica, by all calls together.
    workers: Arc<tokio::sync::Semaphore>,
    parallel: usize,
}

impl Credits {
    pub fn new(store: DynStore, catalog: Arc<Catalog>) -> Self {
        let parallel = std::thread::available_parallelism().map_or(2, usize::from);
        Self {
            store,
            catalog,
            full_run: Arc::new(tokio::sync::Semaphore::new(1)),
            workers: Arc::new(tokio::sync::Semaphore::new(parallel)),
            parallel,
        }
    }

    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// The catalog, for what outlives a call (a stream rendering its answers).
    pub fn shared_catalog(&self) -> Arc<Catalog> {
        self.catalog.clone()
    }

    fn authorize(&self, actor: &Actor, operation: Operation<'_>) -> Result<()> {
        Ok(actor.principal.authorize(operation)?)
    }

    pub async fn credit_of(&self, actor: &Actor, organization: &TenantId) -> Result<(Credit, Option<Organization>)> {
        self.authorize(actor, Operation::ReadCredit { organization })?;
        Ok((self.store.credit(organization).await?, self.store.organization(organization).await?))
    }

    pub async fn upsert_organization(&self, actor: &Actor, organization: Organization) -> Result<Organization> {
        let outcome = async {
            self.authorize(actor, Operation::UpsertOrganization)?;
            self.store.upsert_organization(&organization).await?;
            Ok::<_, LinkingError>(organization)
        }
        .await;
        match &outcome {
            Ok(o) => tracing::info!(target: "audit", action = "organization.upsert", outcome = "ok", organization = o.tenant.as_str(),
                partner_id = o.partner_id.as_str(), request_id = actor.request_id, "mutation"),
            Err(e) => tracing::info!(target: "audit", action = "organization.upsert", outcome = "refused", reason = %e,
                request_id = actor.request_id, "mutation refused"),
        }
        outcome
    }

    /// Background: certifications whose expiry passed stop counting.
    pub async fn expire(&self, now: DateTime<Utc>) -> Result<usize> {
        Ok(self.store.expire_certifications(now).await?)
    }
}
