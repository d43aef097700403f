//! Persistence. The `Store` trait names the use-cases; each multi-statement
//! write is one transaction inside one method. This is the only module with SQL
//! and it never sees HTTP types.
//!
//! Both backends accept `$N` placeholders and the portable subset of SQL, so the
//! use-cases are written once (`sql.rs`) and each backend adds only what truly
//! differs: pools, row locking and change notification.

mod postgres;
mod rows;
mod sql;
mod sqlite;

pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::domain::auth::{Actor, Scope};
use crate::domain::jobs::{
    Evaluation, Gate, GateRule, ItemResult, Job, JobStatus, NewEvaluation, StoredResult,
};
use crate::domain::optimization::{NewOptimization, Optimization, OptimizationState};
use crate::domain::{
    ApiKey, AuditEntry, Bump, Dataset, DatasetItem, Label, LabelMove, LabelName, Page, Project,
    ProjectId, Prompt, PromptContent, PromptName, PromptSummary, Version, VersionRef,
};

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
    #[error("label {label:?} of prompt {prompt:?} has no previous target to roll back to")]
    NoPreviousTarget { prompt: String, label: String },
    #[error("prompt {prompt:?} has no version {parent}")]
    ParentNotFound { prompt: String, parent: String },
    #[error("no project named {0:?}")]
    ProjectNotFound(String),
    #[error("a project named {0:?} already exists")]
    ProjectExists(String),
    #[error("key not found")]
    KeyNotFound,
    #[error("no dataset named {0:?}")]
    DatasetNotFound(String),
    #[error("job not found")]
    JobNotFound,
    #[error("evaluation not found")]
    EvaluationNotFound,
    #[error("optimization not found")]
    OptimizationNotFound,
    /// The job already ended (succeeded, failed or cancelled).
    #[error("the job already {}", .0.as_str())]
    JobFinished(crate::domain::jobs::JobStatus),
    /// The worker no longer holds the job (its lease passed to another
    /// worker, or a cancel was asked for): it must stop writing.
    #[error("the job is no longer held by this worker")]
    JobNotHeld,
    #[error("a dataset named {0:?} already exists")]
    DatasetExists(String),
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
/// down or starting up), rather than a fault of the query.
fn is_unavailable(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::WorkerCrashed => true,
        // Postgres SQLSTATE classes 08 (connection exception) and 57P
        // (operator intervention: admin or crash shutdown, cannot connect
        // now); SQLite's SQLITE_BUSY (5) and SQLITE_CANTOPEN (14).
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            code.starts_with("08") || code.starts_with("57P") || code == "5" || code == "14"
        }),
        sqlx::Error::Protocol(message) => {
            message.contains("connection") || message.contains("unexpected eof")
        }
        _ => false,
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// Connections open in a backend's pools: waiting for work, or lent out.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PoolConnections {
    pub idle: u64,
    pub active: u64,
}

impl PoolConnections {
    fn of<DB: sqlx::Database>(pool: &sqlx::Pool<DB>) -> Self {
        let (size, idle) = (u64::from(pool.size()), pool.num_idle() as u64);
        Self {
            idle,
            active: size.saturating_sub(idle),
        }
    }

    fn plus(self, other: Self) -> Self {
        Self {
            idle: self.idle + other.idle,
            active: self.active + other.active,
        }
    }
}

/// Jobs of one kind in one status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobCount {
    pub kind: String,
    pub status: JobStatus,
    pub count: i64,
}

/// Why an uploaded item was refused: where (`item` is 1-based, `line` when
/// the format has lines) and what.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("item {item}{}: {message}", .line.map(|l| format!(" (line {l})")).unwrap_or_default())]
pub struct ItemError {
    pub item: u64,
    pub line: Option<u64>,
    pub message: String,
}

/// Batches of items as an upload streams them in.
pub type ItemBatches<'a> =
    futures::stream::BoxStream<'a, Result<Vec<crate::domain::NewItem>, ItemError>>;

#[derive(Debug, Clone)]
pub struct NewPrompt {
    pub name: PromptName,
    pub description: String,
    pub tags: Vec<String>,
}

