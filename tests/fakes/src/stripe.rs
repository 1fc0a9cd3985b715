//! Stripe on loopback, speaking API version [`API_VERSION`]: customers, products, prices,
//! Checkout Sessions (with a hosted page whose Pay button completes them), subscriptions
//! (cancel at period end, plan changes with prorations, cancel now), invoices (with
//! `create_preview`), billing portal sessions, and signed webhook deliveries.
//!
//! `/v1/*` wants `Authorization: Bearer sk_test_…` and, when sent, `Stripe-Version` equal to
//! [`API_VERSION`]; bodies and query strings are forms with bracket keys (see
//! [`parse_form`]); `Idempotency-Key` on POST replays the first answer to the same request
//! and refuses the key for any other. Errors have Stripe's `{"error":{…}}` shape.
//!
//! The test (or `POST /_control/…`) drives the subscription life cycle: completing a
//! checkout, renewing, failing a payment, requiring an action, ending an unpaid subscription.
//! Timestamps come from the fake's clock, real time plus an offset that those calls (and
//! [`StripeFake::advance`]) move forward. Each change emits the events Stripe would, with
//! the object's state at that moment, and posts them in order to the webhook URL, signed
//! with every configured secret (`t=` is the real time, which receivers check against
//! theirs).
//!
//! Simplifications: one item per subscription, quantity 1; flat per-unit prices; an interval
//! change restarts the period at the change; `expand` is ignored.

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{Arc, Mutex, MutexGuard},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use bytes::Bytes;
use hmac::{Hmac, Mac};
use poem::{
    EndpointExt, Request, Response, Route, Server, handler,
    http::{StatusCode, header},
    web::{Data, Json, Path, Query},
};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use tokio::{sync::mpsc, task::JoinHandle};

/// The only API version the fake speaks.
pub const API_VERSION: &str = "2026-09-30.endive";

const DAY: i64 = 86_400;
const ACTION_REQUIRED: &str = "invoice.payment_action_required";

fn real_now() -> i64 {
    let since = SystemTime::now().duration_since(UNIX_EPOCH);
    since.map(|d| d.as_secs() as i64).unwrap_or(0)
}

/// `prefix` and 24 random alphanumerics.
fn new_id(prefix: &str) -> String {
    use rand::{Rng, distributions::Alphanumeric};
    let chars = rand::thread_rng().sample_iter(&Alphanumeric).take(24);
    format!("{prefix}{}", chars.map(char::from).collect::<String>())
}

/// The length of a billing period: 365 days for a year, else 30.
fn period(interval: &str) -> i64 {
    if interval == "year" {
        365 * DAY
    } else {
        30 * DAY
    }
}

fn str_of(v: &Value) -> String {
    v.as_str().unwrap_or("").to_owned()
}

/// Parses a Stripe form body or query string (`line_items[0][price]=p&metadata[k]=v`) into
/// nested JSON: objects by key, and objects whose keys are all indices (`[0]`, `[1]`, or
/// `[]` for the next one) into arrays in index order. Values stay strings; `metadata` keys
/// never make an array.
pub fn parse_form(input: &str) -> Value {
    fn insert(node: &mut Value, path: &[String], value: String) {
        let Some((first, rest)) = path.split_first() else {
            *node = Value::String(value);
            return;
        };
        if !node.is_object() {
            *node = Value::Object(Map::new());
        }
        if let Value::Object(map) = node {
            let key = if first.is_empty() {
                map.len().to_string()
            } else {
                first.clone()
            };
            insert(map.entry(key).or_insert(Value::Null), rest, value);
        }
    }
    fn arrays(value: Value) -> Value {
        let Value::Object(map) = value else {
            return value;
        };
        if !map.is_empty() && map.keys().all(|k| k.parse::<usize>().is_ok()) {
            let mut items: Vec<(usize, Value)> = Vec::new();
            for (k, v) in map {
                items.push((k.parse().unwrap_or(0), arrays(v)));
            }
            items.sort_by_key(|(i, _)| *i);
            return Value::Array(items.into_iter().map(|(_, v)| v).collect());
        }
        let convert = |(k, v): (String, Value)| {
            let v = if k == "metadata" { v } else { arrays(v) };
            (k, v)
        };
        Value::Object(map.into_iter().map(convert).collect())
    }
    let mut root = Value::Object(Map::new());
    for (key, value) in url::form_urlencoded::parse(input.as_bytes()) {
        let (head, mut rest) = key.split_at(key.find('[').unwrap_or(key.len()));
        if head.is_empty() {
            continue;
        }
        let mut path = vec![head.to_owned()];
        while let Some(inner) = rest.strip_prefix('[') {
            let Some(end) = inner.find(']') else { break };
            path.push(inner[..end].to_owned());
            rest = &inner[end + 1..];
        }
        insert(&mut root, &path, value.into_owned());
    }
    arrays(root)
}

fn text(p: &Value, pointer: &str) -> Option<String> {
    p.pointer(pointer)
        .and_then(Value::as_str)
        .map(str::to_owned)
}

fn flag(p: &Value, pointer: &str) -> Option<bool> {
    text(p, pointer).map(|v| v == "true")
}

fn int(p: &Value, pointer: &str) -> Option<i64> {
    text(p, pointer).and_then(|v| v.parse().ok())
}

/// Applies a `metadata[…]` patch as Stripe does: an empty value removes its key, an empty
/// `metadata` removes them all.
fn merge_metadata(target: &mut Value, patch: &Value) {
    if !target.is_object() || patch.as_str() == Some("") {
        *target = json!({});
    }
    if let (Some(t), Some(p)) = (target.as_object_mut(), patch.as_object()) {
        for (k, v) in p {
            if v.as_str() == Some("") {
                t.remove(k);
            } else {
                t.insert(k.clone(), v.clone());
            }
        }
    }
}

/// The `metadata` of a create request, as a new object.
fn metadata(p: &Value) -> Value {
    let mut m = json!({});
    if let Some(patch) = p.get("metadata") {
        merge_metadata(&mut m, patch);
    }
    m
}

/// A Stripe API error: the HTTP status and the `{"error":{…}}` body.
#[derive(Debug)]
struct ApiError {
    status: u16,
    body: Value,
}

type Answer = Result<Value, ApiError>;

fn error(status: u16, type_: &str, code: &str, message: &str, param: Option<&str>) -> ApiError {
    let mut e = json!({ "type": type_, "message": message });
    if !code.is_empty() {
        e["code"] = json!(code);
    }
    if let Some(param) = param {
        e["param"] = json!(param);
    }
    ApiError {
        status,
        body: json!({ "error": e }),
    }
}

fn missing(kind: &str, id: &str, param: Option<&str>) -> ApiError {
    let message = format!("No such {kind}: '{id}'");
    error(
        404,
        "invalid_request_error",
        "resource_missing",
        &message,
        param,
    )
}

fn invalid(message: &str, param: Option<&str>) -> ApiError {
    error(400, "invalid_request_error", "", message, param)
}

fn required(param: &str) -> ApiError {
    let message = format!("Missing required param: {param}.");
    error(
        400,
        "invalid_request_error",
        "parameter_missing",
        &message,
        Some(param),
    )
}

fn by_id<'a>(list: &'a [Value], id: &str) -> Option<&'a Value> {
    list.iter().find(|o| o["id"].as_str() == Some(id))
}

fn by_id_mut<'a>(list: &'a mut [Value], id: &str) -> Option<&'a mut Value> {
    list.iter_mut().find(|o| o["id"].as_str() == Some(id))
}

fn found(object: Option<&Value>, kind: &str, id: &str) -> Answer {
    object.cloned().ok_or_else(|| missing(kind, id, None))
}

fn list(url: &str, data: Vec<Value>) -> Value {
    json!({ "object": "list", "data": data, "has_more": false, "url": url })
}

fn interval_of(price: &Value) -> String {
    price["recurring"]["interval"]
        .as_str()
        .unwrap_or("month")
        .to_owned()
}

/// The legacy plan object Stripe still embeds in subscription items.
fn plan(price: &Value) -> Value {
    json!({
        "id": price["id"], "object": "plan", "active": price["active"],
        "amount": price["unit_amount"], "billing_scheme": "per_unit",
        "created": price["created"], "currency": price["currency"],
        "interval": interval_of(price), "interval_count": 1, "livemode": false,
        "metadata": price["metadata"], "nickname": null, "product": price["product"],
        "usage_type": "licensed",
    })
}

