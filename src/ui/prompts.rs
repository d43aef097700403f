//! Prompt pages: the list (search, tag, folders, labels), a prompt (its
//! versions as a timeline, its labels with history, gates and the Promote
//! and Roll back forms) and a version. Label moves go through the same
//! service as `PUT /v1/prompts/{name}/labels/{label}`: same scope, gates and
//! audit; a refusal re-renders the prompt page saying why in words.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::highlight::{pieces, Piece};
use super::session::{Posted, Signed};
use super::{prompt_url, render, time, Me, UiError};
use crate::api::extract::{label_name, prompt_name, semver, version_ref, Path, Query};
use crate::api::AppState;
use crate::domain::auth::Scope;
use crate::domain::content::ChatMessage;
use crate::domain::{LabelMove, PromptName, PromptSummary, Version};
use crate::error::ApiError;
use crate::services::labels::{self, Retreat};
use crate::services::prompts::{self, LabelState, Overview};
use crate::services::sessions::SignedIn;
use crate::services::ServiceError;
use crate::store::{cursor, PageRequest, PromptFilter};

/// Prompts per list page, and versions per prompt page.
const PAGE_SIZE: u32 = 50;

#[derive(Deserialize, Serialize, Default)]
pub struct ListParams {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    q: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    tag: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    archived: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    cursor: String,
}

#[derive(Serialize)]
struct ListPage<'a> {
    me: Me<'a>,
    section: &'static str,
    q: &'a str,
    tag: &'a str,
    archived: bool,
    /// Prompts outside any folder.
    prompts: Vec<PromptRow>,
    folders: Vec<Folder>,
    next: Option<String>,
    empty: bool,
}

/// A folder of the tree the list shows: prompts named `a/b/x` are in
/// folder `b` inside folder `a`.
#[derive(Serialize, Default)]
struct Folder {
    /// The last segment of its path.
    name: String,
    /// Prompts in it and in its subfolders.
    count: usize,
    prompts: Vec<PromptRow>,
    folders: Vec<Folder>,
}

impl Folder {
    /// Files `row` under `path` (its folder segments) inside this folder.
    fn file(&mut self, path: &[&str], row: PromptRow) {
        self.count += 1;
        let Some((first, rest)) = path.split_first() else {
            self.prompts.push(row);
            return;
        };
        let at = match self.folders.iter().position(|f| f.name == *first) {
            Some(at) => at,
            None => {
                self.folders.push(Folder {
                    name: (*first).to_owned(),
                    ..Folder::default()
                });
                self.folders.len() - 1
            }
        };
        self.folders[at].file(rest, row);
    }

    fn sort(&mut self) {
        self.folders.sort_by(|a, b| a.name.cmp(&b.name));
        self.folders.iter_mut().for_each(Folder::sort);
    }
}

#[derive(Serialize)]
struct PromptRow {
    name: String,
    /// The name without its folder.
    leaf: String,
    url: String,
    description: String,
    tags: Vec<String>,
    labels: Vec<(String, String)>,
    latest: Option<String>,
    latest_by: Option<String>,
    updated_at: String,
    archived: bool,
}

pub(super) fn authorize(state: &AppState, session: &SignedIn, scope: Scope) -> Result<(), UiError> {
    Ok(state.auth.authorize(&session.caller, scope)?)
}

pub async fn list_prompts(
    State(state): State<AppState>,
    Signed(session): Signed,
    Query(params): Query<ListParams>,
) -> Result<Response, UiError> {
    authorize(&state, &session, Scope::Read)?;
    let archived = matches!(params.archived.as_str(), "true" | "1" | "on");
    let filter = PromptFilter {
        name: None,
        tag: Some(params.tag.trim().to_owned()).filter(|t| !t.is_empty()),
        query: Some(params.q.trim().to_owned()).filter(|q| !q.is_empty()),
        include_archived: archived,
    };
    let after = match params.cursor.as_str() {
        "" => None,
        raw => Some(
            cursor::decode(raw).ok_or_else(|| ApiError::validation("cursor", "not a cursor"))?,
        ),
    };
    let page = prompts::list_prompts(
        &state.registry,
        session.caller.project,
        &filter,
        PageRequest {
            limit: PAGE_SIZE,
            after,
        },
    )
    .await?;
    let next = page.next_cursor.map(|cursor| {
        let params = ListParams {
            cursor,
            ..ListParams {
                q: params.q.clone(),
                tag: params.tag.clone(),
                archived: params.archived.clone(),
                cursor: String::new(),
            }
        };
        format!(
            "/ui/prompts?{}",
            serde_urlencoded::to_string(&params).unwrap_or_default()
        )
    });
    let empty = page.items.is_empty();
    let mut root = Folder::default();
    for summary in page.items {
        let (folder, row) = prompt_row(summary);
        let path: Vec<&str> = folder.split('/').filter(|s| !s.is_empty()).collect();
        root.file(&path, row);
    }
    root.sort();
    let context = ListPage {
        me: Me::of(&session),
        section: "prompts",
        q: &params.q,
        tag: &params.tag,
        archived,
        prompts: root.prompts,
        folders: root.folders,
        next,
        empty,
    };
    Ok(render(StatusCode::OK, "prompts.html", context))
}

