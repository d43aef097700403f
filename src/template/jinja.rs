//! Jinja (minijinja 3): parsing, static analysis of the syntax tree (the input
//! paths a template reads, the registry templates it includes), and the
//! environment that renders: strict undefined, no auto-escaping, a fuel
//! budget, the built-in filters and tests, no `debug` global, and no loader:
//! every partial the caller supplies is added up front, so nothing else
//! (files, network) can ever be loaded.
//!
//! Partials are written `{% include "common/safety" %}` (the caller's default
//! label) or pinned `{% include "common/safety@1.2.0" %}`; `import`,
//! `from … import` and `extends` name partials the same way. Names must be
//! string literals.

use std::collections::{HashMap, HashSet};
use std::sync::LazyLock;

use minijinja::machinery::ast::{self, CallArg, Expr, Stmt};
use minijinja::machinery::{self, Span};
use minijinja::syntax::SyntaxConfig;
use minijinja::value::Serde;
use minijinja::{AutoEscape, Environment, ErrorKind, UndefinedBehavior};
use serde_json::Value;

use super::analysis::{column_at, parse_include, Analysis, Problem, VarRead};
use super::budget::Exceeded;
use super::output::{CappedWriter, Failure};
use super::TemplateError;

/// Globals a template may use without the caller giving them.
const GLOBALS: &[&str] = &["range", "dict", "namespace"];

/// An environment configured like every rendering one, without templates:
/// it answers which filters and tests exist.
static REFERENCE: LazyLock<Environment<'static>> = LazyLock::new(|| base_environment(None));

fn base_environment(fuel: Option<u64>) -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_auto_escape_callback(|_| AutoEscape::None);
    // Debug mode snapshots state into every error; too slow for a hot path.
    env.set_debug(false);
    env.remove_global("debug");
    env.set_fuel(fuel);
    env
}

/// Parses and walks one template. Fails on a syntax error or an include
/// that is computed or badly named; unknown filters and tests are collected.
pub(super) fn analyze(source: &str) -> Result<Analysis, Problem> {
    let tree = machinery::parse(source, "<template>", SyntaxConfig::default())
        .map_err(|e| syntax_problem(&e, source))?;
    let mut walker = Walker {
        scopes: vec![["self"].into_iter().collect()],
        guarded: Vec::new(),
        out: Analysis::default(),
        error: None,
    };
    walker.stmt(&tree);
    if let Some(problem) = walker.error {
        return Err(problem);
    }
    Ok(walker.out)
}

fn syntax_problem(e: &minijinja::Error, source: &str) -> Problem {
    Problem {
        line: e.line(),
        column: e.range().map(|r| column_at(source, r.start)),
        message: e
            .detail()
            .map_or_else(|| e.kind().to_string(), str::to_owned),
    }
}

struct Walker<'a> {
    /// Names the template assigned (loop targets, `set`, macro arguments…)
    /// in each open scope: reading them is not reading input.
    scopes: Vec<HashSet<&'a str>>,
    /// Paths an enclosing `if … is defined` guards: reads under them may be absent.
    guarded: Vec<Vec<String>>,
    out: Analysis,
    error: Option<Problem>,
}

impl<'a> Walker<'a> {
    fn is_assigned(&self, name: &str) -> bool {
        self.scopes.iter().any(|scope| scope.contains(name))
    }

    fn assign_name(&mut self, name: &'a str) {
        if let Some(scope) = self.scopes.last_mut() {
            scope.insert(name);
        }
    }

    fn assign(&mut self, target: &Expr<'a>) {
        match target {
            Expr::Var(var) => self.assign_name(var.id),
            Expr::List(list) => list.items.iter().for_each(|item| self.assign(item)),
            Expr::Tuple(tuple) => tuple.items.iter().for_each(|item| self.assign(item)),
            // `{% set ns.attr = … %}` reads `ns`.
            Expr::GetAttr(attr) => self.expr(&attr.expr, true),
            _ => {}
        }
    }

