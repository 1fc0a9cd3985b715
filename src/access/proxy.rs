//! The token-gated reverse proxy (`ANY /proxy/{*path}`, or every path of
//! ACCESS_PROXY_HOST) and the cookie routes (`/access/authenticate`, `/access/status`,
//! `/access/logout`).
//!
//! A request is admitted in this order: path sanity, token present, signature (cached),
//! expiry, revocation (memory → kv → database), the token's own checks against `method`,
//! `path`, `protocol` and `host`, then the per-token rate limit. Refusals are JSON
//! `{"error", "message"}` and happen before any upgrade. Bodies stream both ways; the
//! upstream never sees our credentials and gets a signed `X-Tessera-Assertion` instead.

use std::{
    net::IpAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use hmac::{Hmac, Mac};
use http_body_util::combinators::BoxBody;
use poem::{
    Body, Endpoint, FromRequest, IntoResponse, Request, Response,
    http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header},
    web::websocket::{CloseCode, Message as PoemMessage, WebSocket},
};
use serde_json::json;
use sha2::Sha256;
use tokio_tungstenite::tungstenite::{
    self, Message as UpMessage, client::IntoClientRequest, protocol::CloseFrame,
};
use uuid::Uuid;

use super::{
    CloseReason, service,
    tokens::{Refusal, RequestFacts, Verified},
    upstream::{self, SendError, UpstreamIo},
};
use crate::{
    app::AppState,
    graphql::{RequestMeta, error::http_error},
    identity::auth::{ACCESS_COOKIE, REFRESH_COOKIE, cookie},
    platform::kv::RateLimit,
};

/// Prefix of the proxy in path mode.
pub const PREFIX: &str = "/proxy";
// Header names as `HeaderName`s: a lookup by `&str` parses the name again on every call.
const TOKEN_HEADER: HeaderName = HeaderName::from_static("x-access-token");
const ASSERTION_HEADER: HeaderName = HeaderName::from_static("x-tessera-assertion");
const FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

fn refusal(status: StatusCode, reason: &str, message: &str) -> Response {
    http_error(status, reason, message)
}

fn token_refusal(refusal: Refusal) -> Response {
    match refusal {
        Refusal::Invalid => self::refusal(
            StatusCode::UNAUTHORIZED,
            "invalid_token",
            "this access token is not valid",
        ),
        Refusal::Expired => self::refusal(
            StatusCode::UNAUTHORIZED,
            "token_expired",
            "this access token has expired",
        ),
        Refusal::Revoked => self::refusal(
            StatusCode::UNAUTHORIZED,
            "token_revoked",
            "this access token was revoked",
        ),
        Refusal::Forbidden => self::refusal(
            StatusCode::FORBIDDEN,
            "forbidden_by_token",
            "this access token does not allow this request",
        ),
        Refusal::Busy => {
            let mut response = self::refusal(
                StatusCode::SERVICE_UNAVAILABLE,
                "busy",
                "the token's checks could not run in time; try again",
            );
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            response
        }
    }
}

fn outcome_of(refusal: Refusal) -> &'static str {
    match refusal {
        Refusal::Invalid => "invalid_token",
        Refusal::Expired => "token_expired",
        Refusal::Revoked => "token_revoked",
        Refusal::Forbidden => "forbidden_by_token",
        Refusal::Busy => "busy",
    }
}

/// Where the credential came from (so it can be stripped, and so cookie upgrades are
/// origin-checked).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    Header,
    Cookie,
    Query,
}

fn find_token<'r>(
    req: &'r Request,
    cookie_name: &str,
    websocket: bool,
) -> Option<(std::borrow::Cow<'r, str>, Source)> {
    if let Some(value) = req
        .headers()
        .get(TOKEN_HEADER)
        .and_then(|v| v.to_str().ok())
    {
        return Some((value.trim().into(), Source::Header));
    }
    if let Some(value) = req
        .headers()
        .get(header::COOKIE)
        .and_then(|v| v.to_str().ok())
        .and_then(|c| cookie(c, cookie_name))
    {
        return Some((value.into(), Source::Cookie));
    }
    if websocket
        && let Some(token) = url::form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes())
            .find(|(k, _)| k == "token")
            .map(|(_, v)| v)
    {
        return Some((token, Source::Query));
    }
    None
}

/// Refuses `..` segments, encoded slashes and encoded dots anywhere in the path.
fn sane_path(raw: &str) -> bool {
    if raw.contains('\\') || raw.contains(';') {
        // Backslashes and `;` path parameters (`/a/..;/b`) mean other paths to some servers.
        return false;
    }
    // A percent-escape of a character that needs none (a letter, a digit, `-._~`, or `/`
    // and `\`) only serves to make a path look like another to the token's checks.
    let bytes = raw.as_bytes();
    for (i, b) in bytes.iter().enumerate() {
        if *b == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok());
            let Some(value) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) else {
                return false;
            };
            if value.is_ascii_alphanumeric() || b"-._~/\\".contains(&value) {
                return false;
            }
        }
    }
    !raw.split('/')
        .any(|segment| segment == ".." || segment == ".")
}

/// The path the upstream sees.
fn upstream_path(req: &Request, host_mode: bool) -> String {
    let path = req.uri().path();
    if host_mode {
        return path.to_owned();
    }
    let rest = path.strip_prefix(PREFIX).unwrap_or(path);
    if rest.is_empty() {
        "/".to_owned()
    } else {
        rest.to_owned()
    }
}

/// The query string minus our `token` parameter.
fn upstream_query(req: &Request) -> Option<String> {
    let query = req.uri().query()?;
    let kept: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes())
        .filter(|(k, _)| k != "token")
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    if kept.len() == url::form_urlencoded::parse(query.as_bytes()).count() {
        return Some(query.to_owned());
    }
    if kept.is_empty() {
        return None;
    }
    Some(
        url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(kept)
            .finish(),
    )
}

