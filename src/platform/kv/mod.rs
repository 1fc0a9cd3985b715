//! Shared short-lived state: values with a TTL, set-if-absent locks and nonces, counters,
//! rate limits, and pub/sub between server instances.
//!
//! Two implementations honour one contract ([`Kv`]): Redis (through fred) when `REDIS_URL`
//! is set, so every instance sees the same state, and an in-process one for a single
//! embedded server. The contract test suite in `tests/api/kv.rs` runs against both.
//!
//! Keys and channels are namespaced by the configured prefix inside the implementation;
//! callers pass bare names such as `ads:nonce:<n>`.
//!
//! Pub/sub is at-most-once on both: a subscriber that falls behind by more than the channel
//! capacity, or whose Redis connection dropped, receives [`Delivery::Gap`] and must resync
//! from the database (never assume the stream was complete).

mod memory;
mod redis;

use std::{pin::Pin, sync::Arc, time::Duration};

use futures_util::Stream;

pub use memory::MemoryKv;
pub use redis::RedisKv;

use crate::config::Config;

/// Why a kv call failed. Both mean "the shared store cannot answer now"; callers map them
/// to `UNAVAILABLE` unless they can do without.
#[derive(Debug, thiserror::Error)]
pub enum KvError {
    #[error("kv store unavailable: {0}")]
    Unavailable(String),
    #[error("kv store answered unexpectedly: {0}")]
    Protocol(String),
}

/// A rate limit: at most `limit` events in any `period`, refilled evenly (GCRA).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub limit: u32,
    pub period: Duration,
}

impl RateLimit {
    pub fn new(limit: u32, period: Duration) -> Self {
        assert!(limit > 0, "a rate limit allows at least one event");
        assert!(!period.is_zero(), "a rate limit has a period");
        Self { limit, period }
    }

    pub fn per_minute(limit: u32) -> Self {
        Self::new(limit, Duration::from_secs(60))
    }

    /// The period in microseconds (limits above 1 000/s need finer than milliseconds).
    fn period_us(&self) -> u64 {
        (self.period.as_micros() as u64).max(1)
    }

    /// Microseconds between two events at the sustained rate.
    fn interval_us(&self) -> u64 {
        (self.period_us() / u64::from(self.limit)).max(1)
    }
}

/// The answer of a rate limiter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateDecision {
    pub allowed: bool,
    /// Events still allowed right now after this one.
    pub remaining: u32,
    /// When refused: how long until one more event is allowed.
    pub retry_after: Duration,
}

/// The generic cell rate algorithm, shared by both backends (the Redis Lua script is the
/// same arithmetic). `tat` is the stored theoretical arrival time in ms, `now` the clock.
/// Returns the decision and, when allowed, the new `tat` to store.
/// GCRA on a microsecond clock: `now` and the theoretical arrival time `tat` are in µs.
pub(crate) fn gcra(limit: RateLimit, tat: Option<u64>, now: u64) -> (RateDecision, Option<u64>) {
    let interval = limit.interval_us();
    let period = limit.period_us();
    let tat = tat.unwrap_or(now).max(now);
    let new_tat = tat + interval;
    let allow_at = new_tat.saturating_sub(period);
    if now < allow_at {
        let decision = RateDecision {
            allowed: false,
            remaining: 0,
            retry_after: Duration::from_micros(allow_at - now),
        };
        return (decision, None);
    }
    let remaining = ((period - (new_tat - now)) / interval) as u32;
    let decision = RateDecision {
        allowed: true,
        remaining,
        retry_after: Duration::ZERO,
    };
    (decision, Some(new_tat))
}

/// What a pub/sub subscriber receives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    Message(Vec<u8>),
    /// Messages may have been lost (the subscriber lagged or the connection dropped): resync.
    Gap,
}

/// A live subscription; dropping it unsubscribes.
pub type Subscription = Pin<Box<dyn Stream<Item = Delivery> + Send>>;

/// The kv contract. Every TTL is a real expiry on both backends.
#[async_trait::async_trait]
pub trait Kv: Send + Sync + 'static {
    /// `"redis"` or `"memory"`.
    fn backend(&self) -> &'static str;

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, KvError>;

    /// Sets `key`, replacing any value; `ttl: None` keeps it until deleted.
    async fn set(&self, key: &str, value: &[u8], ttl: Option<Duration>) -> Result<(), KvError>;

    /// Sets `key` only when absent; true when this call set it. The base of locks, nonces and
    /// idempotency guards: of many concurrent callers exactly one gets true.
    async fn set_nx(&self, key: &str, value: &[u8], ttl: Duration) -> Result<bool, KvError>;

    /// Gets and deletes `key` atomically (single-use values such as OAuth state).
    async fn take(&self, key: &str) -> Result<Option<Vec<u8>>, KvError>;

    /// Deletes `key`; true when it existed.
    async fn delete(&self, key: &str) -> Result<bool, KvError>;

    /// Remaining time to live; `None` when the key is absent or has no expiry.
    async fn ttl(&self, key: &str) -> Result<Option<Duration>, KvError>;

    /// Adds `by` to the counter at `key` and returns the new value. A counter created by this
    /// call expires after `ttl` (a fixed window); later calls do not extend it.
    async fn incr(&self, key: &str, by: i64, ttl: Duration) -> Result<i64, KvError>;

    /// Counts one event against `limit` for `key`, atomically across instances.
    async fn rate_limit(&self, key: &str, limit: RateLimit) -> Result<RateDecision, KvError>;

    async fn publish(&self, channel: &str, payload: &[u8]) -> Result<(), KvError>;

    /// Subscribes to `channel`. The subscription is active when this returns: a message
    /// published after that is delivered (or reported as a [`Delivery::Gap`]).
    async fn subscribe(&self, channel: &str) -> Result<Subscription, KvError>;

    /// Round trip, for readiness checks.
    async fn ping(&self) -> Result<(), KvError>;

    /// Stops background tasks and closes connections.
    async fn shutdown(&self) {}
}

/// Builds the implementation `config` selects, connected and ready.
pub async fn connect(config: &Config) -> anyhow::Result<Arc<dyn Kv>> {
    match &config.redis_url {
        Some(url) => Ok(Arc::new(RedisKv::connect(config, url).await?)),
        None => Ok(Arc::new(MemoryKv::new(
            &config.kv_prefix,
            config.pubsub_channel_capacity,
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gcra_allows_a_burst_then_paces() {
        let limit = RateLimit::new(3, Duration::from_secs(3));
        let mut tat = None;
        let now = 10_000_000;
        for expected_remaining in [2, 1, 0] {
            let (d, t) = gcra(limit, tat, now);
            assert!(d.allowed);
            assert_eq!(d.remaining, expected_remaining);
            tat = t;
        }
        let (d, t) = gcra(limit, tat, now);
        assert!(!d.allowed);
        assert!(t.is_none());
        assert_eq!(d.retry_after, Duration::from_millis(1000));
        // One interval later exactly one more is allowed.
        let (d, t) = gcra(limit, tat, now + 1_000_000);
        assert!(d.allowed);
        assert_eq!(d.remaining, 0);
        let (d, _) = gcra(limit, t, now + 1_000_000);
        assert!(!d.allowed);
    }
}
