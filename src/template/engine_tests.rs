//! The behaviour both template engines share, tested once and run for each.
//!
//! Every test here is a function of the engine, listed in `for_each_engine!`,
//! which runs it as `engine_tests::handlebars::NAME` and
//! `engine_tests::jinja::NAME`. A template is written once per syntax with
//! [`src`]; the expectation after it holds for both. What only one engine has
//! (handlebars' `with`, helpers, inline partials; jinja's `set`, macros,
//! `is defined`, fuel) and where an engine words or locates an error its own
//! way is tested in `hbs.rs` or `jinja.rs`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

use super::*;

/// Runs each listed test function once per engine.
macro_rules! for_each_engine {
    ($($test:ident),+ $(,)?) => {
        mod handlebars {
            $(
                #[test]
                fn $test() {
                    super::$test(crate::domain::Engine::Handlebars);
                }
            )+
        }
        mod jinja {
            $(
                #[test]
                fn $test() {
                    super::$test(crate::domain::Engine::Jinja);
                }
            )+
        }
    };
}

for_each_engine!(
    // Variables and includes found by analysis.
    variables_include_dotted_paths_and_conditions,
    variables_exclude_loop_locals_but_keep_outer_reads,
    variables_come_from_arguments_not_helper_or_filter_names,
    variables_follow_else_if_chains,
    placeholder_names_are_variables_of_a_chat_body,
    includes_list_default_and_pinned_partials_once_each,
    includes_are_deduplicated_across_chat_messages,
    badly_named_includes_are_refused_with_their_line,
    // Checks and syntax errors.
    check_accepts_a_valid_chat_body,
    check_knows_the_built_in_helpers_filters_and_tests,
    check_refuses_an_unknown_helper_or_filter_naming_it_and_its_line,
    syntax_errors_carry_line_and_column,
    syntax_errors_name_the_chat_message,
    // Rendering.
    renders_a_text_body,
    renders_chat_with_the_placeholder_spliced_at_its_position,
    an_empty_history_expands_to_no_messages,
    a_placeholder_that_is_not_a_list_of_messages_is_invalid,
    renders_without_html_escaping,
    upper_lower_and_default_transform_values,
    extra_variables_are_allowed,
    // Strict mode: missing and unusable values.
    missing_variables_are_all_listed_sorted_with_dotted_paths,
    missing_variables_span_chat_messages_and_placeholders,
    values_a_template_defaults_are_not_required,
    an_explicit_null_satisfies_the_paths_below_it,
    iterating_a_non_list_is_a_render_error,
    render_errors_name_the_chat_message,
    // Partials.
    partials_render_with_the_callers_context_including_nested_ones,
    a_partials_missing_variable_is_a_render_error_naming_the_partial_and_line,
    an_unsupplied_partial_is_a_render_error_naming_it,
    a_partial_with_bad_syntax_fails_compilation_naming_it,
    // Output limits.
    output_over_the_limit_is_refused,
    a_long_output_stops_at_the_byte_limit,
    the_output_limit_covers_all_chat_messages_together,
    // Compiled bodies.
    a_compiled_body_renders_many_times_across_threads,
    a_one_line_template_renders_in_microseconds_once_compiled,
);

/// One template written in each engine's syntax.
#[derive(Debug, Clone, Copy)]
struct Src {
    hbs: &'static str,
    jinja: &'static str,
}

/// The same template in handlebars, then in jinja.
const fn src(hbs: &'static str, jinja: &'static str) -> Src {
    Src { hbs, jinja }
}

impl Src {
    fn of(self, engine: Engine) -> &'static str {
        match engine {
            Engine::Handlebars => self.hbs,
            Engine::Jinja => self.jinja,
        }
    }
}

fn text(source: &str) -> PromptBody {
    PromptBody::Text(source.to_owned())
}

fn chat_body(engine: Engine) -> PromptBody {
    PromptBody::Chat(vec![
        ChatMessage::System {
            content: src(
                "You help {{customer.name}}.",
                "You help {{ customer.name }}.",
            )
            .of(engine)
            .to_owned(),
        },
        ChatMessage::Placeholder {
            name: "history".to_owned(),
        },
        ChatMessage::User {
            content: src("{{question}}", "{{ question }}").of(engine).to_owned(),
        },
    ])
}