fn is_host_mode(state: &AppState, req: &Request) -> bool {
    state
        .config
        .access
        .access_proxy_host
        .as_deref()
        .is_some_and(|host| request_host(req).eq_ignore_ascii_case(host))
}

fn request_host(req: &Request) -> &str {
    // HTTP/2 carries the host in the URI's authority instead of a Host header.
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| req.uri().authority().map(|a| a.as_str()))
        .unwrap_or("");
    host.rsplit_once(':')
        .filter(|(_, port)| port.chars().all(|c| c.is_ascii_digit()))
        .map_or(host, |(h, _)| h)
}

/// A request that passed every check.
struct Admitted {
    verified: Verified,
}

async fn admit(
    state: &AppState,
    req: &Request,
    websocket: bool,
    path: &str,
) -> Result<Admitted, Box<Response>> {
    let protocol = if websocket { "websocket" } else { "http" };
    let refuse = |outcome: &'static str, response: Response| {
        state.metrics.record_proxy(protocol, outcome);
        Err(Box::new(response))
    };
    if state.access.client.is_none() {
        return refuse(
            "proxy_not_configured",
            refusal(
                StatusCode::SERVICE_UNAVAILABLE,
                "proxy_not_configured",
                "the access proxy has no upstream configured",
            ),
        );
    }
    if !sane_path(req.uri().path()) {
        return refuse(
            "bad_path",
            refusal(
                StatusCode::BAD_REQUEST,
                "bad_path",
                "this path is not allowed",
            ),
        );
    }
    let cookie_name = &state.config.access.access_proxy_cookie;
    let Some((token, source)) = find_token(req, cookie_name, websocket) else {
        return refuse(
            "missing_token",
            refusal(
                StatusCode::UNAUTHORIZED,
                "missing_token",
                "send an access token in X-Access-Token (or the cookie, or ?token= for WebSockets)",
            ),
        );
    };
    let verified = match state.access.keys.verify(&token) {
        Ok(v) => v,
        Err(r) => return refuse(outcome_of(r), token_refusal(r)),
    };
    if verified.expires_at <= SystemTime::now() {
        return refuse("token_expired", token_refusal(Refusal::Expired));
    }
    if let Err(r) = service::check_active(state, verified.token_id).await {
        return refuse(outcome_of(r), token_refusal(r));
    }
    // The host the token is used at comes from our configuration, not the client.
    let public = &state.access.public_url;
    let host = match &state.config.access.access_proxy_host {
        Some(host) if is_host_mode(state, req) => host.as_str(),
        _ => public.host_str().unwrap_or(""),
    };
    let facts = RequestFacts {
        method: req.method().as_str(),
        path,
        protocol,
        host,
    };
    if let Err(r) = state.access.keys.authorize(&verified, &facts) {
        return refuse(outcome_of(r), token_refusal(r));
    }
    let limit = RateLimit::new(
        state.config.access.access_proxy_rate_limit,
        Duration::from_secs(1),
    );
    match state
        .kv
        .rate_limit(&rate_limit_key(verified.token_id), limit)
        .await
    {
        Ok(decision) if !decision.allowed => {
            let mut response = refusal(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                "too many requests with this token; slow down",
            );
            let secs = decision.retry_after.as_secs_f64().ceil().max(1.0) as u64;
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
            return refuse("rate_limited", response);
        }
        Ok(_) => {}
        // The limiter is a guard, not the gate: an outage of kv does not stop the proxy.
        Err(e) => tracing::debug!(error = %e, "proxy rate limit unavailable"),
    }
    if websocket && source == Source::Cookie {
        let origin = req
            .headers()
            .get(header::ORIGIN)
            .and_then(|v| v.to_str().ok());
        let allowed = origin.is_some_and(|o| state.allowed_origins.iter().any(|a| a == o));
        if !allowed {
            return refuse(
                "origin_not_allowed",
                refusal(
                    StatusCode::FORBIDDEN,
                    "origin_not_allowed",
                    "a cookie-authenticated WebSocket needs an allowed Origin",
                ),
            );
        }
    }
    state.access.touch(verified.token_id);
    Ok(Admitted { verified })
}

/// `access:rl:<token id>`, without the formatter.
fn rate_limit_key(token_id: Uuid) -> String {
    let mut buf = Uuid::encode_buffer();
    let id = token_id.hyphenated().encode_lower(&mut buf);
    let mut key = String::with_capacity(10 + id.len());
    key.push_str("access:rl:");
    key.push_str(id);
    key
}

/// `X-Tessera-Assertion`: who is asking, signed for the upstream (valid 60 s).
pub fn assertion(
    keyed: &Hmac<Sha256>,
    user: Uuid,
    token: Uuid,
    exp: u64,
    method: &str,
    path: &str,
) -> String {
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let (mut user_buf, mut token_buf) = (Uuid::encode_buffer(), Uuid::encode_buffer());
    let user = user.hyphenated().encode_lower(&mut user_buf);
    let token = token.hyphenated().encode_lower(&mut token_buf);
    let mut mac = keyed.clone();
    let (mut t_buf, mut exp_buf) = (itoa::Buffer::new(), itoa::Buffer::new());
    let (t, exp) = (t_buf.format(t), exp_buf.format(exp));
    // What is signed, `t.uid.tid.exp.METHOD.path`; the header repeats its first four parts.
    // Built with `push_str`: the formatter's machinery cost more than the HMAC's setup.
    let mut out = String::with_capacity(200);
    for part in [t, user, token, exp, method] {
        out.push_str(part);
        out.push('.');
    }
    mac.update(out.as_bytes());
    mac.update(path.as_bytes());
    out.clear();
    for (name, value) in [("t=", t), (",uid=", user), (",tid=", token), (",exp=", exp)] {
        out.push_str(name);
        out.push_str(value);
    }
    out.push_str(",v1=");
    let mut hex = [0u8; 64];
    hex::encode_to_slice(mac.finalize().into_bytes(), &mut hex)
        .expect("64 hex digits for 32 bytes");
    out.push_str(std::str::from_utf8(&hex).expect("hex is ASCII"));
    out
}

