//! The integration harness every domain's tests use: [`TestApp`] boots the real server on
//! an ephemeral port with a fresh database and a fresh kv namespace, and talks to it over
//! real sockets.
//!
//! - Database: a temporary SQLite file by default; with `TEST_DATABASE_URL` (an admin URL
//!   such as postgres://postgres@127.0.0.1:5432/postgres) a new PostgreSQL database per
//!   test, dropped when the app is.
//! - kv: Redis when `REDIS_URL` is set, under a unique key prefix per test; in-process
//!   otherwise. [`TestAppBuilder::memory_kv`] and [`TestAppBuilder::redis_url`] override.
//! - [`TestApp::spawn_peer`] starts a second instance on the same database and kv prefix,
//!   for cross-instance behaviour.
//! - `TEST_LOG=debug` (any filter) prints the server's logs.

use std::{net::SocketAddr, sync::Once, time::Duration};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tempfile::TempDir;
use tessera::{AppState, Application, Config, config::SecretUrl};
use tokio::{net::TcpStream, task::JoinHandle};
use tokio_tungstenite::{
    MaybeTlsStream, WebSocketStream,
    tungstenite::{self, Message, client::IntoClientRequest, http::HeaderValue},
};
use tokio_util::sync::CancellationToken;
use url::Url;

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

fn init_logs() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        if let Ok(filter) = std::env::var("TEST_LOG") {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
                .with_test_writer()
                .try_init();
        }
    });
}

/// The Redis URL tests should use, if any.
pub fn redis_url() -> Option<String> {
    std::env::var("REDIS_URL").ok().filter(|s| !s.is_empty())
}

/// A [`TcpProxy`] in front of the test Redis, to cut it off; `None` without REDIS_URL.
pub async fn redis_proxy() -> Option<TcpProxy> {
    let Some(redis) = redis_url() else {
        eprintln!("REDIS_URL unset: an outage test needs a Redis to cut off");
        return None;
    };
    let target = url::Url::parse(&redis).expect("REDIS_URL parses");
    let target = format!(
        "{}:{}",
        target.host_str().unwrap_or("127.0.0.1"),
        target.port().unwrap_or(6379)
    );
    Some(TcpProxy::start(&target).await)
}

/// A PostgreSQL database made for one test; dropped (forcibly) with it.
struct PgTestDb {
    admin_url: String,
    name: String,
}

impl PgTestDb {
    async fn create(admin_url: &str) -> (Self, String) {
        use sea_orm::sqlx::{Connection, PgConnection};
        let name = format!("tessera_test_{}", uuid::Uuid::new_v4().simple());
        let mut conn = PgConnection::connect(admin_url)
            .await
            .expect("TEST_DATABASE_URL must reach PostgreSQL");
        sea_orm::sqlx::query(sea_orm::sqlx::AssertSqlSafe(format!(
            "CREATE DATABASE \"{name}\""
        )))
        .execute(&mut conn)
        .await
        .expect("create the test database");
        let _ = conn.close().await;
        let mut url = Url::parse(admin_url).expect("TEST_DATABASE_URL is a URL");
        url.set_path(&format!("/{name}"));
        (
            Self {
                admin_url: admin_url.to_owned(),
                name,
            },
            url.to_string(),
        )
    }
}

impl Drop for PgTestDb {
    fn drop(&mut self) {
        let admin_url = self.admin_url.clone();
        let name = self.name.clone();
        // Drop runs inside the test's runtime; use a thread with its own to finish the work.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async {
                use sea_orm::sqlx::{Connection, PgConnection};
                if let Ok(mut conn) = PgConnection::connect(&admin_url).await {
                    let _ = sea_orm::sqlx::query(sea_orm::sqlx::AssertSqlSafe(format!(
                        "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
                    )))
                    .execute(&mut conn)
                    .await;
                    let _ = conn.close().await;
                }
            });
        })
        .join();
    }
}

