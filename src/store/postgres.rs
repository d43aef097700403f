//! Postgres, for production and for several replicas on one database. Row
//! locks serialize writers per prompt; `NOTIFY` tells every replica which
//! prompt's cached label resolutions to drop.

use std::time::Duration;

use anyhow::Context;
use sqlx::postgres::{PgListener, PgPoolOptions};
use sqlx::PgPool;

use super::{Invalidation, PoolConnections, StoreResult};

const INVALIDATION_CHANNEL: &str = "promptreg_invalidate";

pub struct PostgresStore {
    pool: PgPool,
}

impl PostgresStore {
    const LOCK_ROW: &'static str = " for update";
    const SKIP_LOCKED: &'static str = " for update skip locked";
    const TAG_MATCH: (&'static str, &'static str) = ("p.tags @> jsonb_build_array(", "::text)");

    pub async fn connect(url: &str, max_connections: u32) -> anyhow::Result<Self> {
        let pool = PgPoolOptions::new()
            .max_connections(max_connections.max(2))
            .acquire_timeout(Duration::from_secs(10))
            .connect(url)
            .await
            .context("cannot connect to Postgres")?;
        sqlx::migrate!("./migrations/postgres")
            .run(&pool)
            .await
            .context("cannot apply Postgres migrations")?;
        Ok(Self { pool })
    }

    fn pool_stats(&self) -> PoolConnections {
        PoolConnections::of(&self.pool)
    }

    fn reader(&self) -> &PgPool {
        &self.pool
    }

    fn writer(&self) -> &PgPool {
        &self.pool
    }

    async fn notify(conn: &mut sqlx::PgConnection, change: Invalidation) -> StoreResult<()> {
        sqlx::query("select pg_notify($1, $2)")
            .bind(INVALIDATION_CHANNEL)
            .bind(change.to_payload())
            .execute(conn)
            .await?;
        Ok(())
    }

    async fn listen(&self) -> StoreResult<Option<tokio::sync::mpsc::Receiver<Invalidation>>> {
        let mut listener = PgListener::connect_with(&self.pool).await?;
        listener.listen(INVALIDATION_CHANNEL).await?;
        let (tx, rx) = tokio::sync::mpsc::channel(1024);
        tokio::spawn(async move {
            loop {
                let event = match listener.try_recv().await {
                    Ok(Some(n)) => match Invalidation::from_payload(n.payload()) {
                        Some(change) => change,
                        None => continue,
                    },
                    // The connection dropped and will be re-established;
                    // whatever was sent meanwhile is lost.
                    Ok(None) => Invalidation::All,
                    Err(err) => {
                        tracing::warn!(error = %err, "invalidation listener failed; retrying");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        Invalidation::All
                    }
                };
                if tx.send(event).await.is_err() {
                    break;
                }
            }
        });
        Ok(Some(rx))
    }
}

super::sql::impl_store!(PostgresStore, sqlx::Postgres, "postgres");
