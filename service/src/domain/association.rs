//! Partner Center's limit on associations: "three associations allowed each year… a 30 day
//! cool off period". Counted per personal account and kind over its link history: every link
//! created for it (a first link, a relink after removal, a replacement, a move to another
//! organisation) is an association; an already active pair signing in again is not.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use super::{DomainError, Link, LinkKind, Result};

/// The window `associations_per_year` counts in: the last 365 days, rolling.
pub const ASSOCIATION_YEAR: Duration = Duration::days(365);

/// The most associations a record keeps (and so the highest `associations_per_year`): a kind
/// without a limit still keeps a bounded record, ready for a limit set later.
pub const MAX_PER_YEAR: u32 = 100;

/// The longest cool-off between associations, in days (a year).
pub const MAX_DAYS_BETWEEN: u32 = 365;

/// `[kinds.<kind>] associations_per_year` and `days_between_associations`; 0 is no limit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AssociationLimit {
    pub per_year: u32,
    pub days_between: u32,
}

/// Which part of the limit a refused association met.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LimitMet {
    /// `days_between_associations` since the last one have not passed.
    CoolOff { days: u32 },
    /// `associations_per_year` were made in the last 365 days.
    PerYear { count: u32 },
}

impl AssociationLimit {
    pub const NONE: Self = Self { per_year: 0, days_between: 0 };

    /// Partner Center's documented limit for Microsoft Learning; none for Partner University.
    pub fn default_for(kind: LinkKind) -> Self {
        match kind {
            LinkKind::MicrosoftLearning => Self { per_year: 3, days_between: 30 },
            LinkKind::PartnerUniversity => Self::NONE,
        }
    }

    pub fn is_none(self) -> bool {
        self == Self::NONE
    }

    /// The first instant after `history` at which one more association keeps within the
    /// limit, and the part of the limit that decides it; `None` when nothing in the history
    /// constrains (the date may already be past).
    pub fn next_allowed(self, history: &Associations) -> Option<(DateTime<Utc>, LimitMet)> {
        let times = &history.0;
        let cool_off = (self.days_between > 0)
            .then(|| times.last())
            .flatten()
            .map(|last| (*last + Duration::days(self.days_between.into()), LimitMet::CoolOff { days: self.days_between }));
        let per_year = (self.per_year > 0 && times.len() >= self.per_year as usize)
            .then(|| (times[times.len() - self.per_year as usize] + ASSOCIATION_YEAR, LimitMet::PerYear { count: self.per_year }));
        match (cool_off, per_year) {
            (Some(a), Some(b)) => Some(if b.0 > a.0 { b } else { a }),
            (a, b) => a.or(b),
        }
    }

    /// Refuses one more association at `now` when it would break the limit, naming the date
    /// from which it would not.
    pub fn check(self, kind: LinkKind, history: &Associations, now: DateTime<Utc>) -> Result<()> {
        match self.next_allowed(history) {
            Some((next_allowed, met)) if now < next_allowed => Err(DomainError::AssociationLimited { kind, next_allowed, met }),
            _ => Ok(()),
        }
    }
}

/// A personal account's associations of one kind in the last year, oldest first, at most
/// [`MAX_PER_YEAR`] of them: what the limit is checked against.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Associations(#[serde(with = "super::compact::times")] Vec<DateTime<Utc>>);

impl Associations {
    /// The stored record, or for an account with none yet (its links predate the records)
    /// the creation of the link that holds it now, if one does.
    pub fn recorded_or_held(recorded: Option<Associations>, holder: Option<&Link>) -> Self {
        recorded.unwrap_or_else(|| Self(holder.map(|link| link.created_at).into_iter().collect()))
    }

    /// Adds an association at `now`, forgetting those older than a year and beyond the cap.
    pub fn record(&mut self, now: DateTime<Utc>) {
        self.0.push(now);
        self.0.retain(|at| *at > now - ASSOCIATION_YEAR);
        let excess = self.0.len().saturating_sub(MAX_PER_YEAR as usize);
        self.0.drain(..excess);
    }

