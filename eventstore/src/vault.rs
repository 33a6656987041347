//! Personal data protection by crypto-shredding.
//!
//! Each person (a *subject*) gets a random data key, stored in `subject_keys` sealed with the
//! server's master key (`CAIRN_SECRET_KEY`). Personal data is encrypted with that key before it
//! is stored (in an event, its metadata, a read model or the mail outbox), as
//! `enc:v2:<subject>:<base64url(nonce || ciphertext)>`. Erasing the person deletes the key row:
//! their events stay in place, their hash chains still verify, and their data can no longer be
//! read by anyone.
//!
//! Each ciphertext is bound, as AEAD associated data, to its subject and to the field that
//! sealed it (`cairn:v2:<subject>:<field>`, names in [`fields`]), and readers open only the
//! fields declared sealed ([`SEALED_PAYLOAD_FIELDS`], [`SEALED_METADATA_FIELDS`]). So a sealed
//! value copied into a task's text stays the literal text, and one moved to another field or
//! subject does not open. Values of the first version (`enc:v1:`, bound to the subject only)
//! still open, as email addresses in declared fields only.
//!
//! Lookups by email address use a blind index, an HMAC of the normalised address under the
//! master key, so the address itself is stored nowhere.

use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use hmac::{Hmac, Mac};
use lru::LruCache;
use secrecy::{ExposeSecret, SecretBox};
use sha2::Sha256;
use sqlx::PgPool;
use uuid::Uuid;

use crate::StoreError;

/// What a reader shows in place of data whose subject was erased.
pub const ERASED: &str = "[erased]";

/// What a reader shows in place of sealed data that does not open (corrupt or altered).
pub const UNREADABLE: &str = "[unreadable]";

/// Sealed by the first version: bound to the subject only. Still opened, but only as an email
/// address in a field declared to hold one, so old history keeps reading.
const V1: &str = "enc:v1:";
/// Sealed bound to the subject and to the field (AEAD associated data
/// `cairn:v2:<subject>:<field>`).
const V2: &str = "enc:v2:";

/// The names sealed values are bound to. A value sealed as one of them opens as that one only.
pub mod fields {
    /// A person's email address (`account.*` events, `accounts.email_sealed`).
    pub const EMAIL: &str = "email";
    /// The client's IP address in an event's metadata (and the session read model).
    pub const IP: &str = "metadata.ip";
    /// The client's user agent in an event's metadata (and the session read model).
    pub const USER_AGENT: &str = "metadata.user_agent";
    /// A queued mail's recipient.
    pub const MAIL_RECIPIENT: &str = "mail.recipient";
    /// A queued mail's subject line.
    pub const MAIL_SUBJECT: &str = "mail.subject";
    /// A queued mail's plain-text body.
    pub const MAIL_TEXT: &str = "mail.text";
    /// A queued mail's HTML body.
    pub const MAIL_HTML: &str = "mail.html";
    /// Why a queued mail was not sent (server replies can name the recipient).
    pub const MAIL_ERROR: &str = "mail.error";
}

/// The payload fields each event type declares as sealed, with the name each is sealed as.
/// Only these are ever opened in an event's payload; a sealed-looking string anywhere else is
/// user text and stays as it is.
pub const SEALED_PAYLOAD_FIELDS: &[(&str, &[(&str, &str)])] = &[
    ("account.magic_link_requested", &[("email", fields::EMAIL)]),
    ("account.registered", &[("email", fields::EMAIL)]),
];

/// The metadata keys that hold sealed values (on every event type), with the name each is
/// sealed as.
pub const SEALED_METADATA_FIELDS: &[(&str, &str)] =
    &[("ip", fields::IP), ("user_agent", fields::USER_AGENT)];

fn aad_v2(subject_id: Uuid, field: &str) -> String {
    format!("cairn:v2:{}:{field}", subject_id.simple())
}

/// A subject's data key: in memory for the duration of a request, or (for sealing only) for
/// at most [`SEALING_KEY_TTL`] in [`Vault::sealing_key`]'s cache.
#[derive(Clone)]
pub struct SubjectKey {
    subject_id: Uuid,
    key: [u8; 32],
}

