//! Shared plumbing every domain builds on: database, kv and pub/sub, HTTP middleware and
//! probes, telemetry, the audit log.

pub mod audit;
pub mod db;
pub mod http;
pub mod kv;
pub mod mail;
pub mod telemetry;
