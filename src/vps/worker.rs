//! `tessera worker`: a worker process that provisions sessions for a server, over the
//! signed HTTP protocol of [`super::workers`]. It heartbeats, long-polls for jobs, runs each
//! provision job's steps in order through a driver and reports every step, and tears down
//! what the server says has ended.
//!
//! Drivers: `simulated` (each step takes a set time; optionally fails at a named step) and
//! `command` (runs an executable per step with the session and step in its environment;
//! exit status 0 is done, anything else failed; the last line of output is the message).
//! The server runs a simulated one in-process in the embedded default.

use std::{
    collections::HashMap,
    path::PathBuf,
    sync::{Arc, Mutex},
    time::Duration,
};

use anyhow::Context as _;
use clap::{Args, ValueEnum};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use url::Url;
use uuid::Uuid;

use super::{
    service::{JobOut, ProvisionSpec},
    workers::{KEY_HEADER, NONCE_HEADER, SIGNATURE_HEADER, Signed, TIMESTAMP_HEADER, signature},
};
use crate::config::{HumanDuration, Secret};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DriverKind {
    Simulated,
    Command,
}

/// Settings of `tessera worker`.
#[derive(Debug, Clone, Args)]
pub struct WorkerArgs {
    /// The server's base URL (e.g. http://127.0.0.1:8080).
    #[arg(long, env = "WORKER_SERVER_URL", value_name = "WORKER_SERVER_URL")]
    pub server_url: Url,

    /// Key id from the admin `createWorker` mutation.
    #[arg(long, env = "WORKER_KEY_ID", value_name = "WORKER_KEY_ID")]
    pub key_id: String,

    /// Secret from the admin `createWorker` mutation.
    #[arg(long, env = "WORKER_SECRET", value_name = "WORKER_SECRET")]
    pub secret: Secret,

    #[arg(
        long,
        env = "WORKER_DRIVER",
        value_name = "WORKER_DRIVER",
        value_enum,
        default_value = "simulated"
    )]
    pub driver: DriverKind,

    /// Simulated driver: milliseconds each step takes.
    #[arg(
        long,
        env = "SIMULATED_STEP_MS",
        value_name = "SIMULATED_STEP_MS",
        default_value_t = 1500
    )]
    pub simulated_step_ms: u64,

    /// Simulated driver: fail at this step (a checklist key such as `boot`).
    #[arg(long, env = "SIMULATED_FAIL_STEP", value_name = "SIMULATED_FAIL_STEP")]
    pub simulated_fail_step: Option<String>,

    /// Command driver: the executable run for each step (and for `teardown`).
    #[arg(long, env = "WORKER_COMMAND", value_name = "WORKER_COMMAND")]
    pub command: Option<PathBuf>,

    /// Command driver: longest run of one step.
    #[arg(
        long,
        env = "WORKER_COMMAND_TIMEOUT",
        value_name = "WORKER_COMMAND_TIMEOUT",
        default_value = "10m"
    )]
    pub command_timeout: HumanDuration,

    /// Sessions run at once (reported in each heartbeat).
    #[arg(
        long,
        env = "WORKER_CAPACITY",
        value_name = "WORKER_CAPACITY",
        default_value_t = 4
    )]
    pub capacity: u32,

    #[arg(
        long,
        env = "WORKER_HEARTBEAT_INTERVAL",
        value_name = "WORKER_HEARTBEAT_INTERVAL",
        default_value = "5s"
    )]
    pub heartbeat_interval: HumanDuration,

    /// Host name reported for the machines this worker runs.
    #[arg(
        long,
        env = "WORKER_PUBLIC_HOST",
        value_name = "WORKER_PUBLIC_HOST",
        default_value = "127.0.0.1"
    )]
    pub public_host: String,

    /// SSH port reported for the machines this worker runs.
    #[arg(
        long,
        env = "WORKER_SSH_PORT",
        value_name = "WORKER_SSH_PORT",
        default_value_t = 22
    )]
    pub ssh_port: u16,

    /// Log filter (tracing `EnvFilter` syntax).
    #[arg(
        long,
        env = "RUST_LOG",
        value_name = "RUST_LOG",
        default_value = "info"
    )]
    pub log_filter: String,
}

/// How a worker does each step.
#[derive(Debug, Clone)]
pub enum Driver {
    Simulated {
        step: Duration,
        fail_at: Option<String>,
    },
    Command {
        program: PathBuf,
        timeout: Duration,
    },
}

/// A step's result: done or failed, and a line to show.
struct StepResult {
    ok: bool,
    message: String,
}

