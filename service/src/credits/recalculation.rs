//! Recalculating credit from the source records: the named organisations, or every one (one
//! full run at a time per replica), answered in order as a stream, each repairing the drift
//! it finds, then a summary.

use std::{
    collections::{BTreeMap, VecDeque},
    pin::Pin,
    sync::Arc,
};

use futures_util::Stream;

use super::Credits;
use crate::{
    domain::{DomainError, Operation, Organization, TenantId},
    linking::{Actor, LinkingError, Result},
    store::{Recalculation, Recomputed, StoreError},
};

/// Organisations read at a time when recalculating all of them.
const RECALC_PAGE: usize = 64;
/// The most organisations one RecalculateCredits call may name.
pub const MAX_NAMED_ORGANIZATIONS: usize = 1000;
/// How often one organisation is recomputed when writers keep changing its credit meanwhile.
const MAX_ATTEMPTS: usize = 16;

/// One answer of a recalculation stream.
#[derive(Debug, Clone, PartialEq)]
pub enum RecalculationItem {
    /// An organisation recalculated (its stored credit repaired when it drifted).
    Organization { tenant: TenantId, outcome: Recalculation, organization: Option<Organization> },
    /// The last answer.
    Summary { organizations: u64, drifted: u64 },
}

pub type RecalculationStream = Pin<Box<dyn Stream<Item = Result<RecalculationItem>> + Send>>;

impl Credits {
    /// RecalculateCredits: the named organisations (at most [`MAX_NAMED_ORGANIZATIONS`]) or,
    /// naming none, every one. Refusals — the caller, too many named, a full run already going
    /// on this replica — come before the stream; dropping the stream stops the work.
    pub fn recalculation(self: &Arc<Self>, actor: &Actor, named: Vec<TenantId>) -> Result<RecalculationStream> {
        self.authorize(actor, Operation::RecalculateCredits)?;
        if named.len() > MAX_NAMED_ORGANIZATIONS {
            return Err(DomainError::InvalidField { field: "organization_ids", why: "names more than 1000 organisations" }.into());
        }
        let recalculations = if named.is_empty() { self.recalculate_all(actor)? } else { self.recalculate_named(named) };
        let state = Streaming { recalculations, request_id: actor.request_id.clone(), organizations: 0, drifted: 0, ended: false };
        Ok(Box::pin(futures_util::stream::unfold(state, Streaming::next)))
    }

    /// Starts recalculating the organisations of `page`, as many at a time as there are cores
    /// (each on its own task: sled's reads are synchronous, so one task would use one core) and
    /// never more tasks than that: the rest wait in the queue. [`Running::next`] answers in
    /// `page` order; dropping it stops the rest.
    fn recalculate_page(self: &Arc<Self>, page: Vec<TenantId>) -> Running {
        let mut running = Running { credits: self.clone(), queued: page.into(), running: VecDeque::new() };
        running.fill();
        running
    }

    /// Recomputes one organisation and stores the result when it drifted, consistently with
    /// concurrent writers: when one changed the credit meanwhile, it recomputes again.
    pub(super) async fn recalculate(&self, organization: &TenantId) -> Result<Recalculation> {
        for _ in 0..MAX_ATTEMPTS {
            let recomputed = self.store.recompute(organization).await?;
            if self.store.commit_recomputed(organization, &recomputed).await? {
                return Ok(Self::repaired(organization, recomputed.into()));
            }
        }
        Err(StoreError::Unavailable { detail: format!("credit of {} kept changing during recalculation", organization.as_str()) }.into())
    }

    /// Starts recalculating the named organisations (at most [`MAX_NAMED_ORGANIZATIONS`]), a
    /// page of [`Self::recalculate_page`]. Answers in the order named.
    pub(super) fn recalculate_named(self: &Arc<Self>, named: Vec<TenantId>) -> Recalculations {
        Recalculations {
            credits: self.clone(),
            pass: Pass::Absent,
            running: self.recalculate_page(named.clone()),
            page: named.into(),
            after: None,
            finished: true,
            _full_run: None,
        }
    }

