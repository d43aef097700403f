//! Rendering: resolves a version and the registry partials it includes,
//! validates the caller's variables, and renders with compiled templates
//! kept in memory. Also checks new content before it is stored (syntax,
//! schemas, include cycles) and extracts its variables.
//!
//! Compiled templates are cached by the version id together with the ids of
//! the partial versions they were compiled with, so a partial's label move
//! compiles anew instead of serving a stale include.

use std::collections::HashMap;
use std::sync::Arc;

use moka::sync::Cache;
use serde_json::Value;
use uuid::Uuid;

use crate::domain::content::PromptBody;
use crate::domain::{
    ChatMessage, Engine, LabelName, ProjectId, PromptContent, PromptName, Version, VersionRef,
};
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
    #[error("the variables do not match the input schema")]
    InvalidVariables(Vec<(String, String)>),
    #[error("include cycle: {}", .0.join(" -> "))]
    IncludeCycle(Vec<String>),
    #[error("includes nest deeper than {MAX_INCLUDE_DEPTH} levels: {}", .0.join(" -> "))]
    IncludeDepth(Vec<String>),
    #[error("included prompt {include:?}: {message}")]
    IncludeInvalid { include: String, message: String },
    #[error("included prompt {include:?} cannot be resolved: {source}")]
    IncludeNotFound { include: String, source: StoreError },
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

/// Partials resolved for one body: sources by include key, and what they were.
#[derive(Default)]
struct Partials {
    sources: HashMap<String, String>,
    resolved: Vec<(String, semver::Version)>,
    ids: Vec<Uuid>,
}

pub struct Renderer {
    registry: Arc<Registry>,
    default_label: LabelName,
    limits: Limits,
    compiled: Cache<Vec<Uuid>, Arc<CompiledBody>>,
    validators: Cache<Uuid, Arc<jsonschema::Validator>>,
    /// What each (immutable) version includes, so renders do not re-parse.
    includes: Cache<Uuid, Arc<Vec<Include>>>,
}

impl Renderer {
    pub fn new(registry: Arc<Registry>, default_label: LabelName, max_compiled: u64) -> Self {
        Self {
            registry,
            default_label,
            limits: Limits::default(),
            compiled: Cache::new(max_compiled),
            validators: Cache::new(max_compiled),
            includes: Cache::new(max_compiled),
        }
    }

    pub fn default_ref(&self) -> VersionRef {
        VersionRef::Label(self.default_label.clone())
    }

