//! The bus: how committed events leave the database.
//!
//! The [`relay`](crate::consumers::relay) reads the event store in commit order and publishes every event
//! to a [`Bus`]; each node's live consumers (WebSocket rooms) read [`Bus::subscribe`]. Two
//! implementations:
//! - [`LocalBus`], a `tokio::sync::broadcast` inside one process: the embedded default;
//! - [`NatsBus`], JetStream stream `CAIRN_EVENTS` with subjects
//!   `<prefix>.events.<org>.<aggregate_type>.<aggregate_id>`, `Nats-Msg-Id = event_id` (so a
//!   publish repeated after a crash is dropped by the server) and a `Cairn-Cursor` header. Every
//!   node reads it back through an ordered consumer, so several nodes see every event.
//!
//! Every message is a [`CloudEvent`] (CloudEvents 1.0, JSON), the same envelope integrators get
//! from the HTTP feeds.
//!
//! **The bus cannot lose silently.** The relay chains what it publishes: each message carries
//! the cursor of the event published just before it (`cairnprev`, see [`CloudEvent::chain`]).
//! A node whose reader gets a message whose `cairnprev` is past the last event it delivered
//! (NATS lost messages, say with its store), or finds the stream recreated, refills from the
//! event store in cursor order before it delivers anything newer, then carries on live. So
//! every node delivers every event once, in order, whatever happened to NATS.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_nats::datetime::DateTime;
use async_nats::jetstream;
use eventstore::{Cursor, RecordedEvent, Store};
use futures::future::BoxFuture;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use tokio::sync::{broadcast, watch};
use tokio_util::sync::CancellationToken;

/// One committed event in the CloudEvents 1.0 JSON envelope.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CloudEvent {
    /// Always `1.0`.
    pub specversion: String,
    /// The event id (also `Nats-Msg-Id`).
    pub id: String,
    /// `/orgs/<org>/<aggregate_type>/<aggregate_id>`, or `/<aggregate_type>/<aggregate_id>`
    /// for events outside any organization.
    pub source: String,
    /// `cairn.<aggregate_type>.<verb>.v<version>`, e.g. `cairn.task.created.v1`.
    #[serde(rename = "type")]
    pub event_type: String,
    /// `<aggregate_type>/<aggregate_id>`.
    pub subject: String,
    /// When it was recorded (RFC 3339).
    pub time: String,
    /// Always `application/json`.
    pub datacontenttype: String,
    /// The event's payload.
    pub data: Box<RawValue>,
    /// Extension: the position after this event, to resume from (`?after=`, `Last-Event-ID`).
    pub cairncursor: String,
    /// Extension: the position of the event in its stream, from 1.
    pub cairnsequence: i64,
    /// Extension: the organization, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cairnorg: Option<String>,
    /// Extension, on the bus only: the cursor of the event the relay published just before
    /// this one (for the first of a batch, the relay's checkpoint). A reader that has not
    /// delivered up to it missed something.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cairnprev: Option<String>,
}

impl CloudEvent {
    /// The envelope of a stored event.
    pub fn from_recorded(e: &RecordedEvent) -> Self {
        let verb = e
            .event_type
            .strip_prefix(&format!("{}.", e.aggregate_type))
            .unwrap_or(&e.event_type);
        let source = match &e.org_id {
            Some(org) => format!("/orgs/{org}/{}/{}", e.aggregate_type, e.aggregate_id),
            None => format!("/{}/{}", e.aggregate_type, e.aggregate_id),
        };
        Self {
            specversion: "1.0".to_owned(),
            id: e.event_id.to_string(),
            source,
            event_type: format!("cairn.{}.{verb}.v{}", e.aggregate_type, e.event_version),
            subject: format!("{}/{}", e.aggregate_type, e.aggregate_id),
            time: eventstore::encode::rfc3339(e.recorded_at),
            datacontenttype: "application/json".to_owned(),
            data: e.payload.clone(),
            cairncursor: e.cursor().to_string(),
            cairnsequence: e.sequence,
            cairnorg: e.org_id.clone(),
            cairnprev: None,
        }
    }

    /// The envelopes of `batch`, a read of the store's tail after `after`, chained for the bus:
    /// each carries the cursor of the one before it (`cairnprev`), the first one `after`.
    pub fn chain(after: Cursor, batch: &[RecordedEvent]) -> Vec<Arc<Self>> {
        let mut prev = after;
        batch
            .iter()
            .map(|e| {
                let mut event = Self::from_recorded(e);
                event.cairnprev = Some(prev.to_string());
                prev = e.cursor();
                Arc::new(event)
            })
            .collect()
    }