fn vars_of(engine: Engine, source: &str) -> Vec<String> {
    variables(engine, &text(source)).expect(source)
}

fn no_partials() -> HashMap<String, String> {
    HashMap::new()
}

fn partials_of(engine: Engine, partials: &[(&str, Src)]) -> HashMap<String, String> {
    partials
        .iter()
        .map(|(key, source)| ((*key).to_owned(), source.of(engine).to_owned()))
        .collect()
}

fn render_default(
    engine: Engine,
    body: &PromptBody,
    vars: Value,
) -> Result<Rendered, TemplateError> {
    render(engine, body, &vars, &no_partials(), &Limits::default())
}

/// Renders a text body written in `engine`'s syntax, partials too.
fn render_text(
    engine: Engine,
    source: Src,
    vars: Value,
    partials: &[(&str, Src)],
) -> Result<String, TemplateError> {
    let body = text(source.of(engine));
    let partials = partials_of(engine, partials);
    match render(engine, &body, &vars, &partials, &Limits::default())? {
        Rendered::Text(text) => Ok(text),
        Rendered::Chat(_) => panic!("text body rendered as chat"),
    }
}

/// One engine, for the tests of its own syntax in `hbs.rs` and `jinja.rs`:
/// what a text body written for it reads, includes and renders to.
pub(super) struct OneEngine(pub Engine);

impl OneEngine {
    pub fn vars_of(&self, source: &str) -> Vec<String> {
        vars_of(self.0, source)
    }

    pub fn includes_of(&self, source: &str) -> Result<Vec<Include>, TemplateError> {
        includes(self.0, &text(source))
    }

    pub fn render_text(
        &self,
        source: &str,
        vars: Value,
        partials: &[(&str, &str)],
    ) -> Result<String, TemplateError> {
        self.render_with(source, vars, partials, &Limits::default())
    }

    pub fn render_with(
        &self,
        source: &str,
        vars: Value,
        partials: &[(&str, &str)],
        limits: &Limits,
    ) -> Result<String, TemplateError> {
        let partials = partials
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        match render(self.0, &text(source), &vars, &partials, limits)? {
            Rendered::Text(text) => Ok(text),
            Rendered::Chat(_) => panic!("text body rendered as chat"),
        }
    }
}

fn message(role: &str, content: &str) -> RenderedMessage {
    RenderedMessage {
        role: role.to_owned(),
        content: content.to_owned(),
    }
}

fn variables_include_dotted_paths_and_conditions(engine: Engine) {
    let cases: [(Src, &[&str]); 2] = [
        (
            src(
                "Hi {{customer.name}}, {{#if flag}}x{{/if}}{{#unless off}}y{{/unless}} {{a/b}}",
                "Hi {{ customer.name }}, {% if flag %}x{% endif %}{% if not off %}y{% endif %} {{ a.b }}",
            ),
            &["a.b", "customer.name", "flag", "off"],
        ),
        (
            src(
                "{{user.name}} {{#if a}}{{upper x}}{{/if}} {{cfg.[mode]}} {{b.c.d}}",
                "{{ user.name }} {% if a %}{{ x | upper }}{% endif %} {{ cfg['mode'] }} {{ b.c.d }}",
            ),
            &["a", "b.c.d", "cfg.mode", "user.name", "x"],
        ),
    ];
    for (source, expected) in cases {
        let source = source.of(engine);
        assert_eq!(vars_of(engine, source), expected, "{engine:?}: {source}");
    }
}

fn variables_exclude_loop_locals_but_keep_outer_reads(engine: Engine) {
    let source = src(
        "{{#each items}}{{this.x}} {{name}} {{@index}} {{../title}} {{@root.org.id}}{{else}}{{empty}}{{/each}}\
         {{#each rows as |row i|}}{{row.a}}{{i}}{{/each}}",
        "{% for item in items %}{{ item.x }} {{ item.name }} {{ loop.index }} {{ title }} {{ org.id }}{% else %}{{ empty }}{% endfor %}\
         {% for row in rows %}{{ row.a }}{{ loop.index0 }}{% endfor %}",
    );
    assert_eq!(
        vars_of(engine, source.of(engine)),
        ["empty", "items", "org.id", "rows", "title"],
        "{engine:?}"
    );
}