impl std::fmt::Debug for SubjectKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SubjectKey")
            .field("subject_id", &self.subject_id)
            .finish_non_exhaustive()
    }
}

impl SubjectKey {
    /// The subject (for people, also their user id).
    pub fn subject_id(&self) -> Uuid {
        self.subject_id
    }

    /// Encrypts `plaintext` for this subject, bound to `field`: the result opens only as that
    /// field of that subject (see [`fields`]).
    pub fn seal(&self, field: &str, plaintext: &str) -> String {
        let cipher = ChaCha20Poly1305::new(Key::from_slice(&self.key));
        let nonce: [u8; 12] = rand::random();
        let aad = aad_v2(self.subject_id, field);
        let ciphertext = cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plaintext.as_bytes(),
                    aad: aad.as_bytes(),
                },
            )
            .unwrap_or_else(|_| unreachable!("encryption of a short message cannot fail"));
        let mut blob = nonce.to_vec();
        blob.extend(ciphertext);
        format!(
            "{V2}{}:{}",
            self.subject_id.simple(),
            URL_SAFE_NO_PAD.encode(blob)
        )
    }

    /// The plaintext of `sealed`, which must have been sealed by this subject as `field`.
    /// Anything else (another subject's value, another field's, altered bytes) is
    /// [`Malformed`].
    pub fn open(&self, field: &str, sealed: &str) -> Result<String, Malformed> {
        let parsed = parse(sealed).ok_or(Malformed)?;
        if parsed.subject_id != self.subject_id {
            return Err(Malformed);
        }
        self.open_parsed(field, &parsed)
    }

    fn open_parsed(&self, field: &str, parsed: &Parsed) -> Result<String, Malformed> {
        let aad = match parsed.version {
            Version::V2 => aad_v2(parsed.subject_id, field).into_bytes(),
            // v1 bound the subject only, and sealed nothing but email addresses.
            Version::V1 if field == fields::EMAIL => parsed.subject_id.as_bytes().to_vec(),
            Version::V1 => return Err(Malformed),
        };
        let blob = &parsed.blob;
        if blob.len() < 12 {
            return Err(Malformed);
        }
        let cipher = ChaCha20Poly1305::new(Key::from_slice(&self.key));
        let plain = cipher
            .decrypt(
                Nonce::from_slice(&blob[..12]),
                Payload {
                    msg: &blob[12..],
                    aad: &aad,
                },
            )
            .map_err(|_| Malformed)?;
        String::from_utf8(plain).map_err(|_| Malformed)
    }
}

/// The server's master key (`CAIRN_SECRET_KEY`): it seals every subject's key and keys the
/// email blind index. Its `Debug` shows nothing of it, and it is zeroed when the last clone is
/// dropped. [`ExposeSecret`] reads it, which is easy to find in a review.
#[derive(Debug, Clone)]
pub struct MasterKey(Arc<SecretBox<[u8; 32]>>);

impl MasterKey {
    /// A new random key.
    pub fn generate() -> Self {
        Self::from(rand::random::<[u8; 32]>())
    }
}

impl From<[u8; 32]> for MasterKey {
    fn from(bytes: [u8; 32]) -> Self {
        Self(Arc::new(SecretBox::new(Box::new(bytes))))
    }
}

impl ExposeSecret<[u8; 32]> for MasterKey {
    fn expose_secret(&self) -> &[u8; 32] {
        self.0.expose_secret()
    }
}

/// An HMAC-SHA256 of `data` under a key derived from `master` for `purpose` (a label such as
/// `cairn/collab-ticket/v1`): what the server signs and later checks itself (short-lived
/// tickets), never a secret's storage.
pub fn mac(master: &MasterKey, purpose: &str, data: &[u8]) -> [u8; 32] {
    let mut derive = <Hmac<Sha256> as Mac>::new_from_slice(master.expose_secret())
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    derive.update(purpose.as_bytes());
    let key: [u8; 32] = derive.finalize().into_bytes().into();
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&key)
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(data);
    mac.finalize().into_bytes().into()
}

