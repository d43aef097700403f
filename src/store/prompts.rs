//! Prompts and their versions: the registry's core use-cases. Creating a
//! version may move labels (`labels.rs`) in the same transaction.
//! `PromptStore`, then `impl_sql!`, its SQL for both backends.

use async_trait::async_trait;
use serde_json::{Map, Value};

use super::{PageRequest, StoreResult};
use crate::domain::auth::Actor;
use crate::domain::{
    Bump, LabelName, Page, ProjectId, Prompt, PromptContent, PromptName, PromptSummary, Version,
    VersionRef,
};

#[async_trait]
pub trait PromptStore: Send + Sync {
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
    /// The version `label` points at, and whether an experiment runs on
    /// the label, in one round trip: what a label read that misses the
    /// caches needs.
    async fn get_label_version(
        &self,
        project: ProjectId,
        name: &PromptName,
        label: &LabelName,
    ) -> StoreResult<LabelVersion>;
    async fn list_versions(
        &self,
        project: ProjectId,
        name: &PromptName,
        page: PageRequest,
    ) -> StoreResult<Page<Version>>;
}

#[derive(Debug, Clone)]
pub struct LabelVersion {
    pub version: Version,
    pub experiment_running: bool,
}

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
pub struct CreatedVersion {
    pub version: Version,
    /// False when the content equalled the latest version's and nothing was created.
    pub created: bool,
}

