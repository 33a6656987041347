//! The hub: routes bus events to `/ws` rooms, and applies access changes (which travel on the
//! bus like any event) before it routes the next event.
//!
//! Each connection has a bounded queue. The hub never waits on a connection: a full queue
//! closes that connection (a slow consumer), and everyone else carries on.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::ws::Utf8Bytes;
use eventstore::Cursor;
use futures::future::BoxFuture;
use projections::consumers::bus::CloudEvent;
use projections::read_models::access::{Change, Reader};
use serde_json::json;
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::ws::protocol::{
    data_frame, error_frame, frame, messages_for, now_ms, revoked_messages, Channel, Room,
};

/// How the hub decides again, after a change of rights, who may still read an
/// organization's administration channel. The server implements it over the memberships read
/// model (once that includes the change); the hub itself knows no state.
pub trait Decide: Send + Sync + 'static {
    /// For each of `readers`, in order, whether they may still read `org`'s administration
    /// channel once the read model includes `at`. Anything not decided in time is `false`
    /// (the hub fails closed).
    fn still_admin(&self, org: Uuid, readers: Vec<Reader>, at: Cursor) -> BoxFuture<'_, Vec<bool>>;
}

/// What a connection's writer sends.
#[derive(Debug)]
pub(crate) enum Outbound {
    /// A message; `Some(cursor)` for data messages, which are dropped at or behind the last
    /// cursor sent (no duplicates across a `since` replay and the live stream).
    Frame(Utf8Bytes, Option<Cursor>),
    /// Replay the room's events after `since` from PostgreSQL, then carry on live.
    Replay { room: Room, since: Cursor },
    /// Close with this code and reason.
    Close(u16, &'static str),
}

#[derive(Debug)]
pub(crate) struct Member {
    pub(crate) tx: mpsc::Sender<Outbound>,
    pub(crate) kill: CancellationToken,
    /// Who is reading (`None`: anonymous), for deciding again when access changes.
    pub(crate) reader: Option<Reader>,
}

/// A signed-in connection, wherever it is (in a room or the waiting room): a credential that
/// ends closes it.
#[derive(Debug)]
pub(crate) struct SignedIn {
    pub(crate) tx: mpsc::Sender<Outbound>,
    pub(crate) reader: Reader,
}

/// Routes bus events to rooms, and applies access changes (which travel on the bus like any
/// event) before routing the next event. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Hub {
    inner: Arc<HubInner>,
}

#[derive(Debug, Default)]
pub(crate) struct HubInner {
    rooms: Mutex<HashMap<Room, HashMap<u64, Member>>>,
    signed_in: Mutex<HashMap<u64, SignedIn>>,
    next_id: AtomicU64,
    connections: AtomicU64,
    slow_closed: AtomicU64,
}

impl Hub {
    /// Open connections.
    pub fn connections(&self) -> u64 {
        self.inner.connections.load(Ordering::Relaxed)
    }

    /// Counts a new connection and returns its id.
    pub(crate) fn connected(&self) -> u64 {
        self.inner.connections.fetch_add(1, Ordering::Relaxed);
        self.inner.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Records a signed-in connection, so that its credential ending closes it.
    pub(crate) fn sign_in(&self, id: u64, tx: mpsc::Sender<Outbound>, reader: Reader) {
        self.signed_in().insert(id, SignedIn { tx, reader });
    }

    /// Forgets connection `id` (its rooms are left by the connection itself).
    pub(crate) fn disconnected(&self, id: u64) {
        self.signed_in().remove(&id);
        self.inner.connections.fetch_sub(1, Ordering::Relaxed);
    }

    /// Connections closed for being too slow.
    pub fn slow_closed(&self) -> u64 {
        self.inner.slow_closed.load(Ordering::Relaxed)
    }

    pub(crate) fn rooms(&self) -> std::sync::MutexGuard<'_, HashMap<Room, HashMap<u64, Member>>> {
        self.inner.rooms.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues `message` for every member of `room` except `skip`; closes members whose queue
    /// is full.
    pub(crate) fn send_room(
        &self,
        room: &Room,
        skip: Option<u64>,
        message: &Utf8Bytes,
        cursor: Option<Cursor>,
    ) {
        let mut rooms = self.rooms();
        let Some(members) = rooms.get_mut(room) else {
            return;
        };
        members.retain(|id, member| {
            if Some(*id) == skip {
                return true;
            }
            match member.tx.try_send(Outbound::Frame(message.clone(), cursor)) {
                Ok(()) => true,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    self.inner.slow_closed.fetch_add(1, Ordering::Relaxed);
                    member.kill.cancel();
                    false
                }
                Err(mpsc::error::TrySendError::Closed(_)) => false,
            }
        });
        if members.is_empty() {
            rooms.remove(room);
        }
    }

    /// Adds a member; returns how many the room has now.
    pub(crate) fn join(&self, room: Room, id: u64, member: Member) -> usize {
        let mut rooms = self.rooms();
        let members = rooms.entry(room).or_default();
        members.insert(id, member);
        members.len()
    }

