//! Secrets for links, sessions and API keys: generated here, shown once, stored only as
//! SHA-256 digests.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use domain::Digest;
use sha2::{Digest as _, Sha256};

/// The SHA-256 digest of a secret's text.
pub fn digest(secret: &str) -> Digest {
    Digest::from_bytes(Sha256::digest(secret.as_bytes()).into())
}

/// A fresh 256-bit secret as URL-safe text, and its digest.
pub fn new_token() -> (String, Digest) {
    let bytes: [u8; 32] = rand::random();
    let token = URL_SAFE_NO_PAD.encode(bytes);
    let hash = digest(&token);
    (token, hash)
}

/// Compares two digests in constant time.
pub fn same_digest(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The parts of an API key: `cairn_<prefix>_<secret>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyParts<'a> {
    /// The public prefix, 12 lower-case letters and digits.
    pub prefix: &'a str,
}

/// Length of an API key's public prefix.
pub const API_KEY_PREFIX_LEN: usize = 12;

/// A fresh API key, its prefix, and the digest of the whole key.
pub fn new_api_key() -> (String, String, Digest) {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let prefix: String = (0..API_KEY_PREFIX_LEN)
        .map(|_| ALPHABET[rand::random_range(0..ALPHABET.len())] as char)
        .collect();
    let secret: [u8; 32] = rand::random();
    let secret = eventstore::encode::hex(secret);
    let key = format!("cairn_{prefix}_{secret}");
    let hash = digest(&key);
    (key, prefix, hash)
}

/// Splits an API key, if it has the right shape.
pub fn parse_api_key(key: &str) -> Option<ApiKeyParts<'_>> {
    let rest = key.strip_prefix("cairn_")?;
    let (prefix, secret) = rest.split_once('_')?;
    let ok = prefix.len() == API_KEY_PREFIX_LEN
        && prefix
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && secret.len() == 64
        && secret.bytes().all(|b| b.is_ascii_hexdigit());
    ok.then_some(ApiKeyParts { prefix })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_keys_parse_and_tokens_are_distinct() {
        let (key, prefix, hash) = new_api_key();
        assert_eq!(parse_api_key(&key).map(|p| p.prefix), Some(prefix.as_str()));
        assert_eq!(digest(&key), hash);
        for bad in [
            "",
            "cairn_",
            "cairn_ABCDEFGHIJKL_00",
            "x_abcdefghijkl_",
            &key[..key.len() - 1],
        ] {
            assert!(parse_api_key(bad).is_none(), "{bad}");
        }
        assert_ne!(new_token().0, new_token().0);
        assert!(same_digest(b"abc", b"abc") && !same_digest(b"abc", b"abd"));
    }
}
