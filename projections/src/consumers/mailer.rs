//! The mail outbox and its sender.
//!
//! Requests put rendered messages in `mail_outbox`; a sender task leases due rows (moving
//! their next attempt ahead, in a short statement, so no transaction stays open while talking
//! SMTP), sends them with lettre, and deletes each once the server accepted it. A failure is
//! retried with backoff. Mail is a side effect, so this is a consumer of its own table, never a
//! projection: replaying events sends nothing.
//!
//! Mail is personal data. A queued message (recipient, subject, bodies, and the error of a failed
//! attempt, since server replies often name the recipient) is sealed with the recipient's key,
//! so erasing the person shreds it; erasure also deletes their queued rows ([`Outbox::forget`]).
//! Errors are logged with the address cut out. With the file transport (development) each
//! message is written as `<mail id>.eml` and recorded in `mail_files`, and the file is deleted
//! when the message's deadline passes (a sign-in link that no longer works) or its person is
//! erased.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use eventstore::vault::{fields, SubjectKey, Vault};
use eventstore::StoreError;
use lettre::message::{Mailbox, MultiPart};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use sqlx::PgPool;
use time::OffsetDateTime;
use tokio::io::AsyncWriteExt;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use url::Url;
use uuid::Uuid;

use crate::consumer::{drive, supervise, Pace, Step, Work};

/// The sender's name, in logs.
const NAME: &str = "mailer";

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
    /// `CAIRN_SMTP_CA_FILE` could not be read or holds no PEM certificate.
    #[error("CAIRN_SMTP_CA_FILE {0}: {1}")]
    CaFile(PathBuf, String),
}

impl Transport {
    /// SMTP when `smtp_url` is set, else files under `outbox`. `ca_file` (a PEM file of one
    /// or more certificates) adds trusted roots for the SMTP server's TLS certificate, next to
    /// the public web roots: for a mail relay with a private CA.
    pub fn new(
        smtp_url: Option<&Url>,
        ca_file: Option<&std::path::Path>,
        outbox: PathBuf,
    ) -> Result<Self, TransportError> {
        match smtp_url {
            Some(url) => {
                let mut builder = AsyncSmtpTransport::<Tokio1Executor>::from_url(url.as_str())?
                    .timeout(Some(Duration::from_secs(20)));
                if let Some(path) = ca_file {
                    builder = with_extra_roots(builder, url, path)?;
                }
                Ok(Self::Smtp(builder.build()))
            }
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
}

/// `builder` (made from `url` by lettre) trusting the certificates in `path` as well as the
/// public web roots, with the TLS mode `url` asked for (`smtps://`, or `?tls=required` /
/// `?tls=opportunistic`); a URL without TLS is left as it is.
fn with_extra_roots(
    builder: lettre::transport::smtp::AsyncSmtpTransportBuilder,
    url: &Url,
    path: &std::path::Path,
) -> Result<lettre::transport::smtp::AsyncSmtpTransportBuilder, TransportError> {
    use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};

    let ca_error = |message: String| TransportError::CaFile(path.to_owned(), message);
    let pem = std::fs::read(path).map_err(|e| ca_error(e.to_string()))?;
    if !String::from_utf8_lossy(&pem).contains("-----BEGIN CERTIFICATE-----") {
        return Err(ca_error("no PEM certificate in the file".to_owned()));
    }
    let roots = Certificate::from_pem(&pem).map_err(|e| ca_error(e.to_string()))?;
    let host = url.host_str().unwrap_or_default().to_owned();
    let parameters = TlsParameters::builder(host)
        .add_root_certificate(roots)
        .build()?;
    let tls = url
        .query_pairs()
        .find(|(k, _)| k == "tls")
        .map(|(_, v)| v.into_owned());
    Ok(match (url.scheme(), tls.as_deref()) {
        ("smtps", _) => builder.tls(Tls::Wrapper(parameters)),
        ("smtp", Some("required")) => builder.tls(Tls::Required(parameters)),
        ("smtp", Some("opportunistic")) => builder.tls(Tls::Opportunistic(parameters)),
        _ => builder,
    })
}

/// Writes `message` as `<dir>/<name>`, readable by its owner only. The file appears whole
/// (written under a temporary name, then renamed), so a reader never sees half a message.
async fn write_file(dir: &std::path::Path, name: &str, message: &Message) -> Result<(), String> {
    let failed = |e: std::io::Error| format!("cannot write the mail file: {e}");
    let partial = dir.join(format!("{name}.partial"));
    let mut options = tokio::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    options.mode(0o600);
    let mut file = options.open(&partial).await.map_err(failed)?;
    file.write_all(&message.formatted()).await.map_err(failed)?;
    file.flush().await.map_err(failed)?;
    drop(file);
    tokio::fs::rename(&partial, dir.join(name))
        .await
        .map_err(failed)
}

/// Deletes outbox files; one already gone is fine.
async fn remove_files(dir: &std::path::Path, names: &[String]) {
    for name in names {
        // Names are `<uuid>.eml`, written by this module; anything else is not ours to touch.
        if !is_mail_file_name(name) {
            continue;
        }
        match tokio::fs::remove_file(dir.join(name)).await {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!(file = name, "cannot delete a mail file: {e}"),
        }
    }
}

fn is_mail_file_name(name: &str) -> bool {
    name.strip_suffix(".eml")
        .is_some_and(|id| Uuid::try_parse(id).is_ok())
}

/// `error` with every occurrence of `address` cut out (SMTP replies often quote it).
fn scrub(error: &str, address: &str) -> String {
    if address.is_empty() {
        return error.to_owned();
    }
    let lower_error = error.to_lowercase();
    let lower_address = address.to_lowercase();
    if lower_error.len() != error.len() || lower_address.len() != address.len() {
        // Case folding changed byte offsets; replace exact matches only.
        return error.replace(address, "[recipient]");
    }
    let mut out = String::with_capacity(error.len());
    let mut rest = 0;
    for (at, _) in lower_error.match_indices(&lower_address) {
        out.push_str(&error[rest..at]);
        out.push_str("[recipient]");
        rest = at + address.len();
    }
    out.push_str(&error[rest..]);
    out
}

/// The handle requests use to queue mail, and the sender.
#[derive(Debug, Clone)]
pub struct Outbox {
    pool: PgPool,
    vault: Vault,
    transport: Transport,
    wake: Arc<Notify>,
}

/// A leased row: id, person, recipient, subject, text, html, attempts, deadline.
type Leased = (
    Uuid,
    Option<Uuid>,
    String,
    String,
    String,
    String,
    i32,
    OffsetDateTime,
);

/// A leased message, opened.
struct Opened {
    to: String,
    subject: String,
    text: String,
    html: String,
    key: Option<SubjectKey>,
}

impl Outbox {
    /// An outbox on `pool` that seals with `vault` and sends through `transport`.
    pub fn new(pool: PgPool, vault: Vault, transport: Transport) -> Self {
        Self {
            pool,
            vault,
            transport,
            wake: Arc::new(Notify::new()),
        }
    }

