//! VPS sessions end to end: paying, provisioning by a real worker over the signed HTTP
//! protocol, the live progress stream on both WebSocket protocols (and across instances),
//! stopping and refunds, failures, timeouts, expiry, and every refusal. Each test that moves
//! coins ends by checking the ledger invariants.

use std::time::Duration;

use futures_util::future::join_all;
use sea_orm::{ActiveModelTrait, ActiveValue::Set, EntityTrait, IntoActiveModel, PaginatorTrait};
use serde_json::{Value, json};
use tessera::{
    config::{HumanDuration, Secret},
    vps::{
        entity::{session, worker as worker_row},
        service,
        worker::{Driver, WorkerClient, WorkerOptions},
        workers::{Signed, signature},
    },
};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::helpers::{Session, TestApp, TestAppBuilder, Ws, error_of, ws_next, ws_send};

const ADMIN: &str = "ops@example.com";

/// A server with an admin and one product at 10 coins an hour.
struct Market {
    app: TestApp,
    admin: Session,
    product: String,
}

fn builder() -> TestAppBuilder {
    TestApp::builder().configure(|c| {
        c.identity.admin_emails = vec![ADMIN.into()];
        c.vps.vps_sweep_interval = HumanDuration(Duration::from_millis(200));
    })
}

async fn market_on(builder: TestAppBuilder) -> Market {
    let app = builder.spawn().await;
    let admin = app.register(ADMIN, "ops").await;
    let product = create_product(&app, &admin, 10, true).await;
    Market {
        app,
        admin,
        product,
    }
}

async fn market() -> Market {
    market_on(builder()).await
}