impl Driver {
    pub fn from_args(args: &WorkerArgs) -> anyhow::Result<Self> {
        Ok(match args.driver {
            DriverKind::Simulated => Driver::Simulated {
                step: Duration::from_millis(args.simulated_step_ms),
                fail_at: args.simulated_fail_step.clone(),
            },
            DriverKind::Command => Driver::Command {
                program: args
                    .command
                    .clone()
                    .context("WORKER_COMMAND is required with WORKER_DRIVER=command")?,
                timeout: args.command_timeout.0,
            },
        })
    }

    async fn run(&self, session: Uuid, step: &str, spec: Option<&ProvisionSpec>) -> StepResult {
        match self {
            Driver::Simulated {
                step: time,
                fail_at,
            } => {
                tokio::time::sleep(*time).await;
                if fail_at.as_deref() == Some(step) {
                    StepResult {
                        ok: false,
                        message: format!("simulated failure at {step}"),
                    }
                } else {
                    StepResult {
                        ok: true,
                        message: format!("{step}: ok"),
                    }
                }
            }
            Driver::Command { program, timeout } => {
                run_command(program, *timeout, session, step, spec).await
            }
        }
    }
}

/// Runs the step command; the last non-empty line of its output is the message.
async fn run_command(
    program: &PathBuf,
    timeout: Duration,
    session: Uuid,
    step: &str,
    spec: Option<&ProvisionSpec>,
) -> StepResult {
    let mut command = tokio::process::Command::new(program);
    command
        .env("TESSERA_SESSION_ID", session.to_string())
        .env("TESSERA_STEP", step)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    if let Some(spec) = spec {
        command
            .env("TESSERA_VCPU", spec.vcpu.to_string())
            .env("TESSERA_MEMORY_MB", spec.memory_mb.to_string())
            .env("TESSERA_DISK_GB", spec.disk_gb.to_string())
            .env("TESSERA_REGION", &spec.region)
            .env("TESSERA_HOURS", spec.hours.to_string())
            .env("TESSERA_USERNAME", &spec.username);
        if let Some(password) = &spec.password {
            command.env("TESSERA_PASSWORD", password);
        }
        if let Some(key) = &spec.ssh_public_key {
            command.env("TESSERA_SSH_PUBLIC_KEY", key);
        }
    }
    let output = match tokio::time::timeout(timeout, command.output()).await {
        Ok(Ok(output)) => output,
        Ok(Err(e)) => {
            return StepResult {
                ok: false,
                message: format!("could not run {}: {e}", program.display()),
            };
        }
        Err(_) => {
            return StepResult {
                ok: false,
                message: format!("{step} took longer than {}s", timeout.as_secs()),
            };
        }
    };
    let text = [output.stdout, output.stderr]
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .join("\n");
    let last = text
        .lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty())
        .unwrap_or("")
        .to_owned();
    let ok = output.status.success();
    let message = if last.is_empty() {
        match output.status.code() {
            Some(code) => format!("exit status {code}"),
            None => "killed by a signal".to_owned(),
        }
    } else {
        last
    };
    StepResult { ok, message }
}

/// The signed HTTP client of one worker.
#[derive(Clone)]
pub struct WorkerClient {
    http: reqwest::Client,
    base: Url,
    key_id: String,
    secret: Secret,
}

/// What a call answered: the status and the JSON body (`null` when not JSON).
pub struct Answer {
    pub status: u16,
    pub body: Value,
}

impl WorkerClient {
    pub fn new(base: Url, key_id: String, secret: Secret) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(60))
            .no_proxy()
            .build()?;
        Ok(Self {
            http,
            base,
            key_id,
            secret,
        })
    }

    /// Sends one signed request (signed afresh each call, so a retry is not a replay).
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<Answer> {
        let url = self.base.join(path.trim_start_matches('/'))?;
        let signed_path = match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_owned(),
        };
        let bytes = body
            .map(serde_json::to_vec)
            .transpose()?
            .unwrap_or_default();
        let timestamp = chrono::Utc::now().timestamp();
        let nonce = super::workers::nonce();
        let sig = signature(
            self.secret.expose(),
            &Signed {
                method: method.as_str(),
                path: &signed_path,
                timestamp,
                nonce: &nonce,
                body: &bytes,
            },
        );
        let mut request = self
            .http
            .request(method, url)
            .header(KEY_HEADER, &self.key_id)
            .header(TIMESTAMP_HEADER, timestamp.to_string())
            .header(NONCE_HEADER, nonce)
            .header(SIGNATURE_HEADER, sig);
        if body.is_some() {
            request = request
                .header("content-type", "application/json")
                .body(bytes);
        }
        let response = request.send().await?;
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        Ok(Answer {
            status,
            body: serde_json::from_str(&text).unwrap_or(Value::Null),
        })
    }
}

fn base_url(mut url: Url) -> Url {
    if !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    url
}

