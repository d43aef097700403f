//! Template engines (handlebars, jinja): syntax checks, variable and include
//! extraction, and rendering with registry partials supplied by the caller.
//! Everything here is pure and synchronous: no I/O, no store, no HTTP. The
//! caller resolves includes to partial sources (and guards cycles and depth);
//! this module only renders what it is handed, strictly: every variable a
//! body reads must be given, and the output, the work and the time of a
//! render are bounded by [`Limits`].

mod analysis;
mod budget;
#[cfg(test)]
mod engine_tests;
mod hbs;
mod hbs_syntax;
pub mod highlight;
mod jinja;
mod output;

use std::collections::{BTreeSet, HashMap};

use serde_json::Value;

use crate::domain::content::PromptBody;
use crate::domain::{json_kind, ChatMessage, Engine};
use analysis::{is_given, Analysis, Problem};
use output::Failure;

/// A reference to another registry prompt used as a partial.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Include {
    pub prompt: String,
    /// A semver ("1.2.0") or a label; `None` means the caller's default label.
    pub reference: Option<String>,
}

impl Include {
    /// The key the partial is registered under in a render: exactly the text
    /// the template wrote, e.g. "common/safety" or "common/safety@1.2.0".
    pub fn key(&self) -> String {
        match &self.reference {
            Some(reference) => format!("{}@{reference}", self.prompt),
            None => self.prompt.clone(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TemplateError {
    /// `message_index`: `Some(i)` for the i-th chat message (0-based); line
    /// and column are 1-based when the engine reports them.
    #[error("{}", syntax_text(.message_index, .line, .column, .message))]
    Syntax {
        message_index: Option<usize>,
        line: Option<usize>,
        column: Option<usize>,
        message: String,
    },
    /// Every variable the body reads that the caller did not give (dotted
    /// paths), sorted and deduplicated. Placeholders' variables included.
    #[error("missing variables: {}", .0.join(", "))]
    MissingVariables(Vec<String>),
    /// A placeholder's variable is not an array of `{role, content}` objects;
    /// `field` is the variable name.
    #[error("placeholder {field:?}: {message}")]
    InvalidPlaceholder { field: String, message: String },
    #[error("the rendered output exceeds {limit} bytes")]
    OutputTooLarge { limit: usize },
    /// The render took more steps or more time than [`Limits`] allow;
    /// `limit` is `steps` or `time`.
    #[error("{message}")]
    RenderLimit {
        limit: &'static str,
        message: String,
    },
    /// Any other render-time failure (wrong type for `#each`, a helper
    /// error…): `message` says what and where.
    #[error("{}{message}", in_message(.message_index))]
    Render {
        message_index: Option<usize>,
        message: String,
    },
}

fn in_message(index: &Option<usize>) -> String {
    index.map_or_else(String::new, |i| format!("message {i}: "))
}

fn syntax_text(
    index: &Option<usize>,
    line: &Option<usize>,
    column: &Option<usize>,
    message: &str,
) -> String {
    let at = match (line, column) {
        (Some(line), Some(column)) => format!(" at line {line}, column {column}"),
        (Some(line), None) => format!(" at line {line}"),
        _ => String::new(),
    };
    format!("{}syntax error{at}: {message}", in_message(index))
}

impl Problem {
    fn in_message(self, message_index: Option<usize>) -> TemplateError {
        TemplateError::Syntax {
            message_index,
            line: self.line,
            column: self.column,
            message: self.message,
        }
    }
}

/// Bounds on one render.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// The most bytes a render may produce (template output; placeholder
    /// messages are the caller's own and not counted). Also bounds the
    /// size of a template with its partials written out in place.
    pub max_output_bytes: usize,
    /// The most steps a render may take: jinja's fuel (instructions and
    /// allocations); for handlebars, loop iterations and entries into
    /// blocks and partials.
    pub max_steps: u64,
    /// The longest a render may take.
    pub timeout: std::time::Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_output_bytes: 1024 * 1024,
            max_steps: 1_000_000,
            timeout: std::time::Duration::from_secs(1),
        }
    }
}

/// One rendered chat message. Template messages have role system, user or
/// assistant; expanded placeholder messages keep the caller's role and content.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RenderedMessage {
    pub role: String,
    pub content: String,
}

