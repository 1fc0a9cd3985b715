//! Loopback fakes of the third parties Tessera talks to, each speaking the real wire
//! protocol, for tests (in-process, on an ephemeral port) and for development (the
//! `tessera-fakes` binary). Today: SMTP, the sign-in providers (an OIDC issuer, Discord, GitHub) and an upstream
//! for the access proxy. Stripe, Turnstile and the
//! ad networks follow with their domains.

#![forbid(unsafe_code)]

pub mod oauth;
pub mod smtp;
pub mod upstream;