    /// The cursor of the event published just before this one, if the publisher said.
    pub fn prev(&self) -> Option<Cursor> {
        self.cairnprev.as_deref()?.parse().ok()
    }

    /// The cursor just after this event.
    pub fn cursor(&self) -> Option<Cursor> {
        self.cairncursor.parse().ok()
    }

    /// `(aggregate_type, aggregate_id)`.
    pub fn stream(&self) -> (&str, &str) {
        self.subject.split_once('/').unwrap_or((&self.subject, ""))
    }

    /// The stored event type, `noun.verb` (e.g. `task.created`).
    pub fn stored_type(&self) -> String {
        let (aggregate_type, _) = self.stream();
        let rest = self
            .event_type
            .strip_prefix("cairn.")
            .unwrap_or(&self.event_type);
        let verb = rest
            .strip_prefix(aggregate_type)
            .and_then(|r| r.strip_prefix('.'))
            .unwrap_or(rest);
        let verb = verb.rsplit_once(".v").map_or(verb, |(v, _)| v);
        format!("{aggregate_type}.{verb}")
    }
}

/// Why a publish failed. The relay retries; nothing is lost.
#[derive(Debug, thiserror::Error)]
#[error("bus: {0}")]
pub struct BusError(pub String);

/// Where committed events go, and where live consumers read them.
pub trait Bus: Send + Sync + fmt::Debug + 'static {
    /// Publishes `events` in order and returns once every one is acknowledged.
    fn publish<'a>(&'a self, events: &'a [Arc<CloudEvent>]) -> BoxFuture<'a, Result<(), BusError>>;

    /// Every event published from now on, in order, on this node. A receiver that falls more
    /// than the channel's capacity behind gets `Lagged` and must resynchronise from the store.
    fn subscribe(&self) -> broadcast::Receiver<Arc<CloudEvent>>;

    /// `local` or `nats`, for logs and `/readyz`.
    fn kind(&self) -> &'static str;

    /// The store this bus refills from when it finds it missed messages (given once the
    /// database is ready). The in-process bus cannot miss any and ignores it.
    fn refill_from(&self, _store: Store) {}

    /// Sends `payload` to the other nodes on the core subject `<prefix>.collab.<topic>`: at
    /// most once and never stored, for what each node can recover from the event store
    /// anyway (a document room's stored updates, and its awareness). The in-process bus has
    /// no other node and drops it.
    fn signal<'a>(
        &'a self,
        _topic: &'a str,
        _payload: Vec<u8>,
    ) -> BoxFuture<'a, Result<(), BusError>> {
        Box::pin(async { Ok(()) })
    }

    /// What is sent on `<prefix>.collab.<topic>` from now on (this node's own signals too);
    /// `None` where there is no other node (the in-process bus).
    fn listen<'a>(&'a self, _topic: &'a str) -> BoxFuture<'a, Result<Option<Signals>, BusError>> {
        Box::pin(async { Ok(None) })
    }
}

/// The payloads sent on one [`Bus::listen`] subject, until dropped (which unsubscribes).
pub type Signals = futures::stream::BoxStream<'static, bytes::Bytes>;

/// Capacity of each node's live channel.
const LIVE_CAPACITY: usize = 16_384;

/// The in-process bus: one node, no network.
#[derive(Debug, Clone)]
pub struct LocalBus {
    live: broadcast::Sender<Arc<CloudEvent>>,
}

impl Default for LocalBus {
    fn default() -> Self {
        Self {
            live: broadcast::channel(LIVE_CAPACITY).0,
        }
    }
}

impl Bus for LocalBus {
    fn publish<'a>(&'a self, events: &'a [Arc<CloudEvent>]) -> BoxFuture<'a, Result<(), BusError>> {
        Box::pin(async move {
            for event in events {
                // No receiver is not an error: nobody is watching yet.
                let _ = self.live.send(event.clone());
            }
            Ok(())
        })
    }

    fn subscribe(&self) -> broadcast::Receiver<Arc<CloudEvent>> {
        self.live.subscribe()
    }

    fn kind(&self) -> &'static str {
        "local"
    }
}

