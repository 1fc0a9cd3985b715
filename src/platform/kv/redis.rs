//! Redis kv through fred: a command pool plus one subscriber connection per instance.
//!
//! Both reconnect on their own with exponential backoff; while Redis is away commands fail
//! after `KV_COMMAND_TIMEOUT` and [`Kv::ping`] fails, so `/ready` reports it, and everything
//! that does not need kv keeps working. Pub/sub is fanned out locally: one Redis SUBSCRIBE
//! per channel name however many local subscribers it has. A reconnect or a lagging fan-out
//! is reported to every local subscriber as [`Delivery::Gap`], because Redis pub/sub drops
//! what was published while we were away.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};

use fred::{clients::SubscriberClient, prelude::*, types::scripts::Script};
use futures_util::StreamExt;
use tokio::sync::broadcast;
use tokio_stream::wrappers::{BroadcastStream, errors::BroadcastStreamRecvError};
use tokio_util::sync::CancellationToken;

use super::{Delivery, Kv, KvError, RateDecision, RateLimit, Subscription};
use crate::config::{Config, SecretUrl};

/// Adds to a counter and gives it a TTL only when it has none (it was just created).
const INCR_SCRIPT: &str = r"
local v = redis.call('INCRBY', KEYS[1], ARGV[1])
if redis.call('PTTL', KEYS[1]) == -1 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return v
";

/// GCRA, the same arithmetic as `super::gcra` (microseconds), on Redis's own clock so that
/// every instance agrees on time. Returns {allowed, remaining, retry_after_us}.
const GCRA_SCRIPT: &str = r"
local interval = tonumber(ARGV[1])
local period = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tat = now
local stored = redis.call('GET', KEYS[1])
if stored then tat = math.max(tonumber(stored), now) end
local new_tat = tat + interval
local allow_at = new_tat - period
if now < allow_at then return {0, 0, allow_at - now} end
redis.call('SET', KEYS[1], string.format('%d', new_tat), 'PX', math.ceil((new_tat - now) / 1000))
return {1, math.floor((period - (new_tat - now)) / interval), 0}
";

type Channels = Arc<Mutex<HashMap<String, broadcast::Sender<Delivery>>>>;

pub struct RedisKv {
    prefix: String,
    pool: Pool,
    subscriber: SubscriberClient,
    channels: Channels,
    /// Serialises SUBSCRIBE/UNSUBSCRIBE so a subscribe never races an unsubscribe of the
    /// same channel (which would leave a local subscriber deaf).
    subscribe_lock: Arc<tokio::sync::Mutex<()>>,
    capacity: usize,
    incr: Script,
    gcra: Script,
    stop: CancellationToken,
}

fn unavailable(e: Error) -> KvError {
    KvError::Unavailable(e.to_string())
}

impl RedisKv {
    pub async fn connect(config: &Config, url: &SecretUrl) -> anyhow::Result<Self> {
        let redis_config = fred::prelude::Config::from_url(url.expose())
            .map_err(|e| anyhow::anyhow!("REDIS_URL: {e}"))?;
        let command_timeout = config.kv_command_timeout.0;
        let capacity = config.pubsub_capacity;
        let mut builder = Builder::from_config(redis_config);
        builder
            .with_performance_config(|p| {
                p.default_command_timeout = command_timeout;
                p.broadcast_channel_capacity = capacity;
            })
            .with_connection_config(|c| {
                c.connection_timeout = command_timeout;
                c.internal_command_timeout = command_timeout;
                c.max_command_attempts = 2;
                c.tcp = TcpConfig {
                    nodelay: Some(true),
                    ..Default::default()
                };
            })
            // Retry forever, 100 ms doubling up to 2 s between attempts.
            .set_policy(ReconnectPolicy::new_exponential(0, 100, 2_000, 2));
        let pool = builder.build_pool(config.redis_pool_size)?;
        let subscriber = builder.build_subscriber_client()?;

        let connect = async {
            pool.init().await?;
            subscriber.init().await?;
            Ok::<_, Error>(())
        };
        match tokio::time::timeout(config.database_connect_timeout.0, connect).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => anyhow::bail!("cannot connect to Redis at {url:?}: {e}"),
            Err(_) => anyhow::bail!("cannot connect to Redis at {url:?}: timed out"),
        }
        // Re-issues SUBSCRIBE for every channel after a reconnect.
        subscriber.manage_subscriptions();

