//! The skills report (ListOrganizationPeople): an organisation's people, a page at a time —
//! per work user whether they are associated for each kind, their MCID, and per area the
//! achievements that count. Ids, UPNs and achievement ids only: never a personal email or name.

use std::collections::BTreeMap;

use super::{Credits, OrganizationRef, OrganizationScope};
use crate::{
    domain::{AccountKey, AreaId, CertificationId, Credit, DomainError, Link, LinkId, LinkKind, Mcid, Operation, TenantId},
    linking::{Actor, Result},
    store::ListQuery,
};

/// People per page when the caller names no size, and the most a page holds.
pub const DEFAULT_PEOPLE_PAGE: usize = 100;
pub const MAX_PEOPLE_PAGE: usize = 500;

/// Within a tenant, people with a Learning link first (each with their Partner University
/// link, if any), then those with a Partner University link alone.
const PHASES: [LinkKind; 2] = [LinkKind::MicrosoftLearning, LinkKind::PartnerUniversity];

/// Where a listing resumes: after this link of this kind in this tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeopleCursor {
    pub tenant: TenantId,
    pub kind: LinkKind,
    pub after: Option<LinkId>,
}

/// One work user of the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Person {
    pub work: AccountKey,
    pub upn: String,
    pub university: bool,
    pub learning: bool,
    pub mcid: Option<Mcid>,
    /// Per area, the achievements that count (through either link).
    pub areas: BTreeMap<AreaId, Vec<CertificationId>>,
}

#[derive(Debug, Clone)]
pub struct PeoplePage {
    pub people: Vec<Person>,
    /// Set when more may follow.
    pub next: Option<PeopleCursor>,
    pub scope: OrganizationScope,
}

impl Credits {
    /// A page of at most `limit` people of the organisation `named`, from `from`. Reads at
    /// most four links per place on the page, so a page may come back short (people listed
    /// with their Learning link are skipped in the Partner University pass).
    pub async fn people(&self, actor: &Actor, named: &OrganizationRef, from: Option<PeopleCursor>, limit: usize) -> Result<PeoplePage> {
        let scope = self.scope(named).await?;
        self.authorize(actor, Operation::ListPeople { tenants: &scope.tenants })?;
        let Some(first) = scope.tenants.first() else { return Err(DomainError::OrganizationNotFound.into()) };
        let limit = limit.clamp(1, MAX_PEOPLE_PAGE);
        let start = from.unwrap_or(PeopleCursor { tenant: first.clone(), kind: PHASES[0], after: None });
        let mut people = Vec::new();
        let mut budget = limit * 4;
        // A tenant that left the organisation between pages is passed over, not an error.
        for tenant in scope.tenants.iter().filter(|t| **t >= start.tenant) {
            for kind in PHASES {
                let resuming = *tenant == start.tenant;
                if resuming && phase(kind) < phase(start.kind) {
                    continue;
                }
                let mut after = if resuming && kind == start.kind { start.after.clone() } else { None };
                loop {
                    let query = ListQuery {
                        kind: Some(kind),
                        include_removed: false,
                        after: after.clone(),
                        limit: (limit - people.len()).min(budget),
                    };
                    let page = self.store.links_of_tenant(tenant, &query).await?;
                    for link in &page.links {
                        budget -= 1;
                        after = Some(link.id.clone());
                        if let Some(person) = self.person(link).await? {
                            people.push(person);
                        }
                        if people.len() == limit || budget == 0 {
                            let next = PeopleCursor { tenant: tenant.clone(), kind, after };
                            return Ok(PeoplePage { people, next: Some(next), scope });
                        }
                    }
                    if page.next.is_none() {
                        break;
                    }
                }
            }
        }
        Ok(PeoplePage { people, next: None, scope })
    }

    /// The report's row for the work user of `link`, as their links stand now; `None` when
    /// they are listed elsewhere (a Partner University link of someone with a Learning link)
    /// or hold no link any more.
    async fn person(&self, link: &Link) -> Result<Option<Person>> {
        let links = self.store.active_links(&link.work).await?;
        let learning = links.iter().find(|l| l.kind == LinkKind::MicrosoftLearning);
        if links.is_empty() || (link.kind == LinkKind::PartnerUniversity && learning.is_some()) {
            return Ok(None);
        }
        let mut areas: BTreeMap<AreaId, Vec<CertificationId>> = BTreeMap::new();
        for held in &links {
            let achievements = self.store.achievements(&held.personal).await?;
            for (area, ids) in Credit::counting_through(&self.catalog, held.kind, &achievements) {
                areas.entry(area).or_default().extend(ids);
            }
        }
        for ids in areas.values_mut() {
            ids.sort();
        }
        let mcid = match learning {
            Some(l) => self.store.mcids(std::slice::from_ref(&l.personal)).await?.pop().flatten(),
            None => None,
        };
        let newest = links.iter().max_by_key(|l| l.created_at).unwrap_or(link);
        Ok(Some(Person {
            work: link.work.clone(),
            upn: newest.work_upn.clone(),
            university: links.iter().any(|l| l.kind == LinkKind::PartnerUniversity),
            learning: learning.is_some(),
            mcid,
            areas,
        }))
    }
}

fn phase(kind: LinkKind) -> usize {
    PHASES.iter().position(|k| *k == kind).unwrap_or(0)
}
