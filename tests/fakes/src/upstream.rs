//! An HTTP and WebSocket upstream for the access proxy: it records the headers of every
//! request and serves what a real site behind the proxy would.
//!
//! - `GET /page`: 1 KiB of HTML.
//! - `GET /headers`: the request's headers as JSON.
//! - `POST /echo`: the request body back, streamed.
//! - `GET /stream?mib=N`: N MiB in 64 KiB chunks, produced as they are read.
//! - `GET /sse`: three server-sent events, 100 ms apart.
//! - `GET /redirect`, `GET /redirect-absolute`: 302 to `/page` (relative, then absolute).
//! - `GET /cookie`: sets `sid=1; Path=/app; HttpOnly`.
//! - `GET /links`: HTML linking to the upstream's own absolute URLs.
//! - `GET /slow`: answers after 3 s.
//! - `GET /stall`: sends the first line of a body, then nothing for 30 s.
//! - `GET /ws`: WebSocket echo (text and binary), answering `graphql-transport-ws` if offered.
//!
//! [`Upstream::start_tls`] serves the same over TLS (`https://`, `wss://`) with a given
//! certificate, as a site behind the proxy on another host would.

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use futures_util::{SinkExt, StreamExt};
use poem::{
    Body, Endpoint, EndpointExt, IntoResponse, Request, Response, Route, Server,
    http::{StatusCode, header},
    web::{
        Data, Json, Query,
        websocket::{Message, WebSocket},
    },
};
use serde::Deserialize;
use tokio::task::JoinHandle;

/// What the upstream saw of one request.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    /// Path and query.
    pub uri: String,
    pub headers: Vec<(String, String)>,
    /// The address the request came from: one per connection.
    pub remote: String,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

type Log = Arc<Mutex<Vec<Seen>>>;

/// A running upstream; stops when dropped.
pub struct Upstream {
    addr: SocketAddr,
    log: Log,
    task: JoinHandle<()>,
    /// The TLS front when started with [`Upstream::start_tls`]: its address and task.
    tls: Option<(SocketAddr, JoinHandle<()>)>,
}

fn record(log: &Log, req: &Request) {
    let seen = Seen {
        method: req.method().to_string(),
        uri: req.uri().to_string(),
        headers: req
            .headers()
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_str().unwrap_or("").to_owned()))
            .collect(),
        remote: req.remote_addr().to_string(),
    };
    log.lock().unwrap_or_else(|e| e.into_inner()).push(seen);
}

impl Upstream {
    pub async fn start(addr: &str) -> std::io::Result<Upstream> {
        let (acceptor, addr) = crate::bind_http(addr).await?;
        let log: Log = Arc::default();
        let recorder = Arc::clone(&log);
        let routes = Route::new()
            .at("/page", poem::get(page))
            .at("/headers", poem::get(headers))
            .at("/echo", poem::post(echo))
            .at("/stream", poem::get(stream))
            .at("/sse", poem::get(sse))
            .at("/redirect", poem::get(redirect))
            .at("/redirect-absolute", poem::get(redirect_absolute))
            .at("/cookie", poem::get(set_cookie))
            .at("/links", poem::get(links))
            .at("/slow", poem::get(slow))
            .at("/stall", poem::get(stall))
            .at("/ws", poem::get(ws))
            .data(format!("http://{addr}"))
            .around(move |ep, req| {
                let recorder = Arc::clone(&recorder);
                async move {
                    record(&recorder, &req);
                    ep.call(req).await
                }
            });
        let task = tokio::spawn(async move {
            let _ = Server::new_with_acceptor(acceptor).run(routes).await;
        });
        Ok(Upstream {
            addr,
            log,
            task,
            tls: None,
        })
    }

    /// The same upstream behind TLS on `addr`, with the certificate chain and key in
    /// `cert_pem` and `key_pem`; [`Upstream::url`] is then `https://…`. Each connection's
    /// TLS is ended here and its bytes go on to the plain upstream.
    pub async fn start_tls(
        addr: &str,
        cert_pem: &[u8],
        key_pem: &[u8],
    ) -> std::io::Result<Upstream> {
        use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
        let certs = CertificateDer::pem_slice_iter(cert_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(std::io::Error::other)?;
        let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(std::io::Error::other)?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(std::io::Error::other)?
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .map_err(std::io::Error::other)?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let mut upstream = Self::start("127.0.0.1:0").await?;
        let plain = upstream.addr;
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let front = listener.local_addr()?;
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    if let Ok(mut inner) = tokio::net::TcpStream::connect(plain).await {
                        let _ = tokio::io::copy_bidirectional(&mut tls, &mut inner).await;
                    }
                });
            }
        });
        upstream.tls = Some((front, task));
        Ok(upstream)
    }

    pub fn url(&self) -> String {
        match &self.tls {
            Some((front, _)) => format!("https://{front}"),
            None => format!("http://{}", self.addr),
        }
    }

    /// Every request seen so far, oldest first.
    pub fn seen(&self) -> Vec<Seen> {
        self.log.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The last request seen.
    pub fn last(&self) -> Option<Seen> {
        self.seen().pop()
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
        if let Some((_, task)) = &self.tls {
            task.abort();
        }
    }
}

