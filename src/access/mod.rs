//! Access tokens: time-limited biscuits bought with coins that open a token-gated reverse
//! proxy (HTTP and WebSocket) to one upstream.
//!
//! - Buying writes one transfer and one row in one transaction; the token is shown once.
//! - The proxy verifies the signature offline (cached 30 s), checks revocation (this
//!   instance's memory for ≤ 5 s, then kv, then the database), then runs the token's checks
//!   (ours and any a holder added) against the request.
//! - Revocation writes the database, then kv, then tells every instance over pub/sub; each
//!   forgets its cache and closes the proxied WebSockets of that token (1008).

pub mod config;
pub mod entity;
pub mod graphql;
pub mod proxy;
pub mod service;
pub mod tokens;
pub mod upstream;

use std::{collections::HashMap, sync::Mutex, time::Instant};

use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::{
    config::Config,
    platform::{FastMap, FastSet},
};

/// Why a proxied WebSocket was closed by us.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    Revoked,
    Expired,
}

/// One open proxied WebSocket.
struct OpenSocket {
    id: u64,
    cancel: CancellationToken,
}

/// The access domain's long-lived parts, shared through `AppState`.
pub struct AccessState {
    pub keys: tokens::AccessKeys,
    pub prices: Vec<(i32, i64)>,
    /// token id → (active?, when learned).
    memory: Mutex<FastMap<Uuid, (bool, Instant)>>,
    touched: Mutex<FastSet<Uuid>>,
    sockets: Mutex<HashMap<Uuid, Vec<OpenSocket>>>,
    next_socket: std::sync::atomic::AtomicU64,
    /// The upstream's address, trust and idle connections, for pages and WebSockets;
    /// `None` until `ACCESS_PROXY_UPSTREAM` is set.
    pub client: Option<upstream::UpstreamClient>,
    /// PUBLIC_URL (or the derived one), parsed once for the hot path.
    pub public_url: url::Url,
    /// The upstream's origin (`http://host:port`), what path mode moves under `/proxy` in
    /// `Location` headers and rewritten bodies; empty without an upstream.
    pub upstream_origin: String,
    /// `X-Forwarded-Proto` for the upstream: PUBLIC_URL's scheme.
    pub forwarded_proto: poem::http::HeaderValue,
}

/// The certificates of `ACCESS_PROXY_UPSTREAM_CA_FILE` (PEM), read and checked once for
/// both upstream clients.
fn extra_ca(
    path: &std::path::Path,
) -> anyhow::Result<Vec<rustls::pki_types::CertificateDer<'static>>> {
    use rustls::pki_types::{CertificateDer, pem::PemObject};
    let pem = std::fs::read(path).map_err(|e| {
        anyhow::anyhow!(
            "cannot read ACCESS_PROXY_UPSTREAM_CA_FILE {}: {e}",
            path.display()
        )
    })?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| {
            anyhow::anyhow!("ACCESS_PROXY_UPSTREAM_CA_FILE is not PEM certificates: {e}")
        })?;
    if certs.is_empty() {
        anyhow::bail!("ACCESS_PROXY_UPSTREAM_CA_FILE holds no certificate");
    }
    Ok(certs)
}