fn variables_come_from_arguments_not_helper_or_filter_names(engine: Engine) {
    let cases: [(Src, &[&str]); 2] = [
        (
            src(
                "{{upper name}} {{json}} {{lookup map key}} {{#if (eq a \"x\")}}{{/if}} \
                 {{default nick \"friend\"}} {{len (lower tags)}} {{> common/safety who x=y}}",
                "{{ name | upper }} {{ map[key] }} {% if a == 'x' %}{% endif %} \
                 {{ nick | default('friend') }} {{ tags | lower | length }} \
                 {% with who = who, x = y %}{% include 'common/safety' %}{% endwith %}",
            ),
            &["a", "key", "map", "name", "nick", "tags", "who", "y"],
        ),
        (
            src(
                "{{eq items sep}} {{upper name}} {{lookup list idx}} {{default x y}}",
                "{{ items | join(sep) }} {{ name.upper() }} {{ list[idx] }} {{ x | default(y) }}",
            ),
            &["idx", "items", "list", "name", "sep", "x", "y"],
        ),
    ];
    for (source, expected) in cases {
        let source = source.of(engine);
        assert_eq!(vars_of(engine, source), expected, "{engine:?}: {source}");
    }
}

fn variables_follow_else_if_chains(engine: Engine) {
    let source = src(
        "{{#if a}}x{{else if b}}{{y}}{{else}}{{c}}{{/if}}",
        "{% if a %}x{% elif b %}{{ y }}{% else %}{{ c }}{% endif %}",
    );
    assert_eq!(
        vars_of(engine, source.of(engine)),
        ["a", "b", "c", "y"],
        "{engine:?}"
    );
}

fn placeholder_names_are_variables_of_a_chat_body(engine: Engine) {
    assert_eq!(
        variables(engine, &chat_body(engine)).expect("variables"),
        ["customer.name", "history", "question"],
        "{engine:?}"
    );
}

fn includes_list_default_and_pinned_partials_once_each(engine: Engine) {
    let cases: [(Src, &[&str]); 2] = [
        (
            src(
                "{{> common/safety}} {{> common/safety@1.2.0}} {{#> layout@production}}fallback{{/layout@production}} {{> common/safety}}",
                "{% include 'common/safety' %} {% include 'common/safety@1.2.0' %} {% import 'layout@production' as layout %} {% include 'common/safety' %}",
            ),
            &["common/safety", "common/safety@1.2.0", "layout@production"],
        ),
        (
            src(
                "{{> common/safety}}{{> common/safety@1.2.0}}{{> lib/macros@production}}{{> lib/more}}",
                "{% include \"common/safety\" %}{% include 'common/safety@1.2.0' %}\
                 {% import \"lib/macros@production\" as m %}{% from \"lib/more\" import f %}{{ m.x() }}{{ f() }}",
            ),
            &[
                "common/safety",
                "common/safety@1.2.0",
                "lib/macros@production",
                "lib/more",
            ],
        ),
    ];
    for (source, expected) in cases {
        let source = source.of(engine);
        let found = includes(engine, &text(source)).expect(source);
        let keys: Vec<String> = found.iter().map(Include::key).collect();
        assert_eq!(keys, expected, "{engine:?}: {source}");
        assert_eq!(found[1].reference.as_deref(), Some("1.2.0"), "{engine:?}");
    }
}

fn includes_are_deduplicated_across_chat_messages(engine: Engine) {
    let body = PromptBody::Chat(vec![
        ChatMessage::System {
            content: src(
                "{{> b}}{{> a@1.0.0}}",
                "{% include 'b' %}{% include 'a@1.0.0' %}",
            )
            .of(engine)
            .to_owned(),
        },
        ChatMessage::User {
            content: src(
                "{{> a@1.0.0}}{{> a}}",
                "{% include 'a@1.0.0' %}{% include 'a' %}",
            )
            .of(engine)
            .to_owned(),
        },
    ]);
    let keys: Vec<String> = includes(engine, &body)
        .expect("includes")
        .iter()
        .map(Include::key)
        .collect();
    assert_eq!(keys, ["a", "a@1.0.0", "b"], "{engine:?}");
}

