//! Optimization: propose candidate templates for a prompt version, score
//! them against a dataset with the target model, keep the best that meets
//! the objective's constraints. The strategies (`opro`, `critique`,
//! `fewshot`, `compress`, `joint`) only propose; `scoring` runs
//! the target model and the metric; `halving` scores an iteration's
//! candidates; `runner` is the job that drives the loop and saves every
//! step; `result` writes the result version and moves the label.
//!
//! A candidate from the optimizer model is the text between `<prompt>` and
//! `</prompt>`. It replaces the base template's instruction: the whole text
//! of a text prompt, or the first system message of a chat prompt (the last
//! user message when there is none).

mod compress;
mod critique;
mod fewshot;
mod halving;
mod joint;
mod opro;
mod result;
pub mod runner;
mod scoring;

use std::collections::BTreeSet;
use std::sync::Arc;

use async_trait::async_trait;
use serde_json::Value;

use crate::domain::content::PromptBody;
use crate::domain::objective::Objective;
use crate::domain::optimization::{Candidate, OptimizationState, StrategyName};
use crate::domain::{ChatMessage, DatasetItem, Engine};
use crate::providers::{CallMeter, CompletionRequest, LlmProvider, ProviderError};
use crate::template::{Rendered, RenderedMessage};
use crate::worker::{JobError, StopSignal};

pub use scoring::{Outcome, Scorer};

/// Why a step did not complete.
#[derive(Debug)]
pub enum StepError {
    /// The call or cost budget is spent.
    Budget,
    /// The job was told to stop (cancel, lost lease, shutdown).
    Stopped,
    Failed(JobError),
}

impl From<JobError> for StepError {
    fn from(e: JobError) -> Self {
        Self::Failed(e)
    }
}

/// What a strategy proposes for one iteration.
#[derive(Debug, Default)]
pub struct Proposal {
    pub candidates: Vec<Candidate>,
    pub diagnosis: Option<String>,
    /// `joint`: the instructions and demonstration sets to search, once drawn.
    pub instructions: Option<Vec<String>>,
    pub demo_sets: Option<Vec<Vec<u32>>>,
}

/// What a strategy may look at and use.
pub struct Context<'a> {
    pub base: &'a PromptBody,
    pub engine: Engine,
    /// The variables the base template reads; every candidate must keep them.
    pub variables: &'a [String],
    pub state: &'a OptimizationState,
    pub train: &'a [DatasetItem],
    /// Candidates to propose.
    pub count: usize,
    /// The iteration being proposed, from 1.
    pub iteration: u32,
    pub seed: u64,
    pub num_demos: usize,
    /// How meta prompts name the score (the metric, or the weighted mean).
    pub metric: &'a str,
    pub objective: &'a Objective,
    pub scorer: &'a Scorer,
    pub optimizer: Option<&'a Optimizer>,
}

