//! VPS settings (flattened into [`crate::config::Config`]).

use clap::Args;

use crate::config::HumanDuration;

#[derive(Debug, Clone, Args)]
pub struct VpsConfig {
    /// Live (not yet ended) sessions a user may have at once.
    #[arg(
        long,
        env = "VPS_MAX_LIVE_SESSIONS",
        value_name = "VPS_MAX_LIVE_SESSIONS",
        default_value_t = 3
    )]
    pub vps_max_live_sessions: u32,

    /// A worker silent this long is marked offline; its provisioning sessions fail.
    #[arg(
        long,
        env = "VPS_HEARTBEAT_TIMEOUT",
        value_name = "VPS_HEARTBEAT_TIMEOUT",
        default_value = "30s"
    )]
    pub vps_heartbeat_timeout: HumanDuration,

    /// How long a worker has, after taking a job, to list its session in its heartbeats.
    /// A provision job it does not list by then is handed out again (or the session fails
    /// once steps were reported); a running session it no longer lists ends, the unused
    /// whole hours back; a teardown it was sent again.
    #[arg(
        long,
        env = "VPS_JOB_LEASE",
        value_name = "VPS_JOB_LEASE",
        default_value = "30s"
    )]
    pub vps_job_lease: HumanDuration,

    /// Running sessions on a worker offline this long end (the unused whole hours back).
    #[arg(
        long,
        env = "VPS_OFFLINE_GRACE",
        value_name = "VPS_OFFLINE_GRACE",
        default_value = "10m"
    )]
    pub vps_offline_grace: HumanDuration,

    /// A session waiting this long for a free worker fails (refunded in full).
    #[arg(
        long,
        env = "VPS_QUEUE_TIMEOUT",
        value_name = "VPS_QUEUE_TIMEOUT",
        default_value = "30m"
    )]
    pub vps_queue_timeout: HumanDuration,

    /// A session still provisioning after this long fails (refunded in full).
    #[arg(
        long,
        env = "VPS_PROVISION_TIMEOUT",
        value_name = "VPS_PROVISION_TIMEOUT",
        default_value = "15m"
    )]
    pub vps_provision_timeout: HumanDuration,

    /// How often each instance sweeps: expiry, silent workers, timeouts, the queue.
    #[arg(
        long,
        env = "VPS_SWEEP_INTERVAL",
        value_name = "VPS_SWEEP_INTERVAL",
        default_value = "5s"
    )]
    pub vps_sweep_interval: HumanDuration,

    /// Run a simulated worker inside the server. Unset: on with the embedded SQLite
    /// database, off with PostgreSQL.
    #[arg(long, env = "EMBEDDED_WORKER", value_name = "EMBEDDED_WORKER")]
    pub embedded_worker: Option<bool>,

    /// Sessions the embedded worker runs at once.
    #[arg(
        long,
        env = "EMBEDDED_WORKER_CAPACITY",
        value_name = "EMBEDDED_WORKER_CAPACITY",
        default_value_t = 8
    )]
    pub embedded_worker_capacity: u32,

    /// Milliseconds each step of the simulated worker takes.
    #[arg(
        long,
        env = "SIMULATED_STEP_MS",
        value_name = "SIMULATED_STEP_MS",
        default_value_t = 1500
    )]
    pub simulated_step_ms: u64,
}
