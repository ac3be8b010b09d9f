//! How stored types look to a serializer that is not human-readable (the store's compact
//! record format): times as seconds and nanoseconds, GUIDs and link ids as their 16 bytes.
//! To a human-readable one (JSON: records of before the compact format, logs) they keep
//! their text forms, so both read the same values back.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer, de::Error};

/// `#[serde(with = "compact::time")]` on a `DateTime<Utc>`.
pub mod time {
    use super::*;

    pub fn serialize<S: Serializer>(at: &DateTime<Utc>, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            at.serialize(serializer)
        } else {
            (at.timestamp(), at.timestamp_subsec_nanos()).serialize(serializer)
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<DateTime<Utc>, D::Error> {
        if deserializer.is_human_readable() {
            return DateTime::deserialize(deserializer);
        }
        let (seconds, nanos) = <(i64, u32)>::deserialize(deserializer)?;
        DateTime::from_timestamp(seconds, nanos).ok_or_else(|| D::Error::custom("a time out of range"))
    }
}

/// A time in either form, for `Option` and `Vec` fields.
#[derive(Clone, Copy, Serialize, Deserialize)]
#[serde(transparent)]
struct At(#[serde(with = "time")] DateTime<Utc>);

/// `#[serde(with = "compact::option_time")]` on an `Option<DateTime<Utc>>`.
pub mod option_time {
    use super::*;

    pub fn serialize<S: Serializer>(at: &Option<DateTime<Utc>>, serializer: S) -> Result<S::Ok, S::Error> {
        at.map(At).serialize(serializer)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<DateTime<Utc>>, D::Error> {
        Ok(Option::<At>::deserialize(deserializer)?.map(|at| at.0))
    }
}

/// `#[serde(with = "compact::times")]` on a `Vec<DateTime<Utc>>`.
pub mod times {
    use super::*;

    pub fn serialize<S: Serializer>(times: &[DateTime<Utc>], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(times.iter().copied().map(At))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<DateTime<Utc>>, D::Error> {
        Ok(Vec::<At>::deserialize(deserializer)?.into_iter().map(|at| at.0).collect())
    }
}

/// The 16 bytes of 32 hex digits, dashes skipped (a canonical GUID or a link id).
/// On the path of every record written: no allocation.
pub(super) fn hex_bytes(hex: &str) -> Option<[u8; 16]> {
    let mut digits = hex.bytes().filter(|b| *b != b'-').map(|b| (b as char).to_digit(16));
    let mut bytes = [0u8; 16];
    for byte in &mut bytes {
        let (high, low) = (digits.next()??, digits.next()??);
        *byte = (high * 16 + low) as u8;
    }
    digits.next().is_none().then_some(bytes)
}

/// A GUID's canonical form (`8-4-4-4-12` lowercase hex digits) of its 16 bytes.
pub(super) fn guid_string(bytes: &[u8; 16]) -> String {
    let hex = super::ids::hex(bytes);
    format!("{}-{}-{}-{}-{}", &hex[..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..])
}

/// Serialize and Deserialize for an identifier held as text: the text when human-readable,
/// else its 16 bytes (`$to_text` rebuilds the text, which then goes through `parse`).
macro_rules! compact_id {
    ($id:ty, $to_text:path) => {
        impl serde::Serialize for $id {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                if serializer.is_human_readable() {
                    return serializer.serialize_str(&self.0);
                }
                // Parsed on the way in: always 32 hex digits.
                let bytes = $crate::domain::compact::hex_bytes(&self.0)
                    .ok_or_else(|| <S::Error as serde::ser::Error>::custom("an identifier that is not 16 bytes"))?;
                bytes.serialize(serializer)
            }
        }
        impl<'de> serde::Deserialize<'de> for $id {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = if deserializer.is_human_readable() {
                    String::deserialize(deserializer)?
                } else {
                    $to_text(&<[u8; 16]>::deserialize(deserializer)?)
                };
                Self::parse(&text).map_err(<D::Error as serde::de::Error>::custom)
            }
        }
    };
}
pub(super) use compact_id;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{AccountKey, CONSUMER_TENANT, LinkId};

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Stored {
        key: AccountKey,
        id: LinkId,
        #[serde(with = "time")]
        at: DateTime<Utc>,
        #[serde(with = "option_time")]
        until: Option<DateTime<Utc>>,
        #[serde(with = "times")]
        history: Vec<DateTime<Utc>>,
    }

    /// Both forms read back what was written, to the nanosecond; JSON keeps the text forms.
    #[test]
    fn both_forms_read_back_what_was_written() {
        let at = DateTime::parse_from_rfc3339("2026-11-30T09:15:42.123456789Z").unwrap().to_utc();
        let value = Stored {
            key: AccountKey::parse(CONSUMER_TENANT, "00000000-0000-4000-9000-0000000000ab").unwrap(),
            id: LinkId::random(),
            at,
            until: Some(at + chrono::Duration::days(3)),
            history: vec![at, at - chrono::Duration::nanoseconds(1)],
        };
        let json = serde_json::to_string(&value).unwrap();
        assert!(json.contains(CONSUMER_TENANT) && json.contains("2026-11-30T09:15:42.123456789Z"), "{json}");
        assert_eq!(serde_json::from_str::<Stored>(&json).unwrap(), value);
        let compact = postcard::to_stdvec(&value).unwrap();
        assert_eq!(postcard::from_bytes::<Stored>(&compact).unwrap(), value);
        assert!(compact.len() * 3 < json.len(), "{} compact bytes against {} of JSON", compact.len(), json.len());
    }

    /// A compact identifier is parsed like a text one: bytes that make no valid id fail.
    #[test]
    fn compact_bytes_go_through_parse() {
        assert_eq!(guid_string(&[0xab; 16]), "abababab-abab-abab-abab-abababababab");
        assert_eq!(hex_bytes("abababab-abab-abab-abab-abababababab"), Some([0xab; 16]));
        assert_eq!(hex_bytes("abab"), None);
    }
}
