//! Live boards: the `/ws` endpoint (the Sayr protocol) and the hub that routes bus events to
//! its rooms.
//!
//! - On connect the server sends `CONNECTION_STATUS {authenticated, wsClientId}`.
//! - Clients send `SUBSCRIBE {orgId, channel, since?}`, `UNSUBSCRIBE` and `PONG`; before the
//!   first `SUBSCRIBE` nothing else is accepted (the waiting room).
//! - The server sends `SUBSCRIBED`, `UNSUBSCRIBED`, `USER_SUBSCRIBED` / `USER_UNSUBSCRIBED`,
//!   `ERROR {code}`, `PING`, `RESYNC_REQUIRED` and data messages (`CREATE_TASK`, …) carrying
//!   `{orgId, channel, ts, cursor, data}`.
//!
//! Each connection has a bounded queue. The hub never waits on a connection: a full queue
//! closes that connection (a slow consumer), and everyone else carries on.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::http::{header, HeaderMap};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use eventstore::{Cursor, EventFilter, Store};
use futures::{SinkExt, StreamExt};
use projections::consumers::bus::CloudEvent;
use projections::read_models::access::{Access, Change, Class, Reader};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{json, Value};
use tokio::sync::{broadcast, mpsc};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::auth::{MaybeAuth, Principal};
use crate::state::AppState;

/// A room's channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Channel {
    /// Open to anonymous clients: the organization's public name.
    Public,
    /// Members: tasks, labels and categories.
    Tasks,
    /// Administrators: membership and teams.
    Admin,
}

impl Channel {
    fn parse(s: &str) -> Option<Self> {
        match s {
            "public" => Some(Self::Public),
            "tasks" => Some(Self::Tasks),
            "admin" => Some(Self::Admin),
            _ => None,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Self::Public => "public",
            Self::Tasks => "tasks",
            Self::Admin => "admin",
        }
    }

    /// What the access policy calls what this channel carries.
    fn class(self) -> Class {
        match self {
            Self::Public => Class::Public,
            Self::Tasks => Class::Board,
            Self::Admin => Class::Admin,
        }
    }

    /// The aggregate types whose events this channel carries (for `since` replays).
    fn aggregate_types(self) -> Vec<String> {
        match self {
            Self::Tasks => vec!["task".into(), "label".into(), "category".into()],
            Self::Public | Self::Admin => vec!["organization".into()],
        }
    }
}

/// `orgId:channel`.
type Room = (String, Channel);

/// The data messages an event of stored type `stored` (`noun.verb`) becomes:
/// `(channel, message type)`.
fn messages_for(stored: &str) -> Vec<(Channel, String)> {
    let (noun, verb) = stored.split_once('.').unwrap_or((stored, ""));
    match noun {
        "task" | "label" | "category" => {
            let action = match verb {
                "created" => "CREATE",
                "deleted" => "DELETE",
                _ => "UPDATE",
            };
            vec![(Channel::Tasks, format!("{action}_{}", noun.to_uppercase()))]
        }
        "organization" => {
            let mut out = vec![(Channel::Admin, "UPDATE_ORGANIZATION".to_owned())];
            if matches!(verb, "created" | "renamed") {
                out.push((Channel::Public, "UPDATE_ORGANIZATION".to_owned()));
            }
            out
        }
        _ => Vec::new(),
    }
}