/// Headers that never cross a proxy (RFC 9110 §7.6.1).
static HOP_BY_HOP: [HeaderName; 9] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
];

/// The headers `Connection` names: hop-by-hop too, for this message only. Empty (and not
/// allocated) when there is no `Connection` header, the usual case.
fn connection_named(headers: &HeaderMap) -> Vec<HeaderName> {
    let mut names = Vec::new();
    for value in headers.get_all(header::CONNECTION) {
        if let Ok(value) = value.to_str() {
            for name in value.split(',') {
                if let Ok(name) = HeaderName::from_bytes(name.trim().as_bytes()) {
                    names.push(name);
                }
            }
        }
    }
    names
}

fn is_hop_by_hop(name: &HeaderName, named: &[HeaderName]) -> bool {
    HOP_BY_HOP.contains(name) || named.contains(name)
}

fn strip_cookie(value: &str, name: &str) -> Option<String> {
    let kept: Vec<&str> = value
        .split(';')
        .map(str::trim)
        .filter(|pair| !pair.is_empty() && pair.split('=').next() != Some(name))
        .collect();
    (!kept.is_empty()).then(|| kept.join("; "))
}

/// The headers the upstream gets: the client's, minus hop-by-hop and our credentials,
/// plus `X-Forwarded-*` and the assertion.
fn forward_headers(
    state: &AppState,
    req: &Request,
    admitted: &Admitted,
    path: &str,
    host_mode: bool,
) -> HeaderMap {
    let incoming = req.headers();
    let named = connection_named(incoming);
    let mut out = HeaderMap::with_capacity(incoming.len() + 5);
    for (name, value) in incoming {
        if is_hop_by_hop(name, &named)
            || name == header::HOST
            || name == header::CONTENT_LENGTH && req.method() == Method::GET
            || name == TOKEN_HEADER
            || name == ASSERTION_HEADER
            || name.as_str().starts_with("x-forwarded-")
            || name.as_str().starts_with("sec-websocket-")
            || (name == header::ACCEPT_ENCODING
                && !host_mode
                && state.config.access.access_proxy_rewrite_bodies)
        {
            continue;
        }
        if name == header::COOKIE {
            let kept = value.to_str().ok().and_then(|v| {
                strip_cookie(v, &state.config.access.access_proxy_cookie)
                    .and_then(|v| strip_cookie(&v, ACCESS_COOKIE))
                    .and_then(|v| strip_cookie(&v, REFRESH_COOKIE))
            });
            if let Some(kept) = kept
                && let Ok(value) = HeaderValue::from_str(&kept)
            {
                out.append(header::COOKIE, value);
            }
            continue;
        }
        // Our own session credentials never leave for the upstream.
        if name == header::AUTHORIZATION
            && value
                .to_str()
                .ok()
                .and_then(crate::identity::auth::bearer_token)
                .is_some_and(|t| t.starts_with("tsr_"))
        {
            continue;
        }
        out.append(name.clone(), value.clone());
    }
    let meta = req.extensions().get::<RequestMeta>();
    let peer: Option<IpAddr> = meta.and_then(|m| m.peer).map(|p| p.ip());
    let trusted =
        peer.is_some_and(|ip| state.config.trusted_proxies.iter().any(|n| n.contains(&ip)));
    let forwarded_for = match (
        trusted,
        incoming.get(FORWARDED_FOR).and_then(|v| v.to_str().ok()),
        peer,
    ) {
        (true, Some(chain), Some(peer)) => {
            let mut list = String::with_capacity(chain.len() + 2 + 15);
            list.push_str(chain);
            list.push_str(", ");
            push_ip(&mut list, peer);
            list
        }
        (_, _, Some(peer)) => {
            let mut one = String::with_capacity(15);
            push_ip(&mut one, peer);
            one
        }
        _ => String::new(),
    };
    out.insert(
        HeaderName::from_static("x-forwarded-proto"),
        state.access.forwarded_proto.clone(),
    );
    if let Ok(value) = HeaderValue::try_from(forwarded_for)
        && !value.is_empty()
    {
        out.insert(FORWARDED_FOR, value);
    }
    let mut set = |name: HeaderName, value: &str| {
        if let Ok(value) = HeaderValue::from_str(value) {
            out.insert(name, value);
        }
    };
    if let Some(host) = incoming.get(header::HOST).and_then(|v| v.to_str().ok()) {
        set(HeaderName::from_static("x-forwarded-host"), host);
    }
    if !host_mode {
        set(HeaderName::from_static("x-forwarded-prefix"), PREFIX);
    }
    let v = &admitted.verified;
    let exp = v
        .expires_at
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let signed = assertion(
        &state.access.keys.assertion_mac,
        v.user_id,
        v.token_id,
        exp,
        req.method().as_str(),
        path,
    );
    // ASCII by construction; the value takes the string's buffer rather than a copy.
    if let Ok(value) = HeaderValue::try_from(signed) {
        out.insert(ASSERTION_HEADER, value);
    }
    out
}