    /// Starts recalculating every organisation: the store's one pass over everything when it
    /// has one (then each organisation is committed in turn), pages of
    /// [`Self::recalculate_page`] otherwise. Answers in organisation order; the pass runs
    /// before the first answer. One at a time per replica: a second while one runs is refused
    /// here, before anything is read.
    pub(super) fn recalculate_all(self: &Arc<Self>, actor: &Actor) -> Result<Recalculations> {
        let Ok(permit) = self.full_run.clone().try_acquire_owned() else {
            tracing::info!(target: "audit", action = "credit.recalculate", outcome = "refused", reason = "RECALCULATION_RUNNING",
                request_id = actor.request_id, "mutation refused");
            return Err(LinkingError::RecalculationRunning);
        };
        Ok(Recalculations {
            credits: self.clone(),
            pass: Pass::Pending,
            page: VecDeque::new(),
            running: Running { credits: self.clone(), queued: VecDeque::new(), running: VecDeque::new() },
            after: None,
            finished: false,
            _full_run: Some(permit),
        })
    }

    /// Commits one organisation's part of the pass; when a change touched its credit during
    /// the pass, recalculates it alone.
    async fn commit(&self, organization: &TenantId, recomputed: Recomputed) -> Result<Recalculation> {
        let outcome = match self.store.commit_recomputed(organization, &recomputed).await? {
            true => recomputed.into(),
            false => return self.recalculate(organization).await,
        };
        Ok(Self::repaired(organization, outcome))
    }

    fn repaired(organization: &TenantId, outcome: Recalculation) -> Recalculation {
        if outcome.stored != outcome.recomputed {
            tracing::warn!(target: "audit", action = "credit.repair", organization = organization.as_str(), "credit drift repaired");
        }
        outcome
    }
}

/// A recalculation stream's state between answers.
struct Streaming {
    recalculations: Recalculations,
    request_id: String,
    organizations: u64,
    drifted: u64,
    ended: bool,
}

impl Streaming {
    async fn next(mut self) -> Option<(Result<RecalculationItem>, Self)> {
        if self.ended {
            return None;
        }
        let item = match self.recalculations.next().await {
            Some(Ok((tenant, outcome))) => match self.recalculations.credits.store.organization(&tenant).await {
                Ok(organization) => {
                    self.organizations += 1;
                    let drifted = outcome.stored != outcome.recomputed;
                    self.drifted += u64::from(drifted);
                    let counted = &self.recalculations.credits.counted;
                    counted.organizations.inc();
                    if drifted {
                        counted.drifted.inc();
                    }
                    Ok(RecalculationItem::Organization { tenant, outcome, organization })
                }
                Err(e) => Err(e.into()),
            },
            Some(Err(e)) => Err(e),
            None => {
                tracing::info!(target: "audit", action = "credit.recalculate", organizations = self.organizations, drifted = self.drifted,
                    request_id = self.request_id, "recalculated");
                self.ended = true;
                Ok(RecalculationItem::Summary { organizations: self.organizations, drifted: self.drifted })
            }
        };
        self.ended |= item.is_err();
        Some((item, self))
    }
}

/// Recalculations of a page of organisations, answered in order: at most as many tasks as
/// there are cores, each taking a permit of the replica's shared pool before it works.
struct Running {
    credits: Arc<Credits>,
    queued: VecDeque<TenantId>,
    running: VecDeque<tokio::task::JoinHandle<Result<Recalculation>>>,
}

impl Running {
    fn fill(&mut self) {
        while self.running.len() < self.credits.parallel {
            let Some(tenant) = self.queued.pop_front() else { return };
            let credits = self.credits.clone();
            self.running.push_back(tokio::spawn(async move {
                let _permit = credits.workers.acquire().await.map_err(|_| StoreError::Unavailable { detail: "shutting down".into() })?;
                credits.recalculate(&tenant).await
            }));
        }
    }

    /// The next organisation's outcome, in page order; `None` after the last.
    async fn next(&mut self) -> Option<Result<Recalculation>> {
        let running = self.running.pop_front()?;
        self.fill();
        Some(running.await.unwrap_or_else(|e| Err(StoreError::Unavailable { detail: format!("recalculation task: {e}") }.into())))
    }
}

/// The store's one pass over everything, for a full recalculation.
enum Pass {
    /// To be run before the first answer.
    Pending,
    /// Named organisations, or a store without such a pass: one organisation at a time.
    Absent,
    Ready(BTreeMap<TenantId, Recomputed>),
}

