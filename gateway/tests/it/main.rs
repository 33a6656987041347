//! The gateway's tests: one binary, so the support code (a real server on port 0 with its own
//! database, NATS namespace, SMTP server, WebSocket and SSE clients) is compiled once.
//!
//! Run one area with a filter: `cargo test -p gateway --test it access::`.

mod support;

mod access;
mod api;
mod architecture;
mod board;
mod cli;
mod collab;
mod documents;
mod erasure;
mod errors;
mod escalation;
mod feeds;
mod idempotency;
mod identity;
mod limits;
mod lists;
mod live;
mod nodes;
mod openapi;
mod orgs;
mod production;
mod quickstart;
mod read_your_writes;
mod receipts;
mod sealed;
mod signin_links;
mod smtp;
mod startup;
mod writes;
mod ws_protocol;
