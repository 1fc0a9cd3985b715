//! The ad-stack third parties: Cloudflare Turnstile's siteverify, Google's SSV key server
//! (with a signer that makes callbacks as Google does, and key rotation), Google's ad
//! server and IMA SDK for rewarded video, and a Monetag postback sender.
//!
//! The Google fake serves, besides the keys: the IMA SDK stand-in (`ima3.js`, see that
//! file) at `/js/sdkloader/ima3.js`; an ad tag at `/gampad/ads?iu=UNIT&cust_params=…`
//! answering VAST with one linear ad (empty VAST without `uid` and `nonce` in
//! `cust_params`); and the ad's tracking pixels. When the ad's `complete` pixel arrives,
//! it sends the rewarded-ad callback to the SSV URL it was given, signed as Google signs
//! (`user_id` = `uid`, `custom_data` = `nonce`, `ad_unit` = `iu`). `POST
//! /_control/unfilled` makes the next ad request find no ad (empty VAST).
//!
//! Turnstile answers by token: `pass…` passes once (a second verification of the same
//! token with another idempotency key is `timeout-or-duplicate`, as tokens are single-use),
//! `fail…` fails, `timeout…` answers after 5 s, `nonjson…` answers HTML, `action…` passes
//! with another action, `host…` passes for another hostname. It also serves a stand-in for
//! the widget's script, whose button hands out `pass…` tokens.

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use base64::{
    Engine,
    engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD},
};
use p256::{
    ecdsa::{Signature, SigningKey, signature::Signer},
    pkcs8::{EncodePublicKey, LineEnding},
};
use poem::{
    EndpointExt, Response, Route, Server, handler,
    web::{Data, Form, Query},
};
use tokio::task::JoinHandle;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[derive(Default)]
struct TurnstileState {
    secret: String,
    hostname: String,
    /// token → the idempotency key of its first verification.
    spent: Mutex<HashMap<String, String>>,
    requests: Mutex<Vec<HashMap<String, String>>>,
}

/// Cloudflare Turnstile's `POST /turnstile/v0/siteverify`.
pub struct Turnstile {
    addr: SocketAddr,
    state: Arc<TurnstileState>,
    task: JoinHandle<()>,
}

#[handler]
async fn siteverify(
    Form(form): Form<HashMap<String, String>>,
    Data(state): Data<&Arc<TurnstileState>>,
) -> Response {
    lock(&state.requests).push(form.clone());
    let token = form.get("response").cloned().unwrap_or_default();
    let key = form.get("idempotency_key").cloned().unwrap_or_default();
    let answer = |success: bool, codes: &[&str], action: &str, hostname: &str| {
        let body = serde_json::json!({
            "success": success,
            "challenge_ts": "2026-11-26T00:00:00.000Z",
            "hostname": hostname,
            "error-codes": codes,
            "action": action,
            "cdata": "",
        });
        Response::builder()
            .content_type("application/json")
            .body(body.to_string())
    };
    if form.get("secret") != Some(&state.secret) {
        return answer(false, &["invalid-input-secret"], "", "");
    }
    if token.starts_with("timeout") {
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
    if token.starts_with("nonjson") {
        return Response::builder()
            .content_type("text/html")
            .body("<html><body>502 Bad Gateway</body></html>");
    }
    if token.starts_with("fail") || token.is_empty() {
        return answer(false, &["invalid-input-response"], "", "");
    }
    {
        let mut spent = lock(&state.spent);
        match spent.get(&token) {
            Some(first) if *first != key => {
                return answer(false, &["timeout-or-duplicate"], "", "");
            }
            Some(_) => {}
            None => {
                spent.insert(token.clone(), key);
            }
        }
    }
    let action = if token.starts_with("action") {
        "login"
    } else {
        "ads_prepare"
    };
    let hostname = if token.starts_with("host") {
        "evil.example"
    } else {
        state.hostname.as_str()
    };
    answer(true, &[], action, hostname)
}

/// The widget's script, for browsers: `turnstile.render(element, {sitekey, action,
/// callback, 'expired-callback', 'error-callback'})` draws a "Verify you are human" button;
/// pressing it hands `callback` a fresh `pass-…` token (which siteverify passes once).
/// `turnstile.reset(id)` draws the button again; `turnstile.remove(id)` takes it away.
const WIDGET_JS: &str = r#"(() => {
  let next = 0;
  const widgets = new Map();
  function draw(id) {
    const w = widgets.get(id);
    w.element.replaceChildren();
    const button = document.createElement('button');
    button.type = 'button';
    button.textContent = 'Verify you are human';
    button.addEventListener('click', () => {
      const token = 'pass-' + Date.now().toString(36) + '-' + Math.random().toString(36).slice(2);
      button.disabled = true;
      button.textContent = 'Verified';
      w.options.callback?.(token);
    });
    w.element.appendChild(button);
  }
  window.turnstile = {
    render(element, options) {
      const target = typeof element === 'string' ? document.querySelector(element) : element;
      const id = 'fake-' + next++;
      widgets.set(id, { element: target, options });
      draw(id);
      return id;
    },
    reset(id) {
      if (widgets.has(id)) draw(id);
    },
    remove(id) {
      widgets.get(id)?.element.replaceChildren();
      widgets.delete(id);
    },
  };
})();
"#;

