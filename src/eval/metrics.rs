//! Metrics: parse a metric name and its JSON params once (`Metric::parse`),
//! then score one model output at a time (`Metric::score`) to a number in
//! [0, 1]. Pure functions of the sample: no I/O, no randomness. The
//! text-similarity metrics (levenshtein, token_f1, rouge_l, bleu) delegate to
//! `similarity`, which reproduces the reference Python implementations; the
//! test here checks them against `tests/fixtures/metrics/reference.json`.

use std::borrow::Cow;
use std::sync::Arc;

use regex::Regex;
use serde_json::{Map, Value};

use super::similarity::{levenshtein_similarity, rouge_l, sentence_bleu, squad_f1};
use crate::domain::json_kind;

/// Every metric name `Metric::parse` accepts, in the order the docs list them.
pub const METRIC_NAMES: &[&str] = &[
    "exact_match",
    "contains",
    "icontains",
    "regex",
    "json_valid",
    "json_schema",
    "levenshtein",
    "token_f1",
    "rouge_l",
    "bleu",
    "length",
];

/// One thing to score: the model's output, and optionally the reference and
/// the input variables.
#[derive(Debug, Clone, Copy, Default)]
pub struct Sample<'a> {
    /// What the model answered.
    pub output: &'a str,
    /// The dataset item's expected output, if it has one.
    pub expected: Option<&'a str>,
    /// The input variables the prompt was rendered with.
    pub input: Option<&'a Value>,
    /// The version's output_schema, for json_schema without a given schema.
    pub output_schema: Option<&'a Value>,
}

/// What `length` counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LengthUnit {
    /// Unicode scalar values.
    Chars,
    /// Runs of non-whitespace separated by Unicode whitespace.
    Words,
}

/// A metric, parsed and ready to score (patterns and schemas compiled).
/// Every score is in [0, 1]; 1 is best.
#[derive(Debug, Clone)]
pub enum Metric {
    /// `exact_match`: 1.0 when output equals expected after the optional
    /// normalisation. Params: `trim` (default true: strip surrounding
    /// whitespace), `case_sensitive` (default true; false compares Unicode
    /// lowercase), `collapse_whitespace` (default false: every run of
    /// whitespace counts as one space).
    ExactMatch {
        trim: bool,
        case_sensitive: bool,
        collapse_whitespace: bool,
    },
    /// `contains`: 1.0 when expected occurs in output, as given (an empty
    /// expected is always contained).
    Contains,
    /// `icontains`: `contains` on the Unicode lowercase of both.
    IContains,
    /// `regex`: 1.0 when param `pattern` (Rust `regex` syntax; `(?i)` for
    /// case-insensitive) matches anywhere in the output.
    Regex(Regex),
    /// `json_valid`: 1.0 when the output parses as JSON. Surrounding
    /// whitespace is ignored, and so is a Markdown fence around the whole
    /// output: a first line of ```` ``` ```` or ```` ```json ````, a last
    /// line of ```` ``` ````.
    JsonValid,
    /// `json_schema`: 1.0 when the output parses as JSON (as `json_valid`)
    /// and validates against param `schema` (JSON Schema 2020-12), or, when
    /// none is given, against the sample's `output_schema`. An output that is
    /// not JSON scores 0.0; a sample with neither schema is an error.
    JsonSchema(Option<Arc<jsonschema::Validator>>),
    /// `levenshtein`: 1 - distance / max(len_output, len_expected) over
    /// Unicode scalar values; both empty → 1.0. Equals rapidfuzz's
    /// `Levenshtein.normalized_similarity`.
    Levenshtein,
    /// `token_f1`: the SQuAD v1.1 official F1 (`evaluate-v1.1.py`): lowercase,
    /// drop ASCII punctuation, drop the words a/an/the, split on whitespace,
    /// F1 of the token multiset overlap. Like the official script it scores
    /// 0.0 when no token is shared, including when both sides normalise to
    /// no tokens at all (SQuAD v2.0 would give 1.0 there; v1.1 does not).
    TokenF1,
    /// `rouge_l`: ROUGE-L F-measure as Google's `rouge-score` computes it
    /// (`RougeScorer(['rougeL'])`, no stemmer; target = expected, prediction =
    /// output). Its tokenizer lowercases and keeps only runs of ASCII
    /// `[a-z0-9]`, so text with no ASCII letters or digits has no tokens;
    /// either side without tokens scores 0.0, both empty included.
    RougeL,
    /// `bleu`: `sacrebleu.sentence_bleu(output, [expected]).score / 100` with
    /// sacrebleu's defaults: 13a tokenizer, case-sensitive, exponential
    /// smoothing, effective order, n-grams up to 4, brevity penalty. No
    /// matching unigram (an empty side included) scores 0.0.
    Bleu,
    /// `length`: params `min` and `max` (optional, inclusive, non-negative
    /// integers) and `unit` (`"chars"`, the default, or `"words"`). With
    /// `min` and/or `max`: 1.0 when the output's length is within the bounds,
    /// else 0.0. With neither: needs expected, and scores the shorter length
    /// over the longer of output and expected (both empty → 1.0). Lengths
    /// are of the text as given, untrimmed.
    Length {
        min: Option<usize>,
        max: Option<usize>,
        unit: LengthUnit,
    },
}

