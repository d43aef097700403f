//! Row shapes shared by both backends and their conversion into domain types,
//! and the column lists every query of a table selects. A domain type stored
//! as it is (a dataset, a job, a gate, …) derives `FromRow` itself and has no
//! row here. Column types decode on SQLite and Postgres alike (uuid, text
//! timestamps or timestamptz, json text or jsonb).

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use sqlx::types::Json;
use sqlx::FromRow;
use uuid::Uuid;

use super::StoreError;
use crate::domain::auth::Scope;
use crate::domain::jobs::{Evaluation, Job, MetricSpec};
use crate::domain::optimization::{Optimization, OptimizationSpec, OptimizationState};
use crate::domain::{
    content::PromptBody, ApiKey, ChatMessage, Engine, Label, LabelMove, Prompt, PromptContent,
    Version,
};

/// Columns of `prompt` as `PROMPT_COLUMNS` selects them.
pub const PROMPT_COLUMNS: &str =
    "p.id, p.project_id, p.name, p.description, p.tags, p.archived_at, p.created_at, p.updated_at";

#[derive(FromRow)]
pub struct PromptRow {
    pub id: Uuid,
    pub project_id: Uuid,
    pub name: String,
    pub description: String,
    pub tags: Json<Vec<String>>,
    pub archived_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<PromptRow> for Prompt {
    fn from(row: PromptRow) -> Self {
        Prompt {
            id: row.id,
            project_id: row.project_id,
            name: row.name,
            description: row.description,
            tags: row.tags.0,
            archived: row.archived_at.is_some(),
            created_at: row.created_at,
            updated_at: row.updated_at,
        }
    }
}

/// Selects a version with its prompt's name and its parent's semver.
macro_rules! version_select {
    ($extra:literal) => {
        concat!(
            "select v.id, v.prompt_id, p.name as prompt_name, v.version, \
             v.seq, v.prompt_type, v.engine, v.template, v.messages, v.model_config, v.input_schema, \
             v.output_schema, v.variables, v.message, v.metadata, pv.version as parent, v.content_hash, \
             v.created_at, v.created_by",
            $extra,
            " from prompt_version v \
             join prompt p on p.id = v.prompt_id \
             left join prompt_version pv on pv.id = v.parent_id"
        )
    };
}

pub const VERSION_SELECT: &str = version_select!("");
/// [`VERSION_SELECT`] with `experiment_running`: whether an experiment runs
/// on the label bound as `$3`.
pub const VERSION_SELECT_EXPERIMENT: &str = version_select!(
    ", exists (select 1 from experiment e where e.prompt_id = p.id and e.label = $3 \
     and e.status = 'running') as experiment_running"
);
/// [`VERSION_SELECT`] with `experiment_running` always false.
pub const VERSION_SELECT_NO_EXPERIMENT: &str = version_select!(", false as experiment_running");

#[derive(FromRow)]
pub struct VersionRow {
    pub id: Uuid,
    pub prompt_id: Uuid,
    pub prompt_name: String,
    pub version: String,
    pub seq: i64,
    pub prompt_type: String,
    pub engine: String,
    pub template: Option<String>,
    pub messages: Option<Json<Vec<ChatMessage>>>,
    pub model_config: Json<Map<String, Value>>,
    pub input_schema: Option<Json<Value>>,
    pub output_schema: Option<Json<Value>>,
    pub variables: Json<Vec<String>>,
    pub message: Option<String>,
    pub metadata: Json<Map<String, Value>>,
    pub parent: Option<String>,
    pub content_hash: String,
    pub created_at: DateTime<Utc>,
    pub created_by: Option<String>,
}

pub fn parse_semver(raw: &str) -> Result<semver::Version, StoreError> {
    semver::Version::parse(raw).map_err(|e| StoreError::Corrupt(format!("version {raw:?}: {e}")))
}

impl TryFrom<VersionRow> for Version {
    type Error = StoreError;

    fn try_from(row: VersionRow) -> Result<Self, StoreError> {
        let body = match (row.prompt_type.as_str(), row.template, row.messages) {
            ("text", Some(template), _) => PromptBody::Text(template),
            ("chat", _, Some(messages)) => PromptBody::Chat(messages.0),
            (other, ..) => {
                return Err(StoreError::Corrupt(format!(
                    "version {} has type {other:?} without its content",
                    row.id
                )))
            }
        };
        let engine = Engine::parse(&row.engine)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown engine {:?}", row.engine)))?;
        Ok(Version {
            id: row.id,
            prompt_id: row.prompt_id,
            prompt_name: row.prompt_name,
            version: parse_semver(&row.version)?,
            seq: row.seq,
            content: PromptContent {
                body,
                engine,
                model_config: row.model_config.0,
                input_schema: row.input_schema.map(|j| j.0),
                output_schema: row.output_schema.map(|j| j.0),
            },
            variables: row.variables.0,
            message: row.message,
            metadata: row.metadata.0,
            parent: row.parent.as_deref().map(parse_semver).transpose()?,
            content_hash: row.content_hash,
            created_at: row.created_at,
            created_by: row.created_by,
        })
    }
}

pub const LABEL_SELECT: &str = "select l.prompt_id, l.name, v.version, l.version_id, \
     l.updated_at, l.updated_by from label l join prompt_version v on v.id = l.version_id";

#[derive(FromRow)]
pub struct LabelRow {
    pub prompt_id: Uuid,
    pub name: String,
    pub version: String,
    pub version_id: Uuid,
    pub updated_at: DateTime<Utc>,
    pub updated_by: Option<String>,
}

impl TryFrom<LabelRow> for Label {
    type Error = StoreError;

