//! Handlebars parse errors in the author's words. The parser reports the
//! grammar rules it would have accepted (`expected identifier,
//! helper_parameter, or trailing_tilde_to_omit_whitespace`); this looks at
//! the template around the reported position and says what is wrong there
//! (an unclosed `{{`, a `{{/if}}` that closes nothing, a block never
//! closed). The caller keeps the line and column; nothing here parses
//! templates for any other purpose.

use handlebars::TemplateErrorReason;

/// One sentence for a parse error at `pos` (1-based line and column, as the
/// parser reports them) in `source`.
pub(super) fn explain(
    source: &str,
    pos: Option<(usize, usize)>,
    reason: &TemplateErrorReason,
) -> String {
    match reason {
        TemplateErrorReason::MismatchingClosedHelper(open, close) => format!(
            "`{{{{/{close}}}}}` does not close the open `{{{{#{open}}}}}`: close that with `{{{{/{open}}}}}` first"
        ),
        TemplateErrorReason::MismatchingClosedDecorator(open, close) => format!(
            "`{{{{/{close}}}}}` does not close the open `{{{{#*{open}}}}}`: close that with `{{{{/{open}}}}}` first"
        ),
        TemplateErrorReason::InvalidSyntax(expected) => {
            let offset = pos.and_then(|(line, column)| byte_offset(source, line, column));
            match offset {
                Some(offset) => invalid_syntax(source, offset, expected),
                None => format!("invalid handlebars syntax{}", expectation(expected)),
            }
        }
        other => other.to_string(),
    }
}

fn invalid_syntax(source: &str, offset: usize, expected: &str) -> String {
    let at_end = source[offset..].trim().is_empty();
    let Some(start) = tag_start(source, offset) else {
        return match open_blocks(source).last() {
            Some(block) if at_end => block.never_closed(source),
            None if at_end => {
                "unexpected end of template: an expression or block is not closed".to_owned()
            }
            _ => format!("invalid handlebars syntax{}", expectation(expected)),
        };
    };
    let tag = &source[start..];
    let braces = tag.len() - tag.trim_start_matches('{').len();
    let inner = tag[braces..].trim_start_matches('~').trim_start();
    let (line, column) = line_column(source, start);
    let end = tag.find("}}");
    let next_open = tag[braces..].find("{{").map(|i| i + braces);
    let closed = end.is_some_and(|end| next_open.is_none_or(|next| end < next));
    if !closed {
        if inner.starts_with('!') {
            return format!(
                "unclosed comment: the comment opened at line {line}, column {column} needs \
                 `--}}}}` (after `{{{{!--`) or `}}}}` (after `{{{{!`)"
            );
        }
        return format!(
            "unclosed `{{{{`: the expression opened at line {line}, column {column} has no closing `}}}}`"
        );
    }
    if braces == 3 && !tag.contains("}}}") {
        return format!(
            "`{{{{{{` opened at line {line}, column {column} must be closed with `}}}}}}`"
        );
    }
    let word: String = inner
        .trim_start_matches(['/', '#', '>', '*', '^'])
        .trim_start()
        .chars()
        .take_while(|c| !c.is_whitespace() && !matches!(c, '}' | '~' | '('))
        .collect();
    if inner.starts_with('/') {
        return format!(
            "`{{{{/{word}}}}}` closes nothing: no `{{{{#{word}}}}}` block is open here"
        );
    }
    if word == "else" && !inner.starts_with(['#', '>']) {
        return "`{{else}}` belongs inside a block, once: between `{{#if …}}` (or `#unless`, \
                `#each`, `#with`) and its closing tag"
            .to_owned();
    }
    if inner.starts_with('>') && word.is_empty() {
        return "`{{>` needs a partial name, e.g. `{{> common/safety}}`".to_owned();
    }
    if inner.starts_with('}') {
        return "empty expression: `{{ }}` must name a variable or a helper".to_owned();
    }
    let snippet: String = tag
        .chars()
        .take(end.map_or(40, |end| end + 2).min(40))
        .collect();
    format!(
        "invalid handlebars syntax in `{snippet}`{}",
        expectation(expected)
    )
}

/// The parser's expectation in plain words (`: expected a name or an
/// argument here`), or nothing when it only lists grammar internals.
fn expectation(expected: &str) -> String {
    let Some((_, list)) = expected.rsplit_once("expected ") else {
        return String::new();
    };
    let mut words: Vec<&str> = Vec::new();
    for rule in list
        .split([',', ' '])
        .filter(|r| !r.is_empty() && *r != "or")
    {
        let word = match rule {
            "identifier" | "path_id" | "path_inline" | "partial_identifier" => "a name",
            "helper_parameter" => "an argument",
            "subexpression" => "a `(subexpression)`",
            "hash" => "a `key=value` argument",
            _ => continue,
        };
        if !words.contains(&word) {
            words.push(word);
        }
    }
    match words.as_slice() {
        [] => String::new(),
        [one] => format!(": expected {one} here"),
        [init @ .., last] => format!(": expected {} or {last} here", init.join(", ")),
    }
}

