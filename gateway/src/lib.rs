//! Cairn's gateway: the only crate that knows HTTP, WebSocket and JSON wire shapes.
//!
//! It turns requests into commands for the `commands` crate and reads from `eventstore` (and,
//! as they land, projections). **It must not** make domain decisions or write events itself.
//!
//! Where to start reading:
//! - [`App`]: the startup seam. `App::build(config)` binds the listener and returns a handle;
//!   tests bind port 0 and shut down gracefully through [`App::shutdown_token`].
//! - [`config::Config`]: every setting, from the environment, with working defaults.
//! - `routes`: one module per resource, each with its `router()`.
//! - [`error::ApiError`]: the one error shape, `{"error":{"code","message","details"}}`.
//! - `bench`: `cairn bench`, figures printed beside anchors measured in the same run.

pub mod auth;
pub mod bench;
pub mod config;
pub mod error;
mod extract;
mod limits;
pub mod live;
mod metrics;
mod routes;
mod startup;
mod state;
pub mod telemetry;

#[doc(hidden)]
pub use routes::api_routes;
pub use startup::{secret_key, App};
