//! What a backend answers about itself: `impl_backend_store!` implements
//! `BackendStore` with the backend's own pools and notifications.

macro_rules! impl_backend_store {
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

pub(crate) use impl_backend_store;
