//! Editing prompts in a browser: the editor (a draft of the next version,
//! started from the latest, with chat messages added, removed and moved by
//! plain submit buttons, checked or saved), and the new-prompt form. A draft
//! becomes a `/v1` version request and goes through the same parsing and
//! the same service as `POST /v1/prompts/{name}/versions`: same scope
//! (`write`), validation, audit (`user:<name>`) and `expected_latest`
//! conflict. Errors come back under the fields they name.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::diff::{diff_view, DiffView, Layout};
use super::session::{Posted, Signed};
use super::{prompt_url, render, Me, UiError};
use crate::api::extract::{prompt_name, Path};
use crate::api::prompts::{description, tags};
use crate::api::versions::{parse_new_version, CreateVersionRequest};
use crate::api::AppState;
use crate::domain::auth::Scope;
use crate::domain::content::ChatMessage;
use crate::domain::{Engine, PromptName, PromptType, Version};
use crate::error::ApiError;
use crate::services::drafts::{self, Saved};
use crate::services::sessions::SignedIn;
use crate::services::{versions, FieldError};
use crate::store::{NewPrompt, NewVersion, StoreError};

const ROLES: [&str; 4] = ["system", "user", "assistant", "placeholder"];

fn authorize_write(state: &AppState, session: &SignedIn) -> Result<(), UiError> {
    Ok(state.auth.authorize(&session.caller, Scope::Write)?)
}

/// One chat entry of a draft; a placeholder's `content` is its variable.
#[derive(Serialize, Clone, Debug, PartialEq)]
struct DraftMessage {
    role: String,
    content: String,
}

/// The editor's form as typed, kept whole across checks, errors and
/// conflicts.
#[derive(Serialize, Debug, Default)]
struct Draft {
    /// `text` or `chat`.
    prompt_type: String,
    template: String,
    messages: Vec<DraftMessage>,
    engine: String,
    model_config: String,
    input_schema: String,
    output_schema: String,
    /// The changelog entry.
    message: String,
    /// The version the draft started from; empty while the prompt has none.
    expected_latest: String,
}

fn pretty(value: &Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_default()
}

/// Browsers send a textarea's line ends as CRLF.
fn typed(raw: String) -> String {
    if raw.contains('\r') {
        raw.replace("\r\n", "\n")
    } else {
        raw
    }
}

impl Draft {
    fn of(latest: Option<&Version>) -> Self {
        let Some(version) = latest else {
            return Self {
                prompt_type: "text".into(),
                engine: Engine::default().as_str().into(),
                ..Self::default()
            };
        };
        let content = &version.content;
        let messages = content
            .messages()
            .unwrap_or_default()
            .iter()
            .map(|m| DraftMessage {
                role: m.role().to_owned(),
                content: match m {
                    ChatMessage::Placeholder { name } => name.clone(),
                    other => other.content().unwrap_or_default().to_owned(),
                },
            })
            .collect();
        Self {
            prompt_type: content.prompt_type().as_str().into(),
            template: content.template().unwrap_or_default().to_owned(),
            messages,
            engine: content.engine.as_str().into(),
            model_config: if content.model_config.is_empty() {
                String::new()
            } else {
                pretty(&Value::Object(content.model_config.clone()))
            },
            input_schema: content
                .input_schema
                .as_ref()
                .map(pretty)
                .unwrap_or_default(),
            output_schema: content
                .output_schema
                .as_ref()
                .map(pretty)
                .unwrap_or_default(),
            message: String::new(),
            expected_latest: version.version.to_string(),
        }
    }

