//! Handlebars (handlebars-rust 6): parsing, static analysis of a parsed
//! template (the input paths it reads, the registry partials it includes), and
//! the registry that renders: strict mode, no HTML escaping, the built-in
//! helpers except `log` (prompt text stays out of logs), plus `json`, `upper`,
//! `lower` and `default`.
//!
//! Partials are written `{{> common/safety}}` (the caller's default label) or
//! pinned `{{> common/safety@1.2.0}}` / `{{> common/safety@production}}`: the
//! grammar's partial names allow `@`, `/` and `.`, so the pinned form needs no
//! quoting, and the registry looks it up under exactly that text
//! ([`Include::key`](super::Include::key)). Quoted or bracketed names and
//! computed names (`{{> (which)}}`) are refused. Inline partials
//! (`{{#*inline "x"}}`) and `{{> @partial-block}}` are local, not includes.

use std::collections::{HashMap, HashSet};

use handlebars::template::TemplateElement as El;
use handlebars::template::{BlockParam, DecoratorTemplate, HelperTemplate, Parameter, Template};
use handlebars::{
    handlebars_helper, Context, Handlebars, Helper, HelperDef, Path, PathSeg, RenderContext,
    RenderError, RenderErrorReason, ScopedJson,
};
use serde_json::Value;

use super::analysis::{parse_include, Analysis, Problem, VarRead};
use super::budget;
use super::hbs_syntax::explain;
use super::output::{CappedWriter, Failure};
use super::TemplateError;

/// Every helper a template may call: handlebars' built-ins (`log` removed)
/// and ours.
const HELPERS: &[&str] = &[
    "if", "unless", "each", "with", "lookup", "raw", "eq", "ne", "gt", "gte", "lt", "lte", "and",
    "or", "not", "len", "json", "upper", "lower", "default",
];

const PARTIAL_BLOCK: &str = "@partial-block";

fn is_helper(name: Option<&str>) -> bool {
    name.is_some_and(|n| HELPERS.contains(&n))
}

pub(super) fn parse(source: &str) -> Result<Template, Problem> {
    Template::compile(source).map_err(|e| {
        let (line, column) = e.pos().unzip();
        Problem {
            line,
            column,
            message: explain(source, e.pos(), e.reason()),
        }
    })
}

/// Walks a parsed template. Fails on an include that is computed or badly
/// named; unknown helper names are collected, not failed on.
pub(super) fn analyze(template: &Template) -> Result<Analysis, Problem> {
    let mut walker = Walker {
        scopes: vec![Scope {
            base: Base::Input(Vec::new()),
            params: Vec::new(),
        }],
        inline_partials: HashSet::new(),
        out: Analysis::default(),
        error: None,
    };
    collect_inline_partials(template, &mut walker.inline_partials);
    walker.template(template);
    match walker.error {
        Some(problem) => Err(problem),
        None => Ok(walker.out),
    }
}

/// Where relative paths in a block resolve: under an input path, or inside
/// something the template made (a loop item, a helper's result).
#[derive(Debug, Clone)]
enum Base {
    Input(Vec<String>),
    Local,
}

impl Base {
    fn join(&self, names: &[&str]) -> Option<Vec<String>> {
        match self {
            Base::Input(prefix) => Some(
                prefix
                    .iter()
                    .cloned()
                    .chain(names.iter().map(|n| (*n).to_owned()))
                    .collect(),
            ),
            Base::Local => None,
        }
    }
}

/// A block context, as handlebars pushes one for `with` and each `each`
/// iteration (not for `if`/`unless`, so `../` skips those).
struct Scope {
    base: Base,
    params: Vec<(String, Base)>,
}

type At = Option<(usize, usize)>;

struct Walker {
    scopes: Vec<Scope>,
    inline_partials: HashSet<String>,
    out: Analysis,
    error: Option<Problem>,
}

impl Walker {
    fn template(&mut self, template: &Template) {
        for (i, element) in template.elements.iter().enumerate() {
            let at = template.mapping.get(i).map(|m| (m.0, m.1));
            match element {
                El::Expression(ht) | El::HtmlExpression(ht) => self.expression(ht, at),
                El::HelperBlock(ht) => self.block(ht, at),
                El::DecoratorExpression(dt) | El::DecoratorBlock(dt) => self.decorator(dt, at),
                El::PartialExpression(dt) | El::PartialBlock(dt) => self.partial(dt, at),
                _ => {}
            }
        }
    }

    fn optional_template(&mut self, template: &Option<Template>) {
        if let Some(template) = template {
            self.template(template);
        }
    }

