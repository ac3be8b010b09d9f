//! What tests need to find the services they run against (test-support builds only).

/// The Redis the tests share: `IDLINK_TEST_REDIS_URL`, by default `redis://127.0.0.1:6379`.
pub fn test_redis_url() -> String {
    std::env::var("IDLINK_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// A service a test needs is missing: under `CI=true` the test fails, naming `what`;
/// elsewhere it says `SKIPPED: what` and the caller skips (`None`).
#[track_caller]
pub fn unavailable<T>(what: &str) -> Option<T> {
    assert!(!std::env::var("CI").is_ok_and(|v| v == "true"), "{what} (required under CI=true)");
    eprintln!("SKIPPED: {what}");
    None
}

mod cluster;
pub use cluster::TestCluster;
