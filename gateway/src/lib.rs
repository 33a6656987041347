//! Cairn's gateway: the only crate that knows HTTP, WebSocket and JSON wire shapes.
//!
//! It turns requests into commands for the `commands` crate and reads through `projections`
//! and `eventstore`. **It must not** make domain decisions, write events itself, or hold SQL.
//!
//! Where to start reading:
//! - [`App`]: the startup seam. `App::build(config)` binds the listener and returns a handle;
//!   tests bind port 0 and shut down gracefully through [`App::shutdown_token`].
//! - [`config::Config`]: every setting, from the environment, with working defaults.
//! - `http`: the router and its layers, the one error shape (`http::error::ApiError`,
//!   `{"error":{"code","message","details"}}`, its `code` from the closed set
//!   `http::error::ErrorCode`), extractors, and who is calling.
//! - `api`: one module per resource, each with its `router()` and its OpenAPI `Doc`
//!   (`api::openapi` serves the document generated from them).
//! - `ws`: the `/ws` board protocol: its messages, the hub, one connection.
//! - `state`: the handles every handler shares (it imports no feature).
//!
//! The `cairn` subcommands (and `cairn bench`) live in the binary, under `src/cli/`.

mod api;
mod collab;
pub mod config;
mod http;
mod lookups;
mod startup;
mod state;
pub mod telemetry;
mod ws;

#[doc(hidden)]
pub use api::api_routes;
#[doc(hidden)]
pub use http::error::error_codes;
pub use startup::{secret_key, App, StartError};