/// Everything a running worker needs.
#[derive(Debug, Clone)]
pub struct WorkerOptions {
    pub server_url: Url,
    pub key_id: String,
    pub secret: Secret,
    pub driver: Driver,
    pub capacity: u32,
    pub heartbeat_interval: Duration,
    pub public_host: String,
    pub ssh_port: u16,
}

impl WorkerOptions {
    pub fn from_args(args: &WorkerArgs) -> anyhow::Result<Self> {
        Ok(Self {
            server_url: args.server_url.clone(),
            key_id: args.key_id.clone(),
            secret: args.secret.clone(),
            driver: Driver::from_args(args)?,
            capacity: args.capacity,
            heartbeat_interval: args.heartbeat_interval.0,
            public_host: args.public_host.clone(),
            ssh_port: args.ssh_port,
        })
    }
}

/// A machine this worker holds (building, running or being torn down).
struct Machine {
    /// Stops the build.
    cancel: CancellationToken,
    /// A teardown is under way: another request for one is the same request.
    tearing_down: bool,
}

/// Sessions this worker holds a machine for, until their teardown has been reported: the
/// heartbeat lists them, and the server reads a session missing from it as a lost machine.
type Held = Arc<Mutex<HashMap<Uuid, Machine>>>;

fn lock(held: &Held) -> std::sync::MutexGuard<'_, HashMap<Uuid, Machine>> {
    held.lock().unwrap_or_else(|e| e.into_inner())
}

struct Worker {
    client: WorkerClient,
    options: WorkerOptions,
    held: Held,
    shutdown: CancellationToken,
}

/// Runs a worker until `shutdown`.
pub async fn run(options: WorkerOptions, shutdown: CancellationToken) -> anyhow::Result<()> {
    let client = WorkerClient::new(
        base_url(options.server_url.clone()),
        options.key_id.clone(),
        options.secret.clone(),
    )?;
    let worker = Arc::new(Worker {
        client,
        options,
        held: Arc::default(),
        shutdown,
    });
    tracing::info!(server = %worker.options.server_url, driver = ?worker.options.driver, capacity = worker.options.capacity, "worker starting");
    let beats = tokio::spawn(Arc::clone(&worker).heartbeats());
    worker.pull().await;
    let _ = beats.await;
    tracing::info!("worker stopped");
    Ok(())
}

impl Worker {
    async fn heartbeats(self: Arc<Self>) {
        let mut tick = tokio::time::interval(self.options.heartbeat_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = self.shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            let sessions: Vec<Uuid> = lock(&self.held).keys().copied().collect();
            let body = json!({ "capacity": self.options.capacity, "sessions": sessions });
            match self
                .client
                .call(reqwest::Method::POST, "workers/heartbeat", Some(&body))
                .await
            {
                Ok(answer) if answer.status == 200 => {
                    let ended: Vec<Uuid> =
                        serde_json::from_value(answer.body["teardown"].clone()).unwrap_or_default();
                    for session in ended {
                        self.start_teardown(session);
                    }
                }
                Ok(answer) => {
                    tracing::warn!(status = answer.status, body = %answer.body, "heartbeat refused")
                }
                Err(e) => tracing::warn!(error = %e, "heartbeat failed"),
            }
        }
    }

