//! Rendering: resolves a version and the registry partials it includes,
//! validates the caller's variables, and renders with compiled templates
//! kept in memory. Also checks new content before it is stored (syntax,
//! schemas, includes of prompts that do not exist, include cycles) and
//! extracts its variables.
//!
//! An unpinned partial is taken at the label the outer prompt was resolved
//! through (a render of `staging` takes partials at `staging`), else at the
//! default label (`production`); renders by semver or `latest` take it at
//! the default label.
//!
//! Compiled templates are cached by the version id together with the ids of
//! the partial versions they were compiled with, so a partial's label move
//! compiles anew instead of serving a stale include.

use std::collections::HashMap;
use std::sync::Arc;

use quick_cache::sync::Cache;
use serde_json::Value;
use uuid::Uuid;

use crate::domain::content::PromptBody;
use crate::domain::{
    ChatMessage, Engine, LabelName, ProjectId, PromptContent, PromptName, Version, VersionRef,
};
use crate::providers::requests::history_roles;
use crate::providers::ProviderKind;
use crate::services::registry::Served;
use crate::services::Registry;
use crate::store::StoreError;
use crate::telemetry::metrics;
use crate::template::{self, CompiledBody, Include, Limits, Rendered, TemplateError};

/// Partials may include partials, up to this depth.
pub const MAX_INCLUDE_DEPTH: usize = 8;