    fn expression(&mut self, ht: &HelperTemplate, at: At) {
        let name_only = !ht.block && ht.params.is_empty() && ht.hash.is_empty();
        if !name_only {
            return self.helper_call(ht, at);
        }
        match &ht.name {
            // A name-only `{{json}}` calls the helper, as in the engine.
            Parameter::Path(path) if !is_helper(ht.name.as_name()) => self.read(path, true),
            Parameter::Subexpression(sub) => self.expression_element(sub.as_element(), at),
            _ => {}
        }
    }

    fn expression_element(&mut self, element: &El, at: At) {
        if let El::Expression(ht) = element {
            self.expression(ht, at);
        }
    }

    fn helper_call(&mut self, ht: &HelperTemplate, at: At) {
        let name = ht.name.as_name().unwrap_or_default();
        if !is_helper(Some(name)) {
            self.unknown(at, format!("unknown helper `{name}`"));
        }
        for (i, param) in ht.params.iter().enumerate() {
            // `default` exists for values that may be absent.
            let required = !(name == "default" && i == 0);
            self.param(param, required, at);
        }
        for value in ht.hash.values() {
            self.param(value, true, at);
        }
    }

    fn block(&mut self, ht: &HelperTemplate, at: At) {
        self.helper_call(ht, at);
        let names = block_param_names(ht);
        match ht.name.as_name() {
            Some("each") => {
                // Paths inside resolve against each item: not input.
                let params = names.into_iter().map(|n| (n, Base::Local)).collect();
                self.within(
                    Scope {
                        base: Base::Local,
                        params,
                    },
                    &ht.template,
                );
            }
            Some("with") => {
                let base = match ht.params.first() {
                    Some(Parameter::Path(path)) => {
                        self.resolve(path).map_or(Base::Local, Base::Input)
                    }
                    _ => Base::Local,
                };
                let params = names.into_iter().map(|n| (n, base.clone())).collect();
                self.within(Scope { base, params }, &ht.template);
            }
            _ => self.optional_template(&ht.template),
        }
        // `else` renders in the enclosing context for every block helper.
        self.optional_template(&ht.inverse);
    }

    fn within(&mut self, scope: Scope, template: &Option<Template>) {
        self.scopes.push(scope);
        self.optional_template(template);
        self.scopes.pop();
    }

    fn decorator(&mut self, dt: &DecoratorTemplate, at: At) {
        if dt.name.as_name() == Some("inline") {
            // An inline partial renders where it is included, in that context.
            self.optional_template(&dt.template);
        } else {
            let name = dt.name.as_name().unwrap_or_default();
            self.unknown(at, format!("unknown decorator `{name}`"));
        }
    }

    fn partial(&mut self, dt: &DecoratorTemplate, at: At) {
        match &dt.name {
            Parameter::Name(_) | Parameter::Path(_) => {
                let name = dt.name.as_name().unwrap_or_default();
                if name != PARTIAL_BLOCK && !self.inline_partials.contains(name) {
                    match parse_include(name) {
                        Ok(include) => self.out.includes.push(include),
                        Err(message) => self.fail(at, message),
                    }
                }
            }
            _ => self.fail(
                at,
                "partial names must be literal, e.g. {{> common/safety}} or \
                 {{> common/safety@1.2.0}}; a computed name is not allowed"
                    .to_owned(),
            ),
        }
        for param in &dt.params {
            self.param(param, true, at);
        }
        for value in dt.hash.values() {
            self.param(value, true, at);
        }
        // A partial block's body is its fallback and its @partial-block.
        self.optional_template(&dt.template);
    }

    fn param(&mut self, param: &Parameter, required: bool, at: At) {
        match param {
            Parameter::Path(path) => self.read(path, required),
            Parameter::Subexpression(sub) => self.expression_element(sub.as_element(), at),
            _ => {}
        }
    }

    fn read(&mut self, path: &Path, required: bool) {
        if let Some(path) = self.resolve(path).filter(|p| !p.is_empty()) {
            self.out.reads.push(VarRead { path, required });
        }
    }

