//! The proxy's client for its one upstream: HTTP/1.1 connections (plain or TLS) kept in a
//! small pool and driven by the request that uses them.
//!
//! A general-purpose client runs every connection as a task of its own and talks to it
//! through channels, so each proxied request hops between the request's task and the
//! connection's, often across threads. Here the connection is polled by whoever holds it:
//! while the head is awaited by the proxy handler, while the body streams by the body
//! itself ([`UpstreamBody`]), all inside the task of the client's own connection. When the
//! body has been read to its end, and the request's own body was sent in full (an upstream
//! may answer an upload early), the connection goes back to the pool; a body dropped early
//! takes its connection with it (HTTP/1.1 cannot abandon half a response).
//!
//! An idle connection in the pool is not polled, so a close by the upstream is seen when
//! the connection is next taken out: it is polled once, and one that is not ready then is
//! dropped, never waited for. A full pool drops its oldest connection. A
//! request that a connection closed before writing it (hyper hands such a request back) is
//! sent once more on a new connection, whatever its method: the upstream never saw it.

use std::{
    future::Future,
    io,
    pin::Pin,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    task::{Context, Poll},
    time::{Duration, Instant},
};

use bytes::Bytes;
use http_body_util::{BodyExt, combinators::BoxBody};
use hyper::{
    Request, Response,
    body::{Body as HttpBody, Frame, Incoming, SizeHint},
    client::conn::http1,
};
use hyper_util::rt::TokioIo;
use poem::http::{HeaderValue, Uri, header};

/// What a request carries to the upstream.
pub type RequestBody = BoxBody<Bytes, io::Error>;

/// The byte stream under an upstream connection: plain TCP or TLS over it.
pub trait UpstreamIo: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + Sync {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + Sync> UpstreamIo for T {}

type Driver = http1::Connection<TokioIo<Box<dyn UpstreamIo>>, RequestBody>;

/// Connections idle longer than this are closed rather than reused.
const IDLE_LIFETIME: Duration = Duration::from_secs(60);
/// At most this many idle connections are kept.
const MAX_IDLE: usize = 256;

/// One HTTP/1.1 connection: the sending half and the state machine that must be polled
/// for anything to move.
struct Conn {
    send: http1::SendRequest<RequestBody>,
    driver: Pin<Box<Driver>>,
    idle_since: Instant,
}

impl Conn {
    /// Polls the connection; `true` once it has ended (closed, failed or upgraded).
    fn drive(&mut self, cx: &mut Context<'_>) -> bool {
        self.driver.as_mut().poll(cx).is_ready()
    }
}

type Idle = Arc<Mutex<Vec<Conn>>>;

fn lock(idle: &Idle) -> std::sync::MutexGuard<'_, Vec<Conn>> {
    idle.lock().unwrap_or_else(|e| e.into_inner())
}

/// Why a request got no response head.
#[derive(Debug)]
pub enum SendError {
    /// No connection within the connect timeout, or no head within the response timeout.
    Timeout,
    /// The request body went over the limit it was given.
    BodyTooLarge,
    /// The upstream could not be reached or broke the exchange.
    Failed(String),
}

/// The upstream's address and trust, and the idle connections to it.
pub struct UpstreamClient {
    host: String,
    port: u16,
    /// The `Host` header the upstream gets.
    authority: HeaderValue,
    /// The upstream URL's path, without a trailing slash; proxied paths go under it.
    base_path: String,
    tls: Option<Arc<rustls::ClientConfig>>,
    connect_timeout: Duration,
    idle: Idle,
}

