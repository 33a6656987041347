use serde::de::DeserializeOwned;
use serde_json::value::RawValue;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::{Cursor, Store, StoreError};

/// One stored event with everything the table knows about it.
///
/// `payload` and `metadata` stay raw JSON text: a reader decodes them straight into its own
/// types ([`RecordedEvent::decode`]) without building an intermediate `serde_json::Value`.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RecordedEvent {
    /// Unique id (CloudEvents `id`, NATS `Nats-Msg-Id`).
    pub event_id: Uuid,
    /// The aggregate type (stream category).
    pub aggregate_type: String,
    /// The aggregate id.
    pub aggregate_id: String,
    /// Position in its stream, from 1.
    pub sequence: i64,
    /// `noun.verb`.
    pub event_type: String,
    /// Payload schema version.
    pub event_version: String,
    /// The event's data (JSON).
    #[sqlx(json)]
    pub payload: Box<RawValue>,
    /// Who, why and from where (JSON): actor, org_id, correlation and causation ids, and so on.
    #[sqlx(json)]
    pub metadata: Box<RawValue>,
    /// Global position (a tie-break within one transaction).
    pub global_position: i64,
    /// The committing transaction's id.
    pub transaction_id: i64,
    /// When it was recorded.
    pub recorded_at: OffsetDateTime,
    /// The tenant, from metadata.
    pub org_id: Option<String>,
    /// The previous event's hash in this stream (`None` for the first).
    pub prev_hash: Option<Vec<u8>>,
    /// This event's chain hash.
    pub hash: Vec<u8>,
}

impl RecordedEvent {
    /// The cursor just after this event.
    pub fn cursor(&self) -> Cursor {
        Cursor::new(self.transaction_id as u64, self.global_position)
    }

    /// The payload decoded as `T`.
    pub fn decode<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_str(self.payload.get())
    }

    /// The metadata decoded as `T`.
    pub fn decode_metadata<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_str(self.metadata.get())
    }
}

const COLUMNS: &str =
    "event_id, aggregate_type, aggregate_id, sequence, event_type, event_version, \
    payload, metadata, global_position, transaction_id::text::int8 AS transaction_id, recorded_at, \
    org_id, prev_hash, hash";

impl Store {
    /// Up to `limit` events committed after `after`, in commit order, never skipping one.
    ///
    /// Only events of transactions older than every transaction still running are returned
    /// (`pg_snapshot_xmin`), so an event that commits late can never land behind a cursor a
    /// reader has already passed. The price: a long-running writer holds the tail back.
    pub async fn tail(&self, after: Cursor, limit: i64) -> Result<Vec<RecordedEvent>, StoreError> {
        Ok(sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM events
              WHERE transaction_id < pg_snapshot_xmin(pg_current_snapshot())
                AND (transaction_id, global_position) > ($1::text::xid8, $2)
              ORDER BY events.transaction_id, events.global_position
              LIMIT $3"
        ))
        .bind(after.xid().to_string())
        .bind(after.position())
        .bind(limit)
        .fetch_all(self.pool())
        .await?)
    }

    /// The cursor after the newest committed event ([`Cursor::START`] for an empty store): what
    /// a reader must reach to have seen everything committed so far.
    pub async fn head(&self) -> Result<Cursor, StoreError> {
        let newest: Option<(i64, i64)> = sqlx::query_as(
            "SELECT transaction_id::text::int8, global_position FROM events
              ORDER BY events.transaction_id DESC, events.global_position DESC LIMIT 1",
        )
        .fetch_optional(self.pool())
        .await?;
        Ok(newest.map_or(Cursor::START, |(xid, position)| {
            Cursor::new(xid as u64, position)
        }))
    }

    /// [`Store::tail`] restricted by `filter`: the same gapless order, only matching events.
    pub async fn tail_filtered(
        &self,
        after: Cursor,
        limit: i64,
        filter: &EventFilter,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        Ok(sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM events
              WHERE transaction_id < pg_snapshot_xmin(pg_current_snapshot())
                AND (transaction_id, global_position) > ($1::text::xid8, $2)
                AND ($4::text[] IS NULL OR org_id = ANY($4))
                AND ($5::text[] IS NULL OR aggregate_type = ANY($5))
                AND ($6::text[] IS NULL OR event_type = ANY($6))
                AND ($7::text IS NULL OR aggregate_id = $7)
              ORDER BY events.transaction_id, events.global_position
              LIMIT $3"
        ))
        .bind(after.xid().to_string())
        .bind(after.position())
        .bind(limit)
        .bind(filter.orgs.as_deref())
        .bind(filter.aggregate_types.as_deref())
        .bind(filter.event_types.as_deref())
        .bind(filter.aggregate_id.as_deref())
        .fetch_all(self.pool())
        .await?)
    }

    /// One stream's events from `from_sequence` on (inclusive), at most `limit` of them.
    pub async fn read_stream(
        &self,
        aggregate_type: &str,
        aggregate_id: &str,
        from_sequence: i64,
        limit: i64,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        Ok(sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM events
              WHERE aggregate_type = $1 AND aggregate_id = $2 AND sequence >= $3
              ORDER BY sequence
              LIMIT $4"
        ))
        .bind(aggregate_type)
        .bind(aggregate_id)
        .bind(from_sequence)
        .bind(limit)
        .fetch_all(self.pool())
        .await?)
    }
}

/// Which events a filtered tail returns; `None` means any.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    /// Only these organizations' events.
    pub orgs: Option<Vec<String>>,
    /// Only these aggregate types.
    pub aggregate_types: Option<Vec<String>>,
    /// Only these event types (`noun.verb`).
    pub event_types: Option<Vec<String>>,
    /// Only this aggregate.
    pub aggregate_id: Option<String>,
}

impl EventFilter {
    /// Whether an event with these attributes passes the filter (what [`Store::tail_filtered`]
    /// would return), for consumers that see events from elsewhere first, such as a bus.
    pub fn matches(
        &self,
        org: Option<&str>,
        aggregate_type: &str,
        aggregate_id: &str,
        event_type: &str,
    ) -> bool {
        fn within(list: &Option<Vec<String>>, value: Option<&str>) -> bool {
            match list {
                None => true,
                Some(list) => value.is_some_and(|v| list.iter().any(|l| l == v)),
            }
        }
        within(&self.orgs, org)
            && within(&self.aggregate_types, Some(aggregate_type))
            && within(&self.event_types, Some(event_type))
            && self
                .aggregate_id
                .as_deref()
                .is_none_or(|id| id == aggregate_id)
    }
}

#[cfg(test)]
mod tests {
    use super::EventFilter;

    #[test]
    fn a_filter_matches_what_its_tail_would_return() {
        let any = EventFilter::default();
        assert!(any.matches(None, "task", "t1", "task.created"));
        let filter = EventFilter {
            orgs: Some(vec!["o1".into()]),
            aggregate_types: Some(vec!["task".into()]),
            event_types: Some(vec!["task.created".into(), "task.deleted".into()]),
            aggregate_id: Some("t1".into()),
        };
        assert!(filter.matches(Some("o1"), "task", "t1", "task.deleted"));
        assert!(
            !filter.matches(None, "task", "t1", "task.created"),
            "no org"
        );
        assert!(!filter.matches(Some("o2"), "task", "t1", "task.created"));
        assert!(!filter.matches(Some("o1"), "label", "t1", "task.created"));
        assert!(!filter.matches(Some("o1"), "task", "t1", "task.renamed"));
        assert!(!filter.matches(Some("o1"), "task", "t2", "task.created"));
    }
}
