//! The steps more than one resource's use-cases take, inside the caller's
//! transaction: `impl_shared!` adds them to a backend as inherent methods.
//! Creating a version and moving a label (prompts, and an optimization's
//! result), auditing a write (every write), reading a prompt's row (prompts,
//! gates), queueing a job and reading what it runs with it (evaluations,
//! optimizations).

macro_rules! impl_shared {
    ($store:ident, $db:ty) => {
        use serde_json::{json, Value};
        use sqlx::types::Json;
        use uuid::Uuid;

        use crate::domain::auth::Actor;
        use crate::domain::{next_version, ProjectId, PromptName, Version};
        use crate::domain::jobs::Job;
        use crate::store::rows::{JobOwner, PromptRow, VersionRow, JOB_COLUMNS, PROMPT_COLUMNS, VERSION_SELECT};
        use crate::store::{
            is_unique_violation, now, CreatedVersion, Invalidation, JobStore, NewVersion, StoreError,
            StoreResult,
        };

        use super::$store;

        type Conn = <$db as sqlx::Database>::Connection;

        impl $store {
            /// The row `select` finds with a project (`$1`) and a `key` within
            /// it (`$2`), locked until the transaction ends when `lock`. Text
            /// keys are owned: SQLite binds a `&str` only for its own lifetime.
            pub(super) async fn find_in_project<R, K>(
                conn: &mut Conn,
                select: &str,
                project: ProjectId,
                key: K,
                lock: bool,
            ) -> StoreResult<Option<R>>
            where
                R: for<'r> sqlx::FromRow<'r, <$db as sqlx::Database>::Row> + Send + Unpin,
                K: for<'q> sqlx::Encode<'q, $db> + sqlx::Type<$db> + Send,
            {
                let sql = format!("{select}{}", if lock { Self::LOCK_ROW } else { "" });
                Ok(sqlx::query_as(&sql).bind(project).bind(key).fetch_optional(&mut *conn).await?)
            }

            pub(super) async fn prompt_row(
                conn: &mut Conn,
                project: ProjectId,
                name: &PromptName,
                lock: bool,
            ) -> StoreResult<PromptRow> {
                let select = format!("select {PROMPT_COLUMNS} from prompt p where p.project_id = $1 and p.name = $2");
                Self::find_in_project(conn, &select, project, name.to_string(), lock)
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

            pub(super) async fn version_id_of(
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

            pub(super) async fn current_label_target(
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
            pub(super) async fn audit(
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

            pub(super) async fn semver_of(conn: &mut Conn, version_id: Option<Uuid>) -> StoreResult<Option<String>> {
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
            pub(super) async fn move_label(
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
                let from_semver = Self::semver_of(conn, from).await?;
                let to_semver = Self::semver_of(conn, to).await?;
                let before = from_semver.as_ref().map(|v| json!({"version": v}));
                let after = to_semver.as_ref().map(|v| json!({"version": v}));
                let target = format!("prompts/{}/labels/{label}", prompt.name);
                Self::audit(conn, prompt.project_id, actor, action, &target, before, after).await?;
                let event = match to {
                    Some(_) => crate::domain::webhooks::OutboxEvent::new(
                        crate::domain::webhooks::LABEL_MOVED,
                        Some(&prompt.name),
                        json!({"prompt": prompt.name, "label": label, "from": from_semver, "to": to_semver,
                               "by": actor.key_name, "rollback": undoes_move_id.is_some()}),
                    ),
                    None => crate::domain::webhooks::OutboxEvent::new(
                        crate::domain::webhooks::LABEL_DELETED,
                        Some(&prompt.name),
                        json!({"prompt": prompt.name, "label": label, "from": from_semver, "by": actor.key_name}),
                    ),
                };
                Self::emit(conn, prompt.project_id, &event).await?;
                Self::notify(conn, Invalidation::Prompt(prompt_id)).await
            }

            /// Creates a version inside the caller's transaction (see `create_version`).
            pub(super) async fn write_version(
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
                        let event = crate::domain::webhooks::OutboxEvent::new(
                            crate::domain::webhooks::VERSION_CREATED,
                            Some(&prompt.name),
                            json!({"prompt": prompt.name, "version": version.version.to_string(), "seq": version.seq,
                                   "id": version.id, "content_hash": version.content_hash, "message": version.message,
                                   "parent": version.parent.as_ref().map(ToString::to_string),
                                   "labels": new.labels.iter().map(|l| l.as_str()).collect::<Vec<_>>(),
                                   "by": actor.key_name}),
                        );
                        Self::emit(tx, project, &event).await?;
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

            /// Writes `event` to the outbox inside the caller's transaction: the
            /// event and one delivery per enabled endpoint of `project` that
            /// subscribed to it. Nothing when no endpoint wants it. A change
            /// that rolls back takes its event with it.
            pub(super) async fn emit(
                conn: &mut Conn,
                project: ProjectId,
                event: &crate::domain::webhooks::OutboxEvent,
            ) -> StoreResult<()> {
                let endpoints: Vec<(Uuid, Json<Vec<String>>, Json<Vec<String>>)> = sqlx::query_as(
                    "select id, events, prompts from webhook where project_id = $1 and enabled",
                )
                .bind(project)
                .fetch_all(&mut *conn)
                .await?;
                let subscribed: Vec<Uuid> = endpoints
                    .into_iter()
                    .filter(|(_, events, prompts)| {
                        crate::domain::webhooks::subscribed(events, prompts, event.kind, event.prompt.as_deref())
                    })
                    .map(|(id, _, _)| id)
                    .collect();
                if subscribed.is_empty() {
                    return Ok(());
                }
                let event_id = Self::insert_event(conn, project, event).await?;
                for webhook in subscribed {
                    Self::queue_delivery(conn, webhook, event_id).await?;
                }
                Ok(())
            }

            /// Inserts a queued job; the caller's transaction adds what it works on.
            #[allow(clippy::too_many_arguments)]
            pub(super) async fn queue_job(
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

            /// Evaluations or optimizations (`R`) joined with the jobs that run
            /// them, in their order, reading every job in one query.
            pub(super) async fn with_jobs<R: JobOwner>(&self, rows: Vec<R>) -> StoreResult<Vec<R::Joined>> {
                if rows.is_empty() {
                    return Ok(Vec::new());
                }
                let mut query = sqlx::QueryBuilder::<$db>::new(format!("select {JOB_COLUMNS} from job where id in ("));
                let mut ids = query.separated(", ");
                for row in &rows {
                    ids.push_bind(row.job_key().1);
                }
                query.push(")");
                let jobs: Vec<Job> = query.build_query_as().fetch_all(self.reader()).await?;
                let mut jobs: std::collections::HashMap<Uuid, Job> = jobs.into_iter().map(|job| (job.id, job)).collect();
                rows.into_iter()
                    .map(|row| {
                        let job_id = row.job_key().1;
                        let job = jobs.remove(&job_id).ok_or_else(|| StoreError::Corrupt(format!("job {job_id} is missing")))?;
                        row.with_job(job)
                    })
                    .collect()
            }

            /// The first evaluation or optimization (`R`) that `R::SELECT`
            /// followed by `rest` finds, with `keys` bound to `$1`, `$2`, …,
            /// joined with the job that runs it.
            pub(super) async fn find_with_job<R>(&self, rest: &str, keys: &[Uuid]) -> StoreResult<Option<R::Joined>>
            where
                R: JobOwner + for<'r> sqlx::FromRow<'r, <$db as sqlx::Database>::Row> + Send + Unpin,
            {
                let sql = format!("{} {rest}", R::SELECT);
                let mut query = sqlx::query_as::<_, R>(&sql);
                for key in keys {
                    query = query.bind(*key);
                }
                let Some(row) = query.fetch_optional(self.reader()).await? else {
                    return Ok(None);
                };
                let (project, job_id) = row.job_key();
                let job = self.get_job(project, job_id).await?;
                row.with_job(job).map(Some)
            }
        }
    };
}

pub(crate) use impl_shared;