/// The key vault.
#[derive(Clone)]
pub struct Vault {
    pool: PgPool,
    master: MasterKey,
    sealing: Arc<Mutex<LruCache<Uuid, (Instant, SubjectKey)>>>,
}

/// How long [`Vault::sealing_key`] keeps a key: the longest an erased person's key can stay in
/// the memory of a node that did not erase them (the node that erases forgets it at once).
pub const SEALING_KEY_TTL: Duration = Duration::from_secs(30);

/// How many people's sealing keys a vault keeps at most.
const SEALING_KEYS_KEPT: usize = 10_000;

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vault").finish_non_exhaustive()
    }
}

/// Sealed data that could not be opened because it is malformed or was tampered with.
#[derive(Debug, thiserror::Error)]
#[error("sealed value is malformed or was altered")]
pub struct Malformed;

impl Vault {
    /// A vault over `pool` whose keys are sealed with `master`.
    pub fn new(pool: PgPool, master: impl Into<MasterKey>) -> Self {
        Self {
            pool,
            master: master.into(),
            sealing: Arc::new(Mutex::new(LruCache::new(
                NonZeroUsize::new(SEALING_KEYS_KEPT).unwrap_or(NonZeroUsize::MIN),
            ))),
        }
    }

    /// The blind index of a normalised email address.
    pub fn email_index(&self, email: &str) -> [u8; 32] {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(self.master.expose_secret())
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        mac.update(b"cairn/email-index/v1\0");
        mac.update(email.as_bytes());
        mac.finalize().into_bytes().into()
    }

    /// The subject for an email address, creating it (and its key) on first sight.
    pub async fn subject_for_email(&self, email: &str) -> Result<SubjectKey, StoreError> {
        let index = self.email_index(email);
        loop {
            let found: Option<(Uuid, Vec<u8>)> = sqlx::query_as(
                "SELECT subject_id, sealed_key FROM subject_keys WHERE email_index = $1",
            )
            .bind(index.as_slice())
            .fetch_optional(&self.pool)
            .await?;
            if let Some((subject_id, sealed)) = found {
                return self.unseal_key(subject_id, &sealed);
            }
            let subject_id = Uuid::now_v7();
            let key: [u8; 32] = rand::random();
            let sealed = self.seal_key(subject_id, &key);
            let inserted = sqlx::query(
                "INSERT INTO subject_keys (subject_id, email_index, sealed_key) VALUES ($1, $2, $3)
                 ON CONFLICT (email_index) DO NOTHING",
            )
            .bind(subject_id)
            .bind(index.as_slice())
            .bind(sealed)
            .execute(&self.pool)
            .await?;
            if inserted.rows_affected() == 1 {
                return Ok(SubjectKey { subject_id, key });
            }
            // Another request created it first; read theirs.
        }
    }

    /// A subject's key, unless the subject was erased.
    pub async fn key_for(&self, subject_id: Uuid) -> Result<Option<SubjectKey>, StoreError> {
        let sealed: Option<Vec<u8>> =
            sqlx::query_scalar("SELECT sealed_key FROM subject_keys WHERE subject_id = $1")
                .bind(subject_id)
                .fetch_optional(&self.pool)
                .await?;
        sealed.map(|s| self.unseal_key(subject_id, &s)).transpose()
    }

    /// A subject's key for *sealing* (the request details stored with every command a person
    /// gives), kept for up to [`SEALING_KEY_TTL`] so that a person's writes do not each read
    /// their key. Opening never uses it: what is read back always asks [`Self::key_for`], so
    /// erasure takes effect for every reader at once. Sealing with a key erased meanwhile on
    /// another node is harmless: nothing it seals can be opened.
    pub async fn sealing_key(&self, subject_id: Uuid) -> Result<Option<SubjectKey>, StoreError> {
        if let Some((at, key)) = self.sealing_keys().get(&subject_id) {
            if at.elapsed() < SEALING_KEY_TTL {
                return Ok(Some(key.clone()));
            }
        }
        let key = self.key_for(subject_id).await?;
        match &key {
            Some(key) => {
                self.sealing_keys()
                    .put(subject_id, (Instant::now(), key.clone()));
            }
            None => {
                self.sealing_keys().pop(&subject_id);
            }
        }
        Ok(key)
    }

