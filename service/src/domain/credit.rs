//! Certification credit: which certifications count for which competency area (the catalog),
//! and what one person contributes to their organisation's credit. An organisation's credit
//! is the sum of the contributions of the people actively linked to it for Microsoft
//! Learning; every incremental update subtracts a person's old contribution and adds the new
//! one, so incremental and recomputed credit agree by construction.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{AccountKey, DomainError};

/// A certification id of the Learning feed (lowercase, digits, `-`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct CertificationId(String);

super::ids::parsed_from_string!(CertificationId);

impl CertificationId {
    pub fn parse(raw: &str) -> Result<Self, DomainError> {
        let raw = raw.trim();
        let ok = (2..=100).contains(&raw.len()) && raw.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if ok {
            Ok(Self(raw.to_owned()))
        } else {
            Err(DomainError::InvalidField { field: "certification_id", why: "must be 2-100 of a-z, 0-9 and -" })
        }
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A competency area id, e.g. `infrastructure-azure`.
pub type AreaId = String;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    Fundamentals,
    Associate,
    Expert,
    Specialty,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CatalogFile {
    areas: BTreeMap<AreaId, AreaFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AreaFile {
    name: String,
    certifications: BTreeMap<String, Level>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Area {
    pub id: AreaId,
    pub name: String,
}

/// Certification ids → the areas they count for.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    areas: Vec<Area>,
    counts_for: HashMap<CertificationId, Vec<AreaId>>,
    known: HashMap<CertificationId, Level>,
}

pub const DEFAULT_CATALOG: &str = include_str!("../../catalog/default.toml");

impl Catalog {
    pub fn parse(toml_text: &str) -> Result<Self, String> {
        let file: CatalogFile = toml::from_str(toml_text).map_err(|e| e.to_string())?;
        let mut catalog = Catalog::default();
        for (id, area) in file.areas {
            for (cert, level) in area.certifications {
                let cert = CertificationId::parse(&cert).map_err(|e| format!("areas.{id}: {e}"))?;
                catalog.known.insert(cert.clone(), level);
                if level != Level::Fundamentals {
                    catalog.counts_for.entry(cert).or_default().push(id.clone());
                }
            }
            catalog.areas.push(Area { id, name: area.name });
        }
        Ok(catalog)
    }

    pub fn default_catalog() -> Self {
        Self::parse(DEFAULT_CATALOG).unwrap_or_else(|e| unreachable!("the shipped catalog parses: {e}"))
    }

    pub fn areas(&self) -> &[Area] {
        &self.areas
    }

    pub fn knows(&self, id: &CertificationId) -> bool {
        self.known.contains_key(id)
    }

    fn areas_of(&self, id: &CertificationId) -> &[AreaId] {
        self.counts_for.get(id).map(Vec::as_slice).unwrap_or_default()
    }
}

/// A passed exam or certification of a personal account, from the Learning feed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Certification {
    pub personal: AccountKey,
    pub id: CertificationId,
    pub earned_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    /// Set by the expiry sweep (or at recording when already past): no longer counts.
    pub expired: bool,
}

impl Certification {
    /// A certification as the Learning feed reports it, held to the rules: it belongs to a
    /// personal account, its id is in the catalog, and it expires (if ever) after it was earned.
    pub fn parse(
        catalog: &Catalog,
        personal: AccountKey,
        id: CertificationId,
        earned_at: DateTime<Utc>,
        expires_at: Option<DateTime<Utc>>,
    ) -> Result<Self, DomainError> {
        if !personal.tenant.is_consumer() {
            return Err(DomainError::NotAPersonalAccount);
        }
        if !catalog.knows(&id) {
            return Err(DomainError::UnknownCertification { id: id.as_str().to_owned() });
        }
        if expires_at.is_some_and(|e| e <= earned_at) {
            return Err(DomainError::InvalidField { field: "expires_at", why: "must be after earned_at" });
        }
        Ok(Self { personal, id, earned_at, expires_at, expired: false })
    }

    pub fn is_past_expiry(&self, now: DateTime<Utc>) -> bool {
        self.expires_at.is_some_and(|at| at <= now)
    }

    /// Whether `incoming`, a record of the same certification, replaces this one: it expires
    /// later (or never), or revives an expired one.
    pub fn renewed_by(&self, incoming: &Certification) -> bool {
        match (self.expires_at, incoming.expires_at) {
            _ if self.expired && !incoming.expired => true,
            (Some(_), None) => true,
            (Some(a), Some(b)) => b > a,
            _ => false,
        }
    }
}

/// People and certifications of one area.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tally {
    pub people: i64,
    pub certifications: i64,
}

/// Credit per area; areas with nothing are absent, so equal credit compares equal.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credit(pub BTreeMap<AreaId, Tally>);

impl Credit {
    /// What one person with these certifications contributes: each area they hold an
    /// unexpired qualifying certification in counts them once, and each such certification.
    pub fn of_person(catalog: &Catalog, certifications: &[Certification]) -> Credit {
        let mut credit = Credit::default();
        for cert in certifications.iter().filter(|c| !c.expired) {
            for area in catalog.areas_of(&cert.id) {
                credit.0.entry(area.clone()).or_default().certifications += 1;
            }
        }
        for tally in credit.0.values_mut() {
            tally.people = 1;
        }
        credit
    }