fn prompt_row(summary: PromptSummary) -> (String, PromptRow) {
    let prompt = summary.prompt;
    let (folder, leaf) = match prompt.name.rsplit_once('/') {
        Some((folder, leaf)) => (folder.to_owned(), leaf.to_owned()),
        None => (String::new(), prompt.name.clone()),
    };
    let row = PromptRow {
        url: prompt_url(&prompt.name),
        name: prompt.name,
        leaf,
        description: prompt.description,
        tags: prompt.tags,
        labels: summary
            .labels
            .into_iter()
            .map(|(label, version)| (label, version.to_string()))
            .collect(),
        latest: summary.latest_version.map(|v| v.to_string()),
        latest_by: summary.latest_created_by,
        updated_at: time(prompt.updated_at),
        archived: prompt.archived,
    };
    (folder, row)
}

#[derive(Serialize)]
pub(super) struct PromptPage<'a> {
    me: Me<'a>,
    section: &'static str,
    name: String,
    url: String,
    /// The evaluations list filtered to this prompt.
    evaluations_url: String,
    /// The optimizations list filtered to this prompt.
    optimizations_url: String,
    description: String,
    tags: Vec<String>,
    archived: bool,
    latest: Option<String>,
    versions: Vec<VersionRow>,
    more_versions: bool,
    labels: Vec<LabelPanel>,
    unset_gates: Vec<GateView>,
    can_promote: bool,
    refusal: Option<Refusal>,
    /// Why the description and tags were not saved.
    pub(super) about_error: Option<String>,
}

#[derive(Serialize)]
struct VersionRow {
    version: String,
    url: String,
    message: Option<String>,
    author: Option<String>,
    created_at: String,
    short_hash: String,
    labels: Vec<String>,
    source: Option<String>,
    commit: Option<String>,
}

#[derive(Serialize)]
struct LabelPanel {
    name: String,
    version: String,
    updated_at: String,
    updated_by: Option<String>,
    history: Vec<MoveRow>,
    gate: Option<GateView>,
    can_roll_back: bool,
}

#[derive(Serialize)]
struct MoveRow {
    at: String,
    by: Option<String>,
    words: String,
}

#[derive(Serialize)]
struct GateView {
    label: String,
    dataset: String,
    rules: Vec<String>,
}

/// Why a label did not move, in words.
#[derive(Serialize)]
pub(super) struct Refusal {
    label: String,
    reason: String,
    details: Vec<String>,
}

fn gate_view(gate: crate::domain::jobs::Gate) -> GateView {
    GateView {
        label: gate.label,
        dataset: gate.dataset_name,
        rules: gate.rules.iter().map(ToString::to_string).collect(),
    }
}

fn move_words(m: &LabelMove) -> String {
    let version = |v: &Option<semver::Version>| v.as_ref().map(ToString::to_string);
    match (version(&m.from), version(&m.to), m.rollback) {
        (Some(from), Some(to), true) => format!("rolled back from {from} to {to}"),
        (Some(from), Some(to), false) => format!("moved from {from} to {to}"),
        (None, Some(to), _) => format!("set to {to}"),
        (Some(from), None, _) => format!("removed (was {from})"),
        (None, None, _) => "changed".to_owned(),
    }
}

/// A metadata entry shown as text, if the version has it as a string.
fn metadata_text(version: &Version, keys: &[&str]) -> Option<String> {
    keys.iter()
        .find_map(|k| version.metadata.get(*k).and_then(Value::as_str))
        .map(str::to_owned)
}

