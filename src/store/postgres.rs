//! Postgres, for production and for several replicas on one database. Row
//! locks serialize writers per prompt; `NOTIFY` tells every replica which
//! prompt's cached label resolutions to drop.

use std::sync::{Arc, Weak};
use std::time::Duration;

use anyhow::Context;
use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions};
use sqlx::{Connection, PgConnection, PgPool};

use super::health::{Health, PROBE_DOWN, PROBE_TIMEOUT, PROBE_UP};
use super::{Invalidation, PoolConnections, StoreResult};

const INVALIDATION_CHANNEL: &str = "promptreg_invalidate";

/// How long the first connection at start may take before start-up fails.
const FIRST_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// A pooled connection idle longer than this is pinged before it is used.
const IDLE_BEFORE_PING: Duration = Duration::from_secs(1);

/// `url` with its password (in the user part or a `password=` parameter)
/// replaced by `***`, fit for logs and error messages.
pub fn redact_url(url: &str) -> String {
    let (base, query) = url
        .split_once('?')
        .map_or((url, None), |(b, q)| (b, Some(q)));
    let mut shown = match base.split_once("://") {
        Some((scheme, rest)) => {
            let (authority, path) = rest.find('/').map_or((rest, ""), |i| rest.split_at(i));
            let authority = match authority.rsplit_once('@') {
                Some((user_info, host)) => match user_info.split_once(':') {
                    Some((user, _password)) => format!("{user}:***@{host}"),
                    None => authority.to_owned(),
                },
                None => authority.to_owned(),
            };
            format!("{scheme}://{authority}{path}")
        }
        None => base.to_owned(),
    };
    if let Some(query) = query {
        let params: Vec<String> = query
            .split('&')
            .map(|param| match param.split_once('=') {
                Some((key, _)) if key.eq_ignore_ascii_case("password") => format!("{key}=***"),
                _ => param.to_owned(),
            })
            .collect();
        shown.push('?');
        shown.push_str(&params.join("&"));
    }
    shown
}

/// Why the first connection failed, in one line a person can act on.
fn connect_failure(err: &sqlx::Error, options: &PgConnectOptions) -> String {
    let place = format!("{}:{}", options.get_host(), options.get_port());
    match err {
        sqlx::Error::Io(io) => match io.kind() {
            std::io::ErrorKind::ConnectionRefused => {
                format!("connection refused: is Postgres running and listening on {place}?")
            }
            std::io::ErrorKind::TimedOut => format!("no answer from {place}"),
            _ if io.to_string().contains("failed to lookup address") => {
                format!("host {:?} not found", options.get_host())
            }
            _ => format!("{place}: {io}"),
        },
        sqlx::Error::Database(db) => match db.code().as_deref() {
            // invalid_catalog_name
            Some("3D000") => format!("{} (create it, e.g. with createdb)", db.message()),
            // invalid_password, invalid_authorization_specification
            Some("28P01" | "28000") => {
                format!("authentication failed: {}", db.message())
            }
            _ => db.message().to_owned(),
        },
        sqlx::Error::Tls(tls) => format!("TLS: {tls}"),
        other => other.to_string(),
    }
}

pub struct PostgresStore {
    pool: PgPool,
    health: Arc<Health>,
}

impl PostgresStore {
    const LOCK_ROW: &'static str = " for update";
    const SKIP_LOCKED: &'static str = " for update skip locked";
    const TAG_MATCH: (&'static str, &'static str) = ("p.tags @> jsonb_build_array(", "::text)");
    /// The numeric scores of each result `r` as `(evaluation_id, metric,
    /// score)`, ending in a `where` a caller may add to.
    const NUMERIC_SCORES: &'static str = "select r.evaluation_id, s.key as metric, \
         (s.value #>> '{}')::float8 as score from evaluation_result r, jsonb_each(r.scores) s \
         where jsonb_typeof(s.value) = 'number'";
    const HOUR_BUCKET: &'static str =
        "to_char(date_trunc('hour', f.created_at at time zone 'UTC'), 'YYYY-MM-DD\"T\"HH24\":00:00Z\"')";
    const DAY_BUCKET: &'static str =
        "to_char(date_trunc('day', f.created_at at time zone 'UTC'), 'YYYY-MM-DD\"T00:00:00Z\"')";