/// Splits the credentials out of a NATS URL: a user alone is a token, a user with a password
/// is both. async-nats 0.51 ignores credentials in the URL (a token-protected server answers
/// "authorization violation"), so they go into the options, and the URL left (which may be
/// logged) holds none. Credentials are taken as written: use URL-safe ones (such as hex).
fn nats_credentials(raw: &str) -> Result<(async_nats::ConnectOptions, url::Url), BusError> {
    let mut url =
        url::Url::parse(raw).map_err(|e| BusError(format!("the NATS URL is invalid: {e}")))?;
    let options = async_nats::ConnectOptions::new();
    let options = match (url.username(), url.password()) {
        ("", None) => return Ok((options, url)),
        (user, Some(password)) => options.user_and_password(user.to_owned(), password.to_owned()),
        (token, None) => options.token(token.to_owned()),
    };
    let stripped = url.set_username("").is_ok() && url.set_password(None).is_ok();
    if !stripped {
        return Err(BusError("the NATS URL cannot carry credentials".to_owned()));
    }
    Ok((options, url))
}

/// Where a [`NatsBus`] publishes.
#[derive(Debug, Clone)]
pub struct NatsOptions {
    /// `nats://host:port`, or `nats://<token>@host:port` / `nats://<user>:<password>@host:port`
    /// for a server that requires them.
    pub url: String,
    /// The JetStream stream (default `CAIRN_EVENTS`).
    pub stream: String,
    /// The subject prefix (default `cairn`): subjects are `<prefix>.events.…`.
    pub prefix: String,
    /// How long the stream keeps messages.
    pub max_age: Duration,
}

/// How often a reader makes sure the stream it reads is still the one it started on. A NATS
/// that lost its store recreates the stream empty, and async-nats' ordered consumer would carry
/// on in it from the old stream's sequence, skipping the new stream's first messages.
const STREAM_CHECK: Duration = Duration::from_secs(1);

/// Events per read of the store while refilling.
const REFILL_BATCH: i64 = 512;

/// How long a refill waits for the events a message claims came before it to show in the
/// store's tail; then the reader starts again from that message.
const REFILL_PATIENCE: Duration = Duration::from_secs(5);

/// JetStream: every node publishes through it and reads every event back from it.
pub struct NatsBus {
    jetstream: jetstream::Context,
    options: NatsOptions,
    live: broadcast::Sender<Arc<CloudEvent>>,
    /// Where missed events are refilled from (`None` until the database is ready).
    store: watch::Sender<Option<Store>>,
}

/// Where this node's reader is.
#[derive(Debug, Default)]
struct Position {
    /// The last event delivered to this node's subscribers; `None` before the first (a node
    /// delivers what is published once it has started).
    delivered: Option<Cursor>,
    /// The stream being read (by its creation time) and the next sequence to read in it.
    stream: Option<(DateTime, u64)>,
}

impl fmt::Debug for NatsBus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NatsBus")
            .field("url", &self.options.url)
            .field("stream", &self.options.stream)
            .field("prefix", &self.options.prefix)
            .finish()
    }
}

impl NatsBus {
    /// Connects (in the background if NATS is down: commands never wait for it) and starts
    /// this node's reader, which runs until `shutdown`.
    pub async fn connect(
        options: NatsOptions,
        shutdown: CancellationToken,
    ) -> Result<Arc<Self>, BusError> {
        let (connect, server) = nats_credentials(&options.url)?;
        let client = connect
            .retry_on_initial_connect()
            .connection_timeout(Duration::from_secs(2))
            .name("cairn")
            .connect(server.as_str())
            .await
            .map_err(|e| BusError(format!("cannot connect to {server}: {e}")))?;
        let mut jetstream = jetstream::new(client);
        jetstream.set_timeout(Duration::from_secs(5));
        let bus = Arc::new(Self {
            jetstream,
            options,
            live: broadcast::channel(LIVE_CAPACITY).0,
            store: watch::channel(None).0,
        });
        tokio::spawn(bus.clone().read(shutdown));
        Ok(bus)
    }

    fn subject(&self, event: &CloudEvent) -> String {
        let (aggregate_type, aggregate_id) = event.stream();
        let org = event.cairnorg.as_deref().unwrap_or("_");
        format!(
            "{}.events.{org}.{aggregate_type}.{}",
            self.options.prefix,
            aggregate_id.replace(['.', '*', '>', ' '], "_")
        )
    }

    /// Creates the stream, or updates it to this configuration.
    async fn ensure_stream(&self) -> Result<jetstream::stream::Stream, BusError> {
        let config = jetstream::stream::Config {
            name: self.options.stream.clone(),
            subjects: vec![format!("{}.events.>", self.options.prefix)],
            max_age: self.options.max_age,
            duplicate_window: Duration::from_secs(120),
            ..Default::default()
        };
        self.jetstream
            .create_or_update_stream(config)
            .await
            .map_err(|e| BusError(format!("stream {}: {e}", self.options.stream)))?;
        self.jetstream
            .get_stream(&self.options.stream)
            .await
            .map_err(|e| BusError(format!("stream {}: {e}", self.options.stream)))
    }