/// A rendered body: text, or chat messages with placeholders expanded.
#[derive(Debug, Clone, PartialEq)]
pub enum Rendered {
    Text(String),
    Chat(Vec<RenderedMessage>),
}

/// Checks the syntax of every template in the body (each chat message's
/// content), that includes are literal and well named, and that every helper
/// (handlebars) or filter and test (jinja) exists. Errors name the message
/// index, line and column.
pub fn check(engine: Engine, body: &PromptBody) -> Result<(), TemplateError> {
    for (index, analysis) in analyze_body(engine, body)? {
        if let Some(problem) = analysis.unknown_names.into_iter().next() {
            return Err(problem.in_message(index));
        }
    }
    Ok(())
}

/// The variables the body reads from the caller's input: sorted, deduplicated
/// top-level names and dotted paths (`customer.name`). Loop-local names
/// (`this`, `@index`, block params, jinja loop targets, `set` and macro
/// names) are not inputs; a loop's list is. Placeholder names are variables.
/// Partials' own variables are not included.
pub fn variables(engine: Engine, body: &PromptBody) -> Result<Vec<String>, TemplateError> {
    let mut names = BTreeSet::new();
    for (_, analysis) in analyze_body(engine, body)? {
        names.extend(analysis.reads.iter().map(analysis::VarRead::dotted));
    }
    names.extend(placeholder_names(body).map(str::to_owned));
    Ok(names.into_iter().collect())
}

/// The registry partials the body includes, sorted and deduplicated.
/// Handlebars: `{{> common/safety}}`, `{{> common/safety@1.2.0}}`; jinja:
/// `{% include "common/safety" %}`, `{% include "common/safety@1.2.0" %}`.
/// A computed name is a `Syntax` error.
pub fn includes(engine: Engine, body: &PromptBody) -> Result<Vec<Include>, TemplateError> {
    let mut found = BTreeSet::new();
    for (_, analysis) in analyze_body(engine, body)? {
        found.extend(analysis.includes);
    }
    Ok(found.into_iter().collect())
}

fn include_pattern(engine: Engine) -> &'static regex::Regex {
    static HANDLEBARS: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
        regex::Regex::new(r"\{\{~?>\s*([A-Za-z0-9@._/-]+)\s*~?\}\}").expect("constant regex")
    });
    static JINJA: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
        regex::Regex::new(r#"\{%-?\s*include\s+["']([A-Za-z0-9@._/-]+)["']\s*-?%\}"#)
            .expect("constant regex")
    });
    match engine {
        Engine::Handlebars => &HANDLEBARS,
        Engine::Jinja => &JINJA,
    }
}

/// Includes are written out this many rounds at most.
const MAX_INLINE_DEPTH: usize = 10;

/// `text` with each include of a partial in `partials` (keyed by
/// [`Include::key`]) replaced by that partial's source, repeatedly, so that
/// nested includes are written out too (`MAX_INLINE_DEPTH` rounds at most).
/// `OutputTooLarge` when the result would exceed `limit` bytes (see
/// [`check_expansion`]), before anything is written out.
pub fn inline_includes(
    engine: Engine,
    text: &str,
    partials: &HashMap<String, String>,
    limit: usize,
) -> Result<String, TemplateError> {
    check_expansion(engine, text, partials, limit)?;
    let pattern = include_pattern(engine);
    let mut text = text.to_owned();
    for _ in 0..MAX_INLINE_DEPTH {
        let mut changed = false;
        let next = pattern.replace_all(&text, |caps: &regex::Captures<'_>| {
            match partials.get(&caps[1]) {
                Some(source) => {
                    changed = true;
                    source.clone()
                }
                None => caps[0].to_owned(),
            }
        });
        let next = next.into_owned();
        if !changed {
            break;
        }
        text = next;
    }
    Ok(text)
}