    pub async fn connect(url: &str, max_connections: u32) -> anyhow::Result<Self> {
        let shown = redact_url(url);
        let options: PgConnectOptions = url
            .parse()
            .map_err(|e| anyhow::anyhow!("{shown} is not a Postgres URL: {e}"))?;
        tracing::info!("connecting to Postgres at {shown}");
        // One plain connection first: the pool retries a refused or failed
        // connection until its acquire timeout and then says only "pool
        // timed out"; this says why, at once.
        match tokio::time::timeout(FIRST_CONNECT_TIMEOUT, PgConnection::connect_with(&options))
            .await
        {
            Ok(Ok(conn)) => {
                let _ = conn.close().await;
            }
            Ok(Err(e)) => anyhow::bail!(
                "cannot connect to Postgres at {shown}: {}",
                connect_failure(&e, &options)
            ),
            Err(_) => anyhow::bail!(
                "cannot connect to Postgres at {shown}: no answer within {} s",
                FIRST_CONNECT_TIMEOUT.as_secs()
            ),
        }
        let pool = PgPoolOptions::new()
            .max_connections(max_connections.max(2))
            .acquire_timeout(Duration::from_secs(10))
            // sqlx pings every connection it hands out, and again when it
            // takes one back: three round trips for a one-statement read.
            // The ping on the way back stays; one on the way out only for
            // a connection that sat idle long enough for the server to have
            // gone away meanwhile (a failed ping discards it, and the pool
            // hands out another).
            .test_before_acquire(false)
            .before_acquire(|connection, meta| {
                Box::pin(async move {
                    if meta.idle_for > IDLE_BEFORE_PING {
                        connection.ping().await?;
                    }
                    Ok(true)
                })
            })
            .connect_with(options.clone())
            .await
            .with_context(|| format!("cannot connect to Postgres at {shown}"))?;
        sqlx::migrate!("./migrations/postgres")
            .run(&pool)
            .await
            .context("cannot apply Postgres migrations")?;
        let health = Health::new();
        tokio::spawn(probe(Arc::downgrade(&health), options));
        Ok(Self { pool, health })
    }

    fn health(&self) -> Option<&Health> {
        Some(&self.health)
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

    /// Hears other processes' invalidations. While the connection is lost
    /// (the database restarts, a failover) cached entries keep being served;
    /// once it is back, everything is invalidated, since whatever was sent
    /// meanwhile is lost.
    async fn listen(&self) -> StoreResult<Option<tokio::sync::mpsc::Receiver<Invalidation>>> {
        let mut listener = Self::listener(&self.pool).await?;
        let (tx, rx) = tokio::sync::mpsc::channel(1024);
        let pool = self.pool.clone();
        tokio::spawn(async move {
            loop {
                let event = match listener.try_recv().await {
                    Ok(Some(n)) => match Invalidation::from_payload(n.payload()) {
                        Some(change) => change,
                        None => continue,
                    },
                    lost => {
                        if let Err(err) = lost {
                            tracing::warn!(error = %err, "invalidation listener failed; reconnecting");
                        }
                        listener = loop {
                            if tx.is_closed() {
                                return;
                            }
                            // Not the pool's acquire timeout: the sooner it is
                            // back, the shorter a label moved meanwhile is stale.
                            match tokio::time::timeout(PROBE_TIMEOUT, Self::listener(&pool)).await {
                                Ok(Ok(listener)) => break listener,
                                _ => tokio::time::sleep(PROBE_DOWN).await,
                            }
                        };
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

    async fn listener(pool: &PgPool) -> StoreResult<PgListener> {
        let mut listener = PgListener::connect_with(pool).await?;
        listener.listen(INVALIDATION_CHANNEL).await?;
        Ok(listener)
    }
}

/// Keeps `health` up to date until the store is dropped: a connection of
/// its own runs `select 1` every [`PROBE_UP`]; once that fails, a new
/// connection is tried every [`PROBE_DOWN`] until one answers.
async fn probe(health: Weak<Health>, options: PgConnectOptions) {
    let mut conn: Option<PgConnection> = None;
    while let Some(health) = health.upgrade() {
        let outcome = tokio::time::timeout(PROBE_TIMEOUT, async {
            if conn.is_none() {
                conn = Some(PgConnection::connect_with(&options).await?);
            }
            match conn.as_mut() {
                Some(c) => sqlx::query("select 1").execute(c).await.map(|_| ()),
                None => Ok(()),
            }
        })
        .await;
        let why = match outcome {
            Ok(Ok(())) => None,
            Ok(Err(err)) => Some(err.to_string()),
            Err(_) => Some(format!("no answer within {} ms", PROBE_TIMEOUT.as_millis())),
        };
        health.set(why.is_none(), why.as_deref().unwrap_or_default());
        let interval = if why.is_some() {
            // Start over on a fresh connection.
            if let Some(c) = conn.take() {
                drop(tokio::time::timeout(PROBE_DOWN, c.close()).await);
            }
            PROBE_DOWN
        } else {
            PROBE_UP
        };
        health.next_probe(interval).await;
    }
}

super::sql::impl_store!(PostgresStore, sqlx::Postgres, "postgres");

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn urls_are_shown_without_their_password() {
        let cases = [
            (
                "postgres://app:s3cret@db.internal:5432/prompts",
                "postgres://app:***@db.internal:5432/prompts",
            ),
            (
                "postgres://app@db/prompts?sslmode=require&password=s3cret",
                "postgres://app@db/prompts?sslmode=require&password=***",
            ),
            ("postgresql://a:b:c@h/d", "postgresql://a:***@h/d"),
            ("postgres://localhost", "postgres://localhost"),
        ];
        for (url, shown) in cases {
            assert_eq!(redact_url(url), shown);
        }
    }
}