    fn try_from(row: LabelRow) -> Result<Self, StoreError> {
        Ok(Label {
            prompt_id: row.prompt_id,
            name: row.name,
            version: parse_semver(&row.version)?,
            version_id: row.version_id,
            updated_at: row.updated_at,
            updated_by: row.updated_by,
        })
    }
}

pub const LABEL_MOVE_SELECT: &str = "select m.id, m.label, fv.version as from_version, \
     tv.version as to_version, m.undoes_move_id, m.at, m.by, m.note \
     from label_move m \
     left join prompt_version fv on fv.id = m.from_version_id \
     left join prompt_version tv on tv.id = m.to_version_id";

#[derive(FromRow)]
pub struct LabelMoveRow {
    pub id: i64,
    pub label: String,
    pub from_version: Option<String>,
    pub to_version: Option<String>,
    pub undoes_move_id: Option<i64>,
    pub at: DateTime<Utc>,
    pub by: Option<String>,
    pub note: Option<String>,
}

impl TryFrom<LabelMoveRow> for LabelMove {
    type Error = StoreError;

    fn try_from(row: LabelMoveRow) -> Result<Self, StoreError> {
        Ok(LabelMove {
            id: row.id,
            label: row.label,
            from: row.from_version.as_deref().map(parse_semver).transpose()?,
            to: row.to_version.as_deref().map(parse_semver).transpose()?,
            rollback: row.undoes_move_id.is_some(),
            at: row.at,
            by: row.by,
            note: row.note,
        })
    }
}

pub const PROJECT_SELECT: &str = "select id, name, created_at from project";

pub const DATASET_SELECT: &str = "select d.id, d.project_id, d.name, d.description, \
     d.item_count, (d.archived_at is not null) as archived, d.created_at, d.updated_at \
     from dataset d";

pub const ITEM_SELECT: &str =
    "select id, seq, input, expected, metadata, created_at from dataset_item";

pub const KEY_SELECT: &str = "select k.id, k.project_id, pr.name as project, k.name, k.scopes, \
     k.prefix, k.secret_hash, k.created_at, k.revoked_at \
     from api_key k join project pr on pr.id = k.project_id";

#[derive(FromRow)]
pub struct KeyRow {
    pub id: Uuid,
    pub project_id: Uuid,
    pub project: String,
    pub name: String,
    pub scopes: Json<Vec<Scope>>,
    pub prefix: String,
    pub secret_hash: String,
    pub created_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
}

impl From<KeyRow> for ApiKey {
    fn from(row: KeyRow) -> Self {
        ApiKey {
            id: row.id,
            project_id: row.project_id,
            project: row.project,
            name: row.name,
            scopes: row.scopes.0,
            prefix: row.prefix,
            created_at: row.created_at,
            revoked: row.revoked_at.is_some(),
        }
    }
}

pub const AUDIT_SELECT: &str =
    "select id, at, key_id, key_name, action, target, before, after from audit_log";

pub const JOB_COLUMNS: &str = "id, project_id, kind, payload, status, attempts, max_attempts, \
     lease_owner, lease_expires_at, progress_done, progress_total, cancel_requested, error, \
     created_at, started_at, finished_at, trace_parent";

#[derive(FromRow)]
pub struct EvaluationRow {
    pub id: Uuid,
    pub project_id: Uuid,
    pub job_id: Uuid,
    pub prompt_name: String,
    pub version: String,
    pub version_id: Uuid,
    pub dataset_name: String,
    pub dataset_id: Uuid,
    pub provider: String,
    pub model: Option<String>,
    pub params: Json<Map<String, Value>>,
    pub metrics: Json<Vec<MetricSpec>>,
    pub concurrency: i32,
    pub item_count: i64,
    pub created_at: DateTime<Utc>,
    pub created_by: Option<String>,
}

/// A row of what a job runs (an evaluation, an optimization): read from
/// its table without the job, then joined with it.
pub trait JobOwner {
    type Joined;
    /// Selects the rows, from the table aliased by its initial (`e`, `o`).
    const SELECT: &'static str;
    /// The project and id of the row's job.
    fn job_key(&self) -> (Uuid, Uuid);
    fn with_job(self, job: Job) -> Result<Self::Joined, StoreError>;
}

impl JobOwner for EvaluationRow {
    type Joined = Evaluation;
    const SELECT: &'static str = "select e.id, e.project_id, e.job_id, p.name as prompt_name, \
        v.version, e.version_id, d.name as dataset_name, e.dataset_id, e.provider, e.model, e.params, \
        e.metrics, e.concurrency, e.item_count, e.created_at, e.created_by \
        from evaluation e \
        join prompt p on p.id = e.prompt_id \
        join prompt_version v on v.id = e.version_id \
        join dataset d on d.id = e.dataset_id";

