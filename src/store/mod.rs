//! Persistence. The use-cases are split by resource into one trait each
//! (`PromptStore`, `LabelStore`, `DatasetStore`, `JobStore`, `EvaluationStore`,
//! `OptimizationStore`, `GateStore`, `AdminStore`, `UserStore`, `ExperimentStore`, `MonitorStore`, and `BackendStore` for what
//! a backend answers about itself); `Store` bundles them and is what the app
//! holds, as `Arc<dyn Store>`. Each multi-statement write is one transaction
//! inside one method. This is the only module with SQL and it never sees HTTP
//! types.
//!
//! Both backends accept `$N` placeholders and the portable subset of SQL, so the
//! use-cases are written once, each resource's beside its trait in the
//! resource's file (`sql.rs` says how), and each backend adds only what truly
//! differs: pools, row locking and change notification.

mod admin;
mod backend;
mod datasets;
mod evaluations;
pub mod experiments;
mod gates;
pub(crate) mod health;
mod jobs;
mod labels;
pub mod monitors;
mod optimizations;
mod postgres;
mod prompts;
mod rows;
mod shared;
mod sql;
mod sqlite;
mod users;
pub mod webhooks;

pub use admin::{AdminStore, NewKey, StoredKey};
pub use backend::{BackendStore, Invalidation, PoolConnections};
pub use datasets::{DatasetPatch, DatasetStore, DatasetUse, ItemBatches, ItemError};
pub use evaluations::EvaluationStore;
pub use experiments::ExperimentStore;
pub use gates::GateStore;
pub use jobs::{JobCount, JobStore};
pub use labels::LabelStore;
pub use monitors::MonitorStore;
pub use optimizations::OptimizationStore;
pub use postgres::PostgresStore;
pub use prompts::{
    CreatedVersion, LabelVersion, NewPrompt, NewVersion, PromptFilter, PromptPatch, PromptStore,
};
pub use sqlite::SqliteStore;
pub use users::{NewSession, NewUser, UserPatch, UserStore};
pub use webhooks::WebhookStore;

use std::sync::Arc;

use uuid::Uuid;

use crate::domain::Page;

/// Declares `Store` as the sum of the traits listed and implements it for
/// every type that implements them all, so that the list is written once
/// (stable Rust has no trait aliases).
macro_rules! store_of {
    ($($part:ident),+ $(,)?) => {
        /// Every use-case of one database: what the app holds, as `Arc<dyn Store>`
        /// (a trait object answers its supertraits' methods with no import).
        pub trait Store: $($part +)+ Send + Sync + 'static {}

        impl<T> Store for T where T: $($part +)+ Send + Sync + 'static {}
    };
}

store_of!(
    BackendStore,
    PromptStore,
    LabelStore,
    DatasetStore,
    JobStore,
    EvaluationStore,
    OptimizationStore,
    GateStore,
    AdminStore,
    WebhookStore,
    UserStore,
    ExperimentStore,
    MonitorStore,
);

