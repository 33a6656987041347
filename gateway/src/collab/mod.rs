//! `/collab/{doc_id}`: collaborative documents over the y-websocket protocol, so a stock
//! `y-websocket` `WebsocketProvider` connects as it is; and `/collab`, the Hocuspocus protocol
//! over the same rooms ([`hocuspocus`]).
//!
//! - Frames are binary y-protocol messages: sync (step 1, step 2, update), awareness,
//!   query-awareness, auth.
//! - Who: the session cookie (from a page of Cairn's own origin, as `/ws`), an API key with
//!   `docs:read`, or `?ticket=` ([`ticket`]). The access policy decides, as for every read: members of the document's
//!   organization read it. Writers also need `docs.edit` there (and `docs:write` for a key);
//!   everyone else is read-only, and their updates are dropped, never stored.
//! - Refused: the `auth` message `permission-denied` with a reason, then the socket closes.
//! - Every update is stored before anyone else sees it ([`room`]).
//! - Frames are at most 1 MiB plus framing; a connection's queue holds [`room::QUEUE`] frames,
//!   and a connection that lets it fill is closed.

pub mod connection;
pub mod hocuspocus;
pub mod room;
pub mod ticket;

pub use connection::router;
pub use room::Rooms;
