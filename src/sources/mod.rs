//! Webhook sources: how an inbound webhook is authenticated, rate limited and described
//! (docs/operations.md, "Webhook sources") — pure code over headers, bytes and an injected clock in
//! `client_ip`, `extract`, `ratelimit` and `verify` — and the in-memory registry of configured
//! sources with the LISTEN thread that keeps it current (`registry`, `listen`).

pub mod client_ip;
pub mod extract;
pub mod listen;
pub mod local_path;
pub mod ratelimit;
pub mod registry;
pub mod verify;