/// Recalculations answered one organisation at a time, in order: the named ones
/// ([`Credits::recalculate_named`]) or every one ([`Credits::recalculate_all`]).
pub(super) struct Recalculations {
    credits: Arc<Credits>,
    /// The store's pass, when it has one; organisations are taken out as they are committed.
    pass: Pass,
    /// The current page of organisations, not yet answered.
    page: VecDeque<TenantId>,
    /// The current page's recalculations, when there is no pass.
    running: Running,
    /// The last organisation paged in.
    after: Option<TenantId>,
    /// No page follows the current one.
    finished: bool,
    /// Held by a full recalculation until it is dropped.
    _full_run: Option<tokio::sync::OwnedSemaphorePermit>,
}

impl Recalculations {
    /// The next organisation and its outcome; `None` after the last.
    pub(super) async fn next(&mut self) -> Option<Result<(TenantId, Recalculation)>> {
        if matches!(self.pass, Pass::Pending) {
            self.pass = match self.credits.store.recompute_all().await {
                Ok(Some(pass)) => Pass::Ready(pass),
                Ok(None) => Pass::Absent,
                Err(e) => {
                    self.finished = true;
                    self.pass = Pass::Absent;
                    return Some(Err(e.into()));
                }
            };
        }
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
            if matches!(self.pass, Pass::Absent) {
                self.running = self.credits.recalculate_page(page.clone());
            }
            self.page = page.into();
        }
        let tenant = self.page.pop_front()?;
        let outcome = match &mut self.pass {
            Pass::Ready(pass) => self.credits.commit(&tenant, pass.remove(&tenant).unwrap_or_default()).await,
            Pass::Absent | Pass::Pending => self.running.next().await?,
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
        domain::{
            AccountKey, AppRole, CONSUMER_TENANT, Catalog, Certification, CertificationId, LinkKind, LinkMode, NewLink, PersonalProfile,
            Principal,
        },
        store::{DynStore, sled::SledStore},
    };

    fn job() -> Actor {
        let tenant = TenantId::parse("5e7ab1c4-0d2f-4a6b-9c8d-3f1e2d4c5b03").unwrap();
        let principal = Principal::App { tenant, app_id: "credit-recalculation".into(), roles: [AppRole::CreditsRecalculate].into() };
        Actor { principal, request_id: "test".into(), peer: None }
    }

    /// Invariant 12: one full recalculation at a time per replica (a second is refused before
    /// it reads anything), and named organisations are worked by a bounded pool rather than a
    /// task each, up front.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn recalculations_are_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let catalog = Arc::new(Catalog::default_catalog());
        let store: DynStore = Arc::new(SledStore::open(dir.path(), catalog.clone()).unwrap());
        let credits = Arc::new(Credits::new(store, catalog));
        let running = credits.recalculate_all(&job()).unwrap();
        assert!(matches!(credits.recalculate_all(&job()), Err(LinkingError::RecalculationRunning)));
        drop(running);
        let mut again = credits.recalculate_all(&job()).unwrap();
        assert!(again.next().await.is_none(), "an empty store has nothing to answer");

        let named: Vec<TenantId> =
            (0..MAX_NAMED_ORGANIZATIONS).map(|o| TenantId::parse(&format!("{o:08x}-0000-4000-8000-000000000001")).unwrap()).collect();
        let mut recalculations = credits.recalculate_named(named);
        assert!(recalculations.running.running.len() <= credits.parallel, "tasks in flight: {}", recalculations.running.running.len());
        let mut answered = 0;
        while let Some(outcome) = recalculations.next().await {
            outcome.unwrap();
            answered += 1;
            assert!(recalculations.running.running.len() <= credits.parallel);
        }
        assert_eq!(answered, MAX_NAMED_ORGANIZATIONS);
        assert_eq!(credits.workers.available_permits(), credits.parallel, "every permit is back");
    }

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
        let actor = job();
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
                        source: LinkKind::MicrosoftLearning,
                    };
                    store.record_certifications(&[cert], now).await.unwrap();
                    writes += 1;
                }
                writes
            })
        };
        for round in 0..12 {
            let mut all = credits.recalculate_all(&actor).unwrap();
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