/// Marks an invoice paid now.
fn pay(invoice: &mut Value, now: i64) {
    let attempts = invoice["attempt_count"].as_i64().unwrap_or(0) + 1;
    invoice["amount_paid"] = invoice["amount_due"].clone();
    invoice["amount_remaining"] = json!(0);
    invoice["attempted"] = json!(true);
    invoice["attempt_count"] = json!(attempts);
    invoice["status"] = json!("paid");
    invoice["status_transitions"]["paid_at"] = json!(now);
}

fn money(amount: i64, currency: &str) -> String {
    let (sign, abs) = (if amount < 0 { "-" } else { "" }, amount.abs());
    format!(
        "{sign}{}.{:02} {}",
        abs / 100,
        abs % 100,
        currency.to_uppercase()
    )
}

fn escape(s: &str) -> String {
    let s = s
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;");
    s.replace('"', "&quot;").replace('\'', "&#39;")
}

/// `t=<timestamp>,v1=<hex HMAC-SHA256(secret, "<t>.<payload>")>`, one `v1` per secret.
fn signature(secrets: &[String], payload: &str, timestamp: i64) -> String {
    let mut out = format!("t={timestamp}");
    for secret in secrets {
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
            continue;
        };
        mac.update(format!("{timestamp}.{payload}").as_bytes());
        out.push_str(&format!(",v1={}", hex::encode(mac.finalize().into_bytes())));
    }
    out
}

/// One subscription, with its one item.
struct Sub {
    id: String,
    customer: String,
    created: i64,
    anchor: i64,
    status: String,
    cancel_at_period_end: bool,
    canceled_at: Option<i64>,
    ended_at: Option<i64>,
    currency: String,
    latest_invoice: Option<String>,
    metadata: Value,
    item: String,
    price: String,
    start: i64,
    end: i64,
}

struct Session {
    object: Value,
    price: String,
    /// `subscription_data[metadata]`, for the subscription it creates.
    sub_metadata: Value,
}

/// An invoice line before rendering.
struct Line {
    amount: i64,
    description: String,
    price: String,
    start: i64,
    end: i64,
}

/// A price change: the proration lines, the period after it, and whether the period
/// restarts (the interval changes).
struct Change {
    lines: Vec<Line>,
    start: i64,
    end: i64,
    restarts: bool,
}

/// An idempotent answer: the request's fingerprint, the status and the body.
type Stored = (String, u16, String);

#[derive(Default)]
struct Store {
    base: String,
    offset: i64,
    customers: Vec<Value>,
    products: Vec<Value>,
    prices: Vec<Value>,
    sessions: Vec<Session>,
    portals: Vec<Value>,
    subscriptions: Vec<Sub>,
    invoices: Vec<Value>,
    events: Vec<Value>,
    idempotency: HashMap<String, Stored>,
    webhook_url: Option<String>,
    secrets: Vec<String>,
    auto_deliver: bool,
    deliveries: Vec<(String, u16)>,
    requests: Vec<(String, String, Option<String>)>,
    latency: Duration,
    fail_next: Option<u16>,
    /// Event ids for the courier task to post, in order.
    outbox: Option<mpsc::UnboundedSender<String>>,
}

impl Store {
    fn now(&self) -> i64 {
        real_now() + self.offset
    }

    /// Records an event with `object` as it is now and queues it for delivery.
    fn emit(&mut self, type_: &str, object: Value, previous: Option<Value>) {
        let mut data = json!({ "object": object });
        if let Some(previous) = previous {
            data["previous_attributes"] = previous;
        }
        let id = new_id("evt_");
        self.events.push(json!({
            "id": id, "object": "event", "api_version": API_VERSION, "created": self.now(),
            "livemode": false, "pending_webhooks": 1,
            "request": { "id": null, "idempotency_key": null }, "type": type_, "data": data,
        }));
        if self.auto_deliver
            && self.webhook_url.is_some()
            && let Some(outbox) = &self.outbox
        {
            let _ = outbox.send(id);
        }
    }

    fn session(&self, id: &str) -> Option<&Session> {
        self.sessions
            .iter()
            .find(|s| s.object["id"].as_str() == Some(id))
    }

    fn price(&self, id: &str) -> Value {
        by_id(&self.prices, id).cloned().unwrap_or(Value::Null)
    }

    fn product_name(&self, price: &Value) -> String {
        let product = price["product"].as_str().unwrap_or("");
        let name = by_id(&self.products, product).and_then(|p| p["name"].as_str());
        name.unwrap_or(product).to_owned()
    }

    fn render_sub(&self, s: &Sub) -> Value {
        let price = self.price(&s.price);
        let item = json!({
            "id": s.item, "object": "subscription_item", "created": s.created,
            "current_period_start": s.start, "current_period_end": s.end, "discounts": [],
            "metadata": {}, "plan": plan(&price), "price": price, "quantity": 1,
            "subscription": s.id,
        });
        let items = list(
            &format!("/v1/subscription_items?subscription={}", s.id),
            vec![item],
        );
        let cancel_at = s.cancel_at_period_end.then_some(s.end);
        json!({
            "id": s.id, "object": "subscription", "automatic_tax": { "enabled": false },
            "billing_cycle_anchor": s.anchor, "billing_mode": { "type": "classic" },
            "billing_schedules": [], "cancel_at": cancel_at,
            "cancel_at_period_end": s.cancel_at_period_end, "canceled_at": s.canceled_at,
            "collection_method": "charge_automatically", "created": s.created,
            "currency": s.currency, "customer": s.customer, "discounts": [],
            "ended_at": s.ended_at, "invoice_settings": { "issuer": { "type": "self" } },
            "items": items, "latest_invoice": s.latest_invoice, "livemode": false,
            "metadata": s.metadata, "start_date": s.created, "status": s.status,
        })
    }

    /// An open invoice for `sub` (not stored).
    fn invoice(&self, sub: &Sub, reason: &str, lines: &[Line], start: i64, end: i64) -> Value {
        let (id, now) = (new_id("in_"), self.now());
        let render = |l: &Line| {
            json!({
                "id": new_id("il_"), "object": "line_item", "amount": l.amount,
                "currency": sub.currency, "description": l.description, "discountable": true,
                "discounts": [], "livemode": false, "metadata": {},
                "period": { "start": l.start, "end": l.end },
                "pricing": { "type": "price_details", "price_details": {
                    "price": l.price, "product": self.price(&l.price)["product"] } },
                "quantity": 1, "subtotal": l.amount,
            })
        };
        let data = lines.iter().map(render).collect();
        let total: i64 = lines.iter().map(|l| l.amount).sum();
        let due = total.max(0);
        json!({
            "id": id, "object": "invoice", "amount_due": due, "amount_overpaid": 0,
            "amount_paid": 0, "amount_remaining": due, "amount_shipping": 0,
            "attempt_count": 0, "attempted": false, "automatic_tax": { "enabled": false },
            "billing_reason": reason, "collection_method": "charge_automatically",
            "created": now, "currency": sub.currency, "customer": sub.customer,
            "default_tax_rates": [], "discounts": [],
            "hosted_invoice_url": format!("{}/invoices/{id}", self.base),
            "issuer": { "type": "self" },
            "lines": list(&format!("/v1/invoices/{id}/lines"), data), "livemode": false,
            "metadata": {},
            "parent": { "type": "subscription_details", "subscription_details": {
                "metadata": sub.metadata, "subscription": sub.id } },
            "payment_settings": {}, "period_start": start, "period_end": end,
            "post_payment_credit_notes_amount": 0, "pre_payment_credit_notes_amount": 0,
            "starting_balance": 0, "status": "open",
            "status_transitions": { "finalized_at": now, "marked_uncollectible_at": null,
                "paid_at": null, "voided_at": null },
            "subtotal": total, "total": total,
        })
    }

    /// The line charging a whole period of a price.
    fn plan_line(&self, price_id: &str, start: i64, end: i64) -> Line {
        let price = self.price(price_id);
        let amount = price["unit_amount"].as_i64().unwrap_or(0);
        let at = money(amount, price["currency"].as_str().unwrap_or("usd"));
        let name = self.product_name(&price);
        let description = format!("1 × {name} (at {at} / {})", interval_of(&price));
        Line {
            amount,
            description,
            price: price_id.to_owned(),
            start,
            end,
        }
    }

