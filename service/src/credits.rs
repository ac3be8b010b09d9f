//! Certification credit and organisations as callers see them: authorization (the domain
//! table), then the store. Knows nothing of gRPC.

use std::{
    collections::{BTreeMap, VecDeque},
    sync::Arc,
};

use chrono::{DateTime, Utc};

use crate::{
    domain::{Catalog, Certification, Credit, Operation, Organization, TenantId},
    linking::{Actor, LinkingError, Result},
    store::{DynStore, Recalculation, Recomputed, Recorded, StoreError},
};

/// Organisations read at a time when recalculating all of them.
const RECALC_PAGE: usize = 64;

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
    /// core. [`Running::next`] answers in `page` order; dropping it stops the rest.
    fn recalculate_page(self: &Arc<Self>, page: &[TenantId]) -> Running {
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
        Running { running }
    }

    /// Recomputes one organisation (the caller was authorized when the stream opened).
    pub async fn recalculate(&self, organization: &TenantId) -> Result<Recalculation> {
        Ok(Self::repaired(organization, self.store.recalculate(organization).await?))
    }

    /// Starts recalculating the named organisations, a page of [`Self::recalculate_page`].
    /// Answers in the order named.
    pub fn recalculate_named(self: &Arc<Self>, named: Vec<TenantId>) -> Recalculations {
        Recalculations {
            credits: self.clone(),
            pass: None,
            running: self.recalculate_page(&named),
            page: named.into(),
            after: None,
            finished: true,
        }
    }

    /// Starts recalculating every organisation: the store's one pass over everything when it
    /// has one (then each organisation is committed in turn), pages of
    /// [`Self::recalculate_page`] otherwise. Answers in organisation order.
    pub async fn recalculate_all(self: &Arc<Self>) -> Result<Recalculations> {
        Ok(Recalculations {
            credits: self.clone(),
            pass: self.store.recompute_all().await?,
            page: VecDeque::new(),
            running: Running { running: VecDeque::new() },
            after: None,
            finished: false,
        })
    }

    /// Commits one organisation's part of the pass; when a change touched its credit during
    /// the pass, recalculates it alone.
    async fn commit(&self, organization: &TenantId, recomputed: Recomputed) -> Result<Recalculation> {
        let outcome = match self.store.commit_recomputed(organization, &recomputed).await? {
            true => recomputed.into(),
            false => self.store.recalculate(organization).await?,
        };
        Ok(Self::repaired(organization, outcome))
    }

    fn repaired(organization: &TenantId, outcome: Recalculation) -> Recalculation {
        if outcome.stored != outcome.recomputed {
            tracing::warn!(target: "audit", action = "credit.repair", organization = organization.as_str(), "credit drift repaired");
        }
        outcome
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
struct Running {
    running: VecDeque<tokio::task::JoinHandle<Result<Recalculation>>>,
}

impl Running {
    /// The next organisation's outcome, in page order; `None` after the last.
    async fn next(&mut self) -> Option<Result<Recalculation>> {
        let running = self.running.pop_front()?;
        Some(running.await.unwrap_or_else(|e| Err(StoreError::Unavailable { detail: format!("recalculation task: {e}") }.into())))
    }
}

/// Recalculations answered one organisation at a time, in order: the named ones
/// ([`Credits::recalculate_named`]) or every one ([`Credits::recalculate_all`]).
pub struct Recalculations {
    credits: Arc<Credits>,
    /// The store's pass, when it has one; organisations are taken out as they are committed.
    pass: Option<BTreeMap<TenantId, Recomputed>>,
    /// The current page of organisations, not yet answered.
    page: VecDeque<TenantId>,
    /// The current page's recalculations, when there is no pass.
    running: Running,
    /// The last organisation paged in.
    after: Option<TenantId>,
    /// No page follows the current one.
    finished: bool,
}

impl Recalculations {
    /// The next organisation and its outcome; `None` after the last.
    pub async fn next(&mut self) -> Option<Result<(TenantId, Recalculation)>> {
        if self.page.is_empty() {
            if self.finished {
                return None;
            }
            let page = match self.credits.store.credit_tenants(self.after.as_ref(), RECALC_PAGE).await {
                Ok(page) => page,
                Err(e) => {
                    self.finished = true;
                    return Some(Err(e.into()));
                }
            };
            let Some(last) = page.last().cloned() else {
                self.finished = true;
                return None;
            };
            self.after = Some(last);
            if self.pass.is_none() {
                self.running = self.credits.recalculate_page(&page);
            }
            self.page = page.into();
        }
        let tenant = self.page.pop_front()?;
        let outcome = match &mut self.pass {
            Some(pass) => self.credits.commit(&tenant, pass.remove(&tenant).unwrap_or_default()).await,
            None => self.running.next().await?,
        };
        Some(outcome.map(|outcome| (tenant, outcome)))
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        for running in &self.running {
            running.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;

    use super::*;
    use crate::{
        domain::{AccountKey, CONSUMER_TENANT, CertificationId, LinkKind, LinkMode, NewLink, PersonalProfile},
        store::sled::SledStore,
    };

    /// Full recalculations run beside writers that keep changing credit: the store's credit is
    /// always consistent, so none may report drift, and none may leave any. A pass that read an
    /// organisation's version after its links and certifications, or a commit that did not
    /// check it, would write a stale sum here.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn full_recalculations_beside_writers_report_and_leave_no_drift() {
        const ORGS: u32 = 6;
        const PEOPLE: u32 = 30;
        let dir = tempfile::tempdir().unwrap();
        let catalog = Arc::new(Catalog::default_catalog());
        let store: DynStore = Arc::new(SledStore::open(dir.path(), catalog.clone()).unwrap());
        let credits = Arc::new(Credits::new(store.clone(), catalog));
        let tenant = |o: u32| TenantId::parse(&format!("{o:08x}-0000-4000-8000-000000000000")).unwrap();
        let person = |p: u32| AccountKey::parse(CONSUMER_TENANT, &format!("00000000-0000-4000-8000-{p:012x}")).unwrap();
        let now = Utc::now();
        for p in 0..ORGS * PEOPLE {
            let new = NewLink {
                kind: LinkKind::MicrosoftLearning,
                work: AccountKey::parse(tenant(p % ORGS).as_str(), &format!("00000000-0000-4000-8000-{p:012x}")).unwrap(),
                work_upn: String::new(),
                personal: person(p),
                personal_sub: String::new(),
                profile: PersonalProfile::default(),
            };
            store.link(new, LinkMode::default(), now).await.unwrap();
        }
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let writer = {
            let (store, stop) = (store.clone(), stop.clone());
            tokio::spawn(async move {
                let mut writes = 0u32;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    // Each write is a renewal (a later expiry): always a change to credit.
                    let cert = Certification {
                        personal: person(writes * 7 % (ORGS * PEOPLE)),
                        id: CertificationId::parse(
                            ["azure-administrator-associate", "security-operations-analyst-associate"][writes as usize % 2],
                        )
                        .unwrap(),
                        earned_at: now,
                        expires_at: Some(now + chrono::Duration::days(365) + chrono::Duration::seconds(i64::from(writes))),
                        expired: false,
                    };
                    store.record_certifications(&[cert], now).await.unwrap();
                    writes += 1;
                }
                writes
            })
        };
        for round in 0..12 {
            let mut all = credits.recalculate_all().await.unwrap();
            let mut seen = 0;
            while let Some(outcome) = all.next().await {
                let (organization, r) = outcome.unwrap();
                assert_eq!(r.stored, r.recomputed, "round {round}: drift reported for {}", organization.as_str());
                seen += 1;
            }
            assert_eq!(seen, ORGS);
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        assert!(writer.await.unwrap() > 12, "the writer kept writing during the recalculations");
        for o in 0..ORGS {
            let r = store.recompute(&tenant(o)).await.unwrap();
            assert_eq!(r.stored, r.recomputed, "drift left in {}", tenant(o).as_str());
        }
    }
}
