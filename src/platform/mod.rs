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

use std::{future::Future, time::Duration};

use tokio_util::sync::CancellationToken;

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