/// Why a metric could not be parsed or could not score a sample.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MetricError {
    #[error("unknown metric `{0}`; known metrics: {known}", known = METRIC_NAMES.join(", "))]
    UnknownMetric(String),
    #[error("invalid params for metric `{metric}`: {message}")]
    InvalidParams { metric: String, message: String },
    #[error("metric `{metric}` needs an expected output, and this sample has none")]
    MissingExpected { metric: String },
    #[error(
        "metric `{metric}` needs a JSON Schema: give params.schema, or set the version's output_schema"
    )]
    MissingSchema { metric: String },
    #[error("metric `{metric}` cannot use the version's output_schema: {message}")]
    InvalidOutputSchema { metric: String, message: String },
}

impl Metric {
    /// `name` plus optional JSON params, as an API request gives them:
    /// "exact_match" or {"name": "regex", "params": {"pattern": "..."}}.
    /// `params` is `Null` when absent; otherwise it must be an object whose
    /// keys the metric knows (a misspelt param is an error, not a default).
    pub fn parse(name: &str, params: &Value) -> Result<Metric, MetricError> {
        let metric = match name {
            "exact_match" => {
                let p = Params::new(
                    "exact_match",
                    params,
                    &["trim", "case_sensitive", "collapse_whitespace"],
                )?;
                Metric::ExactMatch {
                    trim: p.bool("trim", true)?,
                    case_sensitive: p.bool("case_sensitive", true)?,
                    collapse_whitespace: p.bool("collapse_whitespace", false)?,
                }
            }
            "contains" => Params::new("contains", params, &[]).map(|_| Metric::Contains)?,
            "icontains" => Params::new("icontains", params, &[]).map(|_| Metric::IContains)?,
            "regex" => {
                let p = Params::new("regex", params, &["pattern"])?;
                let pattern = p
                    .str("pattern")?
                    .ok_or_else(|| p.invalid("`pattern` is required"))?;
                let regex = Regex::new(pattern).map_err(|e| {
                    p.invalid(format!("`pattern` is not a valid regular expression: {e}"))
                })?;
                Metric::Regex(regex)
            }
            "json_valid" => Params::new("json_valid", params, &[]).map(|_| Metric::JsonValid)?,
            "json_schema" => {
                let p = Params::new("json_schema", params, &["schema"])?;
                match p.value("schema") {
                    None => Metric::JsonSchema(None),
                    Some(schema) => {
                        let validator = jsonschema::draft202012::new(schema).map_err(|e| {
                            p.invalid(format!("`schema` is not a valid JSON Schema: {e}"))
                        })?;
                        Metric::JsonSchema(Some(Arc::new(validator)))
                    }
                }
            }
            "levenshtein" => {
                Params::new("levenshtein", params, &[]).map(|_| Metric::Levenshtein)?
            }
            "token_f1" => Params::new("token_f1", params, &[]).map(|_| Metric::TokenF1)?,
            "rouge_l" => Params::new("rouge_l", params, &[]).map(|_| Metric::RougeL)?,
            "bleu" => Params::new("bleu", params, &[]).map(|_| Metric::Bleu)?,
            "length" => {
                let p = Params::new("length", params, &["min", "max", "unit"])?;
                let min = p.count("min")?;
                let max = p.count("max")?;
                let unit = match p.str("unit")? {
                    None | Some("chars") => LengthUnit::Chars,
                    Some("words") => LengthUnit::Words,
                    Some(other) => {
                        return Err(p.invalid(format!(
                            "`unit` must be \"chars\" or \"words\", got {other:?}"
                        )))
                    }
                };
                if let (Some(lo), Some(hi)) = (min, max) {
                    if lo > hi {
                        return Err(p.invalid(format!("`min` ({lo}) is greater than `max` ({hi})")));
                    }
                }
                Metric::Length { min, max, unit }
            }
            _ => return Err(MetricError::UnknownMetric(name.to_owned())),
        };
        Ok(metric)
    }