impl UpstreamClient {
    /// A client for `upstream` (`http://` or `https://`); `tls` is required for `https://`.
    pub fn new(
        upstream: &url::Url,
        tls: Option<Arc<rustls::ClientConfig>>,
        connect_timeout: Duration,
    ) -> anyhow::Result<Self> {
        let secure = upstream.scheme() == "https";
        if secure && tls.is_none() {
            anyhow::bail!("an https:// upstream needs TLS settings");
        }
        let host = upstream
            .host_str()
            .ok_or_else(|| anyhow::anyhow!("ACCESS_PROXY_UPSTREAM has no host"))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let port = upstream
            .port_or_known_default()
            .ok_or_else(|| anyhow::anyhow!("ACCESS_PROXY_UPSTREAM has no port"))?;
        let authority = match upstream.port() {
            Some(port) => format!("{}:{port}", upstream.host_str().unwrap_or_default()),
            None => upstream.host_str().unwrap_or_default().to_owned(),
        };
        Ok(Self {
            host,
            port,
            authority: HeaderValue::from_str(&authority)?,
            base_path: upstream.path().trim_end_matches('/').to_owned(),
            tls: secure.then_some(tls).flatten(),
            connect_timeout,
            idle: Arc::default(),
        })
    }

    /// A new byte stream to the upstream: TCP within the connect timeout, then TLS for an
    /// `https://` upstream. The WebSocket proxy opens its connections here too.
    pub async fn connect_io(&self) -> Result<Box<dyn UpstreamIo>, SendError> {
        let tcp = tokio::time::timeout(
            self.connect_timeout,
            tokio::net::TcpStream::connect((self.host.as_str(), self.port)),
        )
        .await
        .map_err(|_| SendError::Timeout)?
        .map_err(|e| SendError::Failed(e.to_string()))?;
        let _ = tcp.set_nodelay(true);
        let Some(tls) = &self.tls else {
            return Ok(Box::new(tcp));
        };
        let name = rustls::pki_types::ServerName::try_from(self.host.clone())
            .map_err(|e| SendError::Failed(e.to_string()))?;
        let stream = tokio_rustls::TlsConnector::from(Arc::clone(tls))
            .connect(name, tcp)
            .await
            .map_err(|e| SendError::Failed(e.to_string()))?;
        Ok(Box::new(stream))
    }

    async fn connect(&self) -> Result<Conn, SendError> {
        let io = self.connect_io().await?;
        let (send, driver) = http1::Builder::new()
            .handshake(TokioIo::new(io))
            .await
            .map_err(|e| SendError::Failed(e.to_string()))?;
        Ok(Conn {
            send,
            driver: Box::pin(driver),
            idle_since: Instant::now(),
        })
    }

    /// The most recently used idle connection that is still open and ready. A healthy
    /// idle connection is ready at the first poll; one that is not (closed, or busy with
    /// something nobody will finish) is dropped rather than waited for.
    async fn checkout(&self) -> Option<Conn> {
        loop {
            let mut conn = {
                let mut idle = lock(&self.idle);
                let conn = idle.pop()?;
                if conn.idle_since.elapsed() >= IDLE_LIFETIME {
                    // The rest are older still.
                    idle.clear();
                    return None;
                }
                conn
            };
            let ready = std::future::poll_fn(|cx| {
                Poll::Ready(
                    !conn.drive(cx) && matches!(conn.send.poll_ready(cx), Poll::Ready(Ok(()))),
                )
            })
            .await;
            if ready {
                return Some(conn);
            }
        }
    }

    /// The origin-form target of `path` and `query` on the upstream, as
    /// [`UpstreamClient::send`] wants it; `None` if they do not make a URI.
    pub fn target(&self, path: &str, query: Option<&str>) -> Option<Uri> {
        match query {
            Some(q) => format!("{}{path}?{q}", self.base_path),
            None => format!("{}{path}", self.base_path),
        }
        .parse()
        .ok()
    }