/// A change to the settings, applied before start-up.
type ConfigureFn = Box<dyn FnOnce(&mut Config) + Send>;

enum KvChoice {
    FromEnv,
    Memory,
    Redis(String),
}

/// Settings for one test server.
pub struct TestAppBuilder {
    kv: KvChoice,
    database_url: Option<String>,
    kv_prefix: Option<String>,
    data_dir: Option<std::path::PathBuf>,
    configure: Vec<ConfigureFn>,
}

impl TestAppBuilder {
    /// In-process kv even when REDIS_URL is set.
    pub fn memory_kv(mut self) -> Self {
        self.kv = KvChoice::Memory;
        self
    }

    /// This Redis URL (a proxy in front of Redis, say).
    pub fn redis_url(mut self, url: impl Into<String>) -> Self {
        self.kv = KvChoice::Redis(url.into());
        self
    }

    /// Changes any setting before start-up.
    pub fn configure(mut self, f: impl FnOnce(&mut Config) + Send + 'static) -> Self {
        self.configure.push(Box::new(f));
        self
    }

    pub async fn spawn(self) -> TestApp {
        init_logs();
        let dir = tempfile::tempdir().expect("temp dir");
        let (pg, database_url) = match (self.database_url, std::env::var("TEST_DATABASE_URL")) {
            (Some(url), _) => (None, url),
            (None, Ok(admin)) if !admin.is_empty() => {
                let (db, url) = PgTestDb::create(&admin).await;
                (Some(db), url)
            }
            _ => (
                None,
                format!(
                    "sqlite://{}?mode=rwc",
                    dir.path().join("tessera.db").display()
                ),
            ),
        };
        let kv_prefix = self
            .kv_prefix
            .unwrap_or_else(|| format!("test:{}:", uuid::Uuid::new_v4().simple()));

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind an ephemeral port");
        let addr = listener.local_addr().expect("local addr");

        let mut config = Config::from_args([
            "--listen-addr",
            &addr.to_string(),
            "--database-url",
            &database_url,
            "--kv-prefix",
            &kv_prefix,
            "--shutdown-timeout",
            "5s",
            // Cheap hashing keeps the suite fast; the cost is a setting, not a code path.
            "--argon2-memory-kib",
            "64",
            "--argon2-iterations",
            "1",
            "--mail-transport",
            "memory",
        ])
        .expect("test settings parse");
        config.public_url = None;
        config.data_dir = self.data_dir.unwrap_or_else(|| dir.path().join("data"));
        config.redis_url = match self.kv {
            KvChoice::FromEnv => redis_url().map(SecretUrl::new),
            KvChoice::Memory => None,
            KvChoice::Redis(url) => Some(SecretUrl::new(url)),
        };
        // Tests that want a worker start one (the embedded one would take every session).
        config.vps.embedded_worker = Some(false);
        // No app unless a test builds one (a local frontend/dist would answer app routes).
        config.spa_dir = dir.path().join("no-app");
        for f in self.configure {
            f(&mut config);
        }
        config.validate().expect("test settings are valid");

        let app = Application::build(config, listener)
            .await
            .expect("the server starts");
        let state = app.state().clone();
        let shutdown = CancellationToken::new();
        let handle = tokio::spawn(app.run(shutdown.clone()));
        TestApp {
            addr,
            client: reqwest::Client::builder()
                .no_proxy()
                .build()
                .expect("http client"),
            state,
            shutdown,
            handle: Some(handle),
            database_url,
            kv_prefix,
            _pg: pg,
            _dir: dir,
        }
    }
}

/// A running server and a client for it.
pub struct TestApp {
    pub addr: SocketAddr,
    pub client: reqwest::Client,
    pub state: AppState,
    shutdown: CancellationToken,
    handle: Option<JoinHandle<anyhow::Result<()>>>,
    pub database_url: String,
    pub kv_prefix: String,
    // Dropped after the server stops (fields drop in order: the DB last).
    _dir: TempDir,
    _pg: Option<PgTestDb>,
}

