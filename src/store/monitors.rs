//! Monitoring a label after its rollout: monitors (config and last state),
//! what they read (where the label came from, one version's feedback over
//! a time range) and what they write (a check, or a firing: the label's
//! history, the audit log and the webhook outbox in one transaction), and
//! the time-bucketed feedback summary. `MonitorStore`, then `impl_sql!`.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::Value;
use uuid::Uuid;

use super::StoreResult;
use crate::domain::auth::Actor;
use crate::domain::experiments::stats::Sample;
use crate::domain::monitors::{Bucket, Monitor, MonitorSpec, MonitorState};
use crate::domain::{LabelName, ProjectId, PromptName};

/// Where a label's version came from: the version a rollback would return
/// to (if any), and when the current version took the label.
#[derive(Debug, Clone, PartialEq)]
pub struct LabelLineage {
    pub current_version_id: Uuid,
    pub current_version: String,
    pub since: DateTime<Utc>,
    pub previous: Option<(Uuid, String)>,
}

/// One version's feedback in one time bucket.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct SummaryRow {
    pub version: String,
    /// The bucket's start, RFC 3339 in UTC.
    pub bucket: String,
    pub n: i64,
    pub mean: f64,
}

/// What a firing writes besides the monitor's state.
#[derive(Debug, Clone)]
pub struct Firing {
    /// The label history's note.
    pub note: String,
    /// The audit entry's `after` and the `monitor.fired` event's data.
    pub data: Value,
}

