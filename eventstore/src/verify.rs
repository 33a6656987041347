use futures::TryStreamExt;
use serde::Serialize;

use crate::{Store, StoreError};

/// The first broken link found in a stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BrokenLink {
    /// The stream's aggregate type.
    pub aggregate_type: String,
    /// The stream's aggregate id.
    pub aggregate_id: String,
    /// The first event whose link does not hold.
    pub sequence: i64,
    /// Its global position.
    pub global_position: i64,
    /// What does not hold.
    pub reason: String,
}

/// The outcome of [`Store::verify`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    /// Streams checked.
    pub streams: u64,
    /// Events checked.
    pub events: u64,
    /// Streams with a broken chain.
    pub broken_streams: u64,
    /// The earliest (by global position) first-broken event over all streams.
    pub first_break: Option<BrokenLink>,
}

impl VerifyReport {
    /// Whether every chain holds.
    pub fn is_intact(&self) -> bool {
        self.first_break.is_none()
    }
}

type Row = (String, String, i64, i64, Option<Vec<u8>>, Vec<u8>, Vec<u8>);

impl Store {
    /// Recomputes every stream's hash chain from its first event, calling `progress` with the
    /// number of events checked every 10,000 events.
    ///
    /// Each event must follow its predecessor (sequence + 1), carry its predecessor's hash as
    /// `prev_hash`, and hash to `sha256(prev_hash || canonical(event))` by the same SQL function
    /// the insert trigger uses. Any change to a stored event, made with triggers disabled,
    /// breaks its link.
    pub async fn verify(&self, mut progress: impl FnMut(u64)) -> Result<VerifyReport, StoreError> {
        let mut rows = sqlx::query_as::<_, Row>(
            "SELECT aggregate_type, aggregate_id, sequence, global_position, prev_hash, hash,
                    cairn_event_hash(prev_hash, aggregate_type, aggregate_id, sequence, event_type,
                        event_version, payload, metadata, event_id, recorded_at)
               FROM events
              ORDER BY aggregate_type, aggregate_id, sequence",
        )
        .fetch(self.pool());
        let mut report = VerifyReport::default();
        let mut prev: Option<(String, String, i64, Vec<u8>)> = None;
        let mut stream_broken = false;
        while let Some((ty, id, sequence, position, prev_hash, hash, expected)) =
            rows.try_next().await?
        {
            report.events += 1;
            if report.events % 10_000 == 0 {
                progress(report.events);
            }
            let same_stream = prev
                .as_ref()
                .is_some_and(|(pt, pi, _, _)| *pt == ty && *pi == id);
            if !same_stream {
                report.streams += 1;
                stream_broken = false;
            }
            let reason = match (&prev, same_stream) {
                (Some((_, _, prev_seq, prev_hash_expected)), true) => {
                    if sequence != prev_seq + 1 {
                        Some(format!("sequence {sequence} follows {prev_seq}"))
                    } else if prev_hash.as_deref() != Some(prev_hash_expected.as_slice()) {
                        Some("prev_hash does not match the previous event's hash".to_owned())
                    } else {
                        None
                    }
                }
                _ if sequence != 1 => Some(format!("stream starts at sequence {sequence}")),
                _ if prev_hash.is_some() => Some("first event has a prev_hash".to_owned()),
                _ => None,
            }
            .or_else(|| {
                (hash != expected).then(|| "hash does not match the event's contents".to_owned())
            });
            if let (Some(reason), false) = (reason, stream_broken) {
                stream_broken = true;
                report.broken_streams += 1;
                let link = BrokenLink {
                    aggregate_type: ty.clone(),
                    aggregate_id: id.clone(),
                    sequence,
                    global_position: position,
                    reason,
                };
                if report
                    .first_break
                    .as_ref()
                    .is_none_or(|b| b.global_position > position)
                {
                    report.first_break = Some(link);
                }
            }
            prev = Some((ty, id, sequence, hash));
        }
        progress(report.events);
        Ok(report)
    }
}
