//! Compress: the optimizer is shown the shortest template accepted so far
//! (the base at first), its length and its failures on a training sample,
//! and asked for shorter versions that keep the behaviour. A candidate must
//! be shorter than the base (checked before it is scored) and keep the
//! baseline's validation score within `max_drop` (checked on validation);
//! the result is the shortest such candidate.

use async_trait::async_trait;

use super::{
    candidates_from_reply, instruction, placeholders, shown_failures, Context, Proposal, StepError,
    Strategy,
};
use crate::domain::objective::template_tokens;
use crate::domain::optimization::StrategyName;

const PURPOSE_FAILURES: u64 = 4;

pub struct Compress;

#[async_trait]
impl Strategy for Compress {
    async fn propose(&self, context: &Context<'_>) -> Result<Proposal, StepError> {
        let Some(optimizer) = context.optimizer else {
            return Err(StepError::Failed(crate::worker::JobError::permanent(
                "compress needs an optimizer model",
            )));
        };
        let current = context
            .state
            .best(StrategyName::Compress)
            .map_or(context.base, |best| &best.template);
        let text = instruction(current);
        let (items, failures) = shown_failures(context, current, PURPOSE_FAILURES).await?;
        let behaviour = if failures.is_empty() {
            format!(
                "It scores 1 on all {items} training examples tried; a shorter version must too."
            )
        } else {
            format!(
                "It fails on these training examples; a shorter version must not fail on more:\n{}",
                failures.join("\n")
            )
        };
        let question = format!(
            "This prompt template is filled in with each example's input (placeholders: {vars}) \
             and sent to a model, whose output is scored with {metric} (0 to 1):\n\
             <prompt>{text}</prompt>\n\
             It is {tokens} tokens long (words and punctuation marks).\n{behaviour}\n\n\
             Write {count} shorter templates that make the model answer exactly as this one \
             does: keep what it asks for and the form of the answer, drop every other word. \
             Keep every placeholder, written exactly as above. Put each template between \
             <prompt> and </prompt>.",
            vars = placeholders(context.variables),
            metric = context.metric,
            tokens = template_tokens(text),
            count = context.count,
        );
        let reply = optimizer.ask(super::opro::SYSTEM, question).await?;
        Ok(Proposal {
            candidates: candidates_from_reply(&reply, context),
            ..Proposal::default()
        })
    }
}
