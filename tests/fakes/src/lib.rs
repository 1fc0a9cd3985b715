//! Loopback fakes of the third parties Tessera talks to, each speaking the real wire
//! protocol, for tests (in-process, on an ephemeral port) and for development (the
//! `tessera-fakes` binary): SMTP, the sign-in providers (an OIDC issuer, Discord, GitHub),
//! an upstream for the access proxy, the ad stack (Turnstile, Google's SSV key server,
//! Monetag postbacks), and Stripe for billing (catalog, Checkout, subscriptions, invoices,
//! signed webhooks). Beside them, a bare HTTP forwarder as the proxy bench's reference.

#![forbid(unsafe_code)]

pub mod ads;
pub mod forwarder;
pub mod oauth;
pub mod smtp;
pub mod stripe;
pub mod upstream;

/// Binds an HTTP fake to `addr` (port 0 for an ephemeral one): the acceptor to serve on,
/// and the address it got.
pub(crate) async fn bind_http(
    addr: &str,
) -> std::io::Result<(poem::listener::TcpAcceptor, std::net::SocketAddr)> {
    use poem::listener::{Acceptor, Listener, TcpListener};
    let acceptor = TcpListener::bind(addr.to_owned()).into_acceptor().await?;
    let addr = acceptor
        .local_addr()
        .first()
        .and_then(|a| a.as_socket_addr().copied())
        .ok_or_else(|| std::io::Error::other("no local address"))?;
    Ok((acceptor, addr))
}
