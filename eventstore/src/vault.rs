//! Personal data protection by crypto-shredding.
//!
//! Each person (a *subject*) gets a random data key, stored in `subject_keys` sealed with the
//! server's master key (`CAIRN_SECRET_KEY`). Personal data is encrypted with that key before it
//! enters an event, as `enc:v1:<subject>:<base64url(nonce || ciphertext)>`. Erasing the person
//! deletes the key row: their events stay in place, their hash chains still verify, and their
//! data can no longer be read by anyone.
//!
//! Lookups by email address use a blind index, an HMAC of the normalised address under the
//! master key, so the address itself is stored nowhere.

use std::collections::HashMap;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use sqlx::PgPool;
use uuid::Uuid;

use crate::StoreError;

/// What a reader shows in place of data whose subject was erased.
pub const ERASED: &str = "[erased]";

/// What a reader shows in place of sealed data that does not open (corrupt or altered).
pub const UNREADABLE: &str = "[unreadable]";

const PREFIX: &str = "enc:v1:";

/// A subject's data key, in memory only for the duration of a request.
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
}

/// The key vault.
#[derive(Clone)]
pub struct Vault {
    pool: PgPool,
    master: [u8; 32],
}

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
    pub fn new(pool: PgPool, master: [u8; 32]) -> Self {
        Self { pool, master }
    }

    /// The blind index of a normalised email address.
    pub fn email_index(&self, email: &str) -> [u8; 32] {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.master)
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

    /// Encrypts `plaintext` for `key`'s subject.
    pub fn seal(&self, key: &SubjectKey, plaintext: &str) -> String {
        let cipher = ChaCha20Poly1305::new(Key::from_slice(&key.key));
        let nonce: [u8; 12] = rand::random();
        let aad = key.subject_id.as_bytes();
        let ciphertext = cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plaintext.as_bytes(),
                    aad,
                },
            )
            .unwrap_or_else(|_| unreachable!("encryption of a short message cannot fail"));
        let mut blob = nonce.to_vec();
        blob.extend(ciphertext);
        format!(
            "{PREFIX}{}:{}",
            key.subject_id.simple(),
            URL_SAFE_NO_PAD.encode(blob)
        )
    }

    /// Whether `value` is sealed data.
    pub fn is_sealed(value: &str) -> bool {
        value.starts_with(PREFIX)
    }

    /// Erases a subject: deletes their key. Returns whether there was one.
    pub async fn erase(&self, subject_id: Uuid) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM subject_keys WHERE subject_id = $1")
            .bind(subject_id)
            .execute(&self.pool)
            .await?;
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
        let cipher = ChaCha20Poly1305::new(Key::from_slice(&self.master));
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
        let cipher = ChaCha20Poly1305::new(Key::from_slice(&self.master));
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
    /// The plaintext of `sealed`, or [`ERASED`] if its subject was erased.
    pub async fn open(&mut self, sealed: &str) -> Result<String, StoreError> {
        let (subject_id, blob) =
            parse(sealed).ok_or_else(|| StoreError::Unavailable(Malformed.to_string()))?;
        if !self.keys.contains_key(&subject_id) {
            let key = self.vault.key_for(subject_id).await?;
            self.keys.insert(subject_id, key);
        }
        let Some(Some(key)) = self.keys.get(&subject_id) else {
            return Ok(ERASED.to_owned());
        };
        if blob.len() < 12 {
            return Err(StoreError::Unavailable(Malformed.to_string()));
        }
        let cipher = ChaCha20Poly1305::new(Key::from_slice(&key.key));
        let plain = cipher
            .decrypt(
                Nonce::from_slice(&blob[..12]),
                Payload {
                    msg: &blob[12..],
                    aad: subject_id.as_bytes(),
                },
            )
            .map_err(|_| StoreError::Unavailable(Malformed.to_string()))?;
        String::from_utf8(plain).map_err(|_| StoreError::Unavailable(Malformed.to_string()))
    }

    /// Replaces every sealed string inside `value` with its plaintext (or [`ERASED`]). Text
    /// that only looks sealed (a user could type `enc:v1:`) is left as it is, and a sealed
    /// value that fails to open shows as [`UNREADABLE`], so one odd value never hides a page.
    pub async fn open_json(&mut self, value: &mut serde_json::Value) -> Result<(), StoreError> {
        let mut stack = vec![value];
        while let Some(v) = stack.pop() {
            match v {
                serde_json::Value::String(s) if parse(s).is_some() => {
                    *s = match self.open(s).await {
                        Ok(plain) => plain,
                        Err(StoreError::Database(e)) => return Err(StoreError::Database(e)),
                        Err(_) => UNREADABLE.to_owned(),
                    };
                }
                serde_json::Value::Array(items) => stack.extend(items.iter_mut()),
                serde_json::Value::Object(map) => stack.extend(map.values_mut()),
                _ => {}
            }
        }
        Ok(())
    }
}

fn parse(sealed: &str) -> Option<(Uuid, Vec<u8>)> {
    let rest = sealed.strip_prefix(PREFIX)?;
    let (subject, blob) = rest.split_once(':')?;
    Some((
        Uuid::parse_str(subject).ok()?,
        URL_SAFE_NO_PAD.decode(blob).ok()?,
    ))
}
