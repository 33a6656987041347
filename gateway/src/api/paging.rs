//! Bounded lists: `?limit=` (1 to [`MAX_LIMIT`], default [`DEFAULT_LIMIT`]) and `?page=` (the
//! `next` of the previous page, opaque to clients). Pages are keyset pages: each row's sort
//! key and id, so a page costs the same however deep it is.

use serde::Deserialize;
use utoipa::IntoParams;
use uuid::Uuid;

use crate::api::doc::CursorSchema;

use crate::http::error::{ApiError, ErrorCode};

/// The most rows one page returns.
pub const MAX_LIMIT: i64 = 200;
/// The rows a page returns when `limit` is not given.
pub const DEFAULT_LIMIT: i64 = 100;

/// The query of a bounded list (with `after` for read-your-writes where the list has it).
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// A write's `Cairn-Cursor`: wait (a bounded time) until the read model includes it (503
    /// if it does not in time; 400 `invalid_cursor` for a cursor past the newest event).
    #[param(value_type = Option<CursorSchema>)]
    pub after: Option<String>,
    /// Rows per page (default 100).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
    /// The `next` of the previous page.
    #[param(min_length = 1)]
    pub page: Option<String>,
}

/// Where a page starts and how long it is.
#[derive(Debug)]
pub struct Paging {
    /// Rows to return.
    pub limit: i64,
    /// The last row of the previous page: its sort key (as text) and id.
    pub after: Option<(String, Uuid)>,
}

impl ListQuery {
    /// The page asked for: 400 `invalid_query` for a bad limit or page.
    pub fn paging(&self) -> Result<Paging, ApiError> {
        let limit = self.limit.unwrap_or(DEFAULT_LIMIT);
        if !(1..=MAX_LIMIT).contains(&limit) {
            return Err(ApiError::new(
                ErrorCode::InvalidQuery,
                format!("`limit` must be from 1 to {MAX_LIMIT}"),
            ));
        }
        let after = match self.page.as_deref() {
            None => None,
            Some(token) => Some(decode(token).ok_or_else(|| {
                ApiError::new(ErrorCode::InvalidQuery, "`page` is not a page of this list")
            })?),
        };
        Ok(Paging { limit, after })
    }
}

impl Paging {
    /// The previous page's last row as its sort key (text) and id (`None`: from the start).
    pub fn after(&self) -> Option<(&str, Uuid)> {
        self.after.as_ref().map(|(key, id)| (key.as_str(), *id))
    }

    /// The previous page's last row as a time and an id (for lists sorted by a time).
    pub fn at(&self) -> Result<Option<(time::OffsetDateTime, Uuid)>, ApiError> {
        let Some((key, id)) = &self.after else {
            return Ok(None);
        };
        time::OffsetDateTime::parse(key, &time::format_description::well_known::Rfc3339)
            .map(|at| Some((at, *id)))
            .map_err(|_| {
                ApiError::new(ErrorCode::InvalidQuery, "`page` is not a page of this list")
            })
    }

    /// Rows to fetch: one more than the page, to know whether another follows.
    pub fn fetch(&self) -> i64 {
        self.limit + 1
    }

    /// Cuts `rows` (fetched with [`Paging::fetch`]) to the page and returns the `next` token,
    /// made from the last row's sort key and id, if more rows follow.
    pub fn finish<T>(
        &self,
        rows: &mut Vec<T>,
        key: impl Fn(&T) -> (String, Uuid),
    ) -> Option<String> {
        if rows.len() as i64 <= self.limit {
            return None;
        }
        rows.truncate(self.limit as usize);
        rows.last().map(|row| {
            let (sort, id) = key(row);
            encode(&sort, id)
        })
    }
}

fn encode(key: &str, id: Uuid) -> String {
    let mut out = id.simple().to_string();
    out.push('.');
    out.push_str(&eventstore::encode::hex(key));
    out
}

fn decode(token: &str) -> Option<(String, Uuid)> {
    let (id, key) = token.split_once('.')?;
    if key.len() % 2 != 0 || key.len() > 1024 {
        return None;
    }
    let bytes: Option<Vec<u8>> = (0..key.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(key.get(i..i + 2)?, 16).ok())
        .collect();
    Some((String::from_utf8(bytes?).ok()?, Uuid::parse_str(id).ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_token_round_trips_and_rejects_garbage() {
        let id = Uuid::now_v7();
        let token = encode("Bugs & ideas", id);
        assert_eq!(decode(&token), Some(("Bugs & ideas".to_owned(), id)));
        for bad in ["", "x", "nothex.zz", &format!("{}.abc", id.simple())] {
            assert_eq!(decode(bad), None, "{bad}");
        }
    }
}