    /// The input path `path` reads in the current scope, mirroring how
    /// handlebars resolves it; `None` when it reads template-made data
    /// (`@index`, a loop item, a block param of `each`).
    fn resolve(&self, path: &Path) -> Option<Vec<String>> {
        let segments = match path {
            Path::Relative((segments, _)) => segments,
            Path::Local(_) => return None,
        };
        let mut ups = 0;
        let mut from_root = false;
        let mut rest = segments.as_slice();
        while let Some((PathSeg::Ruled(rule), tail)) = rest.split_first() {
            rest = tail;
            // The grammar's `Rule` type is private; its Debug name is not.
            match format!("{rule:?}").as_str() {
                "path_root" => {
                    from_root = true;
                    break;
                }
                "path_up" => ups += 1,
                _ => {}
            }
        }
        let names: Vec<&str> = rest
            .iter()
            .filter_map(|segment| match segment {
                PathSeg::Named(name) => Some(name.as_str()),
                _ => None,
            })
            .collect();
        if from_root {
            return Base::Input(Vec::new()).join(&names);
        }
        if let Some((first, tail)) = names.split_first() {
            let param = self.scopes.iter().rev().find_map(|scope| {
                scope
                    .params
                    .iter()
                    .find(|(name, _)| name == first)
                    .map(|(_, base)| base)
            });
            if let Some(base) = param {
                return base.join(tail);
            }
        }
        // Like the engine, `../` past the outermost block stays innermost.
        let depth = self.scopes.len().checked_sub(ups + 1);
        let scope = depth
            .and_then(|d| self.scopes.get(d))
            .or(self.scopes.last())?;
        scope.base.join(&names)
    }

    fn fail(&mut self, at: At, message: String) {
        if self.error.is_none() {
            self.error = Some(problem(at, message));
        }
    }

    fn unknown(&mut self, at: At, message: String) {
        self.out.unknown_names.push(problem(at, message));
    }
}

fn problem(at: At, message: String) -> Problem {
    let (line, column) = at.unzip();
    Problem {
        line,
        column,
        message,
    }
}

fn block_param_names(ht: &HelperTemplate) -> Vec<String> {
    let names: Vec<&Parameter> = match &ht.block_param {
        Some(BlockParam::Single(p)) => vec![p],
        Some(BlockParam::Pair((a, b))) => vec![a, b],
        _ => Vec::new(),
    };
    names
        .into_iter()
        .filter_map(|p| p.as_name().map(str::to_owned))
        .collect()
}

/// Names declared with `{{#*inline "name"}}` anywhere in the template.
fn collect_inline_partials(template: &Template, names: &mut HashSet<String>) {
    for element in &template.elements {
        match element {
            El::HelperBlock(ht) => {
                for t in [&ht.template, &ht.inverse].into_iter().flatten() {
                    collect_inline_partials(t, names);
                }
            }
            El::DecoratorBlock(dt) | El::PartialBlock(dt) => {
                if dt.name.as_name() == Some("inline") {
                    if let Some(Parameter::Literal(Value::String(name))) = dt.params.first() {
                        names.insert(name.clone());
                    }
                }
                if let Some(t) = &dt.template {
                    collect_inline_partials(t, names);
                }
            }
            _ => {}
        }
    }
}

// Named as in templates: the macro puts the type name in its error messages.
handlebars_helper!(json: |value: Json| value.to_string());
handlebars_helper!(upper: |value: Json| plain_text(value).to_uppercase());
handlebars_helper!(lower: |value: Json| plain_text(value).to_lowercase());

/// A string as itself, anything else as its JSON text.
fn plain_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// `{{default value fallback}}`: `value` unless it is absent or null.
struct DefaultHelper;

impl HelperDef for DefaultHelper {
    fn call_inner<'reg: 'rc, 'rc>(
        &self,
        h: &Helper<'rc>,
        _: &'reg Handlebars<'reg>,
        _: &'rc Context,
        _: &mut RenderContext<'reg, 'rc>,
    ) -> Result<ScopedJson<'rc>, RenderError> {
        let fallback = h
            .param(1)
            .ok_or(RenderErrorReason::ParamNotFoundForIndex("default", 1))?;
        let chosen = match h.param(0) {
            Some(value) if !value.is_value_missing() && !value.value().is_null() => value,
            _ => fallback,
        };
        Ok(ScopedJson::Derived(chosen.value().clone()))
    }
}

/// A registry holding the body's templates and every partial.
pub(super) struct Renderer {
    registry: Handlebars<'static>,
}

impl Renderer {
    pub fn new(partials: &HashMap<String, String>) -> Result<Self, TemplateError> {
        let mut registry = Handlebars::new();
        registry.set_strict_mode(true);
        registry.register_escape_fn(handlebars::no_escape);
        registry.unregister_helper("log");
        registry.register_helper("json", Box::new(json));
        registry.register_helper("upper", Box::new(upper));
        registry.register_helper("lower", Box::new(lower));
        registry.register_helper("default", Box::new(DefaultHelper));
        registry.register_helper(STEP_HELPER, Box::new(Step));
        for (key, source) in partials {
            let mut template = parse(source).map_err(|problem| TemplateError::Syntax {
                message_index: None,
                line: problem.line,
                column: problem.column,
                message: format!("in partial {key:?}: {}", problem.message),
            })?;
            // Entering a partial is a step: partials that only include
            // partials produce nothing but still repeat.
            meter(&mut template, true);
            template.name = Some(key.clone());
            registry.register_template(key, template);
        }
        Ok(Self { registry })
    }

