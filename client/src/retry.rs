//! Retrying what is safe to retry: calls refused UNAVAILABLE or RESOURCE_EXHAUSTED, after the
//! delay the server's RetryInfo asks for (or a jittered exponential backoff), within a bounded
//! total time. Reads are always safe; a mutation only when it carries a `request_id`, which
//! makes a retry answer the first attempt's outcome instead of doing it twice.

use std::time::Duration;

/// How long and how often to retry. Off unless the caller asks for it (`ClientOptions::retry`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// No retry starts past this, counted from the first attempt.
    pub max_total: Duration,
    /// The first backoff without RetryInfo; doubled each attempt up to `max_delay`.
    pub base: Duration,
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self { max_total: Duration::from_secs(60), base: Duration::from_millis(200), max_delay: Duration::from_secs(10) }
    }
}

impl RetryPolicy {
    /// The wait before retry number `attempt` (from 0): the server's `retry_after` and up to a
    /// tenth more, or a backoff drawn from its upper half, so that many clients refused at once
    /// do not come back at once.
    pub fn delay(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        match retry_after {
            Some(asked) => asked + asked.mul_f64(rand::random::<f64>() * 0.1),
            None => {
                let backoff = self.base.saturating_mul(2u32.saturating_pow(attempt.min(16))).min(self.max_delay);
                backoff / 2 + backoff.mul_f64(rand::random::<f64>() * 0.5)
            }
        }
    }
}

/// Whether a refusal with `code` is worth retrying at all.
pub fn retryable(code: tonic::Code) -> bool {
    matches!(code, tonic::Code::Unavailable | tonic::Code::ResourceExhausted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_server_s_delay_is_honoured_and_backoff_grows_within_bounds() {
        let policy = RetryPolicy::default();
        for _ in 0..100 {
            let asked = policy.delay(0, Some(Duration::from_secs(1)));
            assert!(asked >= Duration::from_secs(1) && asked <= Duration::from_millis(1100), "{asked:?}");
            let first = policy.delay(0, None);
            assert!(first >= Duration::from_millis(100) && first <= Duration::from_millis(200), "{first:?}");
            let late = policy.delay(12, None);
            assert!(late >= Duration::from_secs(5) && late <= Duration::from_secs(10), "{late:?}");
        }
        assert!(retryable(tonic::Code::Unavailable) && retryable(tonic::Code::ResourceExhausted));
        assert!(!retryable(tonic::Code::InvalidArgument) && !retryable(tonic::Code::DeadlineExceeded));
    }
}