    /// Moving `sub` to `new` at `at`: a credit for the unused time on the old price, and a
    /// charge for the remaining time on the new one (a whole period if the interval changes).
    fn change(&self, sub: &Sub, new: &Value, at: i64) -> Change {
        let old = self.price(&sub.price);
        let fraction = if sub.end > sub.start {
            ((sub.end - at) as f64 / (sub.end - sub.start) as f64).clamp(0.0, 1.0)
        } else {
            0.0
        };
        let prorated = |price: &Value| {
            (price["unit_amount"].as_i64().unwrap_or(0) as f64 * fraction).round() as i64
        };
        let restarts = interval_of(&old) != interval_of(new);
        let (start, end, charge) = if restarts {
            let full = new["unit_amount"].as_i64().unwrap_or(0);
            (at, at + period(&interval_of(new)), full)
        } else {
            (sub.start, sub.end, prorated(new))
        };
        let unused = Line {
            amount: -prorated(&old),
            description: format!("Unused time on {}", self.product_name(&old)),
            price: sub.price.clone(),
            start: at,
            end: sub.end,
        };
        let remaining = Line {
            amount: charge,
            description: format!("Remaining time on {}", self.product_name(new)),
            price: str_of(&new["id"]),
            start: at,
            end,
        };
        Change {
            lines: vec![unused, remaining],
            start,
            end,
            restarts,
        }
    }

    fn sub_index(&self, id: &str) -> Option<usize> {
        self.subscriptions.iter().position(|s| s.id == id)
    }

    /// Stores `invoice` as the subscription's latest; answers its id.
    fn attach(&mut self, i: usize, invoice: &Value) -> String {
        let id = str_of(&invoice["id"]);
        self.subscriptions[i].latest_invoice = Some(id.clone());
        self.invoices.push(invoice.clone());
        id
    }

    fn new_customer(&mut self, email: Option<String>, name: Option<String>, meta: Value) -> Value {
        let customer = json!({
            "id": new_id("cus_"), "object": "customer", "created": self.now(), "email": email,
            "livemode": false, "metadata": meta, "name": name,
        });
        self.customers.push(customer.clone());
        customer
    }

    // The life cycle.

    fn complete_checkout(&mut self, id: &str) -> Result<String, String> {
        let now = self.now();
        let session = self
            .session(id)
            .ok_or_else(|| format!("no such session: {id}"))?;
        let status = str_of(&session.object["status"]);
        if status != "open" {
            return Err(format!("checkout session {id} is {status}"));
        }
        let (price, metadata) = (self.price(&session.price), session.sub_metadata.clone());
        let customer = str_of(&session.object["customer"]);
        let end = now + period(&interval_of(&price));
        let sub = Sub {
            id: new_id("sub_"),
            customer: customer.clone(),
            created: now,
            anchor: now,
            status: "active".into(),
            cancel_at_period_end: false,
            canceled_at: None,
            ended_at: None,
            currency: str_of(&price["currency"]),
            latest_invoice: None,
            metadata,
            item: new_id("si_"),
            price: str_of(&price["id"]),
            start: now,
            end,
        };
        let line = self.plan_line(&sub.price, now, end);
        let open = self.invoice(&sub, "subscription_create", &[line], now, end);
        let sub_id = sub.id.clone();
        self.subscriptions.push(sub);
        let i = self.subscriptions.len() - 1;
        let mut paid = open.clone();
        pay(&mut paid, now);
        self.attach(i, &paid);
        let k = self.sessions.iter().position(|s| s.object["id"] == id);
        let session = &mut self.sessions[k.unwrap_or_default()].object;
        session["status"] = json!("complete");
        session["payment_status"] = json!("paid");
        session["subscription"] = json!(sub_id);
        let session = session.clone();
        let sub = self.render_sub(&self.subscriptions[i]);
        self.emit("checkout.session.completed", session, None);
        self.emit("customer.subscription.created", sub, None);
        self.emit_invoice(Some(open), &paid, "invoice.paid");
        Ok(sub_id)
    }

    /// `invoice.created` (with `open`, if given), then `event` with `invoice`, and
    /// `invoice.payment_succeeded` after `invoice.paid`.
    fn emit_invoice(&mut self, open: Option<Value>, invoice: &Value, event: &str) {
        if let Some(open) = open {
            self.emit("invoice.created", open, None);
        }
        self.emit(event, invoice.clone(), None);
        if event == "invoice.paid" {
            self.emit("invoice.payment_succeeded", invoice.clone(), None);
        }
    }

    /// Moves the clock to the end of the current period (unless past it). A subscription
    /// set to cancel then ends (None); any other starts its next period, and the answer is
    /// the previous attributes.
    fn roll(&mut self, i: usize) -> Option<Value> {
        let end = self.subscriptions[i].end;
        self.offset += (end - self.now()).max(0);
        let before = self.render_sub(&self.subscriptions[i]);
        if self.subscriptions[i].cancel_at_period_end {
            self.subscriptions[i].status = "canceled".into();
            self.subscriptions[i].ended_at = Some(end);
            let after = self.render_sub(&self.subscriptions[i]);
            self.emit("customer.subscription.deleted", after, None);
            return None;
        }
        let length = period(&interval_of(&before["items"]["data"][0]["price"]));
        (self.subscriptions[i].start, self.subscriptions[i].end) = (end, end + length);
        Some(json!({ "items": before["items"], "latest_invoice": before["latest_invoice"] }))
    }

    /// A subscription that has not ended.
    fn live_index(&self, id: &str) -> Result<usize, String> {
        let i = self
            .sub_index(id)
            .ok_or_else(|| format!("no such subscription: {id}"))?;
        match self.subscriptions[i].status.as_str() {
            "canceled" | "incomplete_expired" => Err(format!("subscription {id} has ended")),
            _ => Ok(i),
        }
    }

    fn latest_invoice_id(&self, i: usize) -> String {
        self.subscriptions[i]
            .latest_invoice
            .clone()
            .unwrap_or_default()
    }

    /// Starts the next period, moving the clock to the end of this one: its invoice is
    /// paid, or the payment fails with the event `failure` and the subscription goes past
    /// due. One set to cancel at period end ends instead (the answer is its last invoice);
    /// renewing a past-due one pays its open invoice.
    fn next_period(&mut self, id: &str, failure: Option<&str>) -> Result<String, String> {
        let i = self.live_index(id)?;
        match (self.subscriptions[i].status.as_str(), failure) {
            ("past_due", None) => return self.settle(i),
            ("past_due", Some(event)) => return self.retry_fails(i, event),
            _ => {}
        }
        let Some(mut previous) = self.roll(i) else {
            return Ok(self.latest_invoice_id(i));
        };
        let s = &self.subscriptions[i];
        let line = self.plan_line(&s.price, s.start, s.end);
        let open = self.invoice(s, "subscription_cycle", &[line], s.start, s.end);
        let mut invoice = open.clone();
        if failure.is_some() {
            invoice["attempted"] = json!(true);
            invoice["attempt_count"] = json!(1);
            previous["status"] = json!(s.status);
            self.subscriptions[i].status = "past_due".into();
        } else {
            pay(&mut invoice, self.now());
        }
        let invoice_id = self.attach(i, &invoice);
        let sub = self.render_sub(&self.subscriptions[i]);
        if let Some(event) = failure {
            self.emit_invoice(Some(open), &invoice, event);
            self.emit("customer.subscription.updated", sub, Some(previous));
        } else {
            self.emit("customer.subscription.updated", sub, Some(previous));
            self.emit_invoice(Some(open), &invoice, "invoice.paid");
        }
        Ok(invoice_id)
    }

    /// A past-due subscription's open invoice is retried and fails again with `event` (the
    /// period does not move).
    fn retry_fails(&mut self, i: usize, event: &str) -> Result<String, String> {
        let invoice_id = self.latest_invoice_id(i);
        let invoice = by_id_mut(&mut self.invoices, &invoice_id)
            .filter(|inv| inv["status"] == "open")
            .ok_or_else(|| format!("no open invoice on {}", self.subscriptions[i].id))?;
        let attempts = invoice["attempt_count"].as_u64().unwrap_or(0) + 1;
        invoice["attempt_count"] = json!(attempts);
        let failed = invoice.clone();
        self.emit_invoice(None, &failed, event);
        Ok(invoice_id)
    }