    /// Sends `request` (its URI the origin-form target, see [`UpstreamClient::target`]) and
    /// waits for the response head within `timeout`. `over_limit` is set by the request
    /// body's own stream when it refused to go on.
    pub async fn send(
        &self,
        mut request: Request<RequestBody>,
        timeout: Duration,
        over_limit: &AtomicBool,
    ) -> Result<Response<UpstreamBody>, SendError> {
        request
            .headers_mut()
            .insert(header::HOST, self.authority.clone());
        // A connection may be reused only once the request body has been sent in full: an
        // upstream may answer before it has read it all.
        let sent_all = if request.body().is_end_stream() {
            None
        } else {
            let flag = Arc::new(AtomicBool::new(false));
            // With a declared length, hyper stops polling the body once it has that much.
            let length = request
                .headers()
                .get(header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok());
            let body = std::mem::replace(request.body_mut(), empty());
            *request.body_mut() = Tracked {
                inner: body,
                done: Arc::clone(&flag),
                length,
                seen: 0,
            }
            .boxed();
            Some(flag)
        };
        let exchange = async {
            let mut request = request;
            // The second round only for a request the first connection never wrote, and on
            // a new connection.
            for round in 0..2 {
                let pooled = if round == 0 {
                    self.checkout().await
                } else {
                    None
                };
                let mut conn = match pooled {
                    Some(conn) => conn,
                    // Boxed: connecting (TLS included) is the rare path and its future
                    // the largest part of this one.
                    None => Box::pin(self.connect()).await?,
                };
                let sent = conn.send.try_send_request(request);
                let mut sent = std::pin::pin!(sent);
                let mut ended = false;
                let answered = std::future::poll_fn(|cx| {
                    if !ended {
                        ended = conn.drive(cx);
                    }
                    match sent.as_mut().poll(cx) {
                        Poll::Ready(outcome) => Poll::Ready(Some(outcome)),
                        Poll::Pending if ended => Poll::Ready(None),
                        Poll::Pending => Poll::Pending,
                    }
                })
                .await;
                let (outcome, conn) = match answered {
                    Some(outcome) => (outcome, (!ended).then_some(conn)),
                    None => {
                        // The connection ended with the request still queued: dropping
                        // it hands the request back, or says why not.
                        drop(conn);
                        (sent.await, None)
                    }
                };
                match outcome {
                    Ok(response) => {
                        let (parts, incoming) = response.into_parts();
                        let mut body = UpstreamBody {
                            incoming,
                            conn,
                            sent_all: sent_all.clone(),
                            idle: Arc::clone(&self.idle),
                            quiet: None,
                            timer: None,
                            last: Instant::now(),
                        };
                        if body.incoming.is_end_stream() {
                            // No body (HEAD, 204, 304): nobody will poll for it.
                            body.finished();
                        }
                        return Ok(Response::from_parts(parts, body));
                    }
                    Err(mut e) => match e.take_message() {
                        Some(unsent) => request = unsent,
                        None => {
                            return Err(if over_limit.load(Ordering::Relaxed) {
                                SendError::BodyTooLarge
                            } else {
                                SendError::Failed(e.into_error().to_string())
                            });
                        }
                    },
                }
            }
            Err(SendError::Failed(
                "the upstream closed two connections before the request was written".into(),
            ))
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| SendError::Timeout)?
    }

    #[cfg(test)]
    fn idle_count(&self) -> usize {
        lock(&self.idle).len()
    }
}

fn give_back(idle: &Idle, mut conn: Conn) {
    conn.idle_since = Instant::now();
    let mut idle = lock(idle);
    if idle
        .first()
        .is_some_and(|c| c.idle_since.elapsed() >= IDLE_LIFETIME)
    {
        idle.retain(|c| c.idle_since.elapsed() < IDLE_LIFETIME);
    }
    if idle.len() >= MAX_IDLE {
        idle.remove(0);
    }
    idle.push(conn);
}

/// A request body that says when it has been read to its end: its last frame, or as many
/// bytes as its declared length.
struct Tracked {
    inner: RequestBody,
    done: Arc<AtomicBool>,
    length: Option<u64>,
    seen: u64,
}