/// Appends `ip` in its usual text form; IPv4 by hand, since `Display` goes through the
/// formatter four times and showed on the proxy's hot path.
fn push_ip(out: &mut String, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => {
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push('.');
                }
                if octet >= 100 {
                    out.push(char::from(b'0' + octet / 100));
                }
                if octet >= 10 {
                    out.push(char::from(b'0' + octet / 10 % 10));
                }
                out.push(char::from(b'0' + octet % 10));
            }
        }
        IpAddr::V6(_) => {
            use std::fmt::Write as _;
            let _ = write!(out, "{ip}");
        }
    }
}

/// Removes the hop-by-hop headers of an upstream's answer. Found in one pass over the
/// names: removing each of the nine by name would hash them all, though an answer seldom
/// carries any.
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named = connection_named(headers);
    let hop_by_hop: Vec<HeaderName> = headers
        .keys()
        .filter(|name| is_hop_by_hop(name, &named))
        .cloned()
        .collect();
    for name in hop_by_hop {
        headers.remove(name);
    }
}

/// Hop-by-hop headers go (see [`strip_hop_by_hop`]); in path mode, the upstream's
/// `Location` and cookie paths move under `/proxy`.
fn rewrite_response_headers(state: &AppState, headers: &mut HeaderMap, host_mode: bool) {
    strip_hop_by_hop(headers);
    if host_mode {
        return;
    }
    let upstream = &state.access.upstream_origin;
    if let Some(location) = headers
        .get(header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
    {
        let rewritten = if let Some(rest) = location.strip_prefix(upstream.as_str()) {
            Some(format!(
                "{PREFIX}{}",
                if rest.is_empty() { "/" } else { rest }
            ))
        } else if location.starts_with('/') && !location.starts_with("//") {
            Some(format!("{PREFIX}{location}"))
        } else {
            None
        };
        if let Some(value) = rewritten.and_then(|r| HeaderValue::from_str(&r).ok()) {
            headers.insert(header::LOCATION, value);
        }
    }
    let cookies: Vec<String> = headers
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok().map(str::to_owned))
        .collect();
    if !cookies.is_empty() {
        headers.remove(header::SET_COOKIE);
        for cookie in cookies {
            let rewritten = cookie
                .split(';')
                .map(|part| {
                    let trimmed = part.trim();
                    match trimmed.get(..5) {
                        Some(attr) if attr.eq_ignore_ascii_case("path=") => {
                            format!(" Path={PREFIX}{}", &trimmed[5..])
                        }
                        _ => part.to_owned(),
                    }
                })
                .collect::<Vec<_>>()
                .join(";");
            if let Ok(value) = HeaderValue::from_str(&rewritten) {
                headers.append(header::SET_COOKIE, value);
            }
        }
    }
}

/// The upstream's `ws://` or `wss://` URL for `path` and `query`.
fn upstream_ws_url(state: &AppState, path: &str, query: Option<&str>) -> String {
    let base = state
        .config
        .access
        .access_proxy_upstream
        .as_ref()
        .map(|u| u.as_str().trim_end_matches('/').to_owned())
        .unwrap_or_default()
        .replacen("https://", "wss://", 1)
        .replacen("http://", "ws://", 1);
    match query {
        Some(q) => format!("{base}{path}?{q}"),
        None => format!("{base}{path}"),
    }
}

/// Sends every request for ACCESS_PROXY_HOST to the host-mode proxy, `/proxy` and
/// `/proxy/…` to the path-mode proxy, and the rest to the site. The proxy's paths are told
/// apart here, before the site's router and its per-request data, because a proxied request
/// needs neither and the proxy's hot path pays for every layer it crosses.
pub struct ProxySwitch<H, P, Q, R> {
    pub host: Option<String>,
    pub host_proxy: H,
    /// `/proxy` itself.
    pub path_root: P,
    /// `/proxy/{*path}`.
    pub path_proxy: Q,
    pub rest: R,
}

impl<H: Endpoint, P: Endpoint, Q: Endpoint, R: Endpoint> Endpoint for ProxySwitch<H, P, Q, R> {
    type Output = Response;

    async fn call(&self, req: Request) -> poem::Result<Response> {
        // Each branch's future is large (every layer holds the request and its inner
        // future by value) and is boxed here, so the server's own box around this call
        // stays small: a request moves only the future of the branch it takes.
        if let Some(host) = &self.host
            && request_host(&req).eq_ignore_ascii_case(host)
        {
            return Box::pin(self.host_proxy.call(req))
                .await
                .map(IntoResponse::into_response);
        }
        let path = req.uri().path();
        // The site's router turns framework errors (a refused CORS origin) into JSON; these
        // two routes skip it, so they do it here.
        let answered = if path == PREFIX {
            Box::pin(self.path_root.call(req))
                .await
                .map(IntoResponse::into_response)
        } else if path.as_bytes().get(PREFIX.len()) == Some(&b'/') && path.starts_with(PREFIX) {
            Box::pin(self.path_proxy.call(req))
                .await
                .map(IntoResponse::into_response)
        } else {
            return Box::pin(self.rest.call(req))
                .await
                .map(IntoResponse::into_response);
        };
        Ok(answered.unwrap_or_else(crate::platform::http::json_refusal))
    }
}

/// Replaces every occurrence of `from` with `to` in a body that arrives in chunks; a match
/// split across chunks is found because the last `from.len() - 1` bytes wait for the next.
pub struct Rewriter {
    from: Vec<u8>,
    to: Vec<u8>,
    carry: Vec<u8>,
}

impl Rewriter {
    pub fn new(from: &str, to: &str) -> Self {
        Self {
            from: from.as_bytes().to_vec(),
            to: to.as_bytes().to_vec(),
            carry: Vec::new(),
        }
    }

