//! Shared plumbing every domain builds on: database, kv and pub/sub, HTTP middleware and
//! probes, telemetry, the audit log.

pub mod audit;
pub mod clock;
pub mod db;
pub mod http;
pub mod kv;
pub mod mail;
pub mod server;
pub mod spa;
pub mod telemetry;

use std::{
    collections::{HashMap, HashSet},
    future::Future,
    time::Duration,
};

use tokio_util::sync::CancellationToken;

/// A map keyed by values nobody outside chooses (digests of verified tokens, ids we minted,
/// fixed label sets), so a fast hasher is safe; randomly seeded all the same.
pub type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;
/// The set kind of [`FastMap`], for the same kind of keys.
pub type FastSet<T> = HashSet<T, foldhash::fast::RandomState>;

/// Runs `round` every `period` until `shutdown` fires, and once more then when
/// `last_round` (a flush of what is still buffered). A slow round delays the next one
/// rather than piling up.
pub async fn every<F, Fut>(
    shutdown: &CancellationToken,
    period: Duration,
    last_round: bool,
    mut round: F,
) where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()>,
{
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => {
                if last_round {
                    round().await;
                }
                return;
            }
            _ = tick.tick() => round().await,
        }
    }
}
