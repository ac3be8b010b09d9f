//! Certification credit and organisations as callers see them: authorization (the domain
//! table), then the store. Knows nothing of gRPC.

use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::{
    domain::{Catalog, Certification, Credit, Operation, Organization, TenantId},
    linking::{Actor, LinkingError, Result},
    store::{DynStore, Recalculation, Recorded, StoreError},
};

pub struct Credits {
    store: DynStore,
    catalog: Arc<Catalog>,
}

impl Credits {
    pub fn new(store: DynStore, catalog: Arc<Catalog>) -> Self {
        Self { store, catalog }
    }

    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    pub fn authorize(&self, actor: &Actor, operation: Operation<'_>) -> Result<()> {
        Ok(actor.principal.authorize(operation)?)
    }

    /// One batch of the Learning feed (the caller was authorized when the stream opened).
    pub async fn record(&self, batch: &[Certification], now: DateTime<Utc>) -> Result<Vec<Recorded>> {
        Ok(self.store.record_certifications(batch, now).await?)
    }

    pub async fn credit_of(&self, actor: &Actor, organization: &TenantId) -> Result<(Credit, Option<Organization>)> {
        self.authorize(actor, Operation::ReadCredit { organization })?;
        Ok((self.store.credit(organization).await?, self.store.organization(organization).await?))
    }

    pub async fn organization(&self, organization: &TenantId) -> Result<Option<Organization>> {
        Ok(self.store.organization(organization).await?)
    }

    /// Starts recalculating every organisation of `page`, as many at a time as there are
    /// cores, each on its own task: sled's reads are synchronous, so one task would use one
    /// core. [`Recalculating::next`] answers in `page` order; dropping it stops the rest.
    pub fn recalculate_page(self: &Arc<Self>, page: &[TenantId]) -> Recalculating {
        let parallel = std::thread::available_parallelism().map_or(2, usize::from);
        let permits = Arc::new(tokio::sync::Semaphore::new(parallel));
        let running = page
            .iter()
            .map(|tenant| {
                let (credits, tenant, permits) = (self.clone(), tenant.clone(), permits.clone());
                tokio::spawn(async move {
                    let _permit = permits.acquire_owned().await.map_err(|_| StoreError::Unavailable { detail: "shutting down".into() })?;
                    credits.recalculate(&tenant).await
                })
            })
            .collect();
        Recalculating { running }
    }

    /// Recomputes one organisation (the caller was authorized when the stream opened).
    pub async fn recalculate(&self, organization: &TenantId) -> Result<Recalculation> {
        let outcome = self.store.recalculate(organization).await?;
        if outcome.stored != outcome.recomputed {
            tracing::warn!(target: "audit", action = "credit.repair", organization = organization.as_str(), "credit drift repaired");
        }
        Ok(outcome)
    }

    /// Organisations to recalculate when none are named, a page at a time.
    pub async fn organizations_after(&self, after: Option<&TenantId>, limit: usize) -> Result<Vec<TenantId>> {
        Ok(self.store.credit_tenants(after, limit).await?)
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

/// Recalculations running for a page of organisations, answered in order.
pub struct Recalculating {
    running: std::collections::VecDeque<tokio::task::JoinHandle<Result<Recalculation>>>,
}

impl Recalculating {
    /// The next organisation's outcome, in page order; `None` after the last.
    pub async fn next(&mut self) -> Option<Result<Recalculation>> {
        let running = self.running.pop_front()?;
        Some(running.await.unwrap_or_else(|e| Err(StoreError::Unavailable { detail: format!("recalculation task: {e}") }.into())))
    }
}

impl Drop for Recalculating {
    fn drop(&mut self) {
        for running in &self.running {
            running.abort();
        }
    }
}