    /// The draft and the button pressed (`op`), from the form's fields in
    /// page order: each `role` starts a message that the next `content` fills.
    fn from_form(fields: Vec<(String, String)>) -> (Self, String) {
        let mut draft = Self::default();
        let mut op = String::new();
        for (key, value) in fields {
            let value = typed(value);
            match key.as_str() {
                "op" => op = value,
                "type" => draft.prompt_type = value,
                "template" => draft.template = value,
                "role" => draft.messages.push(DraftMessage {
                    role: value,
                    content: String::new(),
                }),
                "content" => match draft.messages.last_mut() {
                    Some(last) if last.content.is_empty() => last.content = value,
                    _ => draft.messages.push(DraftMessage {
                        role: "user".into(),
                        content: value,
                    }),
                },
                "engine" => draft.engine = value,
                "model_config" => draft.model_config = value,
                "input_schema" => draft.input_schema = value,
                "output_schema" => draft.output_schema = value,
                "message" => draft.message = value,
                "expected_latest" => draft.expected_latest = value,
                _ => {}
            }
        }
        (draft, op)
    }

    /// Applies a button that changes the messages (`add_message`,
    /// `add_placeholder`, `remove:i`, `up:i`, `down:i`); false for any other.
    fn rearrange(&mut self, op: &str) -> bool {
        let messages = &mut self.messages;
        let at = |prefix: &str| {
            op.strip_prefix(prefix)
                .and_then(|i| i.parse::<usize>().ok())
                .filter(|i| *i < messages.len())
        };
        let (remove, up, down) = (at("remove:"), at("up:"), at("down:"));
        match op {
            "add_message" => messages.push(DraftMessage {
                role: "user".into(),
                content: String::new(),
            }),
            "add_placeholder" => messages.push(DraftMessage {
                role: "placeholder".into(),
                content: String::new(),
            }),
            _ => {
                if let Some(i) = remove {
                    messages.remove(i);
                } else if let Some(i) = up.filter(|i| *i > 0) {
                    messages.swap(i - 1, i);
                } else if let Some(i) = down.filter(|i| i + 1 < messages.len()) {
                    messages.swap(i, i + 1);
                } else {
                    return op.starts_with("remove:")
                        || op.starts_with("up:")
                        || op.starts_with("down:");
                }
            }
        }
        true
    }

