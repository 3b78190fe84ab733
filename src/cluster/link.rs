//! The link to Redis: for a `redis://` URL one client and one connection manager for the
//! cluster's life; for a Sentinel URL (`redis+sentinel://`), the master the sentinels name,
//! asked through the `redis` crate's `SentinelClient` at start and again whenever the
//! heartbeat finds the master down or demoted, and swapped in without a lock (an `ArcSwap`),
//! so a failover is followed without a restart.
//!
//! A call reads the link once (a `redis://` link: one branch; a Sentinel link: one
//! `ArcSwap` load) and uses what it read to the end: a call in flight during a swap finishes
//! (or fails within its deadline) on the old master.

use crate::config::cluster::{ClusterConfig, SentinelUrl};
use arc_swap::ArcSwapOption;
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::sentinel::{SentinelClient, SentinelNodeConnectionInfo, SentinelServerType};
use redis::{ConnectionAddr, IntoConnectionInfo, RedisConnectionInfo, RedisFuture, TlsMode};
use std::sync::Arc;
use std::time::Duration;

/// One Redis server's client and connection manager.
pub(super) struct Node {
    pub client: redis::Client,
    pub conn: ConnectionManager,
    /// Which master this is (0 for a `redis://` link; counts up with each master a Sentinel
    /// link follows): the purge subscription ends when it changes.
    pub generation: u64,
}

impl Node {
    fn new(
        client: redis::Client,
        config: &ClusterConfig,
        generation: u64,
    ) -> redis::RedisResult<Node> {
        let settings = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(config.connect_timeout))
            .set_response_timeout(Some(config.connect_timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        let conn = ConnectionManager::new_lazy_with_config(client.clone(), settings)?;
        Ok(Node {
            client,
            conn,
            generation,
        })
    }

    fn addr(&self) -> &ConnectionAddr {
        self.client.get_connection_info().addr()
    }
}

/// Where calls go. One per cluster: the common case stays inline (no indirection per call).
#[allow(clippy::large_enum_variant)]
pub(super) enum Link {
    /// `redis://`, `rediss://`, `redis+unix://`: one server.
    Fixed(Node),
    /// A Sentinel URL: the master the sentinels named last (`None` until they name one).
    Sentinel(ArcSwapOption<Node>),
}

impl Link {
    /// The link for `config` (nothing waits for Redis here), and for a Sentinel URL the
    /// crate's client that asks the sentinels (kept by the heartbeat, its only user).
    pub fn open(config: &ClusterConfig) -> anyhow::Result<(Link, Option<SentinelClient>)> {
        match &config.sentinel {
            None => {
                let client = redis::Client::open(config.redis.as_str())?;
                Ok((Link::Fixed(Node::new(client, config, 0)?), None))
            }
            Some(s) => Ok((Link::Sentinel(ArcSwapOption::empty()), Some(sentinels(s)?))),
        }
    }

    /// A handle for one call.
    #[inline]
    pub fn conn(&self) -> Conn {
        match self {
            Link::Fixed(n) => Conn(Some(n.conn.clone())),
            Link::Sentinel(s) => Conn(s.load().as_ref().map(|n| n.conn.clone())),
        }
    }

    /// The current server's client and generation (for the purge subscription).
    pub fn client(&self) -> Option<(redis::Client, u64)> {
        match self {
            Link::Fixed(n) => Some((n.client.clone(), n.generation)),
            Link::Sentinel(s) => s.load().as_ref().map(|n| (n.client.clone(), n.generation)),
        }
    }

    /// The master a Sentinel link goes to (`HOST:PORT`).
    pub fn master(&self) -> Option<String> {
        match self {
            Link::Fixed(_) => None,
            Link::Sentinel(s) => s.load().as_ref().map(|n| n.addr().to_string()),
        }
    }

    /// The current server's generation (`None`: no master named yet).
    pub fn generation(&self) -> Option<u64> {
        match self {
            Link::Fixed(n) => Some(n.generation),
            Link::Sentinel(s) => s.load().as_ref().map(|n| n.generation),
        }
    }