impl TestApp {
    pub fn builder() -> TestAppBuilder {
        TestAppBuilder {
            kv: KvChoice::FromEnv,
            database_url: None,
            kv_prefix: None,
            data_dir: None,
            configure: Vec::new(),
        }
    }

    pub async fn spawn() -> TestApp {
        Self::builder().spawn().await
    }

    /// The Prometheus text of `GET /metrics`.
    pub async fn metrics(&self) -> String {
        self.client
            .get(self.url("/metrics"))
            .send()
            .await
            .expect("GET /metrics")
            .text()
            .await
            .expect("metrics text")
    }

    /// A second instance sharing this one's database, kv namespace and keys.
    pub async fn spawn_peer(&self) -> TestApp {
        self.spawn_peer_with(Self::builder()).await
    }

    /// [`TestApp::spawn_peer`] with `builder`'s other settings.
    pub async fn spawn_peer_with(&self, mut builder: TestAppBuilder) -> TestApp {
        builder.database_url = Some(self.database_url.clone());
        builder.kv_prefix = Some(self.kv_prefix.clone());
        // Same keys, as instances of one deployment have.
        builder.data_dir = Some(self.state.config.data_dir.clone());
        // The same store, unless the builder names a way to it (a proxy, say).
        if matches!(builder.kv, KvChoice::FromEnv) {
            builder.kv = match &self.state.config.redis_url {
                Some(url) => KvChoice::Redis(url.expose().to_owned()),
                None => KvChoice::Memory,
            };
        }
        builder.spawn().await
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// POSTs a GraphQL request and returns the parsed body (status must be 200).
    pub async fn graphql(&self, query: &str, variables: Value) -> Value {
        let response = self
            .client
            .post(self.url("/graphql"))
            .json(&json!({ "query": query, "variables": variables }))
            .send()
            .await
            .expect("POST /graphql");
        assert_eq!(response.status(), 200, "GraphQL over HTTP answers 200");
        response.json().await.expect("a JSON body")
    }

    /// POSTs `body` (a whole GraphQL request: query, variables, operationName) as JSON and
    /// returns the parsed answer, whatever its status.
    pub async fn post_graphql(&self, body: Value) -> Value {
        self.client
            .post(self.url("/graphql"))
            .json(&body)
            .send()
            .await
            .expect("POST /graphql")
            .json()
            .await
            .expect("a JSON body")
    }

    /// POSTs a GraphQL request with `Authorization: Bearer <token>`.
    pub async fn graphql_as(&self, token: &str, query: &str, variables: Value) -> Value {
        let response = self
            .client
            .post(self.url("/graphql"))
            .bearer_auth(token)
            .json(&json!({ "query": query, "variables": variables }))
            .send()
            .await
            .expect("POST /graphql");
        assert_eq!(response.status(), 200);
        response.json().await.expect("a JSON body")
    }

    /// Registers an account and returns its session.
    pub async fn register(&self, email: &str, username: &str) -> Session {
        let body = self
            .graphql(
                "mutation($input: RegisterInput!) { register(input: $input) { user { id role } accessToken refreshToken } }",
                json!({ "input": { "email": email, "username": username, "password": PASSWORD } }),
            )
            .await;
        assert!(body["errors"].is_null(), "register failed: {body}");
        Session::from_payload(&body["data"]["register"])
    }

    /// Signs in with the test password.
    pub async fn login(&self, email: &str, password: &str) -> Value {
        self.graphql(
            "mutation($e: String!, $p: String!) { login(email: $e, password: $p) { user { id role } accessToken refreshToken } }",
            json!({ "e": email, "p": password }),
        )
        .await
    }

    /// Opens `/graphql/ws` with `protocol`, optionally sending `Origin`.
    pub async fn ws_connect(
        &self,
        protocol: &str,
        origin: Option<&str>,
    ) -> Result<Ws, tungstenite::Error> {
        let mut request = format!("ws://{}/graphql/ws", self.addr)
            .into_client_request()
            .expect("a WebSocket request");
        request.headers_mut().insert(
            "sec-websocket-protocol",
            HeaderValue::from_str(protocol).expect("header value"),
        );
        if let Some(origin) = origin {
            request.headers_mut().insert(
                "origin",
                HeaderValue::from_str(origin).expect("header value"),
            );
        }
        tokio_tungstenite::connect_async(request)
            .await
            .map(|(ws, _)| ws)
    }

    /// Opens a `graphql-transport-ws` connection signed in with `access`, acknowledged.
    pub async fn ws_signed_in(&self, access: &str) -> Ws {
        let mut ws = self
            .ws_connect("graphql-transport-ws", None)
            .await
            .expect("WebSocket connects");
        ws_send(
            &mut ws,
            json!({"type": "connection_init", "payload": {"authorization": format!("Bearer {access}")}}),
        )
        .await;
        assert_eq!(ws_next(&mut ws).await["type"], "connection_ack");
        ws
    }

    /// Stops the server gracefully and waits for it.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        let handle = self.handle.take().expect("running");
        tokio::time::timeout(Duration::from_secs(30), handle)
            .await
            .expect("the server stops in time")
            .expect("the server task did not panic")
    }

    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    pub fn take_handle(&mut self) -> JoinHandle<anyhow::Result<()>> {
        self.handle.take().expect("running")
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
        if let Some(handle) = self.handle.take() {
            handle.abort();
        }
    }
}