#[handler]
fn widget_script() -> Response {
    Response::builder()
        .content_type("text/javascript; charset=utf-8")
        .header("access-control-allow-origin", "*")
        .body(WIDGET_JS)
}

impl Turnstile {
    /// `secret` is the only secret key it accepts; passing tokens report `hostname`.
    pub async fn start(addr: &str, secret: &str, hostname: &str) -> std::io::Result<Turnstile> {
        let (acceptor, addr) = crate::bind_http(addr).await?;
        let state = Arc::new(TurnstileState {
            secret: secret.to_owned(),
            hostname: hostname.to_owned(),
            ..Default::default()
        });
        let routes = Route::new()
            .at("/turnstile/v0/siteverify", poem::post(siteverify))
            .at("/turnstile/v0/api.js", poem::get(widget_script))
            .data(Arc::clone(&state));
        let task = tokio::spawn(async move {
            let _ = Server::new_with_acceptor(acceptor).run(routes).await;
        });
        Ok(Turnstile { addr, state, task })
    }

    /// The widget's script (TURNSTILE_SCRIPT_URL).
    pub fn script_url(&self) -> String {
        format!("http://{}/turnstile/v0/api.js", self.addr)
    }

    /// The siteverify URL (TURNSTILE_VERIFY_URL).
    pub fn verify_url(&self) -> String {
        format!("http://{}/turnstile/v0/siteverify", self.addr)
    }

    /// Every form received, oldest first.
    pub fn requests(&self) -> Vec<HashMap<String, String>> {
        lock(&self.state.requests).clone()
    }
}