    /// The draft as a `/v1` version request, parsed as the API parses one.
    fn to_new_version(&self) -> Result<NewVersion, Vec<FieldError>> {
        let mut errors = Vec::new();
        let json = |field: &str, raw: &str, errors: &mut Vec<FieldError>| {
            if raw.trim().is_empty() {
                return None;
            }
            serde_json::from_str::<Value>(raw)
                .map_err(|e| {
                    errors.push(FieldError {
                        line: Some(e.line()),
                        column: Some(e.column()),
                        ..FieldError::new(field, format!("not JSON: {e}"))
                    })
                })
                .ok()
        };
        let model_config = match json("model_config", &self.model_config, &mut errors) {
            None => None,
            Some(Value::Object(map)) => Some(map),
            Some(_) => {
                errors.push(FieldError::new("model_config", "must be a JSON object"));
                None
            }
        };
        let input_schema = json("input_schema", &self.input_schema, &mut errors);
        let output_schema = json("output_schema", &self.output_schema, &mut errors);
        let engine = Engine::parse(&self.engine);
        if engine.is_none() {
            errors.push(FieldError::new("engine", "choose handlebars or jinja"));
        }
        let chat = self.prompt_type == "chat";
        let mut messages = Vec::new();
        if chat {
            for (i, m) in self.messages.iter().enumerate() {
                let content = m.content.clone();
                messages.push(match m.role.as_str() {
                    "system" => ChatMessage::System { content },
                    "user" => ChatMessage::User { content },
                    "assistant" => ChatMessage::Assistant { content },
                    "placeholder" => ChatMessage::Placeholder {
                        name: content.trim().to_owned(),
                    },
                    _ => {
                        errors.push(FieldError::new(
                            format!("messages[{i}].role"),
                            "choose system, user, assistant or placeholder",
                        ));
                        continue;
                    }
                });
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let request = CreateVersionRequest {
            prompt_type: Some(if chat {
                PromptType::Chat
            } else {
                PromptType::Text
            }),
            template: (!chat).then(|| self.template.clone()),
            messages: chat.then_some(messages),
            engine,
            model_config,
            input_schema,
            output_schema,
            message: Some(self.message.trim().to_owned()).filter(|m| !m.is_empty()),
            metadata: None,
            version: None,
            bump: None,
            parent: None,
            expected_latest: Some(match self.expected_latest.trim() {
                "" => None,
                v => Some(v.to_owned()),
            }),
            labels: None,
            allow_type_change: false,
        };
        parse_new_version(request).map_err(|e| e.problem().errors)
    }
}

/// Problems, each under the form field it names (`by_field`, keyed as the
/// template looks them up), or above the form when no field shows it.
#[derive(Serialize, Default)]
pub(super) struct Problems {
    by_field: BTreeMap<String, Vec<String>>,
    general: Vec<String>,
}

impl Problems {
    pub(super) fn of(errors: Vec<FieldError>, shown: impl Fn(&str) -> Option<String>) -> Self {
        let mut problems = Self::default();
        for e in errors {
            let text = match (e.line, e.column) {
                (Some(line), Some(column)) => {
                    format!("Line {line}, column {column}: {}", e.message)
                }
                (Some(line), None) => format!("Line {line}: {}", e.message),
                _ => e.message,
            };
            match shown(&e.field) {
                Some(field) => problems.by_field.entry(field).or_default().push(text),
                None => problems.general.push(format!("{}: {text}", e.field)),
            }
        }
        problems
    }

    /// The field errors of a refusal; a server fault stays an error page.
    pub(super) fn of_refusal(
        err: impl Into<ApiError>,
        shown: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, UiError> {
        let err = err.into();
        let problem = err.problem();
        if problem.status >= 500 {
            return Err(err.into());
        }
        if problem.errors.is_empty() {
            return Ok(Self {
                general: vec![problem.detail],
                ..Self::default()
            });
        }
        Ok(Self::of(problem.errors, shown))
    }

    pub(super) fn is_empty(&self) -> bool {
        self.by_field.is_empty() && self.general.is_empty()
    }
}

/// Where the editor shows an error about `field`.
fn editor_field(field: &str) -> Option<String> {
    match field {
        "template" | "messages" | "engine" | "model_config" | "input_schema" | "output_schema"
        | "message" => Some(field.to_owned()),
        f if f.starts_with("messages[") => {
            let i: usize = f
                .strip_prefix("messages[")?
                .split(']')
                .next()?
                .parse()
                .ok()?;
            Some(format!("messages[{i}]"))
        }
        _ => None,
    }
}

#[derive(Serialize)]
struct Conflict {
    version: String,
    by: Option<String>,
    at: String,
    base: Option<String>,
    diff: Option<DiffView>,
}

#[derive(Serialize)]
struct EditPage<'a> {
    me: Me<'a>,
    section: &'static str,
    name: String,
    url: String,
    roles: [&'static str; 4],
    draft: Draft,
    problems: Problems,
    /// What a check found, when it found nothing wrong.
    checked: Option<String>,
    conflict: Option<Conflict>,
}

fn page_of<'a>(session: &'a SignedIn, name: &PromptName, draft: Draft) -> EditPage<'a> {
    EditPage {
        me: Me::of(session),
        section: "prompts",
        name: name.to_string(),
        url: prompt_url(name.as_str()),
        roles: ROLES,
        draft,
        problems: Problems::default(),
        checked: None,
        conflict: None,
    }
}

/// `GET /ui/prompts/{name}/edit`: a draft of the next version, from the latest.
pub async fn edit_page(
    State(state): State<AppState>,
    Signed(session): Signed,
    Path(name): Path<String>,
) -> Result<Response, UiError> {
    authorize_write(&state, &session)?;
    let name = prompt_name(&name)?;
    let latest = drafts::latest(&state.registry, session.caller.project, &name).await?;
    let page = page_of(&session, &name, Draft::of(latest.as_deref()));
    Ok(render(StatusCode::OK, "edit.html", page))
}

fn time(at: chrono::DateTime<chrono::Utc>) -> String {
    at.format("%Y-%m-%d %H:%M UTC").to_string()
}

/// `POST /ui/prompts/{name}/edit`: rearranges the messages, checks, or saves.
pub async fn edit(
    State(state): State<AppState>,
    Path(name): Path<String>,
    posted: Posted<Vec<(String, String)>>,
) -> Result<Response, UiError> {
    let session = &posted.session;
    authorize_write(&state, session)?;
    let name = prompt_name(&name)?;
    let (mut draft, op) = Draft::from_form(posted.form);
    if draft.rearrange(&op) {
        return Ok(render(
            StatusCode::OK,
            "edit.html",
            page_of(session, &name, draft),
        ));
    }
    let new = match draft.to_new_version() {
        Ok(new) => new,
        Err(errors) => {
            let mut page = page_of(session, &name, draft);
            page.problems = Problems::of(errors, editor_field);
            return Ok(render(StatusCode::UNPROCESSABLE_ENTITY, "edit.html", page));
        }
    };
    let project = session.caller.project;
    if op == "check" {
        let checked = versions::check_version(
            &state.registry,
            &state.renderer,
            project,
            &name,
            &new,
            false,
        )
        .await;
        let mut page = page_of(session, &name, draft);
        return match checked {
            Ok(variables) => {
                page.checked = Some(if variables.is_empty() {
                    "No problems found. The template reads no variables.".to_owned()
                } else {
                    format!(
                        "No problems found. The template reads: {}.",
                        variables.join(", ")
                    )
                });
                Ok(render(StatusCode::OK, "edit.html", page))
            }
            Err(err) => {
                page.problems = Problems::of_refusal(err, editor_field)?;
                Ok(render(StatusCode::UNPROCESSABLE_ENTITY, "edit.html", page))
            }
        };
    }
    let actor = session.caller.actor();
    let saved = drafts::save(
        &state.registry,
        &state.renderer,
        project,
        &actor,
        &name,
        new,
    )
    .await;
    match saved {
        Ok(Saved::Version(created)) => Ok(Redirect::to(&format!(
            "{}/versions/{}",
            prompt_url(name.as_str()),
            created.version.version
        ))
        .into_response()),
        Ok(Saved::Conflict {
            landed,
            base,
            changes,
        }) => {
            let version = landed.version.to_string();
            // Saving again, after reading what landed, puts the draft after it.
            draft.expected_latest = version.clone();
            let base = base.map(|b| b.version.to_string());
            let diff = changes.zip(base.clone()).map(|(changes, base)| {
                diff_view(
                    &changes,
                    format!("{base} (your draft's base)"),
                    format!("{version} (saved)"),
                    Layout::Unified,
                )
            });
            let mut page = page_of(session, &name, draft);
            page.conflict = Some(Conflict {
                by: landed.created_by.clone(),
                at: time(landed.created_at),
                version,
                base,
                diff,
            });
            Ok(render(StatusCode::CONFLICT, "edit.html", page))
        }
        Err(err) => {
            let mut page = page_of(session, &name, draft);
            page.problems = Problems::of_refusal(err, editor_field)?;
            Ok(render(StatusCode::UNPROCESSABLE_ENTITY, "edit.html", page))
        }
    }
}

/// The new-prompt form as typed.
#[derive(Deserialize, Serialize, Default)]
pub struct NewPromptForm {
    #[serde(default)]
    name: String,
    /// `text` or `chat`.
    #[serde(default, rename = "type")]
    prompt_type: String,
    /// The role of a chat prompt's first message.
    #[serde(default)]
    role: String,
    #[serde(default)]
    template: String,
    /// Separated by commas or spaces.
    #[serde(default)]
    tags: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    message: String,
}

#[derive(Serialize)]
struct NewPromptPage<'a> {
    me: Me<'a>,
    section: &'static str,
    form: NewPromptForm,
    problems: Problems,
}

