//! What every backend answers about itself rather than about a resource: its
//! name, its connection pools, whether the database answers, and the changes
//! other processes make (cache invalidation).
//! `BackendStore`, then `impl_sql!`, which answers it with the
//! backend's own pools and notifications.

use async_trait::async_trait;
use uuid::Uuid;

use super::StoreResult;

#[async_trait]
pub trait BackendStore: Send + Sync {
    /// Which backend this is, for logs.
    fn backend(&self) -> &'static str;
    /// The connection pools' state now, for the metrics scrape.
    fn pool_connections(&self) -> PoolConnections;
    async fn ping(&self) -> StoreResult<()>;
    /// Label changes made by other processes sharing this database, where the
    /// backend can tell (Postgres `LISTEN`); `None` when this process is the
    /// only writer that matters (SQLite).
    async fn subscribe_invalidations(
        &self,
    ) -> StoreResult<Option<tokio::sync::mpsc::Receiver<Invalidation>>>;
}

/// Connections open in a backend's pools: waiting for work, or lent out.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PoolConnections {
    pub idle: u64,
    pub active: u64,
}

impl PoolConnections {
    pub(super) fn of<DB: sqlx::Database>(pool: &sqlx::Pool<DB>) -> Self {
        let (size, idle) = (u64::from(pool.size()), pool.num_idle() as u64);
        Self {
            idle,
            active: size.saturating_sub(idle),
        }
    }

    pub(super) fn plus(self, other: Self) -> Self {
        Self {
            idle: self.idle + other.idle,
            active: self.active + other.active,
        }
    }
}

/// A change that may make cached label resolutions stale.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Invalidation {
    Prompt(Uuid),
    /// A key was revoked.
    Key(Uuid),
    /// Notifications may have been missed (a lost connection): drop everything.
    All,
}

impl Invalidation {
    /// The form sent through `NOTIFY`.
    pub fn to_payload(self) -> String {
        match self {
            Self::Prompt(id) => format!("prompt:{id}"),
            Self::Key(id) => format!("key:{id}"),
            Self::All => "all".to_owned(),
        }
    }

    pub fn from_payload(payload: &str) -> Option<Self> {
        match payload.split_once(':') {
            Some(("prompt", id)) => Uuid::parse_str(id).ok().map(Self::Prompt),
            Some(("key", id)) => Uuid::parse_str(id).ok().map(Self::Key),
            _ => (payload == "all").then_some(Self::All),
        }
    }
}

/// `BackendStore` in portable SQL for backend `$store` on database `$db` (see
/// `sql::impl_store!`).
macro_rules! impl_sql {
    ($store:ident, $db:ty, $backend:literal) => {
        use crate::store::{BackendStore, Invalidation, PoolConnections, StoreResult};

        use super::$store;

        crate::store::sql::observed_impl! {
        impl BackendStore for $store as $backend {
            fn backend(&self) -> &'static str {
                $backend
            }

            fn pool_connections(&self) -> PoolConnections {
                self.pool_stats()
            }

            async fn ping(&self) -> StoreResult<()> {
                sqlx::query("select 1").execute(self.reader()).await?;
                Ok(())
            }

            async fn subscribe_invalidations(
                &self,
            ) -> StoreResult<Option<tokio::sync::mpsc::Receiver<Invalidation>>> {
                self.listen().await
            }
        }
        }
    };
}

pub(crate) use impl_sql;