fn badly_named_includes_are_refused_with_their_line(engine: Engine) {
    let cases = [
        (src("{{> Common}}", "{% include 'Common' %}"), "must start"),
        (
            src("\n  {{> Bad}}", "\n  {% include 'Bad' %}"),
            "must start",
        ),
        (
            src("{{> common@1.2}}", "{% include 'common@1.2' %}"),
            "semver",
        ),
    ];
    for (source, why) in cases {
        let source = source.of(engine);
        let err = includes(engine, &text(source)).expect_err(source);
        let TemplateError::Syntax { message, line, .. } = &err else {
            panic!("{engine:?}: {source}: {err:?}")
        };
        assert!(message.contains(why), "{engine:?}: {source}: {message}");
        assert!(line.is_some(), "{engine:?}: {source}");
    }
}

fn check_accepts_a_valid_chat_body(engine: Engine) {
    check(engine, &chat_body(engine)).expect("valid");
}

fn check_knows_the_built_in_helpers_filters_and_tests(engine: Engine) {
    let source = src(
        "{{json x}}{{default x \"\"}}{{#if (eq x 1)}}{{/if}}{{upper x}}{{lower x}}",
        "{{ x | tojson }}{{ x | d('') }}{% if x is defined %}{% endif %}",
    );
    check(engine, &text(source.of(engine))).expect("built-ins are known");
}

fn check_refuses_an_unknown_helper_or_filter_naming_it_and_its_line(engine: Engine) {
    let source = src("{{shout name}}", "{{ name | shout }}").of(engine);
    let err = check(engine, &text(source)).expect_err(source);
    let TemplateError::Syntax { message, line, .. } = err else {
        panic!("{engine:?}: {err:?}")
    };
    assert!(message.starts_with("unknown"), "{engine:?}: {message}");
    assert!(message.contains("`shout`"), "{engine:?}: {message}");
    assert!(line.is_some(), "{engine:?}");
}

fn syntax_errors_carry_line_and_column(engine: Engine) {
    let cases = [
        (src("ok\nbad {{name", "ok\nbad {{ name"), 2),
        (
            src(
                "line one\nline {{two}}\n  {{#if x}}",
                "line one\nline {{ two }}\n  {% if x %}",
            ),
            3,
        ),
    ];
    for (source, expected_line) in cases {
        let source = source.of(engine);
        let err = check(engine, &text(source)).expect_err(source);
        assert!(
            matches!(
                err,
                TemplateError::Syntax {
                    message_index: None,
                    line: Some(line),
                    column: Some(_),
                    ..
                } if line == expected_line
            ),
            "{engine:?}: {source}: {err:?}"
        );
    }
}

fn syntax_errors_name_the_chat_message(engine: Engine) {
    let body = PromptBody::Chat(vec![
        ChatMessage::System {
            content: "fine".to_owned(),
        },
        ChatMessage::Placeholder {
            name: "h".to_owned(),
        },
        ChatMessage::User {
            content: src("ok\n{{#if x}}", "ok\n{% if x %}").of(engine).to_owned(),
        },
    ]);
    for err in [
        check(engine, &body).expect_err("check"),
        variables(engine, &body).expect_err("variables"),
        CompiledBody::compile(engine, &body, &no_partials(), Limits::default())
            .err()
            .expect("compile"),
    ] {
        assert!(
            matches!(
                err,
                TemplateError::Syntax {
                    message_index: Some(2),
                    line: Some(_),
                    ..
                }
            ),
            "{engine:?}: {err:?}"
        );
    }
}

fn renders_a_text_body(engine: Engine) {
    let source = src("Hi {{name}}!", "Hi {{ name }}!");
    let out =
        render_default(engine, &text(source.of(engine)), json!({"name": "Ada"})).expect("render");
    assert_eq!(out, Rendered::Text("Hi Ada!".to_owned()), "{engine:?}");
}