/// Where the new-prompt form shows an error about `field`.
fn new_prompt_field(field: &str) -> Option<String> {
    match field.split('[').next().unwrap_or(field) {
        "name" => Some("name".into()),
        "tags" => Some("tags".into()),
        "description" => Some("description".into()),
        "template" | "messages" => Some("template".into()),
        "message" => Some("message".into()),
        "type" => Some("type".into()),
        _ => None,
    }
}

/// `GET /ui/prompts/new`.
pub async fn new_prompt_page(
    State(state): State<AppState>,
    Signed(session): Signed,
) -> Result<Response, UiError> {
    authorize_write(&state, &session)?;
    let page = NewPromptPage {
        me: Me::of(&session),
        section: "prompts",
        form: NewPromptForm {
            prompt_type: "text".into(),
            role: "system".into(),
            ..NewPromptForm::default()
        },
        problems: Problems::default(),
    };
    Ok(render(StatusCode::OK, "new_prompt.html", page))
}

impl NewPromptForm {
    /// The prompt and its first version, parsed as the API parses them.
    fn parse(&self) -> Result<(NewPrompt, NewVersion), Vec<FieldError>> {
        let mut errors = Vec::new();
        let name = keep(&mut errors, prompt_name(self.name.trim()));
        let tag_list: Vec<String> = self
            .tags
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|t| !t.is_empty())
            .map(str::to_owned)
            .collect();
        let tag_list = keep(&mut errors, tags("tags", Some(tag_list))).flatten();
        let description = keep(
            &mut errors,
            description(Some(self.description.trim().to_owned())),
        )
        .flatten();
        let template = typed(self.template.clone());
        let chat = self.prompt_type == "chat";
        let messages = if chat {
            let first = match self.role.as_str() {
                "user" => ChatMessage::User { content: template },
                "assistant" => ChatMessage::Assistant { content: template },
                _ => ChatMessage::System { content: template },
            };
            Some(vec![first])
        } else {
            None
        };
        let request = CreateVersionRequest {
            prompt_type: Some(if chat {
                PromptType::Chat
            } else {
                PromptType::Text
            }),
            template: (!chat).then(|| typed(self.template.clone())),
            messages,
            engine: None,
            model_config: None,
            input_schema: None,
            output_schema: None,
            message: Some(self.message.trim().to_owned()).filter(|m| !m.is_empty()),
            metadata: None,
            version: None,
            bump: None,
            parent: None,
            expected_latest: None,
            labels: None,
            allow_type_change: false,
        };
        let first = keep(&mut errors, parse_new_version(request));
        match (name, first) {
            (Some(name), Some(first)) if errors.is_empty() => Ok((
                NewPrompt {
                    name,
                    description: description.unwrap_or_default(),
                    tags: tag_list.unwrap_or_default(),
                },
                first,
            )),
            _ => Err(errors),
        }
    }
}

