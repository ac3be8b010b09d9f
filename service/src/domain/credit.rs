//! Achievement credit: which achievements count for which competency area (the catalog), and
//! what one person contributes to their organisation's credit. Achievements come from two
//! sources, each counting through the link of its kind: Microsoft Learning certifications
//! through the person's Microsoft Learning link, Partner University assessments and training
//! through their Partner University link. A person is a work user: whatever their links bring,
//! they count once per area. An organisation's credit is the sum of its people's
//! contributions; every incremental update subtracts a person's old contribution and adds the
//! new one, so incremental and recomputed credit agree by construction.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{AccountKey, DomainError, LinkKind};

/// An achievement id of either source (lowercase, digits, `-`).
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

/// What an achievement is: a Microsoft Learning certification's level, or a Partner
/// University assessment or completed training.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    Fundamentals,
    Associate,
    Expert,
    Specialty,
    Assessment,
    Training,
}

impl Level {
    /// Whether achievements of this level can come from `source`.
    fn comes_from(self, source: LinkKind) -> bool {
        match source {
            LinkKind::MicrosoftLearning => !matches!(self, Level::Assessment | Level::Training),
            LinkKind::PartnerUniversity => matches!(self, Level::Assessment | Level::Training),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CatalogFile {
    areas: BTreeMap<AreaId, AreaFile>,
    /// What a person reads for each achievement (its id when none is given).
    #[serde(default)]
    titles: TitlesFile,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TitlesFile {
    #[serde(default)]
    certifications: BTreeMap<String, String>,
    #[serde(default)]
    partner_university: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AreaFile {
    name: String,
    /// Microsoft Learning certifications.
    #[serde(default)]
    certifications: BTreeMap<String, Level>,
    /// Partner University assessments and training.
    #[serde(default)]
    partner_university: BTreeMap<String, Level>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Area {
    pub id: AreaId,
    pub name: String,
}

/// Achievements (source and id) → the areas they count for.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    areas: Vec<Area>,
    counts_for: HashMap<(LinkKind, CertificationId), Vec<AreaId>>,
    known: HashMap<(LinkKind, CertificationId), Level>,
    titles: HashMap<(LinkKind, CertificationId), String>,
}

pub const DEFAULT_CATALOG: &str = include_str!("../../catalog/default.toml");

impl Catalog {
    pub fn parse(toml_text: &str) -> Result<Self, String> {
        let file: CatalogFile = toml::from_str(toml_text).map_err(|e| e.to_string())?;
        let mut catalog = Catalog::default();
        for (id, area) in file.areas {
            let sources = [
                (LinkKind::MicrosoftLearning, "certifications", area.certifications),
                (LinkKind::PartnerUniversity, "partner_university", area.partner_university),
            ];
            for (source, table, entries) in sources {
                for (entry, level) in entries {
                    let entry = CertificationId::parse(&entry).map_err(|e| format!("areas.{id}.{table}: {e}"))?;
                    if !level.comes_from(source) {
                        return Err(format!("areas.{id}.{table}.{}: {level:?} is not a level of {source}", entry.as_str()));
                    }
                    catalog.known.insert((source, entry.clone()), level);
                    if level != Level::Fundamentals {
                        catalog.counts_for.entry((source, entry)).or_default().push(id.clone());
                    }
                }
            }
            catalog.areas.push(Area { id, name: area.name });
        }
        let titles = [
            (LinkKind::MicrosoftLearning, "certifications", file.titles.certifications),
            (LinkKind::PartnerUniversity, "partner_university", file.titles.partner_university),
        ];
        for (source, table, entries) in titles {
            for (entry, title) in entries {
                let entry = CertificationId::parse(&entry).map_err(|e| format!("titles.{table}: {e}"))?;
                if !catalog.known.contains_key(&(source, entry.clone())) {
                    return Err(format!("titles.{table}.{}: no area lists it", entry.as_str()));
                }
                if title.trim().is_empty() || title.len() > 200 {
                    return Err(format!("titles.{table}.{}: a title is 1-200 bytes", entry.as_str()));
                }
                catalog.titles.insert((source, entry), title);
            }
        }
        Ok(catalog)
    }

    pub fn default_catalog() -> Self {
        Self::parse(DEFAULT_CATALOG).unwrap_or_else(|e| unreachable!("the shipped catalog parses: {e}"))
    }

    pub fn areas(&self) -> &[Area] {
        &self.areas
    }

    pub fn knows(&self, source: LinkKind, id: &CertificationId) -> bool {
        self.known.contains_key(&(source, id.clone()))
    }

    /// What a person reads for an achievement: its catalog title, or its id.
    pub fn title<'a>(&'a self, source: LinkKind, id: &'a CertificationId) -> &'a str {
        self.titles.get(&(source, id.clone())).map_or(id.as_str(), String::as_str)
    }

    /// The area's display name (its id for an area the catalog no longer has).
    pub fn area_name<'a>(&'a self, id: &'a str) -> &'a str {
        self.areas.iter().find(|a| a.id == id).map_or(id, |a| a.name.as_str())
    }

    /// The areas an achievement counts for (none for what the catalog does not list).
    pub fn areas_of(&self, source: LinkKind, id: &CertificationId) -> &[AreaId] {
        self.counts_for.get(&(source, id.clone())).map(Vec::as_slice).unwrap_or_default()
    }
}

fn microsoft_learning() -> LinkKind {
    LinkKind::MicrosoftLearning
}

/// An achievement of a personal account, from the Learning feed: a passed exam or
/// certification (Microsoft Learning), or an assessment or completed training (Partner
/// University).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Certification {
    pub personal: AccountKey,
    /// Where it comes from, and so the link it counts through (records from before there were
    /// two sources are Microsoft Learning's).
    #[serde(default = "microsoft_learning")]
    pub source: LinkKind,
    pub id: CertificationId,
    #[serde(with = "super::compact::time")]
    pub earned_at: DateTime<Utc>,
    #[serde(with = "super::compact::option_time")]
    pub expires_at: Option<DateTime<Utc>>,
    /// Set by the expiry sweep (or at recording when already past): no longer counts.
    pub expired: bool,
}

impl Certification {
    /// An achievement as the Learning feed reports it, held to the rules: it belongs to a
    /// personal account, its source's catalog lists it, and it expires (if ever) after it
    /// was earned.
    pub fn parse(
        catalog: &Catalog,
        personal: AccountKey,
        source: LinkKind,
        id: CertificationId,
        earned_at: DateTime<Utc>,
        expires_at: Option<DateTime<Utc>>,
    ) -> Result<Self, DomainError> {
        if !personal.tenant.is_consumer() {
            return Err(DomainError::NotAPersonalAccount);
        }
        if !catalog.knows(source, &id) {
            return Err(DomainError::UnknownCertification { id: id.as_str().to_owned() });
        }
        if expires_at.is_some_and(|e| e <= earned_at) {
            return Err(DomainError::InvalidField { field: "expires_at", why: "must be after earned_at" });
        }
        Ok(Self { personal, source, id, earned_at, expires_at, expired: false })
    }

    /// Whether `other` is a record of the same achievement (same source and id).
    pub fn same_as(&self, other: &Certification) -> bool {
        self.source == other.source && self.id == other.id
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
    /// What one person with these achievements contributes: each area they hold an unexpired
    /// qualifying achievement in counts them once, and each such achievement.
    pub fn of_person<'a>(catalog: &Catalog, achievements: impl IntoIterator<Item = &'a Certification>) -> Credit {
        let mut credit = Credit::default();
        for cert in achievements.into_iter().filter(|c| !c.expired) {
            for area in catalog.areas_of(cert.source, &cert.id) {
                credit.0.entry(area.clone()).or_default().certifications += 1;
            }
        }
        for tally in credit.0.values_mut() {
            tally.people = 1;
        }
        credit
    }

    /// What a personal account's achievements bring through a link of `kind`: those of that
    /// source alone.
    pub fn through(catalog: &Catalog, kind: LinkKind, achievements: &[Certification]) -> Credit {
        Self::of_person(catalog, achievements.iter().filter(|c| c.source == kind))
    }

    /// Per area, the achievements that count through a link of `kind`: that source's,
    /// unexpired, in the catalog — what makes up [`Self::through`], one by one.
    pub fn counting_through(catalog: &Catalog, kind: LinkKind, achievements: &[Certification]) -> BTreeMap<AreaId, Vec<CertificationId>> {
        let mut areas: BTreeMap<AreaId, Vec<CertificationId>> = BTreeMap::new();
        for cert in achievements.iter().filter(|c| c.source == kind && !c.expired) {
            for area in catalog.areas_of(cert.source, &cert.id) {
                areas.entry(area.clone()).or_default().push(cert.id.clone());
            }
        }
        areas
    }

    /// One person's contribution joined with more of the same person's (from another link):
    /// the achievements add up, the person still counts once per area. Exact because the
    /// two come from different sources, so no achievement is in both.
    pub fn join_person(&mut self, more: &Credit) {
        for (area, t) in &more.0 {
            let entry = self.0.entry(area.clone()).or_default();
            entry.certifications += t.certifications;
            entry.people = 1;
        }
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

/// An organisation's people as its active links are read one by one, in any order: each work
/// user's contribution joined across their links, then the people summed.
#[derive(Debug, Default)]
pub struct People(HashMap<AccountKey, Credit>);

impl People {
    /// What active `link` brings, given its personal account's `achievements`.
    pub fn add(&mut self, catalog: &Catalog, link: &super::Link, achievements: &[Certification]) {
        let brought = Credit::through(catalog, link.kind, achievements);
        if !brought.0.is_empty() {
            self.0.entry(link.work.clone()).or_default().join_person(&brought);
        }
    }

    pub fn credit(&self) -> Credit {
        let mut credit = Credit::default();
        for person in self.0.values() {
            credit.add(person, 1);
        }
        credit
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::CONSUMER_TENANT;

    fn cert(id: &str, expired: bool) -> Certification {
        achievement(LinkKind::MicrosoftLearning, id, expired)
    }

    fn achievement(source: LinkKind, id: &str, expired: bool) -> Certification {
        Certification {
            personal: AccountKey::parse(CONSUMER_TENANT, "00000000-0000-0000-0000-000000000001").unwrap(),
            source,
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
        let ml = LinkKind::MicrosoftLearning;
        let parse = |who: &AccountKey, cert: &str, expires| Certification::parse(&catalog, who.clone(), ml, id(cert), now, expires);
        assert!(parse(&personal, "azure-administrator-associate", None).is_ok());
        assert_eq!(parse(&work, "azure-administrator-associate", None), Err(DomainError::NotAPersonalAccount));
        assert!(matches!(parse(&personal, "not-in-the-catalog", None), Err(DomainError::UnknownCertification { .. })));
        assert!(matches!(
            parse(&personal, "azure-administrator-associate", Some(now)),
            Err(DomainError::InvalidField { field: "expires_at", .. })
        ));
        // Each source has its own catalog: a Learning id is unknown to Partner University.
        let pu = LinkKind::PartnerUniversity;
        assert!(Certification::parse(&catalog, personal.clone(), pu, id("pu-modern-work-technical-assessment"), now, None).is_ok());
        assert!(matches!(
            Certification::parse(&catalog, personal.clone(), pu, id("azure-administrator-associate"), now, None),
            Err(DomainError::UnknownCertification { .. })
        ));
    }

    #[test]
    fn a_person_counts_once_per_area_whichever_source_brings_it() {
        let catalog = Catalog::default_catalog();
        let learning = [cert("m365-administrator-expert", false)];
        let university = [achievement(LinkKind::PartnerUniversity, "pu-modern-work-technical-assessment", false)];
        let both: Vec<Certification> = learning.iter().chain(&university).cloned().collect();
        // Through each link only its own source counts.
        assert_eq!(Credit::through(&catalog, LinkKind::MicrosoftLearning, &both), Credit::of_person(&catalog, &learning));
        assert_eq!(Credit::through(&catalog, LinkKind::PartnerUniversity, &both), Credit::of_person(&catalog, &university));
        let mut person = Credit::through(&catalog, LinkKind::MicrosoftLearning, &both);
        person.join_person(&Credit::through(&catalog, LinkKind::PartnerUniversity, &both));
        assert_eq!(person.0["modern-work"], Tally { people: 1, certifications: 2 }, "one person, two achievements");
        assert_eq!(person, Credit::of_person(&catalog, &both));
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
        // A level of the other source is a mistake in the file, named.
        let why = Catalog::parse("[areas.x]\nname = \"X\"\npartner_university = { some-exam = \"associate\" }").unwrap_err();
        assert!(why.contains("areas.x.partner_university.some-exam"), "{why}");
        assert!(Catalog::parse("[areas.x]\nname = \"X\"\ncertifications = { an-assessment = \"assessment\" }").is_err());
    }
}