/// The TLS client settings for an `https://` upstream: the web's usual roots and
/// `extra_ca`, HTTP/1.1 (the proxy speaks it, and a WebSocket upgrade needs it).
fn upstream_tls(
    extra_ca: &[rustls::pki_types::CertificateDer<'static>],
) -> anyhow::Result<std::sync::Arc<rustls::ClientConfig>> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    for cert in extra_ca {
        roots.add(cert.clone())?;
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(std::sync::Arc::new(config))
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl AccessState {
    pub fn new(config: &Config) -> anyhow::Result<Self> {
        let access = &config.access;
        let extra_ca = match &access.access_proxy_upstream_ca_file {
            Some(path) => extra_ca(path)?,
            None => Vec::new(),
        };
        let client = match &access.access_proxy_upstream {
            Some(url) => {
                let tls = match url.scheme() {
                    "https" => Some(upstream_tls(&extra_ca)?),
                    _ => None,
                };
                Some(upstream::UpstreamClient::new(
                    url,
                    tls,
                    access.access_proxy_connect_timeout.0,
                )?)
            }
            None => None,
        };
        Ok(Self {
            keys: tokens::AccessKeys::load(access, &config.data_dir)?,
            prices: access.prices().map_err(anyhow::Error::msg)?,
            memory: Mutex::default(),
            touched: Mutex::default(),
            sockets: Mutex::default(),
            next_socket: std::sync::atomic::AtomicU64::new(1),
            client,
            upstream_origin: config
                .access
                .access_proxy_upstream
                .as_ref()
                .map(|u| u.origin().ascii_serialization())
                .unwrap_or_default(),
            forwarded_proto: poem::http::HeaderValue::from_str(config.public_url().scheme())
                .expect("a URL scheme is a valid header value"),
            public_url: config.public_url(),
        })
    }

    /// What this instance learned about a token in the last few seconds.
    fn remembered(&self, token_id: Uuid) -> Option<bool> {
        let memory = lock(&self.memory);
        let (active, at) = memory.get(&token_id)?;
        service::fresh(*at).then_some(*active)
    }

    fn remember(&self, token_id: Uuid, active: bool) {
        let mut memory = lock(&self.memory);
        if memory.len() >= 100_000 {
            memory.retain(|_, (_, at)| service::fresh(*at));
        }
        memory.insert(token_id, (active, Instant::now()));
    }

    /// A revocation reached this instance: remember it and close the token's sockets.
    fn revoked_here(&self, token_id: Uuid) {
        self.remember(token_id, false);
        let sockets = lock(&self.sockets).remove(&token_id).unwrap_or_default();
        for socket in sockets {
            socket.cancel.cancel();
        }
    }

    /// Forgets what this instance learned about revocations (the next check asks kv).
    pub fn forget_revocation_memory(&self) {
        lock(&self.memory).clear();
    }

    fn forget_all(&self) {
        lock(&self.memory).clear();
        self.keys.forget();
    }

    /// Notes that a token was used; written to the database in batches.
    fn touch(&self, token_id: Uuid) {
        let mut touched = lock(&self.touched);
        if touched.len() < 100_000 {
            touched.insert(token_id);
        }
    }

    fn take_touched(&self) -> Vec<Uuid> {
        lock(&self.touched).drain().collect()
    }

    /// Registers an open socket for `token_id`, unless it already has `max`. The token is
    /// cancelled when the access token is revoked; [`Self::closed`] unregisters.
    fn open_socket(&self, token_id: Uuid, max: usize) -> Option<(u64, CancellationToken)> {
        let mut sockets = lock(&self.sockets);
        // A revocation that arrived since the token was checked: `revoked_here` marks
        // memory before it takes this lock, so it is seen here or closes what we add.
        if self.remembered(token_id) == Some(false) {
            return None;
        }
        let open = sockets.entry(token_id).or_default();
        if open.len() >= max {
            return None;
        }
        let id = self
            .next_socket
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let cancel = CancellationToken::new();
        open.push(OpenSocket {
            id,
            cancel: cancel.clone(),
        });
        Some((id, cancel))
    }

    fn closed(&self, token_id: Uuid, id: u64) {
        let mut sockets = lock(&self.sockets);
        if let Some(open) = sockets.get_mut(&token_id) {
            open.retain(|s| s.id != id);
            if open.is_empty() {
                sockets.remove(&token_id);
            }
        }
    }

    fn open_tokens(&self) -> Vec<Uuid> {
        lock(&self.sockets).keys().copied().collect()
    }

    /// Open proxied WebSockets on this instance.
    pub fn open_socket_count(&self) -> usize {
        lock(&self.sockets).values().map(Vec::len).sum()
    }
}
