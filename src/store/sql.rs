//! The use-cases in portable SQL, written once and instantiated for each
//! backend by `impl_store!`: one macro per resource (`prompts::impl_sql!`,
//! `datasets::impl_sql!`, …), each beside its trait in the resource's file and
//! expanded into a module of its own inside the backend's, plus
//! `impl_shared!` for the steps several resources take. A backend type
//! provides:
//! - `fn reader(&self) -> &Pool<DB>` and `fn writer(&self) -> &Pool<DB>`;
//! - `const LOCK_ROW: &str`, appended to a select that must lock its row
//!   until commit (`for update` on Postgres; empty on SQLite, whose single
//!   writer connection already serializes writes);
//! - `const SKIP_LOCKED: &str`, the same for the job claim, which skips rows
//!   another transaction holds;
//! - `const TAG_MATCH: (&str, &str)`, the SQL around a bound tag that tests
//!   whether `p.tags` (a JSON array) holds it;
//! - `const NUMERIC_SCORES: &str`, a select of each evaluation result's
//!   numeric scores as `(evaluation_id, metric, score)` (a JSON object's
//!   entries, which each backend reads its own way), ending in a `where`;
//! - `const HOUR_BUCKET: &str` and `const DAY_BUCKET: &str`: the start of
//!   the UTC hour or day of `f.created_at`, as RFC 3339 text (`…T13:00:00Z`);
//! - `fn pool_stats(&self) -> PoolConnections`;
//! - `fn health(&self) -> Option<&Health>`: the probe's view of the
//!   database, which every use-case is guarded by (`None`: never down);
//! - `async fn notify(conn, invalidation)`, run inside the writing
//!   transaction so other processes hear of it on commit;
//! - `async fn listen(&self)`, for `BackendStore::subscribe_invalidations`.

/// Escapes `%`, `_` and `\` so user text matches literally in `like … escape '\'`.
pub fn like_pattern(query: &str) -> String {
    let mut pattern = String::with_capacity(query.len() + 2);
    pattern.push('%');
    for c in query.to_lowercase().chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

/// Every store trait for backend type `$store` (an identifier in the calling
/// module) on database `$db` (a full path, such as `sqlx::Sqlite`), whose
/// spans and metrics name it `$backend`: the shared steps, then each
/// resource's `impl_sql!`. Each part gets a module of its own, so that each
/// file's `use` lines stand alone.
macro_rules! impl_store {
    ($store:ident, $db:ty, $backend:literal) => {
        mod shared {
            crate::store::shared::impl_shared!($store, $db);
        }
        crate::store::sql::impl_resources!(
            $store, $db, $backend:
            backend prompts labels datasets jobs evaluations optimizations gates admin webhooks users experiments monitors
        );
    };
}

/// `impl_sql!` of each resource module named, each in a module of that name.
macro_rules! impl_resources {
    ($store:ident, $db:ty, $backend:literal: $($resource:ident)+) => {
        $(
            mod $resource {
                crate::store::$resource::impl_sql!($store, $db, $backend);
            }
        )+
    };
}

/// A store trait's impl with every use-case timed, traced and guarded by
/// the backend's health: each async method's body runs inside
/// [`crate::store::observe`] and [`crate::store::guarded`], named after the
/// method, so the metric's `operation` label and the span name can never
/// drift from the code. Synchronous methods come first and are not timed.
/// Arguments are plain `name: Type`; a trailing comma is fine.
macro_rules! observed_impl {
    (
        impl $trait:ident for $store:ty as $system:literal {
            $(fn $sync:ident(&$sync_self:ident $(,)?) -> $sync_ret:ty $sync_body:block)*
            $($(#[operation = $operation:literal])?
            async fn $name:ident(&$this:ident $(, $arg:ident: $arg_ty:ty)* $(,)?) -> $ret:ty $body:block)*
        }
    ) => {
        #[async_trait::async_trait]
        impl $trait for $store {
            // `self` is taken from the input, not written here: macro
            // hygiene would make it a different `self` from the bodies'.
            $(fn $sync(&$sync_self) -> $sync_ret $sync_body)*
            $(
                async fn $name(&$this $(, $arg: $arg_ty)*) -> $ret {
                    crate::store::observe::<$ret, _>(crate::store::sql::operation_name!($($operation)? ; $name), $system, async move {
                        crate::store::guarded($this.health(), async move $body).await
                    }).await
                }
            )*
        }
    };
}

/// The operation a store call is observed as (span and metric): the
/// method's name, unless `#[operation = "…"]` gives another, so that a
/// method split out of another keeps the name dashboards know it by.
macro_rules! operation_name {
    ($operation:literal ; $name:ident) => {
        $operation
    };
    (; $name:ident) => {
        stringify!($name)
    };
}

pub(crate) use {impl_resources, impl_store, observed_impl, operation_name};

#[cfg(test)]
mod tests {
    use super::like_pattern;

    #[test]
    fn like_patterns_escape_wildcards_and_lower_case() {
        assert_eq!(like_pattern("Greet"), "%greet%");
        assert_eq!(like_pattern("50%_a\\b"), "%50\\%\\_a\\\\b%");
    }
}
