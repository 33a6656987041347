//! `/collab` (no document in the path): the Hocuspocus protocol, so a stock
//! `@hocuspocus/provider` (TipTap's) connects as it is. The same rooms as y-websocket.
//!
//! - Every frame starts with the document's name (its id) as a string, then a message type:
//!   sync (0), awareness (1), auth (2), query-awareness (3), stateless (5), close (7) and, from
//!   the server, sync status (8). Many documents share one socket.
//! - A document opens with an `Auth` token: a ticket for that document
//!   (`POST …/docs/{doc}/ticket`) or an API key with `docs:read`. The answer is
//!   `Authenticated` with the scope `read-write` or `readonly`, or `PermissionDenied` with a
//!   reason (Hocuspocus numbers these sub-types 0 token, 1 denied, 2 authenticated, unlike
//!   y-protocols). Messages for a document before its token are queued, at most
//!   [`QUEUED_BEFORE_AUTH`] per document and [`PENDING_DOCUMENTS`] documents; more closes the
//!   socket with 4401.
//! - Each update (or sync step 2) a writer sends is answered with `SyncStatus` once it is
//!   stored, in order, so the provider's "unsynced changes" reach zero only when Cairn has
//!   committed every one. A read-only connection's updates are answered `SyncStatus(false)`
//!   and dropped.
//! - `Stateless` messages are accepted and ignored.

use std::collections::HashMap;
use std::sync::atomic::Ordering;