    /// Registers an already parsed body template under `name`.
    pub fn add(&mut self, name: &str, mut template: Template) {
        // The name is what errors report and what self-inclusion checks use.
        template.name = Some(name.to_owned());
        meter(&mut template, false);
        self.registry.register_template(name, template);
    }

    pub fn prepare(variables: &Value) -> Context {
        Context::from(variables.clone())
    }

    pub fn render(&self, input: &Context, name: &str, budget: usize) -> Result<String, Failure> {
        let mut out = CappedWriter::new(budget);
        match self
            .registry
            .render_with_context_to_write(name, input, &mut out)
        {
            Ok(()) => out.into_string(),
            Err(_) if out.overflowed() => Err(Failure::TooLarge),
            Err(e) => Err(Failure::Message(describe(&e, name))),
        }
    }
}

/// The helper [`meter`] plants; a template cannot name it (it is not in
/// [`HELPERS`], so `check` refuses it).
const STEP_HELPER: &str = "promptreg-step";

/// Charges the render's meter one step; fails once its budget is used up.
struct Step;

impl HelperDef for Step {
    fn call<'reg: 'rc, 'rc>(
        &self,
        _: &Helper<'rc>,
        _: &'reg Handlebars<'reg>,
        _: &'rc Context,
        _: &mut RenderContext<'reg, 'rc>,
        _: &mut dyn handlebars::Output,
    ) -> handlebars::HelperResult {
        budget::step().map_err(|exceeded| RenderErrorReason::Other(exceeded.describe()).into())
    }
}

/// Plants a call of [`STEP_HELPER`] at the start of every block body (each
/// loop iteration renders its body once), every `else`, and every inline
/// partial, and at the start of `template` itself when `at_start`. handlebars-rust
/// has no hook of its own for counting work. The call writes nothing, so
/// whitespace and indentation are as without it.
fn meter(template: &mut Template, at_start: bool) {
    static STEP: std::sync::LazyLock<Option<(El, handlebars::template::TemplateMapping)>> =
        std::sync::LazyLock::new(|| {
            let mut t = Template::compile(&format!("{{{{{STEP_HELPER}}}}}")).ok()?;
            Some((t.elements.pop()?, t.mapping.pop()?))
        });
    for element in &mut template.elements {
        match element {
            El::HelperBlock(ht) => {
                for inner in [&mut ht.template, &mut ht.inverse].into_iter().flatten() {
                    meter(inner, true);
                }
            }
            El::DecoratorBlock(dt) | El::PartialBlock(dt) => {
                if let Some(inner) = &mut dt.template {
                    meter(inner, true);
                }
            }
            _ => {}
        }
    }
    if at_start {
        if let Some((element, mapping)) = STEP.as_ref() {
            template.elements.insert(0, element.clone());
            template.mapping.insert(0, mapping.clone());
        }
    }
}

fn describe(e: &RenderError, body_name: &str) -> String {
    let mut message = match e.reason() {
        // Strict mode also reports a value of the wrong kind this way
        // (`#each` over a number), so say both.
        RenderErrorReason::MissingVariable(Some(path)) => {
            format!("`{path}` is missing or cannot be used here")
        }
        RenderErrorReason::MissingVariable(None) => {
            "a value is missing or cannot be used here".to_owned()
        }
        RenderErrorReason::HelperNotFound(name) => format!("unknown helper `{name}`"),
        RenderErrorReason::PartialNotFound(name) => format!("partial {name:?} was not supplied"),
        other => other.to_string(),
    };
    if let Some(partial) = e.template_name.as_deref().filter(|n| *n != body_name) {
        message.push_str(&format!(" in partial {partial:?}"));
    }
    if let (Some(line), Some(column)) = (e.line_no, e.column_no) {
        message.push_str(&format!(" at line {line}, column {column}"));
    }
    message
}

#[cfg(test)]
mod tests {
    //! Handlebars only. What both engines do is tested once for each in
    //! `engine_tests.rs`.
    use super::super::check;
    use super::super::engine_tests::OneEngine;
    use super::*;
    use crate::domain::content::PromptBody;
    use crate::domain::Engine;
    use serde_json::json;

    const HBS: OneEngine = OneEngine(Engine::Handlebars);

