//! The use-cases in portable SQL, written once and instantiated for each
//! backend by `impl_store!`. A backend type provides:
//! - `fn reader(&self) -> &Pool<DB>` and `fn writer(&self) -> &Pool<DB>`;
//! - `const LOCK_ROW: &str`, appended to a select that must lock its row
//!   until commit (`for update` on Postgres; empty on SQLite, whose single
//!   writer connection already serializes writes);
//! - `const TAG_MATCH: (&str, &str)`, the SQL around a bound tag that tests
//!   whether `p.tags` (a JSON array) holds it;
//! - `async fn notify(conn, invalidation)`, run inside the writing
//!   transaction so other processes hear of it on commit;
//! - `async fn listen(&self)`, for `Store::subscribe_invalidations`.

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

macro_rules! impl_store {
    ($store:ty, $db:ty, $backend:literal) => {
        use std::collections::BTreeMap;

        use async_trait::async_trait;
        use crate::store::now;
        use sqlx::types::Json;
        use uuid::Uuid;

        use serde_json::{json, Value};

        use crate::domain::auth::Actor;
        use crate::domain::{
            next_version, ApiKey, AuditEntry, Dataset, DatasetItem, Label, LabelMove, LabelName, Page, Project, Prompt,
            PromptName, PromptSummary, ProjectId, Version, VersionRef,
        };
        use crate::domain::names::LATEST;
        use crate::domain::jobs::{
            Evaluation, Gate, GateRule, ItemResult, Job, JobStatus, NewEvaluation, StoredResult,
            EVALUATION_JOB, OPTIMIZATION_JOB,
        };
        use crate::domain::optimization::{NewOptimization, Optimization, OptimizationState};
        use crate::store::rows::{
            parse_semver, AuditRow, DatasetItemRow, DatasetRow, EvaluationRow, OptimizationRow, OPTIMIZATION_SELECT, GateRow, JobRow, KeyRow, ResultRow, LabelMoveRow, LabelRow, ProjectRow, PromptRow,
            VersionRow, DATASET_SELECT, EVALUATION_SELECT, GATE_SELECT, JOB_COLUMNS, KEY_SELECT, RESULT_COLUMNS, LABEL_MOVE_SELECT, LABEL_SELECT, PROMPT_COLUMNS,
            VERSION_SELECT,
        };
        use crate::store::sql::like_pattern;
        use crate::store::{
            cursor, is_unique_violation, CreatedVersion, Invalidation, ItemBatches, NewKey, NewPrompt,
            NewVersion, PageKey, PageRequest, PromptFilter, PromptPatch, Store, StoreError,
            StoredKey, StoreResult,
        };

        type Conn = <$db as sqlx::Database>::Connection;

        #[derive(sqlx::FromRow)]
        struct PromptListRow {
            #[sqlx(flatten)]
            prompt: PromptRow,
            latest_version: Option<String>,
            latest_content_hash: Option<String>,
        }

        impl $store {
            async fn prompt_row(
                conn: &mut Conn,
                project: ProjectId,
                name: &PromptName,
                lock: bool,
            ) -> StoreResult<PromptRow> {
                let sql = format!(
                    "select {PROMPT_COLUMNS} from prompt p where p.project_id = $1 and p.name = $2{}",
                    if lock { Self::LOCK_ROW } else { "" }
                );
                sqlx::query_as::<_, PromptRow>(&sql)
                    .bind(project)
                    .bind(name.as_str())
                    .fetch_optional(&mut *conn)
                    .await?
                    .ok_or_else(|| StoreError::PromptNotFound(name.to_string()))
            }

            async fn latest_version(
                conn: &mut Conn,
                prompt_id: Uuid,
            ) -> StoreResult<Option<Version>> {
                let sql = format!("{VERSION_SELECT} where v.prompt_id = $1 order by v.seq desc limit 1");
                sqlx::query_as::<_, VersionRow>(&sql)
                    .bind(prompt_id)
                    .fetch_optional(&mut *conn)
                    .await?
                    .map(Version::try_from)
                    .transpose()
            }

            async fn version_id_of(
                conn: &mut Conn,
                prompt_id: Uuid,
                version: &semver::Version,
            ) -> StoreResult<Option<Uuid>> {
                Ok(sqlx::query_scalar::<_, Uuid>(
                    "select id from prompt_version where prompt_id = $1 and version = $2",
                )
                .bind(prompt_id)
                .bind(version.to_string())
                .fetch_optional(&mut *conn)
                .await?)
            }

            async fn current_label_target(
                conn: &mut Conn,
                prompt_id: Uuid,
                label: &str,
            ) -> StoreResult<Option<Uuid>> {
                Ok(sqlx::query_scalar::<_, Uuid>(
                    "select version_id from label where prompt_id = $1 and name = $2",
                )
                .bind(prompt_id)
                .bind(label)
                .fetch_optional(&mut *conn)
                .await?)
            }

            /// Records a write in the audit log, in the writing transaction.
            async fn audit(
                conn: &mut Conn,
                project: ProjectId,
                actor: &Actor,
                action: &str,
                target: &str,
                before: Option<Value>,
                after: Option<Value>,
            ) -> StoreResult<()> {
                sqlx::query(
                    "insert into audit_log (project_id, at, key_id, key_name, action, target, before, after) \
                     values ($1, $2, $3, $4, $5, $6, $7, $8)",
                )
                .bind(project)
                .bind(now())
                .bind(actor.key_id)
                .bind(&actor.key_name)
                .bind(action)
                .bind(target)
                .bind(before.map(Json))
                .bind(after.map(Json))
                .execute(&mut *conn)
                .await?;
                Ok(())
            }

            async fn semver_of(conn: &mut Conn, version_id: Option<Uuid>) -> StoreResult<Option<String>> {
                let Some(id) = version_id else { return Ok(None) };
                Ok(Some(
                    sqlx::query_scalar::<_, String>("select version from prompt_version where id = $1")
                        .bind(id)
                        .fetch_one(&mut *conn)
                        .await?,
                ))
            }

            /// Points `label` at `to` (or removes it when `to` is `None`),
            /// records the move and audits it as `action`. A move to where the
            /// label already points records nothing.
            #[allow(clippy::too_many_arguments)]
            async fn move_label(
                conn: &mut Conn,
                prompt: &PromptRow,
                label: &str,
                to: Option<Uuid>,
                undoes_move_id: Option<i64>,
                action: &str,
                actor: &Actor,
            ) -> StoreResult<()> {
                let prompt_id = prompt.id;
                let from = Self::current_label_target(conn, prompt_id, label).await?;
                if from == to {
                    return Ok(());
                }
                let now = now();
                match to {
                    Some(version_id) => {
                        sqlx::query(
                            "insert into label (prompt_id, name, version_id, updated_at, updated_by) \
                             values ($1, $2, $3, $4, $5) \
                             on conflict (prompt_id, name) do update set \
                             version_id = excluded.version_id, updated_at = excluded.updated_at, \
                             updated_by = excluded.updated_by",
                        )
                        .bind(prompt_id)
                        .bind(label)
                        .bind(version_id)
                        .bind(now)
                        .bind(&actor.key_name)
                        .execute(&mut *conn)
                        .await?;
                    }
                    None => {
                        sqlx::query("delete from label where prompt_id = $1 and name = $2")
                            .bind(prompt_id)
                            .bind(label)
                            .execute(&mut *conn)
                            .await?;
                    }
                }
                sqlx::query(
                    "insert into label_move \
                     (prompt_id, label, from_version_id, to_version_id, undoes_move_id, at, by) \
                     values ($1, $2, $3, $4, $5, $6, $7)",
                )
                .bind(prompt_id)
                .bind(label)
                .bind(from)
                .bind(to)
                .bind(undoes_move_id)
                .bind(now)
                .bind(&actor.key_name)
                .execute(&mut *conn)
                .await?;
                let before = Self::semver_of(conn, from).await?.map(|v| json!({"version": v}));
                let after = Self::semver_of(conn, to).await?.map(|v| json!({"version": v}));
                let target = format!("prompts/{}/labels/{label}", prompt.name);
                Self::audit(conn, prompt.project_id, actor, action, &target, before, after).await?;
                Self::notify(conn, Invalidation::Prompt(prompt_id)).await
            }

            /// Creates a version inside the caller's transaction (see `create_version`).
            async fn write_version(
                tx: &mut Conn,
                project: ProjectId,
                name: &PromptName,
                new: NewVersion,
                actor: &Actor,
            ) -> StoreResult<CreatedVersion> {
                // Locks the prompt row: concurrent posts to one prompt queue here.
                let prompt = Self::prompt_row(tx, project, name, true).await?;
                if prompt.archived_at.is_some() {
                    return Err(StoreError::PromptArchived(name.to_string()));
                }
                let latest = Self::latest_version(tx, prompt.id).await?;
                let latest_semver = latest.as_ref().map(|v| v.version.clone());
                if let Some(expected) = &new.expected_latest {
                    if *expected != latest_semver {
                        return Err(StoreError::VersionConflict(format!(
                            "expected_latest is {}, but the latest version is {}",
                            expected.as_ref().map_or("none".to_owned(), |v| v.to_string()),
                            latest_semver.as_ref().map_or("none".to_owned(), |v| v.to_string()),
                        )));
                    }
                }
                let content_hash = new.content.content_hash();

                let (version, created) = match latest {
                    Some(latest) if latest.content_hash == content_hash => (latest, false),
                    latest => {
                        let number = next_version(latest_semver.as_ref(), new.bump, new.version.as_ref())
                            .map_err(|e| StoreError::VersionConflict(e.to_string()))?;
                        let parent = match &new.parent {
                            Some(p) => Some((
                                Self::version_id_of(tx, prompt.id, p)
                                    .await?
                                    .ok_or_else(|| StoreError::ParentNotFound { prompt: name.to_string(), parent: p.to_string() })?,
                                p.clone(),
                            )),
                            None => latest.as_ref().map(|l| (l.id, l.version.clone())),
                        };
                        let seq = latest.as_ref().map_or(1, |l| l.seq + 1);
                        let version = Version {
                            id: Uuid::now_v7(),
                            prompt_id: prompt.id,
                            prompt_name: prompt.name.clone(),
                            version: number,
                            seq,
                            content: new.content,
                            variables: new.variables,
                            message: new.message,
                            metadata: new.metadata,
                            parent: parent.as_ref().map(|(_, v)| v.clone()),
                            content_hash,
                            created_at: now(),
                            created_by: Some(actor.key_name.clone()),
                        };
                        let content = &version.content;
                        sqlx::query(
                            "insert into prompt_version (id, prompt_id, version, seq, prompt_type, \
                             engine, template, messages, model_config, input_schema, output_schema, \
                             variables, message, metadata, parent_id, content_hash, created_at, created_by) \
                             values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)",
                        )
                        .bind(version.id)
                        .bind(version.prompt_id)
                        .bind(version.version.to_string())
                        .bind(version.seq)
                        .bind(content.prompt_type().as_str())
                        .bind(content.engine.as_str())
                        .bind(content.template())
                        .bind(content.messages().map(Json))
                        .bind(Json(&content.model_config))
                        .bind(content.input_schema.as_ref().map(Json))
                        .bind(content.output_schema.as_ref().map(Json))
                        .bind(Json(&version.variables))
                        .bind(&version.message)
                        .bind(Json(&version.metadata))
                        .bind(parent.map(|(id, _)| id))
                        .bind(&version.content_hash)
                        .bind(version.created_at)
                        .bind(&version.created_by)
                        .execute(&mut *tx)
                        .await
                        .map_err(|e| {
                            if is_unique_violation(&e) {
                                StoreError::VersionConflict("another version took this number first; retry".into())
                            } else {
                                e.into()
                            }
                        })?;
                        Self::audit(
                            tx,
                            project,
                            actor,
                            "version.create",
                            &format!("prompts/{}/versions/{}", prompt.name, version.version),
                            None,
                            Some(json!({"version": version.version.to_string(), "content_hash": version.content_hash})),
                        )
                        .await?;
                        // `latest` moved: caches keyed by this prompt are stale.
                        Self::notify(tx, Invalidation::Prompt(prompt.id)).await?;
                        (version, true)
                    }
                };
                for label in &new.labels {
                    Self::move_label(tx, &prompt, label.as_str(), Some(version.id), None, "label.set", actor).await?;
                }
                Ok(CreatedVersion { version, created })
            }

            /// Inserts a queued job; the caller's transaction adds what it works on.
            #[allow(clippy::too_many_arguments)]
            async fn queue_job(
                conn: &mut Conn,
                id: Uuid,
                project: ProjectId,
                kind: &str,
                payload: Value,
                max_attempts: i32,
                at: chrono::DateTime<chrono::Utc>,
                progress_total: i64,
                trace_parent: Option<&str>,
            ) -> StoreResult<()> {
                sqlx::query(
                    "insert into job (id, project_id, kind, payload, status, attempts, max_attempts, run_after, \
                     progress_done, progress_total, cancel_requested, created_at, updated_at, trace_parent) \
                     values ($1, $2, $3, $4, 'queued', 0, $5, $6, 0, $7, false, $6, $6, $8)",
                )
                .bind(id)
                .bind(project)
                .bind(kind)
                .bind(Json(payload))
                .bind(max_attempts)
                .bind(at)
                .bind(progress_total)
                .bind(trace_parent)
                .execute(&mut *conn)
                .await?;
                Ok(())
            }

            async fn label(conn: &mut Conn, prompt: &PromptRow, label: &str) -> StoreResult<Label> {
                let sql = format!("{LABEL_SELECT} where l.prompt_id = $1 and l.name = $2");
                sqlx::query_as::<_, LabelRow>(&sql)
                    .bind(prompt.id)
                    .bind(label)
                    .fetch_optional(&mut *conn)
                    .await?
                    .ok_or_else(|| StoreError::LabelNotFound { prompt: prompt.name.clone(), label: label.to_owned() })?
                    .try_into()
            }
        }

        crate::store::sql::observed_impl! {
        impl Store for $store as $backend {
            fn backend(&self) -> &'static str {
                $backend
            }

            fn pool_connections(&self) -> crate::store::PoolConnections {
                self.pool_stats()
            }

            async fn ping(&self) -> StoreResult<()> {
                sqlx::query("select 1").execute(self.reader()).await?;
                Ok(())
            }

            async fn count_unfinished_jobs(&self) -> StoreResult<Vec<crate::store::JobCount>> {
                let rows: Vec<(String, String, i64)> = sqlx::query_as(
                    "select kind, status, count(*) from job \
                     where status in ('queued', 'running') group by kind, status",
                )
                .fetch_all(self.reader())
                .await?;
                rows.into_iter()
                    .map(|(kind, status, count)| {
                        let status = JobStatus::parse(&status)
                            .ok_or_else(|| StoreError::Corrupt(format!("job status {status:?}")))?;
                        Ok(crate::store::JobCount { kind, status, count })
                    })
                    .collect()
            }

            async fn ensure_project(&self, name: &str) -> StoreResult<ProjectId> {
                sqlx::query(
                    "insert into project (id, name, created_at) values ($1, $2, $3) \
                     on conflict (name) do nothing",
                )
                .bind(Uuid::now_v7())
                .bind(name)
                .bind(now())
                .execute(self.writer())
                .await?;
                Ok(sqlx::query_scalar::<_, Uuid>("select id from project where name = $1")
                    .bind(name)
                    .fetch_one(self.writer())
                    .await?)
            }

            async fn insert_prompt(&self, project: ProjectId, new: NewPrompt, actor: &Actor) -> StoreResult<Prompt> {
                crate::store::annotate("promptreg.prompt", &new.name);
                let now = now();
                let prompt = Prompt {
                    id: Uuid::now_v7(),
                    project_id: project,
                    name: new.name.as_str().to_owned(),
                    description: new.description,
                    tags: new.tags,
                    archived: false,
                    created_at: now,
                    updated_at: now,
                };
                let mut tx = self.writer().begin().await?;
                sqlx::query(
                    "insert into prompt (id, project_id, name, description, tags, created_at, updated_at) \
                     values ($1, $2, $3, $4, $5, $6, $6)",
                )
                .bind(prompt.id)
                .bind(project)
                .bind(&prompt.name)
                .bind(&prompt.description)
                .bind(Json(&prompt.tags))
                .bind(now)
                .execute(&mut *tx)
                .await
                .map_err(|e| if is_unique_violation(&e) { StoreError::PromptExists(prompt.name.clone()) } else { e.into() })?;
                let after = json!({"name": prompt.name, "description": prompt.description, "tags": prompt.tags});
                Self::audit(&mut tx, project, actor, "prompt.create", &format!("prompts/{}", prompt.name), None, Some(after)).await?;
                tx.commit().await?;
                Ok(prompt)
            }

            async fn get_prompt(&self, project: ProjectId, name: &PromptName) -> StoreResult<PromptSummary> {
                crate::store::annotate("promptreg.prompt", &name);
                let filter = PromptFilter { name: Some(name.clone()), include_archived: true, ..PromptFilter::default() };
                let page = self.list_prompts(project, &filter, PageRequest { limit: 1, after: None }).await?;
                page.items.into_iter().next().ok_or_else(|| StoreError::PromptNotFound(name.to_string()))
            }

            async fn list_prompts(
                &self,
                project: ProjectId,
                filter: &PromptFilter,
                page: PageRequest
            ) -> StoreResult<Page<PromptSummary>> {
                let mut qb = sqlx::QueryBuilder::<$db>::new(format!(
                    "select {PROMPT_COLUMNS}, (select v.version from prompt_version v \
                     where v.prompt_id = p.id order by v.seq desc limit 1) as latest_version, \
                     (select v.content_hash from prompt_version v \
                     where v.prompt_id = p.id order by v.seq desc limit 1) as latest_content_hash \
                     from prompt p where p.project_id = "
                ));
                qb.push_bind(project);
                if !filter.include_archived {
                    qb.push(" and p.archived_at is null");
                }
                if let Some(name) = &filter.name {
                    qb.push(" and p.name = ").push_bind(name.as_str().to_owned());
                }
                if let Some(tag) = &filter.tag {
                    let (before, after) = Self::TAG_MATCH;
                    qb.push(" and ").push(before).push_bind(tag.clone()).push(after);
                }
                if let Some(query) = &filter.query {
                    let pattern = like_pattern(query);
                    qb.push(" and (lower(p.name) like ")
                        .push_bind(pattern.clone())
                        .push(" escape '\\' or lower(p.description) like ")
                        .push_bind(pattern)
                        .push(" escape '\\')");
                }
                if let Some(PageKey::Id(after)) = page.after {
                    qb.push(" and p.id < ").push_bind(after);
                }
                qb.push(" order by p.id desc limit ").push_bind(i64::from(page.limit) + 1);
                let mut rows: Vec<PromptListRow> = qb.build_query_as().fetch_all(self.reader()).await?;

                let next_cursor = (rows.len() > page.limit as usize).then(|| {
                    rows.truncate(page.limit as usize);
                    rows.last().map(|r| cursor::encode(PageKey::Id(r.prompt.id)))
                }).flatten();

                let mut labels: BTreeMap<Uuid, BTreeMap<String, semver::Version>> = BTreeMap::new();
                if !rows.is_empty() {
                    let mut qb = sqlx::QueryBuilder::<$db>::new(format!(
                        "{LABEL_SELECT} where l.prompt_id in ("
                    ));
                    let mut ids = qb.separated(", ");
                    for row in &rows {
                        ids.push_bind(row.prompt.id);
                    }
                    qb.push(")");
                    let label_rows: Vec<LabelRow> = qb.build_query_as().fetch_all(self.reader()).await?;
                    for row in label_rows {
                        labels.entry(row.prompt_id).or_default().insert(row.name, parse_semver(&row.version)?);
                    }
                }

                let items = rows
                    .into_iter()
                    .map(|row| {
                        Ok(PromptSummary {
                            labels: labels.remove(&row.prompt.id).unwrap_or_default(),
                            latest_version: row.latest_version.as_deref().map(parse_semver).transpose()?,
                            latest_content_hash: row.latest_content_hash,
                            prompt: row.prompt.into(),
                        })
                    })
                    .collect::<StoreResult<Vec<_>>>()?;
                Ok(Page { items, next_cursor })
            }

            async fn update_prompt(
                &self,
                project: ProjectId,
                name: &PromptName,
                patch: PromptPatch,
                actor: &Actor
            ) -> StoreResult<PromptSummary> {
                crate::store::annotate("promptreg.prompt", &name);
                let mut tx = self.writer().begin().await?;
                let row = Self::prompt_row(&mut tx, project, name, true).await?;
                let now = now();
                let archived_at = match patch.archived {
                    Some(true) => row.archived_at.or(Some(now)),
                    Some(false) => None,
                    None => row.archived_at,
                };
                let before = json!({"description": row.description, "tags": row.tags.0, "archived": row.archived_at.is_some()});
                let description = patch.description.unwrap_or(row.description);
                let tags = patch.tags.unwrap_or(row.tags.0);
                let after = json!({"description": description, "tags": tags, "archived": archived_at.is_some()});
                sqlx::query(
                    "update prompt set description = $1, tags = $2, archived_at = $3, updated_at = $4 \
                     where id = $5",
                )
                .bind(&description)
                .bind(Json(&tags))
                .bind(archived_at)
                .bind(now)
                .bind(row.id)
                .execute(&mut *tx)
                .await?;
                let action = match (patch.archived, row.archived_at.is_some()) {
                    (Some(true), false) => "prompt.archive",
                    (Some(false), true) => "prompt.restore",
                    _ => "prompt.update",
                };
                Self::audit(&mut tx, project, actor, action, &format!("prompts/{}", row.name), Some(before), Some(after)).await?;
                tx.commit().await?;
                self.get_prompt(project, name).await
            }

            async fn create_version(
                &self,
                project: ProjectId,
                name: &PromptName,
                new: NewVersion,
                actor: &Actor
            ) -> StoreResult<CreatedVersion> {
                crate::store::annotate("promptreg.prompt", &name);
                let mut tx = self.writer().begin().await?;
                let created = Self::write_version(&mut tx, project, name, new, actor).await?;
                tx.commit().await?;
                Ok(created)
            }

            async fn get_version(
                &self,
                project: ProjectId,
                name: &PromptName,
                reference: &VersionRef
            ) -> StoreResult<Version> {
                crate::store::annotate("promptreg.prompt", &name);
                match reference {
                    VersionRef::Label(label) => crate::store::annotate("promptreg.label", &label),
                    VersionRef::Exact(version) => crate::store::annotate("promptreg.version", &version),
                }
                let base = format!("{VERSION_SELECT} where p.project_id = $1 and p.name = $2");
                let (sql, key) = match reference {
                    VersionRef::Exact(v) => (format!("{base} and v.version = $3"), Some(v.to_string())),
                    VersionRef::Label(l) if l.as_str() == LATEST => {
                        (format!("{base} order by v.seq desc limit 1"), None)
                    }
                    VersionRef::Label(l) => (
                        format!(
                            "{base} and v.id = (select l.version_id from label l \
                             where l.prompt_id = p.id and l.name = $3)"
                        ),
                        Some(l.as_str().to_owned()),
                    ),
                };
                let mut conn = self.reader().acquire().await?;
                let mut query = sqlx::query_as::<_, VersionRow>(&sql).bind(project).bind(name.as_str());
                if let Some(key) = key {
                    query = query.bind(key);
                }
                let found = query.fetch_optional(&mut *conn).await?;
                match found {
                    Some(row) => row.try_into(),
                    None => {
                        // Tell a missing prompt from a missing version or label.
                        Self::prompt_row(&mut conn, project, name, false).await?;
                        Err(match reference {
                            VersionRef::Label(l) if l.as_str() != LATEST => {
                                StoreError::LabelNotFound { prompt: name.to_string(), label: l.to_string() }
                            }
                            other => StoreError::VersionNotFound { prompt: name.to_string(), reference: other.to_string() },
                        })
                    }
                }
            }

            async fn list_versions(
                &self,
                project: ProjectId,
                name: &PromptName,
                page: PageRequest
            ) -> StoreResult<Page<Version>> {
                crate::store::annotate("promptreg.prompt", &name);
                let mut conn = self.reader().acquire().await?;
                let prompt = Self::prompt_row(&mut conn, project, name, false).await?;
                let before = match page.after {
                    Some(PageKey::Int(seq)) => seq,
                    _ => i64::MAX,
                };
                let sql = format!(
                    "{VERSION_SELECT} where v.prompt_id = $1 and v.seq < $2 order by v.seq desc limit $3"
                );
                let rows: Vec<VersionRow> = sqlx::query_as(&sql)
                    .bind(prompt.id)
                    .bind(before)
                    .bind(i64::from(page.limit) + 1)
                    .fetch_all(&mut *conn)
                    .await?;
                let items = rows.into_iter().map(Version::try_from).collect::<StoreResult<Vec<_>>>()?;
                Ok(crate::store::page_from_overfetch(items, page.limit, |v| PageKey::Int(v.seq)))
            }

            async fn list_labels(&self, project: ProjectId, name: &PromptName) -> StoreResult<Vec<Label>> {
                crate::store::annotate("promptreg.prompt", &name);
                let mut conn = self.reader().acquire().await?;
                let prompt = Self::prompt_row(&mut conn, project, name, false).await?;
                let sql = format!("{LABEL_SELECT} where l.prompt_id = $1 order by l.name");
                let rows: Vec<LabelRow> = sqlx::query_as(&sql).bind(prompt.id).fetch_all(&mut *conn).await?;
                rows.into_iter().map(Label::try_from).collect()
            }

            async fn set_label(
                &self,
                project: ProjectId,
                name: &PromptName,
                label: &LabelName,
                version: &semver::Version,
                actor: &Actor
            ) -> StoreResult<Label> {
                crate::store::annotate("promptreg.prompt", &name);
                crate::store::annotate("promptreg.label", &label);
                let mut tx = self.writer().begin().await?;
                let prompt = Self::prompt_row(&mut tx, project, name, true).await?;
                let version_id = Self::version_id_of(&mut tx, prompt.id, version)
                    .await?
                    .ok_or_else(|| StoreError::VersionNotFound { prompt: name.to_string(), reference: version.to_string() })?;
                Self::move_label(&mut tx, &prompt, label.as_str(), Some(version_id), None, "label.set", actor).await?;
                let result = Self::label(&mut tx, &prompt, label.as_str()).await?;
                tx.commit().await?;
                Ok(result)
            }

            async fn delete_label(
                &self,
                project: ProjectId,
                name: &PromptName,
                label: &LabelName,
                actor: &Actor
            ) -> StoreResult<Label> {
                crate::store::annotate("promptreg.prompt", &name);
                crate::store::annotate("promptreg.label", &label);
                let mut tx = self.writer().begin().await?;
                let prompt = Self::prompt_row(&mut tx, project, name, true).await?;
                let removed = Self::label(&mut tx, &prompt, label.as_str()).await?;
                Self::move_label(&mut tx, &prompt, label.as_str(), None, None, "label.delete", actor).await?;
                tx.commit().await?;
                Ok(removed)
            }

            async fn rollback_label(
                &self,
                project: ProjectId,
                name: &PromptName,
                label: &LabelName,
                actor: &Actor
            ) -> StoreResult<Label> {
                crate::store::annotate("promptreg.prompt", &name);
                crate::store::annotate("promptreg.label", &label);
                let mut tx = self.writer().begin().await?;
                let prompt = Self::prompt_row(&mut tx, project, name, true).await?;
                // The newest move that is neither a rollback nor undone by one:
                // repeated rollbacks walk back through history, like undo.
                let undoable: Option<(i64, Option<Uuid>)> = sqlx::query_as(
                    "select m.id, m.from_version_id from label_move m \
                     where m.prompt_id = $1 and m.label = $2 and m.undoes_move_id is null \
                     and not exists (select 1 from label_move r where r.undoes_move_id = m.id) \
                     order by m.id desc limit 1",
                )
                .bind(prompt.id)
                .bind(label.as_str())
                .fetch_optional(&mut *tx)
                .await?;
                match undoable {
                    None if Self::current_label_target(&mut tx, prompt.id, label.as_str()).await?.is_none() => {
                        Err(StoreError::LabelNotFound { prompt: name.to_string(), label: label.to_string() })
                    }
                    None | Some((_, None)) => Err(StoreError::NoPreviousTarget { prompt: name.to_string(), label: label.to_string() }),
                    Some((move_id, Some(previous))) => {
                        Self::move_label(&mut tx, &prompt, label.as_str(), Some(previous), Some(move_id), "label.rollback", actor).await?;
                        let result = Self::label(&mut tx, &prompt, label.as_str()).await?;
                        tx.commit().await?;
                        Ok(result)
                    }
                }
            }

            async fn list_label_moves(
                &self,
                project: ProjectId,
                name: &PromptName,
                label: &LabelName,
                page: PageRequest
            ) -> StoreResult<Page<LabelMove>> {
                crate::store::annotate("promptreg.prompt", &name);
                crate::store::annotate("promptreg.label", &label);
                let mut conn = self.reader().acquire().await?;
                let prompt = Self::prompt_row(&mut conn, project, name, false).await?;
                let before = match page.after {
                    Some(PageKey::Int(id)) => id,
                    _ => i64::MAX,
                };
                let sql = format!(
                    "{LABEL_MOVE_SELECT} where m.prompt_id = $1 and m.label = $2 and m.id < $3 \
                     order by m.id desc limit $4"
                );
                let rows: Vec<LabelMoveRow> = sqlx::query_as(&sql)
                    .bind(prompt.id)
                    .bind(label.as_str())
                    .bind(before)
                    .bind(i64::from(page.limit) + 1)
                    .fetch_all(&mut *conn)
                    .await?;
                if rows.is_empty() && page.after.is_none() {
                    return Err(StoreError::LabelNotFound { prompt: name.to_string(), label: label.to_string() });
                }
                let items = rows.into_iter().map(LabelMove::try_from).collect::<StoreResult<Vec<_>>>()?;
                Ok(crate::store::page_from_overfetch(items, page.limit, |m| PageKey::Int(m.id)))
            }

            async fn insert_project(&self, name: &str, actor: &Actor) -> StoreResult<Project> {
                let project = Project { id: Uuid::now_v7(), name: name.to_owned(), created_at: now() };
                let mut tx = self.writer().begin().await?;
                sqlx::query("insert into project (id, name, created_at) values ($1, $2, $3)")
                    .bind(project.id)
                    .bind(&project.name)
                    .bind(project.created_at)
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| if is_unique_violation(&e) { StoreError::ProjectExists(name.to_owned()) } else { e.into() })?;
                Self::audit(&mut tx, project.id, actor, "project.create", &format!("projects/{name}"), None, Some(json!({"name": name}))).await?;
                tx.commit().await?;
                Ok(project)
            }

            async fn list_projects(&self) -> StoreResult<Vec<Project>> {
                let rows: Vec<ProjectRow> = sqlx::query_as("select id, name, created_at from project order by name")
                    .fetch_all(self.reader())
                    .await?;
                Ok(rows.into_iter().map(Project::from).collect())
            }

            async fn get_project(&self, name: &str) -> StoreResult<Project> {
                sqlx::query_as::<_, ProjectRow>("select id, name, created_at from project where name = $1")
                    .bind(name)
                    .fetch_optional(self.reader())
                    .await?
                    .map(Project::from)
                    .ok_or_else(|| StoreError::ProjectNotFound(name.to_owned()))
            }

            async fn insert_key(&self, project: ProjectId, new: NewKey, actor: &Actor) -> StoreResult<ApiKey> {
                let id = Uuid::now_v7();
                let mut tx = self.writer().begin().await?;
                sqlx::query(
                    "insert into api_key (id, project_id, name, scopes, prefix, secret_hash, created_at) \
                     values ($1, $2, $3, $4, $5, $6, $7)",
                )
                .bind(id)
                .bind(project)
                .bind(&new.name)
                .bind(Json(&new.scopes))
                .bind(&new.prefix)
                .bind(&new.secret_hash)
                .bind(now())
                .execute(&mut *tx)
                .await?;
                let key: ApiKey = sqlx::query_as::<_, KeyRow>(&format!("{KEY_SELECT} where k.id = $1"))
                    .bind(id)
                    .fetch_one(&mut *tx)
                    .await?
                    .into();
                let after = json!({"name": key.name, "scopes": key.scopes, "project": key.project, "prefix": key.prefix});
                Self::audit(&mut tx, project, actor, "key.create", &format!("keys/{id}"), None, Some(after)).await?;
                tx.commit().await?;
                Ok(key)
            }

            async fn find_keys_by_prefix(&self, prefix: &str) -> StoreResult<Vec<StoredKey>> {
                let rows: Vec<KeyRow> = sqlx::query_as(&format!("{KEY_SELECT} where k.prefix = $1"))
                    .bind(prefix)
                    .fetch_all(self.reader())
                    .await?;
                Ok(rows
                    .into_iter()
                    .map(|row| {
                        let secret_hash = row.secret_hash.clone();
                        StoredKey { key: row.into(), secret_hash }
                    })
                    .collect())
            }

            async fn list_keys(&self, project: ProjectId) -> StoreResult<Vec<ApiKey>> {
                let rows: Vec<KeyRow> = sqlx::query_as(&format!("{KEY_SELECT} where k.project_id = $1 order by k.id desc"))
                    .bind(project)
                    .fetch_all(self.reader())
                    .await?;
                Ok(rows.into_iter().map(ApiKey::from).collect())
            }

            async fn revoke_key(&self, project: ProjectId, id: Uuid, actor: &Actor) -> StoreResult<ApiKey> {
                let mut tx = self.writer().begin().await?;
                let row: KeyRow = sqlx::query_as(&format!("{KEY_SELECT} where k.id = $1 and k.project_id = $2"))
                    .bind(id)
                    .bind(project)
                    .fetch_optional(&mut *tx)
                    .await?
                    .ok_or(StoreError::KeyNotFound)?;
                if row.revoked_at.is_none() {
                    sqlx::query("update api_key set revoked_at = $1 where id = $2")
                        .bind(now())
                        .bind(id)
                        .execute(&mut *tx)
                        .await?;
                    let before = json!({"name": row.name, "revoked": false});
                    let after = json!({"name": row.name, "revoked": true});
                    Self::audit(&mut tx, project, actor, "key.revoke", &format!("keys/{id}"), Some(before), Some(after)).await?;
                    Self::notify(&mut tx, Invalidation::Key(id)).await?;
                }
                tx.commit().await?;
                let mut key = ApiKey::from(row);
                key.revoked = true;
                Ok(key)
            }

            async fn count_keys(&self) -> StoreResult<i64> {
                Ok(sqlx::query_scalar::<_, i64>("select count(*) from api_key").fetch_one(self.reader()).await?)
            }

            async fn insert_dataset(
                &self,
                project: ProjectId,
                name: &PromptName,
                description: &str,
                actor: &Actor
            ) -> StoreResult<Dataset> {
                let at = now();
                let dataset = Dataset {
                    id: Uuid::now_v7(),
                    project_id: project,
                    name: name.to_string(),
                    description: description.to_owned(),
                    item_count: 0,
                    created_at: at,
                    updated_at: at,
                };
                let mut tx = self.writer().begin().await?;
                sqlx::query(
                    "insert into dataset (id, project_id, name, description, item_count, created_at, updated_at) \
                     values ($1, $2, $3, $4, 0, $5, $5)",
                )
                .bind(dataset.id)
                .bind(project)
                .bind(&dataset.name)
                .bind(&dataset.description)
                .bind(at)
                .execute(&mut *tx)
                .await
                .map_err(|e| if is_unique_violation(&e) { StoreError::DatasetExists(dataset.name.clone()) } else { e.into() })?;
                Self::audit(&mut tx, project, actor, "dataset.create", &format!("datasets/{name}"), None,
                    Some(json!({"name": dataset.name, "description": dataset.description}))).await?;
                tx.commit().await?;
                Ok(dataset)
            }

            async fn get_dataset(&self, project: ProjectId, name: &str) -> StoreResult<Dataset> {
                sqlx::query_as::<_, DatasetRow>(&format!("{DATASET_SELECT} where d.project_id = $1 and d.name = $2"))
                    .bind(project)
                    .bind(name)
                    .fetch_optional(self.reader())
                    .await?
                    .map(Dataset::from)
                    .ok_or_else(|| StoreError::DatasetNotFound(name.to_owned()))
            }

            async fn list_datasets(&self, project: ProjectId, page: PageRequest) -> StoreResult<Page<Dataset>> {
                let before = match page.after {
                    Some(PageKey::Id(id)) => id,
                    _ => Uuid::max(),
                };
                let items: Vec<Dataset> = sqlx::query_as::<_, DatasetRow>(&format!(
                    "{DATASET_SELECT} where d.project_id = $1 and d.id < $2 order by d.id desc limit $3"
                ))
                .bind(project)
                .bind(before)
                .bind(i64::from(page.limit) + 1)
                .fetch_all(self.reader())
                .await?
                .into_iter()
                .map(Dataset::from)
                .collect();
                Ok(crate::store::page_from_overfetch(items, page.limit, |d| PageKey::Id(d.id)))
            }

            async fn append_items(
                &self,
                project: ProjectId,
                name: &str,
                items: ItemBatches<'_>,
                actor: &Actor
            ) -> StoreResult<Dataset> {
                crate::store::annotate("promptreg.dataset", &name);
                use futures::StreamExt;
                let mut items = items;
                let mut tx = self.writer().begin().await?;
                let dataset: Dataset = sqlx::query_as::<_, DatasetRow>(&format!(
                    "{DATASET_SELECT} where d.project_id = $1 and d.name = $2{}", Self::LOCK_ROW
                ))
                .bind(project)
                .bind(name)
                .fetch_optional(&mut *tx)
                .await?
                .map(Dataset::from)
                .ok_or_else(|| StoreError::DatasetNotFound(name.to_owned()))?;
                let mut seq = dataset.item_count;
                let at = now();
                while let Some(batch) = items.next().await {
                    let batch = batch.map_err(StoreError::InvalidItem)?;
                    // Bounded statements: SQLite allows at most 32,766 bound values.
                    for chunk in batch.chunks(1000) {
                        let mut qb = sqlx::QueryBuilder::<$db>::new(
                            "insert into dataset_item (id, dataset_id, seq, input, expected, metadata, created_at) ",
                        );
                        qb.push_values(chunk, |mut row, item| {
                            seq += 1;
                            row.push_bind(Uuid::now_v7())
                                .push_bind(dataset.id)
                                .push_bind(seq)
                                .push_bind(Json(item.input.clone()))
                                .push_bind(item.expected.clone().map(Json))
                                .push_bind(Json(item.metadata.clone()))
                                .push_bind(at);
                        });
                        qb.build().execute(&mut *tx).await?;
                    }
                }
                let added = seq - dataset.item_count;
                sqlx::query("update dataset set item_count = $1, updated_at = $2 where id = $3")
                    .bind(seq)
                    .bind(at)
                    .bind(dataset.id)
                    .execute(&mut *tx)
                    .await?;
                Self::audit(&mut tx, project, actor, "dataset.append_items", &format!("datasets/{name}"),
                    Some(json!({"item_count": dataset.item_count})), Some(json!({"item_count": seq, "added": added}))).await?;
                tx.commit().await?;
                Ok(Dataset { item_count: seq, updated_at: at, ..dataset })
            }

            async fn insert_evaluation(&self, project: ProjectId, new: NewEvaluation, actor: &Actor) -> StoreResult<Evaluation> {
                let at = now();
                let (id, job_id) = (Uuid::now_v7(), Uuid::now_v7());
                let mut tx = self.writer().begin().await?;
                Self::queue_job(&mut tx, job_id, project, EVALUATION_JOB, json!({"evaluation_id": id}),
                    new.max_attempts, at, new.item_count, new.trace_parent.as_deref()).await?;
                sqlx::query(
                    "insert into evaluation (id, project_id, job_id, prompt_id, version_id, dataset_id, provider, \
                     model, params, metrics, concurrency, item_count, created_at, created_by) \
                     values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
                )
                .bind(id)
                .bind(project)
                .bind(job_id)
                .bind(new.prompt_id)
                .bind(new.version_id)
                .bind(new.dataset_id)
                .bind(&new.provider)
                .bind(&new.model)
                .bind(Json(&new.params))
                .bind(Json(&new.metrics))
                .bind(new.concurrency)
                .bind(new.item_count)
                .bind(at)
                .bind(&actor.key_name)
                .execute(&mut *tx)
                .await?;
                Self::audit(&mut tx, project, actor, "evaluation.create", &format!("evaluations/{id}"), None,
                    Some(json!({"job_id": job_id, "provider": new.provider, "model": new.model}))).await?;
                tx.commit().await?;
                self.get_evaluation(project, id).await
            }

            async fn get_evaluation(&self, project: ProjectId, id: Uuid) -> StoreResult<Evaluation> {
                let row: EvaluationRow = sqlx::query_as(&format!("{EVALUATION_SELECT} where e.id = $1 and e.project_id = $2"))
                    .bind(id)
                    .bind(project)
                    .fetch_optional(self.reader())
                    .await?
                    .ok_or(StoreError::EvaluationNotFound)?;
                let job = self.get_job(project, row.job_id).await?;
                row.with_job(job)
            }

            async fn get_evaluation_of_job(&self, job_id: Uuid) -> StoreResult<Evaluation> {
                let row: EvaluationRow = sqlx::query_as(&format!("{EVALUATION_SELECT} where e.job_id = $1"))
                    .bind(job_id)
                    .fetch_optional(self.reader())
                    .await?
                    .ok_or(StoreError::EvaluationNotFound)?;
                let job = self.get_job(row.project_id, row.job_id).await?;
                row.with_job(job)
            }

            async fn insert_optimization(&self, project: ProjectId, new: NewOptimization, actor: &Actor) -> StoreResult<Optimization> {
                let at = now();
                let (id, job_id) = (Uuid::now_v7(), Uuid::now_v7());
                let mut tx = self.writer().begin().await?;
                Self::queue_job(&mut tx, job_id, project, OPTIMIZATION_JOB, json!({"optimization_id": id}),
                    new.max_attempts, at, i64::from(new.spec.max_iterations), new.trace_parent.as_deref()).await?;
                sqlx::query(
                    "insert into optimization (id, project_id, job_id, prompt_id, version_id, dataset_id, \
                     item_count, spec, state, created_at, created_by) \
                     values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
                )
                .bind(id)
                .bind(project)
                .bind(job_id)
                .bind(new.prompt_id)
                .bind(new.version_id)
                .bind(new.dataset_id)
                .bind(new.item_count)
                .bind(Json(&new.spec))
                .bind(Json(OptimizationState::default()))
                .bind(at)
                .bind(&actor.key_name)
                .execute(&mut *tx)
                .await?;
                Self::audit(&mut tx, project, actor, "optimization.create", &format!("optimizations/{id}"), None,
                    Some(json!({"job_id": job_id, "strategy": new.spec.strategy.as_str()}))).await?;
                tx.commit().await?;
                self.get_optimization(project, id).await
            }

            async fn get_optimization(&self, project: ProjectId, id: Uuid) -> StoreResult<Optimization> {
                let row: OptimizationRow = sqlx::query_as(&format!("{OPTIMIZATION_SELECT} where o.id = $1 and o.project_id = $2"))
                    .bind(id)
                    .bind(project)
                    .fetch_optional(self.reader())
                    .await?
                    .ok_or(StoreError::OptimizationNotFound)?;
                let job = self.get_job(project, row.job_id).await?;
                row.with_job(job)
            }

            async fn get_optimization_of_job(&self, job_id: Uuid) -> StoreResult<Optimization> {
                let row: OptimizationRow = sqlx::query_as(&format!("{OPTIMIZATION_SELECT} where o.job_id = $1"))
                    .bind(job_id)
                    .fetch_optional(self.reader())
                    .await?
                    .ok_or(StoreError::OptimizationNotFound)?;
                let job = self.get_job(row.project_id, row.job_id).await?;
                row.with_job(job)
            }

            async fn save_optimization_state(&self, id: Uuid, owner: &str, state: &OptimizationState, progress_done: i64) -> StoreResult<()> {
                let at = now();
                let mut tx = self.writer().begin().await?;
                let saved = sqlx::query(
                    "update optimization set state = $1 where id = $2 and job_id in \
                     (select id from job where lease_owner = $3 and status = 'running')",
                )
                .bind(Json(state))
                .bind(id)
                .bind(owner)
                .execute(&mut *tx)
                .await?;
                if saved.rows_affected() == 0 {
                    return Err(StoreError::JobNotHeld);
                }
                sqlx::query("update job set progress_done = $1, updated_at = $2 where id = (select job_id from optimization where id = $3)")
                    .bind(progress_done)
                    .bind(at)
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(())
            }

            async fn finish_optimization(
                &self,
                id: Uuid,
                owner: &str,
                state: &OptimizationState,
                result: Option<(ProjectId, PromptName, NewVersion, Actor)>
            ) -> StoreResult<Option<semver::Version>> {
                let mut tx = self.writer().begin().await?;
                // Locks the job: a cancel either came first (no version) or
                // waits for this and finds the result written.
                let cancel_requested = sqlx::query_scalar::<_, bool>(&format!(
                    "select cancel_requested from job where id = (select job_id from optimization where id = $1) \
                     and lease_owner = $2 and status = 'running'{}", Self::LOCK_ROW
                ))
                .bind(id)
                .bind(owner)
                .fetch_optional(&mut *tx)
                .await?;
                if cancel_requested != Some(false) {
                    return Err(StoreError::JobNotHeld);
                }
                let earlier = sqlx::query_scalar::<_, Option<Uuid>>(&format!(
                    "select result_version_id from optimization where id = $1{}", Self::LOCK_ROW
                ))
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?
                .ok_or(StoreError::OptimizationNotFound)?;
                let version = match (earlier, result) {
                    (Some(earlier), _) => Self::semver_of(&mut tx, Some(earlier)).await?,
                    (None, None) => None,
                    (None, Some((project, name, new, actor))) => {
                        crate::store::annotate("promptreg.prompt", &name);
                        let created = Self::write_version(&mut tx, project, &name, new, &actor).await?;
                        sqlx::query("update optimization set result_version_id = $1 where id = $2")
                            .bind(created.version.id)
                            .bind(id)
                            .execute(&mut *tx)
                            .await?;
                        Some(created.version.version.to_string())
                    }
                };
                sqlx::query("update optimization set state = $1 where id = $2")
                    .bind(Json(state))
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                version.as_deref().map(parse_semver).transpose()
            }

            async fn find_passing_candidate(&self, version_id: Uuid, dataset_id: Uuid) -> StoreResult<Option<Evaluation>> {
                let row: Option<EvaluationRow> = sqlx::query_as(&format!(
                    "{EVALUATION_SELECT} join job j on j.id = e.job_id \
                     where e.version_id = $1 and e.dataset_id = $2 and j.status = 'succeeded' \
                     order by j.finished_at desc limit 1"
                ))
                .bind(version_id)
                .bind(dataset_id)
                .fetch_optional(self.reader())
                .await?;
                match row {
                    None => Ok(None),
                    Some(row) => {
                        let job = self.get_job(row.project_id, row.job_id).await?;
                        row.with_job(job).map(Some)
                    }
                }
            }

            async fn list_items_for_run(&self, dataset_id: Uuid, after: i64, up_to: i64, limit: u32) -> StoreResult<Vec<DatasetItem>> {
                let rows: Vec<DatasetItemRow> = sqlx::query_as(
                    "select id, seq, input, expected, metadata, created_at from dataset_item \
                     where dataset_id = $1 and seq > $2 and seq <= $3 order by seq limit $4",
                )
                .bind(dataset_id)
                .bind(after)
                .bind(up_to)
                .bind(i64::from(limit))
                .fetch_all(self.reader())
                .await?;
                Ok(rows.into_iter().map(DatasetItem::from).collect())
            }

            async fn evaluated_items(&self, evaluation_id: Uuid) -> StoreResult<Vec<Uuid>> {
                Ok(sqlx::query_scalar::<_, Uuid>("select item_id from evaluation_result where evaluation_id = $1")
                    .bind(evaluation_id)
                    .fetch_all(self.reader())
                    .await?)
            }

            async fn insert_results(&self, job_id: Uuid, evaluation_id: Uuid, results: &[ItemResult]) -> StoreResult<u64> {
                if results.is_empty() {
                    return Ok(0);
                }
                let at = now();
                let mut tx = self.writer().begin().await?;
                let mut inserted = 0;
                // Bounded statements: SQLite allows at most 32,766 bound values.
                for chunk in results.chunks(500) {
                    let mut qb = sqlx::QueryBuilder::<$db>::new(
                        "insert into evaluation_result (evaluation_id, item_id, item_seq, output, scores, details, \
                         error, latency_ms, input_tokens, output_tokens, cost_usd, created_at) ",
                    );
                    qb.push_values(chunk, |mut row, result| {
                        row.push_bind(evaluation_id)
                            .push_bind(result.item_id)
                            .push_bind(result.item_seq)
                            .push_bind(result.output.clone())
                            .push_bind(Json(result.scores.clone()))
                            .push_bind(Json(result.details.clone()))
                            .push_bind(result.error.clone())
                            .push_bind(result.latency_ms)
                            .push_bind(result.input_tokens)
                            .push_bind(result.output_tokens)
                            .push_bind(result.cost_usd)
                            .push_bind(at);
                    });
                    qb.push(" on conflict (evaluation_id, item_id) do nothing");
                    inserted += qb.build().execute(&mut *tx).await?.rows_affected();
                }
                if inserted > 0 {
                    sqlx::query("update job set progress_done = progress_done + $1, updated_at = $2 where id = $3")
                        .bind(i64::try_from(inserted).unwrap_or(i64::MAX))
                        .bind(at)
                        .bind(job_id)
                        .execute(&mut *tx)
                        .await?;
                }
                tx.commit().await?;
                Ok(inserted)
            }

            async fn list_results(&self, evaluation_id: Uuid, after: i64, limit: u32) -> StoreResult<Vec<StoredResult>> {
                let rows: Vec<ResultRow> = sqlx::query_as(&format!(
                    "select {RESULT_COLUMNS} from evaluation_result where evaluation_id = $1 and id > $2 order by id limit $3"
                ))
                .bind(evaluation_id)
                .bind(after)
                .bind(i64::from(limit))
                .fetch_all(self.reader())
                .await?;
                Ok(rows.into_iter().map(StoredResult::from).collect())
            }

            async fn get_job(&self, project: ProjectId, id: Uuid) -> StoreResult<Job> {
                let row: JobRow = sqlx::query_as(&format!("select {JOB_COLUMNS} from job where id = $1 and project_id = $2"))
                    .bind(id)
                    .bind(project)
                    .fetch_optional(self.reader())
                    .await?
                    .ok_or(StoreError::JobNotFound)?;
                Job::try_from(row)
            }

            async fn claim_job(&self, owner: &str, lease: std::time::Duration) -> StoreResult<Option<Job>> {
                let at = now();
                let expires = at + chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::seconds(30));
                let row: Option<JobRow> = sqlx::query_as(&format!(
                    "update job set status = 'running', lease_owner = $1, lease_expires_at = $2, \
                     attempts = attempts + 1, started_at = coalesce(started_at, $3), updated_at = $3 \
                     where id = (select id from job \
                         where (status = 'queued' and run_after <= $3) \
                            or (status = 'running' and lease_expires_at < $3) \
                         order by run_after limit 1{}) \
                     returning {JOB_COLUMNS}",
                    Self::SKIP_LOCKED
                ))
                .bind(owner)
                .bind(expires)
                .bind(at)
                .fetch_optional(self.writer())
                .await?;
                row.map(Job::try_from).transpose()
            }

            async fn heartbeat(&self, job_id: Uuid, owner: &str, lease: std::time::Duration) -> StoreResult<Option<bool>> {
                let at = now();
                let expires = at + chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::seconds(30));
                Ok(sqlx::query_scalar::<_, bool>(
                    "update job set lease_expires_at = $1, updated_at = $2 \
                     where id = $3 and lease_owner = $4 and status = 'running' returning cancel_requested",
                )
                .bind(expires)
                .bind(at)
                .bind(job_id)
                .bind(owner)
                .fetch_optional(self.writer())
                .await?)
            }

            async fn complete_job(&self, job_id: Uuid, owner: &str, status: JobStatus, error: Option<&str>) -> StoreResult<bool> {
                let at = now();
                let done = sqlx::query(
                    "update job set status = $1, error = $2, finished_at = $3, updated_at = $3, \
                     lease_owner = null, lease_expires_at = null \
                     where id = $4 and lease_owner = $5 and status = 'running'",
                )
                .bind(status.as_str())
                .bind(error)
                .bind(at)
                .bind(job_id)
                .bind(owner)
                .execute(self.writer())
                .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn retry_job(&self, job_id: Uuid, owner: &str, run_after: chrono::DateTime<chrono::Utc>, error: &str) -> StoreResult<bool> {
                let done = sqlx::query(
                    "update job set status = 'queued', error = $1, run_after = $2, updated_at = $3, \
                     lease_owner = null, lease_expires_at = null \
                     where id = $4 and lease_owner = $5 and status = 'running'",
                )
                .bind(error)
                .bind(run_after)
                .bind(now())
                .bind(job_id)
                .bind(owner)
                .execute(self.writer())
                .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn cancel_job(&self, project: ProjectId, id: Uuid, actor: &Actor) -> StoreResult<Job> {
                let at = now();
                let mut tx = self.writer().begin().await?;
                let row: JobRow = sqlx::query_as(&format!(
                    "select {JOB_COLUMNS} from job where id = $1 and project_id = $2{}", Self::LOCK_ROW
                ))
                .bind(id)
                .bind(project)
                .fetch_optional(&mut *tx)
                .await?
                .ok_or(StoreError::JobNotFound)?;
                let job = Job::try_from(row)?;
                if job.status.is_final() {
                    return Err(StoreError::JobFinished(job.status));
                }
                if job.status == JobStatus::Queued {
                    sqlx::query("update job set status = 'cancelled', cancel_requested = true, finished_at = $1, updated_at = $1 where id = $2")
                        .bind(at)
                        .bind(id)
                        .execute(&mut *tx)
                        .await?;
                } else {
                    // An optimization that wrote its result version is done:
                    // cancelling it now would leave that version behind.
                    let asked = sqlx::query(
                        "update job set cancel_requested = true, updated_at = $1 where id = $2 \
                         and not exists (select 1 from optimization where job_id = $2 and result_version_id is not null)",
                    )
                    .bind(at)
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                    if asked.rows_affected() == 0 {
                        return Err(StoreError::JobFinished(JobStatus::Succeeded));
                    }
                }
                Self::audit(&mut tx, project, actor, "job.cancel", &format!("jobs/{id}"),
                    Some(json!({"status": job.status.as_str()})), None).await?;
                tx.commit().await?;
                self.get_job(project, id).await
            }

            async fn put_gate(
                &self,
                project: ProjectId,
                prompt: &PromptName,
                label: &LabelName,
                dataset: &str,
                rules: &[GateRule],
                actor: &Actor
            ) -> StoreResult<Gate> {
                let at = now();
                let mut tx = self.writer().begin().await?;
                let prompt_row = Self::prompt_row(&mut tx, project, prompt, false).await?;
                let dataset_id: Uuid = sqlx::query_scalar("select id from dataset where project_id = $1 and name = $2")
                    .bind(project)
                    .bind(dataset)
                    .fetch_optional(&mut *tx)
                    .await?
                    .ok_or_else(|| StoreError::DatasetNotFound(dataset.to_owned()))?;
                sqlx::query(
                    "insert into gate (prompt_id, label, dataset_id, rules, created_at, updated_at) \
                     values ($1, $2, $3, $4, $5, $5) \
                     on conflict (prompt_id, label) do update set dataset_id = $3, rules = $4, updated_at = $5",
                )
                .bind(prompt_row.id)
                .bind(label.as_str())
                .bind(dataset_id)
                .bind(Json(rules))
                .bind(at)
                .execute(&mut *tx)
                .await?;
                Self::audit(&mut tx, project, actor, "gate.put", &format!("prompts/{prompt}/gates/{label}"), None,
                    Some(json!({"dataset": dataset, "rules": rules}))).await?;
                tx.commit().await?;
                self.find_gate(project, prompt, label.as_str()).await?.ok_or_else(|| StoreError::PromptNotFound(prompt.to_string()))
            }

            async fn find_gate(&self, project: ProjectId, prompt: &PromptName, label: &str) -> StoreResult<Option<Gate>> {
                let row: Option<GateRow> = sqlx::query_as(&format!(
                    "{GATE_SELECT} join prompt p on p.id = g.prompt_id \
                     where p.project_id = $1 and p.name = $2 and g.label = $3"
                ))
                .bind(project)
                .bind(prompt.as_str())
                .bind(label)
                .fetch_optional(self.reader())
                .await?;
                Ok(row.map(Gate::from))
            }

            async fn list_gates(&self, project: ProjectId, prompt: &PromptName) -> StoreResult<Vec<Gate>> {
                let mut conn = self.reader().acquire().await?;
                Self::prompt_row(&mut conn, project, prompt, false).await?;
                let rows: Vec<GateRow> = sqlx::query_as(&format!(
                    "{GATE_SELECT} join prompt p on p.id = g.prompt_id \
                     where p.project_id = $1 and p.name = $2 order by g.label"
                ))
                .bind(project)
                .bind(prompt.as_str())
                .fetch_all(&mut *conn)
                .await?;
                Ok(rows.into_iter().map(Gate::from).collect())
            }

            async fn delete_gate(&self, project: ProjectId, prompt: &PromptName, label: &LabelName, actor: &Actor) -> StoreResult<bool> {
                let mut tx = self.writer().begin().await?;
                let prompt_row = Self::prompt_row(&mut tx, project, prompt, false).await?;
                let deleted = sqlx::query("delete from gate where prompt_id = $1 and label = $2")
                    .bind(prompt_row.id)
                    .bind(label.as_str())
                    .execute(&mut *tx)
                    .await?
                    .rows_affected() == 1;
                if deleted {
                    Self::audit(&mut tx, project, actor, "gate.delete", &format!("prompts/{prompt}/gates/{label}"), None, None).await?;
                }
                tx.commit().await?;
                Ok(deleted)
            }

            async fn list_items(&self, project: ProjectId, name: &str, page: PageRequest) -> StoreResult<Page<DatasetItem>> {
                let dataset = self.get_dataset(project, name).await?;
                let after = match page.after {
                    Some(PageKey::Int(seq)) => seq,
                    _ => 0,
                };
                let items: Vec<DatasetItem> = sqlx::query_as::<_, DatasetItemRow>(
                    "select id, seq, input, expected, metadata, created_at from dataset_item \
                     where dataset_id = $1 and seq > $2 order by seq limit $3",
                )
                .bind(dataset.id)
                .bind(after)
                .bind(i64::from(page.limit) + 1)
                .fetch_all(self.reader())
                .await?
                .into_iter()
                .map(DatasetItem::from)
                .collect();
                Ok(crate::store::page_from_overfetch(items, page.limit, |i| PageKey::Int(i.seq)))
            }

            async fn list_audit(&self, project: ProjectId, page: PageRequest) -> StoreResult<Page<AuditEntry>> {
                let before = match page.after {
                    Some(PageKey::Int(id)) => id,
                    _ => i64::MAX,
                };
                let rows: Vec<AuditRow> = sqlx::query_as(
                    "select id, at, key_id, key_name, action, target, before, after from audit_log \
                     where project_id = $1 and id < $2 order by id desc limit $3",
                )
                .bind(project)
                .bind(before)
                .bind(i64::from(page.limit) + 1)
                .fetch_all(self.reader())
                .await?;
                let items: Vec<AuditEntry> = rows.into_iter().map(AuditEntry::from).collect();
                Ok(crate::store::page_from_overfetch(items, page.limit, |e| PageKey::Int(e.id)))
            }

            async fn subscribe_invalidations(
                &self
            ) -> StoreResult<Option<tokio::sync::mpsc::Receiver<Invalidation>>> {
                self.listen().await
            }
        }
        }
    };
}