fn renders_chat_with_the_placeholder_spliced_at_its_position(engine: Engine) {
    let vars = json!({
        "customer": {"name": "Ada"},
        "question": "Why?",
        "history": [
            {"role": "user", "content": "Hi {{not templated}}"},
            {"role": "tool", "content": "42", "extra": true}
        ]
    });
    let out = render_default(engine, &chat_body(engine), vars).expect("render");
    assert_eq!(
        out,
        Rendered::Chat(vec![
            message("system", "You help Ada."),
            message("user", "Hi {{not templated}}"),
            message("tool", "42"),
            message("user", "Why?"),
        ]),
        "{engine:?}"
    );
}

fn an_empty_history_expands_to_no_messages(engine: Engine) {
    let vars = json!({"customer": {"name": "Ada"}, "question": "Q", "history": []});
    let out = render_default(engine, &chat_body(engine), vars).expect("render");
    assert_eq!(
        out,
        Rendered::Chat(vec![
            message("system", "You help Ada."),
            message("user", "Q")
        ]),
        "{engine:?}"
    );
}

fn a_placeholder_that_is_not_a_list_of_messages_is_invalid(engine: Engine) {
    let cases = [
        (json!("just text"), "not a string"),
        (json!(null), "not null"),
        (json!([{"role": "user"}]), "item 0"),
        (json!([{"role": "user", "content": "ok"}, "hi"]), "item 1"),
        (json!([{"role": 1, "content": "x"}]), "item 0"),
    ];
    for (history, why) in cases {
        let vars = json!({"customer": {"name": "A"}, "question": "Q", "history": history});
        let err = render_default(engine, &chat_body(engine), vars).expect_err(why);
        let TemplateError::InvalidPlaceholder { field, message } = &err else {
            panic!("{engine:?}: {why}: {err:?}")
        };
        assert_eq!(field, "history", "{engine:?}");
        assert!(message.contains(why), "{engine:?}: {message} lacks {why}");
    }
}

fn renders_without_html_escaping(engine: Engine) {
    let source = src("{{v}} {{{v}}}", "{{ v }} {{ v | safe }}");
    let out = render_text(engine, source, json!({"v": "<b>&\"'"}), &[]).expect("render");
    assert_eq!(out, "<b>&\"' <b>&\"'", "{engine:?}");
}

fn upper_lower_and_default_transform_values(engine: Engine) {
    let source = src(
        "{{upper name}}|{{lower \"MiXed\"}}|{{default missing \"m\"}}|{{default name \"x\"}}|{{upper num}}",
        "{{ name | upper }}|{{ 'MiXed' | lower }}|{{ missing | default('m') }}|{{ name | default('x') }}|{{ num | upper }}",
    );
    let out = render_text(engine, source, json!({"name": "Ada", "num": 5}), &[]).expect("render");
    assert_eq!(out, "ADA|mixed|m|Ada|5", "{engine:?}");
}

fn extra_variables_are_allowed(engine: Engine) {
    let source = src("{{a}}", "{{ a }}");
    let out = render_default(
        engine,
        &text(source.of(engine)),
        json!({"a": "x", "unused": [1, 2]}),
    )
    .expect("render");
    assert_eq!(out, Rendered::Text("x".to_owned()), "{engine:?}");
}

fn missing_variables_are_all_listed_sorted_with_dotted_paths(engine: Engine) {
    let source = src(
        "{{a}} {{b.c}} {{#each d}}{{x}}{{/each}} {{a}}",
        "{{ a }} {{ b.c }} {% for x in d %}{{ x.y }}{% endfor %} {{ a }}",
    );
    let body = text(source.of(engine));
    let err = render_default(engine, &body, json!({"a": 1})).expect_err("missing");
    assert_eq!(
        err,
        TemplateError::MissingVariables(vec!["b.c".to_owned(), "d".to_owned()]),
        "{engine:?}"
    );
    let err =
        render_default(engine, &body, json!({"a": 1, "b": {}, "d": []})).expect_err("b has no c");
    assert_eq!(
        err,
        TemplateError::MissingVariables(vec!["b.c".to_owned()]),
        "{engine:?}"
    );
}