    fn sealing_keys(&self) -> std::sync::MutexGuard<'_, LruCache<Uuid, (Instant, SubjectKey)>> {
        self.sealing.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Encrypts `plaintext` for `key`'s subject, bound to `field` (see [`SubjectKey::seal`]).
    pub fn seal(&self, key: &SubjectKey, field: &str, plaintext: &str) -> String {
        key.seal(field, plaintext)
    }

    /// Whether `value` is sealed data.
    pub fn is_sealed(value: &str) -> bool {
        value.starts_with(V1) || value.starts_with(V2)
    }

    /// Erases a subject: deletes their key. Returns whether there was one.
    pub async fn erase(&self, subject_id: Uuid) -> Result<bool, StoreError> {
        self.sealing_keys().pop(&subject_id);
        let done = sqlx::query("DELETE FROM subject_keys WHERE subject_id = $1")
            .bind(subject_id)
            .execute(&self.pool)
            .await?;
        // Again: a sealing key read just before the delete may have been kept meanwhile.
        self.sealing_keys().pop(&subject_id);
        Ok(done.rows_affected() == 1)
    }

    /// An opener for one request: it fetches each subject's key at most once.
    pub fn opener(&self) -> Opener<'_> {
        Opener {
            vault: self,
            keys: HashMap::new(),
        }
    }

    fn seal_key(&self, subject_id: Uuid, key: &[u8; 32]) -> Vec<u8> {
        let cipher = ChaCha20Poly1305::new(Key::from_slice(self.master.expose_secret()));
        let nonce: [u8; 12] = rand::random();
        let ciphertext = cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: key,
                    aad: subject_id.as_bytes(),
                },
            )
            .unwrap_or_else(|_| unreachable!("encryption of a short message cannot fail"));
        let mut out = nonce.to_vec();
        out.extend(ciphertext);
        out
    }

    fn unseal_key(&self, subject_id: Uuid, sealed: &[u8]) -> Result<SubjectKey, StoreError> {
        if sealed.len() < 12 {
            return Err(StoreError::Unavailable(
                "a subject key is truncated".to_owned(),
            ));
        }
        let cipher = ChaCha20Poly1305::new(Key::from_slice(self.master.expose_secret()));
        let plain = cipher
            .decrypt(
                Nonce::from_slice(&sealed[..12]),
                Payload {
                    msg: &sealed[12..],
                    aad: subject_id.as_bytes(),
                },
            )
            .map_err(|_| {
                StoreError::Unavailable(
                    "a subject key does not open with CAIRN_SECRET_KEY (was the key changed?)"
                        .to_owned(),
                )
            })?;
        let key: [u8; 32] = plain.try_into().map_err(|_| {
            StoreError::Unavailable("a subject key has the wrong length".to_owned())
        })?;
        Ok(SubjectKey { subject_id, key })
    }
}

/// Opens sealed values for one request, fetching each subject's key once.
#[derive(Debug)]
pub struct Opener<'a> {
    vault: &'a Vault,
    keys: HashMap<Uuid, Option<SubjectKey>>,
}

