//! HTTP plumbing shared by every resource: the router and its layers, the one error shape with
//! its closed set of codes, extractors, and who is calling.

pub mod auth;
pub mod error;
pub mod extract;
pub mod limits;
pub mod metrics;
pub mod principal;
pub mod router;