    pub fn times(&self) -> &[DateTime<Utc>] {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KIND: LinkKind = LinkKind::MicrosoftLearning;

    fn t0() -> DateTime<Utc> {
        "2026-01-10T09:00:00Z".parse().unwrap()
    }

    fn days(n: i64) -> Duration {
        Duration::days(n)
    }

    fn refusal(limit: AssociationLimit, history: &Associations, now: DateTime<Utc>) -> Option<(DateTime<Utc>, LimitMet)> {
        match limit.check(KIND, history, now) {
            Ok(()) => None,
            Err(DomainError::AssociationLimited { kind, next_allowed, met }) => {
                assert_eq!(kind, KIND);
                Some((next_allowed, met))
            }
            Err(other) => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_cool_off_follows_each_association() {
        let limit = AssociationLimit::default_for(KIND);
        let mut history = Associations::default();
        assert_eq!(refusal(limit, &history, t0()), None, "a first association is always allowed");
        history.record(t0());
        assert_eq!(refusal(limit, &history, t0() + days(10)), Some((t0() + days(30), LimitMet::CoolOff { days: 30 })));
        assert_eq!(refusal(limit, &history, t0() + days(30) - Duration::seconds(1)).map(|r| r.0), Some(t0() + days(30)));
        assert_eq!(refusal(limit, &history, t0() + days(30)), None, "allowed from the date named");
    }

    #[test]
    fn a_fourth_association_within_a_year_waits_for_the_first_to_age_out() {
        let limit = AssociationLimit::default_for(KIND);
        let mut history = Associations::default();
        for n in 0..3 {
            history.record(t0() + days(40 * n));
        }
        // 30 days after the third is past the cool-off, but three were made this year.
        let at = t0() + days(120);
        assert_eq!(refusal(limit, &history, at), Some((t0() + ASSOCIATION_YEAR, LimitMet::PerYear { count: 3 })));
        assert_eq!(refusal(limit, &history, t0() + ASSOCIATION_YEAR), None);
        history.record(t0() + ASSOCIATION_YEAR);
        // Now the window holds days 40, 80 and 365: the next waits for day 40 + 365.
        assert_eq!(
            refusal(limit, &history, t0() + ASSOCIATION_YEAR + days(31)),
            Some((t0() + days(40) + ASSOCIATION_YEAR, LimitMet::PerYear { count: 3 }))
        );
    }

    #[test]
    fn the_later_of_the_two_dates_is_named() {
        let limit = AssociationLimit { per_year: 2, days_between: 30 };
        let mut history = Associations::default();
        history.record(t0());
        history.record(t0() + days(360));
        // The yearly window frees up at t0 + 365, but the cool-off runs to t0 + 390.
        assert_eq!(refusal(limit, &history, t0() + days(362)), Some((t0() + days(390), LimitMet::CoolOff { days: 30 })));
    }

    #[test]
    fn no_limit_refuses_nothing_and_the_record_stays_bounded() {
        let mut history = Associations::default();
        for n in 0..500 {
            history.record(t0() + Duration::minutes(n));
            assert_eq!(refusal(AssociationLimit::NONE, &history, t0() + Duration::minutes(n)), None);
        }
        assert_eq!(history.times().len(), MAX_PER_YEAR as usize);
        assert_eq!(history.times().last(), Some(&(t0() + Duration::minutes(499))), "the newest are kept");
        let mut aged = history.clone();
        aged.record(t0() + ASSOCIATION_YEAR + days(1));
        assert_eq!(aged.times(), &[t0() + ASSOCIATION_YEAR + days(1)], "a year later the old ones are forgotten");
    }

    #[test]
    fn an_account_without_a_record_counts_the_link_holding_it() {
        let account = |tenant: &str| crate::domain::AccountKey::parse(tenant, "00000000-0000-0000-0000-000000000001").unwrap();
        let link = Link {
            id: crate::domain::LinkId::random(),
            kind: KIND,
            work: account("11111111-1111-1111-1111-111111111111"),
            work_upn: String::new(),
            personal: account(crate::domain::CONSUMER_TENANT),
            personal_sub: String::new(),
            profile: Default::default(),
            created_at: t0(),
            removal: None,
            mcid: None,
        };
        let history = Associations::recorded_or_held(None, Some(&link));
        assert_eq!(history.times(), &[t0()]);
        assert_eq!(Associations::recorded_or_held(None, None).times(), &[] as &[DateTime<Utc>]);
        let recorded = Associations(vec![t0() + days(3)]);
        assert_eq!(Associations::recorded_or_held(Some(recorded.clone()), Some(&link)), recorded, "a record wins");
    }
}
