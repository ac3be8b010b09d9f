//! How idlinkd reaches Redis: one server at its URL (a connection manager that reconnects),
//! the primary the sentinels name, followed through a failover, or a Cluster (the crate's
//! cluster client follows `MOVED` and `ASK` and a replica's promotion).
//!
//! On Cluster every key of a deployment hashes to one slot (the key prefix is a hash tag), so a
//! script's keys are on one node; commands that name no key (`INFO`, `CONFIG`, `WAIT`, `SCAN`,
//! `PING`) go to the primary of that slot ([`Conn::query_at`]).
//!
//! Following: the connection to the primary is kept until a call on it fails as a lost
//! connection, a timeout or `READONLY` (a demoted primary); the next call asks the sentinels
//! again, which also check that the server they name considers itself primary. While no
//! primary answers — the gap between a primary's death and a replica's promotion — every call
//! fails at once (`Unavailable`, so callers get UNAVAILABLE with a retry delay) and the
//! sentinels are asked again at most every [`ASK_AGAIN`].

use std::{
    sync::{Mutex, PoisonError},
    time::{Duration, Instant},
};

use redis::{
    Cmd, ErrorKind, FromRedisValue, Pipeline, RedisError, RedisFuture, RedisResult, ServerErrorKind, Value,
    aio::{ConnectionLike, ConnectionManager, MultiplexedConnection},
    cluster_async::ClusterConnection,
    cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr},
    sentinel::SentinelClient,
};

/// How soon, after the sentinels named no primary that answers, they are asked again.
const ASK_AGAIN: Duration = Duration::from_millis(250);

#[derive(Clone)]
pub(super) enum Conn {
    Server(ConnectionManager),
    Sentinel(std::sync::Arc<Follower>),
    Cluster(ClusterConnection),
}

impl Conn {
    /// `cmd`, which names no key, where `key` lives: on Cluster the primary of its slot,
    /// elsewhere the one primary there is.
    pub(super) async fn query_at<T: FromRedisValue>(&mut self, cmd: &Cmd, key: &[u8]) -> RedisResult<T> {
        match self {
            Conn::Cluster(conn) => {
                let here = RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(Route::with_key(key, SlotAddr::Master)));
                Ok(redis::from_redis_value(conn.route_command(cmd.clone(), here).await?)?)
            }
            _ => cmd.query_async(self).await,
        }
    }
}

/// The primary of a sentinel-monitored set, as the sentinels name it.
pub(super) struct Follower {
    sentinels: tokio::sync::Mutex<SentinelClient>,
    config: redis::AsyncConnectionConfig,
    timeout: Duration,
    current: Mutex<Option<MultiplexedConnection>>,
    /// When asking last failed, and why: calls until [`ASK_AGAIN`] fail with it at once.
    failed: Mutex<Option<(Instant, String)>>,
    asking: tokio::sync::Mutex<()>,
}

impl Follower {
    pub(super) fn new(sentinels: SentinelClient, timeout: Duration) -> Self {
        Self {
            sentinels: tokio::sync::Mutex::new(sentinels),
            config: redis::AsyncConnectionConfig::new().set_connection_timeout(Some(timeout)).set_response_timeout(Some(timeout)),
            timeout,
            current: Mutex::new(None),
            failed: Mutex::new(None),
            asking: tokio::sync::Mutex::new(()),
        }
    }

    fn current(&self) -> Option<MultiplexedConnection> {
        self.current.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    fn recently_failed(&self) -> Option<RedisError> {
        let failed = self.failed.lock().unwrap_or_else(PoisonError::into_inner);
        let (at, why) = failed.as_ref()?;
        (at.elapsed() < ASK_AGAIN).then(|| no_primary(why.clone()))
    }

    /// The primary's connection: the one kept, else a new one to the primary the sentinels name.
    pub(super) async fn connection(&self) -> RedisResult<MultiplexedConnection> {
        if let Some(conn) = self.current() {
            return Ok(conn);
        }
        if let Some(e) = self.recently_failed() {
            return Err(e);
        }
        let _one_at_a_time = self.asking.lock().await;
        if let Some(conn) = self.current() {
            return Ok(conn);
        }
        if let Some(e) = self.recently_failed() {
            return Err(e);
        }
        let asked = tokio::time::timeout(self.timeout, async {
            let client = self.sentinels.lock().await.async_get_client().await?;
            let conn = client.get_multiplexed_async_connection_with_config(&self.config).await?;
            Ok::<_, RedisError>((client.get_connection_info().addr().to_string(), conn))
        })
        .await
        .unwrap_or_else(|_| Err(no_primary(format!("the sentinels or the primary did not answer within {:?}", self.timeout))));
        match asked {
            Ok((primary, conn)) => {
                tracing::info!(%primary, "Redis: following the primary the sentinels name");
                *self.failed.lock().unwrap_or_else(PoisonError::into_inner) = None;
                *self.current.lock().unwrap_or_else(PoisonError::into_inner) = Some(conn.clone());
                Ok(conn)
            }
            Err(e) => {
                *self.failed.lock().unwrap_or_else(PoisonError::into_inner) = Some((Instant::now(), e.to_string()));
                Err(e)
            }
        }
    }

    /// Drops the kept connection when `answer` says the primary is gone or no longer primary.
    fn heed<T>(&self, answer: &RedisResult<T>) {
        if let Err(e) = answer
            && (e.is_connection_dropped()
                || e.is_io_error()
                || e.is_timeout()
                || e.is_connection_refusal()
                || e.kind() == ErrorKind::Server(ServerErrorKind::ReadOnly))
        {
            tracing::warn!(error = %e, "Redis: the primary failed; asking the sentinels again");
            self.current.lock().unwrap_or_else(PoisonError::into_inner).take();
        }
    }
}

fn no_primary(why: String) -> RedisError {
    RedisError::from((ErrorKind::Io, "no Redis primary answers yet", why))
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Server(conn) => conn.req_packed_command(cmd),
            Conn::Cluster(conn) => conn.req_packed_command(cmd),
            Conn::Sentinel(follower) => Box::pin(async move {
                let mut conn = follower.connection().await?;
                let answer = conn.req_packed_command(cmd).await;
                follower.heed(&answer);
                answer
            }),
        }
    }

    fn req_packed_commands<'a>(&'a mut self, pipeline: &'a Pipeline, offset: usize, count: usize) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Server(conn) => conn.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(conn) => conn.req_packed_commands(pipeline, offset, count),
            Conn::Sentinel(follower) => Box::pin(async move {
                let mut conn = follower.connection().await?;
                let answer = conn.req_packed_commands(pipeline, offset, count).await;
                follower.heed(&answer);
                answer
            }),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Server(conn) => conn.get_db(),
            Conn::Cluster(_) | Conn::Sentinel(_) => 0,
        }
    }
}