/// Refuses `text` when, with every include of a partial in `partials`
/// written out in place (transitively), it would exceed `limit` bytes: one
/// bound for every path that expands partials (renders, and the clients
/// that are sent templates with partials inlined). An include counts at
/// least one byte, so partials that only include partials still add up.
pub fn check_expansion(
    engine: Engine,
    text: &str,
    partials: &HashMap<String, String>,
    limit: usize,
) -> Result<(), TemplateError> {
    if partials.is_empty() {
        // Nothing is written out: the text is as large as it was accepted.
        return Ok(());
    }
    let mut sizes = HashMap::new();
    let size = expanded_size(engine, text, partials, &mut sizes, 0);
    if size > limit {
        return Err(TemplateError::OutputTooLarge { limit });
    }
    Ok(())
}

/// The size of `text` written out; `sizes` remembers each partial's.
fn expanded_size(
    engine: Engine,
    text: &str,
    partials: &HashMap<String, String>,
    sizes: &mut HashMap<String, usize>,
    depth: usize,
) -> usize {
    let mut size = text.len();
    if depth >= MAX_INLINE_DEPTH {
        return size;
    }
    for caps in include_pattern(engine).captures_iter(text) {
        let key = &caps[1];
        let Some(source) = partials.get(key) else {
            continue;
        };
        let written = match sizes.get(key) {
            Some(known) => *known,
            None => {
                let known = expanded_size(engine, source, partials, sizes, depth + 1);
                sizes.insert(key.to_owned(), known);
                known
            }
        };
        size = (size - caps[0].len()).saturating_add(written.max(1));
    }
    size
}

/// Renders `body` with `variables` (a JSON object). `partials` maps
/// [`Include::key`] to that partial's source, every transitive one included.
/// Compiles and renders once; use [`CompiledBody`] to render many times.
pub fn render(
    engine: Engine,
    body: &PromptBody,
    variables: &Value,
    partials: &HashMap<String, String>,
    limits: &Limits,
) -> Result<Rendered, TemplateError> {
    CompiledBody::compile(engine, body, partials, limits.clone())?.render(variables)
}

/// The templates of a body, each with its chat message index.
fn templates(body: &PromptBody) -> Vec<(Option<usize>, &str)> {
    match body {
        PromptBody::Text(text) => vec![(None, text.as_str())],
        PromptBody::Chat(messages) => messages
            .iter()
            .enumerate()
            .filter_map(|(i, message)| match message {
                ChatMessage::System { content }
                | ChatMessage::User { content }
                | ChatMessage::Assistant { content } => Some((Some(i), content.as_str())),
                ChatMessage::Placeholder { .. } => None,
            })
            .collect(),
    }
}

fn placeholder_names(body: &PromptBody) -> impl Iterator<Item = &str> {
    let messages = match body {
        PromptBody::Chat(messages) => messages.as_slice(),
        PromptBody::Text(_) => &[],
    };
    messages.iter().filter_map(|message| match message {
        ChatMessage::Placeholder { name } => Some(name.as_str()),
        _ => None,
    })
}

fn analyze_body(
    engine: Engine,
    body: &PromptBody,
) -> Result<Vec<(Option<usize>, Analysis)>, TemplateError> {
    templates(body)
        .into_iter()
        .map(|(index, source)| {
            let analysis = match engine {
                Engine::Handlebars => hbs::parse(source).and_then(|t| hbs::analyze(&t)),
                Engine::Jinja => jinja::analyze(source),
            };
            analysis
                .map(|a| (index, a))
                .map_err(|problem| problem.in_message(index))
        })
        .collect()
}

