//! A template split into the pieces a reader tells apart: plain text, the
//! variables it outputs, the registry partials it includes, other tags
//! (blocks, statements) and comments. For showing a template, not for
//! rendering it: the pieces joined give back the source exactly, and an
//! include is recognised by the same pattern and parsed by the same rule
//! as [`super::includes`] and [`super::inline_includes`] use, so what is
//! shown as a partial is what a render would include.

use super::analysis::parse_include;
use super::{include_pattern, Include};
use crate::domain::Engine;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenKind {
    Text,
    /// An expression whose value is written out (`{{name}}`).
    Variable,
    Include(Include),
    /// A block or statement (`{{#if x}}`, `{% for %}`, `{{/each}}`).
    Tag,
    Comment,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    pub kind: TokenKind,
    pub text: String,
}

/// Tag delimiters of `engine`, longest opening first, with what each holds.
fn delimiters(engine: Engine) -> &'static [(&'static str, &'static str, Holds)] {
    match engine {
        Engine::Handlebars => &[
            ("{{!--", "--}}", Holds::Comment),
            ("{{{", "}}}", Holds::Output),
            ("{{", "}}", Holds::Output),
        ],
        Engine::Jinja => &[
            ("{#", "#}", Holds::Comment),
            ("{%", "%}", Holds::Statement),
            ("{{", "}}", Holds::Output),
        ],
    }
}

#[derive(Clone, Copy)]
enum Holds {
    Comment,
    Statement,
    Output,
}

/// `source` as tokens; joined, their texts equal `source`. An unclosed tag
/// runs to the end as text (the syntax check reports it elsewhere).
pub fn tokens(engine: Engine, source: &str) -> Vec<Token> {
    let mut tokens = Vec::new();
    let mut rest = source;
    while !rest.is_empty() {
        let next = delimiters(engine)
            .iter()
            .filter_map(|d| rest.find(d.0).map(|at| (at, d)))
            // The earliest opening; at one place, the longest (listed first).
            .min_by_key(|(at, _)| *at);
        let Some((at, &(open, close, holds))) = next else {
            push(&mut tokens, TokenKind::Text, rest);
            break;
        };
        let Some(len) = rest[at + open.len()..].find(close) else {
            push(&mut tokens, TokenKind::Text, rest);
            break;
        };
        let end = at + open.len() + len + close.len();
        push(&mut tokens, TokenKind::Text, &rest[..at]);
        let tag = &rest[at..end];
        push(&mut tokens, classify(engine, tag, open, holds), tag);
        rest = &rest[end..];
    }
    tokens
}

fn push(tokens: &mut Vec<Token>, kind: TokenKind, text: &str) {
    if !text.is_empty() {
        tokens.push(Token {
            kind,
            text: text.to_owned(),
        });
    }
}

fn classify(engine: Engine, tag: &str, open: &str, holds: Holds) -> TokenKind {
    if let Some(include) = include_pattern(engine)
        .captures(tag)
        .filter(|caps| caps.get(0).is_some_and(|m| m.len() == tag.len()))
        .and_then(|caps| parse_include(&caps[1]).ok())
    {
        return TokenKind::Include(include);
    }
    match holds {
        Holds::Comment => TokenKind::Comment,
        Holds::Statement => TokenKind::Tag,
        Holds::Output => {
            let inner = tag[open.len()..]
                .trim_start_matches(['~', '-'])
                .trim_start();
            match inner.chars().next() {
                Some('!') if engine == Engine::Handlebars => TokenKind::Comment,
                Some('#' | '/' | '^' | '>' | '*') if engine == Engine::Handlebars => TokenKind::Tag,
                _ if engine == Engine::Handlebars && inner.starts_with("else") => TokenKind::Tag,
                _ => TokenKind::Variable,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(engine: Engine, source: &str) -> Vec<(String, &'static str)> {
        tokens(engine, source)
            .into_iter()
            .map(|t| {
                let kind = match t.kind {
                    TokenKind::Text => "text",
                    TokenKind::Variable => "variable",
                    TokenKind::Include(_) => "include",
                    TokenKind::Tag => "tag",
                    TokenKind::Comment => "comment",
                };
                (t.text, kind)
            })
            .collect()
    }

    fn pairs(list: &[(&str, &'static str)]) -> Vec<(String, &'static str)> {
        list.iter().map(|(t, k)| ((*t).to_owned(), *k)).collect()
    }

    #[test]
    fn handlebars_pieces_are_told_apart() {
        let source = "Hi {{name}}{{#if vip}} {{{raw}}}{{/if}}{{! note }}{{> common/safety@1.2.0}}";
        assert_eq!(
            kinds(Engine::Handlebars, source),
            pairs(&[
                ("Hi ", "text"),
                ("{{name}}", "variable"),
                ("{{#if vip}}", "tag"),
                (" ", "text"),
                ("{{{raw}}}", "variable"),
                ("{{/if}}", "tag"),
                ("{{! note }}", "comment"),
                ("{{> common/safety@1.2.0}}", "include"),
            ])
        );
    }

    #[test]
    fn jinja_pieces_are_told_apart() {
        let source = "{# c #}{% for x in xs %}{{ x }}{% endfor %}{% include \"common/tone\" %}";
        assert_eq!(
            kinds(Engine::Jinja, source),
            pairs(&[
                ("{# c #}", "comment"),
                ("{% for x in xs %}", "tag"),
                ("{{ x }}", "variable"),
                ("{% endfor %}", "tag"),
                ("{% include \"common/tone\" %}", "include"),
            ])
        );
    }

    #[test]
    fn an_include_names_its_prompt_and_reference() {
        let found = tokens(Engine::Handlebars, "{{> a/b@staging}}");
        assert_eq!(
            found[0].kind,
            TokenKind::Include(Include {
                prompt: "a/b".into(),
                reference: Some("staging".into()),
            })
        );
    }

    #[test]
    fn tokens_join_back_into_the_source() {
        for (engine, source) in [
            (Engine::Handlebars, "a {{b}} {{ unclosed"),
            (Engine::Handlebars, "{{!-- {{x}} --}}<script>{{y}}"),
            (Engine::Jinja, "{{ a }}{% if b %}{# c"),
            (Engine::Jinja, ""),
        ] {
            let joined: String = tokens(engine, source).into_iter().map(|t| t.text).collect();
            assert_eq!(joined, source);
        }
    }
}
