//! A document's room on this node: the one writer of the document's stream here, and the one
//! place its connections meet.
//!
//! A room is a task that owns the document (a `yrs::Doc` loaded from its stream), the
//! connections that have it open, and their awareness. Updates that arrive together are
//! appended together, as `document.edited` events through the event store's group commit, and
//! only once they are stored are they applied for good, broadcast to the other connections and
//! acknowledged: nothing anyone saw or was told is stored can be lost. A failed append closes
//! the connections whose updates it held (their clients keep the edits and send them again on
//! reconnect) and reloads the document from its stream, so memory never holds what the store
//! does not. Awareness (cursors, names) is relayed, never stored, and cleared for a
//! connection's clients when it leaves.
//!
//! Each connection's queue is bounded: a connection that cannot keep up is dropped from the
//! room (its socket closes), and nobody else waits for it. A room with no connections unloads
//! after [`IDLE`].
//!
//! **Several nodes.** Each node with the document open has a room for it; the rooms meet on the
//! bus's core subject `<prefix>.collab.<doc_id>` ([`Bus::signal`]). After each append a room
//! sends what it stored, with the sequences it follows and reaches ([`Peer::Stored`]); a room
//! at exactly that `from` applies the updates and passes them to its connections, and one that
//! finds a gap (a lost message, or a node it had not heard from) reads the document again from
//! the event store and passes on the difference. Both rooms may append at once: the loser's
//! command is retried after the winner's events (the store's optimistic concurrency), and a
//! room whose events do not directly follow what it held reads the store likewise. So the
//! store stays the one truth, a lost signal costs a reload, never an edit. Awareness crosses
//! over the same subject ([`Peer::Awareness`]). A node that dies cannot say its clients left,
//! so awareness heard from other nodes is forgotten (and the local clients told so) once it is
//! older than the awareness timeout (30 s, y-protocols' own): a live client renews its state
//! every 15 s, a dead node's clients fall silent. With the in-process bus there is no other
//! node, and nothing is sent.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use commands::{Actor, Commands, Metadata};
use domain::document::{Bytes, Document, DocumentCommand, DocumentRequest, Placement, UPDATE_MAX};
use domain::{DocId, Grant, OrgId, UserId};
use futures::StreamExt;
use projections::consumers::bus::{Bus, Signals};
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;
use yrs::sync::awareness::{AwarenessUpdate, AwarenessUpdateEntry};
use yrs::sync::{Message, SyncMessage};
use yrs::updates::decoder::Decode;
use yrs::updates::encoder::Encode;
use yrs::{ReadTxn, StateVector, Transact};

/// How long a room with no connections stays loaded.
pub const IDLE: Duration = Duration::from_secs(30);

/// Frames a connection may have waiting before it counts as too slow.
pub const QUEUE: usize = 256;

