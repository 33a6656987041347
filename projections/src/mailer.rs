//! The mail outbox and its sender.
//!
//! Requests put rendered messages in `mail_outbox`; a sender task leases due rows (moving
//! their next attempt ahead, in a short statement, so no transaction stays open while talking
//! SMTP), sends them with lettre, and deletes each once the server accepted it. A failure is
//! retried with backoff. Mail is a side effect, so this is a consumer of its own table, never a
//! projection: replaying events sends nothing.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use lettre::message::{Mailbox, MultiPart};
use lettre::{AsyncFileTransport, AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use sqlx::PgPool;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use url::Url;
use uuid::Uuid;

/// A message to send.
#[derive(Debug, Clone)]
pub struct Mail {
    /// The recipient's address.
    pub to: String,
    /// The subject line.
    pub subject: String,
    /// The plain-text body.
    pub text: String,
    /// The HTML body.
    pub html: String,
    /// Drop the message, undelivered, once this long has passed (a sign-in link that can no
    /// longer work); `None` keeps trying for [`MAX_AGE`].
    pub discard_after: Option<Duration>,
}

/// The longest any message is retried before it is dropped (and its plaintext with it).
pub const MAX_AGE: Duration = Duration::from_secs(24 * 3600);

/// Where mail goes.
#[derive(Clone)]
pub enum Transport {
    /// An SMTP server (`smtp://`, `smtp://...?tls=required` for STARTTLS, `smtps://`, with
    /// `user:password@` credentials as needed).
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
    /// `.eml` files in a folder, for development.
    Files(PathBuf),
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Smtp(_) => f.write_str("Transport::Smtp"),
            Self::Files(dir) => write!(f, "Transport::Files({})", dir.display()),
        }
    }
}

/// The transport could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// `SMTP_URL` was not understood by lettre.
    #[error("SMTP_URL: {0}")]
    Url(#[from] lettre::transport::smtp::Error),
    /// The outbox folder could not be created.
    #[error("cannot create the mail outbox folder {0}: {1}")]
    Folder(PathBuf, std::io::Error),
}

impl Transport {
    /// SMTP when `smtp_url` is set, else files under `outbox`.
    pub fn new(smtp_url: Option<&Url>, outbox: PathBuf) -> Result<Self, TransportError> {
        match smtp_url {
            Some(url) => Ok(Self::Smtp(
                AsyncSmtpTransport::<Tokio1Executor>::from_url(url.as_str())?
                    .timeout(Some(Duration::from_secs(20)))
                    .build(),
            )),
            None => {
                std::fs::create_dir_all(&outbox)
                    .map_err(|e| TransportError::Folder(outbox.clone(), e))?;
                Ok(Self::Files(outbox))
            }
        }
    }

    /// Whether mail only lands in files (development).
    pub fn is_files(&self) -> bool {
        matches!(self, Self::Files(_))
    }

    async fn send(&self, message: Message) -> Result<(), String> {
        match self {
            Self::Smtp(smtp) => smtp
                .send(message)
                .await
                .map(drop)
                .map_err(|e| e.to_string()),
            Self::Files(dir) => AsyncFileTransport::<Tokio1Executor>::new(dir)
                .send(message)
                .await
                .map(drop)
                .map_err(|e| e.to_string()),
        }
    }
}

/// The handle requests use to queue mail.
#[derive(Debug, Clone)]
pub struct Outbox {
    pool: PgPool,
    wake: Arc<Notify>,
}

impl Outbox {
    /// An outbox on `pool`.
    pub fn new(pool: PgPool) -> Self {
        Self {
            pool,
            wake: Arc::new(Notify::new()),
        }
    }