    fn signed_in(&self) -> std::sync::MutexGuard<'_, HashMap<u64, SignedIn>> {
        self.inner
            .signed_in
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Takes the members of `room` that `pick` chooses out of it, and tells each it lost the
    /// channel (`ERROR ACCESS_REVOKED`, then `UNSUBSCRIBED`).
    fn revoke(&self, room: &Room, pick: impl Fn(u64, &Member) -> bool) {
        let mut rooms = self.rooms();
        let Some(members) = rooms.get_mut(room) else {
            return;
        };
        members.retain(|id, member| {
            if !pick(*id, member) {
                return true;
            }
            for message in revoked_messages(room) {
                if member.tx.try_send(Outbound::Frame(message, None)).is_err() {
                    member.kill.cancel();
                }
            }
            false
        });
        if members.is_empty() {
            rooms.remove(room);
        }
    }

    /// Applies an access change before the next event is routed: a credential that ended
    /// closes its connections (4401); leaving an organization takes its channels away; a
    /// change of rights has the administration channel decided again from the read model,
    /// once it includes the change (`at`), failing closed if it does not in time.
    async fn enforce(&self, decide: &dyn Decide, change: Change, at: Cursor) {
        match change {
            Change::CredentialEnded { .. } => {
                let ended: Vec<u64> = self
                    .signed_in()
                    .iter()
                    .filter(|(_, c)| change.ends(&c.reader))
                    .map(|(id, c)| {
                        let _ = c.tx.try_send(Outbound::Frame(
                            error_frame("ACCESS_REVOKED", "your sign-in ended"),
                            None,
                        ));
                        let _ = c.tx.try_send(Outbound::Close(4401, "access revoked"));
                        *id
                    })
                    .collect();
                if ended.is_empty() {
                    return;
                }
                let mut rooms = self.rooms();
                for members in rooms.values_mut() {
                    members.retain(|id, _| !ended.contains(id));
                }
                rooms.retain(|_, members| !members.is_empty());
            }
            Change::LeftOrganization { org, user } => {
                for channel in [Channel::Tasks, Channel::Admin] {
                    let room = (org.to_string(), channel);
                    self.revoke(&room, |_, m| {
                        m.reader.as_ref().and_then(Reader::user) == Some(user)
                    });
                }
            }
            Change::RightsChanged { org, user } => {
                let room = (org.to_string(), Channel::Admin);
                let readers: Vec<(u64, Reader)> = self
                    .rooms()
                    .get(&room)
                    .map(|members| {
                        members
                            .iter()
                            .filter_map(|(id, m)| Some((*id, m.reader.clone()?)))
                            .filter(|(_, r)| user.is_none() || r.user() == user)
                            .collect()
                    })
                    .unwrap_or_default();
                if readers.is_empty() {
                    return;
                }
                let (ids, readers): (Vec<u64>, Vec<Reader>) = readers.into_iter().unzip();
                let keeps = decide.still_admin(org, readers, at).await;
                let lost: Vec<u64> = ids
                    .into_iter()
                    .zip(keeps.into_iter().chain(std::iter::repeat(false)))
                    .filter_map(|(id, keeps)| (!keeps).then_some(id))
                    .collect();
                self.revoke(&room, |id, _| lost.contains(&id));
            }
        }
    }

    /// Removes a member; returns how many the room had with it (a member cut off as a slow
    /// consumer is already gone, and still counted).
    pub(crate) fn leave(&self, room: &Room, id: u64) -> usize {
        let mut rooms = self.rooms();
        let Some(members) = rooms.get_mut(room) else {
            return 1;
        };
        members.remove(&id);
        let had = members.len() + 1;
        if members.is_empty() {
            rooms.remove(room);
        }
        had
    }

    /// Routes every event from the bus until `shutdown`; an event that changes access is
    /// enforced first ([`Hub::enforce`]). Events at or behind the last one routed are dropped (a relay that republished after a crash). If this node falls behind
    /// the bus, every subscriber is told `RESYNC_REQUIRED`.
    pub async fn run(
        self,
        decide: Arc<dyn Decide>,
        mut bus: broadcast::Receiver<Arc<CloudEvent>>,
        shutdown: CancellationToken,
    ) {
        let mut last = Cursor::START;
        loop {
            let event = tokio::select! {
                event = bus.recv() => event,
                () = shutdown.cancelled() => return,
            };
            match event {
                Ok(event) => {
                    let Some(cursor) = event.cursor() else {
                        continue;
                    };
                    if cursor <= last {
                        continue;
                    }
                    last = cursor;
                    let stored = event.stored_type();
                    let (aggregate_type, aggregate_id) = event.stream();
                    if let Some(change) =
                        Change::of_event(aggregate_type, aggregate_id, &stored, event.data.get())
                    {
                        self.enforce(decide.as_ref(), change, cursor).await;
                    }
                    let Some(org) = event.cairnorg.clone() else {
                        continue;
                    };
                    for (channel, kind) in messages_for(&stored) {
                        let room = (org.clone(), channel);
                        let message = data_frame(&event, &stored, &org, channel, &kind);
                        self.send_room(&room, None, &message, Some(cursor));
                    }
                }
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    tracing::warn!(
                        missed,
                        "live hub fell behind the bus; asking clients to resync"
                    );
                    let rooms: Vec<Room> = self.rooms().keys().cloned().collect();
                    for room in rooms {
                        let message = frame(&json!({
                            "type": "RESYNC_REQUIRED", "orgId": room.0, "channel": room.1.as_str(),
                            "ts": now_ms(),
                        }));
                        self.send_room(&room, None, &message, None);
                    }
                }
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    }
}
