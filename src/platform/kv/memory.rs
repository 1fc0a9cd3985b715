//! In-process kv for a single embedded server. Same contract as Redis, including expiry
//! and pub/sub lag (a bounded broadcast channel per channel name), so tests catch code that
//! relies on a delivery guarantee neither backend gives.

use std::{
    collections::HashMap,
    pin::Pin,
    sync::{Arc, Mutex, MutexGuard},
    task::{Context, Poll},
    time::Duration,
};

use futures_util::{Stream, StreamExt};
use tokio::{sync::broadcast, time::Instant};
use tokio_stream::wrappers::{BroadcastStream, errors::BroadcastStreamRecvError};

use super::{Delivery, Kv, KvError, RateDecision, RateLimit, Subscription, gcra};

#[derive(Debug)]
struct Entry {
    value: Vec<u8>,
    expires_at: Option<Instant>,
}

impl Entry {
    fn live(&self, now: Instant) -> bool {
        self.expires_at.is_none_or(|at| at > now)
    }
}

#[derive(Default)]
struct State {
    entries: HashMap<String, Entry>,
    writes_since_sweep: usize,
}

impl State {
    fn live(&mut self, key: &str, now: Instant) -> Option<&mut Entry> {
        if self.entries.get(key).is_some_and(|e| !e.live(now)) {
            self.entries.remove(key);
        }
        self.entries.get_mut(key)
    }

    /// Drops expired entries now and then, so keys nobody reads again do not pile up.
    fn after_write(&mut self, now: Instant) {
        self.writes_since_sweep += 1;
        if self.writes_since_sweep >= 1024 {
            self.writes_since_sweep = 0;
            self.entries.retain(|_, e| e.live(now));
        }
    }
}

/// The in-process implementation.
pub struct MemoryKv {
    prefix: String,
    state: Mutex<State>,
    channels: Arc<Mutex<HashMap<String, broadcast::Sender<Vec<u8>>>>>,
    capacity: usize,
    /// Start of the millisecond clock the rate limiter uses.
    epoch: Instant,
}

impl MemoryKv {
    pub fn new(prefix: &str, capacity: usize) -> Self {
        Self {
            prefix: prefix.to_owned(),
            state: Mutex::new(State::default()),
            channels: Arc::new(Mutex::new(HashMap::new())),
            capacity: capacity.max(1),
            epoch: Instant::now(),
        }
    }

    fn key(&self, key: &str) -> String {
        let mut full = String::with_capacity(self.prefix.len() + key.len());
        full.push_str(&self.prefix);
        full.push_str(key);
        full
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave an entry half-written, so the data is
        // still consistent; keep serving rather than poisoning every later call.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn channels(&self) -> MutexGuard<'_, HashMap<String, broadcast::Sender<Vec<u8>>>> {
        self.channels.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[async_trait::async_trait]
impl Kv for MemoryKv {
    fn backend(&self) -> &'static str {
        "memory"
    }

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        let now = Instant::now();
        Ok(self
            .lock()
            .live(&self.key(key), now)
            .map(|e| e.value.clone()))
    }

    async fn set(&self, key: &str, value: &[u8], ttl: Option<Duration>) -> Result<(), KvError> {
        let now = Instant::now();
        let mut state = self.lock();
        state.entries.insert(
            self.key(key),
            Entry {
                value: value.to_vec(),
                expires_at: ttl.map(|t| now + t),
            },
        );
        state.after_write(now);
        Ok(())
    }

    async fn set_nx(&self, key: &str, value: &[u8], ttl: Duration) -> Result<bool, KvError> {
        let now = Instant::now();
        let key = self.key(key);
        let mut state = self.lock();
        if state.live(&key, now).is_some() {
            return Ok(false);
        }
        state.entries.insert(
            key,
            Entry {
                value: value.to_vec(),
                expires_at: Some(now + ttl),
            },
        );
        state.after_write(now);
        Ok(true)
    }

    async fn take(&self, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        let now = Instant::now();
        let key = self.key(key);
        let mut state = self.lock();
        state.live(&key, now);
        Ok(state.entries.remove(&key).map(|e| e.value))
    }

    async fn delete(&self, key: &str) -> Result<bool, KvError> {
        let now = Instant::now();
        let key = self.key(key);
        let mut state = self.lock();
        state.live(&key, now);
        Ok(state.entries.remove(&key).is_some())
    }