    /// The rewritten bytes that are final after `chunk`.
    pub fn feed(&mut self, chunk: &[u8]) -> Vec<u8> {
        let mut buf = std::mem::take(&mut self.carry);
        buf.extend_from_slice(chunk);
        let mut out = Vec::with_capacity(buf.len());
        let mut i = 0;
        while let Some(pos) = buf[i..]
            .windows(self.from.len())
            .position(|w| w == self.from.as_slice())
        {
            out.extend_from_slice(&buf[i..i + pos]);
            out.extend_from_slice(&self.to);
            i += pos + self.from.len();
        }
        let keep = buf.len().saturating_sub(self.from.len() - 1).max(i);
        out.extend_from_slice(&buf[i..keep]);
        self.carry = buf[keep..].to_vec();
        out
    }

    /// What is left at the end of the body.
    pub fn finish(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.carry)
    }
}

fn rewritable(headers: &HeaderMap) -> bool {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let textual = ["text/html", "text/css", "javascript", "application/json"]
        .iter()
        .any(|t| content_type.contains(t));
    textual && !headers.contains_key(header::CONTENT_ENCODING)
}

/// The proxy endpoint: every method, HTTP and WebSocket.
pub struct ProxyEndpoint {
    pub state: AppState,
}

impl Endpoint for ProxyEndpoint {
    type Output = Response;

    async fn call(&self, mut req: Request) -> poem::Result<Response> {
        let state = &self.state;
        let host_mode = is_host_mode(state, &req);
        let websocket = req
            .headers()
            .get(header::UPGRADE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
        let path = upstream_path(&req, host_mode);
        let admitted = match admit(state, &req, websocket, &path).await {
            Ok(a) => a,
            Err(response) => return Ok(*response),
        };
        if websocket {
            let mut body = poem::RequestBody::new(req.take_body());
            // Boxed: the WebSocket path's future is the larger, and plain requests would
            // otherwise carry its size too.
            return Ok(Box::pin(proxy_websocket(
                state, &req, &mut body, admitted, &path, host_mode,
            ))
            .await);
        }
        let body = req.take_body();
        Ok(proxy_http(state, &req, body, admitted, &path, host_mode).await)
    }
}

async fn proxy_http(
    state: &AppState,
    req: &Request,
    body: Body,
    admitted: Admitted,
    path: &str,
    host_mode: bool,
) -> Response {
    let config = &state.config.access;
    let max = config.access_proxy_max_body_bytes;
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > max) {
        state.metrics.record_proxy("http", "payload_too_large");
        return refusal(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            &format!("the request body exceeds {max} bytes"),
        );
    }
    let client = state
        .access
        .client
        .as_ref()
        .expect("admitted only when configured");
    let Some(uri) = client.target(path, upstream_query(req).as_deref()) else {
        state.metrics.record_proxy("http", "bad_path");
        return refusal(
            StatusCode::BAD_REQUEST,
            "bad_path",
            "the path cannot be forwarded",
        );
    };
    let has_body =
        declared.is_some_and(|n| n > 0) || req.headers().contains_key(header::TRANSFER_ENCODING);
    let over_limit = Arc::new(AtomicBool::new(false));
    let request_body = if has_body {
        let mut seen = 0u64;
        let flag = Arc::clone(&over_limit);
        upstream::streamed(body.into_bytes_stream().map(move |chunk| {
            let chunk = chunk?;
            seen += chunk.len() as u64;
            if seen > max {
                flag.store(true, Ordering::Relaxed);
                return Err(std::io::Error::other("request body over the limit"));
            }
            Ok::<Bytes, std::io::Error>(chunk)
        }))
    } else {
        upstream::empty()
    };
    let mut request = hyper::Request::new(request_body);
    *request.method_mut() = req.method().clone();
    *request.uri_mut() = uri;
    *request.headers_mut() = forward_headers(state, req, &admitted, path, host_mode);
    let sent = client
        .send(request, config.access_proxy_response_timeout.0, &over_limit)
        .await;
    let response = match sent {
        Ok(response) => response,
        Err(e) => {
            let (status, reason, message) = match &e {
                SendError::Timeout => (
                    StatusCode::GATEWAY_TIMEOUT,
                    "upstream_timeout",
                    "the upstream did not answer in time",
                ),
                SendError::BodyTooLarge => (
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "payload_too_large",
                    "the request body was refused",
                ),
                SendError::Failed(_) => (
                    StatusCode::BAD_GATEWAY,
                    "upstream_unreachable",
                    "the upstream cannot be reached",
                ),
            };
            if let SendError::Failed(why) = &e {
                tracing::warn!(error = %why, "proxied request failed");
            }
            state.metrics.record_proxy("http", reason);
            return refusal(status, reason, message);
        }
    };
    state.metrics.record_proxy("http", "proxied");
    let (head, upstream_body) = response.into_parts();
    let status = head.status;
    let mut headers = head.headers;
    rewrite_response_headers(state, &mut headers, host_mode);
    let idle = config.access_proxy_idle_timeout.0;
    let rewriter =
        (config.access_proxy_rewrite_bodies && !host_mode && rewritable(&headers)).then(|| {
            headers.remove(header::CONTENT_LENGTH);
            let from = &state.access.upstream_origin;
            let to = format!(
                "{}{PREFIX}",
                state.access.public_url.as_str().trim_end_matches('/')
            );
            Rewriter::new(from, &to)
        });
    let upstream_body = upstream_body.with_idle_timeout(idle);
    let body = match rewriter {
        None => Body::from(BoxBody::new(upstream_body)),
        Some(rewriter) => {
            let chunks = http_body_util::BodyDataStream::new(upstream_body);
            let rewritten = futures_util::stream::unfold(
                (chunks, Some(rewriter)),
                |(mut chunks, rewriter)| async move {
                    let mut rewriter = rewriter?;
                    match chunks.next().await {
                        Some(Ok(bytes)) => {
                            let out = Bytes::from(rewriter.feed(&bytes));
                            Some((Ok(out), (chunks, Some(rewriter))))
                        }
                        Some(Err(e)) => Some((Err(e), (chunks, None))),
                        None => {
                            let rest = Bytes::from(rewriter.finish());
                            Some((Ok(rest), (chunks, None)))
                        }
                    }
                },
            );
            Body::from_bytes_stream(rewritten)
        }
    };
    let mut out = Response::builder().status(status).body(body);
    *out.headers_mut() = headers;
    out
}