    /// The name `parse` knows this metric by.
    pub fn name(&self) -> &'static str {
        match self {
            Metric::ExactMatch { .. } => "exact_match",
            Metric::Contains => "contains",
            Metric::IContains => "icontains",
            Metric::Regex(_) => "regex",
            Metric::JsonValid => "json_valid",
            Metric::JsonSchema(_) => "json_schema",
            Metric::Levenshtein => "levenshtein",
            Metric::TokenF1 => "token_f1",
            Metric::RougeL => "rouge_l",
            Metric::Bleu => "bleu",
            Metric::Length { .. } => "length",
        }
    }

    /// Whether scoring needs `Sample::expected` (so a runner can reject a
    /// dataset without expected outputs before calling any model).
    pub fn needs_expected(&self) -> bool {
        match self {
            Metric::Regex(_) | Metric::JsonValid | Metric::JsonSchema(_) => false,
            Metric::Length { min, max, .. } => min.is_none() && max.is_none(),
            Metric::ExactMatch { .. }
            | Metric::Contains
            | Metric::IContains
            | Metric::Levenshtein
            | Metric::TokenF1
            | Metric::RougeL
            | Metric::Bleu => true,
        }
    }

    /// Always a number in [0, 1]. Err when the metric cannot score this
    /// sample (e.g. needs `expected` and there is none) — the message says why.
    pub fn score(&self, sample: &Sample) -> Result<f64, MetricError> {
        let output = sample.output;
        let score = match self {
            Metric::ExactMatch {
                trim,
                case_sensitive,
                collapse_whitespace,
            } => {
                let expected = self.expected(sample)?;
                let (t, c, w) = (*trim, *case_sensitive, *collapse_whitespace);
                bool_score(normalise(output, t, c, w) == normalise(expected, t, c, w))
            }
            Metric::Contains => bool_score(output.contains(self.expected(sample)?)),
            Metric::IContains => {
                let expected = self.expected(sample)?.to_lowercase();
                bool_score(output.to_lowercase().contains(&expected))
            }
            Metric::Regex(regex) => bool_score(regex.is_match(output)),
            Metric::JsonValid => bool_score(parse_json_output(output).is_some()),
            Metric::JsonSchema(given) => {
                let compiled;
                let validator = match (given, sample.output_schema) {
                    (Some(v), _) => v.as_ref(),
                    (None, Some(schema)) => {
                        // Compiled per call to stay pure; a runner scoring
                        // many items of one version can parse the version's
                        // schema into params once instead.
                        compiled = jsonschema::draft202012::new(schema).map_err(|e| {
                            MetricError::InvalidOutputSchema {
                                metric: self.name().to_owned(),
                                message: e.to_string(),
                            }
                        })?;
                        &compiled
                    }
                    (None, None) => {
                        return Err(MetricError::MissingSchema {
                            metric: self.name().to_owned(),
                        })
                    }
                };
                bool_score(parse_json_output(output).is_some_and(|v| validator.is_valid(&v)))
            }
            Metric::Levenshtein => levenshtein_similarity(output, self.expected(sample)?),
            Metric::TokenF1 => squad_f1(output, self.expected(sample)?),
            Metric::RougeL => rouge_l(output, self.expected(sample)?),
            Metric::Bleu => sentence_bleu(output, self.expected(sample)?),
            Metric::Length { min, max, unit } => {
                let len = measure(output, *unit);
                if min.is_some() || max.is_some() {
                    let within = min.is_none_or(|lo| len >= lo) && max.is_none_or(|hi| len <= hi);
                    bool_score(within)
                } else {
                    let other = measure(self.expected(sample)?, *unit);
                    let longer = len.max(other);
                    if longer == 0 {
                        1.0
                    } else {
                        len.min(other) as f64 / longer as f64
                    }
                }
            }
        };
        // Float rounding may overshoot by an ulp (BLEU's exp(log(100))); the
        // contract is [0, 1].
        Ok(score.clamp(0.0, 1.0))
    }

    fn expected<'a>(&self, sample: &Sample<'a>) -> Result<&'a str, MetricError> {
        sample.expected.ok_or_else(|| MetricError::MissingExpected {
            metric: self.name().to_owned(),
        })
    }
}

