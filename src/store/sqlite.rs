//! The embedded default: one SQLite file in WAL mode. Writes go through a
//! single connection, so write transactions never meet `SQLITE_BUSY` from
//! each other; reads use a pool of their own.

use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::SqlitePool;

use super::{Invalidation, PoolConnections, StoreResult};

pub struct SqliteStore {
    reader: SqlitePool,
    writer: SqlitePool,
    /// In memory, `reader` is a clone of `writer`: one pool, counted once.
    in_memory: bool,
}

impl SqliteStore {
    const LOCK_ROW: &'static str = "";
    // One writer connection: claiming is already exclusive.
    const SKIP_LOCKED: &'static str = "";
    const TAG_MATCH: (&'static str, &'static str) = (
        "exists (select 1 from json_each(p.tags) where json_each.value = ",
        ")",
    );
    /// The numeric scores of each result `r` as `(evaluation_id, metric,
    /// score)`, ending in a `where` a caller may add to.
    const NUMERIC_SCORES: &'static str = "select r.evaluation_id, s.key as metric, \
         cast(s.value as real) as score from evaluation_result r, json_each(r.scores) s \
         where s.type in ('integer', 'real')";
    // Timestamps are RFC 3339 text, which strftime reads (offset included).
    const HOUR_BUCKET: &'static str = "strftime('%Y-%m-%dT%H:00:00Z', f.created_at)";
    const DAY_BUCKET: &'static str = "strftime('%Y-%m-%dT00:00:00Z', f.created_at)";

    pub async fn connect(url: &str, max_connections: u32) -> anyhow::Result<Self> {
        let options = SqliteConnectOptions::from_str(url)
            .with_context(|| format!("invalid SQLite URL {url:?}"))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(5));
        let in_memory = options.get_filename().as_os_str() == ":memory:";
        if let Some(dir) = options
            .get_filename()
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
        {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create the folder {}", dir.display()))?;
        }
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options.clone())
            .await
            .with_context(|| format!("cannot open {url}"))?;
        sqlx::migrate!("./migrations/sqlite")
            .run(&writer)
            .await
            .context("cannot apply SQLite migrations")?;
        // An in-memory database exists once per connection: share the writer.
        let reader = if in_memory {
            writer.clone()
        } else {
            SqlitePoolOptions::new()
                .max_connections(max_connections.max(1))
                .connect_with(options)
                .await?
        };
        Ok(Self {
            reader,
            writer,
            in_memory,
        })
    }

    fn reader(&self) -> &SqlitePool {
        &self.reader
    }

    fn writer(&self) -> &SqlitePool {
        &self.writer
    }

    /// A file does not go down underneath: no probe.
    fn health(&self) -> Option<&super::health::Health> {
        None
    }

    fn pool_stats(&self) -> PoolConnections {
        let writer = PoolConnections::of(&self.writer);
        // In memory, the reader is the writer.
        if self.in_memory {
            return writer;
        }
        writer.plus(PoolConnections::of(&self.reader))
    }

    async fn notify(_conn: &mut sqlx::SqliteConnection, _change: Invalidation) -> StoreResult<()> {
        // One process owns the file; the registry's own cache invalidation suffices.
        Ok(())
    }

    async fn listen(&self) -> StoreResult<Option<tokio::sync::mpsc::Receiver<Invalidation>>> {
        Ok(None)
    }
}

super::sql::impl_store!(SqliteStore, sqlx::Sqlite, "sqlite");
