//! The change feed: what happened to links, in commit order, with link ids and account ids —
//! never personal email or name.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{Link, LinkId, PersonalProfile};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventType {
    Created,
    Removed,
    /// The personal account moved to another work user: `link` is the new link, `previous`
    /// the tombstoned one.
    Transferred,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkEvent {
    /// Position in the feed: strictly increasing in commit order, never reused.
    pub cursor: u64,
    pub event_type: EventType,
    pub link: Link,
    pub previous: Option<LinkId>,
    #[serde(with = "super::compact::time")]
    pub at: DateTime<Utc>,
}

impl LinkEvent {
    /// An event as stored: the link without personal profile data.
    pub fn new(cursor: u64, event_type: EventType, link: &Link, previous: Option<LinkId>, at: DateTime<Utc>) -> Self {
        let link = Link { profile: PersonalProfile::default(), ..link.clone() };
        Self { cursor, event_type, link, previous, at }
    }
}
