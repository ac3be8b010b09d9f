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

/// One command to the Redis server on a loopback port (half a second to connect).
pub fn query<T: redis::FromRedisValue>(port: u16, cmd: &redis::Cmd) -> redis::RedisResult<T> {
    let mut conn =
        redis::Client::open(format!("redis://127.0.0.1:{port}"))?.get_connection_with_timeout(std::time::Duration::from_millis(500))?;
    cmd.query(&mut conn)
}

/// Whether the Redis server on this port answers `ROLE` as a primary.
pub fn is_primary(port: u16) -> bool {
    query::<redis::Value>(port, &redis::cmd("ROLE")).is_ok_and(
        |role| matches!(role, redis::Value::Array(parts) if matches!(parts.first(), Some(redis::Value::BulkString(r)) if r == b"master")),
    )
}

/// Polls `done` every 100 ms until it holds; fails the test after a minute, naming `what`.
#[track_caller]
pub fn within_a_minute(what: &str, mut done: impl FnMut() -> bool) {
    for _ in 0..600 {
        if done() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(done(), "within 60 s: {what}");
}