    /// A past-due subscription's open invoice is paid; the subscription is active again.
    fn settle(&mut self, i: usize) -> Result<String, String> {
        let (now, invoice_id) = (self.now(), self.latest_invoice_id(i));
        let invoice = by_id_mut(&mut self.invoices, &invoice_id)
            .filter(|inv| inv["status"] == "open")
            .ok_or_else(|| format!("no open invoice on {}", self.subscriptions[i].id))?;
        pay(invoice, now);
        let paid = invoice.clone();
        let previous = json!({ "status": self.subscriptions[i].status });
        self.subscriptions[i].status = "active".into();
        let sub = self.render_sub(&self.subscriptions[i]);
        self.emit_invoice(None, &paid, "invoice.paid");
        self.emit("customer.subscription.updated", sub, Some(previous));
        Ok(invoice_id)
    }

    /// Cancels the subscription now.
    fn end_now(&mut self, i: usize) -> Value {
        let now = self.now();
        let s = &mut self.subscriptions[i];
        s.status = "canceled".into();
        s.canceled_at = s.canceled_at.or(Some(now));
        s.ended_at = Some(now);
        let sub = self.render_sub(&self.subscriptions[i]);
        self.emit("customer.subscription.deleted", sub.clone(), None);
        sub
    }

    // The API.

    fn dispatch(&mut self, method: &str, path: &str, p: &Value) -> Answer {
        let path = path.trim_start_matches("/v1/");
        let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        match (method, segments.as_slice()) {
            ("POST", ["customers"]) => {
                let (email, name) = (text(p, "/email"), text(p, "/name"));
                Ok(self.new_customer(email, name, metadata(p)))
            }
            ("GET", ["customers", id]) => found(by_id(&self.customers, id), "customer", id),
            ("POST", ["products"]) => self.create_product(p),
            ("POST", ["products", id]) => self.update_product(id, p),
            ("GET", ["products", id]) => found(by_id(&self.products, id), "product", id),
            ("POST", ["prices"]) => self.create_price(p),
            ("POST", ["prices", id]) => self.update_price(id, p),
            ("GET", ["prices"]) => Ok(self.list_prices(p)),
            ("GET", ["prices", id]) => found(by_id(&self.prices, id), "price", id),
            ("POST", ["checkout", "sessions"]) => self.create_session(p),
            ("GET", ["checkout", "sessions", id]) => {
                found(self.session(id).map(|s| &s.object), "checkout.session", id)
            }
            ("GET", ["subscriptions"]) => {
                let customer = text(p, "/customer");
                let status = text(p, "/status").filter(|s| s != "all");
                let data = (self.subscriptions.iter().rev())
                    .filter(|s| customer.as_ref().is_none_or(|c| *c == s.customer))
                    .filter(|s| status.as_ref().is_none_or(|st| *st == s.status))
                    .map(|s| self.render_sub(s));
                Ok(list("/v1/subscriptions", data.collect()))
            }
            ("GET", ["subscriptions", id]) => {
                let i = self
                    .sub_index(id)
                    .ok_or_else(|| missing("subscription", id, None))?;
                Ok(self.render_sub(&self.subscriptions[i]))
            }
            ("POST", ["subscriptions", id]) => self.update_subscription(id, p),
            ("DELETE", ["subscriptions", id]) => {
                let i = self
                    .sub_index(id)
                    .ok_or_else(|| missing("subscription", id, None))?;
                if self.subscriptions[i].status == "canceled" {
                    let message = format!("The subscription {id} has already been canceled.");
                    return Err(invalid(&message, None));
                }
                Ok(self.end_now(i))
            }
            ("POST", ["invoices", "create_preview"]) => self.preview(p),
            ("GET", ["invoices"]) => {
                let sub = text(p, "/subscription");
                let customer = text(p, "/customer");
                let data = (self.invoices.iter().rev())
                    .filter(|inv| {
                        let of = &inv["parent"]["subscription_details"]["subscription"];
                        sub.as_deref().is_none_or(|s| of == s)
                    })
                    .filter(|inv| customer.as_deref().is_none_or(|c| inv["customer"] == c));
                Ok(list("/v1/invoices", data.cloned().collect()))
            }
            ("GET", ["invoices", id]) => found(by_id(&self.invoices, id), "invoice", id),
            ("POST", ["billing_portal", "sessions"]) => {
                let customer = text(p, "/customer").ok_or_else(|| required("customer"))?;
                if by_id(&self.customers, &customer).is_none() {
                    return Err(missing("customer", &customer, Some("customer")));
                }
                let id = new_id("bps_");
                let session = json!({
                    "id": id, "object": "billing_portal.session", "configuration": "bpc_fake",
                    "created": self.now(), "customer": customer, "livemode": false,
                    "return_url": text(p, "/return_url"),
                    "url": format!("{}/portal/{id}", self.base),
                });
                self.portals.push(session.clone());
                Ok(session)
            }
            _ => {
                let message = format!("Unrecognized request URL ({method}: /v1/{path}).");
                Err(error(404, "invalid_request_error", "", &message, None))
            }
        }
    }

    fn create_product(&mut self, p: &Value) -> Answer {
        let name = text(p, "/name").ok_or_else(|| required("name"))?;
        let id = text(p, "/id").unwrap_or_else(|| new_id("prod_"));
        if by_id(&self.products, &id).is_some() {
            let code = "resource_already_exists";
            let message = "Product already exists.";
            return Err(error(
                400,
                "invalid_request_error",
                code,
                message,
                Some("id"),
            ));
        }
        let now = self.now();
        let product = json!({
            "id": id, "object": "product", "active": flag(p, "/active").unwrap_or(true),
            "created": now, "description": text(p, "/description"), "images": [],
            "livemode": false, "marketing_features": [], "metadata": metadata(p),
            "name": name, "type": "service", "updated": now,
        });
        self.products.push(product.clone());
        Ok(product)
    }

    fn update_product(&mut self, id: &str, p: &Value) -> Answer {
        let now = self.now();
        let product = by_id_mut(&mut self.products, id);
        let product = product.ok_or_else(|| missing("product", id, None))?;
        if let Some(name) = text(p, "/name") {
            product["name"] = json!(name);
        }
        if let Some(description) = text(p, "/description") {
            product["description"] = json!(Some(description).filter(|d| !d.is_empty()));
        }
        if let Some(active) = flag(p, "/active") {
            product["active"] = json!(active);
        }
        if let Some(patch) = p.get("metadata") {
            merge_metadata(&mut product["metadata"], patch);
        }
        product["updated"] = json!(now);
        Ok(product.clone())
    }

    /// Gives `key` to price `owner`: refused if another price holds it, unless `transfer`
    /// (which takes it from that price).
    fn claim_lookup_key(&mut self, key: &str, owner: &str, transfer: bool) -> Result<(), ApiError> {
        let held = |price: &&mut Value| {
            price["id"].as_str() != Some(owner) && price["lookup_key"].as_str() == Some(key)
        };
        for holder in self.prices.iter_mut().filter(held) {
            if !transfer {
                let holder = str_of(&holder["id"]);
                let message = format!("A price (`{holder}`) already uses that lookup key.");
                return Err(invalid(&message, Some("lookup_key")));
            }
            holder["lookup_key"] = Value::Null;
        }
        Ok(())
    }

    fn create_price(&mut self, p: &Value) -> Answer {
        let currency = text(p, "/currency").ok_or_else(|| required("currency"))?;
        let product = text(p, "/product").ok_or_else(|| required("product"))?;
        if by_id(&self.products, &product).is_none() {
            return Err(missing("product", &product, Some("product")));
        }
        let unit_amount = int(p, "/unit_amount").ok_or_else(|| required("unit_amount"))?;
        let recurring = match text(p, "/recurring/interval").as_deref() {
            Some(interval @ ("month" | "year")) => {
                json!({ "interval": interval, "interval_count": 1, "usage_type": "licensed" })
            }
            Some(_) => return Err(invalid("Invalid interval.", Some("recurring[interval]"))),
            None => Value::Null,
        };
        let id = new_id("price_");
        let lookup_key = text(p, "/lookup_key").filter(|k| !k.is_empty());
        if let Some(key) = &lookup_key {
            let transfer = flag(p, "/transfer_lookup_key").unwrap_or(false);
            self.claim_lookup_key(key, &id, transfer)?;
        }
        let type_ = if recurring.is_null() {
            "one_time"
        } else {
            "recurring"
        };
        let price = json!({
            "id": id, "object": "price", "active": flag(p, "/active").unwrap_or(true),
            "billing_scheme": "per_unit", "created": self.now(),
            "currency": currency.to_lowercase(), "livemode": false, "lookup_key": lookup_key,
            "metadata": metadata(p), "nickname": text(p, "/nickname"), "product": product,
            "recurring": recurring, "type": type_, "unit_amount": unit_amount,
        });
        self.prices.push(price.clone());
        Ok(price)
    }