/// Where the `{{` (or `{{{`) enclosing `offset` starts, if the text before
/// `offset` opened one.
fn tag_start(source: &str, offset: usize) -> Option<usize> {
    let mut start = if source[offset..].starts_with("{{") {
        offset
    } else {
        source[..offset].rfind("{{")?
    };
    while start > 0 && source.as_bytes().get(start - 1) == Some(&b'{') {
        start -= 1;
    }
    // A tag closed before `offset` does not enclose it.
    match source[start..offset.max(start)].find("}}") {
        Some(_) => None,
        None => Some(start),
    }
}

/// A block opened with `{{#name …}}`.
struct OpenBlock {
    name: String,
    offset: usize,
}

impl OpenBlock {
    fn never_closed(&self, source: &str) -> String {
        let (line, column) = line_column(source, self.offset);
        format!(
            "`{{{{#{name}}}}}` opened at line {line}, column {column} is never closed: add `{{{{/{name}}}}}`",
            name = self.name
        )
    }
}

/// The blocks still open at the end of `source`, outermost first. A rough
/// scan of `{{#…}}` and `{{/…}}` tags, enough to name what was left open.
fn open_blocks(source: &str) -> Vec<OpenBlock> {
    let mut open: Vec<OpenBlock> = Vec::new();
    let mut rest = 0;
    while let Some(found) = source[rest..].find("{{") {
        let start = rest + found;
        let Some(len) = source[start..].find("}}") else {
            break;
        };
        let inner = source[start..start + len]
            .trim_start_matches('{')
            .trim_start_matches('~')
            .trim_start();
        let name = |s: &str| -> String {
            s.trim_start_matches(['#', '/', '>', '*'])
                .trim_start()
                .chars()
                .take_while(|c| !c.is_whitespace() && !matches!(c, '}' | '~'))
                .collect()
        };
        if inner.starts_with('#') {
            open.push(OpenBlock {
                name: name(inner),
                offset: start,
            });
        } else if inner.starts_with('/') {
            let closing = name(inner);
            if open.last().is_some_and(|block| block.name == closing) {
                open.pop();
            }
        }
        rest = start + len + 2;
    }
    open
}

/// The byte offset of 1-based `line` and `column` (in characters).
fn byte_offset(source: &str, line: usize, column: usize) -> Option<usize> {
    let line_start = if line <= 1 {
        0
    } else {
        source
            .match_indices('\n')
            .nth(line - 2)
            .map(|(i, _)| i + 1)?
    };
    let in_line = &source[line_start..];
    let within = in_line
        .char_indices()
        .nth(column.saturating_sub(1))
        .map_or(in_line.len(), |(i, _)| i);
    Some(line_start + within)
}

/// The 1-based line and column (in characters) of byte `offset`.
fn line_column(source: &str, offset: usize) -> (usize, usize) {
    let before = &source[..offset];
    let line = before.matches('\n').count() + 1;
    let column = before
        .rsplit('\n')
        .next()
        .unwrap_or_default()
        .chars()
        .count()
        + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::super::hbs::parse;

    /// Each template's parse error, in the words an author should read.
    #[test]
    fn parse_errors_read_as_plain_sentences() {
        let cases = [
            (
                "a {{name",
                "unclosed `{{`: the expression opened at line 1, column 3",
            ),
            ("{{name} x", "unclosed `{{`"),
            ("{{", "unclosed `{{`"),
            ("{{!-- note", "unclosed comment"),
            ("{{{name}}", "must be closed with `}}}`"),
            ("x\n{{/if}}", "`{{/if}}` closes nothing"),
            ("{{else}}", "`{{else}}` belongs inside a block"),
            (
                "{{#if a}}{{else}}{{else}}{{/if}}",
                "`{{else}}` belongs inside a block",
            ),
            (
                "{{#if a}}\n {{#each b}}x{{/each}}",
                "`{{#if}}` opened at line 1, column 1 is never closed",
            ),
            (
                "{{#if a}}y{{/each}}",
                "`{{/each}}` does not close the open `{{#if}}`",
            ),
            ("{{> }}", "needs a partial name"),
            ("{{ }}", "empty expression"),
            (
                "{{name.}}",
                "invalid handlebars syntax in `{{name.}}`: expected a name here",
            ),
            ("{{a b=}}", "expected an argument here"),
        ];
        for (source, says) in cases {
            let problem = parse(source).expect_err(source);
            assert!(
                problem.message.contains(says),
                "{source:?}: {:?} lacks {says:?}",
                problem.message
            );
            assert!(
                !problem.message.contains("tilde") && !problem.message.contains("helper_parameter"),
                "{source:?}: {}",
                problem.message
            );
            assert!(
                problem.line.is_some() && problem.column.is_some(),
                "{source:?}"
            );
        }
    }
}