async fn proxy_websocket(
    state: &AppState,
    req: &Request,
    body: &mut poem::RequestBody,
    admitted: Admitted,
    path: &str,
    host_mode: bool,
) -> Response {
    let config = &state.config.access;
    let token_id = admitted.verified.token_id;
    let max = config.access_proxy_max_websockets as usize;
    let Some((socket_id, cancel)) = state.access.open_socket(token_id, max) else {
        state
            .metrics
            .record_proxy("websocket", "too_many_websockets");
        return refusal(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_websockets",
            &format!("a token may hold at most {max} open WebSockets"),
        );
    };
    let release = Release {
        state: state.clone(),
        token_id,
        socket_id,
    };
    let url = upstream_ws_url(state, path, upstream_query(req).as_deref());
    let mut upstream_request = match url.as_str().into_client_request() {
        Ok(r) => r,
        Err(_) => {
            return refusal(
                StatusCode::BAD_GATEWAY,
                "upstream_unreachable",
                "bad upstream URL",
            );
        }
    };
    // An owned HeaderMap names each header once: `None` means "the same as the last".
    let mut last: Option<HeaderName> = None;
    for (name, value) in forward_headers(state, req, &admitted, path, host_mode) {
        if name.is_some() {
            last = name;
        }
        if let Some(name) = &last {
            upstream_request.headers_mut().append(name.clone(), value);
        }
    }
    if let Some(protocols) = req.headers().get("sec-websocket-protocol") {
        upstream_request
            .headers_mut()
            .insert("sec-websocket-protocol", protocols.clone());
    }
    let (upstream, response) = match connect_upstream_ws(state, upstream_request).await {
        Err(SendError::Timeout) => {
            state.metrics.record_proxy("websocket", "upstream_timeout");
            return refusal(
                StatusCode::GATEWAY_TIMEOUT,
                "upstream_timeout",
                "the upstream did not answer in time",
            );
        }
        Err(e) => {
            tracing::warn!(error = ?e, "proxied WebSocket could not connect");
            state
                .metrics
                .record_proxy("websocket", "upstream_unreachable");
            return refusal(
                StatusCode::BAD_GATEWAY,
                "upstream_unreachable",
                "the upstream WebSocket cannot be reached",
            );
        }
        Ok(pair) => pair,
    };
    let protocol = response
        .headers()
        .get("sec-websocket-protocol")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let ws = match WebSocket::from_request(req, body).await {
        Ok(ws) => ws,
        Err(e) => return e.into_response(),
    };
    let ws = match protocol {
        Some(p) => ws.protocols([p]),
        None => ws,
    };
    state.metrics.record_proxy("websocket", "proxied");
    let expires_in = admitted
        .verified
        .expires_at
        .duration_since(SystemTime::now())
        .unwrap_or_default();
    let idle = config.access_proxy_ws_idle_timeout.0;
    // Shutdown closes the socket with a close frame, and waits for that through the tracker.
    let shutdown = state.shutdown.clone();
    let tracked = state.ws_tracker.token();
    ws.on_upgrade(move |client| async move {
        let _release = release;
        let _tracked = tracked;
        pump(client, upstream, cancel, shutdown, expires_in, idle).await;
    })
    .into_response()
}

type UpstreamSocket = tokio_tungstenite::WebSocketStream<Box<dyn UpstreamIo>>;

/// Opens the upstream WebSocket: a connection from the upstream client (TCP within the
/// connect timeout, then TLS for `wss://`), and the upgrade within the response timeout.
async fn connect_upstream_ws(
    state: &AppState,
    request: tungstenite::handshake::client::Request,
) -> Result<(UpstreamSocket, tungstenite::handshake::client::Response), SendError> {
    let config = &state.config.access;
    let client = state
        .access
        .client
        .as_ref()
        .ok_or_else(|| SendError::Failed("no upstream".into()))?;
    let handshake = async {
        let io = client.connect_io().await?;
        tokio_tungstenite::client_async(request, io)
            .await
            .map_err(|e| SendError::Failed(e.to_string()))
    };
    tokio::time::timeout(config.access_proxy_response_timeout.0, handshake)
        .await
        .map_err(|_| SendError::Timeout)?
}

/// Unregisters a proxied socket however its task ends.
struct Release {
    state: AppState,
    token_id: Uuid,
    socket_id: u64,
}

impl Drop for Release {
    fn drop(&mut self) {
        self.state.access.closed(self.token_id, self.socket_id);
    }
}

fn to_upstream(message: PoemMessage) -> UpMessage {
    match message {
        PoemMessage::Text(t) => UpMessage::text(t),
        PoemMessage::Binary(b) => UpMessage::binary(b),
        PoemMessage::Ping(p) => UpMessage::Ping(p.into()),
        PoemMessage::Pong(p) => UpMessage::Pong(p.into()),
        PoemMessage::Close(frame) => UpMessage::Close(frame.map(|(code, reason)| CloseFrame {
            code: u16::from(code).into(),
            reason: reason.into(),
        })),
    }
}