fn now_ms() -> i64 {
    (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

fn frame(value: &Value) -> Utf8Bytes {
    Utf8Bytes::from(value.to_string())
}

fn error_frame(code: &str, message: &str) -> Utf8Bytes {
    frame(&json!({"type": "ERROR", "code": code, "message": message, "ts": now_ms()}))
}

/// What a member that lost `room` is told.
fn revoked_messages(room: &Room) -> [Utf8Bytes; 2] {
    [
        frame(&json!({
            "type": "ERROR", "code": "ACCESS_REVOKED", "orgId": room.0,
            "channel": room.1.as_str(), "message": "you may no longer read this channel",
            "ts": now_ms(),
        })),
        frame(&json!({
            "type": "UNSUBSCRIBED", "scope": "INDIVIDUAL", "orgId": room.0,
            "channel": room.1.as_str(), "ts": now_ms(),
        })),
    ]
}

/// A data message on the wire.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct DataMessage<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    scope: &'static str,
    org_id: &'a str,
    channel: &'static str,
    ts: i64,
    cursor: &'a str,
    data: DataBody<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct DataBody<'a> {
    id: &'a str,
    aggregate_type: &'a str,
    event: &'a str,
    event_id: &'a str,
    sequence: i64,
    time: &'a str,
    /// The event's payload, copied as stored (not parsed again).
    changes: &'a RawValue,
}

/// The data message for `event` (of stored type `stored`) on `channel`.
fn data_frame(
    event: &CloudEvent,
    stored: &str,
    org: &str,
    channel: Channel,
    kind: &str,
) -> Utf8Bytes {
    let (aggregate_type, aggregate_id) = event.stream();
    let message = DataMessage {
        kind,
        scope: "CHANNEL",
        org_id: org,
        channel: channel.as_str(),
        ts: now_ms(),
        cursor: &event.cairncursor,
        data: DataBody {
            id: aggregate_id,
            aggregate_type,
            event: stored,
            event_id: &event.id,
            sequence: event.cairnsequence,
            time: &event.time,
            changes: &event.data,
        },
    };
    // A struct of strings and a raw value always serializes.
    Utf8Bytes::from(serde_json::to_string(&message).unwrap_or_default())
}

/// What a connection's writer sends.
#[derive(Debug)]
enum Outbound {
    /// A message; `Some(cursor)` for data messages, which are dropped at or behind the last
    /// cursor sent (no duplicates across a `since` replay and the live stream).
    Frame(Utf8Bytes, Option<Cursor>),
    /// Replay the room's events after `since` from PostgreSQL, then carry on live.
    Replay { room: Room, since: Cursor },
    /// Close with this code and reason.
    Close(u16, &'static str),
}

#[derive(Debug)]
struct Member {
    tx: mpsc::Sender<Outbound>,
    kill: CancellationToken,
    /// Who is reading (`None`: anonymous), for deciding again when access changes.
    reader: Option<Reader>,
}

/// A signed-in connection, wherever it is (in a room or the waiting room): a credential that
/// ends closes it.
#[derive(Debug)]
struct SignedIn {
    tx: mpsc::Sender<Outbound>,
    reader: Reader,
}

/// Routes bus events to rooms, and applies access changes (which travel on the bus like any
/// event) before routing the next event. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Hub {
    inner: Arc<HubInner>,
}

#[derive(Debug, Default)]
struct HubInner {
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

    /// Connections closed for being too slow.
    pub fn slow_closed(&self) -> u64 {
        self.inner.slow_closed.load(Ordering::Relaxed)
    }

    fn rooms(&self) -> std::sync::MutexGuard<'_, HashMap<Room, HashMap<u64, Member>>> {
        self.inner.rooms.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues `message` for every member of `room` except `skip`; closes members whose queue
    /// is full.
    fn send_room(
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
    fn join(&self, room: Room, id: u64, member: Member) -> usize {
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
    async fn enforce(&self, state: &AppState, change: Change, at: Cursor) {
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
                let mut lost = Vec::new();
                let ready = match state.ready() {
                    Ok(ready) => match ready
                        .caught_up(projections::read_models::memberships::NAME, at)
                        .await
                    {
                        Ok(()) => Some(ready),
                        Err(e) => {
                            tracing::warn!(%org, "closing the admin channel to be safe: {e}");
                            None
                        }
                    },
                    Err(_) => None,
                };
                for (id, reader) in readers {
                    let keeps = match ready {
                        Some(ready) => Access::load_org(ready.store.pool(), reader, org)
                            .await
                            .is_ok_and(|a| a.may_read(Class::Admin, Some(org), None)),
                        None => false,
                    };
                    if !keeps {
                        lost.push(id);
                    }
                }
                self.revoke(&room, |id, _| lost.contains(&id));
            }
        }
    }

    /// Removes a member; returns how many the room had with it (a member cut off as a slow
    /// consumer is already gone, and still counted).
    fn leave(&self, room: &Room, id: u64) -> usize {
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
        state: AppState,
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
                        self.enforce(&state, change, cursor).await;
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

/// `/ws`.
pub fn router() -> Router<AppState> {
    Router::new().route("/ws", get(upgrade))
}

async fn upgrade(
    State(state): State<AppState>,
    MaybeAuth(principal): MaybeAuth,
    crate::extract::ClientIp(client): crate::extract::ClientIp,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    // A cookie rides along on cross-site WebSocket handshakes too: only a page of our own
    // origin (or a client with an API key) gets the signed-in view.
    let principal = principal.filter(|p| p.is_api_key() || same_origin(&state, &headers));
    ws.max_message_size(16 * 1024)
        .read_buffer_size(4 * 1024)
        .write_buffer_size(4 * 1024)
        .on_upgrade(move |socket| connection(state, principal, client, socket))
}

fn same_origin(state: &AppState, headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|o| o.to_str().ok()) else {
        // Not a browser: no ambient cookie to worry about.
        return true;
    };
    let ours = state.config().public_url.origin().ascii_serialization();
    origin == ours
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ClientMessage {
    #[serde(rename = "type")]
    kind: String,
    org_id: Option<String>,
    channel: Option<String>,
    since: Option<String>,
}

/// Everything one connection needs.
struct Conn {
    state: AppState,
    hub: Hub,
    principal: Option<Principal>,
    id: u64,
    client_id: String,
    tx: mpsc::Sender<Outbound>,
    kill: CancellationToken,
    room: Option<Room>,
}

impl Conn {
    fn send(&self, value: Value) {
        if self
            .tx
            .try_send(Outbound::Frame(frame(&value), None))
            .is_err()
        {
            self.kill.cancel();
        }
    }

    fn error(&self, code: &str, message: &str) {
        if self
            .tx
            .try_send(Outbound::Frame(error_frame(code, message), None))
            .is_err()
        {
            self.kill.cancel();
        }
    }

    fn presence(&self, kind: &str, room: &Room) -> Utf8Bytes {
        frame(&json!({
            "type": kind, "scope": "CHANNEL", "orgId": room.0, "channel": room.1.as_str(),
            "ts": now_ms(),
            "data": {
                "wsClientId": self.client_id,
                // Who is reading an organization's public channel is not public.
                "userId": self.principal.as_ref()
                    .filter(|_| room.1 != Channel::Public)
                    .map(|p| p.user_id.to_string()),
            },
        }))
    }

    fn leave_room(&mut self) {
        if let Some(room) = self.room.take() {
            let had = self.hub.leave(&room, self.id);
            self.announce("USER_UNSUBSCRIBED", &room, had);
        }
    }

    /// Tells the rest of `room` that this connection came or went, if the room (counting
    /// this connection) is small enough for presence: announcing every arrival to everyone
    /// costs the square of the room's size, which would stall a node that 10,000 clients
    /// reconnect to.
    fn announce(&self, kind: &str, room: &Room, members: usize) {
        if members <= self.state.config().ws_presence_limit {
            let message = self.presence(kind, room);
            self.hub.send_room(room, Some(self.id), &message, None);
        }
    }

    /// Whether this connection may join `channel` of `org`, by the access policy (an `ERROR`
    /// code if not).
    async fn authorize(&self, org: uuid::Uuid, channel: Channel) -> Result<(), &'static str> {
        let class = channel.class();
        let Some(principal) = &self.principal else {
            return if class == Class::Public {
                Ok(())
            } else {
                Err("UNAUTHORIZED")
            };
        };
        if !principal.reader().scoped_for(class) {
            return Err("FORBIDDEN");
        }
        let Ok(ready) = self.state.ready() else {
            return Err("UNAVAILABLE");
        };
        match ready.access(Some(principal), Some(org)).await {
            Ok(access) if !access.is_live() => Err("UNAUTHORIZED"),
            Ok(access) if access.may_read(class, Some(org), None) => Ok(()),
            Ok(_) => Err("FORBIDDEN"),
            Err(_) => Err("UNAVAILABLE"),
        }
    }

    /// Whether this connection's credential still stands (a dead one reads nothing).
    async fn still_signed_in(&self) -> bool {
        let (Some(principal), Ok(ready)) = (&self.principal, self.state.ready()) else {
            return true;
        };
        projections::read_models::access::is_live(ready.store.pool(), &principal.reader())
            .await
            .unwrap_or(true)
    }

    async fn subscribe(&mut self, message: ClientMessage) {
        let (Some(org), Some(channel)) = (message.org_id, message.channel) else {
            return self.error("BAD_REQUEST", "SUBSCRIBE needs orgId and channel");
        };
        let Ok(org_uuid) = uuid::Uuid::parse_str(&org) else {
            return self.error("BAD_REQUEST", "orgId is not an organization id");
        };
        let Some(channel) = Channel::parse(&channel) else {
            return self.error("BAD_REQUEST", "channel is one of public, tasks, admin");
        };
        let since = match message.since.as_deref().map(str::parse::<Cursor>) {
            None => None,
            Some(Ok(cursor)) => Some(cursor),
            Some(Err(_)) => return self.error("BAD_CURSOR", "since is not a Cairn cursor"),
        };
        if let Err(code) = self.authorize(org_uuid, channel).await {
            return self.error(code, "you may not subscribe to this channel");
        }
        self.leave_room();
        let room: Room = (org_uuid.to_string(), channel);
        self.send(json!({
            "type": "SUBSCRIBED", "scope": "INDIVIDUAL", "orgId": room.0,
            "channel": channel.as_str(), "ts": now_ms(),
        }));
        // The replay is queued before joining, so every live message for the room lands
        // behind it, and the writer drops those the replay already sent.
        if let Some(since) = since {
            if self
                .tx
                .try_send(Outbound::Replay {
                    room: room.clone(),
                    since,
                })
                .is_err()
            {
                self.kill.cancel();
                return;
            }
        }
        let members = self.hub.join(
            room.clone(),
            self.id,
            Member {
                tx: self.tx.clone(),
                kill: self.kill.clone(),
                reader: self.principal.as_ref().map(Principal::reader),
            },
        );
        self.announce("USER_SUBSCRIBED", &room, members);
        self.room = Some(room);
    }
}

async fn connection(
    state: AppState,
    principal: Option<Principal>,
    client: std::net::IpAddr,
    socket: WebSocket,
) {
    let config = state.config().clone();
    let hub = state.hub().clone();
    let id = hub.inner.next_id.fetch_add(1, Ordering::Relaxed);
    hub.inner.connections.fetch_add(1, Ordering::Relaxed);
    let (tx, rx) = mpsc::channel(config.ws_queue);
    let kill = CancellationToken::new();
    let (sink, mut stream) = socket.split();
    let store = state.try_ready().map(|r| r.store.clone());
    let mut writer = tokio::spawn(write(sink, rx, kill.clone(), store, config.ws_replay_limit));
    if let Some(principal) = &principal {
        hub.signed_in().insert(
            id,
            SignedIn {
                tx: tx.clone(),
                reader: principal.reader(),
            },
        );
    }
    // A session ends by itself at its expiry (unless renewed): look again then.
    let mut recheck_at = principal.as_ref().and_then(Principal::recheck_at);
    let mut conn = Conn {
        state,
        hub: hub.clone(),
        principal,
        id,
        client_id: uuid::Uuid::now_v7().to_string(),
        tx,
        kill: kill.clone(),
        room: None,
    };
    conn.send(json!({
        "type": "CONNECTION_STATUS", "scope": "INDIVIDUAL", "ts": now_ms(),
        "data": {"authenticated": conn.principal.is_some(), "wsClientId": conn.client_id},
    }));

    let mut ping = tokio::time::interval_at(Instant::now() + config.ws_ping, config.ws_ping);
    let mut last_pong = Instant::now();
    let mut last_message: Option<Instant> = None;
    let mut offences = 0u32;
    let shutdown = conn.state.shutdown().clone();
    loop {
        tokio::select! {
            () = kill.cancelled() => break,
            () = shutdown.cancelled() => {
                let _ = conn.tx.try_send(Outbound::Close(1001, "server shutting down"));
                break;
            }
            _ = ping.tick() => {
                if last_pong.elapsed() > config.ws_timeout {
                    let _ = conn.tx.try_send(Outbound::Close(1000, "no PONG in time"));
                    break;
                }
                if recheck_at.is_some_and(|at| at <= time::OffsetDateTime::now_utc()) {
                    if !conn.still_signed_in().await {
                        conn.error("ACCESS_REVOKED", "your sign-in ended");
                        let _ = conn.tx.try_send(Outbound::Close(4401, "access revoked"));
                        break;
                    }
                    // Renewed: look again at the next ping.
                    recheck_at = Some(time::OffsetDateTime::now_utc() + config.ws_ping);
                }
                conn.send(json!({"type": "PING", "ts": now_ms()}));
            }
            message = stream.next() => {
                let text = match message {
                    Some(Ok(Message::Text(text))) => text,
                    Some(Ok(Message::Binary(_))) => {
                        conn.error("BAD_MESSAGE", "messages are JSON text");
                        continue;
                    }
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                    Some(Ok(_)) => continue,
                };
                // The minimum interval between client messages; repeat offenders are closed.
                let now = Instant::now();
                let too_soon = last_message.is_some_and(|t| now - t < config.ws_min_interval);
                last_message = Some(now);
                if too_soon {
                    offences += 1;
                    conn.error("RATE_LIMITED", "messages too close together");
                    if offences >= 10 {
                        let _ = conn.tx.try_send(Outbound::Close(1008, "rate limit"));
                        break;
                    }
                    continue;
                }
                let Ok(message) = serde_json::from_str::<ClientMessage>(&text) else {
                    conn.error("BAD_MESSAGE", "expected a JSON object with a type");
                    continue;
                };
                match message.kind.as_str() {
                    "PONG" => last_pong = Instant::now(),
                    // Anonymous subscribes (each may replay) share the address's budget.
                    "SUBSCRIBE" if conn.principal.is_none()
                        && conn.state.limits().anonymous(client).is_err() =>
                    {
                        conn.error("RATE_LIMITED", "too many requests from this address");
                    }
                    "SUBSCRIBE" => conn.subscribe(message).await,
                    "UNSUBSCRIBE" => {
                        if let Some(room) = conn.room.clone() {
                            conn.leave_room();
                            conn.send(json!({
                                "type": "UNSUBSCRIBED", "scope": "INDIVIDUAL", "orgId": room.0,
                                "channel": room.1.as_str(), "ts": now_ms(),
                            }));
                        }
                    }
                    _ if conn.room.is_none() => conn.error(
                        "WAITING_ROOM",
                        "subscribe first: only SUBSCRIBE, UNSUBSCRIBE and PONG are accepted",
                    ),
                    _ => conn.error("UNKNOWN_TYPE", "unknown message type"),
                }
            }
        }
    }
    conn.leave_room();
    hub.signed_in().remove(&id);
    hub.inner.connections.fetch_sub(1, Ordering::Relaxed);
    // Let the writer send what is queued (a close frame), then stop it: a writer still stuck
    // on a socket that takes nothing is aborted, which closes the socket.
    drop(conn);
    if tokio::time::timeout(Duration::from_secs(2), &mut writer)
        .await
        .is_err()
    {
        writer.abort();
    }
}

/// The connection's writer: sends queued messages in order, runs `since` replays, and closes
/// the socket when the connection is killed (a slow consumer) or asked to.
///
/// A send blocked on a full socket is abandoned as soon as the connection is killed, so a
/// client that stops reading holds nothing on the server beyond the close attempt.
async fn write(
    mut sink: futures::stream::SplitSink<WebSocket, Message>,
    mut rx: mpsc::Receiver<Outbound>,
    kill: CancellationToken,
    store: Option<Store>,
    replay_limit: i64,
) {
    let mut last = Cursor::START;
    // One registration for the whole connection, not one per message.
    let killed = kill.cancelled();
    tokio::pin!(killed);
    loop {
        let next = tokio::select! {
            next = rx.recv() => next,
            () = &mut killed => break,
        };
        let result = tokio::select! {
            result = send_one(&mut sink, next, &store, replay_limit, &mut last) => result,
            () = &mut killed => break,
        };
        match result {
            Ok(true) => {}
            // Done (a close frame was sent): the connection ends with it.
            Ok(false) => {
                kill.cancel();
                return;
            }
            Err(_) => {
                kill.cancel();
                return;
            }
        }
    }
    // Killed: say why if the socket still takes a frame, then let it go.
    let _ = tokio::time::timeout(
        Duration::from_secs(1),
        sink.send(close(1008, "slow consumer")),
    )
    .await;
}

/// Sends one queued item; `Ok(false)` once the connection is done.
async fn send_one(
    sink: &mut futures::stream::SplitSink<WebSocket, Message>,
    next: Option<Outbound>,
    store: &Option<Store>,
    replay_limit: i64,
    last: &mut Cursor,
) -> Result<bool, axum::Error> {
    match next {
        None => Ok(false),
        Some(Outbound::Frame(text, cursor)) => {
            if let Some(cursor) = cursor {
                if cursor <= *last {
                    return Ok(true);
                }
                *last = cursor;
            }
            sink.send(Message::Text(text)).await?;
            Ok(true)
        }
        Some(Outbound::Replay { room, since }) => {
            *last = since;
            match store {
                Some(store) => replay(sink, store, &room, since, replay_limit, last).await?,
                None => sink.send(Message::Text(resync(&room))).await?,
            }
            Ok(true)
        }
        Some(Outbound::Close(code, reason)) => {
            let _ = sink.send(close(code, reason)).await;
            Ok(false)
        }
    }
}

fn close(code: u16, reason: &'static str) -> Message {
    Message::Close(Some(CloseFrame {
        code,
        reason: Utf8Bytes::from_static(reason),
    }))
}

fn resync(room: &Room) -> Utf8Bytes {
    frame(&json!({
        "type": "RESYNC_REQUIRED", "orgId": room.0, "channel": room.1.as_str(), "ts": now_ms(),
    }))
}

/// Sends the room's events after `since` from PostgreSQL, or `RESYNC_REQUIRED` if there are
/// more than `limit`.
async fn replay(
    sink: &mut futures::stream::SplitSink<WebSocket, Message>,
    store: &Store,
    room: &Room,
    since: Cursor,
    limit: i64,
    last: &mut Cursor,
) -> Result<(), axum::Error> {
    let filter = EventFilter {
        orgs: Some(vec![room.0.clone()]),
        aggregate_types: Some(room.1.aggregate_types()),
        ..EventFilter::default()
    };
    let events = match store.tail_filtered(since, limit + 1, &filter).await {
        Ok(events) => events,
        Err(e) => {
            tracing::warn!("since replay failed: {e}");
            return sink.send(Message::Text(resync(room))).await;
        }
    };
    if events.len() as i64 > limit {
        return sink.send(Message::Text(resync(room))).await;
    }
    for event in &events {
        let event = CloudEvent::from_recorded(event);
        let stored = event.stored_type();
        for (channel, kind) in messages_for(&stored) {
            if channel == room.1 {
                let message = data_frame(&event, &stored, &room.0, channel, &kind);
                sink.send(Message::Text(message)).await?;
            }
        }
        if let Some(cursor) = event.cursor() {
            *last = cursor;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_data_message_carries_the_payload_as_stored() {
        let event: CloudEvent = serde_json::from_value(json!({
            "specversion": "1.0",
            "id": "e1",
            "source": "/orgs/o1/task/t1",
            "type": "cairn.task.created.v1",
            "subject": "task/t1",
            "time": "2026-11-22T05:00:00Z",
            "datacontenttype": "application/json",
            "data": {"title": "Ship", "labels": [1, 2]},
            "cairncursor": "c1",
            "cairnsequence": 1,
            "cairnorg": "o1",
        }))
        .expect("event");
        let stored = event.stored_type();
        assert_eq!(
            messages_for(&stored),
            vec![(Channel::Tasks, "CREATE_TASK".to_owned())]
        );
        let message: Value = serde_json::from_str(&data_frame(
            &event,
            &stored,
            "o1",
            Channel::Tasks,
            "CREATE_TASK",
        ))
        .expect("json");
        assert_eq!(message["type"], "CREATE_TASK");
        assert_eq!(message["orgId"], "o1");
        assert_eq!(message["channel"], "tasks");
        assert_eq!(message["cursor"], "c1");
        assert_eq!(message["data"]["id"], "t1");
        assert_eq!(message["data"]["aggregateType"], "task");
        assert_eq!(message["data"]["event"], "task.created");
        assert_eq!(message["data"]["eventId"], "e1");
        assert_eq!(
            message["data"]["changes"],
            json!({"title": "Ship", "labels": [1, 2]})
        );
    }
}