    async fn pull(self: &Arc<Self>) {
        let mut backoff = Duration::from_millis(500);
        while !self.shutdown.is_cancelled() {
            let answer = tokio::select! {
                _ = self.shutdown.cancelled() => return,
                answer = self.client.call(reqwest::Method::GET, "workers/jobs?wait=20", None) => answer,
            };
            let jobs: Vec<JobOut> = match answer {
                Ok(answer) if answer.status == 200 => {
                    backoff = Duration::from_millis(500);
                    serde_json::from_value(answer.body["jobs"].clone()).unwrap_or_default()
                }
                other => {
                    match other {
                        Ok(answer) => {
                            tracing::warn!(status = answer.status, body = %answer.body, "job pull refused")
                        }
                        Err(e) => tracing::warn!(error = %e, "job pull failed"),
                    }
                    tokio::select! {
                        _ = self.shutdown.cancelled() => return,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                    continue;
                }
            };
            for job in jobs {
                match (job.kind.as_str(), job.provision.clone()) {
                    ("provision", Some(spec)) => self.start_provision(job.session_id, spec),
                    ("teardown", _) => self.start_teardown(job.session_id),
                    (kind, _) => tracing::warn!(kind, "unknown job kind"),
                }
            }
        }
    }

    fn start_provision(self: &Arc<Self>, session: Uuid, spec: ProvisionSpec) {
        let cancel = self.shutdown.child_token();
        lock(&self.held).insert(
            session,
            Machine {
                cancel: cancel.clone(),
                tearing_down: false,
            },
        );
        tracing::info!(session.id = %session, %spec, "provisioning");
        let worker = Arc::clone(self);
        tokio::spawn(async move {
            tokio::select! {
                _ = cancel.cancelled() => {}
                _ = worker.provision(session, &spec) => {}
            }
        });
    }

    /// Runs every step in order, reporting each; stops at a failure or when the server
    /// says the session is no longer provisioning.
    async fn provision(&self, session: Uuid, spec: &ProvisionSpec) {
        let last = spec.steps.len().saturating_sub(1);
        for (i, step) in spec.steps.iter().enumerate() {
            if !self.report(session, step, "running", None, None).await {
                return;
            }
            let result = self.options.driver.run(session, step, Some(spec)).await;
            let connection = (result.ok && i == last).then(
                || json!({ "host": self.options.public_host, "port": self.options.ssh_port }),
            );
            let status = if result.ok { "done" } else { "failed" };
            if !self
                .report(session, step, status, Some(&result.message), connection)
                .await
                || !result.ok
            {
                if !result.ok {
                    lock(&self.held).remove(&session);
                }
                return;
            }
        }
        tracing::info!(session.id = %session, "machine ready");
    }

    /// Sends one step report, retrying transient failures. False when the server refused
    /// it for good (the session ended, or the report is wrong): stop working on it.
    async fn report(
        &self,
        session: Uuid,
        step: &str,
        status: &str,
        message: Option<&str>,
        connection: Option<Value>,
    ) -> bool {
        let mut body = json!({ "sessionId": session, "step": step, "status": status });
        if let Some(message) = message {
            body["message"] = json!(message);
        }
        if let Some(connection) = connection {
            body["connection"] = connection;
        }
        let mut backoff = Duration::from_millis(200);
        for _ in 0..8 {
            match self
                .client
                .call(reqwest::Method::POST, "workers/events", Some(&body))
                .await
            {
                Ok(answer) if answer.status == 200 => return true,
                Ok(answer) if (400..500).contains(&answer.status) && answer.status != 429 => {
                    tracing::warn!(session.id = %session, step, status = answer.status, body = %answer.body, "step report refused: stopping");
                    return false;
                }
                Ok(answer) => {
                    tracing::warn!(status = answer.status, "step report not applied; retrying")
                }
                Err(e) => tracing::warn!(error = %e, "step report failed; retrying"),
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
        false
    }

    fn start_teardown(self: &Arc<Self>, session: Uuid) {
        {
            let mut held = lock(&self.held);
            let machine = held.entry(session).or_insert_with(|| Machine {
                cancel: CancellationToken::new(),
                tearing_down: false,
            });
            if machine.tearing_down {
                return;
            }
            machine.tearing_down = true;
            machine.cancel.cancel();
        }
        let worker = Arc::clone(self);
        tokio::spawn(async move {
            let result = worker.options.driver.run(session, "teardown", None).await;
            let status = if result.ok { "done" } else { "failed" };
            tracing::info!(session.id = %session, status, "torn down");
            worker
                .report(session, "teardown", status, Some(&result.message), None)
                .await;
            // Listed until now, so a long teardown is never taken for a lost machine.
            lock(&worker.held).remove(&session);
        });
    }
}

/// Runs the embedded simulated worker against this server (`addr`) until shutdown. Its
/// credentials are made afresh at each start and never leave the process.
pub async fn run_embedded(state: crate::app::AppState, addr: std::net::SocketAddr) {
    let capacity = state.config.vps.embedded_worker_capacity.min(10_000) as i32;
    let created = match super::service::embedded_worker(&state, capacity).await {
        Ok(created) => created,
        Err(e) => {
            tracing::error!(error = %e, "the embedded worker could not register");
            return;
        }
    };
    let ip = match addr.ip() {
        ip if ip.is_unspecified() && ip.is_ipv6() => std::net::Ipv6Addr::LOCALHOST.into(),
        ip if ip.is_unspecified() => std::net::Ipv4Addr::LOCALHOST.into(),
        ip => ip,
    };
    let server_url = match Url::parse(&format!(
        "http://{}/",
        std::net::SocketAddr::new(ip, addr.port())
    )) {
        Ok(url) => url,
        Err(e) => {
            tracing::error!(error = %e, "the embedded worker has no server URL");
            return;
        }
    };
    let options = WorkerOptions {
        server_url,
        key_id: created.row.key_id,
        secret: Secret::new(created.secret),
        driver: Driver::Simulated {
            step: Duration::from_millis(state.config.vps.simulated_step_ms),
            fail_at: None,
        },
        capacity: capacity as u32,
        heartbeat_interval: Duration::from_secs(5),
        public_host: "127.0.0.1".to_owned(),
        ssh_port: 2222,
    };
    if let Err(e) = run(options, state.shutdown.clone()).await {
        tracing::error!(error = %e, "the embedded worker stopped");
    }
}