    fn job_key(&self) -> (Uuid, Uuid) {
        (self.project_id, self.job_id)
    }

    fn with_job(self, job: Job) -> Result<Evaluation, StoreError> {
        Ok(Evaluation {
            id: self.id,
            project_id: self.project_id,
            job,
            prompt_name: self.prompt_name,
            version: parse_semver(&self.version)?,
            version_id: self.version_id,
            dataset_name: self.dataset_name,
            dataset_id: self.dataset_id,
            provider: self.provider,
            model: self.model,
            params: self.params.0,
            metrics: self.metrics.0,
            concurrency: self.concurrency,
            item_count: self.item_count,
            created_at: self.created_at,
            created_by: self.created_by,
        })
    }
}

pub const RESULT_COLUMNS: &str =
    "id, item_id, item_seq, output, scores, details, error, latency_ms, \
     input_tokens, output_tokens, cost_usd, created_at";

pub const GATE_SELECT: &str = "select g.prompt_id, g.label, g.dataset_id, d.name as dataset_name, \
     g.rules, g.created_at, g.updated_at from gate g join dataset d on d.id = g.dataset_id";

#[derive(FromRow)]
pub struct OptimizationRow {
    pub id: Uuid,
    pub project_id: Uuid,
    pub job_id: Uuid,
    pub prompt_name: String,
    pub version: String,
    pub version_id: Uuid,
    pub dataset_name: String,
    pub dataset_id: Uuid,
    pub item_count: i64,
    pub spec: Json<OptimizationSpec>,
    pub state: Json<OptimizationState>,
    pub result_version: Option<String>,
    pub created_at: DateTime<Utc>,
    pub created_by: Option<String>,
}

impl JobOwner for OptimizationRow {
    type Joined = Optimization;
    const SELECT: &'static str = "select o.id, o.project_id, o.job_id, p.name as prompt_name, \
        v.version, o.version_id, d.name as dataset_name, o.dataset_id, o.item_count, o.spec, o.state, \
        r.version as result_version, o.created_at, o.created_by \
        from optimization o \
        join prompt p on p.id = o.prompt_id \
        join prompt_version v on v.id = o.version_id \
        join dataset d on d.id = o.dataset_id \
        left join prompt_version r on r.id = o.result_version_id";

    fn job_key(&self) -> (Uuid, Uuid) {
        (self.project_id, self.job_id)
    }

    fn with_job(self, job: Job) -> Result<Optimization, StoreError> {
        Ok(Optimization {
            id: self.id,
            project_id: self.project_id,
            job,
            prompt_name: self.prompt_name,
            version: parse_semver(&self.version)?,
            version_id: self.version_id,
            dataset_name: self.dataset_name,
            dataset_id: self.dataset_id,
            item_count: self.item_count,
            spec: self.spec.0.normalized(),
            state: self.state.0.normalized(),
            result_version: self
                .result_version
                .as_deref()
                .map(parse_semver)
                .transpose()?,
            created_at: self.created_at,
            created_by: self.created_by,
        })
    }
}

pub const USER_SELECT: &str =
    "select u.id, u.name, u.password_hash, u.roles, u.created_at, u.updated_at from app_user u";

#[derive(FromRow)]
pub struct UserRow {
    pub id: Uuid,
    pub name: String,
    pub password_hash: String,
    pub roles: Json<std::collections::BTreeMap<String, crate::domain::users::Role>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<UserRow> for crate::domain::users::User {
    fn from(row: UserRow) -> Self {
        Self {
            id: row.id,
            name: row.name,
            roles: row.roles.0,
            created_at: row.created_at,
            updated_at: row.updated_at,
        }
    }
}

/// A live session with what it acts as: a user (with its roles) or an API
/// key (with its scopes, and whether it was revoked since).
pub const SESSION_SELECT: &str = "select s.project_id, pr.name as project, s.csrf_token, \
     s.expires_at, u.id as user_id, u.name as user_name, u.roles as user_roles, \
     k.id as key_id, k.name as key_name, k.scopes as key_scopes \
     from ui_session s \
     join project pr on pr.id = s.project_id \
     left join app_user u on u.id = s.user_id \
     left join api_key k on k.id = s.key_id";

#[derive(FromRow)]
pub struct SessionRow {
    pub project_id: Uuid,
    pub project: String,
    pub csrf_token: String,
    pub expires_at: DateTime<Utc>,
    pub user_id: Option<Uuid>,
    pub user_name: Option<String>,
    pub user_roles: Option<Json<std::collections::BTreeMap<String, crate::domain::users::Role>>>,
    pub key_id: Option<Uuid>,
    pub key_name: Option<String>,
    pub key_scopes: Option<Json<Vec<Scope>>>,
}