#[derive(Debug, Clone, Default)]
pub struct PromptPatch {
    pub description: Option<String>,
    pub tags: Option<Vec<String>>,
    pub archived: Option<bool>,
}

#[derive(Debug, Clone, Default)]
pub struct PromptFilter {
    /// Exactly this name (archived or not, when `include_archived`).
    pub name: Option<PromptName>,
    pub tag: Option<String>,
    pub query: Option<String>,
    pub include_archived: bool,
}

/// What a caller asks for when posting content. Numbering, parent and
/// idempotency are decided inside the store's transaction.
#[derive(Debug, Clone)]
pub struct NewVersion {
    pub content: PromptContent,
    pub variables: Vec<String>,
    pub message: Option<String>,
    pub metadata: Map<String, Value>,
    pub version: Option<semver::Version>,
    pub bump: Option<Bump>,
    pub parent: Option<semver::Version>,
    /// `Some(None)`: the caller expects the prompt to have no version yet.
    pub expected_latest: Option<Option<semver::Version>>,
    pub labels: Vec<LabelName>,
}

#[derive(Debug, Clone)]
pub struct NewKey {
    pub name: String,
    pub scopes: Vec<Scope>,
    /// The secret's display prefix and its hash; the secret itself is never stored.
    pub prefix: String,
    pub secret_hash: String,
}

/// A key with its hash, to check a presented secret against.
#[derive(Debug, Clone)]
pub struct StoredKey {
    pub key: ApiKey,
    pub secret_hash: String,
}

#[derive(Debug, Clone)]
pub struct CreatedVersion {
    pub version: Version,
    /// False when the content equalled the latest version's and nothing was created.
    pub created: bool,
}

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