    fn update_price(&mut self, id: &str, p: &Value) -> Answer {
        if by_id(&self.prices, id).is_none() {
            return Err(missing("price", id, None));
        }
        let key = text(p, "/lookup_key");
        if let Some(key) = key.as_deref().filter(|k| !k.is_empty()) {
            let transfer = flag(p, "/transfer_lookup_key").unwrap_or(false);
            self.claim_lookup_key(key, id, transfer)?;
        }
        let price = by_id_mut(&mut self.prices, id).ok_or_else(|| missing("price", id, None))?;
        if let Some(key) = key {
            price["lookup_key"] = json!(Some(key).filter(|k| !k.is_empty()));
        }
        if let Some(active) = flag(p, "/active") {
            price["active"] = json!(active);
        }
        if let Some(patch) = p.get("metadata") {
            merge_metadata(&mut price["metadata"], patch);
        }
        Ok(price.clone())
    }

    fn list_prices(&self, p: &Value) -> Value {
        let keys: Option<Vec<&str>> = p
            .get("lookup_keys")
            .and_then(Value::as_array)
            .map(|keys| keys.iter().filter_map(Value::as_str).collect());
        let (active, product) = (flag(p, "/active"), text(p, "/product"));
        let keyed = |price: &&Value| match (&keys, price["lookup_key"].as_str()) {
            (None, _) => true,
            (Some(keys), Some(key)) => keys.contains(&key),
            (Some(_), None) => false,
        };
        let data = (self.prices.iter().rev())
            .filter(keyed)
            .filter(|price| active.is_none_or(|a| price["active"] == a))
            .filter(|price| product.as_deref().is_none_or(|pr| price["product"] == pr));
        list("/v1/prices", data.cloned().collect())
    }

    fn create_session(&mut self, p: &Value) -> Answer {
        match text(p, "/mode").as_deref() {
            Some("subscription") => {}
            Some(_) => return Err(invalid("Only mode=subscription is faked.", Some("mode"))),
            None => return Err(required("mode")),
        }
        let customer = text(p, "/customer").ok_or_else(|| required("customer"))?;
        if by_id(&self.customers, &customer).is_none() {
            return Err(missing("customer", &customer, Some("customer")));
        }
        let param = "line_items[0][price]";
        let price_id = text(p, "/line_items/0/price").ok_or_else(|| required(param))?;
        let price = by_id(&self.prices, &price_id);
        let price = price.ok_or_else(|| missing("price", &price_id, Some(param)))?;
        if price["recurring"].is_null() {
            let message = "You must provide at least one recurring price in `subscription` mode when using prices.";
            return Err(invalid(message, Some(param)));
        }
        let (now, id) = (self.now(), new_id("cs_test_"));
        let object = json!({
            "id": id, "object": "checkout.session", "amount_subtotal": price["unit_amount"],
            "amount_total": price["unit_amount"], "automatic_tax": { "enabled": false },
            "cancel_url": text(p, "/cancel_url"),
            "client_reference_id": text(p, "/client_reference_id"), "created": now,
            "currency": price["currency"], "custom_fields": [], "custom_text": {},
            "customer": customer,
            "expires_at": now + DAY, "livemode": false, "metadata": metadata(p),
            "mode": "subscription", "payment_method_types": ["card"],
            "payment_status": "unpaid", "shipping_options": [], "status": "open",
            "subscription": null, "success_url": text(p, "/success_url"),
            "url": format!("{}/checkout/{id}", self.base),
        });
        let sub_metadata = metadata(p.get("subscription_data").unwrap_or(&Value::Null));
        let session = Session {
            object: object.clone(),
            price: price_id,
            sub_metadata,
        };
        self.sessions.push(session);
        Ok(object)
    }

    fn update_subscription(&mut self, id: &str, p: &Value) -> Answer {
        let i = self
            .sub_index(id)
            .ok_or_else(|| missing("subscription", id, None))?;
        if self.subscriptions[i].status == "canceled" {
            let message =
                "A canceled subscription can only update its cancellation_details and metadata.";
            return Err(invalid(message, None));
        }
        let now = self.now();
        let before = self.render_sub(&self.subscriptions[i]);
        let mut previous = Map::new();
        let mut invoice = None;
        let s = &mut self.subscriptions[i];
        if let Some(flag) = flag(p, "/cancel_at_period_end")
            && s.cancel_at_period_end != flag
        {
            for key in ["cancel_at_period_end", "cancel_at", "canceled_at"] {
                previous.insert(key.into(), before[key].clone());
            }
            s.cancel_at_period_end = flag;
            s.canceled_at = flag.then_some(now);
        }
        if let Some(new_id) = text(p, "/items/0/price") {
            let sub = &self.subscriptions[i];
            if let Some(item) = text(p, "/items/0/id").filter(|item| *item != sub.item) {
                return Err(missing("subscription item", &item, Some("items[0][id]")));
            }
            let new = self.price(&new_id);
            if new.is_null() {
                return Err(missing("price", &new_id, Some("items[0][price]")));
            }
            if new_id != sub.price {
                let behavior = text(p, "/proration_behavior");
                let behavior = behavior.as_deref().unwrap_or("create_prorations");
                let change = self.change(sub, &new, now);
                let total: i64 = change.lines.iter().map(|l| l.amount).sum();
                let prorate = behavior != "none";
                if prorate && total > 0 && (behavior == "always_invoice" || change.restarts) {
                    let reason = "subscription_update";
                    let open = self.invoice(sub, reason, &change.lines, now, change.end);
                    let mut paid = open.clone();
                    pay(&mut paid, now);
                    self.attach(i, &paid);
                    previous.insert("latest_invoice".into(), before["latest_invoice"].clone());
                    invoice = Some((open, paid));
                }
                previous.insert("items".into(), before["items"].clone());
                let s = &mut self.subscriptions[i];
                s.price = new_id;
                if prorate && change.restarts {
                    (s.start, s.end, s.anchor) = (change.start, change.end, change.start);
                }
            }
        }
        if let Some(patch) = p.get("metadata") {
            previous.insert("metadata".into(), before["metadata"].clone());
            merge_metadata(&mut self.subscriptions[i].metadata, patch);
        }
        let after = self.render_sub(&self.subscriptions[i]);
        if !previous.is_empty() {
            let previous = Some(Value::Object(previous));
            self.emit("customer.subscription.updated", after.clone(), previous);
        }
        if let Some((open, paid)) = invoice {
            self.emit_invoice(Some(open), &paid, "invoice.paid");
        }
        Ok(after)
    }

    /// `create_preview` for a subscription: the proration of a price change, or (with no
    /// change, or `proration_behavior=none`) the next period's invoice.
    fn preview(&self, p: &Value) -> Answer {
        let id = text(p, "/subscription").ok_or_else(|| required("subscription"))?;
        let i = self.sub_index(&id);
        let sub = &self.subscriptions[i.ok_or_else(|| missing("subscription", &id, None))?];
        if let Some(c) = text(p, "/customer").filter(|c| *c != sub.customer) {
            let message = format!("The subscription {id} does not belong to {c}.");
            return Err(invalid(&message, Some("customer")));
        }
        let details = p.get("subscription_details").unwrap_or(&Value::Null);
        let new = text(details, "/items/0/price").unwrap_or_else(|| sub.price.clone());
        let price = self.price(&new);
        if price.is_null() {
            let param = "subscription_details[items][0][price]";
            return Err(missing("price", &new, Some(param)));
        }
        let behavior = text(details, "/proration_behavior");
        let behavior = behavior.as_deref().unwrap_or("create_prorations");
        let at = int(details, "/proration_date").unwrap_or_else(|| self.now());
        let mut preview = if new != sub.price && behavior != "none" {
            let change = self.change(sub, &price, at);
            self.invoice(sub, "subscription_update", &change.lines, at, change.end)
        } else {
            let length = period(&interval_of(&price));
            let line = self.plan_line(&new, sub.end, sub.end + length);
            let (start, end) = (line.start, line.end);
            self.invoice(sub, "subscription_cycle", &[line], start, end)
        };
        preview["id"] = json!(new_id("upcoming_in_"));
        preview["status"] = json!("draft");
        preview["hosted_invoice_url"] = Value::Null;
        preview["status_transitions"]["finalized_at"] = Value::Null;
        Ok(preview)
    }
}

