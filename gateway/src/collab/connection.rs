//! One `/collab/{doc_id}` connection: admission by the access policy, the reader that hands
//! y-protocol messages to the document's room, and the writer that drains its bounded queue.

use std::sync::atomic::{AtomicU64, Ordering};

use axum::extract::ws::{CloseFrame, Message as WsMessage, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use domain::document::UPDATE_MAX;
use domain::{DocId, Permission, Scope};
use futures::stream::SplitSink;
use futures::{SinkExt, StreamExt};
use projections::read_models::access::{Change, Class};
use tokio::sync::{mpsc, oneshot};
use yrs::encoding::read::Cursor;
use yrs::sync::{Message, MessageReader, SyncMessage};
use yrs::updates::decoder::DecoderV1;
use yrs::updates::encoder::Encode;

use crate::http::extract::{ApiPath, ApiQuery};
use crate::http::principal::{MaybeAuth, Principal};
use crate::state::AppState;

use super::room::{self, Author, Outbound, Request};

/// `/collab/{doc_id}`.
pub fn router() -> Router<AppState> {
    Router::new().route("/collab/{doc}", get(upgrade))
}

/// The close code for a connection that broke the protocol or could not be served.
pub(super) const POLICY: u16 = 1008;

/// The close code when access ends mid-session (as `/ws` and Hocuspocus: 4403, forbidden).
pub(super) const ACCESS_ENDED: u16 = 4403;

/// Connection numbers, unique in this process (a Hocuspocus socket takes one per document).
pub(super) static NEXT_CONN: AtomicU64 = AtomicU64::new(1);

/// What a connection may do with its document.
pub(super) struct Allowed {
    /// Who.
    pub(super) principal: Principal,
    pub(super) doc: DocId,
    pub(super) org: domain::OrgId,
    /// `Some` if it may write.
    pub(super) author: Option<Author>,
}

/// `?ticket=`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct TicketQuery {
    ticket: Option<String>,
}

async fn upgrade(
    State(state): State<AppState>,
    MaybeAuth(principal): MaybeAuth,
    ApiPath(doc): ApiPath<String>,
    ApiQuery(query): ApiQuery<TicketQuery>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    let decided = match query.ticket {
        // A ticket names its document and its holder; it stands in for any other credential.
        Some(ticket) => match doc.parse() {
            Ok(id) => match super::ticket::redeem(state.secret_key(), id, &ticket) {
                Ok(holder) => admit(&state, Some(&holder), &doc).await,
                Err(reason) => Err(reason),
            },
            Err(_) => Err("no such document"),
        },
        None => {
            // A cookie rides along on cross-site WebSocket handshakes too: only a page of our
            // own origin (or a client with an API key) is signed in here.
            let principal = principal
                .filter(|p| p.is_api_key() || crate::ws::connection::same_origin(&state, &headers));
            admit(&state, principal.as_ref(), &doc).await
        }
    };
    ws.max_message_size(UPDATE_MAX + 64 * 1024)
        // tungstenite zeroes its read buffer (128 KiB by default) on every read: with many
        // small frames that was over a third of the server's CPU (`bench collab`).
        .read_buffer_size(4 * 1024)
        .on_upgrade(move |socket| async move {
            match decided {
                Ok(allowed) => serve(state, allowed, socket).await,
                Err(reason) => deny(socket, reason).await,
            }
        })
        .into_response()
}

/// Whether `principal` may open document `doc`, and whether it may write.
pub(super) async fn admit(
    state: &AppState,
    principal: Option<&Principal>,
    doc: &str,
) -> Result<Allowed, &'static str> {
    let Some(principal) = principal else {
        return Err("not signed in");
    };
    if !principal.reader().scoped_for(Class::Docs) {
        return Err("this API key lacks the docs:read scope");
    }
    let ready = state.ready().map_err(|_| "the server is starting")?;
    let doc: DocId = doc.parse().map_err(|_| "no such document")?;
    let Some((org, deleted)) = projections::read_models::documents::org_of(ready.store.pool(), doc)
        .await
        .map_err(|_| "the server could not look the document up")?
    else {
        return Err("no such document");
    };
    let access = ready
        .access(Some(principal), Some(org.as_uuid()))
        .await
        .map_err(|_| "the server could not check access")?;
    if !access.may_read(Class::Docs, Some(org.as_uuid()), None) || deleted {
        return Err("no such document");
    }
    let grant = ready
        .commands
        .lookups()
        .grant(org, principal.user_id)
        .await
        .map_err(|_| "the server could not check permissions")?;
    let writes = principal.require(Scope::DocsWrite).is_ok() && grant.allows(Permission::EditDocs);
    Ok(Allowed {
        principal: principal.clone(),
        doc,
        org,
        author: writes.then_some(Author {
            user: principal.user_id,
            grant,
        }),
    })
}