/// The `Store` impl with every use-case timed and traced: each method body
/// runs inside [`crate::store::observe`], named after the method, so the
/// metric's `operation` label and the span name can never drift from the
/// code. Signatures take plain `name: Type` arguments, no trailing comma.
macro_rules! observed_impl {
    (
        impl $trait:ident for $store:ty as $system:literal {
            $(fn $sync:ident(&$sync_self:ident) -> $sync_ret:ty $sync_body:block)*
            $(async fn $name:ident(&$this:ident $(, $arg:ident: $arg_ty:ty)*) -> $ret:ty $body:block)*
        }
    ) => {
        #[async_trait]
        impl $trait for $store {
            // `self` is taken from the input, not written here: macro
            // hygiene would make it a different `self` from the bodies'.
            $(fn $sync(&$sync_self) -> $sync_ret $sync_body)*
            $(
                async fn $name(&$this $(, $arg: $arg_ty)*) -> $ret {
                    crate::store::observe::<$ret, _>(stringify!($name), $system, async move $body).await
                }
            )*
        }
    };
}

pub(crate) use {impl_store, observed_impl};

#[cfg(test)]
mod tests {
    use super::like_pattern;

    #[test]
    fn like_patterns_escape_wildcards_and_lower_case() {
        assert_eq!(like_pattern("Greet"), "%greet%");
        assert_eq!(like_pattern("50%_a\\b"), "%50\\%\\_a\\\\b%");
    }
}
