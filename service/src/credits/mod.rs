//! Achievement credit, organisations and each person's own view as callers see them:
//! authorization (the domain table), then the store; every mutation and refusal audited.
//! Knows nothing of gRPC. The Learning feed's recording sessions are [`recording`], the skills
//! report [`people`], recalculation [`recalculation`].

mod people;
mod recalculation;
mod recording;

use std::sync::Arc;

use chrono::{DateTime, Utc};

pub use people::{DEFAULT_PEOPLE_PAGE, MAX_PEOPLE_PAGE, PeopleCursor, PeoplePage, Person};
pub use recalculation::{MAX_NAMED_ORGANIZATIONS, RecalculationItem, RecalculationStream};
pub use recording::{RecordSummary, Recordable, Recording};

use crate::{
    domain::{
        AccountKey, Catalog, Credit, DomainError, Mcid, Operation, Organization, OwnAchievement, PartnerId, Principal, TenantId,
        own_achievements,
    },
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
    /// An achievement expiring within this is "expiring soon" in its owner's view.
    expiring_soon: chrono::Duration,
    /// What recalculations found, for the metrics.
    pub(crate) counted: crate::metrics::RecalculationCounters,
}

/// A person's own view of their achievements.
#[derive(Debug, Clone)]
pub struct MyAchievements {
    pub achievements: Vec<OwnAchievement>,
    /// Of their Microsoft Learning link's account, once the Learning feed recorded its profile.
    pub mcid: Option<Mcid>,
    /// The organisation their achievements count for.
    pub organization: TenantId,
    pub enrolled: Option<Organization>,
}

/// How a caller names an organisation: one of its tenants, or its PartnerID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OrganizationRef {
    Tenant(TenantId),
    Partner(PartnerId),
}

/// The tenants an organisation is made of, and how it was asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrganizationScope {
    /// The tenant named, when one was.
    pub asked: Option<TenantId>,
    /// Its PartnerID, once enrolled.
    pub partner: Option<PartnerId>,
    /// In order; empty for a PartnerID nobody is enrolled with.
    pub tenants: Vec<TenantId>,
}

/// Tenants one PartnerID may hold: every read of an organisation touches each of them.
pub const MAX_TENANTS_PER_ORGANIZATION: usize = 100;

/// Renewal opens six months before a certification expires.
pub const DEFAULT_EXPIRING_SOON_DAYS: u32 = 180;

impl Credits {
    pub fn new(store: DynStore, catalog: Arc<Catalog>) -> Self {
        let parallel = std::thread::available_parallelism().map_or(2, usize::from);
        Self {
            store,
            catalog,
            full_run: Arc::new(tokio::sync::Semaphore::new(1)),
            workers: Arc::new(tokio::sync::Semaphore::new(parallel)),
            parallel,
            expiring_soon: chrono::Duration::days(DEFAULT_EXPIRING_SOON_DAYS.into()),
            counted: crate::metrics::RecalculationCounters::default(),
        }
    }

    /// Counts what recalculations find into these (the service's metrics).
    pub fn counting_into(mut self, counters: crate::metrics::RecalculationCounters) -> Self {
        self.counted = counters;
        self
    }