    /// Queues `mail` to the person `subject_id` (whose key seals it); the sender picks it up at
    /// once. Returns `None`, queuing nothing, if the person was erased.
    pub async fn enqueue(&self, subject_id: Uuid, mail: Mail) -> Result<Option<Uuid>, StoreError> {
        let Some(key) = self.vault.key_for(subject_id).await? else {
            return Ok(None);
        };
        let id = Uuid::now_v7();
        sqlx::query(
            "INSERT INTO mail_outbox (id, subject_id, recipient, subject, text_body, html_body, discard_at)
             VALUES ($1, $2, $3, $4, $5, $6, now() + make_interval(secs => $7))",
        )
        .bind(id)
        .bind(subject_id)
        .bind(key.seal(fields::MAIL_RECIPIENT, &mail.to))
        .bind(key.seal(fields::MAIL_SUBJECT, &mail.subject))
        .bind(key.seal(fields::MAIL_TEXT, &mail.text))
        .bind(key.seal(fields::MAIL_HTML, &mail.html))
        .bind(
            mail.discard_after
                .unwrap_or(MAX_AGE)
                .min(MAX_AGE)
                .as_secs_f64(),
        )
        .execute(&self.pool)
        .await?;
        self.wake.notify_one();
        Ok(Some(id))
    }

    /// Forgets the person `subject_id` (erasure): deletes their queued mail and the outbox
    /// files written for them.
    pub async fn forget(&self, subject_id: Uuid) -> Result<(), sqlx::Error> {
        sqlx::query("DELETE FROM mail_outbox WHERE subject_id = $1")
            .bind(subject_id)
            .execute(&self.pool)
            .await?;
        let files: Vec<String> =
            sqlx::query_scalar("DELETE FROM mail_files WHERE subject_id = $1 RETURNING file_name")
                .bind(subject_id)
                .fetch_all(&self.pool)
                .await?;
        if let Transport::Files(dir) = &self.transport {
            remove_files(dir, &files).await;
        }
        Ok(())
    }