/// A body compiled once (templates parsed, partials registered) and rendered
/// many times. `Send + Sync`, to be shared from a cache as `Arc<CompiledBody>`.
pub struct CompiledBody {
    parts: Vec<Part>,
    is_chat: bool,
    /// Input paths the body cannot do without, sorted by dotted name.
    required: Vec<(String, Vec<String>)>,
    renderer: Renderer,
    limits: Limits,
}

/// One piece of output, in body order.
enum Part {
    Template {
        index: Option<usize>,
        role: &'static str,
        name: String,
    },
    Placeholder {
        variable: String,
    },
}

enum Renderer {
    Handlebars(hbs::Renderer),
    Jinja(jinja::Renderer),
}

impl Renderer {
    /// Compiles one body template into the engine and records the input
    /// paths it cannot do without.
    fn add(
        &mut self,
        index: Option<usize>,
        role: &'static str,
        source: &str,
        required: &mut BTreeSet<(String, Vec<String>)>,
    ) -> Result<Part, TemplateError> {
        // Body template names cannot collide with partial keys (prompt names).
        let name = index.map_or_else(|| "<body>".to_owned(), |i| format!("<message {i}>"));
        let analysis = match self {
            Renderer::Handlebars(r) => {
                let template = hbs::parse(source).map_err(|p| p.in_message(index))?;
                let analysis = hbs::analyze(&template).map_err(|p| p.in_message(index))?;
                r.add(&name, template);
                analysis
            }
            Renderer::Jinja(r) => {
                let analysis = jinja::analyze(source).map_err(|p| p.in_message(index))?;
                r.add(&name, source).map_err(|p| p.in_message(index))?;
                analysis
            }
        };
        required.extend(
            analysis
                .reads
                .into_iter()
                .filter(|read| read.required)
                .map(|read| (read.dotted(), read.path)),
        );
        Ok(Part::Template { index, role, name })
    }
}

// The server keeps compiled bodies in a cache shared across threads.
const _: fn() = || {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<handlebars::Handlebars<'static>>();
    assert_send_sync::<minijinja::Environment<'static>>();
    assert_send_sync::<CompiledBody>();
};

impl CompiledBody {
    pub fn compile(
        engine: Engine,
        body: &PromptBody,
        partials: &HashMap<String, String>,
        limits: Limits,
    ) -> Result<Self, TemplateError> {
        for (_, source) in templates(body) {
            check_expansion(engine, source, partials, limits.max_output_bytes)?;
        }
        let mut renderer = match engine {
            Engine::Handlebars => Renderer::Handlebars(hbs::Renderer::new(partials)?),
            Engine::Jinja => Renderer::Jinja(jinja::Renderer::new(partials, limits.max_steps)?),
        };
        let mut required = BTreeSet::new();
        let mut parts = Vec::new();
        match body {
            PromptBody::Text(source) => {
                parts.push(renderer.add(None, "", source, &mut required)?);
            }
            PromptBody::Chat(messages) => {
                for (i, message) in messages.iter().enumerate() {
                    let part = match message {
                        ChatMessage::System { content }
                        | ChatMessage::User { content }
                        | ChatMessage::Assistant { content } => {
                            renderer.add(Some(i), message.role(), content, &mut required)?
                        }
                        ChatMessage::Placeholder { name } => {
                            required.insert((name.clone(), vec![name.clone()]));
                            Part::Placeholder {
                                variable: name.clone(),
                            }
                        }
                    };
                    parts.push(part);
                }
            }
        }
        Ok(Self {
            parts,
            is_chat: matches!(body, PromptBody::Chat(_)),
            required: required.into_iter().collect(),
            renderer,
            limits,
        })
    }

    pub fn render(&self, variables: &Value) -> Result<Rendered, TemplateError> {
        let (result, exceeded) =
            self.render_metered(variables, self.limits.max_steps, self.limits.timeout);
        match exceeded {
            Some(exceeded) => Err(limit_error(exceeded)),
            None => result,
        }
    }

