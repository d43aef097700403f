//! LLM judges: a metric scored by a model. A judge is a rubric (correctness
//! against the reference, relevance to the input, faithfulness to a context
//! variable, or a custom criterion), a provider and model, and a prompt that
//! lives in the registry (`judges/<rubric>` unless named), so teams version
//! and review judge prompts like any other. Parsing the spec, the default
//! judge templates and reading the verdict are pure; calling happens in the
//! runner.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The metric name requests use for a judge.
pub const LLM_JUDGE: &str = "llm_judge";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Rubric {
    /// Does the output say what the reference says?
    Correctness,
    /// Does the output address the input?
    Relevance,
    /// Is every claim of the output supported by the context variable?
    Faithfulness,
    /// Does the output meet `criterion`?
    Custom,
}

impl Rubric {
    pub const ALL: [Rubric; 4] = [
        Self::Correctness,
        Self::Relevance,
        Self::Faithfulness,
        Self::Custom,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Correctness => "correctness",
            Self::Relevance => "relevance",
            Self::Faithfulness => "faithfulness",
            Self::Custom => "custom",
        }
    }
}

/// A judge as an evaluation's `metrics` names it:
/// `{"name": "llm_judge", "params": {"rubric": "correctness", "provider": "…"}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JudgeSpec {
    pub rubric: Rubric,
    /// What `custom` judges (required there, refused elsewhere).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub criterion: Option<String>,
    pub provider: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// For `faithfulness`: the input variable holding the context.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context_variable: Option<String>,
    /// The registry prompt that asks the judge (default `judges/<rubric>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
    /// The judge prompt's version, pinned when the evaluation is created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_version: Option<String>,
}

impl JudgeSpec {
    pub fn parse(params: &Value) -> Result<Self, String> {
        let spec: JudgeSpec =
            serde_json::from_value(params.clone()).map_err(|e| format!("llm_judge params: {e}"))?;
        match (spec.rubric, &spec.criterion) {
            (Rubric::Custom, None) => return Err("a custom judge needs `criterion`".into()),
            (Rubric::Custom, Some(c)) if c.trim().is_empty() => {
                return Err("`criterion` is empty".into())
            }
            (Rubric::Custom, Some(_)) | (_, None) => {}
            (_, Some(_)) => return Err("`criterion` is for the custom rubric only".into()),
        }
        if spec.rubric == Rubric::Faithfulness && spec.context_variable.is_none() {
            return Err("a faithfulness judge needs `context_variable`".into());
        }
        Ok(spec)
    }

    /// The key its scores are stored under: `llm_judge_correctness`, …
    pub fn score_key(&self) -> String {
        score_key(self.rubric)
    }

    pub fn prompt_name(&self) -> String {
        self.prompt
            .clone()
            .unwrap_or_else(|| format!("judges/{}", self.rubric.as_str()))
    }

    /// The variables the judge prompt is rendered with.
    pub fn variables(&self, input: &Value, output: &str, expected: Option<&str>) -> Value {
        let mut vars = Map::new();
        vars.insert("input".into(), Value::String(input.to_string()));
        vars.insert("output".into(), Value::String(output.to_owned()));
        vars.insert(
            "expected".into(),
            Value::String(expected.unwrap_or_default().to_owned()),
        );
        let context = self
            .context_variable
            .as_ref()
            .and_then(|name| input.get(name))
            .map(super::text_of)
            .unwrap_or_default();
        vars.insert("context".into(), Value::String(context));
        vars.insert(
            "criterion".into(),
            Value::String(self.criterion.clone().unwrap_or_default()),
        );
        Value::Object(vars)
    }
}

fn score_key(rubric: Rubric) -> String {
    format!("{LLM_JUDGE}_{}", rubric.as_str())
}

/// Whether `name` is a key judges' scores are stored under.
pub fn is_judge_score(name: &str) -> bool {
    Rubric::ALL
        .into_iter()
        .any(|rubric| score_key(rubric) == name)
}

const ANSWER: &str =
    "Answer with JSON only: {\"score\": <a number from 0 to 1>, \"reason\": \"<one sentence>\"}.";