impl Drop for Turnstile {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct KeyState {
    /// (key id, key), oldest first; all are published.
    keys: Mutex<Vec<(u64, SigningKey)>>,
    next_id: AtomicUsize,
    fetches: AtomicUsize,
    /// Where rewarded-ad callbacks go when an ad completes (the server's `/ads/ssv`).
    ssv_url: Mutex<Option<String>>,
    /// The VAST duration of the ads served.
    ad_seconds: u32,
    /// Callbacks sent, and how the server answered each (status).
    callbacks: Mutex<Vec<u16>>,
    /// Ad requests still to answer with an empty VAST (an unfilled slot).
    unfilled: AtomicUsize,
    base: String,
}

/// Google's SSV verifier-key server, and the signer of callbacks with those keys.
pub struct GoogleSsv {
    addr: SocketAddr,
    state: Arc<KeyState>,
    task: JoinHandle<()>,
}

#[handler]
async fn verifier_keys(Data(state): Data<&Arc<KeyState>>) -> Response {
    state.fetches.fetch_add(1, Ordering::SeqCst);
    let keys: Vec<serde_json::Value> = lock(&state.keys)
        .iter()
        .map(|(id, key)| {
            let public = key.verifying_key();
            serde_json::json!({
                "keyId": id,
                "pem": public.to_public_key_pem(LineEnding::LF).expect("pem"),
                "base64": STANDARD.encode(public.to_public_key_der().expect("der").as_bytes()),
            })
        })
        .collect();
    Response::builder()
        .content_type("application/json")
        .body(serde_json::json!({ "keys": keys }).to_string())
}

/// Lets any page read the answer (the ad server answers the SDK's cross-origin fetch).
fn cors(builder: poem::ResponseBuilder) -> poem::ResponseBuilder {
    builder.header("access-control-allow-origin", "*")
}

#[handler]
fn ima_sdk() -> Response {
    Response::builder()
        .content_type("application/javascript")
        .body(include_str!("ima3.js"))
}

#[derive(serde::Deserialize)]
struct AdTag {
    #[serde(default)]
    iu: String,
    #[serde(default)]
    cust_params: String,
}

/// `GET /gampad/ads`: one linear rewarded ad in VAST 3, its pixels carrying what the
/// callback needs.
#[handler]
fn ad_tag(Query(tag): Query<AdTag>, Data(state): Data<&Arc<KeyState>>) -> Response {
    let cust: HashMap<String, String> = url::form_urlencoded::parse(tag.cust_params.as_bytes())
        .into_owned()
        .collect();
    let unfilled = state
        .unfilled
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok();
    let body = match (cust.get("uid"), cust.get("nonce")) {
        (Some(uid), Some(nonce)) if !tag.iu.is_empty() && !unfilled => {
            let pixel = |what: &str| {
                let mut q = url::form_urlencoded::Serializer::new(String::new());
                q.append_pair("iu", &tag.iu)
                    .append_pair("uid", uid)
                    .append_pair("nonce", nonce);
                format!("{}/pagead/{what}?{}", state.base, q.finish())
            };
            format!(
                r#"<?xml version="1.0" encoding="UTF-8"?>
<VAST version="3.0">
  <Ad id="tessera-fakes-1">
    <InLine>
      <AdSystem>tessera-fakes</AdSystem>
      <AdTitle>Rewarded test ad</AdTitle>
      <Impression><![CDATA[{impression}]]></Impression>
      <Creatives>
        <Creative>
          <Linear>
            <Duration>00:00:{seconds:02}</Duration>
            <TrackingEvents>
              <Tracking event="complete"><![CDATA[{complete}]]></Tracking>
            </TrackingEvents>
            <MediaFiles>
              <MediaFile delivery="progressive" type="video/mp4" width="640" height="360"><![CDATA[{base}/pagead/ad.mp4]]></MediaFile>
            </MediaFiles>
          </Linear>
        </Creative>
      </Creatives>
    </InLine>
  </Ad>
</VAST>
"#,
                impression = pixel("impression"),
                complete = pixel("complete"),
                base = state.base,
                seconds = state.ad_seconds.min(59),
            )
        }
        _ => r#"<?xml version="1.0" encoding="UTF-8"?><VAST version="3.0"/>"#.to_owned(),
    };
    cors(Response::builder())
        .content_type("text/xml")
        .body(body)
}

/// A 1×1 transparent GIF, as tracking pixels answer.
const PIXEL: &[u8] = &[
    0x47, 0x49, 0x46, 0x38, 0x39, 0x61, 0x01, 0x00, 0x01, 0x00, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00,
    0xff, 0xff, 0xff, 0x21, 0xf9, 0x04, 0x01, 0x00, 0x00, 0x00, 0x00, 0x2c, 0x00, 0x00, 0x00, 0x00,
    0x01, 0x00, 0x01, 0x00, 0x00, 0x02, 0x02, 0x44, 0x01, 0x00, 0x3b,
];

fn pixel_response() -> Response {
    cors(Response::builder())
        .content_type("image/gif")
        .body(PIXEL)
}

/// `POST /_control/unfilled`: the next ad request gets no ad.
#[handler]
fn control_unfilled(Data(state): Data<&Arc<KeyState>>) -> &'static str {
    state.unfilled.fetch_add(1, Ordering::SeqCst);
    "ok"
}