use axum::extract::ws::{CloseFrame, Message as WsMessage, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use domain::document::UPDATE_MAX;
use domain::DocId;
use futures::{SinkExt, StreamExt};
use tokio::sync::mpsc;
use yrs::encoding::read::{Cursor, Read};
use yrs::encoding::write::Write;
use yrs::sync::awareness::AwarenessUpdate;
use yrs::sync::SyncMessage;
use yrs::updates::decoder::{Decode, DecoderV1};

use crate::state::AppState;

use super::connection::{admit, reconsider, Allowed, Verdict, NEXT_CONN};
use super::room::{self, Outbound, Request};

/// Messages kept for a document whose token has not been checked yet.
pub const QUEUED_BEFORE_AUTH: usize = 64;

/// Documents a socket may have waiting for their token at once.
pub const PENDING_DOCUMENTS: usize = 16;

const SYNC: u64 = 0;
const AWARENESS: u64 = 1;
const AUTH: u64 = 2;
const QUERY_AWARENESS: u64 = 3;
const STATELESS: u64 = 5;
const CLOSE: u64 = 7;
const SYNC_STATUS: u64 = 8;

const AUTH_TOKEN: u64 = 0;
const AUTH_DENIED: u64 = 1;
const AUTH_OK: u64 = 2;

/// Close code: a token that names nobody, or too much sent before one.
const UNAUTHORIZED: u16 = 4401;

/// `/collab`.
pub fn router() -> Router<AppState> {
    Router::new().route("/collab", get(upgrade))
}

async fn upgrade(State(state): State<AppState>, ws: WebSocketUpgrade) -> Response {
    ws.max_message_size(UPDATE_MAX + 64 * 1024)
        // tungstenite zeroes its read buffer (128 KiB by default) on every read: with many
        // small frames that was over a third of the server's CPU (`bench collab`).
        .read_buffer_size(4 * 1024)
        .on_upgrade(move |socket| serve(state, socket))
        .into_response()
}

/// A document on this socket.
enum Doc {
    /// Waiting for its token: what came before it.
    Waiting(Vec<Vec<u8>>),
    /// Open: its room, this socket's connection number there, and what it may do.
    Open {
        inbox: mpsc::Sender<Request>,
        conn: u64,
        allowed: Allowed,
    },
}

/// `name` then `rest`, as one frame.
fn frame(name: &str, rest: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut out = Vec::new();
    out.write_string(name);
    rest(&mut out);
    out
}

async fn serve(state: AppState, socket: WebSocket) {
    let (mut sink, mut stream) = socket.split();
    let (out, mut outgoing) = mpsc::channel::<WsMessage>(room::QUEUE);
    let writer = tokio::spawn(async move {
        while let Some(mut message) = outgoing.recv().await {
            // What else is queued already goes out in the same write (fed, flushed once).
            loop {
                let closing = matches!(message, WsMessage::Close(_));
                if closing {
                    // Sending flushes what was fed before it.
                    let _ = sink.send(message).await;
                    return;
                }
                if sink.feed(message).await.is_err() {
                    return;
                }
                match outgoing.try_recv() {
                    Ok(next) => message = next,
                    Err(_) => break,
                }
            }
            if sink.flush().await.is_err() {
                return;
            }
        }
    });
    let mut docs: HashMap<String, Doc> = HashMap::new();
    let shutdown = state.shutdown().clone();
    let mut changes = state.rooms().access_changes();
    loop {
        let next = tokio::select! {
            next = stream.next() => next,
            change = changes.recv() => {
                let event = match &change {
                    Ok(event) => event.as_deref(),
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => None,
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => continue,
                };
                if !enforce(&state, &out, &mut docs, event).await {
                    break;
                }
                continue;
            }
            () = shutdown.cancelled() => break,
        };
        let Some(Ok(message)) = next else { break };
        let bytes = match message {
            WsMessage::Binary(bytes) => bytes,
            WsMessage::Close(_) | WsMessage::Text(_) => break,
            _ => continue,
        };
        if writer.is_finished() {
            break;
        }
        let mut cursor = Cursor::new(&bytes);
        let Ok(name) = cursor.read_string().map(str::to_owned) else {
            break;
        };
        let rest = bytes[cursor.next..].to_vec();
        let Ok(kind) = Cursor::new(&rest).read_var::<u64>() else {
            break;
        };
        match docs.get_mut(&name) {
            Some(Doc::Open {
                inbox,
                conn,
                allowed,
            }) => {
                if kind == CLOSE {
                    let _ = inbox.send(Request::Leave { conn: *conn }).await;
                    docs.remove(&name);
                    continue;
                }
                if !handle(&out, &name, inbox, *conn, allowed, &rest).await {
                    break;
                }
            }
            Some(Doc::Waiting(queued)) if kind != AUTH => {
                if queued.len() >= QUEUED_BEFORE_AUTH {
                    close(&out, UNAUTHORIZED, "too much sent before the token").await;
                    break;
                }
                queued.push(rest);
            }
            None if kind != AUTH => {
                let waiting = docs
                    .values()
                    .filter(|d| matches!(d, Doc::Waiting(_)))
                    .count();
                if waiting >= PENDING_DOCUMENTS {
                    close(&out, UNAUTHORIZED, "too many documents before their tokens").await;
                    break;
                }
                docs.insert(name, Doc::Waiting(vec![rest]));
            }
            _ => {
                // The token (a repeat for an open document changes nothing).
                if matches!(docs.get(&name), Some(Doc::Open { .. })) {
                    continue;
                }
                let queued = match docs.remove(&name) {
                    Some(Doc::Waiting(queued)) => queued,
                    _ => Vec::new(),
                };
                match authenticate(&state, &name, &rest).await {
                    Ok(allowed) => {
                        let scope = if allowed.author.is_some() {
                            "read-write"
                        } else {
                            "readonly"
                        };
                        let Some((inbox, conn)) = join(&state, &allowed, &name, &out).await else {
                            let _ = send(&out, deny(&name, "the server could not open it")).await;
                            continue;
                        };
                        let authenticated = frame(&name, |f| {
                            f.write_var(AUTH);
                            f.write_var(AUTH_OK);
                            f.write_string(scope);
                        });
                        if !send(&out, authenticated).await {
                            break;
                        }
                        let mut alive = true;
                        for message in queued {
                            if !handle(&out, &name, &inbox, conn, &allowed, &message).await {
                                alive = false;
                                break;
                            }
                        }
                        docs.insert(
                            name,
                            Doc::Open {
                                inbox,
                                conn,
                                allowed,
                            },
                        );
                        if !alive {
                            break;
                        }
                    }
                    Err(reason) => {
                        if !send(&out, deny(&name, reason)).await {
                            break;
                        }
                    }
                }
            }
        }
    }
    for doc in docs.into_values() {
        if let Doc::Open { inbox, conn, .. } = doc {
            let _ = inbox.send(Request::Leave { conn }).await;
        }
    }
    drop(out);
    let _ = writer.await;
}

/// Decides every open document again after a bus event ([`reconsider`]): one that may no
/// longer be read gets `PermissionDenied` and leaves its room; one that may no longer be
/// written becomes read-only. `false` if the socket is gone.
async fn enforce(
    state: &AppState,
    out: &mpsc::Sender<WsMessage>,
    docs: &mut HashMap<String, Doc>,
    event: Option<&projections::consumers::bus::CloudEvent>,
) -> bool {
    let mut ended = Vec::new();
    for (name, doc) in docs.iter_mut() {
        let Doc::Open { allowed, .. } = doc else {
            continue;
        };
        match reconsider(state, allowed, event).await {
            Verdict::Keep => {}
            Verdict::ReadOnly => allowed.author = None,
            Verdict::End(reason) => ended.push((name.clone(), reason)),
        }
    }
    for (name, reason) in ended {
        if let Some(Doc::Open { inbox, conn, .. }) = docs.remove(&name) {
            let _ = inbox.send(Request::Leave { conn }).await;
        }
        if !send(out, deny(&name, reason)).await {
            return false;
        }
    }
    true
}

fn deny(name: &str, reason: &str) -> Vec<u8> {
    frame(name, |f| {
        f.write_var(AUTH);
        f.write_var(AUTH_DENIED);
        f.write_string(reason);
    })
}

async fn send(out: &mpsc::Sender<WsMessage>, frame: Vec<u8>) -> bool {
    out.send(WsMessage::Binary(frame.into())).await.is_ok()
}

async fn close(out: &mpsc::Sender<WsMessage>, code: u16, reason: &'static str) {
    let _ = out
        .send(WsMessage::Close(Some(CloseFrame {
            code,
            reason: reason.into(),
        })))
        .await;
}

/// The token of an `Auth` message (`rest` starts with the message type): a ticket for this
/// document, or an API key.
async fn authenticate(state: &AppState, name: &str, rest: &[u8]) -> Result<Allowed, &'static str> {
    let mut cursor = Cursor::new(rest);
    let token = (|| {
        let _auth: u64 = cursor.read_var().ok()?;
        let sub: u64 = cursor.read_var().ok()?;
        (sub == AUTH_TOKEN).then_some(())?;
        cursor.read_string().ok().map(str::to_owned)
    })()
    .ok_or("expected a token")?;
    let doc: DocId = name.parse().map_err(|_| "no such document")?;
    let principal = if token.contains('.') {
        super::ticket::redeem(state.secret_key(), doc, &token)?
    } else {
        crate::http::auth::principal_of_key(state, &token)
            .await
            .map_err(|_| "the token is no ticket and no valid API key")?
    };
    admit(state, Some(&principal), name).await
}