/// What went wrong, with its subject named, so that every front door can
/// say so without knowing which call it made.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("no prompt named {0:?}")]
    PromptNotFound(String),
    #[error("prompt {prompt:?} has no version {reference}")]
    VersionNotFound { prompt: String, reference: String },
    #[error("prompt {prompt:?} has no label {label:?}")]
    LabelNotFound { prompt: String, label: String },
    #[error("a prompt named {0:?} already exists")]
    PromptExists(String),
    #[error("prompt {0:?} is archived: it takes no new versions")]
    PromptArchived(String),
    #[error("{0}")]
    VersionConflict(String),
    #[error("label {label:?} has no previous target to roll back to")]
    NoPreviousTarget { prompt: String, label: String },
    #[error("prompt {prompt:?} has no version {parent}")]
    ParentNotFound { prompt: String, parent: String },
    #[error("no project named {0:?}")]
    ProjectNotFound(String),
    #[error("a project named {0:?} already exists")]
    ProjectExists(String),
    #[error("no key with this id in your project")]
    KeyNotFound,
    #[error("no user named {0:?}")]
    UserNotFound(String),
    #[error("a user named {0:?} already exists")]
    UserExists(String),
    #[error("no dataset named {0:?}")]
    DatasetNotFound(String),
    #[error("no job with this id in your project")]
    JobNotFound,
    #[error("no evaluation with this id in your project")]
    EvaluationNotFound,
    #[error("no optimization with this id in your project")]
    OptimizationNotFound,
    /// The job already ended (succeeded, failed or cancelled).
    #[error("the job already {}; there is nothing to cancel", .0.as_str())]
    JobFinished(crate::domain::jobs::JobStatus),
    /// The worker no longer holds the job (its lease passed to another
    /// worker, or a cancel was asked for): it must stop writing.
    #[error("the job is no longer held by this worker")]
    JobNotHeld,
    #[error("no experiment with this id in your project")]
    ExperimentNotFound,
    /// The label already has a running experiment.
    #[error("label {0:?} already has a running experiment; stop it first")]
    ExperimentRunning(String),
    #[error("the experiment is {}: it changes no more", .0.as_str().replace('_', " "))]
    ExperimentEnded(crate::domain::experiments::ExperimentStatus),
    /// An experiment's first variant is not the label's version.
    #[error("the control (the first variant) must be label {label:?}'s version, {version}")]
    ControlNotCurrent { label: String, version: String },
    #[error("no webhook with this id in your project")]
    WebhookNotFound,
    #[error("no webhook delivery with this id in your project")]
    DeliveryNotFound,
    #[error("a dataset named {0:?} already exists")]
    DatasetExists(String),
    #[error("dataset {0:?} is archived: it takes no new items")]
    DatasetArchived(String),
    /// Evaluations, optimizations or gates refer to the dataset.
    #[error("{0}")]
    DatasetInUse(DatasetUse),
    /// An upload's item could not be read; nothing of the upload was kept.
    #[error("{0}")]
    InvalidItem(ItemError),
    #[error("stored data is unreadable: {0}")]
    Corrupt(String),
    /// The database cannot be reached or is shutting down: worth retrying
    /// later. Holds the cause, for logs only.
    #[error("the database is unavailable: {0}")]
    Unavailable(String),
    #[error(transparent)]
    Database(sqlx::Error),
}

impl From<sqlx::Error> for StoreError {
    fn from(err: sqlx::Error) -> Self {
        if is_unavailable(&err) {
            Self::Unavailable(err.to_string())
        } else {
            Self::Database(err)
        }
    }
}

/// Whether `err` means the database is down, unreachable or going away
/// (a refused or dropped connection, an exhausted pool, a server shutting
/// down, starting up or failing over), rather than a fault of the query.
fn is_unavailable(err: &sqlx::Error) -> bool {
    match err {
        // A connection the server closed mid-query is an `Io` error
        // (`UnexpectedEof` "… at EOF", a reset, a broken pipe).
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            if db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() {
                sqlite_code_means_unavailable(&code)
            } else {
                postgres_code_means_unavailable(&code)
            }
        }),
        sqlx::Error::Protocol(message) => {
            message.contains("connection") || message.contains("unexpected eof")
        }
        _ => false,
    }
}

/// Postgres SQLSTATEs of a server that cannot serve now but will: class 08
/// (connection exception); 57P01-57P05 (operator intervention: "terminating
/// connection due to administrator command" on `pg_ctl stop -m fast`, crash
/// shutdown, cannot connect now while starting up or in recovery, idle
/// session timeout); 53300 (too many connections, as clients reconnect
/// after a restart); 25006 (a read-only transaction: after a failover the
/// connection reached a standby).
fn postgres_code_means_unavailable(code: &str) -> bool {
    code.starts_with("08") || code.starts_with("57P") || code == "53300" || code == "25006"
}

/// SQLite reports extended result codes (`SQLITE_BUSY_SNAPSHOT` is 517);
/// their low byte is the primary code: `SQLITE_BUSY` (5) and
/// `SQLITE_CANTOPEN` (14) are worth retrying later.
fn sqlite_code_means_unavailable(code: &str) -> bool {
    code.parse::<u32>()
        .is_ok_and(|extended| matches!(extended & 0xff, 5 | 14))
}

pub type StoreResult<T> = Result<T, StoreError>;

/// Where a list page starts: after this key (exclusive), newest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageKey {
    Id(Uuid),
    /// An integer key: a version's `seq`, a label move's id.
    Int(i64),
}

#[derive(Debug, Clone, Copy)]
pub struct PageRequest {
    pub limit: u32,
    pub after: Option<PageKey>,
}