/// The password the helpers register accounts with.
pub const PASSWORD: &str = "plum-orbit-cascade-91";

/// A signed-in test account.
#[derive(Debug, Clone)]
pub struct Session {
    pub user_id: String,
    pub role: String,
    pub access: String,
    pub refresh: String,
}

impl Session {
    pub fn from_payload(payload: &Value) -> Session {
        Session {
            user_id: payload["user"]["id"].as_str().expect("user id").to_owned(),
            role: payload["user"]["role"]
                .as_str()
                .unwrap_or("USER")
                .to_owned(),
            access: payload["accessToken"]
                .as_str()
                .expect("access token")
                .to_owned(),
            refresh: payload["refreshToken"]
                .as_str()
                .expect("refresh token")
                .to_owned(),
        }
    }
}

/// `extensions.code` and `extensions.reason` of the first error.
pub fn error_of(body: &Value) -> (String, String) {
    let ext = &body["errors"][0]["extensions"];
    (
        ext["code"].as_str().unwrap_or("").to_owned(),
        ext["reason"].as_str().unwrap_or("").to_owned(),
    )
}

pub async fn ws_send(ws: &mut Ws, message: Value) {
    ws.send(Message::text(message.to_string()))
        .await
        .expect("send a WebSocket message");
}

/// The next text message as JSON (pings skipped); panics on close or after 5 s.
pub async fn ws_next(ws: &mut Ws) -> Value {
    loop {
        let message = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("a message within 5 s")
            .expect("the socket is open")
            .expect("a valid frame");
        match message {
            Message::Text(text) => return serde_json::from_str(&text).expect("JSON message"),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("expected a text message, got {other:?}"),
        }
    }
}

/// Waits for the server's close frame and returns its code and reason.
pub async fn ws_close_code(ws: &mut Ws, within: Duration) -> (u16, String) {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let message = tokio::time::timeout_at(deadline, ws.next())
            .await
            .expect("a close frame in time");
        match message {
            Some(Ok(Message::Close(Some(frame)))) => {
                return (u16::from(frame.code), frame.reason.to_string());
            }
            Some(Ok(Message::Close(None))) => return (1005, String::new()),
            Some(Ok(_)) => continue,
            Some(Err(e)) => panic!("socket failed before a close frame: {e}"),
            None => panic!("socket ended without a close frame"),
        }
    }
}