/// Joins the document's room with a queue of its own, forwarded onto the socket with the
/// document's name in front; `None` if the room would not take it.
async fn join(
    state: &AppState,
    allowed: &Allowed,
    name: &str,
    out: &mpsc::Sender<WsMessage>,
) -> Option<(mpsc::Sender<Request>, u64)> {
    let ready = state.ready().ok()?;
    let conn = NEXT_CONN.fetch_add(1, Ordering::Relaxed);
    let (tx, mut rx) = mpsc::channel(room::QUEUE);
    let inbox = state
        .rooms()
        .join(allowed.doc, allowed.org, &ready.commands, conn, &tx)
        .await?;
    // Only the room holds the queue's sender: when it drops this document, `rx` ends.
    drop(tx);
    let out = out.clone();
    let name = name.to_owned();
    tokio::spawn(async move {
        while let Some(message) = rx.recv().await {
            let framed = match message {
                // The room speaks y-protocols; Hocuspocus numbers sync and awareness the same,
                // behind the document's name.
                Outbound::Frame(bytes) => frame(&name, |f| f.extend_from_slice(&bytes)),
                Outbound::Stored => frame(&name, |f| {
                    f.write_var(SYNC_STATUS);
                    f.write_var(1i64);
                }),
                Outbound::Close(reason) => {
                    let _ = out
                        .send(WsMessage::Binary(deny(&name, reason).into()))
                        .await;
                    return;
                }
            };
            if out.send(WsMessage::Binary(framed.into())).await.is_err() {
                return;
            }
        }
    });
    Some((inbox, conn))
}

/// One message for an open document (`rest` starts with its type); `false` to close the
/// socket (not a message, or the room is gone).
async fn handle(
    out: &mpsc::Sender<WsMessage>,
    name: &str,
    inbox: &mpsc::Sender<Request>,
    conn: u64,
    allowed: &Allowed,
    rest: &[u8],
) -> bool {
    let mut decoder = DecoderV1::new(Cursor::new(rest));
    let Ok(kind) = decoder.read_var::<u64>() else {
        return false;
    };
    let request = match kind {
        SYNC => match SyncMessage::decode(&mut decoder) {
            Ok(SyncMessage::SyncStep1(state)) => Request::SyncStep1 { conn, state },
            Ok(SyncMessage::SyncStep2(update) | SyncMessage::Update(update)) => {
                match &allowed.author {
                    Some(author) => Request::Update {
                        conn,
                        author: author.clone(),
                        update,
                        ack: true,
                    },
                    None => {
                        // Read-only: dropped, and said so.
                        let refused = frame(name, |f| {
                            f.write_var(SYNC_STATUS);
                            f.write_var(0i64);
                        });
                        return send(out, refused).await;
                    }
                }
            }
            Err(_) => return false,
        },
        AWARENESS => {
            let Ok(buf) = decoder.read_buf() else {
                return false;
            };
            match AwarenessUpdate::decode_v1(buf) {
                Ok(update) => Request::Awareness { conn, update },
                Err(_) => return false,
            }
        }
        QUERY_AWARENESS => Request::QueryAwareness { conn },
        STATELESS | AUTH => return true,
        _ => return false,
    };
    inbox.send(request).await.is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_put_the_document_name_first() {
        let f = frame("doc", |f| {
            f.write_var(SYNC_STATUS);
            f.write_var(1i64);
        });
        assert_eq!(f, [3, b'd', b'o', b'c', 8, 1]);
    }
}