/// A metric's params object, checked against the keys it knows.
struct Params<'a> {
    metric: &'static str,
    map: Option<&'a Map<String, Value>>,
}

impl<'a> Params<'a> {
    fn new(
        metric: &'static str,
        params: &'a Value,
        known: &[&str],
    ) -> Result<Params<'a>, MetricError> {
        let p = Params { metric, map: None };
        let map = match params {
            Value::Null => return Ok(p),
            Value::Object(map) => map,
            other => {
                return Err(p.invalid(format!(
                    "params must be a JSON object, got {}",
                    json_kind(other)
                )))
            }
        };
        if let Some(key) = map.keys().find(|k| !known.contains(&k.as_str())) {
            let message = if known.is_empty() {
                format!("unknown param `{key}`; this metric takes no params")
            } else {
                format!("unknown param `{key}`; known params: {}", known.join(", "))
            };
            return Err(p.invalid(message));
        }
        Ok(Params {
            metric,
            map: Some(map),
        })
    }

    fn invalid(&self, message: impl Into<String>) -> MetricError {
        MetricError::InvalidParams {
            metric: self.metric.to_owned(),
            message: message.into(),
        }
    }

    /// The param's value; an explicit `null` counts as absent.
    fn value(&self, key: &str) -> Option<&'a Value> {
        self.map?.get(key).filter(|v| !v.is_null())
    }

    fn bool(&self, key: &str, default: bool) -> Result<bool, MetricError> {
        match self.value(key) {
            None => Ok(default),
            Some(Value::Bool(b)) => Ok(*b),
            Some(other) => Err(self.invalid(format!(
                "`{key}` must be a boolean, got {}",
                json_kind(other)
            ))),
        }
    }

    fn str(&self, key: &str) -> Result<Option<&'a str>, MetricError> {
        match self.value(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.as_str())),
            Some(other) => Err(self.invalid(format!(
                "`{key}` must be a string, got {}",
                json_kind(other)
            ))),
        }
    }

    /// A non-negative integer (a count of chars or words).
    fn count(&self, key: &str) -> Result<Option<usize>, MetricError> {
        let Some(value) = self.value(key) else {
            return Ok(None);
        };
        value
            .as_u64()
            .and_then(|n| usize::try_from(n).ok())
            .map(Some)
            .ok_or_else(|| {
                self.invalid(format!(
                    "`{key}` must be a non-negative integer, got {value}"
                ))
            })
    }
}

fn bool_score(hit: bool) -> f64 {
    if hit {
        1.0
    } else {
        0.0
    }
}