#[async_trait]
pub trait MonitorStore: Send + Sync {
    /// Creates or replaces the monitor on `label` (its state is kept).
    async fn put_monitor(
        &self,
        project: ProjectId,
        prompt: &PromptName,
        label: &LabelName,
        spec: &MonitorSpec,
        actor: &Actor,
    ) -> StoreResult<Monitor>;
    async fn find_monitor(
        &self,
        project: ProjectId,
        prompt: &PromptName,
        label: &str,
    ) -> StoreResult<Option<Monitor>>;
    async fn list_monitors(
        &self,
        project: ProjectId,
        prompt: &PromptName,
    ) -> StoreResult<Vec<Monitor>>;
    /// False when there was no such monitor.
    async fn delete_monitor(
        &self,
        project: ProjectId,
        prompt: &PromptName,
        label: &LabelName,
        actor: &Actor,
    ) -> StoreResult<bool>;
    /// The monitors watching `feedback` on labels that point at the version.
    async fn monitors_on_version(
        &self,
        prompt_id: Uuid,
        version_id: Uuid,
        feedback: &str,
    ) -> StoreResult<Vec<Monitor>>;
    /// `None` when the label does not exist.
    async fn label_lineage(
        &self,
        prompt_id: Uuid,
        label: &str,
    ) -> StoreResult<Option<LabelLineage>>;
    /// A version's feedback named `feedback` with `from <= created_at < until`.
    async fn version_feedback_sums(
        &self,
        version_id: Uuid,
        feedback: &str,
        from: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> StoreResult<Sample>;
    /// Writes what a check saw (not a firing).
    async fn record_monitor_check(
        &self,
        prompt_id: Uuid,
        label: &str,
        state: &MonitorState,
    ) -> StoreResult<()>;
    /// Fires the monitor for `state.current`'s version, unless it already
    /// fired for it: the state, a note in the label's history, an audit
    /// entry and a `monitor.fired` event, together. False when it had
    /// already fired (nothing is written).
    async fn fire_monitor(
        &self,
        project: ProjectId,
        prompt: &PromptName,
        label: &str,
        state: &MonitorState,
        firing: &Firing,
        actor: &Actor,
    ) -> StoreResult<bool>;
    /// Per version and bucket, `n` and mean of the prompt's feedback named
    /// `name` with `from <= created_at < to`, oldest bucket first.
    async fn feedback_summary(
        &self,
        project: ProjectId,
        prompt: &PromptName,
        name: &str,
        bucket: Bucket,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> StoreResult<Vec<SummaryRow>>;
}

/// `MonitorStore` in portable SQL for backend `$store` on database `$db`
/// (see `sql::impl_store!`).
macro_rules! impl_sql {
    ($store:ident, $db:ty, $backend:literal) => {
        use chrono::{DateTime, Utc};
        use serde_json::json;
        use uuid::Uuid;

        use crate::domain::auth::Actor;
        use crate::domain::experiments::stats::Sample;
        use crate::domain::monitors::{
            Bucket, Monitor, MonitorAction, MonitorDecision, MonitorSpec, MonitorState, Side,
        };
        use crate::domain::webhooks::{OutboxEvent, MONITOR_FIRED};
        use crate::domain::{LabelName, ProjectId, PromptName};
        use crate::store::monitors::{Firing, LabelLineage, SummaryRow};
        use crate::store::{now, MonitorStore, StoreError, StoreResult};

        use super::$store;

        type Conn = <$db as sqlx::Database>::Connection;

        const MONITOR_SELECT: &str = "select m.prompt_id, p.name as prompt, m.label, m.feedback, m.window_spec, \
             m.min_samples, m.max_drop, m.confidence, m.action, m.created_at, m.updated_at, m.created_by, \
             m.checked_at, m.decision, m.current_version, m.current_n, m.current_mean, m.previous_version, \
             m.previous_n, m.previous_mean, m.first_window, m.fired_at, m.fired_version \
             from monitor m join prompt p on p.id = m.prompt_id";

        #[derive(sqlx::FromRow)]
        struct MonitorRow {
            prompt_id: Uuid,
            prompt: String,
            label: String,
            feedback: String,
            window_spec: String,
            min_samples: i64,
            max_drop: f64,
            confidence: f64,
            action: String,
            created_at: DateTime<Utc>,
            updated_at: DateTime<Utc>,
            created_by: Option<String>,
            checked_at: Option<DateTime<Utc>>,
            decision: Option<String>,
            current_version: Option<String>,
            current_n: Option<i64>,
            current_mean: Option<f64>,
            previous_version: Option<String>,
            previous_n: Option<i64>,
            previous_mean: Option<f64>,
            first_window: bool,
            fired_at: Option<DateTime<Utc>>,
            fired_version: Option<String>,
        }

        impl TryFrom<MonitorRow> for Monitor {
            type Error = StoreError;

            fn try_from(row: MonitorRow) -> StoreResult<Self> {
                let corrupt = |what: &str| StoreError::Corrupt(format!("monitor {}/{}: {what}", row.prompt, row.label));
                let side = |version: Option<String>, n: Option<i64>, mean: Option<f64>| {
                    version.map(|version| Side { version, n: n.unwrap_or(0), mean })
                };
                let decision = match &row.decision {
                    Some(raw) => Some(MonitorDecision::parse(raw).ok_or_else(|| corrupt("decision"))?),
                    None => None,
                };
                Ok(Monitor {
                    spec: MonitorSpec {
                        feedback: row.feedback,
                        window: row.window_spec,
                        min_samples: u32::try_from(row.min_samples).map_err(|_| corrupt("min_samples"))?,
                        max_drop: row.max_drop,
                        confidence: row.confidence,
                        action: MonitorAction::parse(&row.action).ok_or_else(|| corrupt("action"))?,
                    },
                    state: MonitorState {
                        checked_at: row.checked_at,
                        decision,
                        current: side(row.current_version, row.current_n, row.current_mean),
                        previous: side(row.previous_version, row.previous_n, row.previous_mean),
                        first_window: row.first_window,
                        fired_at: row.fired_at,
                        fired_version: row.fired_version,
                    },
                    prompt_id: row.prompt_id,
                    prompt: row.prompt,
                    label: row.label,
                    created_at: row.created_at,
                    updated_at: row.updated_at,
                    created_by: row.created_by,
                })
            }
        }

        impl $store {
            async fn monitor_of(conn: &mut Conn, prompt_id: Uuid, label: &str) -> StoreResult<Option<Monitor>> {
                let sql = format!("{MONITOR_SELECT} where m.prompt_id = $1 and m.label = $2");
                sqlx::query_as::<_, MonitorRow>(&sql)
                    .bind(prompt_id)
                    .bind(label.to_owned())
                    .fetch_optional(&mut *conn)
                    .await?
                    .map(Monitor::try_from)
                    .transpose()
            }

            /// Writes a check's state; with `fired_at`, only when the monitor
            /// has not fired for the current version (answers whether it wrote).
            async fn write_state(
                conn: &mut Conn,
                prompt_id: Uuid,
                label: &str,
                state: &MonitorState,
                fired_at: Option<DateTime<Utc>>,
            ) -> StoreResult<bool> {
                let current = state.current.as_ref();
                let previous = state.previous.as_ref();
                let firing = if fired_at.is_some() {
                    ", fired_at = $12, fired_version = $3 where prompt_id = $10 and label = $11 \
                     and (fired_version is null or fired_version <> $3)"
                } else {
                    " where prompt_id = $10 and label = $11"
                };
                let sql = format!(
                    "update monitor set checked_at = $1, decision = $2, current_version = $3, current_n = $4, \
                     current_mean = $5, previous_version = $6, previous_n = $7, previous_mean = $8, \
                     first_window = $9{firing}"
                );
                let mut query = sqlx::query(&sql)
                    .bind(state.checked_at)
                    .bind(state.decision.map(|d| d.as_str().to_owned()))
                    .bind(current.map(|s| s.version.clone()))
                    .bind(current.map(|s| s.n))
                    .bind(current.and_then(|s| s.mean))
                    .bind(previous.map(|s| s.version.clone()))
                    .bind(previous.map(|s| s.n))
                    .bind(previous.and_then(|s| s.mean))
                    .bind(state.first_window)
                    .bind(prompt_id)
                    .bind(label.to_owned());
                if let Some(at) = fired_at {
                    query = query.bind(at);
                }
                let written = query.execute(&mut *conn).await?.rows_affected();
                Ok(written == 1)
            }
        }

        crate::store::sql::observed_impl! {
        impl MonitorStore for $store as $backend {
            async fn put_monitor(
                &self,
                project: ProjectId,
                prompt: &PromptName,
                label: &LabelName,
                spec: &MonitorSpec,
                actor: &Actor,
            ) -> StoreResult<Monitor> {
                crate::store::annotate("promptreg.prompt", &prompt);
                let at = now();
                let mut tx = self.writer().begin().await?;
                let prompt_row = Self::prompt_row(&mut tx, project, prompt, true).await?;
                sqlx::query(
                    "insert into monitor (prompt_id, label, feedback, window_spec, min_samples, max_drop, confidence, \
                     action, created_at, updated_at, created_by) \
                     values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9, $10) \
                     on conflict (prompt_id, label) do update set feedback = excluded.feedback, \
                     window_spec = excluded.window_spec, min_samples = excluded.min_samples, \
                     max_drop = excluded.max_drop, confidence = excluded.confidence, action = excluded.action, \
                     updated_at = excluded.updated_at",
                )
                .bind(prompt_row.id)
                .bind(label.as_str())
                .bind(&spec.feedback)
                .bind(&spec.window)
                .bind(i64::from(spec.min_samples))
                .bind(spec.max_drop)
                .bind(spec.confidence)
                .bind(spec.action.as_str())
                .bind(at)
                .bind(&actor.key_name)
                .execute(&mut *tx)
                .await?;
                Self::audit(
                    &mut tx, project, actor, "monitor.put", &format!("prompts/{prompt}/monitors/{label}"), None,
                    Some(json!({"feedback": spec.feedback, "window": spec.window, "min_samples": spec.min_samples,
                                "max_drop": spec.max_drop, "confidence": spec.confidence, "action": spec.action.as_str()})),
                ).await?;
                let monitor = Self::monitor_of(&mut tx, prompt_row.id, label.as_str())
                    .await?
                    .ok_or_else(|| StoreError::Corrupt(format!("monitor {prompt}/{label} vanished")))?;
                tx.commit().await?;
                Ok(monitor)
            }

            async fn find_monitor(&self, project: ProjectId, prompt: &PromptName, label: &str) -> StoreResult<Option<Monitor>> {
                let mut conn = self.reader().acquire().await?;
                let prompt_row = Self::prompt_row(&mut conn, project, prompt, false).await?;
                Self::monitor_of(&mut conn, prompt_row.id, label).await
            }

            async fn list_monitors(&self, project: ProjectId, prompt: &PromptName) -> StoreResult<Vec<Monitor>> {
                let mut conn = self.reader().acquire().await?;
                let prompt_row = Self::prompt_row(&mut conn, project, prompt, false).await?;
                let sql = format!("{MONITOR_SELECT} where m.prompt_id = $1 order by m.label");
                let rows: Vec<MonitorRow> = sqlx::query_as(&sql).bind(prompt_row.id).fetch_all(&mut *conn).await?;
                rows.into_iter().map(Monitor::try_from).collect()
            }

            async fn delete_monitor(&self, project: ProjectId, prompt: &PromptName, label: &LabelName, actor: &Actor) -> StoreResult<bool> {
                let mut tx = self.writer().begin().await?;
                let prompt_row = Self::prompt_row(&mut tx, project, prompt, true).await?;
                let deleted = sqlx::query("delete from monitor where prompt_id = $1 and label = $2")
                    .bind(prompt_row.id)
                    .bind(label.as_str())
                    .execute(&mut *tx)
                    .await?
                    .rows_affected() == 1;
                if deleted {
                    Self::audit(&mut tx, project, actor, "monitor.delete", &format!("prompts/{prompt}/monitors/{label}"), None, None).await?;
                }
                tx.commit().await?;
                Ok(deleted)
            }

            async fn monitors_on_version(&self, prompt_id: Uuid, version_id: Uuid, feedback: &str) -> StoreResult<Vec<Monitor>> {
                let sql = format!(
                    "{MONITOR_SELECT} join label l on l.prompt_id = m.prompt_id and l.name = m.label \
                     where m.prompt_id = $1 and l.version_id = $2 and m.feedback = $3 order by m.label"
                );
                let rows: Vec<MonitorRow> = sqlx::query_as(&sql)
                    .bind(prompt_id)
                    .bind(version_id)
                    .bind(feedback.to_owned())
                    .fetch_all(self.reader())
                    .await?;
                rows.into_iter().map(Monitor::try_from).collect()
            }

            async fn label_lineage(&self, prompt_id: Uuid, label: &str) -> StoreResult<Option<LabelLineage>> {
                let mut conn = self.reader().acquire().await?;
                let current: Option<(Uuid, String, DateTime<Utc>)> = sqlx::query_as(
                    "select l.version_id, v.version, l.updated_at from label l \
                     join prompt_version v on v.id = l.version_id where l.prompt_id = $1 and l.name = $2",
                )
                .bind(prompt_id)
                .bind(label.to_owned())
                .fetch_optional(&mut *conn)
                .await?;
                let Some((current_version_id, current_version, updated_at)) = current else {
                    return Ok(None);
                };
                // The move a rollback would undo (the same choice as
                // `rollback_label`): its source is the version before.
                let undoable: Option<(DateTime<Utc>, Option<Uuid>, Option<Uuid>)> = sqlx::query_as(
                    "select m.at, m.from_version_id, m.to_version_id from label_move m \
                     where m.prompt_id = $1 and m.label = $2 and m.undoes_move_id is null and m.note is null \
                     and not exists (select 1 from label_move r where r.undoes_move_id = m.id) \
                     order by m.id desc limit 1",
                )
                .bind(prompt_id)
                .bind(label.to_owned())
                .fetch_optional(&mut *conn)
                .await?;
                let (since, previous_id) = match undoable {
                    Some((at, from, Some(to))) if to == current_version_id => (at, from),
                    _ => {
                        let arrived: Option<DateTime<Utc>> = sqlx::query_scalar(
                            "select m.at from label_move m where m.prompt_id = $1 and m.label = $2 \
                             and m.to_version_id = $3 and m.note is null order by m.id desc limit 1",
                        )
                        .bind(prompt_id)
                        .bind(label.to_owned())
                        .bind(current_version_id)
                        .fetch_optional(&mut *conn)
                        .await?;
                        (arrived.unwrap_or(updated_at), None)
                    }
                };
                let previous = match previous_id {
                    Some(id) => Self::semver_of(&mut conn, Some(id)).await?.map(|v| (id, v)),
                    None => None,
                };
                Ok(Some(LabelLineage { current_version_id, current_version, since, previous }))
            }

            async fn version_feedback_sums(
                &self,
                version_id: Uuid,
                feedback: &str,
                from: DateTime<Utc>,
                until: DateTime<Utc>,
            ) -> StoreResult<Sample> {
                let (n, sum, sum_sq): (i64, Option<f64>, Option<f64>) = sqlx::query_as(
                    "select count(*), sum(value), sum(value * value) from feedback \
                     where version_id = $1 and name = $2 and created_at >= $3 and created_at < $4",
                )
                .bind(version_id)
                .bind(feedback.to_owned())
                .bind(from)
                .bind(until)
                .fetch_one(self.reader())
                .await?;
                Ok(Sample {
                    n: u64::try_from(n).unwrap_or(0),
                    sum: sum.unwrap_or(0.0),
                    sum_sq: sum_sq.unwrap_or(0.0),
                })
            }

            async fn record_monitor_check(&self, prompt_id: Uuid, label: &str, state: &MonitorState) -> StoreResult<()> {
                let mut conn = self.writer().acquire().await?;
                Self::write_state(&mut conn, prompt_id, label, state, None).await?;
                Ok(())
            }

            async fn fire_monitor(
                &self,
                project: ProjectId,
                prompt: &PromptName,
                label: &str,
                state: &MonitorState,
                firing: &Firing,
                actor: &Actor,
            ) -> StoreResult<bool> {
                let at = now();
                let mut tx = self.writer().begin().await?;
                // Locked: two checks that both saw a drop queue here, and the
                // second finds the monitor fired.
                let prompt_row = Self::prompt_row(&mut tx, project, prompt, true).await?;
                if !Self::write_state(&mut tx, prompt_row.id, label, state, Some(at)).await? {
                    return Ok(false);
                }
                let current = Self::current_label_target(&mut tx, prompt_row.id, label).await?;
                sqlx::query(
                    "insert into label_move (prompt_id, label, from_version_id, to_version_id, at, by, note) \
                     values ($1, $2, $3, $3, $4, $5, $6)",
                )
                .bind(prompt_row.id)
                .bind(label.to_owned())
                .bind(current)
                .bind(at)
                .bind(&actor.key_name)
                .bind(&firing.note)
                .execute(&mut *tx)
                .await?;
                Self::audit(
                    &mut tx, project, actor, "monitor.fired", &format!("prompts/{prompt}/monitors/{label}"),
                    None, Some(firing.data.clone()),
                ).await?;
                let event = OutboxEvent::new(MONITOR_FIRED, Some(prompt.as_str()), firing.data.clone());
                Self::emit(&mut tx, project, &event).await?;
                tx.commit().await?;
                Ok(true)
            }

            async fn feedback_summary(
                &self,
                project: ProjectId,
                prompt: &PromptName,
                name: &str,
                bucket: Bucket,
                from: DateTime<Utc>,
                to: DateTime<Utc>,
            ) -> StoreResult<Vec<SummaryRow>> {
                crate::store::annotate("promptreg.prompt", &prompt);
                let mut conn = self.reader().acquire().await?;
                let prompt_row = Self::prompt_row(&mut conn, project, prompt, false).await?;
                let start = match bucket {
                    Bucket::Hour => Self::HOUR_BUCKET,
                    Bucket::Day => Self::DAY_BUCKET,
                };
                let sql = format!(
                    "select v.version, {start} as bucket, count(*) as n, avg(f.value) as mean \
                     from feedback f join prompt_version v on v.id = f.version_id \
                     where f.prompt_id = $1 and f.name = $2 and f.created_at >= $3 and f.created_at < $4 \
                     group by v.seq, v.version, {start} order by {start}, v.seq"
                );
                Ok(sqlx::query_as(&sql)
                    .bind(prompt_row.id)
                    .bind(name.to_owned())
                    .bind(from)
                    .bind(to)
                    .fetch_all(&mut *conn)
                    .await?)
            }
        }
        }
    };
}

pub(crate) use impl_sql;