struct State {
    store: Mutex<Store>,
    client: reqwest::Client,
}

impl State {
    fn lock(&self) -> MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Posts `body` to the webhook URL; the status, 0 without a URL or an answer.
    async fn post(&self, body: String, signature: &str) -> u16 {
        let Some(url) = self.lock().webhook_url.clone() else {
            return 0;
        };
        let request = (self.client.post(url))
            .header("Stripe-Signature", signature)
            .header("Content-Type", "application/json; charset=utf-8");
        let sent = request.body(body).send().await;
        sent.map(|r| r.status().as_u16()).unwrap_or(0)
    }

    async fn deliver(&self, event_id: &str) -> u16 {
        let (body, signature) = {
            let st = self.lock();
            let Some(event) = by_id(&st.events, event_id) else {
                return 0;
            };
            let body = event.to_string();
            let signature = signature(&st.secrets, &body, real_now());
            (body, signature)
        };
        let status = self.post(body, &signature).await;
        let mut st = self.lock();
        if st.webhook_url.is_some() {
            st.deliveries.push((event_id.to_owned(), status));
        }
        status
    }
}

fn json_response(status: u16, body: String) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let response = Response::builder()
        .status(status)
        .content_type("application/json");
    let response = response.header("Request-Id", new_id("req_"));
    response.header("Stripe-Version", API_VERSION).body(body)
}

fn error_response(e: ApiError) -> Response {
    json_response(e.status, e.body.to_string())
}

/// Every `/v1/*` request: recording, injected latency and failures, authentication, the
/// version, idempotency, then the endpoint.
#[handler]
async fn api(req: &Request, body: Bytes, Data(state): Data<&Arc<State>>) -> Response {
    let method = req.method().as_str().to_owned();
    let path = req.uri().path().to_owned();
    let header = |name: &str| {
        let value = req.headers().get(name).and_then(|v| v.to_str().ok());
        value.map(str::to_owned)
    };
    let key = header("idempotency-key").filter(|_| method == "POST");
    let (latency, fail) = {
        let mut st = state.lock();
        st.requests
            .push((method.clone(), path.clone(), key.clone()));
        (st.latency, st.fail_next.take())
    };
    tokio::time::sleep(latency).await;
    if let Some(status) = fail {
        let message = "An unknown error occurred (injected by the fake).";
        return error_response(error(status, "api_error", "", message, None));
    }
    let authorization = header("authorization").unwrap_or_default();
    let api_key = authorization.strip_prefix("Bearer sk_test_").unwrap_or("");
    if api_key.is_empty() {
        let message = "Invalid API Key provided";
        return error_response(error(401, "invalid_request_error", "", message, None));
    }
    if let Some(version) = header("stripe-version").filter(|v| v != API_VERSION) {
        let message =
            format!("Invalid Stripe API version: {version} (this fake speaks {API_VERSION}).");
        let code = "api_version_invalid";
        return error_response(error(400, "invalid_request_error", code, &message, None));
    }
    let Ok(body) = std::str::from_utf8(&body) else {
        return error_response(invalid("The request body is not UTF-8.", None));
    };
    let raw = format!("{}&{body}", req.uri().query().unwrap_or(""));
    let fingerprint = hex::encode(Sha256::digest(format!("{method}\n{path}\n{raw}")));
    let mut st = state.lock();
    if let Some(key) = &key
        && let Some((first, status, body)) = st.idempotency.get(key)
    {
        if *first != fingerprint {
            let message = format!(
                "Keys for idempotent requests can only be used with the same parameters they were first used with. Try using a key other than '{key}' if you meant to execute a different request."
            );
            return error_response(error(400, "idempotency_error", "", &message, None));
        }
        let mut response = json_response(*status, body.clone());
        let replayed = header::HeaderValue::from_static("true");
        response
            .headers_mut()
            .insert("idempotent-replayed", replayed);
        return response;
    }
    let (status, body) = match st.dispatch(&method, &path, &parse_form(&raw)) {
        Ok(object) => (200, object.to_string()),
        Err(e) => (e.status, e.body.to_string()),
    };
    if let Some(key) = key.filter(|_| status < 500) {
        st.idempotency
            .insert(key, (fingerprint, status, body.clone()));
    }
    json_response(status, body)
}

fn html(status: StatusCode, body: &str) -> Response {
    let head = "<!doctype html><html><head><meta charset=\"utf-8\"><title>Stripe (fake)</title>";
    let page = format!("{head}</head><body>{body}</body></html>");
    Response::builder()
        .status(status)
        .content_type("text/html; charset=utf-8")
        .body(page)
}

#[handler]
fn checkout_page(Path(id): Path<String>, Data(state): Data<&Arc<State>>) -> Response {
    let st = state.lock();
    let Some(session) = st.session(&id) else {
        return html(StatusCode::NOT_FOUND, "<h1>No such checkout session</h1>");
    };
    let price = st.price(&session.price);
    let amount = money(
        price["unit_amount"].as_i64().unwrap_or(0),
        price["currency"].as_str().unwrap_or("usd"),
    );
    let (id, status) = (escape(&id), escape(&str_of(&session.object["status"])));
    let action = if status == "open" {
        let button = "<button type=\"submit\" id=\"pay\">Pay</button>";
        format!("<form method=\"post\" action=\"/checkout/{id}/pay\">{button}</form>")
    } else {
        format!("<p id=\"status\">This checkout session is {status}.</p>")
    };
    let cancel = session.object["cancel_url"]
        .as_str()
        .map(|u| format!("<p><a id=\"cancel\" href=\"{}\">Cancel</a></p>", escape(u)));
    let (name, interval) = (escape(&st.product_name(&price)), interval_of(&price));
    let price = format!("<p id=\"price\">{amount} / {interval}</p>");
    let cancel = cancel.unwrap_or_default();
    html(
        StatusCode::OK,
        &format!("<h1>{name}</h1>{price}{action}{cancel}"),
    )
}

#[handler]
fn checkout_pay(Path(id): Path<String>, Data(state): Data<&Arc<State>>) -> Response {
    let mut st = state.lock();
    if let Err(e) = st.complete_checkout(&id) {
        return html(StatusCode::BAD_REQUEST, &format!("<p>{}</p>", escape(&e)));
    }
    let target = st
        .session(&id)
        .and_then(|s| s.object["success_url"].as_str());
    match target.map(|url| url.replace("{CHECKOUT_SESSION_ID}", &id)) {
        Some(url) => {
            let redirect = Response::builder().status(StatusCode::SEE_OTHER);
            redirect.header(header::LOCATION, url).finish()
        }
        None => html(StatusCode::OK, "<p>Paid.</p>"),
    }
}

#[handler]
fn portal_page(Path(id): Path<String>, Data(state): Data<&Arc<State>>) -> Response {
    let st = state.lock();
    let Some(session) = by_id(&st.portals, &id) else {
        return html(StatusCode::NOT_FOUND, "<h1>No such portal session</h1>");
    };
    let back = escape(session["return_url"].as_str().unwrap_or("/"));
    let customer = escape(&str_of(&session["customer"]));
    let link = format!("<a id=\"return\" href=\"{back}\">Return</a>");
    html(
        StatusCode::OK,
        &format!("<h1>Billing portal</h1><p>{customer}</p><p>{link}</p>"),
    )
}

#[handler]
fn invoice_page(Path(id): Path<String>, Data(state): Data<&Arc<State>>) -> Response {
    let st = state.lock();
    let Some(invoice) = by_id(&st.invoices, &id) else {
        return html(StatusCode::NOT_FOUND, "<h1>No such invoice</h1>");
    };
    let currency = invoice["currency"].as_str().unwrap_or("usd");
    let amount = money(invoice["amount_due"].as_i64().unwrap_or(0), currency);
    let status = escape(&str_of(&invoice["status"]));
    let body = format!(
        "<h1>Invoice {}</h1><p>{amount}</p><p>{status}</p>",
        escape(&id)
    );
    html(StatusCode::OK, &body)
}

fn control_answer(result: Result<Value, String>) -> Response {
    match result {
        Ok(body) => json_response(200, body.to_string()),
        Err(e) => json_response(400, json!({ "error": e }).to_string()),
    }
}

#[handler]
fn control_complete(Path(id): Path<String>, Data(state): Data<&Arc<State>>) -> Response {
    let completed = state.lock().complete_checkout(&id);
    control_answer(completed.map(|sub| json!({ "subscription": sub })))
}

