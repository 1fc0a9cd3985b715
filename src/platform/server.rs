//! The HTTP server: accepts TCP connections and serves each with hyper (HTTP/1.1, and HTTP/2
//! with prior knowledge, upgrades included), handing every request to the poem endpoint.
//!
//! It does what poem's `Server` did for us (keep-alive connections quiet for the idle
//! timeout are closed; on shutdown the listener closes, in-flight requests finish within the
//! grace period, and connections still open after it are dropped) at a lower price per
//! request. poem's idle timeout wakes a watcher task and re-arms its timer on every read and
//! write of every connection, and each connection polls two cancellation tokens, one of them
//! shared by all connections, on every wake-up. Here a connection's reads and writes bump a
//! counter of its own, one sweeper task looks at the counters a few times per idle period,
//! and a connection is told to close through a flag and its waker, checked with one atomic
//! load whenever its task runs anyway.
//!
//! A connection that upgrades (WebSocket) leaves the server's care: what it does next is up
//! to the upgrade's owner (GraphQL and proxied WebSockets close themselves at shutdown,
//! and shutdown waits for them through the WebSocket tracker).

use std::{
    collections::HashMap,
    convert::Infallible,
    future::Future,
    io,
    net::SocketAddr,
    pin::Pin,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU8, AtomicU32, AtomicU64, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use bytes::Bytes;
use futures_util::task::AtomicWaker;
use http_body_util::combinators::BoxBody;
use hyper::{body::Incoming, service::service_fn};
use hyper_util::{
    rt::{TokioExecutor, TokioIo},
    server::conn::auto,
};
use poem::{
    Addr, Endpoint, EndpointExt, IntoEndpoint, Response,
    http::{self, uri::Scheme},
    web::{LocalAddr, RemoteAddr},
};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpStream},
    sync::Notify,
};

/// What the server is told at start.
#[derive(Debug, Clone, Copy)]
pub struct ServerOptions {
    /// A connection with no read or write for this long is closed once its in-flight
    /// request (if any) has been answered. It is closed between one and 1¼ times this.
    pub idle_timeout: Duration,
    /// How long shutdown waits for in-flight requests before dropping their connections.
    pub grace: Duration,
}

/// The sweeper looks at every connection this many times per idle period.
const SWEEPS_PER_IDLE_PERIOD: u32 = 4;

/// Serves `ep` on `listener` until `signal` completes, then shuts down gracefully.
pub async fn serve<E>(
    listener: TcpListener,
    ep: E,
    signal: impl Future<Output = ()>,
    options: ServerOptions,
) -> io::Result<()>
where
    E: IntoEndpoint,
    E::Endpoint: 'static,
{
    let ep = Arc::new(ep.into_endpoint().map_to_response());
    let local = LocalAddr(Addr::SocketAddr(listener.local_addr()?));
    let registry = Arc::new(Registry::default());
    let sweeper = tokio::spawn(sweep(registry.clone(), options.idle_timeout));
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // poem's settings, kept as they were.
    builder
        .http2()
        .max_concurrent_streams(None)
        .max_pending_accept_reset_streams(Some(20))
        .max_header_list_size(16384);
    let builder = Arc::new(builder);

    tokio::pin!(signal);
    loop {
        let accepted = tokio::select! {
            () = &mut signal => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, peer)) => {
                // Small writes go out at once: a WebSocket frame or a streamed chunk behind
                // an unacknowledged one would otherwise wait for the peer's (delayed) ACK.
                let _ = stream.set_nodelay(true);
                let conn = registry.open();
                let served = serve_connection(
                    stream,
                    peer,
                    local.clone(),
                    ep.clone(),
                    builder.clone(),
                    conn,
                );
                tokio::spawn(served);
            }
            // A connection that went before it was accepted: nothing to do.
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset
                ) => {}
            // Out of file descriptors and the like: a moment's pause rather than a spin.
            Err(e) => {
                tracing::warn!(error = %e, "could not accept a connection");
                tokio::select! {
                    () = &mut signal => break,
                    () = tokio::time::sleep(Duration::from_millis(50)) => {}
                }
            }
        }
    }
    drop(listener);
    sweeper.abort();

    let open = registry.close_all(FINISH);
    tracing::info!(
        connections = open,
        "listener closed; finishing in-flight requests"
    );
    if tokio::time::timeout(options.grace, registry.emptied())
        .await
        .is_err()
    {
        let dropped = registry.close_all(DROP);
        tracing::warn!(
            connections = dropped,
            "grace period over; dropping connections"
        );
        registry.emptied().await;
    }
    Ok(())
}