#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error(transparent)]
    Template(#[from] TemplateError),
    #[error("invalid JSON Schema in {field}: {message}")]
    InvalidSchema {
        field: &'static str,
        message: String,
    },
    /// (field, message) pairs: against the input schema, or chat history roles.
    #[error("the variables are not valid: {}", joined(.0))]
    InvalidVariables(Vec<(String, String)>),
    #[error("include cycle: {}", .0.join(" -> "))]
    IncludeCycle(Vec<String>),
    #[error("includes nest deeper than {MAX_INCLUDE_DEPTH} levels: {}", .0.join(" -> "))]
    IncludeDepth(Vec<String>),
    #[error("included prompt {include:?}: {message}")]
    IncludeInvalid { include: String, message: String },
    #[error("included prompt {include:?} cannot be resolved: {source}")]
    IncludeNotFound { include: String, source: StoreError },
    #[error("included prompt {include:?} has neither label {label:?} nor {fallback:?}")]
    IncludeUnlabelled {
        include: String,
        label: String,
        fallback: String,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What a render used and produced.
pub struct RenderOutput {
    pub version: Arc<Version>,
    pub rendered: Rendered,
    /// The outer prompt first, then every partial, as (prompt, version).
    pub resolved: Vec<(String, semver::Version)>,
}

impl RenderError {
    /// A partial whose prompt exists but whose version or label does not
    /// (yet): new content may include it, and renders check it again.
    fn resolves_later(&self) -> bool {
        matches!(
            self,
            Self::IncludeUnlabelled { .. }
                | Self::IncludeNotFound {
                    source: StoreError::LabelNotFound { .. } | StoreError::VersionNotFound { .. },
                    ..
                }
        )
    }
}

/// Partials resolved for one body: sources by include key, and what they were.
#[derive(Default)]
struct Partials {
    sources: HashMap<String, String>,
    resolved: Vec<(String, semver::Version)>,
    ids: Vec<Uuid>,
}

/// Where a walk through includes looks for partials, and what it is for.
struct Scope {
    project: ProjectId,
    engine: Engine,
    /// Where unpinned partials are taken first: the label the outer prompt
    /// was resolved through, when it is another than the default one.
    label: Option<VersionRef>,
    /// Checking new content: a partial whose prompt exists but whose ref
    /// does not resolve yet is passed over instead of refused.
    creating: bool,
}

impl Scope {
    /// Rendering: unpinned partials at `label` first, then the default label.
    fn rendering(project: ProjectId, engine: Engine, label: Option<VersionRef>) -> Self {
        Self {
            project,
            engine,
            label,
            creating: false,
        }
    }

    /// Checking content about to be saved.
    fn creating(project: ProjectId, engine: Engine) -> Self {
        Self {
            project,
            engine,
            label: None,
            creating: true,
        }
    }
}

pub struct Renderer {
    registry: Arc<Registry>,
    default_ref: VersionRef,
    limits: Limits,
    compiled: Cache<Vec<Uuid>, Arc<CompiledBody>>,
    validators: Cache<Uuid, Arc<jsonschema::Validator>>,
    /// What each (immutable) version includes, so renders do not re-parse.
    includes: Cache<Uuid, Arc<Vec<Include>>>,
}

impl Renderer {
    pub fn new(
        registry: Arc<Registry>,
        default_label: LabelName,
        max_compiled: usize,
        limits: Limits,
    ) -> Self {
        Self {
            registry,
            default_ref: VersionRef::Label(default_label),
            limits,
            compiled: Cache::new(max_compiled),
            validators: Cache::new(max_compiled),
            includes: Cache::new(max_compiled),
        }
    }

    pub fn default_ref(&self) -> VersionRef {
        self.default_ref.clone()
    }

    /// Where unpinned partials are taken first for an outer prompt resolved
    /// through `reference`: that label, unless it is `latest` or the default.
    fn partials_label(&self, reference: &VersionRef) -> Option<VersionRef> {
        match reference {
            VersionRef::Label(label) if !label.is_reserved() && *reference != self.default_ref => {
                Some(reference.clone())
            }
            _ => None,
        }
    }

    /// Checks content about to become a version of `name` and returns the
    /// variables it reads. Every prompt it includes must exist, and cycles
    /// through what is labelled now are refused; a label or version of a
    /// partial that is not set yet is checked at render time.
    pub async fn check_new_content(
        &self,
        project: ProjectId,
        name: &PromptName,
        content: &PromptContent,
    ) -> Result<Vec<String>, RenderError> {
        template::check(content.engine, &content.body)?;
        for (field, schema) in [
            ("input_schema", &content.input_schema),
            ("output_schema", &content.output_schema),
        ] {
            if let Some(schema) = schema {
                jsonschema::draft202012::meta::validate(schema).map_err(|e| {
                    RenderError::InvalidSchema {
                        field,
                        message: e.to_string(),
                    }
                })?;
            }
        }
        let includes = template::includes(content.engine, &content.body)?;
        let scope = Scope::creating(project, content.engine);
        let partials = self.partials(&scope, name.to_string(), &includes).await?;
        // What the partials labelled now would write out; a partial that
        // is not labelled yet is bounded when it is rendered or inlined.
        for text in body_texts(&content.body) {
            template::check_expansion(
                content.engine,
                text,
                &partials.sources,
                self.limits.max_output_bytes,
            )?;
        }
        Ok(template::variables(content.engine, &content.body)?)
    }

    /// Renders version `reference` of `name` with `variables`, for `format`'s
    /// API when one is given (it decides which chat history roles are taken).
    pub async fn render_version(
        &self,
        project: ProjectId,
        name: &PromptName,
        reference: &VersionRef,
        variables: &Value,
        format: Option<ProviderKind>,
    ) -> Result<RenderOutput, RenderError> {
        let version = self.registry.get_version(project, name, reference).await?;
        self.render_resolved(project, name, reference, version, variables, format)
            .await
    }

    /// Renders for a client: as [`Renderer::render_version`], except that a
    /// label an experiment splits renders the variant chosen for `unit`
    /// (see [`Registry::serve_version`]); evaluations render the label's own
    /// version instead.
    pub async fn render_served(
        &self,
        project: ProjectId,
        name: &PromptName,
        reference: &VersionRef,
        unit: Option<&str>,
        variables: &Value,
        format: Option<ProviderKind>,
    ) -> Result<(RenderOutput, Served), RenderError> {
        let served = self
            .registry
            .serve_version(project, name, reference, unit)
            .await?;
        let output = self
            .render_resolved(
                project,
                name,
                reference,
                served.version.clone(),
                variables,
                format,
            )
            .await?;
        Ok((output, served))
    }

    #[tracing::instrument(name = "render", skip_all, fields(
        promptreg.prompt = %name,
        promptreg.label = tracing::field::Empty,
        promptreg.version = tracing::field::Empty,
    ))]
    async fn render_resolved(
        &self,
        project: ProjectId,
        name: &PromptName,
        reference: &VersionRef,
        version: Arc<Version>,
        variables: &Value,
        format: Option<ProviderKind>,
    ) -> Result<RenderOutput, RenderError> {
        let span = tracing::Span::current();
        span.record(
            "promptreg.version",
            tracing::field::display(&version.version),
        );
        if let VersionRef::Label(label) = reference {
            span.record("promptreg.label", label.as_str());
        }
        self.validate_variables(&version, variables)?;
        check_history_roles(&version.content.body, variables, format)?;
        let content = &version.content;
        let includes = self.includes_of(&version)?;
        let scope = Scope::rendering(project, content.engine, self.partials_label(reference));
        let partials = self.partials(&scope, name.to_string(), &includes).await?;

        let mut key = Vec::with_capacity(partials.ids.len() + 1);
        key.push(version.id);
        key.extend(&partials.ids);
        let hit = self.compiled.get(&key);
        metrics::cache_lookup(metrics::Cache::Template, hit.is_some());
        let compiled = match hit {
            Some(hit) => hit,
            None => {
                let compiled = Arc::new(CompiledBody::compile(
                    content.engine,
                    &content.body,
                    &partials.sources,
                    self.limits.clone(),
                )?);
                self.compiled.insert(key, compiled.clone());
                compiled
            }
        };
        let rendered = render_compiled(compiled, variables).await?;
        let mut resolved = vec![(version.prompt_name.clone(), version.version.clone())];
        resolved.extend(partials.resolved);
        Ok(RenderOutput {
            version,
            rendered,
            resolved,
        })
    }

    /// Renders content that is not stored (playground, CI preview); partials
    /// still come from the registry, at the default label unless pinned.
    pub async fn render_content(
        &self,
        project: ProjectId,
        content: &PromptContent,
        variables: &Value,
        format: Option<ProviderKind>,
    ) -> Result<(Rendered, Vec<(String, semver::Version)>), RenderError> {
        template::check(content.engine, &content.body)?;
        if let Some(schema) = &content.input_schema {
            let validator =
                jsonschema::draft202012::new(schema).map_err(|e| RenderError::InvalidSchema {
                    field: "input_schema",
                    message: e.to_string(),
                })?;
            check_against(&validator, variables)?;
        }
        check_history_roles(&content.body, variables, format)?;
        let includes = template::includes(content.engine, &content.body)?;
        let scope = Scope::rendering(project, content.engine, None);
        let partials = self
            .partials(&scope, "(unsaved)".to_owned(), &includes)
            .await?;
        let (engine, body, limits) = (content.engine, content.body.clone(), self.limits.clone());
        let sources = partials.sources;
        let rendered = off_the_runtime(variables, move |variables| {
            template::render(engine, &body, variables, &sources, &limits)
        })
        .await?;
        Ok((rendered, partials.resolved))
    }

    /// The version each partial `version` includes directly resolves to when
    /// it is rendered through `reference`, by the same rules as a render, as
    /// (include key, version); includes that do not resolve are left out.
    pub async fn direct_partials(
        &self,
        project: ProjectId,
        version: &Version,
        reference: &VersionRef,
    ) -> Result<HashMap<String, semver::Version>, RenderError> {
        let scope = Scope::rendering(
            project,
            version.content.engine,
            self.partials_label(reference),
        );
        let mut found = HashMap::new();
        for include in self.includes_of(version)?.iter() {
            if let Ok((partial, _)) = self.fetch_partial(&scope, include).await {
                found.insert(include.key(), partial.version.clone());
            }
        }
        Ok(found)
    }

    /// `version`'s body with every registry partial it includes written out
    /// in place (transitively), for clients that render templates themselves
    /// and know nothing of includes. An include written in another form than
    /// `{{> name}}` (handlebars) or `{% include "name" %}` (jinja) is kept.
    /// `label` is the one `version` was fetched through, if any: unpinned
    /// partials are taken there as a render of it would.
    pub async fn inline_partials(
        &self,
        project: ProjectId,
        version: &Version,
        label: Option<&LabelName>,
    ) -> Result<PromptBody, RenderError> {
        let includes = self.includes_of(version)?;
        if includes.is_empty() {
            return Ok(version.content.body.clone());
        }
        let engine = version.content.engine;
        let scope = Scope::rendering(
            project,
            engine,
            label.and_then(|l| self.partials_label(&VersionRef::Label(l.clone()))),
        );
        let partials = self
            .partials(&scope, version.prompt_name.clone(), &includes)
            .await?;
        let limit = self.limits.max_output_bytes;
        let inline = |text: &str| template::inline_includes(engine, text, &partials.sources, limit);
        Ok(match &version.content.body {
            PromptBody::Text(text) => PromptBody::Text(inline(text)?),
            PromptBody::Chat(messages) => PromptBody::Chat(
                messages
                    .iter()
                    .map(|message| {
                        Ok(match message {
                            ChatMessage::System { content } => ChatMessage::System {
                                content: inline(content)?,
                            },
                            ChatMessage::User { content } => ChatMessage::User {
                                content: inline(content)?,
                            },
                            ChatMessage::Assistant { content } => ChatMessage::Assistant {
                                content: inline(content)?,
                            },
                            placeholder @ ChatMessage::Placeholder { .. } => placeholder.clone(),
                        })
                    })
                    .collect::<Result<_, TemplateError>>()?,
            ),
        })
    }

    fn validate_variables(&self, version: &Version, variables: &Value) -> Result<(), RenderError> {
        let Some(schema) = &version.content.input_schema else {
            return Ok(());
        };
        let validator = match self.validators.get(&version.id) {
            Some(v) => v,
            None => {
                let v = Arc::new(jsonschema::draft202012::new(schema).map_err(|e| {
                    RenderError::InvalidSchema {
                        field: "input_schema",
                        message: e.to_string(),
                    }
                })?);
                self.validators.insert(version.id, v.clone());
                v
            }
        };
        check_against(&validator, variables)
    }

    fn includes_of(&self, version: &Version) -> Result<Arc<Vec<Include>>, RenderError> {
        if let Some(hit) = self.includes.get(&version.id) {
            return Ok(hit);
        }
        let found = Arc::new(template::includes(
            version.content.engine,
            &version.content.body,
        )?);
        self.includes.insert(version.id, found.clone());
        Ok(found)
    }

    /// Every partial `includes` names, transitively; `root` names the
    /// content in cycle and depth errors.
    async fn partials(
        &self,
        scope: &Scope,
        root: String,
        includes: &[Include],
    ) -> Result<Partials, RenderError> {
        let mut partials = Partials::default();
        if includes.is_empty() {
            return Ok(partials);
        }
        let mut chain = vec![root];
        self.resolve_includes(scope, includes, &mut chain, &mut partials)
            .await?;
        Ok(partials)
    }

    /// Fetches every partial `includes` names, depth first, refusing cycles
    /// and nesting deeper than [`MAX_INCLUDE_DEPTH`]. `chain` is the path of
    /// prompt names from the outer prompt to the one being resolved.
    fn resolve_includes<'a>(
        &'a self,
        scope: &'a Scope,
        includes: &'a [Include],
        chain: &'a mut Vec<String>,
        partials: &'a mut Partials,
    ) -> futures::future::BoxFuture<'a, Result<(), RenderError>> {
        Box::pin(async move {
            for include in includes {
                let mut path = chain.clone();
                path.push(include.prompt.clone());
                if chain.contains(&include.prompt) {
                    return Err(RenderError::IncludeCycle(path));
                }
                if chain.len() > MAX_INCLUDE_DEPTH {
                    return Err(RenderError::IncludeDepth(path));
                }
                let key = include.key();
                if partials.sources.contains_key(&key) {
                    continue;
                }
                let (partial, source) = match self.fetch_partial(scope, include).await {
                    Ok(found) => found,
                    Err(later) if scope.creating && later.resolves_later() => continue,
                    Err(e) => return Err(e),
                };
                partials.sources.insert(key, source);
                partials
                    .resolved
                    .push((partial.prompt_name.clone(), partial.version.clone()));
                partials.ids.push(partial.id);
                let nested = self.includes_of(&partial)?;
                chain.push(include.prompt.clone());
                let result = self.resolve_includes(scope, &nested, chain, partials).await;
                chain.pop();
                result?;
            }
            Ok(())
        })
    }

    async fn fetch_partial(
        &self,
        scope: &Scope,
        include: &Include,
    ) -> Result<(Arc<Version>, String), RenderError> {
        let invalid = |message: String| RenderError::IncludeInvalid {
            include: include.key(),
            message,
        };
        let name = PromptName::parse(&include.prompt).map_err(|e| invalid(e.0))?;
        let project = scope.project;
        let found = match (&include.reference, &scope.label) {
            (Some(raw), _) => {
                let pinned = VersionRef::parse(raw).map_err(|e| invalid(e.0))?;
                self.registry.get_version(project, &name, &pinned).await
            }
            (None, None) => {
                self.registry
                    .get_version(project, &name, &self.default_ref)
                    .await
            }
            (None, Some(label)) => match self.registry.get_version(project, &name, label).await {
                Err(StoreError::LabelNotFound { .. }) => {
                    match self
                        .registry
                        .get_version(project, &name, &self.default_ref)
                        .await
                    {
                        Err(StoreError::LabelNotFound { .. }) => {
                            return Err(RenderError::IncludeUnlabelled {
                                include: include.key(),
                                label: label.to_string(),
                                fallback: self.default_ref.to_string(),
                            })
                        }
                        other => other,
                    }
                }
                other => other,
            },
        };
        let partial = found.map_err(|source| RenderError::IncludeNotFound {
            include: include.key(),
            source,
        })?;
        let engine = scope.engine;
        if partial.content.engine != engine {
            return Err(invalid(format!(
                "it is a {} template; only {} partials can be included here",
                partial.content.engine.as_str(),
                engine.as_str()
            )));
        }
        let PromptBody::Text(source) = &partial.content.body else {
            return Err(invalid("a partial must be a text prompt".into()));
        };
        let source = source.clone();
        Ok((partial, source))
    }
}