/// The template a judge prompt starts from when the registry has none yet.
pub fn default_template(rubric: Rubric) -> String {
    let task = match rubric {
        Rubric::Correctness => {
            "Grade whether the OUTPUT states the same facts as the REFERENCE. 1 means fully \
             correct, 0 means wrong or missing.\n\nINPUT: {{input}}\nREFERENCE: {{expected}}\nOUTPUT: {{output}}"
        }
        Rubric::Relevance => {
            "Grade whether the OUTPUT addresses what the INPUT asks. 1 means fully relevant, \
             0 means off topic.\n\nINPUT: {{input}}\nOUTPUT: {{output}}"
        }
        Rubric::Faithfulness => {
            "Grade whether every claim in the OUTPUT is supported by the CONTEXT. 1 means \
             fully supported, 0 means contradicted or invented.\n\nCONTEXT: {{context}}\nOUTPUT: {{output}}"
        }
        Rubric::Custom => {
            "Grade whether the OUTPUT meets this criterion: {{criterion}}. 1 means fully, 0 means \
             not at all.\n\nINPUT: {{input}}\nOUTPUT: {{output}}"
        }
    };
    format!("You are grading the output of another model.\n{task}\n\n{ANSWER}\n")
}

/// Reads `{"score": x, "reason": "…"}` from a judge's answer (bare, or
/// inside other text or a fenced block). Scores outside [0, 1] are refused.
pub fn parse_verdict(text: &str) -> Result<(f64, String), String> {
    let start = text.find('{');
    let end = text.rfind('}');
    let (Some(start), Some(end)) = (start, end) else {
        return Err("the judge answered without a JSON object".into());
    };
    let object = text.get(start..=end).unwrap_or_default();
    let value: Value =
        serde_json::from_str(object).map_err(|e| format!("the judge's answer is not JSON: {e}"))?;
    let score = value
        .get("score")
        .and_then(Value::as_f64)
        .ok_or("the judge's answer has no numeric `score`")?;
    if !(0.0..=1.0).contains(&score) {
        return Err(format!("the judge's score {score} is not in [0, 1]"));
    }
    let reason = value
        .get("reason")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    Ok((score, reason))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn specs_are_checked() {
        let ok = JudgeSpec::parse(&json!({"rubric": "correctness", "provider": "p"})).expect("ok");
        assert_eq!(ok.score_key(), "llm_judge_correctness");
        assert_eq!(ok.prompt_name(), "judges/correctness");
        for (params, says) in [
            (
                json!({"rubric": "custom", "provider": "p"}),
                "needs `criterion`",
            ),
            (
                json!({"rubric": "relevance", "provider": "p", "criterion": "x"}),
                "custom rubric only",
            ),
            (
                json!({"rubric": "faithfulness", "provider": "p"}),
                "context_variable",
            ),
            (
                json!({"rubric": "vibes", "provider": "p"}),
                "unknown variant",
            ),
            (json!({"rubric": "relevance"}), "missing field `provider`"),
            (
                json!({"rubric": "relevance", "provider": "p", "temp": 1}),
                "unknown field",
            ),
        ] {
            let err = JudgeSpec::parse(&params).expect_err("refused");
            assert!(err.contains(says), "{params}: {err}");
        }
    }

    #[test]
    fn verdicts_are_read_strictly() {
        assert_eq!(
            parse_verdict("{\"score\": 0.8, \"reason\": \"close\"}"),
            Ok((0.8, "close".to_owned()))
        );
        assert_eq!(
            parse_verdict("Sure:\n```json\n{\"score\": 1, \"reason\": \"exact\"}\n```"),
            Ok((1.0, "exact".to_owned()))
        );
        for bad in [
            "no json",
            "{\"score\": \"high\"}",
            "{\"score\": 7}",
            "{\"score\": 0.5",
        ] {
            assert!(parse_verdict(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn faithfulness_reads_its_context_variable() {
        let spec = JudgeSpec::parse(
            &json!({"rubric": "faithfulness", "provider": "p", "context_variable": "doc"}),
        )
        .expect("ok");
        let vars = spec.variables(&json!({"doc": "The sky is blue."}), "Blue.", None);
        assert_eq!(vars["context"], "The sky is blue.");
        assert_eq!(vars["expected"], "");
        assert!(default_template(Rubric::Faithfulness).contains("{{context}}"));
    }
}
