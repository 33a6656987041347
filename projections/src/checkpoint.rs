//! The `projection_checkpoints` table: how far each checkpointed consumer of the event log
//! (every projection, and the relay) has got, as a gapless [`Cursor`]. The only SQL on that
//! table.
//!
//! A checkpoint only ever moves by compare-and-set (`advance`): from the cursor its consumer
//! last read to the end of the batch it handled. A consumer that lost its leadership without
//! noticing, or whose checkpoint was rewound by a rebuild, finds the row changed and resumes
//! from the stored cursor instead of moving it.

use eventstore::Cursor;
use sqlx::{Connection, PgConnection, PgExecutor, PgPool, Postgres, Transaction};

/// The stored checkpoint of `name`, creating it at the start if missing.
pub async fn load(pool: &PgPool, name: &str) -> Result<Cursor, sqlx::Error> {
    load_on(&mut *pool.acquire().await?, name).await
}

/// [`load`] on a connection the caller holds.
pub(crate) async fn load_on(
    connection: &mut PgConnection,
    name: &str,
) -> Result<Cursor, sqlx::Error> {
    sqlx::query("INSERT INTO projection_checkpoints (name) VALUES ($1) ON CONFLICT DO NOTHING")
        .bind(name)
        .execute(&mut *connection)
        .await?;
    let (xid, position): (i64, i64) = sqlx::query_as(
        "SELECT last_xid::text::int8, last_position FROM projection_checkpoints WHERE name = $1",
    )
    .bind(name)
    .fetch_one(&mut *connection)
    .await?;
    Ok(Cursor::new(xid as u64, position))
}

/// The stored checkpoint of `name`, `None` if it has none yet. Writes nothing.
pub(crate) async fn read(pool: &PgPool, name: &str) -> Result<Option<Cursor>, sqlx::Error> {
    let stored: Option<(i64, i64)> = sqlx::query_as(
        "SELECT last_xid::text::int8, last_position FROM projection_checkpoints WHERE name = $1",
    )
    .bind(name)
    .fetch_optional(pool)
    .await?;
    Ok(stored.map(|(xid, position)| Cursor::new(xid as u64, position)))
}

/// The stored checkpoints of `names`, in that order, in one query; a name without a row yet is
/// at the start. Writes nothing (it serves `/metrics`).
pub(crate) async fn read_all(pool: &PgPool, names: &[&str]) -> Result<Vec<Cursor>, sqlx::Error> {
    let rows: Vec<(String, i64, i64)> = sqlx::query_as(
        "SELECT name, last_xid::text::int8, last_position FROM projection_checkpoints
          WHERE name = ANY($1)",
    )
    .bind(names)
    .fetch_all(pool)
    .await?;
    Ok(names
        .iter()
        .map(|name| {
            rows.iter()
                .find(|(stored, ..)| stored == name)
                .map_or(Cursor::START, |(_, xid, position)| {
                    Cursor::new(*xid as u64, *position)
                })
        })
        .collect())
}

/// A transaction holding `name`'s checkpoint row, or where the checkpoint is if it is no
/// longer where the caller thought.
pub(crate) enum Locked<'c> {
    /// The row is locked and still at the caller's cursor.
    Held(Transaction<'c, Postgres>),
    /// The row holds another cursor (a rebuild rewound it, or another node moved it).
    Moved(Cursor),
}

/// Opens the transaction in which a read model applies a batch after `from`: locks `name`'s
/// checkpoint row first and compares it with `from`, so two runners can never both apply the
/// same events. The transaction commits asynchronously: a crash may lose its last few batches,
/// but each batch commits with its checkpoint, so they are lost together and applied again
/// (read models are derived data; events are always committed synchronously).
pub(crate) async fn lock<'c>(
    connection: &'c mut PgConnection,
    name: &str,
    from: Cursor,
) -> Result<Locked<'c>, sqlx::Error> {
    let mut tx = Connection::begin(connection).await?;
    let (xid, position): (i64, i64) = sqlx::query_as(
        "SELECT last_xid::text::int8, last_position FROM projection_checkpoints,
                set_config('synchronous_commit', 'off', true)
          WHERE name = $1 FOR UPDATE OF projection_checkpoints",
    )
    .bind(name)
    .fetch_one(&mut *tx)
    .await?;
    let stored = Cursor::new(xid as u64, position);
    Ok(if stored == from {
        Locked::Held(tx)
    } else {
        Locked::Moved(stored)
    })
}

/// Moves `name`'s checkpoint from `from` to `to` if it still holds `from` (compare-and-set);
/// `false` if it holds anything else, leaving it as it is.
pub(crate) async fn advance<'c>(
    conn: impl PgExecutor<'c>,
    name: &str,
    from: Cursor,
    to: Cursor,
) -> Result<bool, sqlx::Error> {
    compare_and_set(conn, "", name, from, to).await
}

/// [`advance`] as a statement of its own, committed asynchronously like every batch
/// ([`lock`]): for a read model's batch with nothing to apply (one statement instead of a
/// transaction of four), and for the relay after it published a batch (a checkpoint lost to a
/// PostgreSQL crash only makes it publish that batch again, which it may always do).
pub(crate) async fn advance_alone(
    connection: &mut PgConnection,
    name: &str,
    from: Cursor,
    to: Cursor,
) -> Result<bool, sqlx::Error> {
    let async_commit =
        "FROM (SELECT set_config('synchronous_commit', 'off', true)) AS async_commit";
    compare_and_set(connection, async_commit, name, from, to).await
}

/// The statement behind [`advance`] and [`advance_alone`], with `from_clause` between its
/// `SET` and its `WHERE`.
async fn compare_and_set<'c>(
    conn: impl PgExecutor<'c>,
    from_clause: &str,
    name: &str,
    from: Cursor,
    to: Cursor,
) -> Result<bool, sqlx::Error> {
    let moved = sqlx::query(&format!(
        "UPDATE projection_checkpoints
            SET last_xid = $2::text::xid8, last_position = $3, updated_at = now()
           {from_clause}
          WHERE name = $1 AND last_xid = $4::text::xid8 AND last_position = $5"
    ))
    .bind(name)
    .bind(to.xid().to_string())
    .bind(to.position())
    .bind(from.xid().to_string())
    .bind(from.position())
    .execute(conn)
    .await?;
    Ok(moved.rows_affected() == 1)
}

/// Locks `name`'s checkpoint row inside `tx` (waiting for a batch being applied to commit),
/// so that a rebuild can empty the tables and rewind ([`rewind`]) with no batch in between.
pub(crate) async fn hold(tx: &mut PgConnection, name: &str) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT 1 FROM projection_checkpoints WHERE name = $1 FOR UPDATE")
        .bind(name)
        .execute(tx)
        .await?;
    Ok(())
}

/// Moves `name`'s checkpoint back to the start, whatever it holds.
pub(crate) async fn rewind(tx: &mut PgConnection, name: &str) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE projection_checkpoints SET last_xid = '0', last_position = 0, updated_at = now()
          WHERE name = $1",
    )
    .bind(name)
    .execute(tx)
    .await?;
    Ok(())
}