/// The slice of a render's budget spent on the async worker that took the
/// request. A one-line template renders in microseconds, and a hand-off to
/// the blocking pool costs more than that (two thread wake-ups, and p99 grows
/// with every render queued behind another); a render that needs more than
/// the slice holds its worker up for at most this long, then starts again,
/// with the whole budget, on the blocking pool.
const INLINE_STEPS: u64 = 10_000;
const INLINE_TIME: std::time::Duration = std::time::Duration::from_millis(1);

/// Renders a cached template: here if it fits in the inline slice, else on
/// the blocking pool.
async fn render_compiled(
    compiled: Arc<CompiledBody>,
    variables: &Value,
) -> Result<Rendered, RenderError> {
    if let Some(rendered) = compiled.render_within(variables, INLINE_STEPS, INLINE_TIME) {
        return Ok(rendered?);
    }
    off_the_runtime(variables, move |variables| compiled.render(variables)).await
}

/// Runs a render on the blocking pool, so that a slow one (up to the
/// render time limit) never holds up the async workers other requests run
/// on.
async fn off_the_runtime(
    variables: &Value,
    render: impl FnOnce(&Value) -> Result<Rendered, TemplateError> + Send + 'static,
) -> Result<Rendered, RenderError> {
    let variables = variables.clone();
    match tokio::task::spawn_blocking(move || render(&variables)).await {
        Ok(rendered) => Ok(rendered?),
        Err(err) => match err.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            // Only when the runtime shuts down.
            Err(_) => Err(RenderError::Store(StoreError::Unavailable(
                "shutting down".to_owned(),
            ))),
        },
    }
}