fn missing_variables_span_chat_messages_and_placeholders(engine: Engine) {
    let err =
        render_default(engine, &chat_body(engine), json!({"customer": {}})).expect_err("missing");
    assert_eq!(
        err,
        TemplateError::MissingVariables(vec![
            "customer.name".to_owned(),
            "history".to_owned(),
            "question".to_owned()
        ]),
        "{engine:?}"
    );
}

fn values_a_template_defaults_are_not_required(engine: Engine) {
    let source = src(
        "{{default nick \"friend\"}}",
        "{{ nick | default('friend') }}{% if other is defined %}{{ other }}{% endif %}",
    );
    let out = render_default(engine, &text(source.of(engine)), json!({})).expect("optional");
    assert_eq!(out, Rendered::Text("friend".to_owned()), "{engine:?}");
}

fn an_explicit_null_satisfies_the_paths_below_it(engine: Engine) {
    let source = src(
        "{{#if customer}}{{customer.name}}{{else}}stranger{{/if}}",
        "{% if customer %}{{ customer.name }}{% else %}stranger{% endif %}",
    );
    let out =
        render_default(engine, &text(source.of(engine)), json!({"customer": null})).expect("null");
    assert_eq!(out, Rendered::Text("stranger".to_owned()), "{engine:?}");
}

fn iterating_a_non_list_is_a_render_error(engine: Engine) {
    let source = src(
        "{{#each n}}{{this}}{{/each}}",
        "{% for x in n %}{{ x }}{% endfor %}",
    );
    let err = render_text(engine, source, json!({"n": 5}), &[]).expect_err("each over a number");
    assert!(
        matches!(
            err,
            TemplateError::Render {
                message_index: None,
                ..
            }
        ),
        "{engine:?}: {err:?}"
    );
}

fn render_errors_name_the_chat_message(engine: Engine) {
    let body = PromptBody::Chat(vec![
        ChatMessage::System {
            content: "fine".to_owned(),
        },
        ChatMessage::User {
            content: src("{{#each n}}x{{/each}}", "{% for i in n %}x{% endfor %}")
                .of(engine)
                .to_owned(),
        },
    ]);
    let err = render_default(engine, &body, json!({"n": 3})).expect_err("each over a number");
    assert!(
        matches!(
            err,
            TemplateError::Render {
                message_index: Some(1),
                ..
            }
        ),
        "{engine:?}: {err:?}"
    );
}

fn partials_render_with_the_callers_context_including_nested_ones(engine: Engine) {
    let source = src(
        "A {{> common/safety}} B {{> common/safety@1.2.0 who}}",
        "A {% include 'common/safety' %} B \
         {% with name = who.name %}{% include 'common/safety@1.2.0' %}{% endwith %}",
    );
    let partials = [
        (
            "common/safety",
            src(
                "[safe {{name}} {{> common/footer}}]",
                "[safe {{ name }} {% include 'common/footer' %}]",
            ),
        ),
        (
            "common/safety@1.2.0",
            src("<pinned {{upper name}}>", "<pinned {{ name | upper }}>"),
        ),
        (
            "common/footer",
            src("(footer {{name}})", "(footer {{ name }})"),
        ),
    ];
    let vars = json!({"name": "Ada", "who": {"name": "Bob"}});
    let out = render_text(engine, source, vars, &partials).expect("render");
    assert_eq!(
        out, "A [safe Ada (footer Ada)] B <pinned BOB>",
        "{engine:?}"
    );
}

fn a_partials_missing_variable_is_a_render_error_naming_the_partial_and_line(engine: Engine) {
    let source = src("{{> common/safety}}", "{% include 'common/safety' %}");
    let partials = [("common/safety", src("hello\n{{who}}", "hello\n{{ who }}"))];
    let err = render_text(engine, source, json!({}), &partials)
        .expect_err("partial reads a missing variable");
    let TemplateError::Render { message, .. } = err else {
        panic!("{engine:?}: {err:?}")
    };
    assert!(message.contains("common/safety"), "{engine:?}: {message}");
    assert!(message.contains("line 2"), "{engine:?}: {message}");
}

fn an_unsupplied_partial_is_a_render_error_naming_it(engine: Engine) {
    let source = src("{{> common/gone}}", "{% include 'common/gone' %}");
    let err = render_text(engine, source, json!({}), &[]).expect_err("no partial");
    let TemplateError::Render { message, .. } = err else {
        panic!("{engine:?}: {err:?}")
    };
    assert!(message.contains("common/gone"), "{engine:?}: {message}");
}