    /// Reads the stream until `shutdown`, starting again after any failure from where it
    /// was, so this node misses nothing while NATS comes and goes.
    async fn read(self: Arc<Self>, shutdown: CancellationToken) {
        const FIRST_PAUSE: Duration = Duration::from_millis(100);
        let mut position = Position::default();
        let mut pause = FIRST_PAUSE;
        while !shutdown.is_cancelled() {
            let started = tokio::time::Instant::now();
            tokio::select! {
                result = self.read_stream(&mut position) => {
                    if let Err(e) = result {
                        tracing::warn!("event bus reader: {e}; retrying");
                    }
                }
                () = shutdown.cancelled() => return,
            }
            // A reader that ran a while failed afresh: back off from the start again.
            if started.elapsed() > Duration::from_secs(10) {
                pause = FIRST_PAUSE;
            }
            tokio::select! {
                () = tokio::time::sleep(pause) => {}
                () = shutdown.cancelled() => return,
            }
            pause = (pause * 2).min(Duration::from_secs(2));
        }
    }

    /// Reads the stream with an ordered consumer until something fails: at first from what
    /// is published from now on, then from just after the last message read. A stream
    /// recreated in between (a NATS that lost its store) is read from its start, after this
    /// node has caught up from the store.
    async fn read_stream(&self, position: &mut Position) -> Result<(), BusError> {
        let mut stream = self.ensure_stream().await?;
        let info = stream
            .info()
            .await
            .map_err(|e| BusError(format!("stream {}: {e}", self.options.stream)))?;
        let created = info.created;
        let start_sequence = match position.stream {
            Some((read, next)) if read == created => next,
            Some(_) => {
                tracing::warn!(
                    stream = %self.options.stream,
                    "the event stream was recreated (NATS lost its store?); catching up from \
                     the database"
                );
                self.refill(position, None).await?;
                1
            }
            None => info.state.last_sequence + 1,
        };
        position.stream = Some((created, start_sequence));
        let consumer = stream
            .create_consumer(jetstream::consumer::push::OrderedConfig {
                deliver_subject: self.jetstream.client().new_inbox(),
                filter_subject: format!("{}.events.>", self.options.prefix),
                deliver_policy: jetstream::consumer::DeliverPolicy::ByStartSequence {
                    start_sequence,
                },
                ..Default::default()
            })
            .await
            .map_err(|e| BusError(format!("consumer: {e}")))?;
        let mut messages = consumer
            .messages()
            .await
            .map_err(|e| BusError(format!("consumer: {e}")))?;
        tracing::info!(stream = %self.options.stream, "reading the event bus");
        let mut check =
            tokio::time::interval_at(tokio::time::Instant::now() + STREAM_CHECK, STREAM_CHECK);
        loop {
            tokio::select! {
                message = messages.next() => {
                    let message = message
                        .ok_or_else(|| BusError("consumer ended".to_owned()))?
                        .map_err(|e| BusError(format!("consumer: {e}")))?;
                    match serde_json::from_slice::<CloudEvent>(&message.payload) {
                        Ok(event) => self.deliver(event, position).await?,
                        Err(e) => tracing::warn!("undecodable message on the bus: {e}"),
                    }
                    // Only once delivered: a failed refill reads this message again.
                    if let Ok(info) = message.info() {
                        position.stream = Some((created, info.stream_sequence + 1));
                    }
                }
                _ = check.tick() => {
                    let now = stream
                        .info()
                        .await
                        .map_err(|e| BusError(format!("stream {}: {e}", self.options.stream)))?
                        .created;
                    if now != created {
                        return Err(BusError("the stream was recreated".to_owned()));
                    }
                }
            }
        }
    }

    /// Delivers `event` to this node's subscribers unless it was delivered already, after
    /// refilling from the store what the publisher's chain shows this node missed before it.
    async fn deliver(&self, event: CloudEvent, position: &mut Position) -> Result<(), BusError> {
        let Some(cursor) = event.cursor() else {
            tracing::warn!(id = %event.id, "a message on the bus without a cursor");
            return Ok(());
        };
        if let Some(last) = position.delivered {
            if cursor <= last {
                // Published again (a relay that restarted, a recreated stream read again).
                return Ok(());
            }
            if let Some(prev) = event.prev().filter(|prev| *prev > last) {
                tracing::warn!(
                    delivered = %last, prev = %prev,
                    "the event bus skipped events; refilling them from the database"
                );
                self.refill(position, Some(prev)).await?;
            }
        }
        let _ = self.live.send(Arc::new(event));
        position.delivered = Some(cursor);
        Ok(())
    }