/// Tells the client why it may not open the document, then closes.
async fn deny(mut socket: WebSocket, reason: &'static str) {
    let frame = Message::Auth(Some(format!("permission-denied: {reason}"))).encode_v1();
    let _ = socket.send(WsMessage::Binary(frame.into())).await;
    let _ = socket
        .send(WsMessage::Close(Some(CloseFrame {
            code: POLICY,
            reason: reason.into(),
        })))
        .await;
}

/// What an access change means for an open document.
pub(super) enum Verdict {
    /// Nothing changed for it.
    Keep,
    /// It may still read, no longer write: its updates are dropped from now on.
    ReadOnly,
    /// It may not read any more: the connection ends, with this reason.
    End(&'static str),
}

/// Decides again, after a bus event, whether `allowed` still stands. Only events that change
/// access are looked at (the access policy's [`Change`]); a credential that ended, or its
/// holder leaving the organization, ends it at once; a change of rights is decided from the
/// read models once they include the change (failing closed if they do not in time). A bus
/// that lost events (`None`) makes it decide again from scratch.
pub(super) async fn reconsider(
    state: &AppState,
    allowed: &Allowed,
    event: Option<&projections::consumers::bus::CloudEvent>,
) -> Verdict {
    let reader = allowed.principal.reader();
    let user = allowed.principal.user_id.as_uuid();
    let org = allowed.org.as_uuid();
    let at = match event {
        Some(event) => {
            let stored = event.stored_type();
            let (aggregate_type, aggregate_id) = event.stream();
            let Some(change) =
                Change::of_event(aggregate_type, aggregate_id, &stored, event.data.get())
            else {
                return Verdict::Keep;
            };
            match change {
                Change::CredentialEnded { .. } if change.ends(&reader) => {
                    return Verdict::End("your sign-in ended")
                }
                Change::LeftOrganization { org: o, user: u } if o == org && u == user => {
                    return Verdict::End("no longer a member")
                }
                Change::RightsChanged { org: o, user: u }
                    if o == org && u.is_none_or(|u| u == user) => {}
                _ => return Verdict::Keep,
            }
            event.cursor()
        }
        None => None,
    };
    let Ok(ready) = state.ready() else {
        return Verdict::End("the server could not check access");
    };
    if let Some(at) = at {
        if ready
            .caught_up(projections::read_models::memberships::NAME, at)
            .await
            .is_err()
        {
            return Verdict::End("access could not be checked in time");
        }
    }
    match admit(state, Some(&allowed.principal), &allowed.doc.to_string()).await {
        Ok(now) if now.author.is_none() && allowed.author.is_some() => Verdict::ReadOnly,
        Ok(_) => Verdict::Keep,
        Err(reason) => Verdict::End(reason),
    }
}

/// Tells the client why its access ended (the protocol's auth message) and closes.
async fn cut_off(sink: &mut SplitSink<WebSocket, WsMessage>, reason: &'static str) {
    let denied = Message::Auth(Some(format!("permission-denied: {reason}")));
    let _ = sink
        .send(WsMessage::Binary(denied.encode_v1().into()))
        .await;
    let _ = sink
        .send(WsMessage::Close(Some(CloseFrame {
            code: ACCESS_ENDED,
            reason: reason.into(),
        })))
        .await;
}

async fn serve(state: AppState, allowed: Allowed, socket: WebSocket) {
    let Ok(ready) = state.ready() else {
        return;
    };
    let conn = NEXT_CONN.fetch_add(1, Ordering::Relaxed);
    let (tx, mut rx) = mpsc::channel(room::QUEUE);
    let inbox = state
        .rooms()
        .join(allowed.doc, allowed.org, &ready.commands, conn, &tx)
        .await;
    // Only the room holds the queue's sender: when it drops this connection, `rx` ends.
    drop(tx);
    let Some(inbox) = inbox else {
        return;
    };
    let (mut sink, mut stream) = socket.split();
    // Access ended: the writer tells the client why (the protocol's auth message), then closes.
    let (ended, mut end) = oneshot::channel::<&'static str>();
    let mut ended = Some(ended);
    let writer = tokio::spawn(async move {
        loop {
            let out = tokio::select! {
                // The reason first: ending drops this connection from its room too.
                biased;
                reason = &mut end => {
                    if let Ok(reason) = reason {
                        cut_off(&mut sink, reason).await;
                    }
                    return;
                }
                out = rx.recv() => out,
            };
            let Some(mut out) = out else { break };
            // Whatever else is queued already (a room's batch of updates) goes out in the same
            // write: frames are fed, and flushed once the queue is empty.
            loop {
                match out {
                    Outbound::Frame(frame) => {
                        if sink.feed(WsMessage::Binary(frame.into())).await.is_err() {
                            return;
                        }
                    }
                    // y-websocket has no acknowledgement.
                    Outbound::Stored => {}
                    Outbound::Close(reason) => {
                        // Sending flushes what was fed before it.
                        let _ = sink
                            .send(WsMessage::Close(Some(CloseFrame {
                                code: POLICY,
                                reason: reason.into(),
                            })))
                            .await;
                        return;
                    }
                }
                // Access may have ended meanwhile: nothing more after the reason.
                match end.try_recv() {
                    Err(oneshot::error::TryRecvError::Empty) => {}
                    Ok(reason) => {
                        cut_off(&mut sink, reason).await;
                        return;
                    }
                    Err(oneshot::error::TryRecvError::Closed) => return,
                }
                match rx.try_recv() {
                    Ok(next) => out = next,
                    Err(_) => break,
                }
            }
            if sink.flush().await.is_err() {
                return;
            }
        }
        // Dropped by the room (too slow), or the room closed.
        let _ = sink
            .send(WsMessage::Close(Some(CloseFrame {
                code: POLICY,
                reason: "too slow".into(),
            })))
            .await;
    });
    let shutdown = state.shutdown().clone();
    let mut changes = state.rooms().access_changes();
    let mut allowed = allowed;
    loop {
        let next = tokio::select! {
            next = stream.next() => next,
            change = changes.recv() => {
                let verdict = match &change {
                    Ok(event) => reconsider(&state, &allowed, event.as_deref()).await,
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                        reconsider(&state, &allowed, None).await
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => Verdict::Keep,
                };
                match verdict {
                    Verdict::Keep => {}
                    Verdict::ReadOnly => allowed.author = None,
                    Verdict::End(reason) => {
                        if let Some(ended) = ended.take() {
                            let _ = ended.send(reason);
                        }
                        break;
                    }
                }
                continue;
            }
            () = shutdown.cancelled() => break,
        };
        let Some(Ok(message)) = next else { break };
        let bytes = match message {
            WsMessage::Binary(bytes) => bytes,
            WsMessage::Close(_) => break,
            // Text is no y-protocol message; pings are answered by the library.
            WsMessage::Text(_) => break,
            _ => continue,
        };
        if writer.is_finished() || !forward(&inbox, conn, &allowed, &bytes).await {
            break;
        }
    }
    let _ = inbox.send(Request::Leave { conn }).await;
    let _ = writer.await;
}

/// Hands the messages of one frame to the room; `false` if the frame is no y-protocol frame
/// (the connection then closes) or the room is gone.
async fn forward(
    inbox: &mpsc::Sender<Request>,
    conn: u64,
    allowed: &Allowed,
    frame: &[u8],
) -> bool {
    let mut decoder = DecoderV1::new(Cursor::new(frame));
    for message in MessageReader::new(&mut decoder) {
        let request = match message {
            Err(_) => return false,
            Ok(Message::Sync(SyncMessage::SyncStep1(state))) => Request::SyncStep1 { conn, state },
            Ok(Message::Sync(SyncMessage::SyncStep2(update) | SyncMessage::Update(update))) => {
                match &allowed.author {
                    Some(author) => Request::Update {
                        conn,
                        author: author.clone(),
                        update,
                        ack: false,
                    },
                    // Read-only: dropped, never stored.
                    None => continue,
                }
            }
            Ok(Message::Awareness(update)) => Request::Awareness { conn, update },
            Ok(Message::AwarenessQuery) => Request::QueryAwareness { conn },
            Ok(Message::Auth(_) | Message::Custom(..)) => continue,
        };
        if inbox.send(request).await.is_err() {
            return false;
        }
    }
    true
}