#[handler]
fn impression() -> Response {
    pixel_response()
}

#[derive(serde::Deserialize)]
struct Completed {
    iu: String,
    uid: String,
    nonce: String,
}

/// The ad played to the end: the reward callback goes to the publisher's SSV URL.
#[handler]
async fn complete(Query(done): Query<Completed>, Data(state): Data<&Arc<KeyState>>) -> Response {
    let ssv = lock(&state.ssv_url).clone();
    if let Some(ssv) = ssv {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0)
            .to_string();
        let transaction = format!("{:032x}", rand::random::<u128>());
        let query = {
            let keys = lock(&state.keys);
            let (id, key) = keys.last().expect("a key");
            let mut params = google_params(&done.nonce, &done.uid, &transaction, &now);
            for p in &mut params {
                if p.0 == "ad_unit" {
                    p.1 = &done.iu;
                }
            }
            sign_callback(key, *id, &params)
        };
        let separator = if ssv.contains('?') { '&' } else { '?' };
        let status = match reqwest::get(format!("{ssv}{separator}{query}")).await {
            Ok(response) => response.status().as_u16(),
            Err(_) => 0,
        };
        lock(&state.callbacks).push(status);
    }
    pixel_response()
}

impl GoogleSsv {
    pub async fn start(addr: &str) -> std::io::Result<GoogleSsv> {
        Self::start_with(addr, None, 1).await
    }

    /// With the ad server's callbacks going to `ssv_url`, for ads lasting `ad_seconds`.
    pub async fn start_with(
        addr: &str,
        ssv_url: Option<String>,
        ad_seconds: u32,
    ) -> std::io::Result<GoogleSsv> {
        let (acceptor, addr) = crate::bind_http(addr).await?;
        let state = Arc::new(KeyState {
            keys: Mutex::new(vec![(
                3_335_741_209,
                SigningKey::random(&mut rand::rngs::OsRng),
            )]),
            next_id: AtomicUsize::new(3_335_741_210),
            fetches: AtomicUsize::new(0),
            ssv_url: Mutex::new(ssv_url),
            ad_seconds: ad_seconds.max(1),
            callbacks: Mutex::default(),
            unfilled: AtomicUsize::new(0),
            base: format!("http://{addr}"),
        });
        let routes = Route::new()
            .at("/admob/reward/verifier-keys.json", poem::get(verifier_keys))
            .at("/js/sdkloader/ima3.js", poem::get(ima_sdk))
            .at("/gampad/ads", poem::get(ad_tag))
            .at("/pagead/impression", poem::get(impression))
            .at("/pagead/complete", poem::get(complete))
            .at("/_control/unfilled", poem::post(control_unfilled))
            .data(Arc::clone(&state));
        let task = tokio::spawn(async move {
            let _ = Server::new_with_acceptor(acceptor).run(routes).await;
        });
        Ok(GoogleSsv { addr, state, task })
    }

    /// ADS_SSV_KEYS_URL.
    pub fn keys_url(&self) -> String {
        format!("http://{}/admob/reward/verifier-keys.json", self.addr)
    }

    /// The IMA SDK stand-in (IMA_SDK_URL).
    pub fn ima_sdk_url(&self) -> String {
        format!("http://{}/js/sdkloader/ima3.js", self.addr)
    }

    /// An ad tag base (AD_TAG_BASE) for the ad unit `unit`.
    pub fn ad_tag_base(&self, unit: &str) -> String {
        let mut q = url::form_urlencoded::Serializer::new(String::new());
        q.append_pair("iu", unit)
            .append_pair("sz", "640x360")
            .append_pair("output", "vast")
            .append_pair("env", "vp")
            .append_pair("gdfp_req", "1")
            .append_pair("unviewed_position_start", "1");
        format!("http://{}/gampad/ads?{}", self.addr, q.finish())
    }

    /// Sends the callbacks of completed ads to `url` from now on.
    pub fn send_callbacks_to(&self, url: &str) {
        *lock(&self.state.ssv_url) = Some(url.to_owned());
    }

