//! Validated value types. A value that exists is valid; constructors are the only way in.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Why a value was rejected. Maps to HTTP 400 at the edge.
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

#[cfg(test)]
mod tests {
    use super::*;

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