/// `PromptStore` in portable SQL for backend `$store` on database `$db` (see
/// `sql::impl_store!`).
macro_rules! impl_sql {
    ($store:ident, $db:ty, $backend:literal) => {
        use std::collections::BTreeMap;

        use serde_json::json;
        use sqlx::types::Json;
        use uuid::Uuid;

        use crate::domain::auth::Actor;
        use crate::domain::names::LATEST;
        use crate::domain::{
            LabelName, Page, ProjectId, Prompt, PromptName, PromptSummary, Version, VersionRef,
        };
        use crate::store::rows::{
            parse_semver, LabelRow, PromptRow, VersionRow, LABEL_SELECT, PROMPT_COLUMNS, VERSION_SELECT,
            VERSION_SELECT_EXPERIMENT, VERSION_SELECT_NO_EXPERIMENT,
        };
        use crate::store::sql::like_pattern;
        use crate::store::{
            is_unique_violation, now, page_from_overfetch, CreatedVersion, NewPrompt, NewVersion,
            Invalidation, LabelVersion, PageKey, PageRequest, PromptFilter, PromptPatch, PromptStore, StoreError,
            StoreResult,
        };

        use super::$store;

        #[derive(sqlx::FromRow)]
        struct PromptListRow {
            #[sqlx(flatten)]
            prompt: PromptRow,
            latest_version: Option<String>,
            latest_content_hash: Option<String>,
            latest_created_by: Option<String>,
        }

        #[derive(sqlx::FromRow)]
        struct FoundVersionRow {
            #[sqlx(flatten)]
            version: VersionRow,
            experiment_running: bool,
        }

        impl $store {
            /// A version by reference; for a label, with whether an
            /// experiment runs on it, in the same statement.
            async fn find_version(
                &self,
                project: ProjectId,
                name: &PromptName,
                reference: &VersionRef,
            ) -> StoreResult<LabelVersion> {
                crate::store::annotate("promptreg.prompt", &name);
                match reference {
                    VersionRef::Label(label) => crate::store::annotate("promptreg.label", &label),
                    VersionRef::Exact(version) => crate::store::annotate("promptreg.version", &version),
                }
                const WHERE: &str = "where p.project_id = $1 and p.name = $2";
                let (sql, key) = match reference {
                    VersionRef::Exact(v) => (
                        format!("{VERSION_SELECT_NO_EXPERIMENT} {WHERE} and v.version = $3"),
                        Some(v.to_string()),
                    ),
                    VersionRef::Label(l) if l.as_str() == LATEST => (
                        format!("{VERSION_SELECT_NO_EXPERIMENT} {WHERE} order by v.seq desc limit 1"),
                        None,
                    ),
                    VersionRef::Label(l) => (
                        format!(
                            "{VERSION_SELECT_EXPERIMENT} {WHERE} and v.id = (select l.version_id from label l \
                             where l.prompt_id = p.id and l.name = $3)"
                        ),
                        Some(l.as_str().to_owned()),
                    ),
                };
                let mut conn = self.reader().acquire().await?;
                let mut query = sqlx::query_as::<_, FoundVersionRow>(&sql).bind(project).bind(name.as_str());
                if let Some(key) = key {
                    query = query.bind(key);
                }
                let found = query.fetch_optional(&mut *conn).await?;
                match found {
                    Some(row) => Ok(LabelVersion {
                        version: row.version.try_into()?,
                        experiment_running: row.experiment_running,
                    }),
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
        }

        crate::store::sql::observed_impl! {
        impl PromptStore for $store as $backend {
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
                Self::audit(&mut tx, project, actor, "prompt.create", &format!("prompts/{}", prompt.name), None, Some(after.clone())).await?;
                let mut data = after;
                data["id"] = json!(prompt.id);
                data["by"] = json!(actor.key_name);
                let event = crate::domain::webhooks::OutboxEvent::new(crate::domain::webhooks::PROMPT_CREATED, Some(&prompt.name), data);
                Self::emit(&mut tx, project, &event).await?;
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
                page: PageRequest,
            ) -> StoreResult<Page<PromptSummary>> {
                let mut qb = sqlx::QueryBuilder::<$db>::new(format!(
                    "select {PROMPT_COLUMNS}, (select v.version from prompt_version v \
                     where v.prompt_id = p.id order by v.seq desc limit 1) as latest_version, \
                     (select v.content_hash from prompt_version v \
                     where v.prompt_id = p.id order by v.seq desc limit 1) as latest_content_hash, \
                     (select v.created_by from prompt_version v \
                     where v.prompt_id = p.id order by v.seq desc limit 1) as latest_created_by \
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
                if let Some(after) = page.after_id() {
                    qb.push(" and p.id < ").push_bind(after);
                }
                qb.push(" order by p.id desc limit ").push_bind(page.overfetch());
                let rows: Vec<PromptListRow> = qb.build_query_as().fetch_all(self.reader()).await?;
                let Page { items: rows, next_cursor } =
                    page_from_overfetch(rows, page.limit, |r| PageKey::Id(r.prompt.id));

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
                            latest_created_by: row.latest_created_by,
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
                actor: &Actor,
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
                Self::audit(&mut tx, project, actor, action, &format!("prompts/{}", row.name), Some(before.clone()), Some(after.clone())).await?;
                let event = crate::domain::webhooks::OutboxEvent::new(
                    crate::domain::webhooks::PROMPT_UPDATED,
                    Some(&row.name),
                    json!({"id": row.id, "name": row.name, "before": before, "after": after, "by": actor.key_name}),
                );
                Self::emit(&mut tx, project, &event).await?;
                // Its summary (tags, description) is cached beside its labels.
                Self::notify(&mut tx, Invalidation::Prompt(row.id)).await?;
                tx.commit().await?;
                self.get_prompt(project, name).await
            }

            async fn create_version(
                &self,
                project: ProjectId,
                name: &PromptName,
                new: NewVersion,
                actor: &Actor,
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
                reference: &VersionRef,
            ) -> StoreResult<Version> {
                Ok(self.find_version(project, name, reference).await?.version)
            }

            // A label read, as `get_version` always was: one operation.
            #[operation = "get_version"]
            async fn get_label_version(
                &self,
                project: ProjectId,
                name: &PromptName,
                label: &LabelName,
            ) -> StoreResult<LabelVersion> {
                self.find_version(project, name, &VersionRef::Label(label.clone())).await
            }

            async fn list_versions(
                &self,
                project: ProjectId,
                name: &PromptName,
                page: PageRequest,
            ) -> StoreResult<Page<Version>> {
                crate::store::annotate("promptreg.prompt", &name);
                let mut conn = self.reader().acquire().await?;
                let prompt = Self::prompt_row(&mut conn, project, name, false).await?;
                let sql = format!(
                    "{VERSION_SELECT} where v.prompt_id = $1 and v.seq < $2 order by v.seq desc limit $3"
                );
                let rows: Vec<VersionRow> = sqlx::query_as(&sql)
                    .bind(prompt.id)
                    .bind(page.after_int().unwrap_or(i64::MAX))
                    .bind(page.overfetch())
                    .fetch_all(&mut *conn)
                    .await?;
                let items = rows.into_iter().map(Version::try_from).collect::<StoreResult<Vec<_>>>()?;
                Ok(page_from_overfetch(items, page.limit, |v| PageKey::Int(v.seq)))
            }
        }
        }
    };
}

pub(crate) use impl_sql;