#[handler]
fn control_subscription(
    Path((id, action)): Path<(String, String)>,
    Data(state): Data<&Arc<State>>,
) -> Response {
    let mut st = state.lock();
    let invoice = |r: Result<String, String>| r.map(|inv| json!({ "invoice": inv }));
    control_answer(match action.as_str() {
        "renew" => invoice(st.next_period(&id, None)),
        "fail_payment" => invoice(st.next_period(&id, Some("invoice.payment_failed"))),
        "require_action" => invoice(st.next_period(&id, Some(ACTION_REQUIRED))),
        "end_unpaid" => st.live_index(&id).map(|i| st.end_now(i)),
        _ => Err(format!("unknown action {action}")),
    })
}

#[derive(Deserialize)]
struct Advance {
    seconds: i64,
}

#[handler]
fn control_advance(Query(q): Query<Advance>, Data(state): Data<&Arc<State>>) -> Json<Value> {
    let mut st = state.lock();
    st.offset += q.seconds.max(0);
    Json(json!({ "now": st.now() }))
}

#[handler]
fn control_events(Data(state): Data<&Arc<State>>) -> Json<Value> {
    Json(Value::Array(state.lock().events.clone()))
}

/// A running Stripe fake; stops when dropped.
pub struct StripeFake {
    addr: SocketAddr,
    state: Arc<State>,
    server: JoinHandle<()>,
    courier: JoinHandle<()>,
}

impl StripeFake {
    /// Listens on `addr` (port 0 for an ephemeral one); no webhook URL yet, auto-delivery on.
    pub async fn start(addr: &str) -> std::io::Result<StripeFake> {
        let (acceptor, addr) = crate::bind_http(addr).await?;
        let (outbox, mut queue) = mpsc::unbounded_channel::<String>();
        let client = reqwest::Client::builder()
            .user_agent("Stripe/1.0 (+https://stripe.com/docs/webhooks)")
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(std::io::Error::other)?;
        let store = Store {
            base: format!("http://{addr}"),
            auto_deliver: true,
            outbox: Some(outbox),
            ..Store::default()
        };
        let state = Arc::new(State {
            store: Mutex::new(store),
            client,
        });
        let routes = Route::new()
            .at("/v1/*path", api)
            .at("/checkout/:id", poem::get(checkout_page))
            .at("/checkout/:id/pay", poem::post(checkout_pay))
            .at("/portal/:id", poem::get(portal_page))
            .at("/invoices/:id", poem::get(invoice_page))
            .at(
                "/_control/checkout/:id/complete",
                poem::post(control_complete),
            )
            .at(
                "/_control/subscriptions/:id/:action",
                poem::post(control_subscription),
            )
            .at("/_control/advance", poem::post(control_advance))
            .at("/_control/events", poem::get(control_events))
            .data(Arc::clone(&state));
        let server = tokio::spawn(async move {
            let _ = Server::new_with_acceptor(acceptor).run(routes).await;
        });
        let courier_state = Arc::clone(&state);
        let courier = tokio::spawn(async move {
            while let Some(id) = queue.recv().await {
                courier_state.deliver(&id).await;
            }
        });
        Ok(StripeFake {
            addr,
            state,
            server,
            courier,
        })
    }

    /// The API base, `http://127.0.0.1:PORT/`.
    pub fn base_url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    /// Where events go, and the secrets (`whsec_…`) that sign them; an empty URL stops
    /// deliveries.
    pub fn set_webhook(&self, url: &str, secrets: &[&str]) {
        let mut st = self.state.lock();
        st.webhook_url = Some(url.to_owned()).filter(|u| !u.is_empty());
        st.secrets = secrets.iter().map(|s| (*s).to_owned()).collect();
    }

    /// Whether events are posted as they are emitted (on by default).
    pub fn set_auto_deliver(&self, on: bool) {
        self.state.lock().auto_deliver = on;
    }

    /// Every emitted event, oldest first.
    pub fn events(&self) -> Vec<Value> {
        self.state.lock().events.clone()
    }

    /// The emitted events of one type, oldest first.
    pub fn events_of(&self, type_: &str) -> Vec<Value> {
        let st = self.state.lock();
        st.events
            .iter()
            .filter(|e| e["type"] == type_)
            .cloned()
            .collect()
    }

    /// The `Stripe-Signature` header for `payload` at `timestamp`, with every secret's `v1`.
    pub fn sign(&self, payload: &str, timestamp: i64) -> String {
        signature(&self.state.lock().secrets, payload, timestamp)
    }

    /// Posts one stored event now (signed at the real time) and records the delivery;
    /// answers its status, 0 if the event is unknown, there is no URL, or no answer.
    pub async fn deliver(&self, event_id: &str) -> u16 {
        self.state.deliver(event_id).await
    }

    /// Posts `body` with `Stripe-Signature: header` to the webhook URL (not recorded).
    pub async fn deliver_raw(&self, body: &str, header: &str) -> u16 {
        self.state.post(body.to_owned(), header).await
    }

    /// (event id, response status) of every delivery, oldest first (0: no answer).
    pub fn deliveries(&self) -> Vec<(String, u16)> {
        self.state.lock().deliveries.clone()
    }

    /// Pays an open Checkout Session: an active subscription with a paid first invoice.
    /// Answers the subscription's id.
    pub async fn complete_checkout(&self, session_id: &str) -> Result<String, String> {
        self.state.lock().complete_checkout(session_id)
    }

    /// Moves the clock to the period's end and starts the next with a paid invoice; answers
    /// the invoice's id. A subscription set to cancel at period end ends instead (the answer
    /// is its last invoice); a past-due one has its open invoice paid and is active again.
    pub async fn renew(&self, subscription_id: &str) -> Result<String, String> {
        self.state.lock().next_period(subscription_id, None)
    }

    /// Like [`renew`](Self::renew), but the payment fails: the invoice stays open and the
    /// subscription goes past due. Answers the invoice's id.
    pub async fn fail_payment(&self, subscription_id: &str) -> Result<String, String> {
        let failed = Some("invoice.payment_failed");
        self.state.lock().next_period(subscription_id, failed)
    }

    /// Like [`fail_payment`](Self::fail_payment), with `invoice.payment_action_required`.
    pub async fn require_action(&self, subscription_id: &str) -> Result<String, String> {
        let required = Some(ACTION_REQUIRED);
        self.state.lock().next_period(subscription_id, required)
    }

    /// Ends the subscription now, as Stripe does when the retries run out.
    pub async fn end_unpaid(&self, subscription_id: &str) -> Result<(), String> {
        let mut st = self.state.lock();
        let i = st.live_index(subscription_id)?;
        st.end_now(i);
        Ok(())
    }

    /// Moves the fake's clock forward.
    pub fn advance(&self, by: Duration) {
        let mut st = self.state.lock();
        st.offset += by.as_secs() as i64;
    }

    /// The fake's clock, in Unix seconds.
    pub fn now(&self) -> i64 {
        self.state.lock().now()
    }

    /// A subscription as the API shows it.
    pub fn subscription(&self, id: &str) -> Option<Value> {
        let st = self.state.lock();
        st.sub_index(id)
            .map(|i| st.render_sub(&st.subscriptions[i]))
    }

    /// A delay added to every `/v1` answer.
    pub fn set_latency(&self, by: Duration) {
        self.state.lock().latency = by;
    }

    /// The next `/v1` request answers `status` with an `api_error` body.
    pub fn fail_next(&self, status: u16) {
        self.state.lock().fail_next = Some(status);
    }

    /// (method, path, idempotency key) of every `/v1` request, oldest first.
    pub fn requests(&self) -> Vec<(String, String, Option<String>)> {
        self.state.lock().requests.clone()
    }
}

impl Drop for StripeFake {
    fn drop(&mut self) {
        self.server.abort();
        self.courier.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRETS: [&str; 2] = ["whsec_first", "whsec_second"];

    async fn call(
        fake: &StripeFake,
        method: &str,
        path: &str,
        form: &str,
        key: Option<&str>,
    ) -> (u16, Value, bool) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let url = format!("{}{path}", fake.base_url());
        let mut request = (reqwest::Client::new().request(method, url))
            .header("Authorization", "Bearer sk_test_fake")
            .header("Stripe-Version", API_VERSION)
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(form.to_owned());
        if let Some(key) = key {
            request = request.header("Idempotency-Key", key);
        }
        let response = request.send().await.expect("request");
        let status = response.status().as_u16();
        let replayed = response.headers().contains_key("idempotent-replayed");
        (status, response.json().await.expect("json"), replayed)
    }

