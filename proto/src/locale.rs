//! The languages idlink speaks to people (English, French, Korean): chosen from a caller's
//! `accept-language`, and how each writes a date in a sentence. The server's messages and the
//! reference portal's pages use the same rules.

use chrono::{DateTime, Datelike, Utc};
use tonic::metadata::MetadataMap;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Locale {
    En,
    Fr,
    Ko,
}

impl Locale {
    /// The first supported language of an `accept-language` value, by preference order.
    pub fn from_accept_language(value: Option<&str>) -> Self {
        let mut ranked: Vec<(f32, &str)> = value
            .unwrap_or_default()
            .split(',')
            .filter_map(|part| {
                let mut pieces = part.trim().split(';');
                let tag = pieces.next()?.trim();
                let q = pieces.find_map(|p| p.trim().strip_prefix("q=")).and_then(|q| q.parse().ok()).unwrap_or(1.0);
                Some((q, tag))
            })
            .collect();
        ranked.sort_by(|a, b| b.0.total_cmp(&a.0));
        for (_, tag) in ranked {
            match tag.split('-').next().unwrap_or_default().to_ascii_lowercase().as_str() {
                "en" => return Locale::En,
                "fr" => return Locale::Fr,
                "ko" => return Locale::Ko,
                _ => {}
            }
        }
        Locale::En
    }

    pub fn from_metadata(metadata: &MetadataMap) -> Self {
        Self::from_accept_language(metadata.get("accept-language").and_then(|v| v.to_str().ok()))
    }

    pub fn tag(self) -> &'static str {
        match self {
            Locale::En => "en-US",
            Locale::Fr => "fr-FR",
            Locale::Ko => "ko-KR",
        }
    }

    pub fn index(self) -> usize {
        match self {
            Locale::En => 0,
            Locale::Fr => 1,
            Locale::Ko => 2,
        }
    }

    /// A day as the locale writes it in prose: "March 3, 2027", "3 mars 2027", "2027년 3월 3일".
    pub fn date(self, at: DateTime<Utc>) -> String {
        const EN: [&str; 12] =
            ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October", "November", "December"];
        const FR: [&str; 12] =
            ["janvier", "février", "mars", "avril", "mai", "juin", "juillet", "août", "septembre", "octobre", "novembre", "décembre"];
        let (year, month, day) = (at.year(), at.month0() as usize, at.day());
        match self {
            Locale::En => format!("{} {day}, {year}", EN[month]),
            // "1er" for the first of the month, as French writes dates.
            Locale::Fr if day == 1 => format!("1er {} {year}", FR[month]),
            Locale::Fr => format!("{day} {} {year}", FR[month]),
            Locale::Ko => format!("{year}년 {}월 {day}일", month + 1),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_language_picks_the_preferred_supported_locale() {
        assert_eq!(Locale::from_accept_language(Some("fr-CA,fr;q=0.9,en;q=0.8")), Locale::Fr);
        assert_eq!(Locale::from_accept_language(Some("de-DE, ko;q=0.5, en;q=0.4")), Locale::Ko);
        assert_eq!(Locale::from_accept_language(Some("en;q=0.1, fr;q=0.9")), Locale::Fr);
        assert_eq!(Locale::from_accept_language(Some("de")), Locale::En);
        assert_eq!(Locale::from_accept_language(None), Locale::En);
    }
}