async fn serve_connection<E>(
    stream: TcpStream,
    peer: SocketAddr,
    local: LocalAddr,
    ep: Arc<E>,
    builder: Arc<auto::Builder<TokioExecutor>>,
    conn: Registered,
) where
    E: Endpoint<Output = Response> + 'static,
{
    let remote = RemoteAddr(Addr::SocketAddr(peer));
    let service = service_fn(move |req: http::Request<Incoming>| {
        let ep = ep.clone();
        let req = poem::Request::from((req, local.clone(), remote.clone(), Scheme::HTTP));
        async move {
            let response = ep.get_response(req).await;
            Ok::<_, Infallible>(http::Response::<BoxBody<Bytes, io::Error>>::from(response))
        }
    });
    let io = TokioIo::new(Counted {
        inner: stream,
        shared: conn.shared.clone(),
    });
    let serving = builder.serve_connection_with_upgrades(io, service);
    tokio::pin!(serving);
    let shared = &conn.shared;
    let mut finishing = false;
    std::future::poll_fn(|cx| {
        // Registered before the flag is read: a close asked for in between still wakes us.
        shared.waker.register(cx.waker());
        match shared.close.load(Ordering::Acquire) {
            DROP => return Poll::Ready(()),
            FINISH if !finishing => {
                finishing = true;
                serving.as_mut().graceful_shutdown();
            }
            _ => {}
        }
        serving.as_mut().poll(cx).map(|served| {
            if let Err(e) = served {
                tracing::debug!(peer = %peer, error = %e, "connection ended with an error");
            }
        })
    })
    .await;
}

/// `close` values (the default, 0, keeps serving): answer what is in flight and close;
/// drop now.
const FINISH: u8 = 1;
const DROP: u8 = 2;

/// What a connection's task shares with the sweeper and the shutdown.
#[derive(Default)]
struct Shared {
    /// Bumped by every read and write that completes (an error or the end of the stream
    /// too: either ends the connection anyway).
    activity: AtomicU64,
    close: AtomicU8,
    waker: AtomicWaker,
    /// The sweeper's own: `activity` when it last looked, and how many looks in a row
    /// found it unchanged.
    seen: AtomicU64,
    quiet_sweeps: AtomicU32,
}

impl Shared {
    /// Asks the connection to close (never undoing a stronger ask); `true` if this asked
    /// for more than it had been asked before.
    fn close(&self, how: u8) -> bool {
        let before = self.close.fetch_max(how, Ordering::AcqRel);
        let more = before < how;
        if more {
            self.waker.wake();
        }
        more
    }
}

/// The open connections, for the sweeper and for shutdown.
#[derive(Default)]
struct Registry {
    conns: Mutex<HashMap<u64, Arc<Shared>>>,
    next_id: AtomicU64,
    /// Signalled when the last connection goes.
    empty: Notify,
}