    pub fn add(&mut self, other: &Credit, sign: i64) {
        for (area, t) in &other.0 {
            let entry = self.0.entry(area.clone()).or_default();
            entry.people += sign * t.people;
            entry.certifications += sign * t.certifications;
        }
        self.0.retain(|_, t| *t != Tally::default());
    }

    /// Areas whose tallies differ, with (stored, recomputed).
    pub fn drift_from(&self, truth: &Credit) -> BTreeMap<AreaId, (Tally, Tally)> {
        let areas: std::collections::BTreeSet<&AreaId> = self.0.keys().chain(truth.0.keys()).collect();
        areas
            .into_iter()
            .filter_map(|a| {
                let (s, t) = (self.0.get(a).copied().unwrap_or_default(), truth.0.get(a).copied().unwrap_or_default());
                (s != t).then(|| (a.clone(), (s, t)))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::CONSUMER_TENANT;

    fn cert(id: &str, expired: bool) -> Certification {
        Certification {
            personal: AccountKey::parse(CONSUMER_TENANT, "00000000-0000-0000-0000-000000000001").unwrap(),
            id: CertificationId::parse(id).unwrap(),
            earned_at: Utc::now(),
            expires_at: None,
            expired,
        }
    }

    #[test]
    fn a_person_counts_once_per_area_and_each_certification_counts() {
        let catalog = Catalog::default_catalog();
        let credit = Credit::of_person(
            &catalog,
            &[
                cert("azure-administrator-associate", false),
                cert("azure-solutions-architect-expert", false), // infrastructure and app innovation
                cert("azure-network-engineer-associate", true),  // expired: nothing
            ],
        );
        assert_eq!(credit.0["infrastructure-azure"], Tally { people: 1, certifications: 2 });
        assert_eq!(credit.0["digital-app-innovation-azure"], Tally { people: 1, certifications: 1 });
        assert_eq!(credit.0.len(), 2);

        let mut org = Credit::default();
        org.add(&credit, 1);
        org.add(&credit, 1);
        assert_eq!(org.0["infrastructure-azure"], Tally { people: 2, certifications: 4 });
        org.add(&credit, -1);
        org.add(&credit, -1);
        assert_eq!(org, Credit::default());
    }

    #[test]
    fn the_feed_reports_catalogued_certifications_of_personal_accounts() {
        let catalog = Catalog::default_catalog();
        let personal = AccountKey::parse(CONSUMER_TENANT, "00000000-0000-0000-0000-000000000001").unwrap();
        let work = AccountKey::parse("3b1d6a6e-5a3c-4f0a-9c7e-2f6b8e1d4c01", "00000000-0000-0000-0000-000000000001").unwrap();
        let id = |raw: &str| CertificationId::parse(raw).unwrap();
        let now = Utc::now();
        let parse = |who: &AccountKey, cert: &str, expires| Certification::parse(&catalog, who.clone(), id(cert), now, expires);
        assert!(parse(&personal, "azure-administrator-associate", None).is_ok());
        assert_eq!(parse(&work, "azure-administrator-associate", None), Err(DomainError::NotAPersonalAccount));
        assert!(matches!(parse(&personal, "not-in-the-catalog", None), Err(DomainError::UnknownCertification { .. })));
        assert!(matches!(
            parse(&personal, "azure-administrator-associate", Some(now)),
            Err(DomainError::InvalidField { field: "expires_at", .. })
        ));
    }

    #[test]
    fn a_later_expiry_or_a_revival_renews() {
        let now = Utc::now();
        let with = |expires_at: Option<DateTime<Utc>>, expired| Certification {
            expires_at,
            expired,
            ..cert("azure-administrator-associate", expired)
        };
        let year = chrono::Duration::days(365);
        assert!(with(Some(now), false).renewed_by(&with(Some(now + year), false)));
        assert!(with(Some(now), false).renewed_by(&with(None, false)));
        assert!(!with(Some(now + year), false).renewed_by(&with(Some(now), false)));
        assert!(!with(None, false).renewed_by(&with(Some(now + year), false)));
        assert!(with(Some(now), true).renewed_by(&with(Some(now), false)), "an expired one revived");
        assert!(!with(Some(now), false).renewed_by(&with(Some(now), false)), "the same record again");
    }

    #[test]
    fn the_shipped_catalog_parses_and_bad_ids_are_refused() {
        assert_eq!(Catalog::default_catalog().areas().len(), 6);
        assert!(CertificationId::parse("AZ-104").is_err());
        assert!(Catalog::parse("[areas.x]\nname = \"X\"\ncertifications = { \"Bad Id\" = \"associate\" }").is_err());
    }
}