/// A change that may make cached label resolutions stale.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Invalidation {
    Prompt(Uuid),
    /// A key was revoked.
    Key(Uuid),
    /// Notifications may have been missed (a lost connection): drop everything.
    All,
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Which backend this is, for logs.
    fn backend(&self) -> &'static str;
    /// The connection pools' state now, for the metrics scrape.
    fn pool_connections(&self) -> PoolConnections;
    async fn ping(&self) -> StoreResult<()>;
    /// How many jobs of each kind are `queued` and `running` now.
    async fn count_unfinished_jobs(&self) -> StoreResult<Vec<JobCount>>;
    /// The id of project `name`, created if missing.
    async fn ensure_project(&self, name: &str) -> StoreResult<ProjectId>;

    async fn insert_prompt(
        &self,
        project: ProjectId,
        new: NewPrompt,
        actor: &Actor,
    ) -> StoreResult<Prompt>;
    async fn get_prompt(&self, project: ProjectId, name: &PromptName)
        -> StoreResult<PromptSummary>;
    async fn list_prompts(
        &self,
        project: ProjectId,
        filter: &PromptFilter,
        page: PageRequest,
    ) -> StoreResult<Page<PromptSummary>>;
    async fn update_prompt(
        &self,
        project: ProjectId,
        name: &PromptName,
        patch: PromptPatch,
        actor: &Actor,
    ) -> StoreResult<PromptSummary>;

    async fn create_version(
        &self,
        project: ProjectId,
        name: &PromptName,
        new: NewVersion,
        actor: &Actor,
    ) -> StoreResult<CreatedVersion>;
    async fn get_version(
        &self,
        project: ProjectId,
        name: &PromptName,
        reference: &VersionRef,
    ) -> StoreResult<Version>;
    async fn list_versions(
        &self,
        project: ProjectId,
        name: &PromptName,
        page: PageRequest,
    ) -> StoreResult<Page<Version>>;

    async fn list_labels(&self, project: ProjectId, name: &PromptName) -> StoreResult<Vec<Label>>;
    async fn set_label(
        &self,
        project: ProjectId,
        name: &PromptName,
        label: &LabelName,
        version: &semver::Version,
        actor: &Actor,
    ) -> StoreResult<Label>;
    async fn delete_label(
        &self,
        project: ProjectId,
        name: &PromptName,
        label: &LabelName,
        actor: &Actor,
    ) -> StoreResult<Label>;
    async fn rollback_label(
        &self,
        project: ProjectId,
        name: &PromptName,
        label: &LabelName,
        actor: &Actor,
    ) -> StoreResult<Label>;
    async fn list_label_moves(
        &self,
        project: ProjectId,
        name: &PromptName,
        label: &LabelName,
        page: PageRequest,
    ) -> StoreResult<Page<LabelMove>>;

    async fn insert_project(&self, name: &str, actor: &Actor) -> StoreResult<Project>;
    async fn list_projects(&self) -> StoreResult<Vec<Project>>;
    async fn get_project(&self, name: &str) -> StoreResult<Project>;

    async fn insert_key(
        &self,
        project: ProjectId,
        new: NewKey,
        actor: &Actor,
    ) -> StoreResult<ApiKey>;
    /// Every key (any project, revoked too) whose secret starts with `prefix`.
    async fn find_keys_by_prefix(&self, prefix: &str) -> StoreResult<Vec<StoredKey>>;
    async fn list_keys(&self, project: ProjectId) -> StoreResult<Vec<ApiKey>>;
    async fn revoke_key(&self, project: ProjectId, id: Uuid, actor: &Actor) -> StoreResult<ApiKey>;
    async fn count_keys(&self) -> StoreResult<i64>;

    async fn insert_dataset(
        &self,
        project: ProjectId,
        name: &PromptName,
        description: &str,
        actor: &Actor,
    ) -> StoreResult<Dataset>;
    async fn get_dataset(&self, project: ProjectId, name: &str) -> StoreResult<Dataset>;
    async fn list_datasets(
        &self,
        project: ProjectId,
        page: PageRequest,
    ) -> StoreResult<Page<Dataset>>;
    /// Appends every item the stream yields, in one transaction: an item
    /// error (or any failure) keeps none of them. Answers the dataset after.
    async fn append_items(
        &self,
        project: ProjectId,
        name: &str,
        items: ItemBatches<'_>,
        actor: &Actor,
    ) -> StoreResult<Dataset>;
    /// Creates an evaluation and its queued job, in one transaction.
    async fn insert_evaluation(
        &self,
        project: ProjectId,
        new: NewEvaluation,
        actor: &Actor,
    ) -> StoreResult<Evaluation>;
    async fn get_evaluation(&self, project: ProjectId, id: Uuid) -> StoreResult<Evaluation>;
    /// The evaluation a job runs (the worker knows jobs, not projects).
    async fn get_evaluation_of_job(&self, job_id: Uuid) -> StoreResult<Evaluation>;
    /// Creates an optimization and its queued job, in one transaction.
    async fn insert_optimization(
        &self,
        project: ProjectId,
        new: NewOptimization,
        actor: &Actor,
    ) -> StoreResult<Optimization>;
    async fn get_optimization(&self, project: ProjectId, id: Uuid) -> StoreResult<Optimization>;
    /// The optimization a job runs.
    async fn get_optimization_of_job(&self, job_id: Uuid) -> StoreResult<Optimization>;
    /// Saves how far an optimization got, with its job's progress, in one transaction.
    /// Only while `owner` holds the job's lease: otherwise
    /// [`StoreError::JobNotHeld`], and nothing is written.
    async fn save_optimization_state(
        &self,
        id: Uuid,
        owner: &str,
        state: &OptimizationState,
        progress_done: i64,
    ) -> StoreResult<()>;
    /// Saves the final state and, unless the optimization already has one,
    /// creates `result` as a version of `prompt`, in one transaction: however
    /// often a resumed job gets here, there is one result version at most.
    /// Returns the result version, new or earlier. Writes nothing
    /// ([`StoreError::JobNotHeld`]) unless `owner` holds the job's lease and
    /// no cancel was asked for.
    async fn finish_optimization(
        &self,
        id: Uuid,
        owner: &str,
        state: &OptimizationState,
        result: Option<(ProjectId, PromptName, NewVersion, Actor)>,
    ) -> StoreResult<Option<semver::Version>>;
    /// The newest succeeded evaluation of a version on a dataset.
    async fn find_passing_candidate(
        &self,
        version_id: Uuid,
        dataset_id: Uuid,
    ) -> StoreResult<Option<Evaluation>>;
    /// Items of a dataset by id with `after < seq <= up_to`, in order (for the worker).
    async fn list_items_for_run(
        &self,
        dataset_id: Uuid,
        after: i64,
        up_to: i64,
        limit: u32,
    ) -> StoreResult<Vec<DatasetItem>>;
    /// Ids of the items an evaluation already has results for.
    async fn evaluated_items(&self, evaluation_id: Uuid) -> StoreResult<Vec<Uuid>>;
    /// Stores items' results and counts them in the job's progress, in one
    /// transaction, each item once: a second result for an item is ignored.
    /// Answers how many were new.
    async fn insert_results(
        &self,
        job_id: Uuid,
        evaluation_id: Uuid,
        results: &[ItemResult],
    ) -> StoreResult<u64>;
    /// Results in the order they were stored, after result id `after`.
    async fn list_results(
        &self,
        evaluation_id: Uuid,
        after: i64,
        limit: u32,
    ) -> StoreResult<Vec<StoredResult>>;

    async fn get_job(&self, project: ProjectId, id: Uuid) -> StoreResult<Job>;
    /// Takes the next runnable job (queued and due, or running with an
    /// expired lease) for `owner` until `lease` from now; `None` when idle.
    async fn claim_job(&self, owner: &str, lease: std::time::Duration) -> StoreResult<Option<Job>>;
    /// Extends `owner`'s lease. `None`: the lease was lost (another worker
    /// took the job); else whether a cancel was requested.
    async fn heartbeat(
        &self,
        job_id: Uuid,
        owner: &str,
        lease: std::time::Duration,
    ) -> StoreResult<Option<bool>>;
    /// Ends a job `owner` holds; false when it no longer holds it.
    async fn complete_job(
        &self,
        job_id: Uuid,
        owner: &str,
        status: JobStatus,
        error: Option<&str>,
    ) -> StoreResult<bool>;
    /// Puts a job `owner` holds back in the queue, due at `run_after`.
    async fn retry_job(
        &self,
        job_id: Uuid,
        owner: &str,
        run_after: chrono::DateTime<chrono::Utc>,
        error: &str,
    ) -> StoreResult<bool>;
    /// A queued job is cancelled at once; a running one is asked to stop.
    async fn cancel_job(&self, project: ProjectId, id: Uuid, actor: &Actor) -> StoreResult<Job>;

    /// Creates or replaces the gate on `label` of a prompt.
    async fn put_gate(
        &self,
        project: ProjectId,
        prompt: &PromptName,
        label: &LabelName,
        dataset: &str,
        rules: &[GateRule],
        actor: &Actor,
    ) -> StoreResult<Gate>;
    async fn find_gate(
        &self,
        project: ProjectId,
        prompt: &PromptName,
        label: &str,
    ) -> StoreResult<Option<Gate>>;
    async fn list_gates(&self, project: ProjectId, prompt: &PromptName) -> StoreResult<Vec<Gate>>;
    /// False when there was no such gate.
    async fn delete_gate(
        &self,
        project: ProjectId,
        prompt: &PromptName,
        label: &LabelName,
        actor: &Actor,
    ) -> StoreResult<bool>;

    /// Items in upload order, after `page.after` (a `seq`).
    async fn list_items(
        &self,
        project: ProjectId,
        name: &str,
        page: PageRequest,
    ) -> StoreResult<Page<DatasetItem>>;

    async fn list_audit(
        &self,
        project: ProjectId,
        page: PageRequest,
    ) -> StoreResult<Page<AuditEntry>>;

    /// Label changes made by other processes sharing this database, where the
    /// backend can tell (Postgres `LISTEN`); `None` when this process is the
    /// only writer that matters (SQLite).
    async fn subscribe_invalidations(
        &self,
    ) -> StoreResult<Option<tokio::sync::mpsc::Receiver<Invalidation>>>;
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

/// Runs one store use-case (`operation`, the `Store` method's name) inside
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