fn normalise(s: &str, trim: bool, case_sensitive: bool, collapse: bool) -> Cow<'_, str> {
    let mut s = Cow::Borrowed(if trim { s.trim() } else { s });
    if collapse {
        let mut out = String::with_capacity(s.len());
        let mut in_space = false;
        for c in s.chars() {
            if c.is_whitespace() {
                if !in_space {
                    out.push(' ');
                }
                in_space = true;
            } else {
                out.push(c);
                in_space = false;
            }
        }
        s = Cow::Owned(out);
    }
    if !case_sensitive {
        s = Cow::Owned(s.to_lowercase());
    }
    s
}

fn measure(s: &str, unit: LengthUnit) -> usize {
    match unit {
        LengthUnit::Chars => s.chars().count(),
        LengthUnit::Words => s.split_whitespace().count(),
    }
}

/// The output as JSON, if it is JSON, possibly inside one Markdown fence.
fn parse_json_output(output: &str) -> Option<Value> {
    serde_json::from_str(unfence(output.trim())).ok()
}

/// The body of a ```` ``` ```` or ```` ```json ```` fence spanning the whole
/// text, or the text itself: models often wrap JSON that way even when told
/// not to, and the JSON is still what they meant.
fn unfence(text: &str) -> &str {
    let Some(rest) = text.strip_prefix("```") else {
        return text;
    };
    let Some((info, body)) = rest.split_once('\n') else {
        return text;
    };
    let info = info.trim();
    if !(info.is_empty() || info.eq_ignore_ascii_case("json")) {
        return text;
    }
    body.trim_end().strip_suffix("```").unwrap_or(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn metric(name: &str, params: Value) -> Metric {
        Metric::parse(name, &params).expect("metric parses")
    }

    fn score(m: &Metric, output: &str, expected: Option<&str>) -> f64 {
        m.score(&Sample {
            output,
            expected,
            ..Sample::default()
        })
        .expect("scores")
    }

    fn invalid(name: &str, params: Value) -> String {
        match Metric::parse(name, &params) {
            Err(MetricError::InvalidParams { metric, message }) => {
                assert_eq!(metric, name);
                message
            }
            other => panic!("{name} {params}: expected InvalidParams, got {other:?}"),
        }
    }

    #[test]
    fn reference_values_match_python_implementations() {
        let doc: Value =
            serde_json::from_str(include_str!("../../tests/fixtures/metrics/reference.json"))
                .expect("fixture is JSON");
        let cases = doc["cases"].as_array().expect("cases");
        assert!(cases.len() >= 20, "fixture has {} cases", cases.len());
        let mut failures = Vec::new();
        for case in cases {
            let name = case["name"].as_str().expect("name");
            let output = case["output"].as_str().expect("output");
            let expected = case["expected"].as_str().expect("expected");
            for metric_name in ["rouge_l", "bleu", "levenshtein", "token_f1"] {
                let want = case[metric_name].as_f64().expect("reference value");
                let got = score(&metric(metric_name, Value::Null), output, Some(expected));
                if (got - want).abs() > 1e-6 {
                    failures.push(format!("{name}/{metric_name}: got {got}, want {want}"));
                }
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    #[test]
    fn every_name_parses_without_params_except_regex() {
        for name in METRIC_NAMES {
            let parsed = Metric::parse(name, &Value::Null);
            match *name {
                "regex" => assert!(parsed.is_err()),
                _ => assert_eq!(parsed.expect("parses").name(), *name),
            }
        }
    }

    #[test]
    fn unknown_metric_lists_known_names() {
        let err = Metric::parse("bleurt", &Value::Null).expect_err("unknown");
        assert_eq!(err, MetricError::UnknownMetric("bleurt".into()));
        let message = err.to_string();
        assert!(message.contains("`bleurt`"), "{message}");
        for name in METRIC_NAMES {
            assert!(message.contains(name), "{message} lacks {name}");
        }
    }

    #[test]
    fn bad_params_are_rejected_with_a_reason() {
        let table = [
            ("exact_match", json!("yes"), "params must be a JSON object, got a string"),
            ("exact_match", json!({"trim": "no"}), "`trim` must be a boolean, got a string"),
            ("exact_match", json!({"case_sensitve": false}), "unknown param `case_sensitve`; known params: trim, case_sensitive, collapse_whitespace"),
            ("contains", json!({"trim": true}), "unknown param `trim`; this metric takes no params"),
            ("bleu", json!([1]), "params must be a JSON object, got an array"),
            ("regex", json!({}), "`pattern` is required"),
            ("regex", json!({"pattern": 5}), "`pattern` must be a string, got a number"),
            ("regex", json!({"pattern": "a("}), "`pattern` is not a valid regular expression"),
            ("json_schema", json!({"schema": {"type": "nonsense"}}), "`schema` is not a valid JSON Schema"),
            ("json_schema", json!({"schema": 5}), "`schema` is not a valid JSON Schema"),
            ("length", json!({"min": -1}), "`min` must be a non-negative integer, got -1"),
            ("length", json!({"max": 2.5}), "`max` must be a non-negative integer, got 2.5"),
            ("length", json!({"min": 5, "max": 2}), "`min` (5) is greater than `max` (2)"),
            ("length", json!({"unit": "tokens"}), "`unit` must be \"chars\" or \"words\", got \"tokens\""),
        ];
        for (name, params, want) in table {
            let message = invalid(name, params.clone());
            assert!(
                message.starts_with(want),
                "{name} {params}: {message:?} does not start with {want:?}"
            );
        }
    }

    #[test]
    fn missing_expected_is_an_error_naming_the_metric() {
        for name in [
            "exact_match",
            "contains",
            "icontains",
            "levenshtein",
            "token_f1",
            "rouge_l",
            "bleu",
            "length",
        ] {
            let m = metric(name, Value::Null);
            assert!(m.needs_expected(), "{name}");
            let err = m
                .score(&Sample {
                    output: "x",
                    ..Sample::default()
                })
                .expect_err(name);
            assert_eq!(
                err,
                MetricError::MissingExpected {
                    metric: name.into()
                }
            );
            assert!(err.to_string().contains(name));
        }
        for (name, params) in [
            ("regex", json!({"pattern": "x"})),
            ("json_valid", Value::Null),
            ("json_schema", json!({"schema": {}})),
            ("length", json!({"max": 3})),
        ] {
            let m = metric(name, params);
            assert!(!m.needs_expected(), "{name}");
            m.score(&Sample {
                output: "x",
                ..Sample::default()
            })
            .expect(name);
        }
    }

    #[test]
    fn exact_match_normalises_only_as_asked() {
        let table = [
            (json!(null), " Paris\n", "Paris", 1.0),
            (json!(null), "paris", "Paris", 0.0),
            (json!(null), "New  York", "New York", 0.0),
            (json!({"trim": false}), " Paris\n", "Paris", 0.0),
            (
                json!({"case_sensitive": false}),
                "PARİS",
                "pari\u{307}s",
                1.0,
            ),
            (json!({"case_sensitive": false}), "  ÉTÉ ", "été", 1.0),
            (
                json!({"collapse_whitespace": true}),
                "New \t\n York",
                "New York",
                1.0,
            ),
            (
                json!({"collapse_whitespace": true, "trim": false}),
                " a  b",
                "a b",
                0.0,
            ),
            (
                json!({"collapse_whitespace": true, "trim": false}),
                "  a  b",
                " a\tb",
                1.0,
            ),
            (json!(null), "", "", 1.0),
        ];
        for (params, output, expected, want) in table {
            let m = metric("exact_match", params.clone());
            assert_eq!(
                score(&m, output, Some(expected)),
                want,
                "{params} {output:?} {expected:?}"
            );
        }
    }

    #[test]
    fn contains_and_icontains() {
        let table = [
            ("The answer is 42.", "42", 1.0, 1.0),
            ("The answer is 42.", "43", 0.0, 0.0),
            ("The ANSWER is 42.", "answer", 0.0, 1.0),
            ("STRASSE Ärger", "ärger", 0.0, 1.0),
            ("anything", "", 1.0, 1.0),
            ("", "x", 0.0, 0.0),
        ];
        let (c, ic) = (
            metric("contains", Value::Null),
            metric("icontains", Value::Null),
        );
        for (output, expected, want_c, want_ic) in table {
            assert_eq!(
                score(&c, output, Some(expected)),
                want_c,
                "contains {output:?} {expected:?}"
            );
            assert_eq!(
                score(&ic, output, Some(expected)),
                want_ic,
                "icontains {output:?} {expected:?}"
            );
        }
    }

    #[test]
    fn regex_matches_anywhere() {
        let table = [
            (r"\d{3}-\d{4}", "call 555-1234 now", 1.0),
            (r"^\d+$", "12a", 0.0),
            (r"(?i)^yes\b", "YES, indeed", 1.0),
            (r"^yes\b", "YES, indeed", 0.0),
            (r"", "", 1.0),
            (r"café", "un café", 1.0),
        ];
        for (pattern, output, want) in table {
            let m = metric("regex", json!({"pattern": pattern}));
            assert_eq!(score(&m, output, None), want, "{pattern} {output:?}");
        }
    }

    #[test]
    fn json_valid_accepts_whole_output_fences() {
        let table = [
            (r#"{"a": 1}"#, 1.0),
            ("  [1, 2]\n", 1.0),
            ("42", 1.0),
            ("\"text\"", 1.0),
            ("```json\n{\"a\": 1}\n```", 1.0),
            ("```JSON\n{\"a\": 1}\n```\n", 1.0),
            ("```\n[true]\n```", 1.0),
            ("\n```json\n{}```", 1.0),
            ("```python\n{}\n```", 0.0),
            ("```json\n{}\n", 0.0),
            ("Here you go:\n```json\n{}\n```", 0.0),
            ("{'a': 1}", 0.0),
            ("{\"a\": 1} trailing", 0.0),
            ("", 0.0),
            ("```json {} ```", 0.0),
        ];
        let m = metric("json_valid", Value::Null);
        for (output, want) in table {
            assert_eq!(score(&m, output, None), want, "{output:?}");
        }
    }

    #[test]
    fn json_schema_uses_params_then_output_schema() {
        let schema = json!({"type": "object", "required": ["answer"], "properties": {"answer": {"type": "string"}}});
        let other = json!({"type": "array"});
        let given = metric("json_schema", json!({"schema": schema}));
        let from_version = metric("json_schema", Value::Null);
        fn sample<'a>(output: &'a str, output_schema: Option<&'a Value>) -> Sample<'a> {
            Sample {
                output,
                output_schema,
                ..Sample::default()
            }
        }

        let table = [
            (r#"{"answer": "yes"}"#, 1.0),
            ("```json\n{\"answer\": \"yes\"}\n```", 1.0),
            (r#"{"answer": 1}"#, 0.0),
            (r#"{}"#, 0.0),
            ("not json", 0.0),
        ];
        for (output, want) in table {
            // A schema in params wins over the version's.
            assert_eq!(
                given.score(&sample(output, Some(&other))).expect("scores"),
                want,
                "{output}"
            );
            assert_eq!(
                from_version
                    .score(&sample(output, Some(&schema)))
                    .expect("scores"),
                want,
                "{output}"
            );
        }

        let err = from_version
            .score(&sample("{}", None))
            .expect_err("no schema");
        assert_eq!(
            err,
            MetricError::MissingSchema {
                metric: "json_schema".into()
            }
        );
        let bad = json!({"type": 12});
        match from_version.score(&sample("{}", Some(&bad))) {
            Err(MetricError::InvalidOutputSchema { metric, .. }) => {
                assert_eq!(metric, "json_schema")
            }
            other => panic!("expected InvalidOutputSchema, got {other:?}"),
        }
    }

    #[test]
    fn levenshtein_counts_unicode_chars() {
        let table = [
            ("kitten", "sitting", 1.0 - 3.0 / 7.0),
            ("", "", 1.0),
            ("", "abc", 0.0),
            ("abc", "abc", 1.0),
            ("héllo", "hello", 0.8),
            ("日本語", "日本", 1.0 - 1.0 / 3.0),
            ("flaw", "lawn", 0.5),
            ("abcdef", "azcdxf", 1.0 - 2.0 / 6.0),
        ];
        let m = metric("levenshtein", Value::Null);
        for (a, b, want) in table {
            assert!((score(&m, a, Some(b)) - want).abs() < 1e-12, "{a:?} {b:?}");
            assert!((score(&m, b, Some(a)) - want).abs() < 1e-12, "{b:?} {a:?}");
        }
    }

    #[test]
    fn token_f1_follows_squad_v1_1() {
        let table = [
            ("The Cat sat.", "a cat SAT", 1.0),
            ("cat cat dog", "cat dog dog", 2.0 / 3.0),
            ("Denver Broncos", "the Denver Broncos team", 0.8),
            ("", "", 0.0),
            ("the", "a", 0.0),
            ("answer", "", 0.0),
            ("theory", "theory", 1.0),
        ];
        let m = metric("token_f1", Value::Null);
        for (output, expected, want) in table {
            assert!(
                (score(&m, output, Some(expected)) - want).abs() < 1e-12,
                "{output:?} {expected:?}"
            );
        }
    }

    #[test]
    fn rouge_l_and_bleu_basics() {
        let (rouge, bleu) = (metric("rouge_l", Value::Null), metric("bleu", Value::Null));
        for text in [
            "the cat sat on the mat",
            "A longer sentence, with punctuation!",
        ] {
            assert_eq!(score(&rouge, text, Some(text)), 1.0);
            assert_eq!(score(&bleu, text, Some(text)), 1.0);
        }
        // LCS "a b d" of 4-token sides: P = R = F = 3/4.
        assert!((score(&rouge, "a b c d", Some("a b d e")) - 0.75).abs() < 1e-12);
        assert_eq!(
            score(&bleu, "completely different", Some("nothing shared")),
            0.0
        );
        assert_eq!(score(&rouge, "", Some("")), 0.0);
    }

    #[test]
    fn length_bounds_and_ratio() {
        let table = [
            (json!({"min": 2, "max": 5}), "abc", None, 1.0),
            (json!({"min": 2, "max": 5}), "a", None, 0.0),
            (json!({"min": 2, "max": 5}), "abcdef", None, 0.0),
            (json!({"max": 3}), "日本語", None, 1.0),
            (
                json!({"min": 3, "unit": "words"}),
                "one two  three",
                None,
                1.0,
            ),
            (json!({"min": 3, "unit": "words"}), "one two", None, 0.0),
            (json!({"min": 0, "max": 0}), "", None, 1.0),
            (json!(null), "abcd", Some("ab"), 0.5),
            (json!(null), "ab", Some("abcd"), 0.5),
            (json!(null), "", Some(""), 1.0),
            (json!(null), "", Some("x"), 0.0),
            (json!({"unit": "words"}), "a b c", Some("a b c d e f"), 0.5),
        ];
        for (params, output, expected, want) in table {
            let m = metric("length", params.clone());
            assert_eq!(score(&m, output, expected), want, "{params} {output:?}");
        }
    }

    #[test]
    fn scores_stay_in_unit_interval() {
        let outputs = [
            "",
            "the the the",
            "A much longer answer, with 3.5 numbers!",
            "日本語",
        ];
        for name in METRIC_NAMES
            .iter()
            .filter(|n| !matches!(**n, "regex" | "json_schema"))
        {
            let m = metric(name, Value::Null);
            for a in outputs {
                for b in outputs {
                    let s = score(&m, a, Some(b));
                    assert!((0.0..=1.0).contains(&s), "{name} {a:?} {b:?} = {s}");
                }
            }
        }
    }
}