    /// Checks content about to become a version of `name` and returns the
    /// variables it reads. Cycles through prompts that exist are refused now;
    /// includes of prompts that do not exist yet are resolved at render time.
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
        match self
            .partials(project, name.to_string(), content.engine, &includes)
            .await
        {
            Ok(_) | Err(RenderError::IncludeNotFound { .. }) => {}
            Err(other) => return Err(other),
        }
        Ok(template::variables(content.engine, &content.body)?)
    }

    /// Renders version `reference` of `name` with `variables`.
    #[tracing::instrument(name = "render", skip_all, fields(
        promptreg.prompt = %name,
        promptreg.label = tracing::field::Empty,
        promptreg.version = tracing::field::Empty,
    ))]
    pub async fn render_version(
        &self,
        project: ProjectId,
        name: &PromptName,
        reference: &VersionRef,
        variables: &Value,
    ) -> Result<RenderOutput, RenderError> {
        let version = self.registry.get_version(project, name, reference).await?;
        let span = tracing::Span::current();
        span.record(
            "promptreg.version",
            tracing::field::display(&version.version),
        );
        if let VersionRef::Label(label) = reference {
            span.record("promptreg.label", label.as_str());
        }
        self.validate_variables(&version, variables)?;
        let content = &version.content;
        let includes = self.includes_of(&version)?;
        let partials = self
            .partials(project, name.to_string(), content.engine, &includes)
            .await?;

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
        let rendered = compiled.render(variables)?;
        let mut resolved = vec![(version.prompt_name.clone(), version.version.clone())];
        resolved.extend(partials.resolved);
        Ok(RenderOutput {
            version,
            rendered,
            resolved,
        })
    }

    /// Renders content that is not stored (playground, CI preview); partials
    /// still come from the registry.
    pub async fn render_content(
        &self,
        project: ProjectId,
        content: &PromptContent,
        variables: &Value,
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
        let includes = template::includes(content.engine, &content.body)?;
        let partials = self
            .partials(project, "(unsaved)".to_owned(), content.engine, &includes)
            .await?;
        let rendered = template::render(
            content.engine,
            &content.body,
            variables,
            &partials.sources,
            &self.limits,
        )?;
        Ok((rendered, partials.resolved))
    }

    /// `version`'s body with every registry partial it includes written out
    /// in place (transitively), for clients that render templates themselves
    /// and know nothing of includes. An include written in another form than
    /// `{{> name}}` (handlebars) or `{% include "name" %}` (jinja) is kept.
    pub async fn inline_partials(
        &self,
        project: ProjectId,
        version: &Version,
    ) -> Result<PromptBody, RenderError> {
        let includes = self.includes_of(version)?;
        if includes.is_empty() {
            return Ok(version.content.body.clone());
        }
        let engine = version.content.engine;
        let partials = self
            .partials(project, version.prompt_name.clone(), engine, &includes)
            .await?;
        let inline = |text: &str| template::inline_includes(engine, text, &partials.sources);
        Ok(match &version.content.body {
            PromptBody::Text(text) => PromptBody::Text(inline(text)),
            PromptBody::Chat(messages) => PromptBody::Chat(
                messages
                    .iter()
                    .map(|message| match message {
                        ChatMessage::System { content } => ChatMessage::System {
                            content: inline(content),
                        },
                        ChatMessage::User { content } => ChatMessage::User {
                            content: inline(content),
                        },
                        ChatMessage::Assistant { content } => ChatMessage::Assistant {
                            content: inline(content),
                        },
                        placeholder @ ChatMessage::Placeholder { .. } => placeholder.clone(),
                    })
                    .collect(),
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
        project: ProjectId,
        root: String,
        engine: Engine,
        includes: &[Include],
    ) -> Result<Partials, RenderError> {
        let mut partials = Partials::default();
        if includes.is_empty() {
            return Ok(partials);
        }
        let mut chain = vec![root];
        self.resolve_includes(project, engine, includes, &mut chain, &mut partials)
            .await?;
        Ok(partials)
    }

    /// Fetches every partial `includes` names, depth first, refusing cycles
    /// and nesting deeper than [`MAX_INCLUDE_DEPTH`]. `chain` is the path of
    /// prompt names from the outer prompt to the one being resolved.
    fn resolve_includes<'a>(
        &'a self,
        project: ProjectId,
        engine: Engine,
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
                let (partial, source) = self.fetch_partial(project, engine, include).await?;
                partials.sources.insert(key, source);
                partials
                    .resolved
                    .push((partial.prompt_name.clone(), partial.version.clone()));
                partials.ids.push(partial.id);
                let nested = self.includes_of(&partial)?;
                chain.push(include.prompt.clone());
                let result = self
                    .resolve_includes(project, engine, &nested, chain, partials)
                    .await;
                chain.pop();
                result?;
            }
            Ok(())
        })
    }

    async fn fetch_partial(
        &self,
        project: ProjectId,
        engine: Engine,
        include: &Include,
    ) -> Result<(Arc<Version>, String), RenderError> {
        let invalid = |message: String| RenderError::IncludeInvalid {
            include: include.key(),
            message,
        };
        let name = PromptName::parse(&include.prompt).map_err(|e| invalid(e.0))?;
        let reference = match &include.reference {
            Some(raw) => VersionRef::parse(raw).map_err(|e| invalid(e.0))?,
            None => self.default_ref(),
        };
        let partial = self
            .registry
            .get_version(project, &name, &reference)
            .await
            .map_err(|source| RenderError::IncludeNotFound {
                include: include.key(),
                source,
            })?;
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
