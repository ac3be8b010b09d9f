//! Certification credit and organisations as callers see them: authorization (the domain
//! table), then the store; every mutation and refusal audited. Knows nothing of gRPC. The
//! Learning feed's recording session is [`recording`], recalculation [`recalculation`].

mod recalculation;
mod recording;

use std::sync::Arc;

use chrono::{DateTime, Utc};

pub use recalculation::{MAX_NAMED_ORGANIZATIONS, RecalculationItem, RecalculationStream};
pub use recording::{RecordSummary, Recordable, Recording};

use crate::{
    domain::{AccountKey, Catalog, Credit, Mcid, Operation, Organization, OwnAchievement, Principal, TenantId, own_achievements},
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
        }
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

    pub async fn credit_of(&self, actor: &Actor, organization: &TenantId) -> Result<(Credit, Option<Organization>)> {
        self.authorize(actor, Operation::ReadCredit { organization })?;
        Ok((self.store.credit(organization).await?, self.store.organization(organization).await?))
    }

    /// The achievements of the work user `named` (the caller when it names nobody), for that
    /// work user alone: of their linked personal accounts, and of the accounts of their latest
    /// removed links that nobody else has linked since (those read `NOT_LINKED`).
    pub async fn my_achievements(&self, actor: &Actor, named: Option<AccountKey>, now: DateTime<Utc>) -> Result<MyAchievements> {
        let Principal::User { key: me, .. } = &actor.principal else { return Err(crate::domain::DomainError::CallerNotAUser.into()) };
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