/// Polls `/ready` until it answers `status`, for at most `within`.
pub async fn wait_ready_status(app: &TestApp, status: u16, within: Duration) -> Value {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let response = app
            .client
            .get(app.url("/ready"))
            .send()
            .await
            .expect("GET /ready");
        let got = response.status().as_u16();
        let body: Value = response.json().await.expect("JSON body");
        if got == status {
            return body;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "/ready stayed {got} (wanted {status}): {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A TCP relay in front of a server, that a test can cut and restore to simulate an outage.
pub struct TcpProxy {
    pub addr: SocketAddr,
    target: String,
    stop: CancellationToken,
}

impl TcpProxy {
    pub async fn start(target: &str) -> TcpProxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the proxy");
        let addr = listener.local_addr().expect("proxy addr");
        let proxy = TcpProxy {
            addr,
            target: target.to_owned(),
            stop: CancellationToken::new(),
        };
        proxy.serve(listener);
        proxy
    }

    fn serve(&self, listener: tokio::net::TcpListener) {
        let target = self.target.clone();
        let stop = self.stop.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = stop.cancelled() => break,
                    accepted = listener.accept() => {
                        let Ok((mut inbound, _)) = accepted else { continue };
                        let target = target.clone();
                        let stop = stop.clone();
                        tokio::spawn(async move {
                            let Ok(mut outbound) = TcpStream::connect(&target).await else { return };
                            tokio::select! {
                                _ = stop.cancelled() => {}
                                _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                            }
                        });
                    }
                }
            }
        });
    }

    /// Closes every relayed connection and stops accepting new ones.
    pub fn cut(&mut self) {
        self.stop.cancel();
    }

    /// Accepts again on the same address.
    pub async fn restore(&mut self) {
        self.stop = CancellationToken::new();
        let mut attempts = 0;
        let listener = loop {
            match tokio::net::TcpListener::bind(self.addr).await {
                Ok(listener) => break listener,
                Err(e) if attempts < 50 => {
                    attempts += 1;
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("cannot rebind the proxy on {}: {e}", self.addr),
            }
        };
        self.serve(listener);
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// The `tessera` binary, run in `dir` with no inherited database, kv or listen settings.
pub fn tessera_command(dir: &std::path::Path) -> std::process::Command {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_tessera"));
    command
        .current_dir(dir)
        .env_remove("DATABASE_URL")
        .env_remove("REDIS_URL")
        .env_remove("LISTEN_ADDR")
        .env_remove("RUST_LOG")
        .env("LOG_FORMAT", "json")
        .env("ARGON2_MEMORY_KIB", "64")
        .env("ARGON2_ITERATIONS", "1");
    command
}

/// The real binary serving on a free port, with its logs captured.
pub struct BinaryServer {
    child: tokio::process::Child,
    pub base: String,
    pub client: reqwest::Client,
    log_path: std::path::PathBuf,
    pub dir: TempDir,
}

impl BinaryServer {
    /// Starts `tessera serve` with `envs` and waits for /ready.
    pub async fn start(envs: &[(&str, String)]) -> BinaryServer {
        let dir = tempfile::tempdir().unwrap();
        let port = {
            let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            probe.local_addr().unwrap().port()
        };
        let log_path = dir.path().join("server.log");
        let log = std::fs::File::create(&log_path).unwrap();
        let mut command = tessera_command(dir.path());
        command
            .env("LISTEN_ADDR", format!("127.0.0.1:{port}"))
            .env("PUBLIC_URL", format!("http://127.0.0.1:{port}"))
            .stdout(std::process::Stdio::null())
            .stderr(log.try_clone().unwrap());
        for (key, value) in envs {
            command.env(key, value);
        }
        let child = tokio::process::Command::from(command).spawn().unwrap();
        let server = BinaryServer {
            child,
            base: format!("http://127.0.0.1:{port}"),
            client: reqwest::Client::builder().no_proxy().build().unwrap(),
            log_path,
            dir,
        };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while !server
            .client
            .get(format!("{}/ready", server.base))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
        {
            assert!(tokio::time::Instant::now() < deadline, "never became ready");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        server
    }

    pub async fn graphql(&self, query: &str, variables: Value) -> Value {
        self.client
            .post(format!("{}/graphql", self.base))
            .json(&json!({ "query": query, "variables": variables }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// Sends SIGTERM, waits for a clean exit, and returns everything the server logged.
    pub async fn stop(mut self) -> String {
        let pid = self.child.id().unwrap().to_string();
        let killed = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap();
        assert!(killed.success());
        let status = tokio::time::timeout(Duration::from_secs(15), self.child.wait())
            .await
            .expect("exits after SIGTERM")
            .unwrap();
        assert!(status.success(), "{status:?}");
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }
}

/// A browser stand-in for redirect flows: follows no redirect by itself, and keeps cookies
/// per host and path (`Max-Age=0` deletes), sending them as a browser would.
pub struct Browser {
    client: reqwest::Client,
    jar: std::sync::Mutex<Vec<JarCookie>>,
}

#[derive(Debug, Clone)]
struct JarCookie {
    host: String,
    path: String,
    name: String,
    value: String,
}

impl Default for Browser {
    fn default() -> Self {
        Self::new()
    }
}

impl Browser {
    pub fn new() -> Browser {
        Browser {
            client: reqwest::Client::builder()
                .no_proxy()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("http client"),
            jar: Default::default(),
        }
    }

    /// `GET url` with the cookies that apply; remembers those set by the answer.
    pub async fn get(&self, url: &str) -> reqwest::Response {
        let parsed = Url::parse(url).expect("an absolute URL");
        let host = parsed.host_str().unwrap_or("").to_owned();
        let cookies: Vec<String> = self
            .jar
            .lock()
            .unwrap()
            .iter()
            .filter(|c| c.host == host && parsed.path().starts_with(&c.path))
            .map(|c| format!("{}={}", c.name, c.value))
            .collect();
        let mut request = self.client.get(url);
        if !cookies.is_empty() {
            request = request.header("cookie", cookies.join("; "));
        }
        let response = request.send().await.expect("GET");
        for header in response.headers().get_all("set-cookie") {
            self.store(&host, header.to_str().expect("ASCII cookie"));
        }
        response
    }

    fn store(&self, host: &str, header: &str) {
        let mut parts = header.split(';').map(str::trim);
        let (name, value) = parts
            .next()
            .and_then(|nv| nv.split_once('='))
            .expect("name=value");
        let mut path = "/".to_owned();
        let mut delete = false;
        for attr in parts {
            if let Some(p) = attr.strip_prefix("Path=") {
                path = p.to_owned();
            }
            if attr == "Max-Age=0" {
                delete = true;
            }
        }
        let mut jar = self.jar.lock().unwrap();
        jar.retain(|c| !(c.host == host && c.name == name && c.path == path));
        if !delete {
            jar.push(JarCookie {
                host: host.to_owned(),
                path,
                name: name.to_owned(),
                value: value.to_owned(),
            });
        }
    }

    /// The value of cookie `name` held for `host`, if any.
    pub fn cookie(&self, host: &str, name: &str) -> Option<String> {
        self.jar
            .lock()
            .unwrap()
            .iter()
            .find(|c| c.host == host && c.name == name)
            .map(|c| c.value.clone())
    }

    /// Sets a cookie as if a page had (for tests that start signed in).
    pub fn set_cookie(&self, host: &str, name: &str, value: &str) {
        self.store(host, &format!("{name}={value}; Path=/"));
    }
}

/// The `Location` of a redirect, resolved against the URL that answered.
pub fn location(response: &reqwest::Response) -> String {
    assert!(
        response.status().is_redirection(),
        "expected a redirect, got {}",
        response.status()
    );
    let raw = response.headers()["location"].to_str().expect("ASCII");
    response
        .url()
        .join(raw)
        .expect("a valid Location")
        .to_string()
}