    /// Renders within a slice of this template's limits (for each, the
    /// smaller); `None` when only the slice ran out, or the thread's stack,
    /// so that the caller can render again with the whole budget on a thread
    /// of its own. A render has no effects, so running it again changes
    /// nothing but the time spent.
    pub fn render_within(
        &self,
        variables: &Value,
        steps: u64,
        time: std::time::Duration,
    ) -> Option<Result<Rendered, TemplateError>> {
        let steps = steps.min(self.limits.max_steps);
        let time = time.min(self.limits.timeout);
        let (result, exceeded) = self.render_metered(variables, steps, time);
        match exceeded {
            None => Some(result),
            Some(budget::Exceeded::Steps(_)) if steps < self.limits.max_steps => None,
            Some(budget::Exceeded::Time(_)) if time < self.limits.timeout => None,
            Some(budget::Exceeded::Depth(_)) => None,
            Some(exceeded) => Some(Err(limit_error(exceeded))),
        }
    }

    /// One render with a budget of `steps` and `time`, and the limit it ran
    /// into, if any.
    fn render_metered(
        &self,
        variables: &Value,
        steps: u64,
        time: std::time::Duration,
    ) -> (Result<Rendered, TemplateError>, Option<budget::Exceeded>) {
        let mut missing: Vec<String> = self
            .required
            .iter()
            .filter(|(_, path)| !is_given(variables, path))
            .map(|(dotted, _)| dotted.clone())
            .collect();
        // Two paths can share a dotted name (`a["b.c"]`, `a.b.c`); list it once.
        missing.dedup();
        if !missing.is_empty() {
            return (Err(TemplateError::MissingVariables(missing)), None);
        }
        // One budget of steps and time for the whole body.
        budget::metered(steps, time, || match &self.renderer {
            Renderer::Handlebars(r) => {
                let input = hbs::Renderer::prepare(variables);
                self.assemble(variables, |name, budget| r.render(&input, name, budget))
            }
            Renderer::Jinja(r) => {
                let input = jinja::Renderer::prepare(variables);
                self.assemble(variables, |name, budget| r.render(&input, name, budget))
            }
        })
    }

    /// Renders each part in order, within one output budget for the whole body.
    fn assemble(
        &self,
        variables: &Value,
        mut render_one: impl FnMut(&str, usize) -> Result<String, Failure>,
    ) -> Result<Rendered, TemplateError> {
        let limit = self.limits.max_output_bytes;
        let mut used = 0;
        let mut messages = Vec::new();
        for part in &self.parts {
            match part {
                Part::Template { index, role, name } => {
                    let content =
                        render_one(name, limit - used).map_err(|failure| match failure {
                            Failure::TooLarge => TemplateError::OutputTooLarge { limit },
                            Failure::Limit(exceeded) => limit_error(exceeded),
                            Failure::Message(message) => TemplateError::Render {
                                message_index: *index,
                                message,
                            },
                        })?;
                    used += content.len();
                    if !self.is_chat {
                        return Ok(Rendered::Text(content));
                    }
                    messages.push(RenderedMessage {
                        role: (*role).to_owned(),
                        content,
                    });
                }
                Part::Placeholder { variable } => {
                    messages.extend(expand_placeholder(variable, variables)?);
                }
            }
        }
        Ok(Rendered::Chat(messages))
    }
}

fn limit_error(exceeded: budget::Exceeded) -> TemplateError {
    TemplateError::RenderLimit {
        limit: exceeded.name(),
        message: exceeded.describe(),
    }
}