fn a_partial_with_bad_syntax_fails_compilation_naming_it(engine: Engine) {
    let partials = [("common/bad", src("{{#if}}", "{% if %}"))];
    let err = render_text(engine, src("x", "x"), json!({}), &partials).expect_err("bad");
    let TemplateError::Syntax { message, .. } = err else {
        panic!("{engine:?}: {err:?}")
    };
    assert!(message.contains("common/bad"), "{engine:?}: {message}");
}

fn output_over_the_limit_is_refused(engine: Engine) {
    let limits = Limits {
        max_output_bytes: 10,
        ..Limits::default()
    };
    let body = text(src("{{a}}{{a}}", "{{ a }}{{ a }}").of(engine));
    let err = render(
        engine,
        &body,
        &json!({"a": "123456"}),
        &no_partials(),
        &limits,
    )
    .expect_err("too large");
    assert_eq!(
        err,
        TemplateError::OutputTooLarge { limit: 10 },
        "{engine:?}"
    );
    let ok = render(
        engine,
        &body,
        &json!({"a": "12345"}),
        &no_partials(),
        &limits,
    );
    assert_eq!(
        ok,
        Ok(Rendered::Text("1234512345".to_owned())),
        "{engine:?}"
    );
}

fn a_long_output_stops_at_the_byte_limit(engine: Engine) {
    let limits = Limits {
        max_output_bytes: 1000,
        ..Limits::default()
    };
    let body = text(
        src(
            "{{#each items}}0123456789{{/each}}",
            "{% for i in range(100000) %}0123456789{% endfor %}",
        )
        .of(engine),
    );
    let vars = json!({"items": vec![0; 100_000]});
    let err = render(engine, &body, &vars, &no_partials(), &limits).expect_err("too large");
    assert_eq!(
        err,
        TemplateError::OutputTooLarge { limit: 1000 },
        "{engine:?}"
    );
}

fn the_output_limit_covers_all_chat_messages_together(engine: Engine) {
    let limits = Limits {
        max_output_bytes: 10,
        ..Limits::default()
    };
    let body = PromptBody::Chat(vec![
        ChatMessage::System {
            content: "123456".to_owned(),
        },
        ChatMessage::User {
            content: "123456".to_owned(),
        },
    ]);
    let err = render(engine, &body, &json!({}), &no_partials(), &limits).expect_err("too large");
    assert_eq!(
        err,
        TemplateError::OutputTooLarge { limit: 10 },
        "{engine:?}"
    );
}

fn a_compiled_body_renders_many_times_across_threads(engine: Engine) {
    let body = text(src("Hi {{name}}", "Hi {{ name }}").of(engine));
    let compiled = Arc::new(
        CompiledBody::compile(engine, &body, &no_partials(), Limits::default()).expect("compile"),
    );
    let handles: Vec<_> = (0..4)
        .map(|i| {
            let compiled = Arc::clone(&compiled);
            std::thread::spawn(move || compiled.render(&json!({"name": i})))
        })
        .collect();
    for (i, handle) in handles.into_iter().enumerate() {
        let out = handle.join().expect("thread");
        assert_eq!(out, Ok(Rendered::Text(format!("Hi {i}"))), "{engine:?}");
    }
}

fn a_one_line_template_renders_in_microseconds_once_compiled(engine: Engine) {
    let runs = 2_000;
    let body = text(
        src(
            "Hello {{name}}, you are {{age}}.",
            "Hello {{ name }}, you are {{ age }}.",
        )
        .of(engine),
    );
    let compiled =
        CompiledBody::compile(engine, &body, &no_partials(), Limits::default()).expect("compile");
    let vars = json!({"name": "Ada", "age": 36});
    let start = Instant::now();
    for _ in 0..runs {
        compiled.render(&vars).expect("render");
    }
    let each = start.elapsed() / runs;
    // Generous for an unoptimised test build on a busy machine.
    assert!(
        each < Duration::from_micros(200),
        "{engine:?}: {each:?} per render"
    );
}