impl PageRequest {
    /// How many rows to fetch: one more than the page holds, to tell whether
    /// another page follows (see [`page_from_overfetch`]).
    pub fn overfetch(&self) -> i64 {
        i64::from(self.limit) + 1
    }

    /// The integer key the page starts after, if it is not the first.
    pub fn after_int(&self) -> Option<i64> {
        match self.after {
            Some(PageKey::Int(key)) => Some(key),
            _ => None,
        }
    }

    /// The id the page starts after, if it is not the first.
    pub fn after_id(&self) -> Option<Uuid> {
        match self.after {
            Some(PageKey::Id(id)) => Some(id),
            _ => None,
        }
    }
}

/// A page from rows fetched with `limit + 1`: the extra row only tells that
/// another page follows, whose cursor is the last kept row's `key`.
pub fn page_from_overfetch<T>(
    mut items: Vec<T>,
    limit: u32,
    key: impl Fn(&T) -> PageKey,
) -> Page<T> {
    let limit = limit as usize;
    let next_cursor = if items.len() > limit {
        items.truncate(limit);
        items.last().map(|last| cursor::encode(key(last)))
    } else {
        None
    };
    Page { items, next_cursor }
}

/// Opens the store `url` names (`sqlite://…` or `postgres://…`) and applies
/// pending migrations.
pub async fn connect(url: &str, max_connections: u32) -> anyhow::Result<Arc<dyn Store>> {
    if url.starts_with("sqlite:") {
        Ok(Arc::new(SqliteStore::connect(url, max_connections).await?))
    } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
        Ok(Arc::new(
            PostgresStore::connect(url, max_connections).await?,
        ))
    } else {
        anyhow::bail!("DATABASE_URL must start with sqlite:// or postgres://")
    }
}

/// Runs one store use-case (`operation`, the store method's name) inside
/// a client span, and records its duration in
/// `promptreg_db_query_duration_seconds`.
pub(crate) async fn observe<T, F>(operation: &'static str, system: &'static str, work: F) -> T
where
    F: std::future::Future<Output = T>,
{
    use tracing::Instrument;
    // Only as a child: a worker's idle polls would otherwise each be a trace.
    let span = if tracing::Span::current().is_none() {
        tracing::Span::none()
    } else {
        tracing::info_span!(
            "store",
            otel.name = operation,
            otel.kind = "client",
            db.system.name = if system == "postgres" {
                "postgresql"
            } else {
                system
            },
            db.operation.name = operation,
            promptreg.prompt = tracing::field::Empty,
            promptreg.label = tracing::field::Empty,
            promptreg.version = tracing::field::Empty,
            promptreg.dataset = tracing::field::Empty,
        )
    };
    let started = std::time::Instant::now();
    let result = work.instrument(span).await;
    crate::telemetry::metrics::db_query(operation, started.elapsed());
    result
}

/// Runs one store use-case under `health` (see [`health::Health::guard`]);
/// as is without one.
pub(crate) async fn guarded<T>(
    health: Option<&health::Health>,
    work: impl std::future::Future<Output = StoreResult<T>>,
) -> StoreResult<T> {
    match health {
        Some(health) => health.guard(work).await,
        None => work.await,
    }
}

/// Names what the running store call is about (`promptreg.prompt`,
/// `promptreg.label`, `promptreg.version` or `promptreg.dataset`) on its span.
pub(crate) fn annotate(field: &'static str, value: &dyn std::fmt::Display) {
    tracing::Span::current().record(field, tracing::field::display(value));
}

/// The current time at the precision both backends store (microseconds), so
/// what a write answers equals what a later read returns.
pub fn now() -> chrono::DateTime<chrono::Utc> {
    use chrono::SubsecRound;
    chrono::Utc::now().trunc_subsecs(6)
}

fn is_unique_violation(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(db) if db.kind() == sqlx::error::ErrorKind::UniqueViolation)
}