/// The 1 KiB page `GET /page` serves.
pub fn page_body() -> String {
    let mut html = String::from("<!doctype html><title>upstream</title><p>");
    while html.len() < 1020 {
        html.push('x');
    }
    html.push_str("</p>");
    html.truncate(1024);
    html
}

#[poem::handler]
fn page() -> Response {
    Response::builder()
        .content_type("text/html; charset=utf-8")
        .body(page_body())
}

#[poem::handler]
fn headers(req: &Request) -> Json<serde_json::Value> {
    let map: serde_json::Map<String, serde_json::Value> = req
        .headers()
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_str().unwrap_or("").into()))
        .collect();
    Json(serde_json::Value::Object(map))
}

#[poem::handler]
fn echo(body: Body) -> Response {
    Response::builder().body(Body::from_bytes_stream(body.into_bytes_stream()))
}

#[derive(Deserialize)]
struct StreamParams {
    mib: Option<u64>,
}

#[poem::handler]
fn stream(Query(params): Query<StreamParams>) -> Response {
    let chunks = params.mib.unwrap_or(1) * 16;
    let chunk = bytes::Bytes::from(vec![b'z'; 64 * 1024]);
    let body =
        futures_util::stream::iter(0..chunks).map(move |_| Ok::<_, std::io::Error>(chunk.clone()));
    Response::builder()
        .content_type("application/octet-stream")
        .body(Body::from_bytes_stream(body))
}

#[poem::handler]
fn sse() -> Response {
    let events = futures_util::stream::unfold(0u32, |n| async move {
        if n >= 3 {
            return None;
        }
        if n > 0 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Some((
            Ok::<_, std::io::Error>(bytes::Bytes::from(format!("data: event {n}\n\n"))),
            n + 1,
        ))
    });
    Response::builder()
        .content_type("text/event-stream")
        .header(header::CACHE_CONTROL, "no-cache")
        .body(Body::from_bytes_stream(events))
}

#[poem::handler]
fn redirect() -> Response {
    Response::builder()
        .status(StatusCode::FOUND)
        .header(header::LOCATION, "/page")
        .finish()
}

#[poem::handler]
fn redirect_absolute(Data(base): Data<&String>) -> Response {
    Response::builder()
        .status(StatusCode::FOUND)
        .header(header::LOCATION, format!("{base}/page"))
        .finish()
}

#[poem::handler]
fn links(Data(base): Data<&String>) -> Response {
    Response::builder().content_type("text/html").body(format!(
        "<a href=\"{base}/page\">page</a><script src=\"{base}/app.js\"></script>"
    ))
}

#[poem::handler]
fn set_cookie() -> Response {
    Response::builder()
        .header(header::SET_COOKIE, "sid=1; Path=/app; HttpOnly")
        .body("cookie set")
}

#[poem::handler]
async fn slow() -> &'static str {
    tokio::time::sleep(Duration::from_secs(3)).await;
    "finally"
}

#[poem::handler]
fn stall() -> Response {
    let lines = futures_util::stream::unfold(0u32, |n| async move {
        match n {
            0 => Some((Ok::<_, std::io::Error>(bytes::Bytes::from("begin\n")), 1)),
            1 => {
                tokio::time::sleep(Duration::from_secs(30)).await;
                Some((Ok(bytes::Bytes::from("end\n")), 2))
            }
            _ => None,
        }
    });
    Response::builder()
        .content_type("text/plain")
        .body(Body::from_bytes_stream(lines))
}

#[poem::handler]
fn ws(ws: WebSocket) -> impl IntoResponse {
    ws.protocols(["graphql-transport-ws"])
        .on_upgrade(|socket| async move {
            let (mut tx, mut rx) = socket.split();
            while let Some(Ok(message)) = rx.next().await {
                let reply = match message {
                    Message::Text(text) => Message::Text(text),
                    Message::Binary(bytes) => Message::Binary(bytes),
                    Message::Close(_) => break,
                    _ => continue,
                };
                if tx.send(reply).await.is_err() {
                    break;
                }
            }
        })
}