/// The caller's messages for a placeholder, roles and contents kept as given.
fn expand_placeholder(
    variable: &str,
    variables: &Value,
) -> Result<Vec<RenderedMessage>, TemplateError> {
    let invalid = |message: String| TemplateError::InvalidPlaceholder {
        field: variable.to_owned(),
        message,
    };
    let items = match variables.get(variable) {
        Some(Value::Array(items)) => items,
        Some(other) => {
            return Err(invalid(format!(
                "must be an array of {{role, content}} messages, not {}",
                json_kind(other)
            )))
        }
        None => return Err(invalid("is missing".to_owned())),
    };
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let text = |field: &str| item.get(field).and_then(Value::as_str);
            match (text("role"), text("content")) {
                (Some(role), Some(content)) => Ok(RenderedMessage {
                    role: role.to_owned(),
                    content: content.to_owned(),
                }),
                _ => Err(invalid(format!(
                    "item {i} must be an object with string `role` and `content`"
                ))),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn include_keys_are_the_text_the_template_wrote() {
        let pinned = Include {
            prompt: "common/safety".to_owned(),
            reference: Some("1.2.0".to_owned()),
        };
        assert_eq!(pinned.key(), "common/safety@1.2.0");
        let default = Include {
            prompt: "common/safety".to_owned(),
            reference: None,
        };
        assert_eq!(default.key(), "common/safety");
    }

    #[test]
    fn errors_display_where_they_happened() {
        let err = TemplateError::Syntax {
            message_index: Some(1),
            line: Some(2),
            column: Some(3),
            message: "oops".to_owned(),
        };
        assert_eq!(
            err.to_string(),
            "message 1: syntax error at line 2, column 3: oops"
        );
        let err = TemplateError::MissingVariables(vec!["a".to_owned(), "b.c".to_owned()]);
        assert_eq!(err.to_string(), "missing variables: a, b.c");
    }

    #[test]
    fn includes_are_inlined_transitively_and_unknown_ones_kept() {
        let partials: HashMap<String, String> = [
            ("common/safety", "Be safe, {{name}}. {{> common/tone}}"),
            ("common/tone", "Stay calm."),
            ("common/x@1.0.0", "X"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        assert_eq!(
            inline_includes(
                Engine::Handlebars,
                "Hi. {{> common/safety}} {{~> common/x@1.0.0 ~}} {{> other}} {{name}}",
                &partials,
                1000
            ),
            Ok("Hi. Be safe, {{name}}. Stay calm. X {{> other}} {{name}}".to_owned())
        );
        assert_eq!(
            inline_includes(
                Engine::Jinja,
                "{% include \"common/tone\" %} {%- include 'common/x@1.0.0' -%}",
                &partials,
                1000
            ),
            Ok("Stay calm. X".to_owned())
        );
    }

    #[test]
    fn a_fan_out_of_partials_is_refused_before_it_is_written_out() {
        let partials: HashMap<String, String> = [
            ("f0".to_owned(), "x".repeat(100)),
            ("f1".to_owned(), "{{> f0}}".repeat(300)),
            ("e0".to_owned(), String::new()),
            ("e1".to_owned(), "{{> e0}}".repeat(300)),
        ]
        .into_iter()
        .collect();
        let bomb = "{{> f1}}".repeat(300);
        let too_large = Err(TemplateError::OutputTooLarge { limit: 1_000_000 });
        assert_eq!(
            inline_includes(Engine::Handlebars, &bomb, &partials, 1_000_000),
            too_large
        );
        // Empty partials still count: including them is work.
        let empty = "{{> e1}}".repeat(300);
        assert_eq!(
            check_expansion(Engine::Handlebars, &empty, &partials, 50_000),
            Err(TemplateError::OutputTooLarge { limit: 50_000 })
        );
        assert_eq!(
            check_expansion(Engine::Handlebars, "{{> f1}}", &partials, 30_000),
            Ok(())
        );
        let body = PromptBody::Text(bomb);
        assert!(matches!(
            render(
                Engine::Handlebars,
                &body,
                &Value::Null,
                &partials,
                &Limits::default()
            ),
            Err(TemplateError::OutputTooLarge { .. })
        ));
    }

    #[test]
    fn a_handlebars_loop_bomb_stops_at_the_step_limit() {
        let body = PromptBody::Text(
            "{{#each a}}{{#each ../a}}{{#each ../../a}}{{/each}}{{/each}}{{/each}}".to_owned(),
        );
        let vars = serde_json::json!({"a": (0..600).collect::<Vec<_>>()});
        // Time enough that the steps run out first, however slow the machine.
        let patient = Limits {
            timeout: std::time::Duration::from_secs(120),
            ..Limits::default()
        };
        let err = render(Engine::Handlebars, &body, &vars, &HashMap::new(), &patient)
            .expect_err("too many steps");
        assert!(
            matches!(err, TemplateError::RenderLimit { limit: "steps", .. }),
            "{err:?}"
        );
        let slow = Limits {
            max_steps: u64::MAX,
            timeout: std::time::Duration::from_millis(50),
            ..Limits::default()
        };
        let err =
            render(Engine::Handlebars, &body, &vars, &HashMap::new(), &slow).expect_err("too slow");
        assert!(
            matches!(err, TemplateError::RenderLimit { limit: "time", .. }),
            "{err:?}"
        );
    }

    #[test]
    fn a_render_past_its_inline_slice_is_left_for_the_whole_budget() {
        let body = PromptBody::Text("{{#each a}}{{#each ../a}}.{{/each}}{{/each}}".to_owned());
        let vars = serde_json::json!({"a": (0..100).collect::<Vec<_>>()});
        let compiled = CompiledBody::compile(
            Engine::Handlebars,
            &body,
            &HashMap::new(),
            Limits::default(),
        )
        .expect("compiles");
        let minute = std::time::Duration::from_secs(60);
        // Over 10,000 steps: more than a slice of 1,000, well within the limit.
        assert!(compiled.render_within(&vars, 1_000, minute).is_none());
        let Some(Ok(Rendered::Text(text))) = compiled.render_within(&vars, 100_000, minute) else {
            panic!("renders within a slice of 100,000 steps");
        };
        assert_eq!(text.len(), 10_000);
        // A slice as large as the limit is the limit: running out is final.
        let tight = CompiledBody::compile(
            Engine::Handlebars,
            &body,
            &HashMap::new(),
            Limits {
                max_steps: 1_000,
                ..Limits::default()
            },
        )
        .expect("compiles");
        let Some(Err(err)) = tight.render_within(&vars, 10_000, minute) else {
            panic!("the step limit is reached within the slice");
        };
        assert!(
            matches!(err, TemplateError::RenderLimit { limit: "steps", .. }),
            "{err:?}"
        );
        // Errors other than running out of the slice are answered at once.
        let missing = compiled.render_within(&serde_json::json!({}), 10, minute);
        assert!(
            matches!(missing, Some(Err(TemplateError::MissingVariables(_)))),
            "{missing:?}"
        );
    }

    #[test]
    fn partials_that_include_each_other_stop_before_the_stack_overflows() {
        let body = PromptBody::Text(
            "{{#*inline \"a\"}}{{> b}}{{/inline}}{{#*inline \"b\"}}{{> a}}{{/inline}}{{> a}}"
                .to_owned(),
        );
        let err = render(
            Engine::Handlebars,
            &body,
            &serde_json::json!({}),
            &HashMap::new(),
            &Limits::default(),
        )
        .expect_err("endless recursion");
        assert!(
            matches!(err, TemplateError::RenderLimit { limit: "depth", .. }),
            "{err:?}"
        );
    }

    #[test]
    fn metering_leaves_handlebars_output_alone() {
        let body = PromptBody::Text(
            "{{#each xs}}\n  {{this}}\n{{/each}}\n{{#if t}}yes{{else}}no{{/if}} {{> p}}".to_owned(),
        );
        let partials: HashMap<String, String> =
            [("p".to_owned(), "[{{#with o}}{{k}}{{/with}}]".to_owned())].into();
        let vars = serde_json::json!({"xs": [1, 2], "t": false, "o": {"k": "v"}});
        let out = render(
            Engine::Handlebars,
            &body,
            &vars,
            &partials,
            &Limits::default(),
        )
        .expect("renders");
        assert_eq!(out, Rendered::Text("  1\n  2\nno [v]".to_owned()));
    }
}