    fn push(&mut self) {
        self.scopes.push(HashSet::new());
    }

    fn pop(&mut self) {
        self.scopes.pop();
    }

    fn body(&mut self, stmts: &[Stmt<'a>]) {
        stmts.iter().for_each(|stmt| self.stmt(stmt));
    }

    fn scoped_body(&mut self, stmts: &[Stmt<'a>]) {
        self.push();
        self.body(stmts);
        self.pop();
    }

    fn stmt(&mut self, stmt: &Stmt<'a>) {
        match stmt {
            Stmt::Template(t) => self.body(&t.children),
            Stmt::EmitExpr(e) => self.expr(&e.expr, true),
            Stmt::EmitRaw(_) => {}
            Stmt::ForLoop(f) => {
                self.expr(&f.iter, true);
                self.push();
                self.assign_name("loop");
                self.assign(&f.target);
                if let Some(filter) = &f.filter_expr {
                    self.expr(filter, true);
                }
                self.body(&f.body);
                self.pop();
                self.scoped_body(&f.else_body);
            }
            // `if` opens no scope in Jinja: a `set` inside is seen after it.
            Stmt::IfCond(c) => {
                self.expr(&c.expr, true);
                let (when_true, when_false) = definedness_guards(&c.expr);
                self.guarded_by(when_true, |w| w.body(&c.true_body));
                self.guarded_by(when_false, |w| w.body(&c.false_body));
            }
            Stmt::WithBlock(w) => {
                self.push();
                for (target, value) in &w.assignments {
                    self.expr(value, true);
                    self.assign(target);
                }
                self.body(&w.body);
                self.pop();
            }
            Stmt::Set(s) => {
                // The value is read before the name exists: `{% set x = x + 1 %}` reads input `x`.
                self.expr(&s.expr, true);
                self.assign(&s.target);
            }
            Stmt::SetBlock(s) => {
                self.scoped_body(&s.body);
                if let Some(filter) = &s.filter {
                    self.expr(filter, true);
                }
                self.assign(&s.target);
            }
            Stmt::AutoEscape(a) => {
                self.expr(&a.enabled, true);
                self.scoped_body(&a.body);
            }
            Stmt::FilterBlock(f) => {
                self.expr(&f.filter, true);
                self.scoped_body(&f.body);
            }
            Stmt::Block(b) => {
                self.push();
                self.assign_name("super");
                self.body(&b.body);
                self.pop();
            }
            Stmt::Import(i) => {
                self.include(&i.expr);
                self.assign(&i.name);
            }
            Stmt::FromImport(i) => {
                self.include(&i.expr);
                for (name, alias) in &i.names {
                    self.assign(alias.as_ref().unwrap_or(name));
                }
            }
            Stmt::Extends(e) => self.include(&e.name),
            Stmt::Include(i) => self.include(&i.name),
            Stmt::Macro(m) => {
                self.assign_name(m.name);
                self.macro_body(m);
            }
            Stmt::CallBlock(c) => {
                self.call(&c.call);
                self.macro_body(&c.macro_decl);
            }
            Stmt::Do(d) => self.call(&d.call),
        }
    }

    fn macro_body(&mut self, m: &ast::Macro<'a>) {
        // Defaults are evaluated where the macro is defined.
        m.defaults.iter().for_each(|d| self.expr(d, true));
        self.push();
        for name in ["caller", "varargs", "kwargs"] {
            self.assign_name(name);
        }
        m.args.iter().for_each(|arg| self.assign(arg));
        self.body(&m.body);
        self.pop();
    }

    fn include(&mut self, name: &Expr<'a>) {
        let literal = match name {
            Expr::Const(c) => c.value.as_str(),
            _ => None,
        };
        let result = match literal {
            Some(raw) => parse_include(raw),
            None => Err("includes must name a partial literally, e.g. \
                         {% include \"common/safety\" %} or {% include \"common/safety@1.2.0\" %}"
                .to_owned()),
        };
        match result {
            Ok(include) => self.out.includes.push(include),
            Err(message) => {
                if self.error.is_none() {
                    self.error = Some(located(name.span(), message));
                }
            }
        }
    }

    fn expr(&mut self, expr: &Expr<'a>, required: bool) {
        match expr {
            Expr::Var(_) | Expr::GetAttr(_) | Expr::GetItem(_) => self.lookup(expr, required),
            Expr::Const(_) => {}
            Expr::Slice(s) => {
                self.expr(&s.expr, required);
                for part in [&s.start, &s.stop, &s.step].into_iter().flatten() {
                    self.expr(part, true);
                }
            }
            Expr::UnaryOp(u) => self.expr(&u.expr, required),
            Expr::BinOp(b) => {
                self.expr(&b.left, required);
                // `x is defined and x.y` only reads `x.y` once `x` is known.
                let (when_true, when_false) = definedness_guards(&b.left);
                let guards = match b.op {
                    ast::BinOpKind::ScAnd => when_true,
                    ast::BinOpKind::ScOr => when_false,
                    _ => Vec::new(),
                };
                self.guarded_by(guards, |w| w.expr(&b.right, required));
            }
            Expr::Compare(c) => {
                self.expr(&c.expr, required);
                c.ops.iter().for_each(|op| self.expr(&op.expr, required));
            }
            Expr::IfExpr(i) => {
                self.expr(&i.test_expr, required);
                let (when_true, when_false) = definedness_guards(&i.test_expr);
                self.guarded_by(when_true, |w| w.expr(&i.true_expr, required));
                if let Some(other) = &i.false_expr {
                    self.guarded_by(when_false, |w| w.expr(other, required));
                }
            }
            Expr::Filter(f) => {
                if !minijinja::tests::is_filter(&REFERENCE.empty_state(), f.name) {
                    self.unknown(expr.span(), format!("unknown filter `{}`", f.name));
                }
                // `default` exists for values that may be undefined.
                let copes_with_undefined = matches!(f.name, "default" | "d");
                if let Some(value) = &f.expr {
                    self.expr(value, required && !copes_with_undefined);
                }
                self.args(&f.args);
            }
            Expr::Test(t) => {
                if !minijinja::tests::is_test(&REFERENCE.empty_state(), t.name) {
                    self.unknown(expr.span(), format!("unknown test `{}`", t.name));
                }
                let copes_with_undefined = matches!(t.name, "defined" | "undefined");
                self.expr(&t.expr, required && !copes_with_undefined);
                self.args(&t.args);
            }
            Expr::Call(c) => self.call(c),
            Expr::List(l) => l.items.iter().for_each(|item| self.expr(item, required)),
            Expr::Tuple(t) => t.items.iter().for_each(|item| self.expr(item, required)),
            Expr::Map(m) => {
                for (key, value) in m.keys.iter().zip(&m.values) {
                    self.expr(key, required);
                    self.expr(value, required);
                }
            }
        }
    }

    /// A variable, attribute or item lookup: records the longest path of
    /// names it reads (`user.address.city`, `user["name"]`).
    fn lookup(&mut self, expr: &Expr<'a>, required: bool) {
        if let Some((root, mut rest)) = lookup_path(expr) {
            if !self.is_assigned(root) && !GLOBALS.contains(&root) {
                rest.insert(0, root.to_owned());
                let guarded = self.guarded.iter().any(|g| rest.starts_with(g));
                self.out.reads.push(VarRead {
                    path: rest,
                    required: required && !guarded,
                });
            }
            return;
        }
        match expr {
            Expr::GetAttr(a) => self.expr(&a.expr, required),
            Expr::GetItem(i) => {
                self.expr(&i.expr, required);
                self.expr(&i.subscript_expr, true);
            }
            _ => {}
        }
    }

    fn call(&mut self, call: &ast::Call<'a>) {
        match &call.expr {
            // A function: a macro, a global or an unknown one; input is JSON
            // and never callable, so the name is not a variable.
            Expr::Var(_) => {}
            // A method: `name.upper()` reads `name`.
            Expr::GetAttr(attr) => self.expr(&attr.expr, true),
            other => self.expr(other, true),
        }
        self.args(&call.args);
    }

    fn args(&mut self, args: &[CallArg<'a>]) {
        for arg in args {
            match arg {
                CallArg::Pos(e)
                | CallArg::Kwarg(_, e)
                | CallArg::PosSplat(e)
                | CallArg::KwargSplat(e) => self.expr(e, true),
            }
        }
    }

    fn guarded_by(&mut self, paths: Vec<Vec<String>>, walk: impl FnOnce(&mut Self)) {
        let depth = self.guarded.len();
        self.guarded.extend(paths);
        walk(self);
        self.guarded.truncate(depth);
    }

    fn unknown(&mut self, span: Span, message: String) {
        self.out.unknown_names.push(located(span, message));
    }
}

/// The paths a condition proves defined when it is true, and when it is
/// false: `x is defined`, `x is undefined`, `not …`, and `and`/`or` of them.
fn definedness_guards(cond: &Expr<'_>) -> (Vec<Vec<String>>, Vec<Vec<String>>) {
    match cond {
        Expr::Test(t) if matches!(t.name, "defined" | "undefined") => {
            let path = lookup_path(&t.expr)
                .map(|(root, rest)| std::iter::once(root.to_owned()).chain(rest).collect())
                .into_iter()
                .collect();
            if t.name == "defined" {
                (path, Vec::new())
            } else {
                (Vec::new(), path)
            }
        }
        Expr::UnaryOp(u) if matches!(u.op, ast::UnaryOpKind::Not) => {
            let (when_true, when_false) = definedness_guards(&u.expr);
            (when_false, when_true)
        }
        Expr::BinOp(b) if matches!(b.op, ast::BinOpKind::ScAnd) => {
            let (mut left, _) = definedness_guards(&b.left);
            left.extend(definedness_guards(&b.right).0);
            (left, Vec::new())
        }
        Expr::BinOp(b) if matches!(b.op, ast::BinOpKind::ScOr) => {
            let (_, mut left) = definedness_guards(&b.left);
            left.extend(definedness_guards(&b.right).1);
            (Vec::new(), left)
        }
        _ => (Vec::new(), Vec::new()),
    }
}

/// `a.b["c"]` → ("a", ["b", "c"]); `None` when the lookup is not a chain of
/// names ending in a variable (`x[i]`, `f().y`).
fn lookup_path<'a>(expr: &Expr<'a>) -> Option<(&'a str, Vec<String>)> {
    match expr {
        Expr::Var(var) => Some((var.id, Vec::new())),
        Expr::GetAttr(attr) => {
            let (root, mut rest) = lookup_path(&attr.expr)?;
            rest.push(attr.name.to_owned());
            Some((root, rest))
        }
        Expr::GetItem(item) => {
            let Expr::Const(key) = &item.subscript_expr else {
                return None;
            };
            let key = key.value.as_str()?.to_owned();
            let (root, mut rest) = lookup_path(&item.expr)?;
            rest.push(key);
            Some((root, rest))
        }
        _ => None,
    }
}

fn located(span: Span, message: String) -> Problem {
    Problem {
        line: Some(usize::from(span.start_line)),
        column: Some(usize::from(span.start_col) + 1),
        message,
    }
}

/// The innermost of nested errors: an error inside an include arrives
/// wrapped ("could not render include").
fn innermost(mut e: &minijinja::Error) -> &minijinja::Error {
    while let Some(inner) =
        std::error::Error::source(e).and_then(|source| source.downcast_ref::<minijinja::Error>())
    {
        e = inner;
    }
    e
}

/// An environment holding the body's templates and every partial.
pub(super) struct Renderer {
    env: Environment<'static>,
    fuel: u64,
}

impl Renderer {
    pub fn new(partials: &HashMap<String, String>, fuel: u64) -> Result<Self, TemplateError> {
        let mut env = base_environment(Some(fuel));
        for (key, source) in partials {
            env.add_template_owned(key.clone(), source.clone())
                .map_err(|e| {
                    let problem = syntax_problem(&e, source);
                    TemplateError::Syntax {
                        message_index: None,
                        line: problem.line,
                        column: problem.column,
                        message: format!("in partial {key:?}: {}", problem.message),
                    }
                })?;
        }
        Ok(Self { env, fuel })
    }

    pub fn add(&mut self, name: &str, source: &str) -> Result<(), Problem> {
        self.env
            .add_template_owned(name.to_owned(), source.to_owned())
            .map_err(|e| syntax_problem(&e, source))
    }

    pub fn prepare(variables: &Value) -> minijinja::Value {
        minijinja::Value::from(Serde(variables))
    }

    pub fn render(
        &self,
        input: &minijinja::Value,
        name: &str,
        budget: usize,
    ) -> Result<String, Failure> {
        let template = self
            .env
            .get_template(name)
            .map_err(|e| Failure::Message(self.describe(&e, name)))?;
        let mut out = CappedWriter::new(budget);
        let result = template.render_captured_to(input.clone(), &mut out);
        match result {
            Ok(_) => out.into_string(),
            Err(_) if out.overflowed() => Err(Failure::TooLarge),
            Err(e) if innermost(&e).kind() == ErrorKind::OutOfFuel => {
                Err(Failure::Limit(Exceeded::Steps(self.fuel)))
            }
            Err(e) => Err(Failure::Message(self.describe(&e, name))),
        }
    }

    fn describe(&self, e: &minijinja::Error, body_name: &str) -> String {
        // An error inside an include arrives wrapped ("could not render
        // include"); the innermost one says what went wrong and where.
        let e = innermost(e);
        let mut message = match (e.kind(), e.detail()) {
            (ErrorKind::TemplateNotFound, Some(detail)) => {
                format!("partial not supplied: {detail}")
            }
            (kind, Some(detail)) => format!("{kind}: {detail}"),
            (kind, None) => kind.to_string(),
        };
        if let Some(partial) = e.name().filter(|n| *n != body_name) {
            message.push_str(&format!(" in partial {partial:?}"));
        }
        if let Some(line) = e.line() {
            message.push_str(&format!(" at line {line}"));
        }
        message
    }
}

#[cfg(test)]
mod tests {
    //! Jinja only. What both engines do is tested once for each in
    //! `engine_tests.rs`.
    use super::super::engine_tests::OneEngine;
    use super::super::{check, Limits};
    use super::*;
    use crate::domain::content::PromptBody;
    use crate::domain::Engine;
    use serde_json::json;

    const JINJA: OneEngine = OneEngine(Engine::Jinja);

    #[test]
    fn variables_exclude_loop_targets_set_names_and_macro_locals() {
        let source = "{% for item in items %}{{ item.name }} {{ loop.index }} {{ outer }}{% else %}{{ none_left }}{% endfor %}\
                      {% for k, v in pairs | dictsort %}{{ k }}{{ v }}{% endfor %}\
                      {% set greeting = salutation ~ ' there' %}{{ greeting }}\
                      {% macro card(title, body='x') %}{{ title }}{{ body }}{{ caller() if caller }}{{ closure }}{% endmacro %}\
                      {{ card('t') }} {% set ns = namespace(n=0) %}{% set ns.n = 1 %}{{ ns.n }} {{ range(3) | list }}";
        assert_eq!(
            JINJA.vars_of(source),
            [
                "closure",
                "items",
                "none_left",
                "outer",
                "pairs",
                "salutation"
            ]
        );
    }

    #[test]
    fn a_set_inside_if_counts_as_assigned_after_it() {
        let source = "{% if formal %}{% set hi = 'Dear' %}{% else %}{% set hi = 'Hey' %}{% endif %}{{ hi }} {{ name }}";
        assert_eq!(JINJA.vars_of(source), ["formal", "name"]);
    }

    #[test]
    fn reads_guarded_by_is_defined_are_listed_but_not_required() {
        let source = "{% if user is defined and user.name %}{{ user.name }}{% endif %}\
                      {% if nick is undefined %}anon{% else %}{{ nick }}{% endif %}\
                      {{ title if title is defined else 'untitled' }} {{ must }}";
        assert_eq!(
            JINJA.vars_of(source),
            ["must", "nick", "title", "user", "user.name"]
        );
        let out = JINJA
            .render_text(source, json!({"must": "!"}), &[])
            .expect("only `must` is required");
        assert_eq!(out, "anonuntitled !");
        let err = JINJA
            .render_text(source, json!({}), &[])
            .expect_err("must is missing");
        assert_eq!(
            err,
            TemplateError::MissingVariables(vec!["must".to_owned()])
        );
    }

    #[test]
    fn a_bad_expression_is_located_at_the_unexpected_token() {
        let err = check(Engine::Jinja, &PromptBody::Text("ab {{ 1 + }}".to_owned()))
            .expect_err("bad expression");
        assert!(
            matches!(
                err,
                TemplateError::Syntax {
                    line: Some(1),
                    column: Some(11),
                    ..
                }
            ),
            "{err:?}"
        );
    }

    #[test]
    fn check_refuses_unknown_filters_and_tests_saying_which() {
        for (source, what) in [
            ("{{ x | uper }}", "filter `uper`"),
            ("\n{% if x is shiny %}{% endif %}", "test `shiny`"),
        ] {
            let err = check(Engine::Jinja, &PromptBody::Text(source.to_owned())).expect_err(source);
            let TemplateError::Syntax { message, line, .. } = err else {
                panic!("{source}: {err:?}")
            };
            assert!(message.contains(what), "{source}: {message}");
            assert!(line.is_some(), "{source}");
        }
    }

    #[test]
    fn computed_include_names_are_refused() {
        let cases = [
            "{% include name %}",
            "{% include ['a', 'b'] %}",
            "{% include 'a' ~ b %}",
        ];
        for source in cases {
            let err = JINJA.includes_of(source).expect_err(source);
            let TemplateError::Syntax { message, line, .. } = &err else {
                panic!("{source}: {err:?}")
            };
            assert!(message.contains("literally"), "{source}: {message}");
            assert!(line.is_some(), "{source}");
        }
    }

    #[test]
    fn tojson_renders_json_with_spaces() {
        let out = JINJA
            .render_text("{{ obj | tojson }}", json!({"obj": {"a": [1, "x"]}}), &[])
            .expect("render");
        assert_eq!(out, r#"{"a": [1, "x"]}"#);
    }

    #[test]
    fn a_partials_undefined_variable_is_reported_as_undefined() {
        let err = JINJA
            .render_text(
                "{% include 'common/safety' %}",
                json!({}),
                &[("common/safety", "hello\n{{ who }}")],
            )
            .expect_err("partial reads an undefined variable");
        let TemplateError::Render { message, .. } = err else {
            panic!("{err:?}")
        };
        assert!(message.contains("undefined"), "{message}");
    }

    #[test]
    fn a_runaway_loop_runs_out_of_fuel_instead_of_hanging() {
        let limits = Limits {
            max_steps: 10_000,
            ..Limits::default()
        };
        let err = JINJA
            .render_with(
                "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
                json!({}),
                &[],
                &limits,
            )
            .expect_err("out of fuel");
        let TemplateError::RenderLimit { limit, message } = err else {
            panic!("{err:?}")
        };
        assert_eq!(limit, "steps");
        assert!(message.contains("10000 steps"), "{message}");
    }

    #[test]
    fn the_default_fuel_stops_a_runaway_loop_too() {
        let err = JINJA
            .render_text(
                "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
                json!({}),
                &[],
            )
            .expect_err("out of fuel");
        assert!(
            matches!(err, TemplateError::RenderLimit { limit: "steps", .. }),
            "{err:?}"
        );
    }
}