pub(super) fn prompt_page(
    session: &SignedIn,
    overview: Overview,
    refusal: Option<Refusal>,
) -> PromptPage<'_> {
    let prompt = overview.summary.prompt;
    let mut labels_on: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for state in &overview.labels {
        labels_on
            .entry(state.label.version.to_string())
            .or_default()
            .push(state.label.name.clone());
    }
    let versions = overview
        .versions
        .items
        .iter()
        .map(|v| VersionRow {
            version: v.version.to_string(),
            url: format!("{}/versions/{}", prompt_url(&prompt.name), v.version),
            message: v.message.clone(),
            author: v.created_by.clone(),
            created_at: time(v.created_at),
            short_hash: v.content_hash.chars().take(12).collect(),
            labels: labels_on.remove(&v.version.to_string()).unwrap_or_default(),
            source: metadata_text(v, &["source", "source_file", "file", "path"]),
            commit: metadata_text(v, &["git_commit", "git_sha", "commit", "sha"]),
        })
        .collect();
    let labels = overview
        .labels
        .into_iter()
        .map(
            |LabelState {
                 label,
                 history,
                 gate,
             }| LabelPanel {
                can_roll_back: history.iter().any(|m| m.from.is_some()),
                name: label.name,
                version: label.version.to_string(),
                updated_at: time(label.updated_at),
                updated_by: label.updated_by,
                history: history
                    .iter()
                    .map(|m| MoveRow {
                        at: time(m.at),
                        by: m.by.clone(),
                        words: move_words(m),
                    })
                    .collect(),
                gate: gate.map(gate_view),
            },
        )
        .collect();
    PromptPage {
        me: Me::of(session),
        section: "prompts",
        url: prompt_url(&prompt.name),
        evaluations_url: super::with_query("/ui/evaluations", &[("prompt", &prompt.name)]),
        optimizations_url: super::with_query("/ui/optimizations", &[("prompt", &prompt.name)]),
        name: prompt.name,
        description: prompt.description,
        tags: prompt.tags,
        archived: prompt.archived,
        latest: overview.summary.latest_version.map(|v| v.to_string()),
        versions,
        more_versions: overview.versions.next_cursor.is_some(),
        labels,
        unset_gates: overview.unset_gates.into_iter().map(gate_view).collect(),
        can_promote: session.caller.has(Scope::Promote),
        refusal,
        about_error: None,
    }
}

pub(super) async fn overview(
    state: &AppState,
    session: &SignedIn,
    name: &PromptName,
) -> Result<Overview, UiError> {
    Ok(prompts::overview(
        &state.registry,
        session.caller.project,
        name,
        PageRequest {
            limit: PAGE_SIZE,
            after: None,
        },
    )
    .await?)
}

pub async fn show_prompt(
    State(state): State<AppState>,
    Signed(session): Signed,
    Path(name): Path<String>,
) -> Result<Response, UiError> {
    authorize(&state, &session, Scope::Read)?;
    let name = prompt_name(&name)?;
    let overview = overview(&state, &session, &name).await?;
    Ok(render(
        StatusCode::OK,
        "prompt.html",
        prompt_page(&session, overview, None),
    ))
}

#[derive(Deserialize)]
pub struct PromoteForm {
    #[serde(default)]
    version: String,
}

#[derive(Deserialize)]
pub struct SetLabelForm {
    #[serde(default)]
    label: String,
    #[serde(default)]
    version: String,
}

#[derive(Deserialize)]
pub struct RollbackForm {}

pub async fn promote_label(
    State(state): State<AppState>,
    Path((name, label)): Path<(String, String)>,
    posted: Posted<PromoteForm>,
) -> Result<Response, UiError> {
    move_to(&state, &posted.session, &name, &label, &posted.form.version).await
}

pub async fn set_label(
    State(state): State<AppState>,
    Path(name): Path<String>,
    posted: Posted<SetLabelForm>,
) -> Result<Response, UiError> {
    let form = &posted.form;
    move_to(
        &state,
        &posted.session,
        &name,
        form.label.trim(),
        &form.version,
    )
    .await
}

async fn move_to(
    state: &AppState,
    session: &SignedIn,
    name: &str,
    label: &str,
    version: &str,
) -> Result<Response, UiError> {
    authorize(state, session, Scope::Promote)?;
    let name = prompt_name(name)?;
    let moved = match (label_name("label", label), semver("version", version)) {
        (Ok(label), Ok(version)) => {
            labels::move_label(
                &state.registry,
                session.caller.project,
                &session.caller.actor(),
                &name,
                &label,
                &version,
            )
            .await
        }
        (Err(err), _) | (_, Err(err)) => Err(match err {
            ApiError::Service(err) => err,
            other => ServiceError::validation("label", other.to_string()),
        }),
    };
    after_move(state, session, &name, label, moved.map(|_| ())).await
}

pub async fn rollback_label(
    State(state): State<AppState>,
    Path((name, label)): Path<(String, String)>,
    posted: Posted<RollbackForm>,
) -> Result<Response, UiError> {
    let session = &posted.session;
    authorize(&state, session, Scope::Promote)?;
    let name = prompt_name(&name)?;
    let label_name = label_name("label", &label)?;
    let rolled = labels::retreat_label(
        &state.registry,
        session.caller.project,
        &session.caller.actor(),
        &name,
        &label_name,
        Retreat::Rollback,
    )
    .await;
    after_move(&state, session, &name, &label, rolled.map(|_| ())).await
}