async fn create_product(app: &TestApp, admin: &Session, price: i64, active: bool) -> String {
    let body = app
        .graphql_as(
            &admin.access,
            "mutation($i: VpsProductInput!) { createVpsProduct(input: $i) { id name active pricePerHour } }",
            json!({ "i": {
                "name": format!("small-{price}"), "description": "2 vCPU, 2 GiB",
                "vcpu": 2, "memoryMb": 2048, "diskGb": 40, "region": "eu-west",
                "pricePerHour": price, "active": active,
            }}),
        )
        .await;
    assert!(body["errors"].is_null(), "{body}");
    body["data"]["createVpsProduct"]["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn customer(m: &Market, email: &str, name: &str, coins: i64) -> Session {
    let user = m.app.register(email, name).await;
    if coins > 0 {
        let body = m
            .app
            .graphql_as(
                &m.admin.access,
                "mutation($u: ID!, $a: Int!) { grantCoins(userId: $u, amount: $a, reason: \"test\") { id } }",
                json!({ "u": user.user_id, "a": coins }),
            )
            .await;
        assert!(body["errors"].is_null(), "{body}");
    }
    user
}

/// A registered worker's credentials.
struct Creds {
    id: String,
    key_id: String,
    secret: String,
}

async fn create_worker(m: &Market, name: &str, capacity: i32) -> Creds {
    let body = m
        .app
        .graphql_as(
            &m.admin.access,
            "mutation($i: WorkerInput!) { createWorker(input: $i) { keyId secret worker { id name status online } } }",
            json!({ "i": { "name": name, "capacity": capacity } }),
        )
        .await;
    assert!(body["errors"].is_null(), "{body}");
    let c = &body["data"]["createWorker"];
    assert_eq!(c["worker"]["status"], "ONLINE");
    assert_eq!(
        c["worker"]["online"], false,
        "online only after a heartbeat"
    );
    Creds {
        id: c["worker"]["id"].as_str().unwrap().to_owned(),
        key_id: c["keyId"].as_str().unwrap().to_owned(),
        secret: c["secret"].as_str().unwrap().to_owned(),
    }
}

fn client(app: &TestApp, creds: &Creds) -> WorkerClient {
    WorkerClient::new(
        app.url("/").parse().unwrap(),
        creds.key_id.clone(),
        Secret::new(creds.secret.clone()),
    )
    .unwrap()
}

/// Runs the real worker (simulated driver) in this process; cancel to stop it.
fn run_worker(
    app: &TestApp,
    creds: &Creds,
    step_ms: u64,
    fail_at: Option<&str>,
) -> CancellationToken {
    let stop = CancellationToken::new();
    let options = WorkerOptions {
        server_url: app.url("/").parse().unwrap(),
        key_id: creds.key_id.clone(),
        secret: Secret::new(creds.secret.clone()),
        driver: Driver::Simulated {
            step: Duration::from_millis(step_ms),
            fail_at: fail_at.map(str::to_owned),
        },
        capacity: 4,
        heartbeat_interval: Duration::from_millis(200),
        public_host: "vm.test".into(),
        ssh_port: 2200,
    };
    tokio::spawn(tessera::vps::worker::run(options, stop.clone()));
    stop
}

const SESSION_FIELDS: &str =
    "id status hours amountPaid amountRefunded lastSeq failureReason endsAt";

async fn start(m: &Market, user: &Session, hours: i32, key: Option<&str>) -> Value {
    m.app
        .graphql_as(
            &user.access,
            &format!("mutation($i: StartVpsSessionInput!) {{ startVpsSession(input: $i) {{ {SESSION_FIELDS} }} }}"),
            json!({ "i": { "productId": m.product, "hours": hours, "idempotencyKey": key } }),
        )
        .await
}

async fn start_ok(m: &Market, user: &Session, hours: i32) -> Value {
    let body = start(m, user, hours, None).await;
    assert!(body["errors"].is_null(), "{body}");
    body["data"]["startVpsSession"].clone()
}

async fn get_session(app: &TestApp, user: &Session, id: &str) -> Value {
    app.graphql_as(
        &user.access,
        &format!("query($id: ID!) {{ vpsSession(id: $id) {{ {SESSION_FIELDS} connection {{ host port username password usesSshKey }} checklist {{ key status message }} transfers {{ amount direction kind status }} }} }}"),
        json!({ "id": id }),
    )
    .await
}

async fn wallet(app: &TestApp, user: &Session) -> (i64, i64) {
    let body = app
        .graphql_as(
            &user.access,
            "{ me { wallet { balance available } } }",
            json!({}),
        )
        .await;
    let w = &body["data"]["me"]["wallet"];
    (
        w["balance"].as_i64().unwrap(),
        w["available"].as_i64().unwrap(),
    )
}

async fn assert_sound(app: &TestApp) {
    let problems = tessera::wallet::service::check_invariants(app.state.db.conn())
        .await
        .unwrap();
    assert!(
        problems.is_empty(),
        "ledger invariants broken: {problems:#?}"
    );
}

/// Waits until the session has `status` (polling), and returns it.
async fn wait_status(app: &TestApp, user: &Session, id: &str, status: &str) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let body = get_session(app, user, id).await;
        let s = &body["data"]["vpsSession"];
        if s["status"] == status {
            return s.clone();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "session never reached {status}: {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

const PROGRESS: &str = "subscription($id: ID!, $after: Int) { vpsSessionProgress(sessionId: $id, afterSeq: $after) { seq snapshot session { status lastSeq } changedSteps { key position status message } } }";

/// A progress subscription on either WebSocket protocol.
struct Progress {
    ws: Ws,
}

impl Progress {
    async fn open(
        app: &TestApp,
        user: &Session,
        id: &str,
        after: Option<i32>,
        legacy: bool,
    ) -> Progress {
        let protocol = if legacy {
            "graphql-ws"
        } else {
            "graphql-transport-ws"
        };
        let mut ws = app.ws_connect(protocol, None).await.unwrap();
        ws_send(
            &mut ws,
            json!({"type": "connection_init", "payload": {"authorization": format!("Bearer {}", user.access)}}),
        )
        .await;
        assert_eq!(ws_next(&mut ws).await["type"], "connection_ack");
        let start = if legacy { "start" } else { "subscribe" };
        ws_send(
            &mut ws,
            json!({"id": "p", "type": start, "payload": {"query": PROGRESS, "variables": {"id": id, "after": after}}}),
        )
        .await;
        Progress { ws }
    }

    /// The next event, or `None` when the server completed the stream. Panics on an error.
    async fn next(&mut self) -> Option<Value> {
        loop {
            let message = ws_next(&mut self.ws).await;
            match message["type"].as_str() {
                Some("ka") => continue,
                Some("next" | "data") => {
                    assert!(message["payload"]["errors"].is_null(), "{message}");
                    return Some(message["payload"]["data"]["vpsSessionProgress"].clone());
                }
                Some("complete") => return None,
                _ => panic!("unexpected message: {message}"),
            }
        }
    }

    /// The error the subscription was refused with.
    async fn refusal(&mut self) -> (String, String) {
        let message = ws_next(&mut self.ws).await;
        // A resolver's refusal arrives as a result with errors (`next` / `data`), then
        // the stream completes.
        let errors = match message["type"].as_str() {
            Some("next" | "data") => message["payload"].clone(),
            Some("error") => json!({ "errors": message["payload"].clone() }),
            _ => panic!("expected a refusal: {message}"),
        };
        assert!(
            self.next().await.is_none(),
            "the stream ends after a refusal"
        );
        error_of(&errors)
    }

    /// Every event until the stream completes.
    async fn rest(&mut self) -> Vec<Value> {
        let mut events = Vec::new();
        while let Some(event) = self.next().await {
            events.push(event);
        }
        events
    }
}

/// (session status, [(step, step status)]) of an event, for comparing sequences.
fn shape(event: &Value) -> (String, Vec<(String, String)>) {
    let steps = event["changedSteps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["key"].as_str().unwrap().to_owned(),
                s["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    (
        event["session"]["status"].as_str().unwrap().to_owned(),
        steps,
    )
}

const STEPS: [&str; 7] = [
    "reserve_capacity",
    "create_vm",
    "boot",
    "configure_network",
    "install_agent",
    "health_check",
    "ready",
];

/// The events from assignment to running, as a worker that succeeds produces them.
fn provisioning_shapes() -> Vec<(String, Vec<(String, String)>)> {
    let mut out = vec![
        ("PENDING".to_owned(), vec![]),
        ("PROVISIONING".to_owned(), vec![]),
    ];
    for (i, step) in STEPS.iter().enumerate() {
        out.push((
            "PROVISIONING".into(),
            vec![((*step).into(), "RUNNING".into())],
        ));
        let status = if i + 1 == STEPS.len() {
            "RUNNING"
        } else {
            "PROVISIONING"
        };
        out.push((status.into(), vec![((*step).into(), "DONE".into())]));
    }
    out
}

fn assert_consecutive(events: &[Value], after: i64) {
    for (i, event) in events.iter().enumerate() {
        assert_eq!(
            event["seq"].as_i64().unwrap(),
            after + 1 + i as i64,
            "events out of order or missing: {events:#?}"
        );
    }
}

#[tokio::test]
async fn a_session_streams_every_step_runs_and_stopping_refunds_unused_hours() {
    let m = market().await;
    let ann = customer(&m, "ann@example.com", "ann", 1000).await;
    let creds = create_worker(&m, "w1", 4).await;

    // No worker has said hello yet: the session waits in the queue, paid for.
    let started = start_ok(&m, &ann, 3).await;
    assert_eq!(started["status"], "QUEUED");
    assert_eq!(started["amountPaid"], 30);
    assert_eq!(
        wallet(&m.app, &ann).await,
        (1000, 970),
        "reserved, not yet taken"
    );
    let id = started["id"].as_str().unwrap().to_owned();

    let mut progress = Progress::open(&m.app, &ann, &id, None, false).await;
    let snapshot = progress.next().await.unwrap();
    assert_eq!(snapshot["snapshot"], true);
    assert_eq!(snapshot["seq"], 1);
    assert_eq!(snapshot["session"]["status"], "QUEUED");
    let steps = snapshot["changedSteps"].as_array().unwrap();
    assert_eq!(steps.len(), 7);
    for (i, step) in steps.iter().enumerate() {
        assert_eq!(step["key"], STEPS[i]);
        assert_eq!(step["position"], i as i64 + 1);
        assert_eq!(step["status"], "PENDING");
    }

    let worker = run_worker(&m.app, &creds, 20, None);
    let mut events = Vec::new();
    for _ in 0..provisioning_shapes().len() {
        events.push(progress.next().await.expect("the stream goes on"));
    }
    assert_consecutive(&events, 1);
    assert_eq!(
        events.iter().map(shape).collect::<Vec<_>>(),
        provisioning_shapes()
    );
    assert!(events.iter().all(|e| e["snapshot"] == false));
    assert_eq!(events[15]["changedSteps"][0]["message"], "ready: ok");

    // Running: paid for, with somewhere to connect.
    assert_eq!(wallet(&m.app, &ann).await, (970, 970));
    let body = get_session(&m.app, &ann, &id).await;
    let s = &body["data"]["vpsSession"];
    assert_eq!(s["status"], "RUNNING", "{body}");
    assert_eq!(s["connection"]["host"], "vm.test");
    assert_eq!(s["connection"]["port"], 2200);
    assert_eq!(s["connection"]["username"], "tessera");
    assert_eq!(s["connection"]["usesSshKey"], false);
    assert!(s["connection"]["password"].as_str().unwrap().len() >= 20);
    assert!(
        s["checklist"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["status"] == "DONE")
    );

    // Stop within the first hour: two unused hours come back.
    let body = m
        .app
        .graphql_as(
            &ann.access,
            "mutation($id: ID!) { stopVpsSession(id: $id) { status amountRefunded } }",
            json!({ "id": id }),
        )
        .await;
    assert_eq!(
        body["data"]["stopVpsSession"]["status"], "STOPPING",
        "{body}"
    );
    assert_eq!(body["data"]["stopVpsSession"]["amountRefunded"], 20);
    let tail = progress.rest().await;
    assert_consecutive(&tail, 17);
    assert_eq!(
        tail.iter()
            .map(|e| e["session"]["status"].clone())
            .collect::<Vec<_>>(),
        vec![json!("STOPPING"), json!("STOPPED")],
        "the worker tore it down and the stream ended"
    );
    assert_eq!(wallet(&m.app, &ann).await, (990, 990));
    let body = get_session(&m.app, &ann, &id).await;
    let s = &body["data"]["vpsSession"];
    assert!(s["connection"].is_null(), "no connection once stopped");
    let transfers: Vec<(i64, String, String)> = s["transfers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["amount"].as_i64().unwrap(),
                t["direction"].as_str().unwrap().to_owned(),
                t["kind"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        transfers,
        vec![
            (30, "DEBIT".into(), "VPS_SESSION".into()),
            (30, "DEBIT".into(), "VPS_SESSION".into()),
            (20, "CREDIT".into(), "REFUND".into()),
        ],
        "reservation, its posting, the refund"
    );

    // Stopping again changes nothing.
    let body = m
        .app
        .graphql_as(
            &ann.access,
            "mutation($id: ID!) { stopVpsSession(id: $id) { status amountRefunded } }",
            json!({ "id": id }),
        )
        .await;
    assert_eq!(body["data"]["stopVpsSession"]["status"], "STOPPED");
    assert_eq!(wallet(&m.app, &ann).await, (990, 990));

    // A late subscriber resumes after any seq and gets exactly what followed.
    let mut resumed = Progress::open(&m.app, &ann, &id, Some(15), true).await;
    let rest = resumed.rest().await;
    assert_consecutive(&rest, 15);
    assert_eq!(rest.len(), 4);
    assert_eq!(rest[3]["session"]["status"], "STOPPED");
    worker.cancel();
    assert_sound(&m.app).await;
}

#[tokio::test]
async fn a_failed_step_fails_the_session_refunds_everything_and_ends_the_stream() {
    let m = market().await;
    let bo = customer(&m, "bo@example.com", "bobo", 100).await;
    let creds = create_worker(&m, "flaky", 2).await;
    let started = start_ok(&m, &bo, 5).await;
    let id = started["id"].as_str().unwrap().to_owned();
    assert_eq!(wallet(&m.app, &bo).await, (100, 50));

    // The legacy protocol this time.
    let mut progress = Progress::open(&m.app, &bo, &id, None, true).await;
    assert_eq!(progress.next().await.unwrap()["snapshot"], true);
    let worker = run_worker(&m.app, &creds, 10, Some("boot"));
    let events = progress.rest().await;
    assert_consecutive(&events, 1);
    let shapes: Vec<_> = events.iter().map(shape).collect();
    let last = shapes.last().unwrap();
    assert_eq!(
        last,
        &(
            "FAILED".to_owned(),
            vec![("boot".to_owned(), "FAILED".to_owned())]
        )
    );
    assert!(
        !shapes
            .iter()
            .any(|(_, steps)| steps.iter().any(|(k, _)| k == "configure_network")),
        "nothing after the failed step: {shapes:?}"
    );
    assert_eq!(
        events.last().unwrap()["changedSteps"][0]["message"],
        "simulated failure at boot"
    );

    let body = get_session(&m.app, &bo, &id).await;
    let s = &body["data"]["vpsSession"];
    assert_eq!(s["status"], "FAILED");
    assert_eq!(s["amountRefunded"], 50);
    assert!(
        s["failureReason"].as_str().unwrap().contains("boot"),
        "{body}"
    );
    assert!(s["connection"].is_null());
    assert_eq!(wallet(&m.app, &bo).await, (100, 100), "refunded in full");
    worker.cancel();
    assert_sound(&m.app).await;
}

#[tokio::test]
async fn a_subscriber_on_one_instance_sees_what_a_worker_posts_to_another() {
    let Some(redis) = crate::helpers::redis_url() else {
        eprintln!("REDIS_URL unset: cross-instance progress runs in the Redis pass of CI");
        return;
    };
    let m = market_on(builder().redis_url(redis)).await;
    let peer = m.app.spawn_peer_with(builder()).await;
    let cy = customer(&m, "cy@example.com", "cycy", 100).await;
    let creds = create_worker(&m, "far", 2).await;
    let started = start_ok(&m, &cy, 1).await;
    let id = started["id"].as_str().unwrap().to_owned();

    let mut progress = Progress::open(&m.app, &cy, &id, None, false).await;
    assert_eq!(progress.next().await.unwrap()["seq"], 1);
    // The worker talks only to the peer.
    let worker = run_worker(&peer, &creds, 10, None);
    let mut events = Vec::new();
    for _ in 0..provisioning_shapes().len() {
        events.push(progress.next().await.unwrap());
    }
    assert_consecutive(&events, 1);
    assert_eq!(
        events.iter().map(shape).collect::<Vec<_>>(),
        provisioning_shapes()
    );
    worker.cancel();
    assert_sound(&m.app).await;
}

/// Signs and posts `body` to `path` as a worker would, with the given parts.
async fn raw_to(
    app: &TestApp,
    path: &str,
    key_id: Option<&str>,
    secret: &str,
    timestamp: i64,
    nonce: &str,
    body: &str,
) -> (u16, Value) {
    let mut request = reqwest::Client::new()
        .post(app.url(path))
        .body(body.to_owned())
        .header("content-type", "application/json");
    if let Some(key_id) = key_id {
        let signed = Signed {
            method: "POST",
            path,
            timestamp,
            nonce,
            body: body.as_bytes(),
        };
        request = request
            .header("x-tessera-worker", key_id)
            .header("x-tessera-timestamp", timestamp.to_string())
            .header("x-tessera-nonce", nonce)
            .header("x-tessera-signature", signature(secret, &signed));
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

const NONCE: &str = "n0nce-for-the-test";

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// Drives a session to `provisioning` by hand: heartbeat, then claim the job.
async fn claim(m: &Market, creds: &Creds) -> Value {
    let c = client(&m.app, creds);
    let beat = c
        .call(reqwest::Method::POST, "workers/heartbeat", Some(&json!({})))
        .await
        .unwrap();
    assert_eq!(beat.status, 200, "{}", beat.body);
    let jobs = c
        .call(reqwest::Method::GET, "workers/jobs?wait=5", None)
        .await
        .unwrap();
    assert_eq!(jobs.status, 200, "{}", jobs.body);
    jobs.body["jobs"][0].clone()
}

/// Moves a running session's end into the past, as an hour passing would.
async fn end_now(app: &TestApp, id: &str) {
    let row = session::Entity::find_by_id(Uuid::parse_str(id).unwrap())
        .one(app.state.db.conn())
        .await
        .unwrap()
        .unwrap();
    let mut row = row.into_active_model();
    row.ends_at = Set(Some(chrono::Utc::now() - chrono::Duration::seconds(1)));
    row.update(app.state.db.conn()).await.unwrap();
}

/// Posts a step report with `client`: the status and the `error` reason, if any.
async fn report(client: &WorkerClient, report: Value) -> (u16, Value) {
    let answer = client
        .call(reqwest::Method::POST, "workers/events", Some(&report))
        .await
        .unwrap();
    (answer.status, answer.body)
}

fn reason(body: &Value) -> &str {
    body["error"].as_str().unwrap_or("")
}

async fn last_seq(app: &TestApp, id: &str) -> (i32, String) {
    let row = session::Entity::find_by_id(Uuid::parse_str(id).unwrap())
        .one(app.state.db.conn())
        .await
        .unwrap()
        .unwrap();
    (row.last_seq, row.status)
}

#[tokio::test]
async fn worker_requests_are_refused_unless_signed_fresh_once_and_enabled() {
    let m = market().await;
    let di = customer(&m, "di@example.com", "didi", 100).await;
    let creds = create_worker(&m, "strict", 2).await;
    let started = start_ok(&m, &di, 1).await;
    let id = started["id"].as_str().unwrap().to_owned();
    let job = claim(&m, &creds).await;
    assert_eq!(job["kind"], "provision");
    assert_eq!(job["sessionId"], id.as_str());
    assert_eq!(job["provision"]["vcpu"], 2);
    assert_eq!(job["provision"]["steps"].as_array().unwrap().len(), 7);
    assert!(job["provision"]["password"].as_str().is_some());
    let before = last_seq(&m.app, &id).await;
    assert_eq!(before.1, "provisioning");

    let event =
        json!({ "sessionId": id, "step": "reserve_capacity", "status": "done" }).to_string();
    // Stale means more than 300 s from the server's clock. The timestamps are taken here and
    // checked by the server a moment later, when its second may have ticked over: a margin
    // keeps `now + 301` from landing back inside the window on a loaded machine.
    let refusals = [
        (None, creds.secret.as_str(), now(), "missing_signature"),
        (
            Some(creds.key_id.as_str()),
            creds.secret.as_str(),
            now() - 330,
            "stale_timestamp",
        ),
        (
            Some(creds.key_id.as_str()),
            creds.secret.as_str(),
            now() + 330,
            "stale_timestamp",
        ),
        (
            Some("wk_nobody"),
            creds.secret.as_str(),
            now(),
            "unknown_worker",
        ),
        (
            Some(creds.key_id.as_str()),
            "wks_not-the-secret",
            now(),
            "bad_signature",
        ),
    ];
    for (key, secret, ts, reason) in refusals {
        let (status, body) =
            raw_to(&m.app, "/workers/events", key, secret, ts, NONCE, &event).await;
        assert_eq!(
            (status, body["error"].as_str().unwrap()),
            (401, reason),
            "{body}"
        );
    }
    // A signature over a different body does not carry over.
    let ts = now();
    let over_other_body = signature(
        &creds.secret,
        &Signed {
            method: "POST",
            path: "/workers/events",
            timestamp: ts,
            nonce: NONCE,
            body: b"{}",
        },
    );
    let response = reqwest::Client::new()
        .post(m.app.url("/workers/events"))
        .header("x-tessera-worker", &creds.key_id)
        .header("x-tessera-timestamp", ts.to_string())
        .header("x-tessera-nonce", NONCE)
        .header("x-tessera-signature", over_other_body)
        .body(event.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    // A nonce too short to be one.
    let (status, body) = raw_to(
        &m.app,
        "/workers/events",
        Some(&creds.key_id),
        &creds.secret,
        now(),
        "short",
        &event,
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str().unwrap()),
        (401, "missing_signature")
    );
    assert_eq!(last_seq(&m.app, &id).await, before, "nothing changed");

    // Signed once: applied. The very same request again: a replay.
    let ts = now();
    let (status, body) = raw_to(
        &m.app,
        "/workers/events",
        Some(&creds.key_id),
        &creds.secret,
        ts,
        NONCE,
        &event,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["applied"], true);
    assert_eq!(body["seq"], before.0 + 1);
    let (status, body) = raw_to(
        &m.app,
        "/workers/events",
        Some(&creds.key_id),
        &creds.secret,
        ts,
        NONCE,
        &event,
    )
    .await;
    assert_eq!((status, body["error"].as_str().unwrap()), (401, "replayed"));
    assert_eq!(last_seq(&m.app, &id).await.0, before.0 + 1);

    // Well signed but wrong: unknown step, out of order, another worker's session, bad JSON.
    let c = client(&m.app, &creds);
    for (sent, status, why) in [
        (
            json!({ "sessionId": id, "step": "paint", "status": "done" }),
            400,
            "unknown_step",
        ),
        (
            json!({ "sessionId": id, "step": "boot", "status": "done" }),
            409,
            "step_out_of_order",
        ),
        (
            json!({ "sessionId": id, "step": "create_vm", "status": "exploded" }),
            400,
            "invalid_status",
        ),
        (
            json!({ "sessionId": Uuid::new_v4(), "step": "boot", "status": "done" }),
            404,
            "unknown_session",
        ),
        (json!({ "session": id }), 400, "invalid_body"),
    ] {
        let (got, body) = report(&c, sent.clone()).await;
        assert_eq!((got, reason(&body)), (status, why), "{sent}");
    }
    let other = create_worker(&m, "other", 1).await;
    let (status, body) = report(
        &client(&m.app, &other),
        json!({ "sessionId": id, "step": "create_vm", "status": "done" }),
    )
    .await;
    assert_eq!((status, reason(&body)), (404, "unknown_session"));
    // The same report twice is applied once.
    let done = json!({ "sessionId": id, "step": "create_vm", "status": "done" });
    let (_, first) = report(&c, done.clone()).await;
    let (_, again) = report(&c, done).await;
    assert_eq!(
        (&first["applied"], &again["applied"]),
        (&json!(true), &json!(false))
    );
    assert_eq!(first["seq"], again["seq"]);
    let after_valid = last_seq(&m.app, &id).await;

    // Disabled: every request refused, even correctly signed.
    let body = m
        .app
        .graphql_as(
            &m.admin.access,
            "mutation($id: ID!) { setWorkerStatus(id: $id, status: DISABLED) { status } }",
            json!({ "id": creds.id }),
        )
        .await;
    assert_eq!(
        body["data"]["setWorkerStatus"]["status"], "DISABLED",
        "{body}"
    );
    let (status, body) = report(
        &c,
        json!({ "sessionId": id, "step": "boot", "status": "done" }),
    )
    .await;
    assert_eq!((status, reason(&body)), (401, "worker_disabled"));
    let answer = c
        .call(reqwest::Method::GET, "workers/jobs?wait=0", None)
        .await
        .unwrap();
    assert_eq!(answer.status, 401);
    assert_eq!(last_seq(&m.app, &id).await, after_valid, "nothing changed");

    // A heartbeat with an impossible capacity is refused and changes nothing.
    let capacity = || async {
        worker_row::Entity::find_by_id(Uuid::parse_str(&other.id).unwrap())
            .one(m.app.state.db.conn())
            .await
            .unwrap()
            .unwrap()
            .capacity
    };
    let answer = client(&m.app, &other)
        .call(
            reqwest::Method::POST,
            "workers/heartbeat",
            Some(&json!({ "capacity": -1 })),
        )
        .await
        .unwrap();
    assert_eq!(
        (answer.status, reason(&answer.body)),
        (400, "invalid_capacity")
    );
    assert_eq!(capacity().await, 1, "nothing changed");

    // Audited admin actions.
    let audit = tessera::platform::audit::recent(m.app.state.db.conn(), 20)
        .await
        .unwrap();
    let actions: Vec<&str> = audit.iter().map(|a| a.action.as_str()).collect();
    for action in [
        "vps.product.create",
        "vps.worker.create",
        "vps.worker.status",
    ] {
        assert!(
            actions.contains(&action),
            "{action} not audited: {actions:?}"
        );
    }
    assert_sound(&m.app).await;
}

#[tokio::test]
async fn starting_is_refused_without_coins_for_inactive_products_and_bad_hours() {
    let m = market().await;
    let ed = customer(&m, "ed@example.com", "eded", 25).await;
    let count = || async {
        session::Entity::find()
            .count(m.app.state.db.conn())
            .await
            .unwrap()
    };

    let body = start(&m, &ed, 3, None).await;
    assert_eq!(error_of(&body).0, "INSUFFICIENT_FUNDS", "{body}");
    for hours in [0, -1, 721] {
        let body = start(&m, &ed, hours, None).await;
        assert_eq!(
            error_of(&body),
            ("BAD_USER_INPUT".into(), "hours_out_of_range".into()),
            "{hours}: {body}"
        );
    }
    let closed = create_product(&m.app, &m.admin, 1, false).await;
    let body = m
        .app
        .graphql_as(
            &ed.access,
            "mutation($p: ID!) { startVpsSession(input: { productId: $p, hours: 1 }) { id } }",
            json!({ "p": closed }),
        )
        .await;
    assert_eq!(
        error_of(&body),
        ("BAD_USER_INPUT".into(), "product_inactive".into())
    );
    for (product, code) in [
        (Uuid::new_v4().to_string(), "NOT_FOUND"),
        ("nope".into(), "NOT_FOUND"),
    ] {
        let body = m
            .app
            .graphql_as(
                &ed.access,
                "mutation($p: ID!) { startVpsSession(input: { productId: $p, hours: 1 }) { id } }",
                json!({ "p": product }),
            )
            .await;
        assert_eq!(error_of(&body).0, code);
    }
    let body = m
        .app
        .graphql_as(
            &ed.access,
            "mutation($p: ID!) { startVpsSession(input: { productId: $p, hours: 1, sshPublicKey: \"not a key\" }) { id } }",
            json!({ "p": m.product }),
        )
        .await;
    assert_eq!(
        error_of(&body),
        ("BAD_USER_INPUT".into(), "invalid_ssh_key".into())
    );
    let body = m
        .app
        .graphql(
            "mutation($p: ID!) { startVpsSession(input: { productId: $p, hours: 1 }) { id } }",
            json!({ "p": m.product }),
        )
        .await;
    assert_eq!(error_of(&body).0, "UNAUTHENTICATED");
    // Products are admin-only to create, and inactive ones are hidden from users.
    let body = m
        .app
        .graphql_as(
            &ed.access,
            "mutation { createVpsProduct(input: { name: \"x\", vcpu: 1, memoryMb: 512, diskGb: 10, region: \"r\", pricePerHour: 1 }) { id } }",
            json!({}),
        )
        .await;
    assert_eq!(error_of(&body).0, "FORBIDDEN");
    let body = m
        .app
        .graphql("{ vpsProducts { id active } }", json!({}))
        .await;
    assert_eq!(
        body["data"]["vpsProducts"].as_array().unwrap().len(),
        1,
        "{body}"
    );

    assert_eq!(count().await, 0, "nothing was created");
    assert_eq!(wallet(&m.app, &ed).await, (25, 25), "nothing moved");
    assert_sound(&m.app).await;
}

#[tokio::test]
async fn another_users_session_is_not_found_for_queries_mutations_and_streams() {
    let m = market().await;
    let fay = customer(&m, "fay@example.com", "fay", 100).await;
    let gus = customer(&m, "gus@example.com", "gus", 100).await;
    let id = start_ok(&m, &fay, 2).await["id"]
        .as_str()
        .unwrap()
        .to_owned();

    let body = get_session(&m.app, &gus, &id).await;
    assert_eq!(error_of(&body).0, "NOT_FOUND", "{body}");
    for mutation in [
        "mutation($id: ID!) { stopVpsSession(id: $id) { id } }",
        "mutation($id: ID!) { extendVpsSession(id: $id, hours: 1) { id } }",
    ] {
        let body = m
            .app
            .graphql_as(&gus.access, mutation, json!({ "id": id }))
            .await;
        assert_eq!(error_of(&body).0, "NOT_FOUND", "{body}");
    }
    for legacy in [false, true] {
        let mut progress = Progress::open(&m.app, &gus, &id, None, legacy).await;
        assert_eq!(progress.refusal().await.0, "NOT_FOUND");
    }
    let body = m
        .app
        .graphql_as(
            &gus.access,
            "{ me { vpsSessions { totalCount } } }",
            json!({}),
        )
        .await;
    assert_eq!(body["data"]["me"]["vpsSessions"]["totalCount"], 0);
    // The owner sees it; so does an admin.
    let body = m
        .app
        .graphql_as(
            &fay.access,
            "{ me { vpsSessions(status: QUEUED) { totalCount edges { node { id } } } } }",
            json!({}),
        )
        .await;
    assert_eq!(body["data"]["me"]["vpsSessions"]["totalCount"], 1, "{body}");
    let body = get_session(&m.app, &m.admin, &id).await;
    assert_eq!(body["data"]["vpsSession"]["id"], id.as_str());
    // A seq past the session's last (or below zero) is refused, on both protocols.
    for (after, legacy) in [(99, false), (-1, true)] {
        let mut progress = Progress::open(&m.app, &fay, &id, Some(after), legacy).await;
        assert_eq!(
            progress.refusal().await,
            ("BAD_USER_INPUT".into(), "invalid_after_seq".into())
        );
    }
    // Nothing moved for either user but fay's reservation.
    assert_eq!(wallet(&m.app, &fay).await, (100, 80));
    assert_eq!(wallet(&m.app, &gus).await, (100, 100));
    assert_sound(&m.app).await;
}

#[tokio::test]
async fn concurrent_starts_respect_idempotency_funds_and_the_live_limit() {
    let m = market_on(builder().configure(|c| c.vps.vps_max_live_sessions = 3)).await;
    // One key, twelve tries at once: one session, one reservation.
    let hal = customer(&m, "hal@example.com", "hal", 1000).await;
    let results = join_all((0..12).map(|_| start(&m, &hal, 2, Some("same-key")))).await;
    let ids: std::collections::HashSet<String> = results
        .iter()
        .map(|b| {
            assert!(b["errors"].is_null(), "{b}");
            b["data"]["startVpsSession"]["id"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(ids.len(), 1);
    assert_eq!(wallet(&m.app, &hal).await, (1000, 980));
    // The same key for something else is a conflict.
    let body = start(&m, &hal, 3, Some("same-key")).await;
    assert_eq!(
        error_of(&body),
        ("CONFLICT".into(), "idempotency_key_reused".into())
    );

    // Eight different starts at once against a limit of 3 live sessions (one is live).
    let results = join_all((0..8).map(|_| start(&m, &hal, 1, None))).await;
    let ok = results.iter().filter(|b| b["errors"].is_null()).count();
    assert_eq!(ok, 2, "{results:#?}");
    for refused in results.iter().filter(|b| !b["errors"].is_null()) {
        assert_eq!(
            error_of(refused),
            ("CONFLICT".into(), "too_many_sessions".into())
        );
    }

    // Money for two sessions, six tries at once: two succeed, the rest find no coins.
    let ivy = customer(&m, "ivy@example.com", "ivy", 45).await;
    let results = join_all((0..6).map(|_| start(&m, &ivy, 2, None))).await;
    let ok = results.iter().filter(|b| b["errors"].is_null()).count();
    assert_eq!(ok, 2, "{results:#?}");
    for refused in results.iter().filter(|b| !b["errors"].is_null()) {
        assert_eq!(error_of(refused).0, "INSUFFICIENT_FUNDS");
    }
    assert_eq!(wallet(&m.app, &ivy).await, (45, 5));
    assert_sound(&m.app).await;
}

#[tokio::test]
async fn a_worker_gone_silent_fails_its_provisioning_sessions_and_the_queue_moves_on() {
    let m = market_on(builder().configure(|c| {
        c.vps.vps_heartbeat_timeout = HumanDuration(Duration::from_secs(1));
    }))
    .await;
    let jo = customer(&m, "jo@example.com", "jojo", 100).await;
    let creds = create_worker(&m, "mortal", 1).await;
    let first = start_ok(&m, &jo, 2).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let job = claim(&m, &creds).await;
    assert_eq!(job["sessionId"], first.as_str());
    // Capacity 1 and taken: the next one waits.
    let second = start_ok(&m, &jo, 1).await;
    assert_eq!(second["status"], "QUEUED");
    assert_eq!(wallet(&m.app, &jo).await, (100, 70));

    // The worker says nothing more: after the timeout its session fails, refunded.
    let failed = wait_status(&m.app, &jo, &first, "FAILED").await;
    assert_eq!(failed["failureReason"], "the worker went offline");
    assert_eq!(failed["amountRefunded"], 20);
    assert_eq!(wallet(&m.app, &jo).await, (100, 90));
    let body = m
        .app
        .graphql_as(
            &m.admin.access,
            "{ admin { workers { name online load } } }",
            json!({}),
        )
        .await;
    assert_eq!(
        body["data"]["admin"]["workers"][0]["online"], false,
        "{body}"
    );

    // A healthy worker comes along and takes the queued one.
    let healthy = create_worker(&m, "healthy", 2).await;
    let worker = run_worker(&m.app, &healthy, 5, None);
    let second_id = second["id"].as_str().unwrap();
    wait_status(&m.app, &jo, second_id, "RUNNING").await;
    assert_eq!(wallet(&m.app, &jo).await, (90, 90));
    worker.cancel();
    assert_sound(&m.app).await;
}

#[tokio::test]
async fn running_sessions_expire_at_their_end_extensions_move_it_and_workers_tear_down() {
    let m = market().await;
    let kit = customer(&m, "kit@example.com", "kit", 100).await;
    let creds = create_worker(&m, "steady", 2).await;
    let worker = run_worker(&m.app, &creds, 5, None);
    let id = start_ok(&m, &kit, 1).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let running = wait_status(&m.app, &kit, &id, "RUNNING").await;
    assert_eq!(wallet(&m.app, &kit).await, (90, 90));

    // Two more hours, paid at once; the same key extends once.
    for _ in 0..2 {
        let body = m
            .app
            .graphql_as(
                &kit.access,
                "mutation($id: ID!) { extendVpsSession(id: $id, hours: 2, idempotencyKey: \"more\") { hours amountPaid endsAt } }",
                json!({ "id": id }),
            )
            .await;
        assert_eq!(body["data"]["extendVpsSession"]["hours"], 3, "{body}");
        assert_eq!(body["data"]["extendVpsSession"]["amountPaid"], 30);
    }
    assert_eq!(wallet(&m.app, &kit).await, (70, 70));
    let ends =
        |v: &Value| chrono::DateTime::parse_from_rfc3339(v["endsAt"].as_str().unwrap()).unwrap();
    let extended = get_session(&m.app, &kit, &id).await["data"]["vpsSession"].clone();
    assert_eq!((ends(&extended) - ends(&running)).num_hours(), 2);
    let body = m
        .app
        .graphql_as(
            &kit.access,
            "mutation($id: ID!) { extendVpsSession(id: $id, hours: 721) { hours } }",
            json!({ "id": id }),
        )
        .await;
    assert_eq!(error_of(&body).1, "hours_out_of_range");

    // Its end passes: the sweep expires it (no refund) and the worker tears it down.
    let mut progress = Progress::open(&m.app, &kit, &id, None, false).await;
    let snapshot = progress.next().await.unwrap();
    end_now(&m.app, &id).await;
    let tail = progress.rest().await;
    assert_consecutive(&tail, snapshot["seq"].as_i64().unwrap());
    assert_eq!(tail.last().unwrap()["session"]["status"], "EXPIRED");
    assert_eq!(
        wallet(&m.app, &kit).await,
        (70, 70),
        "expiry refunds nothing"
    );
    let body = m
        .app
        .graphql_as(
            &kit.access,
            "mutation($id: ID!) { extendVpsSession(id: $id, hours: 1) { hours } }",
            json!({ "id": id }),
        )
        .await;
    assert_eq!(error_of(&body), ("CONFLICT".into(), "session_ended".into()));
    // The worker took the teardown job (claimed) and stopped reporting the machine.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let open = tessera::vps::entity::job::Entity::find()
            .all(m.app.state.db.conn())
            .await
            .unwrap()
            .into_iter()
            .filter(|j| j.kind == "teardown" && j.claimed_at.is_none())
            .count();
        if open == 0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "teardown job never claimed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    worker.cancel();
    assert_sound(&m.app).await;
}

#[tokio::test]
async fn stopping_before_it_runs_returns_everything_and_frees_the_slot() {
    let m = market().await;
    let lu = customer(&m, "lu@example.com", "lulu", 100).await;
    let creds = create_worker(&m, "one", 1).await;
    let first = start_ok(&m, &lu, 3).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    claim(&m, &creds).await;
    let second = start_ok(&m, &lu, 2).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(last_seq(&m.app, &second).await.1, "queued");

    // Queued: stopped at once, all back.
    let body = m
        .app
        .graphql_as(
            &lu.access,
            "mutation($id: ID!) { stopVpsSession(id: $id) { status amountRefunded } }",
            json!({ "id": second }),
        )
        .await;
    assert_eq!(
        body["data"]["stopVpsSession"],
        json!({ "status": "STOPPED", "amountRefunded": 20 })
    );
    // Provisioning: everything back; the worker is told to tear down.
    let body = m
        .app
        .graphql_as(
            &lu.access,
            "mutation($id: ID!) { stopVpsSession(id: $id) { status amountRefunded } }",
            json!({ "id": first }),
        )
        .await;
    assert_eq!(
        body["data"]["stopVpsSession"],
        json!({ "status": "STOPPING", "amountRefunded": 30 })
    );
    assert_eq!(wallet(&m.app, &lu).await, (100, 100));
    let c = client(&m.app, &creds);
    // Its step reports are now refused, so it stops building.
    let (status, body) = report(
        &c,
        json!({ "sessionId": first, "step": "reserve_capacity", "status": "running" }),
    )
    .await;
    assert_eq!((status, reason(&body)), (409, "session_not_provisioning"));
    let jobs = c
        .call(reqwest::Method::GET, "workers/jobs?wait=5", None)
        .await
        .unwrap();
    assert_eq!(jobs.body["jobs"][0]["kind"], "teardown", "{}", jobs.body);
    let (_, ack) = report(
        &c,
        json!({ "sessionId": first, "step": "teardown", "status": "done" }),
    )
    .await;
    assert_eq!(ack["sessionStatus"], "stopped", "{ack}");
    // The heartbeat names sessions that ended here, for a worker that missed a job.
    let beat = c
        .call(
            reqwest::Method::POST,
            "workers/heartbeat",
            Some(&json!({ "sessions": [first, second, Uuid::new_v4()] })),
        )
        .await
        .unwrap();
    assert_eq!(
        beat.body["teardown"].as_array().unwrap().len(),
        3,
        "{}",
        beat.body
    );
    let stored = worker_row::Entity::find()
        .all(m.app.state.db.conn())
        .await
        .unwrap();
    assert!(stored[0].reachable);
    assert_sound(&m.app).await;
}

#[tokio::test]
async fn the_worker_binary_runs_a_command_for_each_step() {
    use std::os::unix::fs::PermissionsExt;
    let m = market().await;
    let mo = customer(&m, "mo@example.com", "momo", 100).await;
    let creds = create_worker(&m, "scripted", 2).await;
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("step.sh");
    let log = dir.path().join("steps.log");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\necho \"$TESSERA_SESSION_ID $TESSERA_STEP $TESSERA_VCPU\" >> {}\necho noise\necho \"did $TESSERA_STEP\"\nexit 0\n",
            log.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_tessera"))
        .args([
            "worker",
            "--driver",
            "command",
            "--heartbeat-interval",
            "200ms",
        ])
        .env("WORKER_SERVER_URL", m.app.url("/"))
        .env("WORKER_KEY_ID", &creds.key_id)
        .env("WORKER_SECRET", &creds.secret)
        .env("WORKER_COMMAND", &script)
        .env("WORKER_PUBLIC_HOST", "box.example")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let id = start_ok(&m, &mo, 1).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let running = wait_status(&m.app, &mo, &id, "RUNNING").await;
    assert_eq!(running["hours"], 1);
    let body = get_session(&m.app, &mo, &id).await;
    let s = &body["data"]["vpsSession"];
    assert_eq!(s["connection"]["host"], "box.example");
    assert_eq!(
        s["checklist"][2]["message"], "did boot",
        "the last line of output"
    );
    let lines = std::fs::read_to_string(&log).unwrap();
    let steps: Vec<&str> = lines
        .lines()
        .map(|l| l.split(' ').nth(1).unwrap())
        .collect();
    assert_eq!(steps, STEPS.to_vec());
    assert!(
        lines
            .lines()
            .all(|l| l.starts_with(&id) && l.ends_with(" 2"))
    );
    let _ = child.kill().await;
    assert_sound(&m.app).await;
}

#[tokio::test]
async fn the_sweep_is_safe_on_many_instances_at_once() {
    let m = market().await;
    let ned = customer(&m, "ned@example.com", "ned", 1000).await;
    let creds = create_worker(&m, "busy", 8).await;
    let worker = run_worker(&m.app, &creds, 1, None);
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(
            start_ok(&m, &ned, 2).await["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    for id in &ids {
        wait_status(&m.app, &ned, id, "RUNNING").await;
    }
    worker.cancel();
    for id in &ids {
        end_now(&m.app, id).await;
    }
    // Eight sweeps race (as eight instances would): each session expires once.
    let expired: u64 = join_all((0..8).map(|_| service::expire_due(&m.app.state)))
        .await
        .into_iter()
        .map(|r| r.unwrap())
        .sum();
    assert!(expired <= 3, "expired {expired}");
    for id in &ids {
        let (_, status) = last_seq(&m.app, id).await;
        assert_eq!(status, "expired");
        let events =
            service::events_after(m.app.state.db.conn(), Uuid::parse_str(id).unwrap(), 0, 100)
                .await
                .unwrap();
        let expiries = events
            .iter()
            .filter(|e| e.payload["session"]["status"] == "expired")
            .count();
        assert_eq!(expiries, 1, "one expiry event per session");
    }
    assert_eq!(wallet(&m.app, &ned).await, (940, 940));
    assert_sound(&m.app).await;
}

/// Starts a session and has `creds`' worker claim it by hand; returns its id and the
/// worker's client (the test then reports steps itself).
async fn provisioning(m: &Market, user: &Session, creds: &Creds) -> (String, WorkerClient) {
    let id = start_ok(m, user, 1).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let job = claim(m, creds).await;
    assert_eq!(job["sessionId"], id.as_str());
    (id, client(&m.app, creds))
}

/// A step report that must be applied.
async fn step(c: &WorkerClient, id: &str, key: &str, status: &str, message: &str) {
    let (code, body) = report(
        c,
        json!({ "sessionId": id, "step": key, "status": status, "message": message }),
    )
    .await;
    assert_eq!((code, &body["applied"]), (200, &json!(true)), "{body}");
}

#[tokio::test]
async fn events_published_while_pubsub_was_down_are_caught_up_from_the_table() {
    let Some(redis) = crate::helpers::redis_url() else {
        eprintln!("REDIS_URL unset: the pub/sub outage test needs a Redis to cut off");
        return;
    };
    let target = redis
        .trim_start_matches("redis://")
        .trim_end_matches('/')
        .to_owned();
    let mut proxy = crate::helpers::TcpProxy::start(&target).await;
    // The subscriber's instance reaches Redis through the proxy; the worker's directly.
    let m = market_on(builder().redis_url(format!("redis://{}", proxy.addr))).await;
    let peer = m.app.spawn_peer_with(builder().redis_url(redis)).await;
    let olga = customer(&m, "olga@example.com", "olga", 100).await;
    let creds = create_worker(&m, "steady", 2).await;
    let (id, _) = provisioning(&m, &olga, &creds).await;
    let c = client(&peer, &creds);

    let mut progress = Progress::open(&m.app, &olga, &id, None, false).await;
    let snapshot = progress.next().await.unwrap();
    let base = snapshot["seq"].as_i64().unwrap();
    step(&c, &id, "reserve_capacity", "running", "live").await;
    assert_eq!(progress.next().await.unwrap()["seq"], base + 1);

    // Pub/sub to the subscriber's instance is cut: these three are published to no one.
    proxy.cut();
    step(&c, &id, "reserve_capacity", "done", "missed 1").await;
    step(&c, &id, "create_vm", "running", "missed 2").await;
    step(&c, &id, "create_vm", "done", "missed 3").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    proxy.restore().await;

    // Nothing else happens: the reconnect alone must bring them, in order.
    let mut caught = Vec::new();
    for _ in 0..3 {
        caught.push(progress.next().await.unwrap());
    }
    assert_consecutive(&caught, base + 1);
    let messages: Vec<&str> = caught
        .iter()
        .map(|e| e["changedSteps"][0]["message"].as_str().unwrap())
        .collect();
    assert_eq!(messages, ["missed 1", "missed 2", "missed 3"]);
    // And the live stream goes on from there.
    step(&c, &id, "boot", "running", "after").await;
    assert_eq!(progress.next().await.unwrap()["seq"], base + 5);
    assert_sound(&m.app).await;
}

#[tokio::test]
async fn a_subscriber_that_falls_behind_catches_up_without_loss_or_repeats() {
    // One slot per pub/sub channel: a burst overflows it at once.
    let m = market_on(
        builder()
            .memory_kv()
            .configure(|c| c.pubsub_channel_capacity = 1),
    )
    .await;
    let pia = customer(&m, "pia@example.com", "pia", 100).await;
    let creds = create_worker(&m, "fast", 2).await;
    let (id, c) = provisioning(&m, &pia, &creds).await;
    let mut progress = Progress::open(&m.app, &pia, &id, None, true).await;
    let base = progress.next().await.unwrap()["seq"].as_i64().unwrap();
    // A noisy neighbour on the channel: each time an event is published it answers with a
    // burst of stale messages. With one slot, whenever it runs before the subscriber the
    // real event is overwritten and the subscriber lags past it (and must read it back
    // from the table).
    let channel = service::progress_channel(Uuid::parse_str(&id).unwrap());
    let mut heard = m.app.state.kv.subscribe(&channel).await.unwrap();
    let kv = m.app.state.kv.clone();
    let noise = tokio::spawn(async move {
        use futures_util::StreamExt;
        let stale = serde_json::to_vec(&json!({ "seq": 0, "payload": null })).unwrap();
        while heard.next().await.is_some() {
            for _ in 0..8 {
                let _ = kv.publish(&channel, &stale).await;
            }
        }
    });
    for i in 0..40 {
        step(&c, &id, "reserve_capacity", "running", &format!("{i}%")).await;
    }
    let mut got = Vec::new();
    for _ in 0..40 {
        got.push(progress.next().await.unwrap());
    }
    assert_consecutive(&got, base);
    for (i, event) in got.iter().enumerate() {
        assert_eq!(event["changedSteps"][0]["message"], format!("{i}%"));
    }
    let metrics = reqwest::get(m.app.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let from_table: f64 = metrics
        .lines()
        .find(|l| l.starts_with("vps_progress_deliveries_total") && l.contains("source=\"table\""))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    assert!(
        from_table > 0.0,
        "the lag was never caught up from the table:\n{metrics}"
    );
    noise.abort();
    assert_sound(&m.app).await;
}

#[tokio::test]
async fn the_embedded_worker_runs_sessions_on_a_plain_server() {
    let m = market_on(builder().configure(|c| {
        c.vps.embedded_worker = Some(true);
        c.vps.simulated_step_ms = 5;
    }))
    .await;
    let quin = customer(&m, "quin@example.com", "quin", 100).await;
    let id = start_ok(&m, &quin, 2).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let running = wait_status(&m.app, &quin, &id, "RUNNING").await;
    assert_eq!(running["amountPaid"], 20);
    let body = m
        .app
        .graphql_as(
            &m.admin.access,
            "{ admin { workers { name online status load capacity } } }",
            json!({}),
        )
        .await;
    assert_eq!(
        body["data"]["admin"]["workers"],
        json!([{ "name": "embedded", "online": true, "status": "ONLINE", "load": 1, "capacity": 8 }])
    );
    assert_sound(&m.app).await;
}

#[tokio::test]
async fn products_change_draining_workers_get_nothing_new_and_ssh_keys_replace_passwords() {
    let m = market().await;
    let rue = customer(&m, "rue@example.com", "rue", 100).await;
    // An update is audited; inactive means no new sessions.
    let body = m
        .app
        .graphql_as(
            &m.admin.access,
            "mutation($id: ID!) { updateVpsProduct(id: $id, input: { name: \"small\", vcpu: 2, memoryMb: 2048, diskGb: 40, region: \"eu-west\", pricePerHour: 12, active: false }) { pricePerHour active } }",
            json!({ "id": m.product }),
        )
        .await;
    assert_eq!(
        body["data"]["updateVpsProduct"],
        json!({ "pricePerHour": 12, "active": false }),
        "{body}"
    );
    let body = start(&m, &rue, 1, None).await;
    assert_eq!(error_of(&body).1, "product_inactive");
    let body = m
        .app
        .graphql_as(
            &m.admin.access,
            "mutation($id: ID!) { updateVpsProduct(id: $id, input: { name: \"small\", vcpu: 2, memoryMb: 2048, diskGb: 40, region: \"eu-west\", pricePerHour: 12 }) { active } }",
            json!({ "id": m.product }),
        )
        .await;
    assert_eq!(body["data"]["updateVpsProduct"]["active"], true, "{body}");
    let audit = tessera::platform::audit::recent(m.app.state.db.conn(), 20)
        .await
        .unwrap();
    assert_eq!(
        audit
            .iter()
            .filter(|a| a.action == "vps.product.update")
            .count(),
        2
    );

    // A draining worker keeps heartbeating but gets no new session.
    let creds = create_worker(&m, "leaving", 4).await;
    let c = client(&m.app, &creds);
    let beat = c
        .call(reqwest::Method::POST, "workers/heartbeat", Some(&json!({})))
        .await
        .unwrap();
    assert_eq!(beat.body["status"], "online");
    let body = m
        .app
        .graphql_as(
            &m.admin.access,
            "mutation($id: ID!) { setWorkerStatus(id: $id, status: DRAINING) { status } }",
            json!({ "id": creds.id }),
        )
        .await;
    assert_eq!(body["data"]["setWorkerStatus"]["status"], "DRAINING");
    let queued = start_ok(&m, &rue, 1).await;
    assert_eq!(
        queued["status"], "QUEUED",
        "a draining worker takes nothing new"
    );
    let beat = c
        .call(reqwest::Method::POST, "workers/heartbeat", Some(&json!({})))
        .await
        .unwrap();
    assert_eq!(beat.body["status"], "draining");

    // Back online: it takes the queued one, and the SSH key goes in place of a password.
    m.app
        .graphql_as(
            &m.admin.access,
            "mutation($id: ID!) { setWorkerStatus(id: $id, status: ONLINE) { status } }",
            json!({ "id": creds.id }),
        )
        .await;
    let key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB7x0wKy9cI0cIY7pmfpT9bDLKAAvbbqgn9gSYUYt7Rd rue@laptop";
    let body = m
        .app
        .graphql_as(
            &rue.access,
            "mutation($p: ID!, $k: String) { startVpsSession(input: { productId: $p, hours: 1, sshPublicKey: $k }) { id status } }",
            json!({ "p": m.product, "k": key }),
        )
        .await;
    let keyed = body["data"]["startVpsSession"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut specs = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while specs.len() < 2 && tokio::time::Instant::now() < deadline {
        let jobs = c
            .call(reqwest::Method::GET, "workers/jobs?wait=2", None)
            .await
            .unwrap();
        specs.extend(jobs.body["jobs"].as_array().cloned().unwrap_or_default());
    }
    let job = specs
        .iter()
        .find(|j| j["sessionId"] == keyed.as_str())
        .expect("the keyed session was handed out");
    assert_eq!(job["provision"]["sshPublicKey"], key);
    assert!(job["provision"]["password"].is_null());
    for (i, step) in STEPS.iter().enumerate() {
        let last = i + 1 == STEPS.len();
        let mut done = json!({ "sessionId": keyed, "step": step, "status": "done" });
        if last {
            done["connection"] = json!({ "host": "10.0.0.7", "port": 22 });
        }
        let (status, body) = report(&c, done).await;
        assert_eq!(status, 200, "{body}");
    }
    let body = get_session(&m.app, &rue, &keyed).await;
    let connection = &body["data"]["vpsSession"]["connection"];
    assert_eq!(connection["usesSshKey"], true, "{body}");
    assert!(connection["password"].is_null());
    assert_eq!(connection["host"], "10.0.0.7");
    assert_sound(&m.app).await;
}

/// Heartbeats as a worker holding `held`; returns the sessions it is told to tear down.
async fn beat(c: &WorkerClient, held: &[&str]) -> Vec<String> {
    let answer = c
        .call(
            reqwest::Method::POST,
            "workers/heartbeat",
            Some(&json!({ "sessions": held })),
        )
        .await
        .unwrap();
    assert_eq!(answer.status, 200, "{}", answer.body);
    serde_json::from_value(answer.body["teardown"].clone()).unwrap()
}

/// Reports every checklist step done (with the connection on the last): running.
async fn build_all(c: &WorkerClient, id: &str) {
    let last = tessera::vps::CHECKLIST.len() - 1;
    for (i, (key, _)) in tessera::vps::CHECKLIST.iter().enumerate() {
        step(c, id, key, "running", "").await;
        let mut done = json!({ "sessionId": id, "step": key, "status": "done" });
        if i == last {
            done["connection"] = json!({ "host": "vm.test", "port": 22 });
        }
        let (code, body) = report(c, done).await;
        assert_eq!(code, 200, "{body}");
    }
}

/// The session has failed, for `reason`, with `refunded` coins given back.
async fn assert_failed(app: &TestApp, user: &Session, id: &str, reason: &str, refunded: i64) {
    let s = get_session(app, user, id).await["data"]["vpsSession"].clone();
    assert_eq!(
        (&s["status"], &s["failureReason"], &s["amountRefunded"]),
        (&json!("FAILED"), &json!(reason), &json!(refunded)),
        "{s}"
    );
}

const LEASE: Duration = Duration::from_secs(1);
/// Long enough for a heartbeat to be signed past the lease: its timestamp is whole
/// seconds, and the server reckons from the earliest moment it may have been built.
const PAST_LEASE: Duration = Duration::from_millis(2300);

fn leased() -> TestAppBuilder {
    builder().configure(|c| c.vps.vps_job_lease = HumanDuration(LEASE))
}

#[tokio::test]
async fn a_provision_job_the_worker_never_took_is_handed_out_again_once_steps_began_it_fails() {
    let m = market_on(leased()).await;
    let ivy = customer(&m, "ivy@example.com", "ivy", 100).await;
    let creds = create_worker(&m, "forgetful", 2).await;
    let (id, c) = provisioning(&m, &ivy, &creds).await;
    assert_eq!(wallet(&m.app, &ivy).await, (100, 90));

    // Within the lease nothing is concluded from a heartbeat that does not list it yet.
    assert!(beat(&c, &[]).await.is_empty());
    assert_eq!(last_seq(&m.app, &id).await.1, "provisioning");
    let signed_before_the_job = now() - 2;
    // Held: nothing changes either, however long.
    tokio::time::sleep(PAST_LEASE).await;
    assert!(beat(&c, &[&id]).await.is_empty());
    let (seq, status) = last_seq(&m.app, &id).await;
    assert_eq!(status, "provisioning");

    // Past the lease, but signed before the job went out (a heartbeat that was slow to
    // arrive): it says nothing about the job, so nothing changes.
    let (code, body) = raw_to(
        &m.app,
        "/workers/heartbeat",
        Some(&creds.key_id),
        &creds.secret,
        signed_before_the_job,
        "slow-heartbeat-nonce-1",
        r#"{"sessions": []}"#,
    )
    .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(last_seq(&m.app, &id).await, (seq, "provisioning".into()));
    // Another worker holding nothing says nothing about this one's sessions.
    let other = create_worker(&m, "bystander", 1).await;
    assert!(beat(&client(&m.app, &other), &[]).await.is_empty());
    assert_eq!(last_seq(&m.app, &id).await, (seq, "provisioning".into()));

    // Past the lease and not held: the answer never reached it; the job goes out again.
    assert!(beat(&c, &[]).await.is_empty());
    assert_eq!(last_seq(&m.app, &id).await, (seq + 1, "pending".into()));
    assert_eq!(wallet(&m.app, &ivy).await, (100, 90), "still reserved");
    let again = claim(&m, &creds).await;
    assert_eq!(again["sessionId"], id.as_str());
    assert_eq!(again["kind"], "provision");
    assert!(again["provision"]["steps"].is_array(), "{again}");
    assert_eq!(last_seq(&m.app, &id).await.1, "provisioning");

    // It starts building, then forgets it (a restart): the session fails, all back.
    step(&c, &id, "reserve_capacity", "running", "on it").await;
    tokio::time::sleep(PAST_LEASE).await;
    assert!(beat(&c, &[]).await.is_empty());
    assert_failed(
        &m.app,
        &ivy,
        &id,
        "the worker lost the machine while building it",
        10,
    )
    .await;
    assert_eq!(wallet(&m.app, &ivy).await, (100, 100));
    // Heartbeats that leave the list out (a minimal worker) are never read as "holds nothing".
    let (id2, c2) = provisioning(&m, &ivy, &creds).await;
    tokio::time::sleep(PAST_LEASE).await;
    let answer = c2
        .call(reqwest::Method::POST, "workers/heartbeat", Some(&json!({})))
        .await
        .unwrap();
    assert_eq!(answer.status, 200);
    assert_eq!(last_seq(&m.app, &id2).await.1, "provisioning");
    assert_sound(&m.app).await;
}

#[tokio::test]
async fn running_sessions_a_worker_no_longer_holds_end_and_lost_teardowns_are_resent() {
    let m = market_on(leased()).await;
    let rex = customer(&m, "rex@example.com", "rex", 100).await;
    let creds = create_worker(&m, "amnesiac", 4).await;
    let (id, c) = provisioning(&m, &rex, &creds).await;
    // Three hours: started building, then running.
    let body = m
        .app
        .graphql_as(
            &rex.access,
            "mutation($id: ID!) { extendVpsSession(id: $id, hours: 2) { hours } }",
            json!({ "id": id }),
        )
        .await;
    assert_eq!(body["data"]["extendVpsSession"]["hours"], 3, "{body}");
    build_all(&c, &id).await;
    assert_eq!(last_seq(&m.app, &id).await.1, "running");
    assert_eq!(wallet(&m.app, &rex).await, (70, 70));

    tokio::time::sleep(PAST_LEASE).await;
    assert!(beat(&c, &[&id]).await.is_empty());
    assert_eq!(last_seq(&m.app, &id).await.1, "running", "held: untouched");
    // The worker restarted and holds nothing: the machine is gone, two hours come back.
    assert!(beat(&c, &[]).await.is_empty());
    assert_failed(
        &m.app,
        &rex,
        &id,
        "the worker no longer holds the machine",
        20,
    )
    .await;
    assert_eq!(wallet(&m.app, &rex).await, (90, 90));
    // Should it list the session again, it is told to tear it down.
    assert_eq!(beat(&c, &[&id]).await, vec![id.clone()]);

    // A stop whose teardown the worker took and kept holding: the teardown is sent again;
    // once it lets go, the session is stopped.
    let (id2, _) = provisioning(&m, &rex, &creds).await;
    build_all(&c, &id2).await;
    let body = m
        .app
        .graphql_as(
            &rex.access,
            "mutation($id: ID!) { stopVpsSession(id: $id) { status } }",
            json!({ "id": id2 }),
        )
        .await;
    assert_eq!(
        body["data"]["stopVpsSession"]["status"], "STOPPING",
        "{body}"
    );
    let teardown = claim(&m, &creds).await;
    assert_eq!(
        (teardown["kind"].as_str(), teardown["sessionId"].as_str()),
        (Some("teardown"), Some(id2.as_str()))
    );
    assert!(
        beat(&c, &[&id2]).await.is_empty(),
        "within the lease it may still be on its way"
    );
    tokio::time::sleep(PAST_LEASE).await;
    assert_eq!(beat(&c, &[&id2]).await, vec![id2.clone()]);
    assert_eq!(last_seq(&m.app, &id2).await.1, "stopping");
    assert!(beat(&c, &[]).await.is_empty());
    assert_eq!(last_seq(&m.app, &id2).await.1, "stopped");
    assert_eq!(wallet(&m.app, &rex).await, (80, 80), "one hour used");
    assert_sound(&m.app).await;
}

#[tokio::test]
async fn running_sessions_on_a_worker_offline_past_the_grace_end_with_unused_hours_back() {
    let m = market_on(leased().configure(|c| {
        c.vps.vps_heartbeat_timeout = HumanDuration(Duration::from_secs(1));
        c.vps.vps_offline_grace = HumanDuration(Duration::from_secs(3));
    }))
    .await;
    let ada = customer(&m, "ada@example.com", "ada", 100).await;
    let creds = create_worker(&m, "vanishing", 2).await;
    let (id, c) = provisioning(&m, &ada, &creds).await;
    build_all(&c, &id).await;
    let body = m
        .app
        .graphql_as(
            &ada.access,
            "mutation($id: ID!) { extendVpsSession(id: $id, hours: 4) { hours } }",
            json!({ "id": id }),
        )
        .await;
    assert_eq!(body["data"]["extendVpsSession"]["hours"], 5, "{body}");
    assert_eq!(wallet(&m.app, &ada).await, (50, 50));

    // Silent: offline after a second, the session still running within the grace.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let w =
            tessera::vps::entity::worker::Entity::find_by_id(Uuid::parse_str(&creds.id).unwrap())
                .one(m.app.state.db.conn())
                .await
                .unwrap()
                .unwrap();
        if !w.reachable {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never marked offline"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(last_seq(&m.app, &id).await.1, "running");
    wait_status(&m.app, &ada, &id, "FAILED").await;
    // Four unused hours back.
    assert_failed(
        &m.app,
        &ada,
        &id,
        "the worker has been offline too long",
        40,
    )
    .await;
    assert_eq!(wallet(&m.app, &ada).await, (90, 90));
    // Back online and still holding it: told to tear it down.
    assert_eq!(beat(&c, &[&id]).await, vec![id.clone()]);
    assert_sound(&m.app).await;
}
