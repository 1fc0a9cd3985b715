//! Integration tests: the real server on a real socket. One test binary (one link) for all.

mod access;
mod ads;
mod billing;
mod cli;
mod database;
mod graphql_http;
mod health;
mod helpers;
mod identity;
mod identity_codes;
mod identity_oauth;
mod kv;
mod mail;
mod redis_outage;
mod schema;
mod secrets;
mod shutdown;
mod spa;
mod telemetry;
mod vps;
mod wallet;
mod websocket;