    async fn ok(fake: &StripeFake, method: &str, path: &str, form: &str) -> Value {
        let (status, body, _) = call(fake, method, path, form, None).await;
        assert_eq!(status, 200, "{method} {path}: {body}");
        body
    }

    /// A customer, a monthly price of `amount` cents, and an open session for it.
    async fn open_session(fake: &StripeFake, amount: i64) -> String {
        let customer = ok(fake, "POST", "v1/customers", "email=a%40example.com").await;
        let product = ok(fake, "POST", "v1/products", "name=Pro").await;
        let form = format!(
            "currency=usd&unit_amount={amount}&recurring[interval]=month&product={}",
            product["id"].as_str().unwrap_or("")
        );
        let price = ok(fake, "POST", "v1/prices", &form).await;
        let form = format!(
            "mode=subscription&customer={}&line_items[0][price]={}&line_items[0][quantity]=1&success_url=https%3A%2F%2Fapp.example%2Fok%3Fs%3D%7BCHECKOUT_SESSION_ID%7D&cancel_url=https%3A%2F%2Fapp.example%2Fno",
            str_of(&customer["id"]),
            str_of(&price["id"])
        );
        str_of(&ok(fake, "POST", "v1/checkout/sessions", &form).await["id"])
    }

    #[test]
    fn form_bracket_keys_nest() {
        let parsed = parse_form(
            "line_items[0][price]=price_x&line_items[0][quantity]=1&line_items[1][price]=price_y&metadata[user_id]=u%201&metadata[0]=zero&recurring[interval]=month&expand[]=a&expand[]=b&email=",
        );
        let expected = json!({
            "line_items": [{ "price": "price_x", "quantity": "1" }, { "price": "price_y" }],
            "metadata": { "user_id": "u 1", "0": "zero" },
            "recurring": { "interval": "month" },
            "expand": ["a", "b"],
            "email": "",
        });
        assert_eq!(parsed, expected);
    }

    #[tokio::test]
    async fn idempotency_replays_and_refuses_other_parameters() {
        let fake = StripeFake::start("127.0.0.1:0").await.expect("start");
        let (status, first, replayed) =
            call(&fake, "POST", "v1/customers", "email=a%40x.io", Some("k1")).await;
        assert_eq!((status, replayed), (200, false));
        let (status, again, replayed) =
            call(&fake, "POST", "v1/customers", "email=a%40x.io", Some("k1")).await;
        assert_eq!((status, replayed), (200, true));
        assert_eq!(first, again);
        let (status, conflict, _) =
            call(&fake, "POST", "v1/customers", "email=b%40x.io", Some("k1")).await;
        assert_eq!(status, 400);
        assert_eq!(conflict["error"]["type"], "idempotency_error");
        let path = format!("v1/customers/{}", str_of(&first["id"]));
        assert_eq!(ok(&fake, "GET", &path, "").await, first);
        let (status, missing, _) = call(&fake, "GET", "v1/customers/cus_nope", "", None).await;
        assert_eq!(status, 404);
        assert_eq!(missing["error"]["code"], "resource_missing");
        let keys: Vec<_> = fake.requests().into_iter().map(|(_, _, k)| k).collect();
        let k1 = Some("k1".to_owned());
        assert_eq!(keys[..3], [k1.clone(), k1.clone(), k1]);
    }

    type Inbox = Arc<Mutex<Vec<(String, String)>>>;

    #[handler]
    fn hook(req: &Request, body: String, Data(inbox): Data<&Inbox>) -> StatusCode {
        let signature = req
            .headers()
            .get("stripe-signature")
            .and_then(|v| v.to_str().ok());
        let entry = (signature.unwrap_or("").to_owned(), body);
        inbox.lock().unwrap_or_else(|e| e.into_inner()).push(entry);
        StatusCode::OK
    }

    #[tokio::test]
    async fn checkout_emits_signed_events_in_order() {
        let fake = StripeFake::start("127.0.0.1:0").await.expect("start");
        let (acceptor, addr) = crate::bind_http("127.0.0.1:0").await.expect("bind");
        let inbox = Inbox::default();
        let routes = Route::new()
            .at("/hook", poem::post(hook))
            .data(Arc::clone(&inbox));
        let receiver = tokio::spawn(Server::new_with_acceptor(acceptor).run(routes));
        fake.set_webhook(&format!("http://{addr}/hook"), &SECRETS);
        let session = open_session(&fake, 999).await;
        let base = fake.base_url();
        let page = reqwest::get(format!("{base}checkout/{session}"))
            .await
            .expect("page");
        let page = page.text().await.expect("page");
        assert!(
            page.contains("<button") && page.contains("9.99 USD / month"),
            "{page}"
        );
        let browser = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none());
        let browser = browser.build().expect("client");
        let paid = browser
            .post(format!("{base}checkout/{session}/pay"))
            .send()
            .await;
        let paid = paid.expect("pay");
        assert_eq!(paid.status().as_u16(), 303);
        let location = paid.headers().get("location").and_then(|v| v.to_str().ok());
        assert_eq!(
            location,
            Some(format!("https://app.example/ok?s={session}").as_str())
        );
        for _ in 0..100 {
            if fake.deliveries().len() >= 5 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let received = inbox.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let types: Vec<String> = received
            .iter()
            .map(|(_, body)| str_of(&serde_json::from_str::<Value>(body).expect("json")["type"]))
            .collect();
        let expected = [
            "checkout.session.completed",
            "customer.subscription.created",
            "invoice.created",
            "invoice.paid",
            "invoice.payment_succeeded",
        ];
        assert_eq!(types, expected);
        for (header, body) in &received {
            let parts: Vec<&str> = header.split(',').collect();
            let t = parts[0].strip_prefix("t=").expect("t=");
            assert!((t.parse::<i64>().expect("t") - real_now()).abs() < 60);
            for (secret, part) in SECRETS.iter().zip(&parts[1..]) {
                let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("key");
                mac.update(format!("{t}.{body}").as_bytes());
                let v1 = part.strip_prefix("v1=").expect("v1=");
                mac.verify_slice(&hex::decode(v1).expect("hex"))
                    .expect("valid signature");
            }
            assert_eq!(parts.len(), 3);
        }
        let events = fake.events();
        let delivered: Vec<(String, u16)> =
            events.iter().map(|e| (str_of(&e["id"]), 200)).collect();
        assert_eq!(fake.deliveries(), delivered);
        let session = ok(&fake, "GET", &format!("v1/checkout/sessions/{session}"), "").await;
        assert_eq!(
            (&session["status"], &session["payment_status"]),
            (&json!("complete"), &json!("paid"))
        );
        let sub = fake
            .subscription(&str_of(&session["subscription"]))
            .expect("subscription");
        assert_eq!(sub["status"], "active");
        assert_eq!(events[1]["data"]["object"], sub);
        receiver.abort();
    }

    #[tokio::test]
    async fn renew_bills_a_later_period() {
        let fake = StripeFake::start("127.0.0.1:0").await.expect("start");
        let session = open_session(&fake, 500).await;
        let sub = fake.complete_checkout(&session).await.expect("complete");
        let first_end =
            fake.subscription(&sub).expect("sub")["items"]["data"][0]["current_period_end"].clone();
        let invoice = fake.renew(&sub).await.expect("renew");
        let invoices = ok(&fake, "GET", &format!("v1/invoices?subscription={sub}"), "").await;
        let data = invoices["data"].as_array().expect("data");
        assert_eq!(data.len(), 2);
        assert_eq!(data[0]["id"], invoice.as_str());
        assert_eq!(
            (&data[0]["status"], &data[1]["status"]),
            (&json!("paid"), &json!("paid"))
        );
        assert_eq!(data[0]["billing_reason"], "subscription_cycle");
        assert_eq!(data[0]["amount_paid"], 500);
        assert_eq!(data[0]["period_start"], first_end);
        assert!(data[0]["period_end"].as_i64() > data[1]["period_end"].as_i64());
        assert!(fake.now() >= first_end.as_i64().unwrap_or(i64::MAX));
        let sub = fake.subscription(&sub).expect("sub");
        assert_eq!(sub["items"]["data"][0]["current_period_start"], first_end);
        assert_eq!(sub["latest_invoice"], invoice.as_str());
        assert_eq!(fake.events_of("invoice.paid").len(), 2);
    }
}
