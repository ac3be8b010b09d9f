//! Links and the rules that decide what a link or remove request does. Pure functions: the
//! store reads the current state inside its transaction, asks these rules, and writes what
//! they return, so every backend enforces the same invariants.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{AccountKey, DomainError, LinkId, LinkKind, Result};

/// Personal data of the personal account. Shown only to the work user the link belongs to.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PersonalProfile {
    pub email: String,
    pub name: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Removal {
    pub by: AccountKey,
    #[serde(with = "super::compact::time")]
    pub at: DateTime<Utc>,
    pub reason: String,
}

/// A work user ↔ personal account link of one kind. A removed link stays as a tombstone.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Link {
    pub id: LinkId,
    pub kind: LinkKind,
    pub work: AccountKey,
    /// Display only.
    pub work_upn: String,
    pub personal: AccountKey,
    /// The ID token's pairwise `sub`: stored beside the key, never a key.
    pub personal_sub: String,
    pub profile: PersonalProfile,
    #[serde(with = "super::compact::time")]
    pub created_at: DateTime<Utc>,
    pub removal: Option<Removal>,
    /// The MCID of the account's Learning profile (Microsoft Learning links): joined from the
    /// Learning feed's profiles when the link is read for a caller, never stored with it.
    #[serde(skip)]
    pub mcid: Option<super::Mcid>,
}

impl Link {
    pub fn is_active(&self) -> bool {
        self.removal.is_none()
    }

    /// Changes whenever the link does (today: when it is removed); RemoveLink may require it.
    pub fn etag(&self) -> String {
        use sha2::{Digest, Sha256};
        let state = match &self.removal {
            None => "active".to_owned(),
            Some(r) => format!("removed:{}", r.at.timestamp_micros()),
        };
        super::ids::hex(&Sha256::digest(format!("{}|{state}", self.id.as_str()).as_bytes())[..8])
    }

    fn retired(&self, by: &AccountKey, reason: &str, now: DateTime<Utc>) -> Link {
        Link { removal: Some(Removal { by: by.clone(), at: now, reason: reason.to_owned() }), ..self.clone() }
    }
}

/// A verified association: who began it and which personal account signed in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewLink {
    pub kind: LinkKind,
    pub work: AccountKey,
    pub work_upn: String,
    pub personal: AccountKey,
    pub personal_sub: String,
    pub profile: PersonalProfile,
}

/// What the work user asked for when beginning the flow, and the limit on associations the
/// completion is held to (set from the kind's rules when it completes, never stored with the
/// flow; none by default).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkMode {
    pub replace_existing: bool,
    pub transfer: bool,
    #[serde(skip)]
    pub limit: super::AssociationLimit,
}

/// What a completion does when the personal account is actively linked to another work user
/// (`[kinds.<kind>] on_linked_elsewhere`): Partner Center's documented rule for Learning is
/// that linking with company B unlinks it from company A.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnLinkedElsewhere {
    /// Take it over: the existing transfer (tombstone, LINK_TRANSFERRED, credit moved).
    Move,
    /// ALREADY_EXISTS / ACCOUNT_LINKED_ELSEWHERE, unless the flow was begun with `transfer`.
    Refuse,
}

impl OnLinkedElsewhere {
    pub fn default_for(kind: LinkKind) -> Self {
        match kind {
            LinkKind::MicrosoftLearning => Self::Move,
            LinkKind::PartnerUniversity => Self::Refuse,
        }
    }
}

/// A kind's association rules (`[kinds.<kind>]`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KindRules {
    pub on_linked_elsewhere: OnLinkedElsewhere,
    pub limit: super::AssociationLimit,
}

impl KindRules {
    /// Partner Center's documented rules for the kind.
    pub fn default_for(kind: LinkKind) -> Self {
        Self { on_linked_elsewhere: OnLinkedElsewhere::default_for(kind), limit: super::AssociationLimit::default_for(kind) }
    }

    /// The mode a completion runs with: the one the flow was begun with, moving when the kind
    /// says so, held to the kind's limit.
    pub fn applied_to(self, begun: LinkMode) -> LinkMode {
        LinkMode { transfer: begun.transfer || self.on_linked_elsewhere == OnLinkedElsewhere::Move, limit: self.limit, ..begun }
    }
}

