//! The hub: routes bus events to `/ws` rooms, and applies access changes (which travel on the
//! bus like any event) before it routes the next event.
//!
//! Each connection has a bounded queue. The hub never waits on a connection: a full queue
//! closes that connection (a slow consumer), and everyone else carries on.
//!
//! Each room has its own lock: a fan-out holds only its room's, and the map of rooms is
//! locked only to find or add a room (never while anything is sent), so a join or leave of
//! one room never waits for another room's fan-out.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

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
    /// Locked only to find, add or remove a room; each room locks its own members.
    rooms: RwLock<HashMap<Room, Arc<RoomState>>>,
    signed_in: Mutex<HashMap<u64, SignedIn>>,
    next_id: AtomicU64,
    connections: AtomicU64,
    slow_closed: AtomicU64,
}

/// One room: its members, behind a lock of its own.
#[derive(Debug, Default)]
pub(crate) struct RoomState {
    members: Mutex<Members>,
}

/// The members of one room, by connection id.
#[derive(Debug, Default)]
pub(crate) struct Members {
    by_id: HashMap<u64, Member>,
    /// Emptied and on its way out of the hub's map: a join that finds it takes a new one.
    closed: bool,
}

impl RoomState {
    /// The room's members, for as long as the guard lives: what a fan-out holds.
    pub(crate) fn lock(&self) -> MutexGuard<'_, Members> {
        self.members.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Members {
    /// Marks the room closed if it has no members left; `true` if so (its caller then takes
    /// it out of the hub's map, once it no longer holds this lock).
    fn close_if_empty(&mut self) -> bool {
        self.closed = self.by_id.is_empty();
        self.closed
    }
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

    /// The room, if anyone is in it. The map's lock is held only for the lookup.
    pub(crate) fn room(&self, room: &Room) -> Option<Arc<RoomState>> {
        self.inner
            .rooms
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(room)
            .cloned()
    }

    /// Every room with someone in it, as it is now.
    fn all_rooms(&self) -> Vec<Room> {
        self.inner
            .rooms
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .cloned()
            .collect()
    }

    /// Takes `state`, found closed, out of the map (unless a new room took its place).
    fn unlink(&self, room: &Room, state: &Arc<RoomState>) {
        let mut rooms = self.inner.rooms.write().unwrap_or_else(|p| p.into_inner());
        if rooms.get(room).is_some_and(|s| Arc::ptr_eq(s, state)) {
            rooms.remove(room);
        }
    }

    /// Runs `change` on `room`'s members under the room's own lock, then takes the room out
    /// of the map if that left it empty.
    fn with_members<T>(&self, room: &Room, change: impl FnOnce(&mut Members) -> T) -> Option<T> {
        let state = self.room(room)?;
        let (result, closed) = {
            let mut members = state.lock();
            if members.closed {
                return None;
            }
            let result = change(&mut members);
            (result, members.close_if_empty())
        };
        if closed {
            self.unlink(room, &state);
        }
        Some(result)
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
        self.with_members(room, |members| {
            members.by_id.retain(|id, member| {
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
        });
    }

    /// Adds a member; returns how many the room has now.
    pub(crate) fn join(&self, room: Room, id: u64, member: Member) -> usize {
        loop {
            let state = match self.room(&room) {
                Some(state) => state,
                None => self
                    .inner
                    .rooms
                    .write()
                    .unwrap_or_else(|p| p.into_inner())
                    .entry(room.clone())
                    .or_default()
                    .clone(),
            };
            let mut members = state.lock();
            if members.closed {
                // Emptied just now by someone else: out with it, and into a new one.
                drop(members);
                self.unlink(&room, &state);
                continue;
            }
            members.by_id.insert(id, member);
            return members.by_id.len();
        }
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
        self.with_members(room, |members| {
            members.by_id.retain(|id, member| {
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
        });
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
                for room in self.all_rooms() {
                    self.with_members(&room, |members| {
                        members.by_id.retain(|id, _| !ended.contains(id));
                    });
                }
            }
            Change::LeftOrganization { org, user } => {
                for channel in [Channel::Tasks, Channel::Docs, Channel::Admin] {
                    let room = (org.to_string(), channel);
                    self.revoke(&room, |_, m| {
                        m.reader.as_ref().and_then(Reader::user) == Some(user)
                    });
                }
            }
            Change::RightsChanged { org, user } => {
                let room = (org.to_string(), Channel::Admin);
                let readers: Vec<(u64, Reader)> = self
                    .with_members(&room, |members| {
                        members
                            .by_id
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
        self.with_members(room, |members| {
            members.by_id.remove(&id);
            members.by_id.len() + 1
        })
        .unwrap_or(1)
    }

    /// Routes every event from the bus until `shutdown`; an event that changes access is
    /// enforced first ([`Hub::enforce`]). Events at or behind the last one routed are dropped (a
    /// relay that republished after a crash). If this node falls behind the bus, every
    /// subscriber is told `RESYNC_REQUIRED`.
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
                    for room in self.all_rooms() {
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

#[cfg(test)]
mod tests {
    use std::sync::mpsc as sync_mpsc;
    use std::time::Duration;

    use super::*;

    fn member() -> (Member, mpsc::Receiver<Outbound>) {
        let (tx, rx) = mpsc::channel(8);
        let member = Member {
            tx,
            kill: CancellationToken::new(),
            reader: None,
        };
        (member, rx)
    }

    fn room(channel: Channel) -> Room {
        (Uuid::nil().to_string(), channel)
    }

    /// Runs `work` on a thread of its own; whether it finished within a second.
    fn finishes(work: impl FnOnce() + Send + 'static) -> bool {
        let (done, finished) = sync_mpsc::channel();
        std::thread::spawn(move || {
            work();
            let _ = done.send(());
        });
        finished.recv_timeout(Duration::from_secs(1)).is_ok()
    }

    /// Room A's fan-out holds A's lock (and nothing else) while it queues a message for each
    /// member. With it held, room B is joined, sent to and left; only A itself waits.
    #[test]
    fn one_rooms_fan_out_never_holds_up_another_room() {
        let hub = Hub::default();
        let (a, b) = (room(Channel::Tasks), room(Channel::Public));
        let (in_a, _a_queue) = member();
        hub.join(a.clone(), 1, in_a);
        let room_a = hub.room(&a).expect("room A");
        let fanning_out = room_a.lock();

        let (in_b, mut b_queue) = member();
        let other = hub.clone();
        let b_room = b.clone();
        assert!(
            finishes(move || {
                assert_eq!(other.join(b_room.clone(), 2, in_b), 1);
                other.send_room(&b_room, None, &Utf8Bytes::from_static("hello"), None);
                assert_eq!(other.leave(&b_room, 2), 1);
            }),
            "room B waited for room A's fan-out"
        );
        assert!(matches!(b_queue.try_recv(), Ok(Outbound::Frame(..))));
        assert!(hub.room(&b).is_none(), "an empty room is dropped");

        // A join to A itself does wait for A's fan-out, and goes through after it.
        let (second, _second_queue) = member();
        let other = hub.clone();
        let a_room = a.clone();
        let (joined, join_done) = sync_mpsc::channel();
        std::thread::spawn(move || {
            let _ = joined.send(other.join(a_room, 3, second));
        });
        assert!(join_done.recv_timeout(Duration::from_millis(200)).is_err());
        drop(fanning_out);
        assert_eq!(join_done.recv_timeout(Duration::from_secs(5)), Ok(2));
    }

    /// A room emptied while a join was on its way to it is replaced, not joined: the member
    /// lands in the room the hub routes to.
    #[test]
    fn a_join_racing_the_last_leave_lands_in_a_live_room() {
        let hub = Hub::default();
        let a = room(Channel::Tasks);
        let (first, _first_queue) = member();
        hub.join(a.clone(), 1, first);
        let stale = hub.room(&a).expect("room A");
        assert_eq!(hub.leave(&a, 1), 1);
        assert!(stale.lock().closed, "the emptied room is closed");
        let (second, mut queue) = member();
        assert_eq!(hub.join(a.clone(), 2, second), 1);
        let live = hub.room(&a).expect("room A again");
        assert!(!Arc::ptr_eq(&stale, &live));
        hub.send_room(&a, None, &Utf8Bytes::from_static("hello"), None);
        assert!(matches!(queue.try_recv(), Ok(Outbound::Frame(..))));
    }
}
