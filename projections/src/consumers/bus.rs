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

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;
use eventstore::{Cursor, RecordedEvent};
use futures::future::BoxFuture;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use tokio::sync::broadcast;
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
        }
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
}

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

/// JetStream: every node publishes through it and reads every event back from it.
pub struct NatsBus {
    jetstream: jetstream::Context,
    options: NatsOptions,
    live: broadcast::Sender<Arc<CloudEvent>>,
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

    /// Reads the stream with an ordered consumer from "now", and after any failure from just
    /// after the last message seen, so this node misses nothing while NATS comes and goes.
    async fn read(self: Arc<Self>, shutdown: CancellationToken) {
        use jetstream::consumer::DeliverPolicy;
        let mut next: Option<u64> = None;
        let mut pause = Duration::from_millis(100);
        while !shutdown.is_cancelled() {
            let attempt = async {
                let stream = self.ensure_stream().await?;
                let deliver_policy = match next {
                    Some(start_sequence) => DeliverPolicy::ByStartSequence { start_sequence },
                    None => DeliverPolicy::New,
                };
                let consumer = stream
                    .create_consumer(jetstream::consumer::push::OrderedConfig {
                        deliver_subject: self.jetstream.client().new_inbox(),
                        filter_subject: format!("{}.events.>", self.options.prefix),
                        deliver_policy,
                        ..Default::default()
                    })
                    .await
                    .map_err(|e| BusError(format!("consumer: {e}")))?;
                let mut messages = consumer
                    .messages()
                    .await
                    .map_err(|e| BusError(format!("consumer: {e}")))?;
                tracing::info!(stream = %self.options.stream, "reading the event bus");
                while let Some(message) = messages.next().await {
                    let message = message.map_err(|e| BusError(format!("consumer: {e}")))?;
                    if let Ok(info) = message.info() {
                        next = Some(info.stream_sequence + 1);
                    }
                    match serde_json::from_slice::<CloudEvent>(&message.payload) {
                        Ok(event) => {
                            let _ = self.live.send(Arc::new(event));
                        }
                        Err(e) => tracing::warn!("undecodable message on the bus: {e}"),
                    }
                }
                Err::<(), _>(BusError("consumer ended".to_owned()))
            };
            tokio::select! {
                result = attempt => {
                    if let Err(e) = result {
                        tracing::warn!("event bus reader: {e}; retrying");
                    }
                }
                () = shutdown.cancelled() => return,
            }
            tokio::select! {
                () = tokio::time::sleep(pause) => {}
                () = shutdown.cancelled() => return,
            }
            pause = (pause * 2).min(Duration::from_secs(2));
        }
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