/// Why a link was removed when its remover gave no reason.
pub const REASON_USER_REQUEST: &str = "user_request";
pub const REASON_REPLACED: &str = "replaced";
pub const REASON_TRANSFERRED: &str = "transferred";
/// The work account was deleted (RemoveWorkUser).
pub const REASON_WORK_ACCOUNT_DELETED: &str = "work_account_deleted";

impl LinkPlan {
    /// The change-feed events of this plan, in order: removals and transfers, then creation.
    pub fn events(&self) -> Vec<(super::EventType, &Link, Option<super::LinkId>)> {
        use super::EventType::*;
        let LinkPlan::Create { create, retire } = self else { return Vec::new() };
        let mut events = Vec::new();
        let mut transferred = false;
        for old in retire {
            if old.removal.as_ref().is_some_and(|r| r.reason == REASON_TRANSFERRED) {
                events.push((Transferred, create, Some(old.id.clone())));
                transferred = true;
            } else {
                events.push((Removed, old, None));
            }
        }
        if !transferred {
            events.push((Created, create, None));
        }
        events
    }
}

/// The outcome of [`plan_link`]: what the store must write, atomically.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LinkPlan {
    /// The pair is already actively linked: nothing to write, answer the existing link.
    Unchanged(Link),
    /// Write `create`, and the tombstones of `retire` (replaced or transferred links).
    Create { create: Link, retire: Vec<Link> },
}

/// Decides a link request given the active link of the work user for this kind and the
/// active link of the personal account for this kind (invariants 1 and 2).
pub fn plan_link(new: NewLink, mode: LinkMode, of_work: Option<&Link>, of_personal: Option<&Link>, now: DateTime<Utc>) -> Result<LinkPlan> {
    if !new.personal.tenant.is_consumer() {
        return Err(DomainError::NotAPersonalAccount);
    }
    if new.work.tenant.is_consumer() {
        return Err(DomainError::NotAWorkAccount { why: "a consumer-tenant account" });
    }
    let mut retire = Vec::new();
    if let Some(held) = of_personal {
        if held.work == new.work {
            return Ok(LinkPlan::Unchanged(held.clone()));
        }
        if !mode.transfer {
            return Err(DomainError::LinkedElsewhere { kind: new.kind });
        }
        retire.push(held.retired(&new.work, REASON_TRANSFERRED, now));
    }
    if let Some(current) = of_work {
        // `current.personal != new.personal` here: the same pair returned above.
        if !mode.replace_existing {
            return Err(DomainError::AlreadyLinked { kind: new.kind });
        }
        retire.push(current.retired(&new.work, REASON_REPLACED, now));
    }
    let create = Link {
        id: LinkId::random(),
        kind: new.kind,
        work: new.work,
        work_upn: new.work_upn,
        personal: new.personal,
        personal_sub: new.personal_sub,
        profile: new.profile,
        created_at: now,
        removal: None,
        mcid: None,
    };
    Ok(LinkPlan::Create { create, retire })
}

/// The outcome of [`plan_remove`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RemovePlan {
    /// Write this tombstone in place of the active link.
    Retire(Link),
    /// Nothing active: removal is idempotent, answer the latest tombstone.
    AlreadyRemoved(Link),
}

