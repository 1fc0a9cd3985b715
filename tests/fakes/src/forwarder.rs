//! A reference for the access proxy's bench: an HTTP/1.1 forwarder that does nothing but
//! relay. It checks no token, rewrites no header and keeps no metrics; each client
//! connection gets one upstream connection of its own, and both are driven by one task,
//! so a request crosses no channel and no thread on its way. What it reaches on a machine
//! is about as far as any proxy built on hyper can go there: the cost of the second hop
//! itself.

use std::{net::SocketAddr, sync::Arc};

use hyper::{
    Request, body::Incoming, client::conn::http1 as client, server::conn::http1 as server,
    service::service_fn,
};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Accepts on `listener` and relays every connection to `upstream` until the process ends.
pub async fn serve(listener: TcpListener, upstream: SocketAddr) -> std::io::Result<()> {
    loop {
        let (stream, _) = listener.accept().await?;
        tokio::spawn(async move {
            match relay(stream, upstream).await {
                // A client closing its connection between requests, as wrk does at the end.
                Err(e)
                    if e.downcast_ref::<hyper::Error>()
                        .is_some_and(|e| e.is_incomplete_message()) => {}
                Err(e) => eprintln!("forwarder: {e}"),
                Ok(()) => {}
            }
        });
    }
}

async fn relay(down: TcpStream, upstream: SocketAddr) -> Result<(), BoxError> {
    down.set_nodelay(true)?;
    let up = TcpStream::connect(upstream).await?;
    up.set_nodelay(true)?;
    let (send, upstream_conn) = client::handshake(TokioIo::new(up)).await?;
    let send = Arc::new(tokio::sync::Mutex::new(send));
    // A failed relay fails the client's connection: hyper closes it.
    let service = service_fn(move |req: Request<Incoming>| {
        let send = send.clone();
        async move {
            let mut send = send.lock().await;
            // The previous response's body has been written out by now, but the upstream
            // connection may not have seen its end yet.
            send.ready().await?;
            let response = send.send_request(req);
            drop(send);
            response.await
        }
    });
    let client_conn = server::Builder::new().serve_connection(TokioIo::new(down), service);
    tokio::select! {
        r = client_conn => r?,
        r = upstream_conn => r?,
    }
    Ok(())
}
