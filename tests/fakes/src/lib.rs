//! Loopback fakes of the third parties Tessera talks to, each speaking the real wire
//! protocol, for tests (in-process, on an ephemeral port) and for development (the
//! `tessera-fakes` binary). Today: SMTP, the sign-in providers (an OIDC issuer, Discord, GitHub) and an upstream
//! for the access proxy. Stripe, Turnstile and the
//! ad networks follow with their domains.

#![forbid(unsafe_code)]

pub mod oauth;
pub mod smtp;
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