    async fn ttl(&self, key: &str) -> Result<Option<Duration>, KvError> {
        let now = Instant::now();
        Ok(self
            .lock()
            .live(&self.key(key), now)
            .and_then(|e| e.expires_at)
            .map(|at| at - now))
    }

    async fn incr(&self, key: &str, by: i64, ttl: Duration) -> Result<i64, KvError> {
        let now = Instant::now();
        let key = self.key(key);
        let mut state = self.lock();
        let next = match state.live(&key, now) {
            Some(entry) => {
                let current: i64 = std::str::from_utf8(&entry.value)
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(|| KvError::Protocol("value is not an integer".into()))?;
                let next = current
                    .checked_add(by)
                    .ok_or_else(|| KvError::Protocol("increment would overflow".into()))?;
                entry.value = next.to_string().into_bytes();
                next
            }
            None => {
                state.entries.insert(
                    key,
                    Entry {
                        value: by.to_string().into_bytes(),
                        expires_at: Some(now + ttl),
                    },
                );
                by
            }
        };
        state.after_write(now);
        Ok(next)
    }

    async fn rate_limit(&self, key: &str, limit: RateLimit) -> Result<RateDecision, KvError> {
        let now = Instant::now();
        let now_us = (now - self.epoch).as_micros() as u64;
        let key = self.key(key);
        let mut state = self.lock();
        // The usual case, a live entry, is read and written in place: one lookup.
        if let Some(entry) = state.entries.get_mut(&key)
            && entry.live(now)
        {
            let tat = std::str::from_utf8(&entry.value)
                .ok()
                .and_then(|v| v.parse::<u64>().ok());
            let (decision, new_tat) = gcra(limit, tat, now_us);
            if let Some(new_tat) = new_tat {
                entry.value.clear();
                entry
                    .value
                    .extend_from_slice(itoa::Buffer::new().format(new_tat).as_bytes());
                entry.expires_at = Some(now + Duration::from_micros(new_tat - now_us));
                state.after_write(now);
            }
            return Ok(decision);
        }
        let (decision, new_tat) = gcra(limit, None, now_us);
        match new_tat {
            Some(new_tat) => {
                state.entries.insert(
                    key,
                    Entry {
                        value: itoa::Buffer::new().format(new_tat).as_bytes().to_vec(),
                        expires_at: Some(now + Duration::from_micros(new_tat - now_us)),
                    },
                );
                state.after_write(now);
            }
            // Refused with nothing to store: an expired entry is not kept either.
            None => {
                state.entries.remove(&key);
            }
        }
        Ok(decision)
    }

    async fn publish(&self, channel: &str, payload: &[u8]) -> Result<(), KvError> {
        let channels = self.channels();
        if let Some(sender) = channels.get(&self.key(channel)) {
            // No receiver left is not an error: pub/sub drops messages nobody listens to.
            let _ = sender.send(payload.to_vec());
        }
        Ok(())
    }

    async fn subscribe(&self, channel: &str) -> Result<Subscription, KvError> {
        let name = self.key(channel);
        let receiver = {
            let mut channels = self.channels();
            channels
                .entry(name.clone())
                .or_insert_with(|| broadcast::channel(self.capacity).0)
                .subscribe()
        };
        Ok(Box::pin(MemorySubscription {
            inner: Some(BroadcastStream::new(receiver)),
            name,
            channels: Arc::clone(&self.channels),
        }))
    }

    async fn ping(&self) -> Result<(), KvError> {
        Ok(())
    }
}

/// A subscriber's stream; removes the channel's sender once its last subscriber is gone.
struct MemorySubscription {
    inner: Option<BroadcastStream<Vec<u8>>>,
    name: String,
    channels: Arc<Mutex<HashMap<String, broadcast::Sender<Vec<u8>>>>>,
}

impl Stream for MemorySubscription {
    type Item = Delivery;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Delivery>> {
        let Some(inner) = self.inner.as_mut() else {
            return Poll::Ready(None);
        };
        inner.poll_next_unpin(cx).map(|item| {
            item.map(|item| match item {
                Ok(payload) => Delivery::Message(payload),
                Err(BroadcastStreamRecvError::Lagged(_)) => Delivery::Gap,
            })
        })
    }
}

impl Drop for MemorySubscription {
    fn drop(&mut self) {
        // Drop our receiver first, so the count below no longer includes it.
        self.inner.take();
        let mut channels = self.channels.lock().unwrap_or_else(|e| e.into_inner());
        if channels
            .get(&self.name)
            .is_some_and(|s| s.receiver_count() == 0)
        {
            channels.remove(&self.name);
        }
    }
}