    /// Sets the window in which an achievement is "expiring soon".
    pub fn with_expiring_soon_days(mut self, days: u32) -> Self {
        self.expiring_soon = chrono::Duration::days(days.into());
        self
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

    /// The tenants that make up the organisation `named`: a tenant enrolled under a PartnerID
    /// brings the PartnerID's other tenants; a tenant not enrolled is an organisation alone.
    pub async fn scope(&self, named: &OrganizationRef) -> Result<OrganizationScope> {
        match named {
            OrganizationRef::Tenant(tenant) => match self.store.organization(tenant).await? {
                Some(enrolled) => {
                    let mut tenants = self.store.partner_tenants(&enrolled.partner_id, MAX_TENANTS_PER_ORGANIZATION).await?;
                    if !tenants.contains(tenant) {
                        tenants.push(tenant.clone());
                        tenants.sort();
                    }
                    Ok(OrganizationScope { asked: Some(tenant.clone()), partner: Some(enrolled.partner_id), tenants })
                }
                None => Ok(OrganizationScope { asked: Some(tenant.clone()), partner: None, tenants: vec![tenant.clone()] }),
            },
            OrganizationRef::Partner(partner) => {
                let tenants = self.store.partner_tenants(partner, MAX_TENANTS_PER_ORGANIZATION).await?;
                Ok(OrganizationScope { asked: None, partner: Some(partner.clone()), tenants })
            }
        }
    }

    /// An organisation's credit: the sum of its tenants' (each person is a work user of one
    /// tenant, so counted once), read at one instant. Numbers only.
    pub async fn credit_of(&self, actor: &Actor, named: &OrganizationRef) -> Result<(Credit, OrganizationScope)> {
        let scope = self.scope(named).await?;
        self.authorize(actor, Operation::ReadCredit { tenants: &scope.tenants })?;
        if scope.tenants.is_empty() {
            return Err(DomainError::OrganizationNotFound.into());
        }
        let mut total = Credit::default();
        for credit in self.store.credits(&scope.tenants).await? {
            total.add(&credit, 1);
        }
        Ok((total, scope))
    }

    /// The achievements of the work user `named` (the caller when it names nobody), for that
    /// work user alone: of their linked personal accounts, and of the accounts of their latest
    /// removed links that nobody else has linked since (those read `NOT_LINKED`).
    pub async fn my_achievements(&self, actor: &Actor, named: Option<AccountKey>, now: DateTime<Utc>) -> Result<MyAchievements> {
        let Principal::User { key: me, .. } = &actor.principal else { return Err(DomainError::CallerNotAUser.into()) };
        let named = named.unwrap_or_else(|| me.clone());
        self.authorize(actor, Operation::ReadOwnAchievements { of: &named })?;
        let active = self.store.active_links(me).await?;
        let mut former = Vec::new();
        for kind in crate::domain::LinkKind::ALL {
            let Some(tombstone) = self.store.last_removed(kind, me).await? else { continue };
            let personal = tombstone.personal;
            if active.iter().any(|l| l.personal == personal) || former.contains(&personal) {
                continue;
            }
            // Once another work user holds the account, its achievements are theirs to see.
            let mut elsewhere = false;
            for kind in crate::domain::LinkKind::ALL {
                elsewhere |= self.store.active_link_of_personal(kind, &personal).await?.is_some_and(|l| &l.work != me);
            }
            if !elsewhere {
                former.push(personal);
            }
        }
        let mut accounts: Vec<AccountKey> = Vec::new();
        for personal in active.iter().map(|l| &l.personal).chain(&former) {
            if !accounts.contains(personal) {
                accounts.push(personal.clone());
            }
        }
        let mut theirs = Vec::with_capacity(accounts.len());
        for personal in &accounts {
            theirs.push(self.store.achievements(personal).await?);
        }
        let learning = active.iter().find(|l| l.kind == crate::domain::LinkKind::MicrosoftLearning).map(|l| l.personal.clone());
        let mcid = match learning {
            Some(personal) => self.store.mcids(&[personal]).await?.pop().flatten(),
            None => None,
        };
        let achievements =
            own_achievements(&self.catalog, &active, accounts.iter().zip(theirs.iter().map(Vec::as_slice)), now, self.expiring_soon);
        Ok(MyAchievements { achievements, mcid, organization: me.tenant.clone(), enrolled: self.store.organization(&me.tenant).await? })
    }

    pub async fn upsert_organization(&self, actor: &Actor, organization: Organization) -> Result<Organization> {
        let outcome = async {
            self.authorize(actor, Operation::UpsertOrganization)?;
            // Checked before the write: two racing upserts of new tenants may pass it together.
            let tenants = self.store.partner_tenants(&organization.partner_id, MAX_TENANTS_PER_ORGANIZATION).await?;
            if tenants.len() >= MAX_TENANTS_PER_ORGANIZATION && !tenants.contains(&organization.tenant) {
                return Err(DomainError::OrganizationFull { max: MAX_TENANTS_PER_ORGANIZATION }.into());
            }
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
