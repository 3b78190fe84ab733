//! Purges and bans everywhere: a purge on one instance (the admin API, a `PURGE` request, an
//! unsafe method's invalidation) is published on the fleet's channel (`PREFIX` `purge`) and
//! applied by every other instance as it arrives.
//!
//! **The gap rule.** Redis's pub/sub keeps nothing for a subscriber that is away, so an
//! instance cannot know what it missed while its subscription was down (Redis down, a broken
//! connection, a partition the heartbeat noticed). So whenever a subscription starts, the first
//! one included, the instance clears its whole in-memory cache ([`Purge::Gap`]): nothing
//! stored before it can be proven fresh. Publishing is off the request path: a bounded queue
//! that a task empties; a purge that finds the queue full or Redis down is applied locally
//! only, and counted.

use super::Cluster;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Weak;
use std::time::Duration;

/// One purge, as instances exchange it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Purge {
    /// A URL and its variants (the cache's key form: `https://host/path?query` or `/path`
    /// for any host), as the admin API's `url` and `PURGE` requests remove it.
    Url(String),
    /// Every URL that starts with this key (the admin API's `prefix`).
    Prefix(String),
    /// Everything.
    All,
    /// One stored URL and its variants, by the cache's primary key (a `PURGE` request, an
    /// unsafe method that succeeded: RFC 9111 4.4).
    Key(String),
    /// The subscription (re)started: what was stored before cannot be proven fresh.
    Gap,
}

impl Purge {
    /// As published: `FROM OP KEY` (the sender's identity, one word, then the key).
    pub fn encode(&self, from: &str) -> String {
        let (op, key) = match self {
            Purge::Url(k) => ("url", k.as_str()),
            Purge::Prefix(k) => ("prefix", k.as_str()),
            Purge::All => ("all", ""),
            Purge::Key(k) => ("key", k.as_str()),
            Purge::Gap => ("gap", ""),
        };
        format!("{from} {op} {key}")
    }

    /// A published message: `(sender, purge)`, or `None` for anything else (a message of
    /// another version or of someone else on the channel is ignored).
    pub fn decode(msg: &str) -> Option<(&str, Purge)> {
        let (from, rest) = msg.split_once(' ')?;
        let (op, key) = rest.split_once(' ').unwrap_or((rest, ""));
        let owned = || (!key.is_empty()).then(|| key.to_string());
        let p = match op {
            "url" => Purge::Url(owned()?),
            "prefix" => Purge::Prefix(owned()?),
            "all" => Purge::All,
            "key" => Purge::Key(owned()?),
            _ => return None,
        };
        Some((from, p))
    }
}

/// Keys longer than this are not published (the cache's keys are bounded by the URI limit).
const MAX_KEY: usize = 64 * 1024;

impl Cluster {
    /// Publishes a purge applied here (off the request path; see the module's rules).
    pub fn publish(&self, p: Purge) {
        let long =
            matches!(&p, Purge::Url(k) | Purge::Prefix(k) | Purge::Key(k) if k.len() > MAX_KEY);
        if long || !self.is_up() || self.outbox.try_send(p.encode(&self.id)).is_err() {
            self.purges_unsent.fetch_add(1, Relaxed);
        }
    }

    /// The channel's name.
    pub fn purge_channel(&self) -> String {
        self.key("purge")
    }
}

/// Sends queued purges, each within `connect_timeout`.
pub(super) async fn publisher(me: Weak<Cluster>, mut rx: tokio::sync::mpsc::Receiver<String>) {
    while let Some(msg) = rx.recv().await {
        let Some(c) = me.upgrade() else { return };
        let mut conn = c.conn();
        let channel = c.purge_channel();
        let send = async move {
            redis::cmd("PUBLISH")
                .arg(channel)
                .arg(msg)
                .query_async::<i64>(&mut conn)
                .await
        };
        match c.call_within(c.config.connect_timeout, send).await {
            Some(_) => c.purges_sent.fetch_add(1, Relaxed),
            None => c.purges_unsent.fetch_add(1, Relaxed),
        };
    }
}

/// Keeps a subscription to the channel while the cluster lives: each start is a
/// [`Purge::Gap`], each message from another instance its purge. A subscription ends when
/// its connection does, or when the heartbeat finds Redis unreachable (a partition sends no
/// close); then it is tried again every `heartbeat`.
pub(super) async fn subscriber(me: Weak<Cluster>) {
    loop {
        let Some(c) = me.upgrade() else { return };
        let every = c.config.heartbeat;
        if let Some((mut sub, generation)) = subscribe(&c).await {
            c.deliver(Purge::Gap);
            c.subscribed.store(true, Relaxed);
            drop(c);
            listen(&me, (&mut sub, generation), every).await;
            if let Some(c) = me.upgrade() {
                c.subscribed.store(false, Relaxed);
            }
        } else {
            drop(c);
        }
        tokio::time::sleep(every).await;
    }
}

/// A subscription to the purge channel on the linked server (the master the sentinels name,
/// with Sentinel), within `connect_timeout`, with that server's generation.
async fn subscribe(c: &Cluster) -> Option<(redis::aio::PubSub, u64)> {
    let (client, generation) = c.link.client()?;
    let channel = c.purge_channel();
    let open = async move {
        let mut sub = client.get_async_pubsub().await?;
        sub.subscribe(channel).await?;
        Ok(sub)
    };
    let sub = c.call_within(c.config.connect_timeout, open).await?;
    Some((sub, generation))
}

/// Applies the subscription's messages until it ends, Redis is found down, or the link
/// follows another master.
async fn listen(
    me: &Weak<Cluster>,
    (sub, generation): (&mut redis::aio::PubSub, u64),
    every: Duration,
) {
    use futures_core::Stream;
    let mut stream = std::pin::pin!(sub.on_message());
    let mut tick = tokio::time::interval(every);
    loop {
        let next = std::future::poll_fn(|cx| stream.as_mut().poll_next(cx));
        tokio::select! {
            msg = next => {
                let Some(msg) = msg else { return };
                let Some(c) = me.upgrade() else { return };
                let text = String::from_utf8_lossy(msg.get_payload_bytes());
                match Purge::decode(&text) {
                    Some((from, p)) if from != c.id => {
                        c.purges_received.fetch_add(1, Relaxed);
                        c.deliver(p);
                    }
                    Some(_) => {}
                    None => {
                        c.purges_ignored.fetch_add(1, Relaxed);
                    }
                }
            }
            _ = tick.tick() => {
                let Some(c) = me.upgrade() else { return };
                if !c.is_up() || c.link.generation() != Some(generation) {
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Purge;

    #[test]
    fn purges_read_back_as_written_and_garbage_is_ignored() {
        for p in [
            Purge::Url("https://a.example/x?y z".into()),
            Purge::Prefix("/static/".into()),
            Purge::All,
            Purge::Key("http://h/p".into()),
        ] {
            let m = p.encode("edge-1:1f");
            assert_eq!(Purge::decode(&m), Some(("edge-1:1f", p)));
        }
        assert_eq!(
            Purge::decode("x gap "),
            None,
            "a gap is never taken from the wire"
        );
        assert_eq!(Purge::decode("x url "), None);
        assert_eq!(Purge::decode("nonsense"), None);
        assert_eq!(Purge::decode(""), None);
    }
}
