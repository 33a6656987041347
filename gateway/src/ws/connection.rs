//! One `/ws` connection: the handshake, the reader loop (subscriptions, presence, pings), the
//! writer with its bounded queue, and `since` replays from PostgreSQL.
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

use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::http::{header, HeaderMap};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use eventstore::{Cursor, EventFilter, Store};
use futures::future::BoxFuture;
use futures::{SinkExt, StreamExt};
use projections::consumers::bus::CloudEvent;
use projections::read_models::access::{Access, Class, Reader};
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::http::extract::ClientIp;
use crate::http::principal::{MaybeAuth, Principal};
use crate::state::AppState;
use crate::ws::hub::{Decide, Hub, Member, Outbound};
use crate::ws::protocol::{
    data_frame, error_frame, frame, messages_for, now_ms, resync, Channel, ClientMessage, Room,
};

impl Decide for AppState {
    fn still_admin(&self, org: Uuid, readers: Vec<Reader>, at: Cursor) -> BoxFuture<'_, Vec<bool>> {
        Box::pin(async move {
            let ready = match self.ready() {
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
            let mut keeps = Vec::with_capacity(readers.len());
            for reader in readers {
                keeps.push(match ready {
                    Some(ready) => Access::load_org(ready.store.pool(), reader, org)
                        .await
                        .is_ok_and(|a| a.may_read(Class::Admin, Some(org), None)),
                    None => false,
                });
            }
            keeps
        })
    }
}

/// `/ws`.
pub fn router() -> Router<AppState> {
    Router::new().route("/ws", get(upgrade))
}

async fn upgrade(
    State(state): State<AppState>,
    MaybeAuth(principal): MaybeAuth,
    ClientIp(client): ClientIp,
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

/// Whether a WebSocket handshake comes from a page of Cairn's own origin (or from no browser:
/// no `Origin`), so its ambient cookie may sign it in.
pub(crate) fn same_origin(state: &AppState, headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|o| o.to_str().ok()) else {
        // Not a browser: no ambient cookie to worry about.
        return true;
    };
    let ours = state.config().public_url.origin().ascii_serialization();
    origin == ours
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
    let id = hub.connected();
    let (tx, rx) = mpsc::channel(config.ws_queue);
    let kill = CancellationToken::new();
    let (sink, mut stream) = socket.split();
    let store = state.try_ready().map(|r| r.store.clone());
    let mut writer = tokio::spawn(write(sink, rx, kill.clone(), store, config.ws_replay_limit));
    if let Some(principal) = &principal {
        hub.sign_in(id, tx.clone(), principal.reader());
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
    hub.disconnected(id);
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