    /// Delivers the events after `position.delivered` from the store, in cursor order: up to
    /// and including `until`, or with `None` as far as the store's tail reaches now. Nothing
    /// to do before the first delivery.
    async fn refill(&self, position: &mut Position, until: Option<Cursor>) -> Result<(), BusError> {
        let Some(mut after) = position.delivered else {
            return Ok(());
        };
        let store = self
            .store
            .subscribe()
            .wait_for(Option::is_some)
            .await
            .map_err(|_| BusError("no store to refill from".to_owned()))?
            .clone();
        let Some(store) = store else {
            return Err(BusError("no store to refill from".to_owned()));
        };
        let patience = tokio::time::Instant::now() + REFILL_PATIENCE;
        let mut refilled = 0usize;
        'refill: while until.is_none_or(|until| after < until) {
            let batch = store
                .tail(after, REFILL_BATCH)
                .await
                .map_err(|e| BusError(format!("refill: {e}")))?;
            if batch.is_empty() {
                let Some(until) = until else { break };
                if tokio::time::Instant::now() >= patience {
                    return Err(BusError(format!(
                        "refill: the store's tail does not reach {until} yet"
                    )));
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
            for event in &batch {
                let cursor = event.cursor();
                if until.is_some_and(|until| cursor > until) {
                    break 'refill;
                }
                let _ = self.live.send(Arc::new(CloudEvent::from_recorded(event)));
                position.delivered = Some(cursor);
                after = cursor;
                refilled += 1;
            }
        }
        tracing::info!(
            events = refilled,
            "refilled the event bus from the database"
        );
        Ok(())
    }
}

impl Bus for NatsBus {
    /// Sends every message first, then awaits the acknowledgements: the publishes are
    /// pipelined, not one round trip each.
    fn publish<'a>(&'a self, events: &'a [Arc<CloudEvent>]) -> BoxFuture<'a, Result<(), BusError>> {
        Box::pin(async move {
            let mut acks = Vec::with_capacity(events.len());
            for event in events {
                let body = serde_json::to_vec(event.as_ref())
                    .map_err(|e| BusError(format!("encode: {e}")))?;
                let mut headers = async_nats::HeaderMap::new();
                headers.insert("Nats-Msg-Id", event.id.as_str());
                headers.insert("Cairn-Cursor", event.cairncursor.as_str());
                let ack = self
                    .jetstream
                    .publish_with_headers(self.subject(event), headers, body.into())
                    .await
                    .map_err(|e| BusError(format!("publish: {e}")))?;
                acks.push(ack);
            }
            for ack in acks {
                match ack.await {
                    Ok(_) => {}
                    Err(e) => {
                        // The stream may be missing (a fresh NATS): create it for the retry.
                        let _ = self.ensure_stream().await;
                        return Err(BusError(format!("publish acknowledgement: {e}")));
                    }
                }
            }
            Ok(())
        })
    }

    fn subscribe(&self) -> broadcast::Receiver<Arc<CloudEvent>> {
        self.live.subscribe()
    }

    fn kind(&self) -> &'static str {
        "nats"
    }

    fn refill_from(&self, store: Store) {
        self.store.send_replace(Some(store));
    }

    fn signal<'a>(
        &'a self,
        topic: &'a str,
        payload: Vec<u8>,
    ) -> BoxFuture<'a, Result<(), BusError>> {
        Box::pin(async move {
            let subject = format!("{}.collab.{topic}", self.options.prefix);
            self.jetstream
                .client()
                .publish(subject, payload.into())
                .await
                .map_err(|e| BusError(format!("signal: {e}")))
        })
    }

    fn listen<'a>(&'a self, topic: &'a str) -> BoxFuture<'a, Result<Option<Signals>, BusError>> {
        Box::pin(async move {
            let subject = format!("{}.collab.{topic}", self.options.prefix);
            let subscriber = self
                .jetstream
                .client()
                .subscribe(subject)
                .await
                .map_err(|e| BusError(format!("listen: {e}")))?;
            Ok(Some(subscriber.map(|message| message.payload).boxed()))
        })
    }
}

#[cfg(test)]
mod credential_tests {
    use super::nats_credentials;

    #[test]
    fn credentials_leave_the_url() {
        for (raw, left) in [
            ("nats://s3cret@nats:4222", "nats://nats:4222"),
            ("nats://cairn:pw@nats:4222", "nats://nats:4222"),
            ("nats://127.0.0.1:4222", "nats://127.0.0.1:4222"),
        ] {
            let (_, url) = nats_credentials(raw).expect("valid");
            assert_eq!(url.as_str(), left);
        }
    }
}