/// The value, or `None` with its field errors added to `errors`.
fn keep<T>(errors: &mut Vec<FieldError>, result: Result<T, ApiError>) -> Option<T> {
    result.map_err(|e| errors.extend(e.problem().errors)).ok()
}

/// `POST /ui/prompts/new`: the prompt and its first version, then its page.
pub async fn create_prompt(
    State(state): State<AppState>,
    posted: Posted<NewPromptForm>,
) -> Result<Response, UiError> {
    let session = &posted.session;
    authorize_write(&state, session)?;
    let problems = match posted.form.parse() {
        Err(errors) => Problems::of(errors, new_prompt_field),
        Ok((prompt, first)) => {
            let name = prompt.name.clone();
            let created = drafts::create_prompt(
                &state.registry,
                &state.renderer,
                session.caller.project,
                &session.caller.actor(),
                prompt,
                first,
            )
            .await;
            match created {
                Ok(_) => return Ok(Redirect::to(&prompt_url(name.as_str())).into_response()),
                Err(crate::services::ServiceError::Store(StoreError::PromptExists(_))) => {
                    Problems::of(
                        vec![FieldError::new(
                            "name",
                            format!("a prompt named {:?} exists already", name.as_str()),
                        )],
                        new_prompt_field,
                    )
                }
                Err(err) => Problems::of_refusal(err, new_prompt_field)?,
            }
        }
    };
    debug_assert!(!problems.is_empty());
    let page = NewPromptPage {
        me: Me::of(session),
        section: "prompts",
        form: posted.form,
        problems,
    };
    Ok(render(
        StatusCode::UNPROCESSABLE_ENTITY,
        "new_prompt.html",
        page,
    ))
}