    /// Queues `mail`; the sender picks it up at once.
    pub async fn enqueue(&self, mail: Mail) -> Result<Uuid, sqlx::Error> {
        let id = Uuid::now_v7();
        sqlx::query(
            "INSERT INTO mail_outbox (id, recipient, subject, text_body, html_body, discard_at)
             VALUES ($1, $2, $3, $4, $5, now() + make_interval(secs => $6))",
        )
        .bind(id)
        .bind(&mail.to)
        .bind(&mail.subject)
        .bind(&mail.text)
        .bind(&mail.html)
        .bind(
            mail.discard_after
                .unwrap_or(MAX_AGE)
                .min(MAX_AGE)
                .as_secs_f64(),
        )
        .execute(&self.pool)
        .await?;
        self.wake.notify_one();
        Ok(id)
    }

    /// Sends queued mail through `transport` from `from` until `shutdown` is cancelled.
    pub async fn run(self, transport: Transport, from: Mailbox, shutdown: CancellationToken) {
        loop {
            match self.send_due(&transport, &from).await {
                Ok(0) => {
                    tokio::select! {
                        () = self.wake.notified() => {}
                        () = tokio::time::sleep(Duration::from_secs(1)) => {}
                        () = shutdown.cancelled() => return,
                    }
                }
                // More may be due; a leased message not tried is retried after its lease.
                Ok(_) if shutdown.is_cancelled() => return,
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!("mail outbox unavailable, retrying: {e}");
                    tokio::select! {
                        () = tokio::time::sleep(Duration::from_secs(2)) => {}
                        () = shutdown.cancelled() => return,
                    }
                }
            }
        }
    }

    /// Leases up to 10 due messages and tries each once; returns how many were tried.
    async fn send_due(&self, transport: &Transport, from: &Mailbox) -> Result<usize, sqlx::Error> {
        let dropped = sqlx::query("DELETE FROM mail_outbox WHERE discard_at <= now()")
            .execute(&self.pool)
            .await?
            .rows_affected();
        if dropped > 0 {
            tracing::warn!(dropped, "undelivered mail dropped after its deadline");
        }
        let due: Vec<(Uuid, String, String, String, String, i32)> = sqlx::query_as(
            "UPDATE mail_outbox SET attempts = attempts + 1, next_attempt_at = now() + interval '5 minutes'
              WHERE id IN (SELECT id FROM mail_outbox WHERE next_attempt_at <= now()
                            ORDER BY next_attempt_at LIMIT 10 FOR UPDATE SKIP LOCKED)
              RETURNING id, recipient, subject, text_body, html_body, attempts",
        )
        .fetch_all(&self.pool)
        .await?;
        for (id, to, subject, text, html, attempts) in &due {
            let outcome = match build(from, to, subject, text, html) {
                Ok(message) => transport.send(message).await,
                Err(e) => Err(e),
            };
            match outcome {
                Ok(()) => {
                    tracing::info!(mail_id = %id, "mail sent");
                    sqlx::query("DELETE FROM mail_outbox WHERE id = $1")
                        .bind(id)
                        .execute(&self.pool)
                        .await?;
                }
                Err(error) => {
                    let backoff = retry_delay(*attempts);
                    tracing::warn!(mail_id = %id, attempts, retry_in_s = backoff.as_secs(), "mail not sent: {error}");
                    sqlx::query(
                        "UPDATE mail_outbox SET last_error = $2,
                                next_attempt_at = now() + make_interval(secs => $3)
                          WHERE id = $1",
                    )
                    .bind(id)
                    .bind(&error)
                    .bind(backoff.as_secs_f64())
                    .execute(&self.pool)
                    .await?;
                }
            }
        }
        Ok(due.len())
    }
}

/// 2 s, 4 s, 8 s, ... up to 10 minutes.
fn retry_delay(attempts: i32) -> Duration {
    Duration::from_secs(1u64 << attempts.clamp(1, 9) as u32).min(Duration::from_secs(600))
}

fn build(
    from: &Mailbox,
    to: &str,
    subject: &str,
    text: &str,
    html: &str,
) -> Result<Message, String> {
    let to: Mailbox = to.parse().map_err(|e| format!("bad recipient: {e}"))?;
    Message::builder()
        .from(from.clone())
        .to(to)
        .subject(subject)
        .multipart(MultiPart::alternative_plain_html(
            text.to_owned(),
            html.to_owned(),
        ))
        .map_err(|e| e.to_string())
}