impl HttpBody for Tracked {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        let ended = match &polled {
            Poll::Ready(None) => true,
            Poll::Ready(Some(Ok(frame))) => {
                self.seen += frame.data_ref().map_or(0, |d| d.len() as u64);
                self.inner.is_end_stream() || self.length.is_some_and(|n| self.seen >= n)
            }
            _ => false,
        };
        if ended {
            self.done.store(true, Ordering::Release);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A response body from the upstream. Polling it drives its connection; at its end the
/// connection returns to the pool. A gap of more than `quiet` between frames ends it with
/// an error (`io::ErrorKind::TimedOut`).
pub struct UpstreamBody {
    incoming: Incoming,
    conn: Option<Conn>,
    /// Set once the request body was sent in full (`None`: there was none).
    sent_all: Option<Arc<AtomicBool>>,
    idle: Idle,
    quiet: Option<Duration>,
    /// Armed at the first wait and re-armed only when it fires, so a busy body costs
    /// no timer work per frame.
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
    last: Instant,
}

impl UpstreamBody {
    /// Ends the body with an error when the upstream sends nothing for `quiet`.
    pub fn with_idle_timeout(mut self, quiet: Duration) -> Self {
        self.quiet = Some(quiet);
        self
    }

    fn finished(&mut self) {
        let request_sent = self
            .sent_all
            .as_ref()
            .is_none_or(|done| done.load(Ordering::Acquire));
        if let Some(conn) = self.conn.take()
            && request_sent
        {
            give_back(&self.idle, conn);
        }
    }

    fn waited_too_long(&mut self, cx: &mut Context<'_>) -> bool {
        let Some(quiet) = self.quiet else {
            return false;
        };
        let timer = self
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until((self.last + quiet).into())));
        while timer.as_mut().poll(cx).is_ready() {
            let deadline = self.last + quiet;
            if Instant::now() >= deadline {
                return true;
            }
            timer.as_mut().reset(deadline.into());
        }
        false
    }
}

impl HttpBody for UpstreamBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = self.get_mut();
        if let Some(conn) = this.conn.as_mut()
            && conn.drive(cx)
        {
            // Ended: what it read is in `incoming`, and it cannot be reused.
            this.conn = None;
        }
        match Pin::new(&mut this.incoming).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                this.last = Instant::now();
                if this.incoming.is_end_stream() {
                    // The server stops polling a body that says it is complete.
                    this.finished();
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                this.conn = None;
                Poll::Ready(Some(Err(io::Error::other(e))))
            }
            Poll::Ready(None) => {
                this.finished();
                Poll::Ready(None)
            }
            Poll::Pending => {
                if this.waited_too_long(cx) {
                    this.conn = None;
                    return Poll::Ready(Some(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "upstream body idle too long",
                    ))));
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.incoming.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.incoming.size_hint()
    }
}

/// A request body of nothing.
pub fn empty() -> RequestBody {
    http_body_util::Empty::new()
        .map_err(|never| match never {})
        .boxed()
}

