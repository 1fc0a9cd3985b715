//! VPS sessions: a coin-paid marketplace of machines that workers provision, with each
//! provisioning step streamed live to the browser.
//!
//! - A session is paid for when started: a coin reservation (two-phase transfer) in the
//!   transaction that creates it. The reservation is posted when the machine is running,
//!   voided when it fails or is stopped before that; stopping a running session early
//!   refunds its unused whole hours.
//! - Workers are separate processes (`tessera worker`, or one simulated inside the server)
//!   that speak a small signed HTTP protocol ([`workers`]): heartbeat, job pull, step events.
//! - Every change to a session or its checklist is one row of `vps_session_events` with the
//!   next `seq`, written in the transaction of the change, then published on pub/sub;
//!   `vpsSessionProgress` reads the snapshot, follows pub/sub, and fills any gap from the
//!   table, so a subscriber on any instance sees every event once and in order.

pub mod config;
pub mod entity;
pub mod graphql;
pub mod service;
pub mod worker;
pub mod workers;

/// The provisioning checklist every session gets: (key, title), in order. Running means
/// every step done.
pub const CHECKLIST: [(&str, &str); 7] = [
    ("reserve_capacity", "Reserve capacity"),
    ("create_vm", "Create the virtual machine"),
    ("boot", "Boot"),
    ("configure_network", "Configure the network"),
    ("install_agent", "Install the agent"),
    ("health_check", "Health check"),
    ("ready", "Ready"),
];

/// Where a session is in its life.
#[derive(async_graphql::Enum, serde::Serialize, Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[graphql(name = "VpsSessionStatus")]
#[serde(rename_all = "lowercase")]
pub enum SessionStatus {
    /// Paid, assigned to a worker that has not picked it up yet.
    Pending,
    /// Paid, waiting for a worker with free capacity.
    Queued,
    /// A worker is running the checklist.
    Provisioning,
    Running,
    /// Stopped by its owner; the worker is tearing it down.
    Stopping,
    Stopped,
    Failed,
    Expired,
}

impl SessionStatus {
    pub const ALL: [SessionStatus; 8] = [
        SessionStatus::Pending,
        SessionStatus::Queued,
        SessionStatus::Provisioning,
        SessionStatus::Running,
        SessionStatus::Stopping,
        SessionStatus::Stopped,
        SessionStatus::Failed,
        SessionStatus::Expired,
    ];

    /// Statuses of a session that still counts against its owner's and its worker's limits.
    pub const LIVE: [SessionStatus; 5] = [
        SessionStatus::Pending,
        SessionStatus::Queued,
        SessionStatus::Provisioning,
        SessionStatus::Running,
        SessionStatus::Stopping,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SessionStatus::Pending => "pending",
            SessionStatus::Queued => "queued",
            SessionStatus::Provisioning => "provisioning",
            SessionStatus::Running => "running",
            SessionStatus::Stopping => "stopping",
            SessionStatus::Stopped => "stopped",
            SessionStatus::Failed => "failed",
            SessionStatus::Expired => "expired",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// Nothing changes after this; progress streams end here.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            SessionStatus::Stopped | SessionStatus::Failed | SessionStatus::Expired
        )
    }

    pub fn live_strs() -> Vec<&'static str> {
        Self::LIVE.iter().map(|s| s.as_str()).collect()
    }
}

/// A worker's status as an admin set it.
#[derive(async_graphql::Enum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkerStatus {
    /// Gets new sessions.
    Online,
    /// Finishes what it has, gets nothing new.
    Draining,
    /// Every request refused.
    Disabled,
}

impl WorkerStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            WorkerStatus::Online => "online",
            WorkerStatus::Draining => "draining",
            WorkerStatus::Disabled => "disabled",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            WorkerStatus::Online,
            WorkerStatus::Draining,
            WorkerStatus::Disabled,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
    }
}
