//! A person's own view of their achievements ("Review MCP and Certifications"), and the
//! Microsoft Learning profile that names their MCID. Pure: what the store read and the time
//! go in, what each achievement does for the person's organisation comes out.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use super::{AccountKey, AreaId, Catalog, Certification, DomainError, Link, LinkKind};

/// A Microsoft Certification ID (MCID): the number Microsoft Learning gives a person's
/// profile. An identifier, not contact data: shown wherever the link is.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Mcid(String);

super::ids::parsed_from_string!(Mcid);

impl Mcid {
    pub fn parse(raw: &str) -> Result<Self, DomainError> {
        let raw = raw.trim();
        if (4..=20).contains(&raw.len()) && raw.bytes().all(|b| b.is_ascii_digit()) {
            Ok(Self(raw.to_owned()))
        } else {
            Err(DomainError::InvalidField { field: "mcid", why: "must be 4-20 digits" })
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A personal account's Microsoft Learning profile, as the Learning feed reports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LearningProfile {
    pub personal: AccountKey,
    pub mcid: Mcid,
}

impl LearningProfile {
    pub fn parse(personal: AccountKey, mcid: &str) -> Result<Self, DomainError> {
        if !personal.tenant.is_consumer() {
            return Err(DomainError::NotAPersonalAccount);
        }
        Ok(Self { personal, mcid: Mcid::parse(mcid)? })
    }
}

/// Why an achievement credits nothing, in the order they are told: the first one that would
/// still stop it counting once the later ones were fixed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NotCounting {
    /// The catalog credits it to no area (not listed, or only at the Fundamentals level).
    NotInCatalog,
    Expired,
    /// The personal account holding it is not linked to this person for its source.
    NotLinked,
}

/// One achievement in its owner's view.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OwnAchievement {
    pub achievement: Certification,
    /// Unexpired and expiring within the renewal window.
    pub expiring_soon: bool,
    /// The areas it credits to the person's organisation, or why it credits none.
    pub counts: Result<Vec<AreaId>, NotCounting>,
}

/// Every achievement of a person's personal accounts (those of their `active` links, and
/// any they held before), in a stable order (account as listed, then source and id), each
/// with what it does for their organisation now.
pub fn own_achievements<'a>(
    catalog: &Catalog,
    active: &[Link],
    achievements: impl IntoIterator<Item = (&'a AccountKey, &'a [Certification])>,
    now: DateTime<Utc>,
    expiring_soon: Duration,
) -> Vec<OwnAchievement> {
    let linked = |personal: &AccountKey, source: LinkKind| active.iter().any(|l| l.kind == source && &l.personal == personal);
    let mut view = Vec::new();
    for (personal, theirs) in achievements {
        let mut theirs: Vec<&Certification> = theirs.iter().collect();
        theirs.sort_by(|a, b| (a.source.key(), &a.id).cmp(&(b.source.key(), &b.id)));
        for achievement in theirs {
            let expired = achievement.expired || achievement.is_past_expiry(now);
            let areas = catalog.areas_of(achievement.source, &achievement.id);
            let counts = if areas.is_empty() {
                Err(NotCounting::NotInCatalog)
            } else if expired {
                Err(NotCounting::Expired)
            } else if !linked(personal, achievement.source) {
                Err(NotCounting::NotLinked)
            } else {
                Ok(areas.to_vec())
            };
            let expiring_soon = !expired && achievement.expires_at.is_some_and(|at| at - now <= expiring_soon);
            view.push(OwnAchievement { achievement: achievement.clone(), expiring_soon, counts });
        }
    }
    view
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{CONSUMER_TENANT, CertificationId, NewLink, PersonalProfile};

    fn personal(n: u32) -> AccountKey {
        AccountKey::parse(CONSUMER_TENANT, &format!("00000000-0000-0000-0000-{n:012x}")).unwrap()
    }

    fn achievement(p: u32, source: LinkKind, id: &str, expires_in_days: Option<i64>, now: DateTime<Utc>) -> Certification {
        Certification {
            personal: personal(p),
            source,
            id: CertificationId::parse(id).unwrap(),
            earned_at: now - Duration::days(400),
            expires_at: expires_in_days.map(|d| now + Duration::days(d)),
            expired: false,
        }
    }

    fn active_link(kind: LinkKind, p: u32, now: DateTime<Utc>) -> Link {
        let new = NewLink {
            kind,
            work: AccountKey::parse("11111111-1111-1111-1111-111111111111", "00000000-0000-0000-0000-000000000001").unwrap(),
            work_upn: String::new(),
            personal: personal(p),
            personal_sub: String::new(),
            profile: PersonalProfile::default(),
        };
        match crate::domain::plan_link(new, crate::domain::LinkMode::default(), None, None, now).unwrap() {
            crate::domain::LinkPlan::Create { create, .. } => create,
            crate::domain::LinkPlan::Unchanged(link) => link,
        }
    }

    #[test]
    fn each_achievement_says_what_it_credits_or_why_not() {
        let now = Utc::now();
        let catalog = Catalog::default_catalog();
        let ml = LinkKind::MicrosoftLearning;
        let pu = LinkKind::PartnerUniversity;
        let accounts = [active_link(ml, 1, now)];
        let mine = [
            achievement(1, ml, "azure-administrator-associate", Some(400), now),
            achievement(1, ml, "azure-developer-associate", Some(90), now),
            achievement(1, ml, "azure-fundamentals", None, now),
            achievement(1, ml, "m365-administrator-expert", Some(-1), now),
            // Of the Learning-linked account, but Partner University's: not linked for it.
            achievement(1, pu, "pu-security-technical-assessment", None, now),
        ];
        let former = [achievement(2, ml, "security-operations-analyst-associate", None, now)];
        let view =
            own_achievements(&catalog, &accounts, [(&personal(1), &mine[..]), (&personal(2), &former[..])], now, Duration::days(180));
        let got: Vec<_> = view.iter().map(|v| (v.achievement.id.as_str(), v.expiring_soon, v.counts.clone())).collect();
        assert_eq!(
            got,
            [
                ("azure-administrator-associate", false, Ok(vec!["infrastructure-azure".to_owned()])),
                ("azure-developer-associate", true, Ok(vec!["digital-app-innovation-azure".to_owned()])),
                ("azure-fundamentals", false, Err(NotCounting::NotInCatalog)),
                ("m365-administrator-expert", false, Err(NotCounting::Expired)),
                ("pu-security-technical-assessment", false, Err(NotCounting::NotLinked)),
                ("security-operations-analyst-associate", false, Err(NotCounting::NotLinked)),
            ]
        );
        // A catalog that no longer lists an achievement credits it nowhere.
        let smaller = Catalog::parse("[areas.modern-work]\nname = \"Modern Work\"\n").unwrap();
        let view = own_achievements(&smaller, &accounts, [(&personal(1), &mine[..1])], now, Duration::days(180));
        assert_eq!(view[0].counts, Err(NotCounting::NotInCatalog));
    }

    #[test]
    fn mcids_are_digits_of_personal_accounts() {
        assert_eq!(LearningProfile::parse(personal(1), " 990123456 ").unwrap().mcid.as_str(), "990123456");
        for bad in ["", "123", "12345678901234567890123", "99O123456", "jordan@outlook.example"] {
            assert!(LearningProfile::parse(personal(1), bad).is_err(), "{bad:?}");
        }
        let work = AccountKey::parse("11111111-1111-1111-1111-111111111111", "00000000-0000-0000-0000-000000000001").unwrap();
        assert_eq!(LearningProfile::parse(work, "990123456"), Err(DomainError::NotAPersonalAccount));
    }
}