/// What a room sends a connection: a frame, or the reason it is being closed.
#[derive(Debug, Clone)]
pub enum Outbound {
    /// A binary frame (one or more y-protocol messages).
    Frame(Vec<u8>),
    /// The room drops this connection (an update it could not store, one that is not a Yjs
    /// update): the socket closes with this reason.
    Close(&'static str),
    /// An update this connection sent (that asked for it) is stored: Hocuspocus's
    /// `SyncStatus`. Sent in the order the updates arrived.
    Stored,
}

/// Who sent an update: the person, and their grant in the organization when they joined.
#[derive(Debug, Clone)]
pub struct Author {
    /// The person.
    pub user: UserId,
    /// What they may do there.
    pub grant: Grant,
}

/// What a connection asks of its room.
#[derive(Debug)]
pub enum Request {
    /// A connection opens the document: the room sends it `SyncStep1` and the awareness.
    Join {
        /// The connection.
        conn: u64,
        /// Its queue.
        tx: mpsc::Sender<Outbound>,
        /// `false` if this room is closing (ask [`Rooms::room`] again).
        joined: oneshot::Sender<bool>,
    },
    /// The connection went away.
    Leave {
        /// The connection.
        conn: u64,
    },
    /// The client's state vector: the room answers with what it lacks (`SyncStep2`).
    SyncStep1 {
        /// The connection.
        conn: u64,
        /// The client's state.
        state: StateVector,
    },
    /// An update (a client's `Update` or `SyncStep2`) from a writer.
    Update {
        /// The connection.
        conn: u64,
        /// Who.
        author: Author,
        /// A Yjs update (v1).
        update: Vec<u8>,
        /// Whether the connection wants [`Outbound::Stored`] once it is stored.
        ack: bool,
    },
    /// An awareness update, relayed to the others.
    Awareness {
        /// The connection.
        conn: u64,
        /// The update.
        update: AwarenessUpdate,
    },
    /// The client asks for everyone's awareness.
    QueryAwareness {
        /// The connection.
        conn: u64,
    },
}

/// A room compacts after this many bytes of updates too, whatever their number.
pub const COMPACT_BYTES: u64 = 4 << 20;

/// What a room tells the same document's rooms on other nodes (JSON on
/// `<prefix>.collab.<doc_id>`).
#[derive(Debug, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Peer {
    /// The sending node stored the events `from + 1 ..= to` of the document's stream; `updates`
    /// are the Yjs updates among them (base64), in order (none for a compaction).
    Stored {
        /// The sending node.
        node: Uuid,
        /// The sequence the events follow.
        from: u64,
        /// The last event's sequence.
        to: u64,
        /// The updates, base64.
        updates: Vec<String>,
    },
    /// An awareness frame (the y-protocol message, base64) from the sending node's clients.
    Awareness {
        /// The sending node.
        node: Uuid,
        /// The frame, base64.
        frame: String,
    },
}

/// The connection id under which awareness from other nodes is kept.
const REMOTE: u64 = u64::MAX;

/// The rooms of this node, by document.
#[derive(Debug, Clone)]
pub struct Rooms {
    open: Arc<Mutex<HashMap<DocId, mpsc::Sender<Request>>>>,
    /// Updates after which a room records the whole state.
    compact_every: u64,
    /// Where rooms meet their peers on other nodes.
    bus: Arc<dyn Bus>,
    /// This node, in what its rooms send.
    node: Uuid,
    /// The bus events that may change someone's access, for the open document connections.
    access: tokio::sync::broadcast::Sender<AccessEvent>,
    /// How long awareness heard from another node lasts without being renewed.
    awareness_timeout: Duration,
}

/// A bus event that may change access ([`Rooms::access_changes`]); `None` when the bus lost
/// events, so that everything must be decided again.
pub type AccessEvent = Option<Arc<projections::consumers::bus::CloudEvent>>;

impl Rooms {
    /// No room open yet; each compacts after `compact_every` updates and up to a quarter more
    /// ([`jittered`]), or after [`COMPACT_BYTES`], meets the other nodes' rooms on `bus`, and
    /// forgets their clients' awareness once it is `awareness_timeout` old.
    pub fn new(compact_every: u64, awareness_timeout: Duration, bus: Arc<dyn Bus>) -> Self {
        let access = tokio::sync::broadcast::channel(1024).0;
        // One task per node reads every bus event and passes on the few that may change
        // access: a document connection wakes for those, not for every keystroke of every
        // document (with 200 connections that was 40 % of `bench collab`'s CPU).
        if tokio::runtime::Handle::try_current().is_ok() {
            let (mut events, changes) = (bus.subscribe(), access.clone());
            tokio::spawn(async move {
                use projections::read_models::access::Change;
                use tokio::sync::broadcast::error::RecvError;
                loop {
                    match events.recv().await {
                        Ok(event) if Change::may_come_from(event.stream().0) => {
                            let _ = changes.send(Some(event));
                        }
                        Ok(_) => {}
                        Err(RecvError::Lagged(_)) => {
                            let _ = changes.send(None);
                        }
                        Err(RecvError::Closed) => return,
                    }
                }
            });
        }
        Self {
            open: Arc::default(),
            compact_every: compact_every.max(1),
            bus,
            node: Uuid::new_v4(),
            access,
            awareness_timeout: awareness_timeout.max(Duration::from_millis(100)),
        }
    }

    /// The bus events that may change someone's access, from now on.
    pub fn access_changes(&self) -> tokio::sync::broadcast::Receiver<AccessEvent> {
        self.access.subscribe()
    }

