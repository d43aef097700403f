//! OPRO (Yang et al. 2023, "Large Language Models as Optimizers"): the
//! optimizer model sees the task, a few training examples and the best
//! templates so far with their training scores, worst to best, and writes
//! new ones meant to score higher.

use async_trait::async_trait;

use super::{
    candidates_from_reply, instruction, placeholders, task_examples, Context, Proposal, StepError,
    Strategy,
};

/// Templates shown to the optimizer at most.
const HISTORY: usize = 8;

pub const SYSTEM: &str = "You improve prompt templates for a language model. \
You answer with new templates, each between <prompt> and </prompt>.";

pub struct Opro;

#[async_trait]
impl Strategy for Opro {
    async fn propose(&self, context: &Context<'_>) -> Result<Proposal, StepError> {
        let Some(optimizer) = context.optimizer else {
            return Err(StepError::Failed(crate::worker::JobError::permanent(
                "opro needs an optimizer model",
            )));
        };
        let reply = optimizer.ask(SYSTEM, meta_prompt(context)).await?;
        Ok(Proposal {
            candidates: candidates_from_reply(&reply, context),
            ..Proposal::default()
        })
    }
}

/// The instruction of each scored template with its training score, the
/// best `HISTORY` of them, worst first (the baseline's included).
fn history(context: &Context<'_>) -> Vec<(String, f64)> {
    let mut scored: Vec<(String, f64)> = Vec::new();
    if let Some(score) = context.state.baseline.train_score {
        scored.push((instruction(context.base).to_owned(), score));
    }
    // Only scores over the whole training split compare with each other.
    let whole = context.train.len() as u32;
    for candidate in context.state.iterations.iter().flat_map(|i| &i.candidates) {
        if candidate.train_items < whole {
            continue;
        }
        if let (Some(score), None) = (candidate.train_score, &candidate.discarded) {
            let text = instruction(&candidate.template).to_owned();
            if !scored.iter().any(|(t, _)| *t == text) {
                scored.push((text, score));
            }
        }
    }
    scored.sort_by(|a, b| b.1.total_cmp(&a.1));
    scored.truncate(HISTORY);
    scored.reverse();
    scored
}

fn meta_prompt(context: &Context<'_>) -> String {
    let mut out = format!(
        "A prompt template is filled in with each example's input and sent to a model. \
         The model's output is scored with the metric {metric} (0 to 1, higher is better) \
         against the expected output.\n\
         The template's placeholders: {vars}.\n\nExamples of the task:\n",
        metric = context.metric,
        vars = placeholders(context.variables),
    );
    out.push_str(&task_examples(context));
    out.push_str("\nTemplates so far with their scores, from worst to best:\n");
    for (text, score) in history(context) {
        out.push_str(&format!("<prompt>{text}</prompt>\nScore: {score:.3}\n\n"));
    }
    out.push_str(&format!(
        "Write {count} new templates that differ from all of the above and would score higher. \
         Keep every placeholder, written exactly as above. \
         Put each template between <prompt> and </prompt>.",
        count = context.count
    ));
    out
}