    /// Asks the sentinels for the master (within `limit`) and, when it is another server
    /// than the current one, links to it: `Ok(Some(address))` for a new master, `Ok(None)`
    /// when the sentinels name the current one (or this is not a Sentinel link).
    pub async fn follow(
        &self,
        sentinels: &mut SentinelClient,
        config: &ClusterConfig,
        limit: Duration,
    ) -> Result<Option<String>, String> {
        let Link::Sentinel(slot) = self else {
            return Ok(None);
        };
        let client = match tokio::time::timeout(limit, sentinels.async_get_client()).await {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => {
                return Err(match e.kind() {
                    redis::ErrorKind::MasterNameNotFoundBySentinel
                    | redis::ErrorKind::EmptySentinelList => {
                        format!("the sentinels name no master: {e}")
                    }
                    // Found, but the link to it failed (its password, its database, ...).
                    _ => format!("the master the sentinels name refused the link: {e}"),
                });
            }
            Err(_) => return Err("the sentinels did not answer in time".into()),
        };
        let current = slot.load_full();
        if current
            .as_ref()
            .is_some_and(|n| n.addr() == client.get_connection_info().addr())
        {
            return Ok(None);
        }
        let generation = current.map_or(1, |n| n.generation + 1);
        let node = Node::new(client, config, generation).map_err(|e| e.to_string())?;
        let addr = node.addr().to_string();
        slot.store(Some(Arc::new(node)));
        Ok(Some(addr))
    }
}

/// The crate's Sentinel client for `url`: the sentinels' addresses (with their password),
/// and what the master is reached with (TLS, user, password, database).
fn sentinels(url: &SentinelUrl) -> anyhow::Result<SentinelClient> {
    let scheme = if url.tls { "rediss" } else { "redis" };
    let mut auth = RedisConnectionInfo::default();
    if let Some(p) = &url.sentinel_password {
        auth = auth.set_password(p);
    }
    let nodes = url
        .sentinels
        .iter()
        .map(|(host, port)| {
            let host = match host.contains(':') {
                true => format!("[{host}]"),
                false => host.clone(),
            };
            Ok(format!("{scheme}://{host}:{port}")
                .into_connection_info()?
                .set_redis_settings(auth.clone()))
        })
        .collect::<redis::RedisResult<Vec<_>>>()?;
    let mut master = RedisConnectionInfo::default().set_db(url.db);
    if let Some(u) = &url.username {
        master = master.set_username(u);
    }
    if let Some(p) = &url.password {
        master = master.set_password(p);
    }
    let mut info = SentinelNodeConnectionInfo::default().set_redis_connection_info(master);
    if url.tls {
        info = info.set_tls_mode(TlsMode::Secure);
    }
    Ok(SentinelClient::build(
        nodes,
        url.master.as_str(),
        Some(info),
        SentinelServerType::Master,
    )?)
}

/// A connection handle for one call: the current server's connection manager, or, on a
/// Sentinel link before the sentinels named a master, none (every call fails at once as
/// a connection error, so Redis counts as down).
#[derive(Clone)]
pub struct Conn(Option<ConnectionManager>);

fn no_master() -> redis::RedisError {
    std::io::Error::new(
        std::io::ErrorKind::NotConnected,
        "no master named by the sentinels yet",
    )
    .into()
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a redis::Cmd) -> RedisFuture<'a, redis::Value> {
        match &mut self.0 {
            Some(c) => c.req_packed_command(cmd),
            None => Box::pin(std::future::ready(Err(no_master()))),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<redis::Value>> {
        match &mut self.0 {
            Some(c) => c.req_packed_commands(pipeline, offset, count),
            None => Box::pin(std::future::ready(Err(no_master()))),
        }
    }

    fn get_db(&self) -> i64 {
        self.0.as_ref().map_or(0, |c| c.get_db())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_sentinel_link_without_a_master_fails_calls_as_unreachable() {
        let url = "redis+sentinel://127.0.0.1:1,[::1]:2/m/3?sentinel_password=s";
        let config = ClusterConfig {
            redis: url.into(),
            sentinel: Some(SentinelUrl::parse(url).unwrap()),
            name: None,
            prefix: "t:".into(),
            timeout: Duration::from_millis(5),
            connect_timeout: Duration::from_millis(200),
            heartbeat: Duration::from_secs(1),
        };
        let (link, sentinels) = Link::open(&config).unwrap();
        assert!(link.client().is_none() && link.generation().is_none());
        let e = redis::cmd("PING")
            .query_async::<String>(&mut link.conn())
            .await
            .unwrap_err();
        assert!(e.is_io_error(), "{e}");
        // Nothing listens on those ports: asking fails within the deadline, nothing changes.
        let mut sentinels = sentinels.unwrap();
        let limit = Duration::from_millis(500);
        assert!(link.follow(&mut sentinels, &config, limit).await.is_err());
        assert!(link.generation().is_none());
    }
}
