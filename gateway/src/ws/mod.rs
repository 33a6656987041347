//! `/ws`: live boards over WebSocket. [`protocol`] is the wire, [`hub`] routes bus events to
//! rooms, [`connection`] serves one client.

pub mod connection;
pub mod hub;
pub mod protocol;

pub use connection::router;
pub use hub::Hub;