    /// The inbox of `doc`'s room, opening the room (loading the document) if it is not open.
    pub fn room(&self, doc: DocId, org: OrgId, commands: &Commands) -> mpsc::Sender<Request> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(inbox) = open.get(&doc) {
            if !inbox.is_closed() {
                return inbox.clone();
            }
        }
        let (inbox, requests) = mpsc::channel(1024);
        open.insert(doc, inbox.clone());
        let room = Room {
            doc,
            org,
            commands: commands.clone(),
            rooms: self.clone(),
            ydoc: yrs::Doc::new(),
            sequence: 0,
            updates_since: 0,
            bytes_since: 0,
            compact_after: jittered(self.compact_every),
            conns: BTreeMap::new(),
            awareness: HashMap::new(),
            outbox: Vec::new(),
            peered: false,
        };
        tokio::spawn(room.run(requests, inbox.clone()));
        inbox
    }

    /// Joins connection `conn` (its queue `tx`) to `doc`'s room, opening the room if needed
    /// and trying again if the room was just unloading; the room's inbox, or `None` if it
    /// would not take the connection.
    pub async fn join(
        &self,
        doc: DocId,
        org: OrgId,
        commands: &Commands,
        conn: u64,
        tx: &mpsc::Sender<Outbound>,
    ) -> Option<mpsc::Sender<Request>> {
        for _ in 0..3 {
            let inbox = self.room(doc, org, commands);
            let (joined, answer) = oneshot::channel();
            let request = Request::Join {
                conn,
                tx: tx.clone(),
                joined,
            };
            if inbox.send(request).await.is_ok() && answer.await.unwrap_or(false) {
                return Some(inbox);
            }
        }
        None
    }

    /// How many rooms are open.
    pub fn len(&self) -> usize {
        self.open.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Whether no room is open.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Forgets `doc`'s room if `inbox` is still the one registered for it.
    fn close(&self, doc: DocId, inbox: &mpsc::Sender<Request>) {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        if open.get(&doc).is_some_and(|i| i.same_channel(inbox)) {
            open.remove(&doc);
        }
    }
}

/// One client's awareness, as last relayed.
#[derive(Debug, Clone)]
struct Seen {
    conn: u64,
    clock: u32,
    json: Arc<str>,
    /// When it was last heard.
    heard: tokio::time::Instant,
}

struct Room {
    doc: DocId,
    org: OrgId,
    commands: Commands,
    rooms: Rooms,
    ydoc: yrs::Doc,
    /// The sequence of the last event the document holds.
    sequence: u64,
    /// Updates stored since the last compaction, and their bytes.
    updates_since: u64,
    bytes_since: u64,
    /// The updates after which this room compacts next ([`jittered`]).
    compact_after: u64,
    conns: BTreeMap<u64, mpsc::Sender<Outbound>>,
    awareness: HashMap<yrs::block::ClientID, Seen>,
    /// What to send the other nodes' rooms next.
    outbox: Vec<Peer>,
    /// Whether there are other nodes to tell (not on the in-process bus): without them nothing
    /// is encoded for them.
    peered: bool,
}

/// An update waiting to be stored.
struct Pending {
    conn: u64,
    author: Author,
    update: Vec<u8>,
    ack: bool,
}