/// A request body from a stream of chunks.
pub fn streamed<S>(chunks: S) -> RequestBody
where
    S: futures_util::Stream<Item = Result<Bytes, io::Error>> + Send + Sync + 'static,
{
    use futures_util::TryStreamExt;
    http_body_util::StreamBody::new(chunks.map_ok(Frame::data)).boxed()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// An upstream that answers each request on a connection and then, after `answers`
    /// of them, closes it without saying so, as a server's keep-alive timeout does.
    async fn closing_upstream(answers: usize) -> (url::Url, Arc<std::sync::atomic::AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let connections = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = Arc::clone(&connections);
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                counted.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 4096];
                    for _ in 0..answers {
                        let mut got = Vec::new();
                        while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                            match socket.read(&mut buf).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => got.extend_from_slice(&buf[..n]),
                            }
                        }
                        let reply = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                        if socket.write_all(reply).await.is_err() {
                            return;
                        }
                    }
                    let _ = socket.shutdown().await;
                });
            }
        });
        (format!("http://{addr}").parse().unwrap(), connections)
    }

    fn get(target: &str) -> Request<RequestBody> {
        let mut request = Request::new(empty());
        *request.uri_mut() = target.parse().unwrap();
        request
    }

    async fn read(client: &UpstreamClient, target: &str) -> String {
        let flag = AtomicBool::new(false);
        let response = client
            .send(get(target), Duration::from_secs(5), &flag)
            .await
            .unwrap();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        String::from_utf8(body.to_vec()).unwrap()
    }

    #[tokio::test]
    async fn connections_are_reused_and_stale_ones_replaced() {
        // Keep-alive honoured: ten requests, one connection, back in the pool each time.
        let (url, connections) = closing_upstream(usize::MAX).await;
        let client = UpstreamClient::new(&url, None, Duration::from_secs(1)).unwrap();
        for _ in 0..10 {
            assert_eq!(read(&client, "/").await, "ok");
            assert_eq!(client.idle_count(), 1);
        }
        assert_eq!(connections.load(Ordering::SeqCst), 1);

        // An upstream that closes after every answer: each request still succeeds, on a
        // new connection, and no closed one is handed out.
        let (url, connections) = closing_upstream(1).await;
        let client = UpstreamClient::new(&url, None, Duration::from_secs(1)).unwrap();
        for round in 1..=5 {
            assert_eq!(read(&client, "/").await, "ok");
            // Let the close arrive before the next checkout.
            tokio::time::sleep(Duration::from_millis(20)).await;
            assert_eq!(connections.load(Ordering::SeqCst), round);
        }
    }

    #[tokio::test]
    async fn a_quiet_body_ends_in_an_error() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut buf = vec![0u8; 4096];
            let _ = socket.read(&mut buf).await;
            let head = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n6\r\nbegin\n\r\n";
            socket.write_all(head).await.unwrap();
            tokio::time::sleep(Duration::from_secs(30)).await;
        });
        let url: url::Url = format!("http://{addr}").parse().unwrap();
        let client = UpstreamClient::new(&url, None, Duration::from_secs(1)).unwrap();
        let flag = AtomicBool::new(false);
        let response = client
            .send(get("/"), Duration::from_secs(5), &flag)
            .await
            .unwrap();
        let mut body = response
            .into_body()
            .with_idle_timeout(Duration::from_millis(200));
        let first = body.frame().await.unwrap().unwrap();
        assert_eq!(first.into_data().unwrap(), "begin\n");
        let started = Instant::now();
        let error = body
            .frame()
            .await
            .expect("an error, not the end")
            .unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
        assert!(started.elapsed() >= Duration::from_millis(150));
        assert_eq!(client.idle_count(), 0, "a broken connection is not kept");
    }

    #[tokio::test]
    async fn a_connection_whose_request_is_still_being_sent_is_not_reused() {
        // This upstream answers as soon as it has a head, without reading any body.
        let (url, connections) = closing_upstream(usize::MAX).await;
        let client = UpstreamClient::new(&url, None, Duration::from_secs(1)).unwrap();
        let flag = AtomicBool::new(false);
        let mut post = Request::new(streamed(futures_util::stream::pending()));
        *post.method_mut() = hyper::Method::POST;
        *post.uri_mut() = Uri::from_static("/upload");
        let response = client
            .send(post, Duration::from_secs(5), &flag)
            .await
            .unwrap();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body, "ok");
        assert_eq!(client.idle_count(), 0, "its request body is still open");
        // The next request goes out on a new connection at once.
        let next = tokio::time::timeout(Duration::from_secs(1), read(&client, "/"))
            .await
            .expect("not stuck behind the unfinished upload");
        assert_eq!(next, "ok");
        assert_eq!(connections.load(Ordering::SeqCst), 2);
    }
}