#[async_trait]
pub trait Strategy: Send + Sync {
    async fn propose(&self, context: &Context<'_>) -> Result<Proposal, StepError>;
}

pub fn strategy(name: StrategyName) -> Box<dyn Strategy> {
    match name {
        StrategyName::Opro => Box::new(opro::Opro),
        StrategyName::Critique => Box::new(critique::Critique),
        StrategyName::Fewshot => Box::new(fewshot::FewShot),
        StrategyName::Compress => Box::new(compress::Compress),
        StrategyName::Joint => Box::new(joint::Joint),
    }
}

/// The optimizer model: asked in plain chat, metered like the target.
pub struct Optimizer {
    pub provider: Arc<dyn LlmProvider>,
    pub model: Option<String>,
    pub params: serde_json::Map<String, Value>,
    pub meter: Arc<CallMeter>,
    pub stop: StopSignal,
}

impl Optimizer {
    /// One question with a system message; the reply's text.
    pub async fn ask(&self, system: &str, user: String) -> Result<String, StepError> {
        let message = |role: &str, content: String| RenderedMessage {
            role: role.to_owned(),
            content,
        };
        let request = CompletionRequest {
            rendered: Rendered::Chat(vec![
                message("system", system.to_owned()),
                message("user", user),
            ]),
            model: self.model.clone(),
            params: self.params.clone(),
            output_schema: None,
        };
        let call = self.provider.complete_metered(&request, &self.meter);
        let reply = tokio::select! {
            reply = call => reply,
            () = self.stop.stopped() => return Err(StepError::Stopped),
        };
        match reply {
            Ok(completion) => Ok(completion.text),
            Err(ProviderError::BudgetExhausted) => Err(StepError::Budget),
            Err(e) => Err(StepError::Failed(JobError::retryable(format!(
                "optimizer provider ({}): {e}",
                e.code()
            )))),
        }
    }
}

/// Every `<prompt>…</prompt>` in a reply, trimmed, at most `limit`.
pub fn extract_prompts(reply: &str, limit: usize) -> Vec<String> {
    const OPEN: &str = "<prompt>";
    const CLOSE: &str = "</prompt>";
    let mut found = Vec::new();
    let mut rest = reply;
    while let Some(start) = rest.find(OPEN) {
        let after = &rest[start + OPEN.len()..];
        let Some(end) = after.find(CLOSE) else { break };
        found.push(after[..end].trim().to_owned());
        rest = &after[end + CLOSE.len()..];
        if found.len() == limit {
            break;
        }
    }
    found
}

/// The base template's instruction: what optimizer candidates replace.
pub fn instruction(body: &PromptBody) -> &str {
    match body {
        PromptBody::Text(text) => text,
        PromptBody::Chat(messages) => instruction_index(messages)
            .and_then(|i| messages.get(i))
            .and_then(ChatMessage::content)
            .unwrap_or_default(),
    }
}

fn instruction_index(messages: &[ChatMessage]) -> Option<usize> {
    messages
        .iter()
        .position(|m| matches!(m, ChatMessage::System { .. }))
        .or_else(|| {
            messages
                .iter()
                .rposition(|m| matches!(m, ChatMessage::User { .. }))
        })
}

/// `body` with its instruction replaced by `text`.
pub fn with_instruction(body: &PromptBody, text: String) -> PromptBody {
    match body {
        PromptBody::Text(_) => PromptBody::Text(text),
        PromptBody::Chat(messages) => {
            let mut messages = messages.clone();
            match instruction_index(&messages).and_then(|i| messages.get_mut(i)) {
                Some(message) => {
                    *message = match message {
                        ChatMessage::User { .. } => ChatMessage::User { content: text },
                        _ => ChatMessage::System { content: text },
                    }
                }
                None => messages.insert(0, ChatMessage::System { content: text }),
            }
            PromptBody::Chat(messages)
        }
    }
}

/// A candidate body as the job keeps it: checked, or discarded with the reason.
pub fn check_candidate(body: PromptBody, engine: Engine, variables: &[String]) -> Candidate {
    if let Err(e) = crate::template::check(engine, &body) {
        return Candidate::discarded(body, format!("does not compile: {e}"));
    }
    let used: BTreeSet<String> = match crate::template::variables(engine, &body) {
        Ok(used) => used.into_iter().collect(),
        Err(e) => return Candidate::discarded(body, format!("does not compile: {e}")),
    };
    let dropped: Vec<&str> = variables
        .iter()
        .filter(|v| !used.contains(*v))
        .map(String::as_str)
        .collect();
    if !dropped.is_empty() {
        return Candidate::discarded(body, format!("drops variable(s) {}", dropped.join(", ")));
    }
    Candidate::new(body)
}

/// The candidates of an optimizer reply: each `<prompt>` as the base's new
/// instruction, checked; a reply with none yields one discarded candidate
/// saying so, so the iteration shows what happened.
pub fn candidates_from_reply(reply: &str, context: &Context<'_>) -> Vec<Candidate> {
    let found = extract_prompts(reply, context.count);
    if found.is_empty() {
        let excerpt: String = reply.chars().take(200).collect();
        return vec![Candidate::discarded(
            PromptBody::Text(excerpt),
            "the optimizer's reply has no <prompt>…</prompt>".to_owned(),
        )];
    }
    // Templates scored or proposed before: a repeat would cost calls and
    // tell nothing new.
    let mut seen: Vec<PromptBody> = std::iter::once(context.base.clone())
        .chain(
            context
                .state
                .iterations
                .iter()
                .flat_map(|i| &i.candidates)
                .map(|c| c.template.clone()),
        )
        .collect();
    found
        .into_iter()
        .map(|text| {
            let body = with_instruction(context.base, text);
            if seen.contains(&body) {
                return Candidate::discarded(body, "repeats an earlier template".to_owned());
            }
            seen.push(body.clone());
            check_candidate(body, context.engine, context.variables)
        })
        .collect()
}

/// Training examples a meta prompt shows the optimizer.
const TASK_EXAMPLES: usize = 3;

/// The first training examples with their expected outputs, as a meta
/// prompt shows the task.
pub fn task_examples(context: &Context<'_>) -> String {
    context
        .train
        .iter()
        .take(TASK_EXAMPLES)
        .map(|item| {
            format!(
                "<example>\nInput: {}\nExpected output: {}\n</example>\n",
                format_input(&item.input),
                item.expected
                    .as_ref()
                    .map(crate::eval::text_of)
                    .unwrap_or_default()
            )
        })
        .collect()
}

/// Training items scored to find failures to show the optimizer.
const FAILURE_MINIBATCH: usize = 8;
/// Failures shown to the optimizer.
const FAILURES_SHOWN: usize = 5;

/// Scores `template` on a seeded sample of training items; answers how
/// many were scored and the failures among them, written for a meta prompt.
pub async fn shown_failures(
    context: &Context<'_>,
    template: &PromptBody,
    purpose: u64,
) -> Result<(usize, Vec<String>), StepError> {
    use rand::seq::IndexedRandom;
    let items: Vec<&DatasetItem> = context
        .train
        .choose_multiple(
            &mut rng(context.seed, context.iteration, purpose),
            FAILURE_MINIBATCH,
        )
        .collect();
    let outcomes = context.scorer.score(template, &items).await?;
    let failures = items
        .iter()
        .zip(&outcomes)
        .filter(|(_, outcome)| outcome.score < 1.0)
        .take(FAILURES_SHOWN)
        .map(|(item, outcome)| {
            format!(
                "<failure>\nInput: {}\nExpected: {}\nOutput: {}\nScore: {:.3}\n</failure>",
                format_input(&item.input),
                item.expected
                    .as_ref()
                    .map(crate::eval::text_of)
                    .unwrap_or_default(),
                outcome
                    .output
                    .as_deref()
                    .or(outcome.error.as_deref())
                    .unwrap_or_default(),
                outcome.score
            )
        })
        .collect();
    Ok((items.len(), failures))
}

/// An item's input as the optimizer and demonstrations show it: a single
/// variable's value as it is, several as `name: value` lines.
pub fn format_input(input: &serde_json::Map<String, Value>) -> String {
    if input.len() == 1 {
        if let Some(value) = input.values().next() {
            return crate::eval::text_of(value);
        }
    }
    input
        .iter()
        .map(|(k, v)| format!("{k}: {}", crate::eval::text_of(v)))
        .collect::<Vec<_>>()
        .join("\n")
}

/// How the optimizer is told to write placeholders.
pub fn placeholders(variables: &[String]) -> String {
    if variables.is_empty() {
        return "none".to_owned();
    }
    variables
        .iter()
        .map(|v| format!("{{{{{v}}}}}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A seeded random generator for one purpose of one iteration: the same
/// job asks the same questions after a resume.
pub fn rng(seed: u64, iteration: u32, purpose: u64) -> rand::rngs::StdRng {
    use rand::SeedableRng;
    let mixed = seed
        ^ u64::from(iteration).wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ purpose.wrapping_mul(0xC2B2_AE3D_27D4_EB4F);
    rand::rngs::StdRng::seed_from_u64(mixed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompts_are_taken_from_between_the_tags() {
        let reply = "Ideas:\n<prompt> A {{x}} </prompt> and <prompt>B</prompt><prompt>C";
        assert_eq!(extract_prompts(reply, 5), vec!["A {{x}}", "B"]);
        assert_eq!(extract_prompts(reply, 1), vec!["A {{x}}"]);
        assert!(extract_prompts("no tags", 3).is_empty());
    }

    #[test]
    fn a_candidate_that_drops_a_variable_or_does_not_compile_is_discarded() {
        let vars = vec!["country".to_owned()];
        let kept = check_candidate(
            PromptBody::Text("Capital of {{country}}?".into()),
            Engine::Handlebars,
            &vars,
        );
        assert_eq!(kept.discarded, None);
        let dropped = check_candidate(
            PromptBody::Text("Capital?".into()),
            Engine::Handlebars,
            &vars,
        );
        assert_eq!(
            dropped.discarded.as_deref(),
            Some("drops variable(s) country")
        );
        let broken = check_candidate(
            PromptBody::Text("Capital of {{#if country}}".into()),
            Engine::Handlebars,
            &vars,
        );
        assert!(broken
            .discarded
            .as_deref()
            .is_some_and(|why| why.starts_with("does not compile")));
    }

    #[test]
    fn chat_candidates_replace_the_system_message() {
        let body = PromptBody::Chat(vec![
            ChatMessage::System {
                content: "Be short.".into(),
            },
            ChatMessage::User {
                content: "{{q}}".into(),
            },
        ]);
        assert_eq!(instruction(&body), "Be short.");
        let PromptBody::Chat(messages) = with_instruction(&body, "Be exact.".into()) else {
            panic!("chat stays chat");
        };
        assert_eq!(
            messages[0],
            ChatMessage::System {
                content: "Be exact.".into()
            }
        );
        assert_eq!(messages.len(), 2);
    }

    #[test]
    fn seeded_generators_repeat() {
        use rand::Rng;
        let a: u64 = rng(7, 2, 1).random();
        let b: u64 = rng(7, 2, 1).random();
        let c: u64 = rng(7, 3, 1).random();
        assert_eq!(a, b);
        assert_ne!(a, c);
    }
}
