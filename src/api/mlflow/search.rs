//! The part of MLflow's search filter language that prompts need: clauses on
//! `name` and on tags (`tags.key`, ``tags.`dotted.key` ``), compared with
//! `=`, `LIKE` or `ILIKE` to a quoted string, joined by `AND`. Anything else
//! is refused naming what is not supported. Pure: parsing and matching only.

use std::collections::BTreeMap;

/// The longest filter accepted, in characters.
pub const MAX_FILTER_LEN: usize = 2000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Field {
    Name,
    Tag(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Like,
    ILike,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Clause {
    pub field: Field,
    pub op: Op,
    pub value: String,
}

impl Clause {
    /// Whether a prompt named `name` with `tags` (key → value) matches.
    pub fn matches(&self, name: &str, tags: &BTreeMap<String, String>) -> bool {
        let subject = match &self.field {
            Field::Name => Some(name),
            Field::Tag(key) => tags.get(key).map(String::as_str),
        };
        let Some(subject) = subject else {
            return false;
        };
        match self.op {
            Op::Eq => subject == self.value,
            Op::Like => like(subject, &self.value),
            Op::ILike => like(&subject.to_lowercase(), &self.value.to_lowercase()),
        }
    }
}

/// Parses `filter`; an empty filter is no clause. The error names what is
/// not supported.
pub fn parse(filter: &str) -> Result<Vec<Clause>, String> {
    if filter.chars().count() > MAX_FILTER_LEN {
        return Err(format!("filter: at most {MAX_FILTER_LEN} characters"));
    }
    let tokens = tokenize(filter)?;
    let mut clauses = Vec::new();
    let mut rest = tokens.as_slice();
    while !rest.is_empty() {
        let (field, op, value, after) = match rest {
            [Token::Word(field), Token::Op(op), Token::Quoted(value), after @ ..] => {
                (field, op, value, after)
            }
            [Token::Word(field), Token::Word(op), Token::Quoted(value), after @ ..] => {
                (field, op, value, after)
            }
            _ => {
                return Err(format!(
                    "filter: {:?} is not supported; promptreg supports `name = '…'`, \
                     `name LIKE '…%'` and `tags.KEY = '…'` joined by AND",
                    describe(rest)
                ))
            }
        };
        clauses.push(Clause {
            field: parse_field(field)?,
            op: parse_op(op)?,
            value: value.clone(),
        });
        rest = match after {
            [] => after,
            [Token::Word(and), more @ ..]
                if and.eq_ignore_ascii_case("and") && !more.is_empty() =>
            {
                more
            }
            _ => {
                return Err(format!(
                    "filter: {:?} is not supported; clauses are joined by AND only",
                    describe(after)
                ))
            }
        };
    }
    Ok(clauses)
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Word(String),
    Op(String),
    Quoted(String),
}

fn describe(tokens: &[Token]) -> String {
    tokens
        .iter()
        .take(4)
        .map(|t| match t {
            Token::Word(w) | Token::Op(w) => w.clone(),
            Token::Quoted(q) => format!("'{q}'"),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn tokenize(filter: &str) -> Result<Vec<Token>, String> {
    let mut tokens = Vec::new();
    let mut chars = filter.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
        } else if c == '\'' || c == '"' {
            chars.next();
            let mut value = String::new();
            loop {
                match chars.next() {
                    Some(q) if q == c => break,
                    Some(other) => value.push(other),
                    None => return Err(format!("filter: a string opened with {c} is not closed")),
                }
            }
            tokens.push(Token::Quoted(value));
        } else if matches!(c, '=' | '!' | '<' | '>') {
            let mut op = String::new();
            while let Some(&c) = chars.peek() {
                if matches!(c, '=' | '!' | '<' | '>') {
                    op.push(c);
                    chars.next();
                } else {
                    break;
                }
            }
            tokens.push(Token::Op(op));
        } else {
            // A word: an identifier, possibly with `.` and backticked parts.
            let mut word = String::new();
            while let Some(&c) = chars.peek() {
                if c == '`' {
                    word.push(c);
                    chars.next();
                    loop {
                        match chars.next() {
                            Some('`') => {
                                word.push('`');
                                break;
                            }
                            Some(other) => word.push(other),
                            None => return Err("filter: a ` is not closed".to_owned()),
                        }
                    }
                } else if c.is_whitespace() || matches!(c, '=' | '!' | '<' | '>' | '\'' | '"') {
                    break;
                } else {
                    word.push(c);
                    chars.next();
                }
            }
            tokens.push(Token::Word(word));
        }
    }
    Ok(tokens)
}

fn parse_field(raw: &str) -> Result<Field, String> {
    if raw == "name" {
        return Ok(Field::Name);
    }
    let key = raw
        .strip_prefix("tags.")
        .or_else(|| raw.strip_prefix("tag."))
        .map(|key| {
            key.strip_prefix('`')
                .and_then(|k| k.strip_suffix('`'))
                .unwrap_or(key)
        })
        .filter(|key| !key.is_empty() && !key.contains('`'));
    match key {
        Some(key) => Ok(Field::Tag(key.to_owned())),
        None => Err(format!(
            "filter: searching by {raw:?} is not supported; promptreg searches by `name` \
             and `tags.KEY`"
        )),
    }
}

fn parse_op(raw: &str) -> Result<Op, String> {
    match raw.to_ascii_uppercase().as_str() {
        "=" => Ok(Op::Eq),
        "LIKE" => Ok(Op::Like),
        "ILIKE" => Ok(Op::ILike),
        _ => Err(format!(
            "filter: the comparison {raw:?} is not supported; promptreg supports =, LIKE and ILIKE"
        )),
    }
}

/// SQL `LIKE`: `%` is any run of characters, `_` any one character.
fn like(subject: &str, pattern: &str) -> bool {
    let s: Vec<char> = subject.chars().collect();
    let p: Vec<char> = pattern.chars().collect();
    // matched[j]: the first i characters of s match the first j of p.
    let mut matched = vec![false; p.len() + 1];
    matched[0] = true;
    for j in 1..=p.len() {
        matched[j] = matched[j - 1] && p[j - 1] == '%';
    }
    for c in &s {
        let mut next = vec![false; p.len() + 1];
        for j in 1..=p.len() {
            next[j] = match p[j - 1] {
                '%' => next[j - 1] || matched[j],
                '_' => matched[j - 1],
                literal => matched[j - 1] && literal == *c,
            };
        }
        matched = next;
    }
    matched[p.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn the_clients_own_filters_parse() {
        let clauses =
            parse("tags.`mlflow.prompt.is_prompt` = 'true' AND name LIKE 'greet%'").expect("ok");
        assert_eq!(
            clauses,
            vec![
                Clause {
                    field: Field::Tag("mlflow.prompt.is_prompt".into()),
                    op: Op::Eq,
                    value: "true".into()
                },
                Clause {
                    field: Field::Name,
                    op: Op::Like,
                    value: "greet%".into()
                },
            ]
        );
        let clauses = parse("name = \"a b AND c\" and tags.team='ml'").expect("ok");
        assert_eq!(clauses[0].value, "a b AND c");
        assert_eq!(clauses[1].field, Field::Tag("team".into()));
        assert_eq!(parse("  ").expect("ok"), vec![]);
    }

    #[test]
    fn unsupported_filters_say_what_is_not_supported() {
        for (filter, mentions) in [
            ("name != 'x'", "!="),
            ("name = 'x' OR name = 'y'", "AND"),
            ("version_number = '1'", "version_number"),
            ("name LIKE 'x", "not closed"),
            ("name = 'x' AND", "AND"),
            ("name > 'x'", ">"),
            ("name IN ('a')", "IN"),
        ] {
            let err = parse(filter).expect_err(filter);
            assert!(err.contains(mentions), "{filter}: {err}");
        }
    }

    #[test]
    fn clauses_match_names_and_tags() {
        let t = tags(&[("team", "ml"), ("mlflow.prompt.is_prompt", "true")]);
        let only = |f: &str| parse(f).expect("ok").remove(0);
        assert!(only("name = 'greet'").matches("greet", &t));
        assert!(!only("name = 'greet'").matches("greeting", &t));
        assert!(only("name LIKE 'greet%'").matches("greeting", &t));
        assert!(!only("name LIKE 'greet%'").matches("agreet", &t));
        assert!(only("name LIKE 'g_eet'").matches("greet", &t));
        assert!(only("name ILIKE 'GREET%'").matches("greet", &t));
        assert!(!only("name LIKE 'GREET%'").matches("greet", &t));
        assert!(only("tags.team = 'ml'").matches("x", &t));
        assert!(!only("tags.team = 'web'").matches("x", &t));
        assert!(!only("tags.owner = 'ml'").matches("x", &t));
        assert!(only("tags.`mlflow.prompt.is_prompt` = 'true'").matches("x", &t));
    }
}