    #[test]
    fn variables_inside_with_resolve_under_its_argument() {
        let source = "{{#with customer}}{{name}} {{address.city}}{{else}}{{fallback}}{{/with}}\
                      {{#with account as |acc|}}{{acc.id}}{{#each acc.users}}{{../plan}}{{/each}}{{/with}}";
        assert_eq!(
            HBS.vars_of(source),
            [
                "account",
                "account.id",
                "account.plan",
                "account.users",
                "customer",
                "customer.address.city",
                "customer.name",
                "fallback"
            ]
        );
    }

    #[test]
    fn an_unclosed_block_at_the_end_says_so() {
        let err = check(
            Engine::Handlebars,
            &PromptBody::Text("a\n {{#if x}}".to_owned()),
        )
        .expect_err("unclosed");
        assert_eq!(
            err,
            TemplateError::Syntax {
                message_index: None,
                line: Some(2),
                column: Some(11),
                message: "`{{#if}}` opened at line 2, column 2 is never closed: add `{{/if}}`"
                    .to_owned(),
            }
        );
    }

    #[test]
    fn a_mismatched_block_close_is_located_at_the_closing_tag() {
        let err = check(
            Engine::Handlebars,
            &PromptBody::Text("line one\n  {{#if x}}\n{{/each}}".to_owned()),
        )
        .expect_err("mismatched block");
        assert!(
            matches!(
                err,
                TemplateError::Syntax {
                    message_index: None,
                    line: Some(3),
                    column: Some(1),
                    ..
                }
            ),
            "{err:?}"
        );
    }

    #[test]
    fn helper_errors_name_the_helper_as_templates_do() {
        let err = HBS
            .render_text("{{upper}}", json!({}), &[])
            .expect_err("no argument");
        let TemplateError::Render { message, .. } = err else {
            panic!("{err:?}")
        };
        assert!(message.contains("upper param"), "{message}");
    }

    #[test]
    fn check_refuses_unknown_block_helpers_the_removed_log_and_decorators() {
        for source in ["{{#customer}}x{{/customer}}", "{{log x}}", "\n {{*nope}}"] {
            let err =
                check(Engine::Handlebars, &PromptBody::Text(source.to_owned())).expect_err(source);
            let TemplateError::Syntax { message, line, .. } = err else {
                panic!("{source}: {err:?}")
            };
            assert!(message.starts_with("unknown"), "{source}: {message}");
            assert!(line.is_some(), "{source}");
        }
    }

    #[test]
    fn includes_skip_inline_partials_and_the_partial_block() {
        let source = "{{#*inline \"local\"}}hi {{name}}{{/inline}}{{> local}}{{> @partial-block}}";
        assert_eq!(HBS.includes_of(source).expect("includes"), []);
        assert_eq!(HBS.vars_of(source), ["name"]);
    }

    #[test]
    fn computed_quoted_or_bracketed_partial_names_are_refused() {
        let cases = [
            ("{{> (whichPartial)}}", "must be literal"),
            ("{{> [common/safety]}}", "must start"),
            ("{{> 'common/safety'}}", "must start"),
        ];
        for (source, why) in cases {
            let err = HBS.includes_of(source).expect_err(source);
            let TemplateError::Syntax { message, .. } = &err else {
                panic!("{source}: {err:?}")
            };
            assert!(message.contains(why), "{source}: {message}");
        }
    }

    #[test]
    fn json_is_compact_and_default_treats_null_as_absent() {
        let vars = json!({"obj": {"a": [1, "x"]}, "n": null});
        let out = HBS
            .render_text("{{json obj}}|{{default n \"anon\"}}", vars, &[])
            .expect("render");
        assert_eq!(out, r#"{"a":[1,"x"]}|anon"#);
    }

    #[test]
    fn builtin_comparison_helpers_work() {
        let out = HBS.render_text(
            "{{#if (and (eq a 1) (gt b 2))}}yes{{/if}} {{len items}} {{#each items}}{{@index}}{{this}}{{/each}}",
            json!({"a": 1, "b": 3, "items": ["x", "y"]}),
            &[],
        )
        .expect("render");
        assert_eq!(out, "yes 2 0x1y");
    }

    #[test]
    fn a_partials_missing_variable_is_named_in_the_render_error() {
        let err = HBS
            .render_text(
                "{{> common/safety}}",
                json!({}),
                &[("common/safety", "hello {{who}}")],
            )
            .expect_err("partial reads a missing variable");
        let TemplateError::Render { message, .. } = err else {
            panic!("{err:?}")
        };
        assert!(message.contains("who"), "{message}");
        assert!(message.contains("common/safety"), "{message}");
    }
}