/// Decides "remove access" (invariant 7): idempotent, and a tombstone records who, when, why.
pub fn plan_remove(
    kind: LinkKind,
    active: Option<&Link>,
    last_tombstone: Option<Link>,
    by: &AccountKey,
    reason: &str,
    expected_etag: Option<&str>,
    now: DateTime<Utc>,
) -> Result<RemovePlan> {
    if let (Some(link), Some(expected)) = (active, expected_etag)
        && link.etag() != expected
    {
        return Err(DomainError::EtagMismatch);
    }
    match (active, last_tombstone) {
        (Some(link), _) => Ok(RemovePlan::Retire(link.retired(by, reason, now))),
        (None, Some(tombstone)) => Ok(RemovePlan::AlreadyRemoved(tombstone)),
        (None, None) => Err(DomainError::LinkNotFound { kind }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::CONSUMER_TENANT;

    const WORK_TENANT: &str = "11111111-1111-1111-1111-111111111111";

    fn key(tid: &str, n: u8) -> AccountKey {
        AccountKey::parse(tid, &format!("00000000-0000-0000-0000-0000000000{n:02x}")).unwrap()
    }

    fn request(work: u8, personal: u8) -> NewLink {
        NewLink {
            kind: LinkKind::MicrosoftLearning,
            work: key(WORK_TENANT, work),
            work_upn: String::new(),
            personal: key(CONSUMER_TENANT, personal),
            personal_sub: "sub".into(),
            profile: PersonalProfile::default(),
        }
    }

    fn active(work: u8, personal: u8) -> Link {
        match plan_link(request(work, personal), LinkMode::default(), None, None, Utc::now()).unwrap() {
            LinkPlan::Create { create, .. } => create,
            other => unreachable!("{other:?}"),
        }
    }

    #[test]
    fn a_personal_account_held_elsewhere_is_refused_unless_transferred() {
        let held = active(2, 9);
        let err = plan_link(request(1, 9), LinkMode::default(), None, Some(&held), Utc::now()).unwrap_err();
        assert_eq!(err, DomainError::LinkedElsewhere { kind: LinkKind::MicrosoftLearning });

        let mode = LinkMode { transfer: true, ..LinkMode::default() };
        let LinkPlan::Create { create, retire } = plan_link(request(1, 9), mode, None, Some(&held), Utc::now()).unwrap() else {
            unreachable!()
        };
        assert_eq!(create.work, key(WORK_TENANT, 1));
        assert_eq!(retire.len(), 1);
        assert_eq!(retire[0].removal.as_ref().unwrap().reason, REASON_TRANSFERRED);
    }

    #[test]
    fn a_second_personal_account_needs_replace_existing() {
        let mine = active(1, 8);
        let err = plan_link(request(1, 9), LinkMode::default(), Some(&mine), None, Utc::now()).unwrap_err();
        assert_eq!(err, DomainError::AlreadyLinked { kind: LinkKind::MicrosoftLearning });
        let mode = LinkMode { replace_existing: true, ..LinkMode::default() };
        let LinkPlan::Create { retire, .. } = plan_link(request(1, 9), mode, Some(&mine), None, Utc::now()).unwrap() else {
            unreachable!()
        };
        assert_eq!(retire[0].id, mine.id);
    }

    #[test]
    fn relinking_the_same_pair_changes_nothing() {
        let mine = active(1, 9);
        let plan = plan_link(request(1, 9), LinkMode::default(), Some(&mine), Some(&mine), Utc::now()).unwrap();
        assert_eq!(plan, LinkPlan::Unchanged(mine));
    }

    #[test]
    fn only_consumer_accounts_are_personal_and_only_work_accounts_own_links() {
        let mut not_personal = request(1, 9);
        not_personal.personal = key(WORK_TENANT, 9);
        assert_eq!(plan_link(not_personal, LinkMode::default(), None, None, Utc::now()), Err(DomainError::NotAPersonalAccount));
        let mut consumer_owner = request(1, 9);
        consumer_owner.work = key(CONSUMER_TENANT, 1);
        assert!(matches!(plan_link(consumer_owner, LinkMode::default(), None, None, Utc::now()), Err(DomainError::NotAWorkAccount { .. })));
    }

    #[test]
    fn remove_is_idempotent_and_never_invents_a_link() {
        let mine = active(1, 9);
        let by = key(WORK_TENANT, 1);
        let RemovePlan::Retire(tomb) = plan_remove(mine.kind, Some(&mine), None, &by, "user_request", None, Utc::now()).unwrap() else {
            unreachable!()
        };
        assert_eq!(tomb.removal.as_ref().unwrap().by, by);
        assert_eq!(
            plan_remove(mine.kind, None, Some(tomb.clone()), &by, "again", None, Utc::now()).unwrap(),
            RemovePlan::AlreadyRemoved(tomb)
        );
        assert!(plan_remove(mine.kind, None, None, &by, "x", None, Utc::now()).is_err());
        let stale = "0000000000000000";
        assert_eq!(plan_remove(mine.kind, Some(&mine), None, &by, "x", Some(stale), Utc::now()), Err(DomainError::EtagMismatch));
        assert!(plan_remove(mine.kind, Some(&mine), None, &by, "x", Some(&mine.etag()), Utc::now()).is_ok());
    }
}
