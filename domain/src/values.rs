//! Validated value types. A value that exists is valid; constructors are the only way in.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Why a value was rejected. The gateway answers it with HTTP 422 (`validation_failed`): the
/// request was well-formed, its value broke a rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    /// The value was empty after trimming.
    #[error("{field} must not be empty")]
    Empty {
        /// The field that was checked.
        field: &'static str,
    },
    /// The value was longer than allowed.
    #[error("{field} must be at most {max} characters")]
    TooLong {
        /// The field that was checked.
        field: &'static str,
        /// The maximum number of characters.
        max: usize,
    },
    /// The value is not an email address.
    #[error("{field} is not a valid email address")]
    InvalidEmail {
        /// The field that was checked.
        field: &'static str,
    },
    /// The value is not a slug (1 to 100 of `a`–`z`, `0`–`9` and inner hyphens).
    #[error("{field} must be 1 to 100 characters of a-z, 0-9 and inner hyphens")]
    InvalidSlug {
        /// The field that was checked.
        field: &'static str,
    },
    /// The value is not a `#rrggbb` color.
    #[error("{field} must be a color like #1e90ff")]
    InvalidColor {
        /// The field that was checked.
        field: &'static str,
    },
    /// The value contained control characters.
    #[error("{field} must not contain control characters")]
    ControlCharacters {
        /// The field that was checked.
        field: &'static str,
    },
}

/// A display name (organization, team): trimmed, 1 to 100 characters, no control characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Name(String);

impl Name {
    /// The longest name accepted, in characters.
    pub const MAX_CHARS: usize = 100;

    /// Validates and normalises a name; `field` names it in the error.
    pub fn parse(field: &'static str, raw: &str) -> Result<Self, ValueError> {
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            return Err(ValueError::Empty { field });
        }
        if trimmed.chars().count() > Self::MAX_CHARS {
            return Err(ValueError::TooLong {
                field,
                max: Self::MAX_CHARS,
            });
        }
        if trimmed.chars().any(char::is_control) {
            return Err(ValueError::ControlCharacters { field });
        }
        Ok(Self(trimmed.to_owned()))
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Free text of bounded length (task titles, descriptions, comments): trimmed, without
/// control characters other than newlines and tabs.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Text(String);

impl Text {
    /// Validates `raw`: at most `max` characters, and at least one unless `allow_empty`.
    pub fn parse(
        field: &'static str,
        raw: &str,
        max: usize,
        allow_empty: bool,
    ) -> Result<Self, ValueError> {
        let text = raw.trim();
        if text.is_empty() && !allow_empty {
            return Err(ValueError::Empty { field });
        }
        if text.chars().count() > max {
            return Err(ValueError::TooLong { field, max });
        }
        if text
            .chars()
            .any(|c| c.is_control() && c != '\n' && c != '\t' && c != '\r')
        {
            return Err(ValueError::ControlCharacters { field });
        }
        Ok(Self(text.to_owned()))
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An email address: trimmed, lower-cased, at most 254 characters, `local@domain.tld`.
///
/// Personal data: it never appears in an event in the clear (events carry a [`Sealed`] copy).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Email(String);

impl Email {
    /// Validates and normalises an address.
    pub fn parse(raw: &str) -> Result<Self, ValueError> {
        let field = "email";
        let email = raw.trim().to_lowercase();
        let valid = email.len() <= 254
            && !email.chars().any(|c| c.is_whitespace() || c.is_control())
            && match email.split_once('@') {
                Some((local, domain)) => {
                    !local.is_empty()
                        && local.len() <= 64
                        && !domain.contains('@')
                        && domain.contains('.')
                        && !domain.starts_with('.')
                        && !domain.ends_with('.')
                        && !domain.contains("..")
                }
                None => false,
            };
        if valid {
            Ok(Self(email))
        } else {
            Err(ValueError::InvalidEmail { field })
        }
    }

    /// The normalised address.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Email {
    // Keep addresses out of logs and panic messages.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Email(..)")
    }
}

/// A SHA-256 digest (of a token or key), shown as 64 hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest([u8; 32]);

impl Digest {
    /// Wraps digest bytes computed outside the domain.
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The bytes.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({self})")
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        let bad = || serde::de::Error::custom("expected 64 hex digits");
        // By bytes, never by `str` index: a multibyte character is simply not a digit.
        let digits = s.as_bytes();
        if digits.len() != 64 {
            return Err(bad());
        }
        let mut out = [0u8; 32];
        for (byte, pair) in out.iter_mut().zip(digits.chunks_exact(2)) {
            let digit = |b: u8| char::from(b).to_digit(16).ok_or_else(bad);
            // Both digits are below 16, so this fits in a byte.
            *byte = (digit(pair[0])? * 16 + digit(pair[1])?) as u8;
        }
        Ok(Self(out))
    }
}

/// Personal data encrypted with its subject's key (see the event store's vault). Opaque here:
/// the domain stores and compares it, never reads it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Sealed(String);

impl Sealed {
    /// Wraps ciphertext produced outside the domain.
    pub fn new(ciphertext: String) -> Self {
        Self(ciphertext)
    }

    /// The ciphertext.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_normalised_and_validated() {
        assert_eq!(
            Email::parse("  Ada@Example.COM ").map(|e| e.0),
            Ok("ada@example.com".into())
        );
        for bad in [
            "", "ada", "@x.io", "ada@", "ada@io", "a b@x.io", "a@b@x.io", "a@.x.io", "a@x..io",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad}");
        }
        assert!(!format!("{:?}", Email::parse("ada@x.io")).contains("ada"));
    }

    #[test]
    fn digests_round_trip_as_hex() {
        let d = Digest::from_bytes([0xab; 32]);
        let json = serde_json::to_string(&d).expect("serialize");
        assert_eq!(json, format!("\"{}\"", "ab".repeat(32)));
        assert_eq!(serde_json::from_str::<Digest>(&json).expect("parse"), d);
    }

    #[test]
    fn a_digest_with_multibyte_characters_is_refused_not_a_panic() {
        // 64 bytes, but not 64 hex digits: slicing such a string at byte offsets would panic.
        for bad in [
            "é".repeat(32),
            format!("a{}", "é".repeat(31)) + "a",
            "€".repeat(21) + "a",
            "g".repeat(64),
            "ab".repeat(31),
        ] {
            let json = serde_json::to_string(&bad).expect("serialize");
            assert!(serde_json::from_str::<Digest>(&json).is_err(), "{bad}");
        }
        let upper = format!("\"{}\"", "AB".repeat(32));
        assert_eq!(
            serde_json::from_str::<Digest>(&upper).expect("parse"),
            Digest::from_bytes([0xab; 32])
        );
    }

    #[test]
    fn names_are_trimmed_and_bounded() {
        assert_eq!(
            Name::parse("name", "  Acme ").map(|n| n.0),
            Ok("Acme".into())
        );
        assert_eq!(
            Name::parse("name", "   "),
            Err(ValueError::Empty { field: "name" })
        );
        assert!(matches!(
            Name::parse("name", &"x".repeat(101)),
            Err(ValueError::TooLong { .. })
        ));
        assert!(Name::parse("name", &"é".repeat(100)).is_ok());
        assert!(matches!(
            Name::parse("name", "a\u{0}b"),
            Err(ValueError::ControlCharacters { .. })
        ));
    }
}