fn to_client(message: UpMessage) -> Option<PoemMessage> {
    Some(match message {
        UpMessage::Text(t) => PoemMessage::Text(t.to_string()),
        UpMessage::Binary(b) => PoemMessage::Binary(b.to_vec()),
        UpMessage::Ping(p) => PoemMessage::Ping(p.to_vec()),
        UpMessage::Pong(p) => PoemMessage::Pong(p.to_vec()),
        UpMessage::Close(frame) => PoemMessage::Close(
            frame.map(|f| (CloseCode::from(u16::from(f.code)), f.reason.to_string())),
        ),
        UpMessage::Frame(_) => return None,
    })
}

/// Copies messages both ways until either side closes, the token is revoked (1008
/// `token_revoked`), it expires (1008 `token_expired`), the line is idle too long (1001
/// `idle`) or the server shuts down (1001 `server shutting down`).
async fn pump(
    client: poem::web::websocket::WebSocketStream,
    upstream: UpstreamSocket,
    cancel: tokio_util::sync::CancellationToken,
    shutdown: tokio_util::sync::CancellationToken,
    expires_in: Duration,
    idle: Duration,
) {
    let (mut client_tx, mut client_rx) = client.split();
    let (mut up_tx, mut up_rx) = upstream.split();
    let expiry = tokio::time::sleep(expires_in);
    tokio::pin!(expiry);
    let mut ours: Option<CloseReason> = None;
    loop {
        let idle_timer = tokio::time::sleep(idle);
        tokio::select! {
            _ = cancel.cancelled() => { ours = Some(CloseReason::Revoked); break; }
            _ = &mut expiry => { ours = Some(CloseReason::Expired); break; }
            _ = idle_timer => {
                let _ = client_tx.send(PoemMessage::Close(Some((CloseCode::Away, "idle".into())))).await;
                let _ = up_tx.send(UpMessage::Close(None)).await;
                return;
            }
            _ = shutdown.cancelled() => {
                let _ = client_tx.send(PoemMessage::Close(Some((CloseCode::Away, "server shutting down".into())))).await;
                let _ = up_tx.send(UpMessage::Close(None)).await;
                return;
            }
            message = client_rx.next() => match message {
                Some(Ok(message)) => {
                    let closing = matches!(message, PoemMessage::Close(_));
                    if up_tx.send(to_upstream(message)).await.is_err() || closing {
                        break;
                    }
                }
                _ => break,
            },
            message = up_rx.next() => match message {
                Some(Ok(message)) => {
                    let closing = matches!(message, UpMessage::Close(_));
                    if let Some(message) = to_client(message)
                        && (client_tx.send(message).await.is_err() || closing)
                    {
                        break;
                    }
                }
                Some(Err(tungstenite::Error::ConnectionClosed)) | None => {
                    let _ = client_tx.send(PoemMessage::Close(None)).await;
                    break;
                }
                Some(Err(_)) => {
                    let _ = client_tx
                        .send(PoemMessage::Close(Some((CloseCode::Error, "upstream failed".into()))))
                        .await;
                    break;
                }
            },
        }
    }
    if let Some(reason) = ours {
        let text = match reason {
            CloseReason::Revoked => "token_revoked",
            CloseReason::Expired => "token_expired",
        };
        let _ = client_tx
            .send(PoemMessage::Close(Some((CloseCode::Policy, text.into()))))
            .await;
        let _ = up_tx.send(UpMessage::Close(None)).await;
    }
}

/// `POST /access/authenticate {"token"}`: checks the token and sets the proxy cookie.
#[poem::handler]
pub async fn access_authenticate(
    req: &Request,
    poem::web::Data(state): poem::web::Data<&AppState>,
    body: Body,
) -> Response {
    // A cross-site form could otherwise plant someone else's token in this browser.
    let json = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !json {
        return refusal(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send application/json",
        );
    }
    if let Some(origin) = req
        .headers()
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        && !state.allowed_origins.iter().any(|a| a == origin)
    {
        return refusal(
            StatusCode::FORBIDDEN,
            "origin_not_allowed",
            "this origin may not set the access cookie",
        );
    }
    #[derive(serde::Deserialize)]
    struct Input {
        token: String,
    }
    let Ok(bytes) = body.into_bytes_limit(64 * 1024).await else {
        return refusal(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "send {\"token\": \"…\"}",
        );
    };
    let Ok(input) = serde_json::from_slice::<Input>(&bytes) else {
        return refusal(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "send {\"token\": \"…\"}",
        );
    };
    let verified = match check(state, &input.token).await {
        Ok(v) => v,
        Err(r) => return token_refusal(r),
    };
    let max_age = verified
        .expires_at
        .duration_since(SystemTime::now())
        .unwrap_or_default()
        .as_secs() as i64;
    let token = input.token.trim();
    let cookie = crate::identity::auth::cookie_header(
        state,
        &state.config.access.access_proxy_cookie,
        token,
        "/",
        max_age,
    );
    let mut response = status_body(&verified).into_response();
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
}

/// Signature, expiry and revocation, without a request to authorize.
async fn check(state: &AppState, token: &str) -> Result<Verified, Refusal> {
    let verified = state.access.keys.verify(token)?;
    if verified.expires_at <= SystemTime::now() {
        return Err(Refusal::Expired);
    }
    service::check_active(state, verified.token_id).await?;
    Ok(verified)
}

fn status_body(verified: &Verified) -> poem::web::Json<serde_json::Value> {
    let expires: chrono::DateTime<chrono::Utc> = verified.expires_at.into();
    poem::web::Json(json!({
        "active": true,
        "tokenId": verified.token_id,
        "expiresAt": expires.to_rfc3339(),
    }))
}

/// `GET /access/status`: whether the cookie (or `X-Access-Token`) holds a usable token.
#[poem::handler]
pub async fn access_status(
    req: &Request,
    poem::web::Data(state): poem::web::Data<&AppState>,
) -> Response {
    let Some((token, _)) = find_token(req, &state.config.access.access_proxy_cookie, false) else {
        return refusal(StatusCode::UNAUTHORIZED, "missing_token", "no access token");
    };
    match check(state, &token).await {
        Ok(v) => status_body(&v).into_response(),
        Err(r) => token_refusal(r),
    }
}