    /// Sends queued mail from `from` until `shutdown` is cancelled, on the shared consumer
    /// loop (`crate::consumer`): woken when a message is queued on this node, polling every
    /// second (messages queued on other nodes, retries coming due), retrying with backoff while
    /// the database is unavailable.
    ///
    /// Unlike the relay it takes no lock and keeps no event checkpoint: its work is not the
    /// event log but the rows of its own outbox, queued by requests. Each row is its own
    /// progress (deleted once sent, or moved to its next attempt), and rows are leased with
    /// `SKIP LOCKED`, so every node can send at once and none sends a message another holds.
    pub async fn run(self, from: Mailbox, shutdown: CancellationToken) {
        supervise(NAME, &shutdown, || self.send_until(&from, &shutdown)).await;
    }

    async fn send_until(
        &self,
        from: &Mailbox,
        shutdown: &CancellationToken,
    ) -> Result<(), StoreError> {
        let pace = Pace {
            poll: Duration::from_secs(1),
            linger: Duration::ZERO,
        };
        drive(NAME, &mut Sending { outbox: self, from }, &pace, shutdown).await
    }

    /// Deletes outbox files past their deadline, or whose person was erased (also by another
    /// node or the CLI).
    async fn sweep_files(&self) -> Result<(), sqlx::Error> {
        let Transport::Files(dir) = &self.transport else {
            return Ok(());
        };
        let files: Vec<String> = sqlx::query_scalar(
            "DELETE FROM mail_files f
              WHERE f.delete_at <= now()
                 OR (f.subject_id IS NOT NULL
                     AND NOT EXISTS (SELECT 1 FROM subject_keys k WHERE k.subject_id = f.subject_id))
              RETURNING f.file_name",
        )
        .fetch_all(&self.pool)
        .await?;
        remove_files(dir, &files).await;
        Ok(())
    }

    /// Leases up to 10 due messages and tries each once; returns how many were tried.
    async fn send_due(&self, from: &Mailbox) -> Result<usize, StoreError> {
        let dropped = sqlx::query("DELETE FROM mail_outbox WHERE discard_at <= now()")
            .execute(&self.pool)
            .await?
            .rows_affected();
        if dropped > 0 {
            tracing::warn!(dropped, "undelivered mail dropped after its deadline");
        }
        self.sweep_files().await?;
        let due: Vec<Leased> = sqlx::query_as(
            "UPDATE mail_outbox SET attempts = attempts + 1, next_attempt_at = now() + interval '5 minutes'
              WHERE id IN (SELECT id FROM mail_outbox WHERE next_attempt_at <= now()
                            ORDER BY next_attempt_at LIMIT 10 FOR UPDATE SKIP LOCKED)
              RETURNING id, subject_id, recipient, subject, text_body, html_body, attempts, discard_at",
        )
        .fetch_all(&self.pool)
        .await?;
        for row in &due {
            self.try_send(from, row).await?;
        }
        Ok(due.len())
    }

    /// Opens a leased row: `None` if its person was erased or it does not open (it is then
    /// deleted, since nobody can ever send it).
    async fn open(&self, row: &Leased) -> Result<Option<Opened>, StoreError> {
        let (id, subject_id, to, subject, text, html, ..) = row;
        let Some(subject_id) = subject_id else {
            // Queued before mail was sealed.
            return Ok(Some(Opened {
                to: to.clone(),
                subject: subject.clone(),
                text: text.clone(),
                html: html.clone(),
                key: None,
            }));
        };
        let opened = match self.vault.key_for(*subject_id).await? {
            Some(key) => {
                let open = |field, value: &String| key.open(field, value);
                match (
                    open(fields::MAIL_RECIPIENT, to),
                    open(fields::MAIL_SUBJECT, subject),
                    open(fields::MAIL_TEXT, text),
                    open(fields::MAIL_HTML, html),
                ) {
                    (Ok(to), Ok(subject), Ok(text), Ok(html)) => Some(Opened {
                        to,
                        subject,
                        text,
                        html,
                        key: Some(key),
                    }),
                    _ => {
                        tracing::warn!(mail_id = %id, "queued mail does not open; dropped");
                        None
                    }
                }
            }
            None => None,
        };
        if opened.is_none() {
            sqlx::query("DELETE FROM mail_outbox WHERE id = $1")
                .bind(id)
                .execute(&self.pool)
                .await?;
        }
        Ok(opened)
    }

