//! Refused calls are audited, but a caller who needs no token to be refused must not be able
//! to fill the log: per peer address and reason, the first [`LINES_PER_WINDOW`] lines of a
//! minute are written and the rest counted; the next line written says how many were dropped.
//! Everything a line carries from the request is sanitised first ([`super::request_id`]).

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::{Mutex, PoisonError},
};

use chrono::{DateTime, Duration, Utc};

pub const LINES_PER_WINDOW: u32 = 10;
pub const WINDOW: Duration = Duration::seconds(60);
/// Past this many tracked peers, windows that ended are forgotten (and all, if none had).
const MAX_TRACKED: usize = 10_000;

#[derive(Debug, Clone, Copy)]
struct Window {
    started: DateTime<Utc>,
    written: u32,
    dropped: u64,
}

#[derive(Default)]
pub struct RefusalLog {
    windows: Mutex<HashMap<(Option<IpAddr>, &'static str), Window>>,
    /// Dropped when their window was forgotten without a later line to report them.
    forgotten: Mutex<u64>,
}

impl RefusalLog {
    /// Whether to write this refusal line at `now`; `Some(dropped)` when it is to be written,
    /// with the number of identical lines dropped since the last one written.
    pub fn admit(&self, peer: Option<IpAddr>, reason: &'static str, now: DateTime<Utc>) -> Option<u64> {
        let mut windows = self.windows.lock().unwrap_or_else(PoisonError::into_inner);
        if windows.len() >= MAX_TRACKED && !windows.contains_key(&(peer, reason)) {
            let before = windows.len();
            let mut lost = 0;
            windows.retain(|_, w| {
                let keep = now < w.started + WINDOW;
                if !keep {
                    lost += w.dropped;
                }
                keep
            });
            if windows.len() == before {
                lost += windows.values().map(|w| w.dropped).sum::<u64>();
                windows.clear();
            }
            *self.forgotten.lock().unwrap_or_else(PoisonError::into_inner) += lost;
        }
        let window = windows.entry((peer, reason)).or_insert(Window { started: now, written: 0, dropped: 0 });
        if now >= window.started + WINDOW {
            *window = Window { started: now, written: 0, dropped: window.dropped };
        }
        if window.written >= LINES_PER_WINDOW {
            window.dropped += 1;
            return None;
        }
        window.written += 1;
        let forgotten = std::mem::take(&mut *self.forgotten.lock().unwrap_or_else(PoisonError::into_inner));
        Some(std::mem::take(&mut window.dropped) + forgotten)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_from_one_peer_writes_a_few_lines_and_counts_the_rest() {
        let log = RefusalLog::default();
        let (peer, other) = (Some("192.0.2.7".parse().unwrap()), Some("192.0.2.8".parse().unwrap()));
        let now = Utc::now();
        let written = (0..1000).filter(|_| log.admit(peer, "MISSING_TOKEN", now).is_some()).count();
        assert_eq!(written, LINES_PER_WINDOW as usize);
        // Another peer, or another reason, has lines of its own.
        assert_eq!(log.admit(other, "MISSING_TOKEN", now), Some(0));
        assert_eq!(log.admit(peer, "INVALID_TOKEN", now), Some(0));
        // The next window's first line reports what was dropped.
        assert_eq!(log.admit(peer, "MISSING_TOKEN", now + WINDOW - Duration::seconds(1)), None);
        assert_eq!(log.admit(peer, "MISSING_TOKEN", now + WINDOW), Some(991));
        assert_eq!(log.admit(peer, "MISSING_TOKEN", now + WINDOW), Some(0));
    }

    #[test]
    fn many_peers_are_tracked_in_bounded_memory_and_lose_no_count() {
        let log = RefusalLog::default();
        let now = Utc::now();
        let peer = |n: u32| Some(IpAddr::from(n.to_be_bytes()));
        let mut reported = 0;
        for _ in 0..=LINES_PER_WINDOW {
            reported += log.admit(peer(0), "MISSING_TOKEN", now).unwrap_or(0);
        }
        for n in 1..(3 * MAX_TRACKED as u32) {
            reported += log.admit(peer(n), "MISSING_TOKEN", now).unwrap_or(0);
            assert!(log.windows.lock().unwrap().len() <= MAX_TRACKED);
        }
        // peer 0's dropped line was forgotten with its window, and reported by a later line.
        assert_eq!(reported, 1);
    }
}