impl Registry {
    fn conns(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<Shared>>> {
        self.conns.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn open(self: &Arc<Self>) -> Registered {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        // Counted as one sign of life (the sweeper has seen 0), so the idle period of a
        // connection that never sends a byte starts when it is accepted.
        let shared = Arc::new(Shared {
            activity: AtomicU64::new(1),
            ..Shared::default()
        });
        self.conns().insert(id, shared.clone());
        Registered {
            registry: self.clone(),
            id,
            shared,
        }
    }

    /// Asks every connection to close; how many had not been asked as much before.
    fn close_all(&self, how: u8) -> usize {
        self.conns().values().filter(|conn| conn.close(how)).count()
    }

    /// Waits until no connection is left.
    async fn emptied(&self) {
        loop {
            // Made before the check: a connection leaving in between leaves a permit.
            let notified = self.empty.notified();
            if self.conns().is_empty() {
                return;
            }
            notified.await;
        }
    }
}

/// A connection's place in the registry, given up when its task ends (or unwinds).
struct Registered {
    registry: Arc<Registry>,
    id: u64,
    shared: Arc<Shared>,
}

impl Drop for Registered {
    fn drop(&mut self) {
        let mut conns = self.registry.conns();
        conns.remove(&self.id);
        if conns.is_empty() {
            drop(conns);
            self.registry.empty.notify_one();
        }
    }
}

/// Asks connections quiet for a whole idle period to close.
async fn sweep(registry: Arc<Registry>, idle: Duration) {
    let period = (idle / SWEEPS_PER_IDLE_PERIOD).max(Duration::from_millis(1));
    let mut every = tokio::time::interval(period);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    every.tick().await;
    loop {
        every.tick().await;
        let mut closed = 0;
        for conn in registry.conns().values() {
            let activity = conn.activity.load(Ordering::Relaxed);
            if conn.seen.swap(activity, Ordering::Relaxed) != activity {
                conn.quiet_sweeps.store(0, Ordering::Relaxed);
                continue;
            }
            let quiet = conn.quiet_sweeps.fetch_add(1, Ordering::Relaxed) + 1;
            if quiet >= SWEEPS_PER_IDLE_PERIOD && conn.close(FINISH) {
                closed += 1;
            }
        }
        if closed > 0 {
            tracing::debug!(connections = closed, "closing idle connections");
        }
    }
}

/// A connection's stream, counting the reads and writes that complete.
struct Counted {
    inner: TcpStream,
    shared: Arc<Shared>,
}

impl Counted {
    fn bump(&self) {
        self.shared.activity.fetch_add(1, Ordering::Relaxed);
    }
}

impl AsyncRead for Counted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if polled.is_ready() {
            self.bump();
        }
        polled
    }
}

impl AsyncWrite for Counted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if polled.is_ready() {
            self.bump();
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if polled.is_ready() {
            self.bump();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use futures_util::{SinkExt, StreamExt};
    use http_body_util::{BodyExt, Empty};
    use hyper::client::conn::http1;
    use poem::{
        Route, get, handler,
        web::websocket::{Message, WebSocket},
    };
    use tokio::{sync::oneshot, task::JoinHandle};

    use super::*;

    #[handler]
    fn hello() -> &'static str {
        "hello"
    }