/// `DELETE /access/logout`: clears the proxy cookie.
#[poem::handler]
pub async fn access_logout(poem::web::Data(state): poem::web::Data<&AppState>) -> Response {
    let cookie = crate::identity::auth::cookie_header(
        state,
        &state.config.access.access_proxy_cookie,
        "",
        "/",
        0,
    );
    Response::builder()
        .status(StatusCode::NO_CONTENT)
        .header(header::SET_COOKIE, cookie)
        .finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rewriting_finds_matches_split_across_chunks() {
        let body = "<a href=\"http://up:81/x\">http://up:81</a> http://up:8";
        for split in 0..body.len() {
            let mut r = Rewriter::new("http://up:81", "https://site/proxy");
            let mut out = r.feed(&body.as_bytes()[..split]);
            out.extend(r.feed(&body.as_bytes()[split..]));
            out.extend(r.finish());
            assert_eq!(
                String::from_utf8(out).unwrap(),
                "<a href=\"https://site/proxy/x\">https://site/proxy</a> http://up:8",
                "split at {split}"
            );
        }
    }

    #[test]
    fn traversal_is_refused() {
        for bad in [
            "/proxy/../etc",
            "/proxy/a/%2e%2e/b",
            "/proxy/a%2Fb",
            "/proxy/a\\b",
            "/proxy/./x",
        ] {
            assert!(!sane_path(bad), "{bad}");
        }
        for bad in ["/proxy/reports/..;/admin", "/proxy/%61dmin", "/proxy/a%2"] {
            assert!(!sane_path(bad), "{bad}");
        }
        for good in [
            "/proxy/",
            "/proxy/reports/q3",
            "/proxy/a..b/c",
            "/proxy/a%20b",
        ] {
            assert!(sane_path(good), "{good}");
        }
    }

    #[test]
    fn our_cookie_is_stripped_and_others_kept() {
        assert_eq!(
            strip_cookie("a=1; tessera_access=tok; b=2", "tessera_access").as_deref(),
            Some("a=1; b=2")
        );
        assert_eq!(strip_cookie("tessera_access=tok", "tessera_access"), None);
    }

    #[test]
    fn the_assertion_signs_its_parts_with_the_method_and_path() {
        let (user, token) = (Uuid::now_v7(), Uuid::now_v7());
        let key = Hmac::<Sha256>::new_from_slice(b"key").unwrap();
        let header = assertion(&key, user, token, 1_900_000_000, "GET", "/a/b?c=d");
        let parts: std::collections::HashMap<&str, &str> = header
            .split(',')
            .filter_map(|part| part.split_once('='))
            .collect();
        assert_eq!(parts.len(), 5, "{header}");
        let t = parts["t"];
        assert!(t.parse::<u64>().is_ok(), "{header}");
        assert_eq!(parts["uid"], user.to_string());
        assert_eq!(parts["tid"], token.to_string());
        assert_eq!(parts["exp"], "1900000000");
        let mut mac = Hmac::<Sha256>::new_from_slice(b"key").unwrap();
        mac.update(format!("{t}.{user}.{token}.1900000000.GET./a/b?c=d").as_bytes());
        assert_eq!(parts["v1"], hex::encode(mac.finalize().into_bytes()));
        // Another path, another signature.
        let other = assertion(&key, user, token, 1_900_000_000, "GET", "/a/c?c=d");
        assert_ne!(other.rsplit_once("v1=").unwrap().1, parts["v1"]);
    }

    #[test]
    fn addresses_are_written_as_display_writes_them() {
        for text in [
            "0.0.0.0",
            "9.10.99.100",
            "127.0.0.1",
            "255.255.255.255",
            "192.168.1.20",
            "::1",
            "2001:db8::8a2e:370:7334",
        ] {
            let ip: IpAddr = text.parse().unwrap();
            let mut out = String::from("x, ");
            push_ip(&mut out, ip);
            assert_eq!(out, format!("x, {ip}"));
        }
    }

    #[test]
    fn the_rate_limit_key_names_the_token() {
        let id = Uuid::now_v7();
        assert_eq!(rate_limit_key(id), format!("access:rl:{id}"));
    }

    #[test]
    fn an_answers_hop_by_hop_headers_are_removed() {
        let mut headers = HeaderMap::new();
        for (name, value) in [
            ("connection", "x-hop, close"),
            ("x-hop", "a"),
            ("keep-alive", "timeout=5"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "h2c"),
            ("content-type", "text/plain"),
            ("set-cookie", "a=1"),
            ("set-cookie", "b=2"),
        ] {
            headers.append(
                HeaderName::from_static(name),
                HeaderValue::from_static(value),
            );
        }
        strip_hop_by_hop(&mut headers);
        let mut left: Vec<&str> = headers.keys().map(HeaderName::as_str).collect();
        left.sort_unstable();
        assert_eq!(left, ["content-type", "set-cookie"]);
        assert_eq!(headers.get_all(header::SET_COOKIE).iter().count(), 2);
    }

    #[test]
    fn hop_by_hop_includes_what_connection_names() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONNECTION,
            HeaderValue::from_static("close, x-secret"),
        );
        let named = connection_named(&headers);
        assert!(is_hop_by_hop(&HeaderName::from_static("x-secret"), &named));
        assert!(is_hop_by_hop(&header::TRANSFER_ENCODING, &named));
        assert!(!is_hop_by_hop(&header::ACCEPT, &named));
        assert!(!is_hop_by_hop(&HeaderName::from_static("x-secret"), &[]));
    }
}