impl Opener<'_> {
    /// The plaintext of a person's sealed email address (as stored in `accounts`), or
    /// [`ERASED`] if its subject was erased.
    pub async fn open(&mut self, sealed: &str) -> Result<String, StoreError> {
        self.open_field(fields::EMAIL, sealed).await
    }

    /// The plaintext of `sealed`, which must have been sealed as `field`, or [`ERASED`] if its
    /// subject was erased. A value sealed as another field, or altered, is an error.
    pub async fn open_field(&mut self, field: &str, sealed: &str) -> Result<String, StoreError> {
        let malformed = || StoreError::Unavailable(Malformed.to_string());
        let parsed = parse(sealed).ok_or_else(malformed)?;
        // Refused before the key is looked up, so that whether a subject was erased shows
        // only where their own data was sealed.
        if parsed.version == Version::V1 && field != fields::EMAIL {
            return Err(malformed());
        }
        let Some(key) = self.key(parsed.subject_id).await? else {
            return Ok(ERASED.to_owned());
        };
        key.open_parsed(field, &parsed).map_err(|_| malformed())
    }

    /// For display: `value` opened as `field` when it is sealed, as it is when it is not
    /// (written before it was sealed), [`ERASED`] when its subject was erased, and
    /// [`UNREADABLE`] when it does not open as `field`.
    pub async fn open_for_display(
        &mut self,
        field: &str,
        value: &str,
    ) -> Result<String, StoreError> {
        if parse(value).is_none() {
            return Ok(value.to_owned());
        }
        match self.open_field(field, value).await {
            Ok(plain) => Ok(plain),
            Err(StoreError::Database(e)) => Err(StoreError::Database(e)),
            Err(_) => Ok(UNREADABLE.to_owned()),
        }
    }

    /// Opens the fields that events of type `event_type` declare as sealed
    /// ([`SEALED_PAYLOAD_FIELDS`]) in `payload`. Nothing else is touched: a sealed value that a
    /// user pasted into their own text stays the literal text they typed.
    pub async fn open_event(
        &mut self,
        event_type: &str,
        payload: &mut serde_json::Value,
    ) -> Result<(), StoreError> {
        let Some((_, declared)) = SEALED_PAYLOAD_FIELDS.iter().find(|(t, _)| *t == event_type)
        else {
            return Ok(());
        };
        for (key, field) in declared.iter() {
            self.open_in(payload, key, field).await?;
        }
        Ok(())
    }

    /// Opens the sealed keys of an event's metadata ([`SEALED_METADATA_FIELDS`]).
    pub async fn open_metadata(
        &mut self,
        metadata: &mut serde_json::Value,
    ) -> Result<(), StoreError> {
        for (key, field) in SEALED_METADATA_FIELDS {
            self.open_in(metadata, key, field).await?;
        }
        Ok(())
    }

    async fn open_in(
        &mut self,
        object: &mut serde_json::Value,
        key: &str,
        field: &str,
    ) -> Result<(), StoreError> {
        if let Some(serde_json::Value::String(s)) = object.get_mut(key) {
            *s = self.open_for_display(field, s).await?;
        }
        Ok(())
    }

    async fn key(&mut self, subject_id: Uuid) -> Result<Option<&SubjectKey>, StoreError> {
        if !self.keys.contains_key(&subject_id) {
            let key = self.vault.key_for(subject_id).await?;
            self.keys.insert(subject_id, key);
        }
        Ok(self.keys.get(&subject_id).and_then(Option::as_ref))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Version {
    V1,
    V2,
}

struct Parsed {
    version: Version,
    subject_id: Uuid,
    blob: Vec<u8>,
}

fn parse(sealed: &str) -> Option<Parsed> {
    let (version, rest) = match sealed.strip_prefix(V2) {
        Some(rest) => (Version::V2, rest),
        None => (Version::V1, sealed.strip_prefix(V1)?),
    };
    let (subject, blob) = rest.split_once(':')?;
    Some(Parsed {
        version,
        subject_id: Uuid::parse_str(subject).ok()?,
        blob: URL_SAFE_NO_PAD.decode(blob).ok()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::TestDb;

    async fn vault(db: &TestDb) -> Vault {
        Vault::new(db.pool(2).await, [9; 32])
    }

    #[test]
    fn the_master_key_never_shows_in_debug() {
        let key = MasterKey::from([0xab; 32]);
        let shown = format!("{key:?}");
        assert!(!shown.contains("171") && !shown.contains("ab"), "{shown}");
        assert_eq!(key.expose_secret(), &[0xab; 32]);
    }

    /// The first version's sealing (subject-only associated data), to check old history.
    fn seal_v1(key: &SubjectKey, plaintext: &str) -> String {
        let cipher = ChaCha20Poly1305::new(Key::from_slice(&key.key));
        let nonce: [u8; 12] = rand::random();
        let ciphertext = cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plaintext.as_bytes(),
                    aad: key.subject_id.as_bytes(),
                },
            )
            .expect("encrypt");
        let mut blob = nonce.to_vec();
        blob.extend(ciphertext);
        format!(
            "{V1}{}:{}",
            key.subject_id.simple(),
            URL_SAFE_NO_PAD.encode(blob)
        )
    }

    #[test]
    fn sealed_data_moved_to_another_field_or_subject_does_not_open() {
        let dave = SubjectKey {
            subject_id: Uuid::now_v7(),
            key: rand::random(),
        };
        let carol = SubjectKey {
            subject_id: Uuid::now_v7(),
            key: rand::random(),
        };
        let sealed = dave.seal(fields::EMAIL, "dave@example.com");
        assert!(sealed.starts_with(V2));
        assert_eq!(
            dave.open(fields::EMAIL, &sealed)
                .expect("opens where sealed"),
            "dave@example.com"
        );
        assert!(dave.open(fields::IP, &sealed).is_err(), "another field");
        assert!(
            dave.open(fields::MAIL_RECIPIENT, &sealed).is_err(),
            "another field"
        );
        assert!(
            carol.open(fields::EMAIL, &sealed).is_err(),
            "another subject"
        );
        // The same bytes relabelled as Carol's: the associated data names Dave.
        let relabelled = sealed.replace(
            &dave.subject_id.simple().to_string(),
            &carol.subject_id.simple().to_string(),
        );
        assert!(carol.open(fields::EMAIL, &relabelled).is_err());
        // A v1 value opens as an email address only.
        let old = seal_v1(&dave, "dave@example.com");
        assert_eq!(
            dave.open(fields::EMAIL, &old).expect("v1 email"),
            "dave@example.com"
        );
        assert!(dave.open(fields::USER_AGENT, &old).is_err());
    }

    #[tokio::test]
    async fn events_open_only_their_declared_sealed_fields() {
        let db = TestDb::new().await;
        let vault = vault(&db).await;
        let dave = vault
            .subject_for_email("dave@example.com")
            .await
            .expect("key");
        let email = vault.seal(&dave, fields::EMAIL, "dave@example.com");
        let ip = vault.seal(&dave, fields::IP, "192.0.2.7");
        let mut opener = vault.opener();

        let mut registered = serde_json::json!({"email": email, "note": email});
        opener
            .open_event("account.registered", &mut registered)
            .await
            .expect("open");
        assert_eq!(registered["email"], "dave@example.com");
        assert_eq!(registered["note"], email.as_str(), "undeclared field");

        // Pasted into a task: never opened, whatever it names.
        let mut task = serde_json::json!({"description": email, "title": ip});
        let before = task.clone();
        opener
            .open_event("task.created", &mut task)
            .await
            .expect("open");
        assert_eq!(task, before);

        // Moved into another declared field: it does not open there.
        let mut moved = serde_json::json!({"ip": email, "user_agent": ip});
        opener.open_metadata(&mut moved).await.expect("open");
        assert_eq!(moved["ip"], UNREADABLE);
        assert_eq!(moved["user_agent"], UNREADABLE);
        let mut metadata = serde_json::json!({"ip": ip, "user_agent": "plain (before sealing)"});
        opener.open_metadata(&mut metadata).await.expect("open");
        assert_eq!(metadata["ip"], "192.0.2.7");
        assert_eq!(metadata["user_agent"], "plain (before sealing)");

        // Erased: declared fields read as erased, pasted copies are still the literal text.
        let old_email = seal_v1(&dave, "dave@example.com");
        assert!(vault.erase(dave.subject_id()).await.expect("erase"));
        let mut opener = vault.opener();
        let mut registered = serde_json::json!({"email": email});
        opener
            .open_event("account.registered", &mut registered)
            .await
            .expect("open");
        assert_eq!(registered["email"], ERASED);
        let mut task = serde_json::json!({"description": email});
        opener
            .open_event("task.created", &mut task)
            .await
            .expect("open");
        assert_eq!(task["description"], email.as_str());
        // An old value where it was never sealed does not tell that its subject was erased.
        let mut metadata = serde_json::json!({"user_agent": old_email});
        opener.open_metadata(&mut metadata).await.expect("open");
        assert_eq!(metadata["user_agent"], UNREADABLE);
    }
}