/// The template texts of a body: the text, or each chat message's content.
fn body_texts(body: &PromptBody) -> Vec<&str> {
    match body {
        PromptBody::Text(text) => vec![text.as_str()],
        PromptBody::Chat(messages) => messages
            .iter()
            .filter_map(|message| match message {
                ChatMessage::System { content }
                | ChatMessage::User { content }
                | ChatMessage::Assistant { content } => Some(content.as_str()),
                ChatMessage::Placeholder { .. } => None,
            })
            .collect(),
    }
}

fn joined(errors: &[(String, String)]) -> String {
    errors
        .iter()
        .map(|(field, message)| format!("{field}: {message}"))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Every message a placeholder splices in has a role `format` takes.
/// What is not a message at all is the template's to refuse.
fn check_history_roles(
    body: &PromptBody,
    variables: &Value,
    format: Option<ProviderKind>,
) -> Result<(), RenderError> {
    let PromptBody::Chat(messages) = body else {
        return Ok(());
    };
    let allowed = history_roles(format);
    let mut checked: Vec<&str> = Vec::new();
    let mut errors = Vec::new();
    for message in messages {
        let ChatMessage::Placeholder { name } = message else {
            continue;
        };
        if checked.contains(&name.as_str()) {
            continue;
        }
        checked.push(name);
        let Some(Value::Array(items)) = variables.get(name) else {
            continue;
        };
        for (i, item) in items.iter().enumerate() {
            let Some(role) = item.get("role").and_then(Value::as_str) else {
                continue;
            };
            if !allowed.contains(&role) {
                errors.push((
                    format!("variables.{name}[{i}].role"),
                    format!("role {role:?} is not one of {}", allowed.join(", ")),
                ));
            }
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(RenderError::InvalidVariables(errors))
    }
}

fn check_against(validator: &jsonschema::Validator, variables: &Value) -> Result<(), RenderError> {
    let errors: Vec<(String, String)> = validator
        .iter_errors(variables)
        .map(|e| {
            let pointer = e.instance_path().as_str().to_owned();
            (
                if pointer.is_empty() {
                    "/".to_owned()
                } else {
                    pointer
                },
                e.to_string(),
            )
        })
        .collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(RenderError::InvalidVariables(errors))
    }
}