        let kv = Self {
            prefix: config.kv_prefix.clone(),
            pool,
            subscriber,
            channels: Arc::new(Mutex::new(HashMap::new())),
            subscribe_lock: Arc::new(tokio::sync::Mutex::new(())),
            capacity: config.pubsub_channel_capacity,
            incr: Script::from_lua(INCR_SCRIPT),
            gcra: Script::from_lua(GCRA_SCRIPT),
            stop: CancellationToken::new(),
        };
        kv.spawn_dispatcher();
        Ok(kv)
    }

    fn key(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    fn channels(&self) -> MutexGuard<'_, HashMap<String, broadcast::Sender<Delivery>>> {
        lock(&self.channels)
    }

    /// Routes messages from the one subscriber connection to local subscribers.
    fn spawn_dispatcher(&self) {
        let mut messages = self.subscriber.message_rx();
        let mut reconnects = self.subscriber.reconnect_rx();
        let channels = Arc::clone(&self.channels);
        let stop = self.stop.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = stop.cancelled() => break,
                    message = messages.recv() => match message {
                        Ok(message) => {
                            let payload = message.value.as_bytes().map(<[u8]>::to_vec)
                                .unwrap_or_else(|| message.value.as_string().unwrap_or_default().into_bytes());
                            if let Some(sender) = lock(&channels).get(&*message.channel) {
                                let _ = sender.send(Delivery::Message(payload));
                            }
                        }
                        Err(broadcast::error::RecvError::Lagged(missed)) => {
                            tracing::warn!(missed, "pub/sub fan-out lagged; subscribers will resync");
                            broadcast_gap(&channels);
                        }
                        Err(broadcast::error::RecvError::Closed) => break,
                    },
                    server = reconnects.recv() => match server {
                        Ok(server) => {
                            tracing::info!(%server, "pub/sub reconnected; subscribers will resync");
                            broadcast_gap(&channels);
                        }
                        Err(broadcast::error::RecvError::Lagged(_)) => broadcast_gap(&channels),
                        Err(broadcast::error::RecvError::Closed) => break,
                    },
                }
            }
        });
    }
}

fn lock(channels: &Channels) -> MutexGuard<'_, HashMap<String, broadcast::Sender<Delivery>>> {
    channels.lock().unwrap_or_else(|e| e.into_inner())
}

fn broadcast_gap(channels: &Channels) {
    for sender in lock(channels).values() {
        let _ = sender.send(Delivery::Gap);
    }
}