    /// The server's answers to the callbacks sent after completed ads (HTTP statuses).
    pub fn callbacks(&self) -> Vec<u16> {
        lock(&self.state.callbacks).clone()
    }

    /// How many times the keys were fetched.
    pub fn fetches(&self) -> usize {
        self.state.fetches.load(Ordering::SeqCst)
    }

    /// Publishes a new key (which signs from now on) and retires the oldest; returns the
    /// new key's id.
    pub fn rotate(&self) -> u64 {
        let id = self.state.next_id.fetch_add(1, Ordering::SeqCst) as u64;
        let mut keys = lock(&self.state.keys);
        keys.push((id, SigningKey::random(&mut rand::rngs::OsRng)));
        keys.remove(0);
        id
    }

    /// The id of the key that signs now.
    pub fn current_key_id(&self) -> u64 {
        lock(&self.state.keys)
            .last()
            .map(|(id, _)| *id)
            .unwrap_or(0)
    }

    /// A callback query as Google sends it: the parameters in order, then `signature`
    /// (base64url DER ECDSA over everything before it) and `key_id`.
    pub fn callback(&self, params: &[(&str, &str)]) -> String {
        let keys = lock(&self.state.keys);
        let (id, key) = keys.last().expect("a key");
        sign_callback(key, *id, params)
    }

    /// A callback signed by a key Google never published, under a published id.
    pub fn forged_callback(&self, params: &[(&str, &str)]) -> String {
        let key = SigningKey::random(&mut rand::rngs::OsRng);
        sign_callback(&key, self.current_key_id(), params)
    }
}

fn sign_callback(key: &SigningKey, id: u64, params: &[(&str, &str)]) -> String {
    let mut q = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in params {
        q.append_pair(k, v);
    }
    let content = q.finish();
    let sig: Signature = key.sign(content.as_bytes());
    format!(
        "{content}&signature={}&key_id={id}",
        URL_SAFE_NO_PAD.encode(sig.to_der().as_bytes())
    )
}

/// The parameters of a rewarded-ad callback, as AdMob sends them.
pub fn google_params<'a>(
    nonce: &'a str,
    user_id: &'a str,
    transaction_id: &'a str,
    timestamp_ms: &'a str,
) -> Vec<(&'a str, &'a str)> {
    vec![
        ("ad_network", "5450213213286189855"),
        ("ad_unit", "1234567890"),
        ("custom_data", nonce),
        ("reward_amount", "5"),
        ("reward_item", "coins"),
        ("timestamp", timestamp_ms),
        ("transaction_id", transaction_id),
        ("user_id", user_id),
    ]
}

impl Drop for GoogleSsv {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Sends Monetag's postback for `ymid` to `base` (the server's URL), as Monetag's servers
/// do: a plain GET with the macros filled in. Returns the status and body.
pub async fn monetag_postback(
    base: &str,
    ymid: &str,
    reward_event_type: &str,
    estimated_price: &str,
) -> std::io::Result<(u16, String)> {
    let mut q = url::form_urlencoded::Serializer::new(String::new());
    q.append_pair("ymid", ymid)
        .append_pair("zone_id", "10000001")
        .append_pair("event_type", "impression")
        .append_pair("reward_event_type", reward_event_type)
        .append_pair("estimated_price", estimated_price)
        .append_pair("request_var", "earn");
    http_get(&format!("{base}/ads/monetag/postback?{}", q.finish())).await
}

/// A minimal HTTP/1.1 GET over a fresh connection (what a postback sender needs, no more).
async fn http_get(url: &str) -> std::io::Result<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let parsed = url::Url::parse(url).map_err(std::io::Error::other)?;
    let host = parsed.host_str().unwrap_or("127.0.0.1");
    let port = parsed.port_or_known_default().unwrap_or(80);
    let mut stream = tokio::net::TcpStream::connect((host, port)).await?;
    let path = match parsed.query() {
        Some(q) => format!("{}?{q}", parsed.path()),
        None => parsed.path().to_owned(),
    };
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUser-Agent: Monetag-Postback/1.0\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Ok((status, body))
}