/// Opaque cursors: base64url of `kind:value`, so clients cannot mistake them
/// for ids and the encoding can change without breaking the API.
pub mod cursor {
    use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine as _};
    use uuid::Uuid;

    use super::PageKey;

    pub fn encode(key: PageKey) -> String {
        let raw = match key {
            PageKey::Id(id) => format!("i:{id}"),
            PageKey::Int(seq) => format!("s:{seq}"),
        };
        URL_SAFE_NO_PAD.encode(raw)
    }

    pub fn decode(cursor: &str) -> Option<PageKey> {
        let raw = String::from_utf8(URL_SAFE_NO_PAD.decode(cursor).ok()?).ok()?;
        let (kind, value) = raw.split_once(':')?;
        match kind {
            "i" => Uuid::parse_str(value).ok().map(PageKey::Id),
            "s" => value.parse().ok().map(PageKey::Int),
            _ => None,
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn cursors_round_trip_and_reject_garbage() {
            for key in [PageKey::Int(42), PageKey::Id(Uuid::now_v7())] {
                assert_eq!(decode(&encode(key)), Some(key));
            }
            for bad in ["", "!!", "eDo0Mg", "czp4"] {
                assert_eq!(decode(bad), None, "{bad}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;
    use std::error::Error as StdError;
    use std::io;

    use super::*;

    /// A database error carrying a code, as a driver reports it.
    #[derive(Debug)]
    struct CodedError(&'static str);

    impl std::fmt::Display for CodedError {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "error {}", self.0)
        }
    }

    impl StdError for CodedError {}

    impl sqlx::error::DatabaseError for CodedError {
        fn message(&self) -> &str {
            self.0
        }
        fn code(&self) -> Option<Cow<'_, str>> {
            Some(Cow::Borrowed(self.0))
        }
        fn as_error(&self) -> &(dyn StdError + Send + Sync + 'static) {
            self
        }
        fn as_error_mut(&mut self) -> &mut (dyn StdError + Send + Sync + 'static) {
            self
        }
        fn into_error(self: Box<Self>) -> Box<dyn StdError + Send + Sync + 'static> {
            self
        }
        fn kind(&self) -> sqlx::error::ErrorKind {
            sqlx::error::ErrorKind::Other
        }
    }

    fn postgres(code: &'static str) -> sqlx::Error {
        sqlx::Error::Database(Box::new(CodedError(code)))
    }

    fn io(kind: io::ErrorKind, message: &str) -> sqlx::Error {
        sqlx::Error::Io(io::Error::new(kind, message.to_owned()))
    }

    #[test]
    fn a_server_going_away_is_unavailable_not_a_fault() {
        let unavailable = [
            (
                postgres("57P01"),
                "terminating connection due to administrator command",
            ),
            (postgres("57P02"), "crash shutdown"),
            (
                postgres("57P03"),
                "the database system is starting up / shutting down",
            ),
            (postgres("08006"), "connection failure"),
            (postgres("08003"), "connection does not exist"),
            (
                postgres("53300"),
                "too many connections while clients reconnect",
            ),
            (postgres("25006"), "read-only: a standby after failover"),
            (
                io(
                    io::ErrorKind::UnexpectedEof,
                    "expected to read 5 bytes, got 0 bytes at EOF",
                ),
                "the connection closed mid-query",
            ),
            (io(io::ErrorKind::ConnectionReset, "reset by peer"), "reset"),
            (
                io(io::ErrorKind::BrokenPipe, "broken pipe"),
                "written to a closed socket",
            ),
            (
                io(io::ErrorKind::ConnectionRefused, "refused"),
                "server down",
            ),
            (
                sqlx::Error::PoolTimedOut,
                "no connection within the acquire timeout",
            ),
            (sqlx::Error::PoolClosed, "pool closed"),
            (
                sqlx::Error::Protocol("connection closed while reading".into()),
                "protocol: closed",
            ),
        ];
        for (err, why) in unavailable {
            assert!(
                matches!(StoreError::from(err), StoreError::Unavailable(_)),
                "{why}"
            );
        }
        let faults = [
            (postgres("23505"), "unique violation"),
            (postgres("22P05"), "untranslatable character"),
            (postgres("42P01"), "undefined table"),
            (postgres("57014"), "query cancelled (a statement timeout)"),
            (sqlx::Error::RowNotFound, "no row"),
        ];
        for (err, why) in faults {
            assert!(
                matches!(StoreError::from(err), StoreError::Database(_)),
                "{why}"
            );
        }
    }

    #[test]
    fn sqlite_busy_and_cantopen_count_in_every_extended_form() {
        for code in ["5", "261", "517", "773", "14", "270", "526", "1038"] {
            assert!(sqlite_code_means_unavailable(code), "{code}");
        }
        for code in ["1", "19", "2067", "787", "11", "not a code"] {
            assert!(!sqlite_code_means_unavailable(code), "{code}");
        }
    }
}