#[async_trait::async_trait]
impl Kv for RedisKv {
    fn backend(&self) -> &'static str {
        "redis"
    }

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        let value: Value = self.pool.get(self.key(key)).await.map_err(unavailable)?;
        Ok(value.as_bytes().map(<[u8]>::to_vec))
    }

    async fn set(&self, key: &str, value: &[u8], ttl: Option<Duration>) -> Result<(), KvError> {
        let expire = ttl.map(|t| Expiration::PX(t.as_millis().max(1) as i64));
        self.pool
            .set::<(), _, _>(self.key(key), value, expire, None, false)
            .await
            .map_err(unavailable)
    }

    async fn set_nx(&self, key: &str, value: &[u8], ttl: Duration) -> Result<bool, KvError> {
        let reply: Value = self
            .pool
            .set(
                self.key(key),
                value,
                Some(Expiration::PX(ttl.as_millis().max(1) as i64)),
                Some(SetOptions::NX),
                false,
            )
            .await
            .map_err(unavailable)?;
        Ok(!reply.is_null())
    }

    async fn take(&self, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        let value: Value = self.pool.getdel(self.key(key)).await.map_err(unavailable)?;
        Ok(value.as_bytes().map(<[u8]>::to_vec))
    }

    async fn delete(&self, key: &str) -> Result<bool, KvError> {
        let n: i64 = self.pool.del(self.key(key)).await.map_err(unavailable)?;
        Ok(n > 0)
    }

    async fn ttl(&self, key: &str) -> Result<Option<Duration>, KvError> {
        let ms: i64 = self.pool.pttl(self.key(key)).await.map_err(unavailable)?;
        Ok((ms >= 0).then(|| Duration::from_millis(ms as u64)))
    }

    async fn incr(&self, key: &str, by: i64, ttl: Duration) -> Result<i64, KvError> {
        let ttl_ms = ttl.as_millis().max(1) as i64;
        self.incr
            .evalsha_with_reload(self.pool.next(), vec![self.key(key)], vec![by, ttl_ms])
            .await
            .map_err(|e| match e.kind() {
                ErrorKind::InvalidArgument | ErrorKind::Parse | ErrorKind::Unknown
                    if !e.details().contains("connect") =>
                {
                    KvError::Protocol(e.to_string())
                }
                _ => unavailable(e),
            })
    }

    async fn rate_limit(&self, key: &str, limit: RateLimit) -> Result<RateDecision, KvError> {
        let args = vec![limit.interval_us() as i64, limit.period_us() as i64];
        let reply: Vec<i64> = self
            .gcra
            .evalsha_with_reload(self.pool.next(), vec![self.key(key)], args)
            .await
            .map_err(unavailable)?;
        match reply[..] {
            [allowed, remaining, retry_after_us] => Ok(RateDecision {
                allowed: allowed == 1,
                remaining: remaining.max(0) as u32,
                retry_after: Duration::from_micros(retry_after_us.max(0) as u64),
            }),
            _ => Err(KvError::Protocol(format!("rate limiter replied {reply:?}"))),
        }
    }

    async fn publish(&self, channel: &str, payload: &[u8]) -> Result<(), KvError> {
        self.pool
            .next()
            .publish::<i64, _, _>(self.key(channel), payload)
            .await
            .map(|_| ())
            .map_err(unavailable)
    }

    async fn subscribe(&self, channel: &str) -> Result<Subscription, KvError> {
        let name = self.key(channel);
        let receiver = {
            let _serial = self.subscribe_lock.lock().await;
            let existing = self.channels().get(&name).map(broadcast::Sender::subscribe);
            match existing {
                Some(receiver) => receiver,
                None => {
                    let (sender, receiver) = broadcast::channel(self.capacity);
                    self.channels().insert(name.clone(), sender);
                    if let Err(e) = self.subscriber.subscribe(name.clone()).await {
                        self.channels().remove(&name);
                        return Err(unavailable(e));
                    }
                    receiver
                }
            }
        };
        let guard = UnsubscribeOnDrop {
            name,
            channels: Arc::clone(&self.channels),
            subscriber: self.subscriber.clone(),
            subscribe_lock: Arc::clone(&self.subscribe_lock),
        };
        let mut inner = BroadcastStream::new(receiver);
        let stream = async_stream_from(move |cx| {
            let _keep = &guard;
            inner.poll_next_unpin(cx).map(|item| {
                item.map(|item| match item {
                    Ok(delivery) => delivery,
                    Err(BroadcastStreamRecvError::Lagged(_)) => Delivery::Gap,
                })
            })
        });
        Ok(Box::pin(stream))
    }

    async fn ping(&self) -> Result<(), KvError> {
        if !self.subscriber.is_connected() {
            return Err(KvError::Unavailable("pub/sub connection is down".into()));
        }
        let _: Value = self.pool.ping(None).await.map_err(unavailable)?;
        Ok(())
    }

    async fn shutdown(&self) {
        self.stop.cancel();
        let _ = self.subscriber.quit().await;
        let _ = self.pool.quit().await;
    }
}

/// A stream from a poll function (keeps the guard alive as long as the stream).
fn async_stream_from<F>(f: F) -> futures_util::stream::PollFn<F>
where
    F: FnMut(&mut std::task::Context<'_>) -> std::task::Poll<Option<Delivery>>,
{
    futures_util::stream::poll_fn(f)
}

/// Unsubscribes from Redis when the last local subscriber of a channel goes away.
struct UnsubscribeOnDrop {
    name: String,
    channels: Channels,
    subscriber: SubscriberClient,
    subscribe_lock: Arc<tokio::sync::Mutex<()>>,
}

impl Drop for UnsubscribeOnDrop {
    fn drop(&mut self) {
        let name = std::mem::take(&mut self.name);
        let channels = Arc::clone(&self.channels);
        let subscriber = self.subscriber.clone();
        let subscribe_lock = Arc::clone(&self.subscribe_lock);
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        // The receiver is dropped with the stream after this guard, so count it as gone by
        // re-checking under the subscribe lock in a task that runs after the drop completes.
        runtime.spawn(async move {
            let _serial = subscribe_lock.lock().await;
            let idle = {
                let mut map = lock(&channels);
                let idle = map.get(&name).is_some_and(|s| s.receiver_count() == 0);
                if idle {
                    map.remove(&name);
                }
                idle
            };
            if idle && let Err(e) = subscriber.unsubscribe(name).await {
                tracing::debug!(error = %e, "unsubscribe failed");
            }
        });
    }
}