/// Back to the prompt page; a refused move shows the page again with the
/// reason, in words, above the labels.
async fn after_move(
    state: &AppState,
    session: &SignedIn,
    name: &PromptName,
    label: &str,
    moved: Result<(), ServiceError>,
) -> Result<Response, UiError> {
    let err = match moved {
        Ok(()) => {
            return Ok(
                Redirect::to(&format!("{}#labels", prompt_url(name.as_str()))).into_response(),
            )
        }
        Err(err) => err,
    };
    let api = ApiError::from(err);
    let problem = api.problem();
    if problem.status >= 500 {
        return Err(api.into());
    }
    let ApiError::Service(err) = api else {
        return Err(api.into());
    };
    let (reason, details) = match &err {
        ServiceError::GateFailed { reason, failed, .. } => (
            format!("Label {label:?} is gated: {reason}."),
            failed.iter().map(|f| f.message.clone()).collect(),
        ),
        other => (
            format!("Label {label:?} did not move: {other}."),
            other
                .field_errors()
                .into_iter()
                .map(|f| f.message)
                .filter(|m| !other.to_string().contains(m.as_str()))
                .collect(),
        ),
    };
    let overview = overview(state, session, name).await?;
    let status = StatusCode::from_u16(problem.status).unwrap_or(StatusCode::UNPROCESSABLE_ENTITY);
    let refusal = Refusal {
        label: label.to_owned(),
        reason,
        details,
    };
    Ok(render(
        status,
        "prompt.html",
        prompt_page(session, overview, Some(refusal)),
    ))
}

#[derive(Serialize)]
struct VersionPage<'a> {
    me: Me<'a>,
    section: &'static str,
    name: String,
    prompt_url: String,
    version: String,
    reference: String,
    prompt_type: &'static str,
    engine: &'static str,
    template: Option<Vec<Piece>>,
    messages: Vec<MessageView>,
    variables: Vec<String>,
    message: Option<String>,
    author: Option<String>,
    created_at: String,
    parent: Option<String>,
    content_hash: String,
    model_config: Option<String>,
    input_schema: Option<String>,
    output_schema: Option<String>,
    metadata: Option<String>,
}

#[derive(Serialize)]
struct MessageView {
    role: &'static str,
    content: Option<Vec<Piece>>,
    placeholder: Option<String>,
}

fn pretty(value: &Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_default()
}

pub async fn show_version(
    State(state): State<AppState>,
    Signed(session): Signed,
    Path((name, reference)): Path<(String, String)>,
) -> Result<Response, UiError> {
    authorize(&state, &session, Scope::Read)?;
    let name = prompt_name(&name)?;
    let parsed = version_ref("ref", &reference)?;
    let version = state
        .registry
        .get_version(session.caller.project, &name, &parsed)
        .await
        .map_err(ServiceError::from)?;
    let partials = state
        .renderer
        .direct_partials(session.caller.project, &version, &parsed)
        .await
        .map_err(ServiceError::from)?;
    let content = &version.content;
    let highlighted = |text: &str| pieces(content.engine, text, &partials);
    let messages = content
        .messages()
        .unwrap_or_default()
        .iter()
        .map(|m| match m {
            ChatMessage::System { content } => ("system", Some(highlighted(content)), None),
            ChatMessage::User { content } => ("user", Some(highlighted(content)), None),
            ChatMessage::Assistant { content } => ("assistant", Some(highlighted(content)), None),
            ChatMessage::Placeholder { name } => ("placeholder", None, Some(name.clone())),
        })
        .map(|(role, content, placeholder)| MessageView {
            role,
            content,
            placeholder,
        })
        .collect();
    let context = VersionPage {
        me: Me::of(&session),
        section: "prompts",
        prompt_url: prompt_url(name.as_str()),
        name: name.to_string(),
        version: version.version.to_string(),
        reference,
        prompt_type: content.prompt_type().as_str(),
        engine: content.engine.as_str(),
        template: content.template().map(highlighted),
        messages,
        variables: version.variables.clone(),
        message: version.message.clone(),
        author: version.created_by.clone(),
        created_at: time(version.created_at),
        parent: version.parent.as_ref().map(ToString::to_string),
        content_hash: version.content_hash.clone(),
        model_config: (!content.model_config.is_empty())
            .then(|| pretty(&Value::Object(content.model_config.clone()))),
        input_schema: content.input_schema.as_ref().map(pretty),
        output_schema: content.output_schema.as_ref().map(pretty),
        metadata: (!version.metadata.is_empty())
            .then(|| pretty(&Value::Object(version.metadata.clone()))),
    };
    Ok(render(StatusCode::OK, "version.html", context))
}