    #[handler]
    async fn slow() -> &'static str {
        tokio::time::sleep(Duration::from_millis(800)).await;
        "slow"
    }

    #[handler]
    async fn stuck() -> &'static str {
        tokio::time::sleep(Duration::from_secs(60)).await;
        "never"
    }

    #[handler]
    fn echo(ws: WebSocket) -> impl poem::IntoResponse {
        ws.on_upgrade(|mut socket| async move {
            while let Some(Ok(Message::Text(text))) = socket.next().await {
                if socket.send(Message::Text(text)).await.is_err() {
                    break;
                }
            }
        })
    }

    struct Running {
        addr: SocketAddr,
        stop: Option<oneshot::Sender<()>>,
        served: JoinHandle<io::Result<()>>,
    }

    async fn start(idle_timeout: Duration, grace: Duration) -> Running {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let routes = Route::new()
            .at("/hello", get(hello))
            .at("/slow", get(slow))
            .at("/stuck", get(stuck))
            .at("/ws", get(echo));
        let (stop, stopped) = oneshot::channel::<()>();
        let signal = async move {
            let _ = stopped.await;
        };
        let options = ServerOptions {
            idle_timeout,
            grace,
        };
        let served = tokio::spawn(serve(listener, routes, signal, options));
        Running {
            addr,
            stop: Some(stop),
            served,
        }
    }

    /// A keep-alive client connection: requests go out on it, and `closed` ends when the
    /// server closes it.
    struct Client {
        send: http1::SendRequest<Empty<Bytes>>,
        closed: JoinHandle<()>,
    }

    async fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).await.unwrap();
        let (send, conn) = http1::handshake(TokioIo::new(stream)).await.unwrap();
        let closed = tokio::spawn(async move {
            let _ = conn.await;
        });
        Client { send, closed }
    }

    impl Client {
        /// Status and body of a GET.
        async fn get(&mut self, path: &str) -> hyper::Result<(u16, String)> {
            let (status, _, body) = self.get_with_connection(path).await?;
            Ok((status, body))
        }

        /// Status, `Connection` header and body of a GET.
        async fn get_with_connection(
            &mut self,
            path: &str,
        ) -> hyper::Result<(u16, Option<String>, String)> {
            self.send.ready().await?;
            let request = http::Request::get(path)
                .header("host", "localhost")
                .body(Empty::new())
                .unwrap();
            let response = self.send.send_request(request).await?;
            let status = response.status().as_u16();
            let connection = response
                .headers()
                .get(http::header::CONNECTION)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let body = response.into_body().collect().await?.to_bytes();
            Ok((
                status,
                connection,
                String::from_utf8_lossy(&body).into_owned(),
            ))
        }
    }

    #[tokio::test]
    async fn a_connection_that_never_speaks_is_closed_after_the_idle_timeout() {
        use tokio::io::AsyncReadExt;
        let idle = Duration::from_millis(400);
        let server = start(idle, Duration::from_secs(5)).await;
        // Mid-way between two sweeps, so that counting from the wrong moment shows.
        tokio::time::sleep(idle * 5 / 8).await;
        let opened = Instant::now();
        let mut silent = TcpStream::connect(server.addr).await.unwrap();
        let mut buf = [0u8; 16];
        let read = tokio::time::timeout(Duration::from_secs(3), silent.read(&mut buf))
            .await
            .expect("the server closes a silent connection");
        assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
        let quiet = opened.elapsed();
        assert!(quiet >= idle, "closed after only {quiet:?}");
    }

    #[tokio::test]
    async fn http2_with_prior_knowledge_is_served() {
        let server = start(Duration::from_secs(75), Duration::from_secs(5)).await;
        let stream = TcpStream::connect(server.addr).await.unwrap();
        let (mut send, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
                .await
                .unwrap();
        tokio::spawn(conn);
        let request = http::Request::get(format!("http://{}/hello", server.addr))
            .body(Empty::<Bytes>::new())
            .unwrap();
        let response = send.send_request(request).await.unwrap();
        assert_eq!(response.version(), http::Version::HTTP_2);
        assert_eq!(response.status(), 200);
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"hello");
    }

    #[tokio::test]
    async fn quiet_connections_close_after_the_idle_timeout_and_busy_ones_do_not() {
        let idle = Duration::from_millis(400);
        let server = start(idle, Duration::from_secs(5)).await;
        let mut client = connect(server.addr).await;
        // Requests more often than the idle timeout keep the connection open past it.
        for _ in 0..6 {
            assert_eq!(client.get("/hello").await.unwrap(), (200, "hello".into()));
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
        assert!(!client.closed.is_finished(), "closed while in use");
        let last = Instant::now();
        client.get("/hello").await.unwrap();
        tokio::time::timeout(Duration::from_secs(3), &mut client.closed)
            .await
            .expect("the server closes a quiet connection")
            .unwrap();
        let quiet = last.elapsed();
        assert!(quiet >= idle, "closed after only {quiet:?} of quiet");
        // One idle period and one sweep at most, with room for a slow machine.
        assert!(
            quiet <= idle * 2 + Duration::from_millis(500),
            "closed after {quiet:?}"
        );
        // The server itself is still there.
        assert_eq!(
            connect(server.addr).await.get("/hello").await.unwrap().0,
            200
        );
    }

    #[tokio::test]
    async fn an_answer_slower_than_the_idle_timeout_is_still_given() {
        let server = start(Duration::from_millis(200), Duration::from_secs(5)).await;
        let mut client = connect(server.addr).await;
        let (status, connection, body) = client.get_with_connection("/slow").await.unwrap();
        assert_eq!((status, body.as_str()), (200, "slow"));
        // Asked to close while the answer was pending: the answer says so, and the
        // connection goes after it.
        assert_eq!(connection.as_deref(), Some("close"));
        tokio::time::timeout(Duration::from_secs(3), &mut client.closed)
            .await
            .expect("the connection closes after its answer")
            .unwrap();
    }

    #[tokio::test]
    async fn websockets_are_not_closed_as_idle() {
        let server = start(Duration::from_millis(200), Duration::from_secs(5)).await;
        let (mut socket, _) = tokio_tungstenite::connect_async(format!("ws://{}/ws", server.addr))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(1000)).await;
        socket
            .send(tokio_tungstenite::tungstenite::Message::text("still here"))
            .await
            .unwrap();
        let echoed = tokio::time::timeout(Duration::from_secs(3), socket.next())
            .await
            .expect("an echo")
            .expect("the socket is open")
            .unwrap();
        assert_eq!(echoed.into_text().unwrap().as_str(), "still here");
    }

    #[tokio::test]
    async fn shutdown_answers_requests_in_flight_and_takes_no_new_connections() {
        let mut server = start(Duration::from_secs(75), Duration::from_secs(5)).await;
        let mut busy = connect(server.addr).await;
        let mut quiet = connect(server.addr).await;
        assert_eq!(quiet.get("/hello").await.unwrap().0, 200);
        let in_flight = tokio::spawn(async move { busy.get("/slow").await });
        tokio::time::sleep(Duration::from_millis(200)).await;
        let asked = Instant::now();
        server.stop.take().unwrap().send(()).unwrap();

        // While the slow answer is pending, the quiet keep-alive connection is closed rather
        // than waited for, and no new connection is taken.
        tokio::time::timeout(Duration::from_millis(500), &mut quiet.closed)
            .await
            .expect("a quiet connection is closed at once")
            .unwrap();
        assert!(!in_flight.is_finished(), "the slow answer came too soon");
        assert!(
            TcpStream::connect(server.addr).await.is_err(),
            "a connection accepted while draining"
        );
        assert_eq!(in_flight.await.unwrap().unwrap(), (200, "slow".into()));
        tokio::time::timeout(Duration::from_secs(3), server.served)
            .await
            .expect("the server stops once the slow answer is out")
            .unwrap()
            .unwrap();
        assert!(asked.elapsed() < Duration::from_secs(3));
        assert!(
            TcpStream::connect(server.addr).await.is_err(),
            "a connection accepted after shutdown"
        );
    }

    #[tokio::test]
    async fn shutdown_drops_what_is_still_open_after_the_grace_period() {
        let grace = Duration::from_millis(300);
        let mut server = start(Duration::from_secs(75), grace).await;
        let mut client = connect(server.addr).await;
        let in_flight = tokio::spawn(async move { client.get("/stuck").await });
        tokio::time::sleep(Duration::from_millis(200)).await;
        let asked = Instant::now();
        server.stop.take().unwrap().send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(3), server.served)
            .await
            .expect("the server stops after the grace period")
            .unwrap()
            .unwrap();
        let took = asked.elapsed();
        assert!(
            took >= grace,
            "stopped after {took:?}, before the grace period"
        );
        let answer = tokio::time::timeout(Duration::from_secs(3), in_flight)
            .await
            .expect("the client sees its connection go")
            .unwrap();
        assert!(answer.is_err(), "got {answer:?} from a dropped connection");
    }
}