impl Room {
    async fn run(mut self, mut requests: mpsc::Receiver<Request>, inbox: mpsc::Sender<Request>) {
        // Listen before loading: whatever peers store meanwhile is either in what is loaded
        // or heard of here (and skipped if it is both).
        let topic = self.doc.to_string();
        let mut peers: Option<Signals> = match self.rooms.bus.listen(&topic).await {
            Ok(peers) => peers,
            Err(e) => {
                tracing::warn!(doc = %self.doc, error = %e, "cannot hear other nodes; the room stays local");
                None
            }
        };
        self.peered = peers.is_some();
        if let Err(e) = self.load().await {
            tracing::warn!(doc = %self.doc, error = %e, "could not load the document");
            self.rooms.close(self.doc, &inbox);
            requests.close();
            while let Some(request) = requests.recv().await {
                if let Request::Join { joined, .. } = request {
                    let _ = joined.send(false);
                }
            }
            return;
        }
        let mut batch = Vec::with_capacity(64);
        let mut idle_until = None;
        let mut sweep = tokio::time::interval(self.rooms.awareness_timeout / 4);
        sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            // Idle (no connection here) for IDLE: unload, whatever the other nodes do.
            if self.conns.is_empty() {
                idle_until.get_or_insert_with(|| tokio::time::Instant::now() + IDLE);
            } else {
                idle_until = None;
            }
            tokio::select! {
                received = requests.recv_many(&mut batch, 64) => {
                    if received == 0 {
                        break;
                    }
                    let mut pending = Vec::new();
                    for request in batch.drain(..) {
                        self.handle(request, &mut pending);
                    }
                    if !pending.is_empty() {
                        self.store(pending).await;
                        if self.updates_since >= self.compact_after
                            || self.bytes_since >= COMPACT_BYTES
                        {
                            self.compact().await;
                        }
                    }
                }
                signal = next_signal(&mut peers) => match signal {
                    Some(payload) => self.heard(&payload).await,
                    None => peers = None,
                },
                () = sleep_until(idle_until) => break,
                _ = sweep.tick() => self.expire_awareness(),
            }
            self.tell_peers(&topic).await;
        }
        // Unload: no new joiner finds this room any more; whoever raced in is told to retry.
        self.rooms.close(self.doc, &inbox);
        requests.close();
        while let Some(request) = requests.recv().await {
            if let Request::Join { joined, .. } = request {
                let _ = joined.send(false);
            }
        }
    }

    /// Sends the outbox to the other nodes' rooms. A lost signal costs a peer a reload (it
    /// sees a gap), never an edit.
    async fn tell_peers(&mut self, topic: &str) {
        for message in std::mem::take(&mut self.outbox) {
            let Ok(payload) = serde_json::to_vec(&message) else {
                continue;
            };
            if let Err(e) = self.rooms.bus.signal(topic, payload).await {
                tracing::debug!(doc = %self.doc, error = %e, "could not tell the other nodes");
            }
        }
    }

    /// What another node's room sent.
    async fn heard(&mut self, payload: &[u8]) {
        let message: Peer = match serde_json::from_slice(payload) {
            Ok(message) => message,
            Err(e) => {
                tracing::warn!(doc = %self.doc, error = %e, "undecodable message from another node");
                return;
            }
        };
        match message {
            Peer::Stored { node, .. } | Peer::Awareness { node, .. } if node == self.rooms.node => {
            }
            Peer::Stored {
                from, to, updates, ..
            } => {
                if to <= self.sequence {
                    return; // Already here (loaded, or caught up).
                }
                let decoded: Option<Vec<(Vec<u8>, yrs::Update)>> = (from == self.sequence)
                    .then(|| {
                        updates
                            .iter()
                            .map(|u| {
                                let bytes = BASE64.decode(u).ok()?;
                                let update = yrs::Update::decode_v1(&bytes).ok()?;
                                Some((bytes, update))
                            })
                            .collect()
                    })
                    .flatten();
                let Some(decoded) = decoded else {
                    // A gap (a lost signal, a node not heard from): the store has it all.
                    self.catch_up().await;
                    return;
                };
                for (bytes, update) in decoded {
                    if self.ydoc.transact_mut().apply_update(update).is_err() {
                        self.catch_up().await;
                        return;
                    }
                    let frame = Message::Sync(SyncMessage::Update(bytes)).encode_v1();
                    self.broadcast(None, &frame);
                }
                self.sequence = to;
            }
            Peer::Awareness { frame, .. } => {
                let Ok(bytes) = BASE64.decode(&frame) else {
                    return;
                };
                let Ok(Message::Awareness(update)) = Message::decode_v1(&bytes) else {
                    return;
                };
                let heard = tokio::time::Instant::now();
                for (client, entry) in &update.clients {
                    if &*entry.json == "null" {
                        self.awareness.remove(client);
                    } else {
                        self.awareness.insert(
                            *client,
                            Seen {
                                conn: REMOTE,
                                clock: entry.clock,
                                json: entry.json.clone(),
                                heard,
                            },
                        );
                    }
                }
                self.broadcast(None, &bytes);
            }
        }
    }

    /// Reads the document again from the store and passes what this room lacked to its
    /// connections.
    async fn catch_up(&mut self) {
        let before = self.ydoc.transact().state_vector();
        match projections::read_models::documents::load(self.commands.store(), self.doc, None).await
        {
            Ok(loaded) => {
                let diff = loaded.doc.transact().encode_diff_v1(&before);
                self.ydoc = loaded.doc;
                self.sequence = loaded.sequence;
                self.updates_since = loaded.updates_since;
                self.bytes_since = loaded.bytes_since;
                let empty = yrs::Update::decode_v1(&diff).map_or(true, |u| u.is_empty());
                if !empty {
                    let frame = Message::Sync(SyncMessage::Update(diff)).encode_v1();
                    self.broadcast(None, &frame);
                }
            }
            Err(e) => {
                tracing::warn!(doc = %self.doc, error = %e, "could not read the document again")
            }
        }
    }

    /// After this room's events `first ..= last` were stored: tells the peers, and reads the
    /// store if they do not directly follow what the room held (another node appended first).
    async fn stored(&mut self, first: u64, last: u64, updates: Vec<String>) {
        let gap = first != self.sequence + 1;
        self.sequence = self.sequence.max(last);
        if self.peered {
            self.outbox.push(Peer::Stored {
                node: self.rooms.node,
                from: first - 1,
                to: last,
                updates,
            });
        }
        if gap {
            self.catch_up().await;
        }
    }

    async fn load(&mut self) -> Result<(), projections::read_models::documents::ContentError> {
        let loaded =
            projections::read_models::documents::load(self.commands.store(), self.doc, None)
                .await?;
        self.ydoc = loaded.doc;
        self.sequence = loaded.sequence;
        self.updates_since = loaded.updates_since;
        self.bytes_since = loaded.bytes_since;
        Ok(())
    }

    fn handle(&mut self, request: Request, pending: &mut Vec<Pending>) {
        match request {
            Request::Join { conn, tx, joined } => {
                let step1 =
                    Message::Sync(SyncMessage::SyncStep1(self.ydoc.transact().state_vector()));
                let _ = tx.try_send(Outbound::Frame(step1.encode_v1()));
                if let Some(everyone) = self.awareness_of_all() {
                    let _ = tx.try_send(Outbound::Frame(everyone));
                }
                self.conns.insert(conn, tx);
                let _ = joined.send(true);
            }
            Request::Leave { conn } => self.leave(conn),
            Request::SyncStep1 { conn, state } => {
                let diff = self.ydoc.transact().encode_diff_v1(&state);
                let step2 = Message::Sync(SyncMessage::SyncStep2(diff));
                self.send(conn, step2.encode_v1());
            }
            Request::Update {
                conn,
                author,
                update,
                ack,
            } => pending.push(Pending {
                conn,
                author,
                update,
                ack,
            }),
            Request::Awareness { conn, update } => {
                let heard = tokio::time::Instant::now();
                for (client, entry) in &update.clients {
                    self.awareness.insert(
                        *client,
                        Seen {
                            conn,
                            clock: entry.clock,
                            json: entry.json.clone(),
                            heard,
                        },
                    );
                }
                let frame = Message::Awareness(update).encode_v1();
                self.broadcast(Some(conn), &frame);
                self.share_awareness(&frame);
            }
            Request::QueryAwareness { conn } => {
                if let Some(everyone) = self.awareness_of_all() {
                    self.send(conn, everyone);
                }
            }
        }
    }

    /// Stores `pending` (one command per author, in arrival order), then applies, broadcasts
    /// and keeps what was stored. An update that is no Yjs update closes its connection.
    async fn store(&mut self, pending: Vec<Pending>) {
        // Acknowledged after the whole batch, in arrival order: an empty update's ack must not
        // overtake one stored after it.
        let acks: Vec<u64> = pending.iter().filter(|p| p.ack).map(|p| p.conn).collect();
        let mut valid = Vec::with_capacity(pending.len());
        for p in pending {
            let decoded = (p.update.len() <= UPDATE_MAX)
                .then(|| yrs::Update::decode_v1(&p.update).ok())
                .flatten();
            match decoded {
                Some(update) if update.is_empty() => {}
                Some(update) => valid.push((p, update)),
                None => self.drop_conn(p.conn, "not a Yjs update of at most 1 MiB"),
            }
        }
        // One command for the whole batch, whatever its authors: each event names its
        // author (`document.edited.by`); each author was admitted as a writer.
        if !valid.is_empty() {
            let updates: Vec<(UserId, Bytes)> = valid
                .iter()
                .map(|(p, _)| (p.author.user, Bytes::from(p.update.clone())))
                .collect();
            let request = DocumentRequest {
                grant: Grant::system(self.org),
                known: Placement::default(),
                command: DocumentCommand::EditAs { updates },
            };
            let meta = Metadata::new(Actor::System).in_org(self.org);
            match self
                .commands
                .execute::<Document>(&self.doc.to_string(), request, &meta)
                .await
            {
                Ok(receipt) => {
                    let span = receipt.events.first().zip(receipt.events.last());
                    let span = span.map(|(a, b)| (a.sequence as u64, b.sequence as u64));
                    let shared = span.filter(|_| self.peered).map(|_| {
                        valid
                            .iter()
                            .map(|(p, _)| BASE64.encode(&p.update))
                            .collect::<Vec<_>>()
                    });
                    let before = self.sequence;
                    self.updates_since += valid.len() as u64;
                    self.bytes_since += valid
                        .iter()
                        .map(|(p, _)| p.update.len() as u64)
                        .sum::<u64>();
                    for (p, update) in valid {
                        let applied = self.ydoc.transact_mut().apply_update(update);
                        if let Err(e) = applied {
                            // Stored, but yrs could not apply it: the stream is the truth;
                            // read it again.
                            tracing::warn!(doc = %self.doc, error = %e, "a stored update did not apply; reloading");
                            self.catch_up().await;
                        }
                        let frame = Message::Sync(SyncMessage::Update(p.update)).encode_v1();
                        self.broadcast(Some(p.conn), &frame);
                    }
                    if let Some((first, last)) = span {
                        // A reload above may have moved the sequence already.
                        self.sequence = before;
                        self.stored(first, last, shared.unwrap_or_default()).await;
                    }
                }
                Err(e) => {
                    tracing::warn!(doc = %self.doc, error = %e, "an edit could not be stored");
                    for (p, _) in valid {
                        self.drop_conn(p.conn, "the edit could not be stored; reconnect");
                    }
                }
            }
        }
        for conn in acks {
            // A connection dropped above (its update not stored) gets none.
            if let Some(tx) = self.conns.get(&conn) {
                if tx.try_send(Outbound::Stored).is_err() {
                    self.leave(conn);
                }
            }
        }
    }

    /// Records the whole state as of the last stored event (`document.compacted`, by the
    /// system), so that opening the document reads it and the updates after it. The state is
    /// the room's document, which holds exactly the stored events: nothing is written that was
    /// not stored already. A failure is logged and tried again after the next updates.
    async fn compact(&mut self) {
        let state = projections::read_models::documents::state_of(&self.ydoc);
        let request = DocumentRequest {
            grant: Grant::system(self.org),
            known: Placement::default(),
            command: DocumentCommand::Compact {
                state: Bytes::from(state),
                covers: self.sequence,
            },
        };
        let meta = Metadata::new(Actor::System).in_org(self.org);
        match self
            .commands
            .execute::<Document>(&self.doc.to_string(), request, &meta)
            .await
        {
            Ok(receipt) => {
                if let (Some(first), Some(last)) = (receipt.events.first(), receipt.events.last()) {
                    self.stored(first.sequence as u64, last.sequence as u64, Vec::new())
                        .await;
                }
                (self.updates_since, self.bytes_since) = (0, 0);
                self.compact_after = jittered(self.rooms.compact_every);
            }
            Err(e) => tracing::warn!(doc = %self.doc, error = %e, "could not compact the document"),
        }
    }

    fn send(&mut self, conn: u64, frame: Vec<u8>) {
        let full = match self.conns.get(&conn) {
            Some(tx) => tx.try_send(Outbound::Frame(frame)).is_err(),
            None => false,
        };
        if full {
            self.leave(conn);
        }
    }

    /// Sends `frame` to every connection but `except`; one that cannot take it leaves.
    fn broadcast(&mut self, except: Option<u64>, frame: &[u8]) {
        let slow: Vec<u64> = self
            .conns
            .iter()
            .filter(|(id, _)| Some(**id) != except)
            .filter(|(_, tx)| tx.try_send(Outbound::Frame(frame.to_vec())).is_err())
            .map(|(id, _)| *id)
            .collect();
        for conn in slow {
            self.leave(conn);
        }
    }

    fn drop_conn(&mut self, conn: u64, why: &'static str) {
        if let Some(tx) = self.conns.get(&conn) {
            let _ = tx.try_send(Outbound::Close(why));
        }
        self.leave(conn);
    }

    /// Forgets `conn` and tells the others (here and on other nodes) its clients' awareness
    /// is gone.
    fn leave(&mut self, conn: u64) {
        self.conns.remove(&conn);
        if let Some(frame) = self.forget_awareness(|seen| seen.conn == conn) {
            self.share_awareness(&frame);
        }
    }

    /// Forgets the awareness heard from other nodes that was not renewed within the timeout
    /// (their node died, or lost its link to the bus), and tells this node's connections.
    fn expire_awareness(&mut self) {
        let Some(cutoff) = tokio::time::Instant::now().checked_sub(self.rooms.awareness_timeout)
        else {
            return;
        };
        self.forget_awareness(|seen| seen.conn == REMOTE && seen.heard <= cutoff);
    }

    /// Removes the awareness entries `which` picks and sends this node's connections their
    /// removal; the frame sent, if any.
    fn forget_awareness(&mut self, which: impl Fn(&Seen) -> bool) -> Option<Vec<u8>> {
        let gone: HashMap<yrs::block::ClientID, AwarenessUpdateEntry> = self
            .awareness
            .iter()
            .filter(|(_, seen)| which(seen))
            .map(|(client, seen)| {
                (
                    *client,
                    AwarenessUpdateEntry {
                        clock: seen.clock + 1,
                        json: Arc::from("null"),
                    },
                )
            })
            .collect();
        if gone.is_empty() {
            return None;
        }
        for client in gone.keys() {
            self.awareness.remove(client);
        }
        let frame = Message::Awareness(AwarenessUpdate { clients: gone }).encode_v1();
        self.broadcast(None, &frame);
        Some(frame)
    }

    fn share_awareness(&mut self, frame: &[u8]) {
        if !self.peered {
            return;
        }
        self.outbox.push(Peer::Awareness {
            node: self.rooms.node,
            frame: BASE64.encode(frame),
        });
    }

    fn awareness_of_all(&self) -> Option<Vec<u8>> {
        if self.awareness.is_empty() {
            return None;
        }
        let clients = self
            .awareness
            .iter()
            .map(|(client, seen)| {
                (
                    *client,
                    AwarenessUpdateEntry {
                        clock: seen.clock,
                        json: seen.json.clone(),
                    },
                )
            })
            .collect();
        Some(Message::Awareness(AwarenessUpdate { clients }).encode_v1())
    }
}

/// When a room compacts next: after `every` updates and up to a quarter more, drawn anew each
/// time. Rooms opened together (a meeting, a class, `cairn bench collab`) and typed into alike
/// would otherwise compact together, forever: each compaction is the whole document, written,
/// relayed and read by the projections, and fifty at once stalled every room's appends for a
/// moment. Drawn apart, they stay apart.
fn jittered(every: u64) -> u64 {
    every + rand::random_range(0..=every / 4)
}

/// The next signal from the other nodes' rooms; never, without them.
async fn next_signal(peers: &mut Option<Signals>) -> Option<axum::body::Bytes> {
    match peers {
        Some(peers) => peers.next().await,
        None => std::future::pending().await,
    }
}

/// Sleeps until `until`; forever if `None`.
async fn sleep_until(until: Option<tokio::time::Instant>) {
    match until {
        Some(until) => tokio::time::sleep_until(until).await,
        None => std::future::pending().await,
    }
}