    async fn try_send(&self, from: &Mailbox, row: &Leased) -> Result<(), StoreError> {
        let (id, subject_id, .., attempts, discard_at) = row;
        let Some(mail) = self.open(row).await? else {
            return Ok(());
        };
        let outcome = match build(from, &mail.to, &mail.subject, &mail.text, &mail.html) {
            Ok(message) => match &self.transport {
                Transport::Smtp(smtp) => smtp
                    .send(message)
                    .await
                    .map(drop)
                    .map_err(|e| e.to_string()),
                Transport::Files(dir) => {
                    let name = format!("{id}.eml");
                    // Recorded before it is written, so that a sweep always finds it.
                    sqlx::query(
                        "INSERT INTO mail_files (mail_id, subject_id, file_name, delete_at)
                         VALUES ($1, $2, $3, $4) ON CONFLICT (mail_id) DO NOTHING",
                    )
                    .bind(id)
                    .bind(subject_id)
                    .bind(&name)
                    .bind(discard_at)
                    .execute(&self.pool)
                    .await?;
                    write_file(dir, &name, &message).await
                }
            },
            Err(e) => Err(e),
        };
        match outcome {
            Ok(()) => {
                tracing::info!(mail_id = %id, "mail sent");
                let deleted = sqlx::query("DELETE FROM mail_outbox WHERE id = $1")
                    .bind(id)
                    .execute(&self.pool)
                    .await?
                    .rows_affected();
                if let (0, Transport::Files(dir)) = (deleted, &self.transport) {
                    // Its person was erased (or its deadline passed) while it was being
                    // written: the file goes too.
                    let files: Vec<String> = sqlx::query_scalar(
                        "DELETE FROM mail_files WHERE mail_id = $1 RETURNING file_name",
                    )
                    .bind(id)
                    .fetch_all(&self.pool)
                    .await?;
                    remove_files(dir, &files).await;
                }
            }
            Err(error) => {
                let backoff = retry_delay(*attempts);
                let error = scrub(&error, &mail.to);
                tracing::warn!(mail_id = %id, attempts, retry_in_s = backoff.as_secs(), "mail not sent: {error}");
                let stored = match &mail.key {
                    Some(key) => key.seal(fields::MAIL_ERROR, &error),
                    None => error,
                };
                sqlx::query(
                    "UPDATE mail_outbox SET last_error = $2,
                            next_attempt_at = now() + make_interval(secs => $3)
                      WHERE id = $1",
                )
                .bind(id)
                .bind(stored)
                .bind(backoff.as_secs_f64())
                .execute(&self.pool)
                .await?;
            }
        }
        Ok(())
    }
}

/// The outbox as the consumer loop's [`Work`]: lease due messages and try each once.
struct Sending<'a> {
    outbox: &'a Outbox,
    from: &'a Mailbox,
}

impl Work for Sending<'_> {
    type Error = StoreError;

    async fn step(&mut self) -> Result<Step, StoreError> {
        Ok(match self.outbox.send_due(self.from).await? {
            0 => Step::Idle,
            // More may be due; a leased message not tried is retried after its lease.
            _ => Step::Worked { more: true },
        })
    }

    async fn woken(&mut self) {
        self.outbox.wake.notified().await;
    }

    async fn check(&mut self) -> Result<(), StoreError> {
        Ok(())
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
    // lettre's error names the address; the address is never part of an error here.
    let to: Mailbox = to
        .parse()
        .map_err(|_| "the recipient is not a valid address".to_owned())?;
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

/// The mailer's backlog: messages queued and not yet sent (`cairn projections`). The mailer
/// keeps no event checkpoint: its outbox rows are its progress.
pub async fn queued(pool: &sqlx::PgPool) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT count(*) FROM mail_outbox")
        .fetch_one(pool)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_lose_the_address() {
        assert_eq!(
            scrub(
                "permanent error (550): 5.1.1 <Dave@Example.com>: unknown; dave@example.com",
                "dave@example.com"
            ),
            "permanent error (550): 5.1.1 <[recipient]>: unknown; [recipient]"
        );
        assert_eq!(scrub("timed out", "dave@example.com"), "timed out");
    }

    #[test]
    fn only_mail_files_are_deleted() {
        assert!(is_mail_file_name(&format!("{}.eml", Uuid::now_v7())));
        assert!(!is_mail_file_name("../secret.key"));
        assert!(!is_mail_file_name("notes.eml"));
    }
}
