//! Critique (after Pryzant et al. 2023, "textual gradients"): score one
//! template of a small beam on a training minibatch, show the optimizer the
//! failures (input, expected, output), ask it what is wrong, then ask for
//! templates edited to fix that.

use async_trait::async_trait;

use super::{
    candidates_from_reply, instruction, placeholders, shown_failures, Context, Proposal, StepError,
    Strategy,
};
use crate::domain::content::PromptBody;

/// Templates kept in the beam: the best by validation score.
const BEAM: usize = 3;
const PURPOSE_MINIBATCH: u64 = 2;

pub struct Critique;

/// The beam's templates, best first: the baseline and scored candidates.
fn beam(context: &Context<'_>) -> Vec<PromptBody> {
    let mut scored: Vec<(PromptBody, f64)> = Vec::new();
    if let Some(val) = context.state.baseline.val_score {
        scored.push((context.base.clone(), val));
    }
    for candidate in context.state.iterations.iter().flat_map(|i| &i.candidates) {
        if let Some(val) = candidate.val_score {
            scored.push((candidate.template.clone(), val));
        }
    }
    // Stable: equal scores keep the earlier template first.
    scored.sort_by(|a, b| b.1.total_cmp(&a.1));
    scored.truncate(BEAM);
    let beam: Vec<PromptBody> = scored.into_iter().map(|(body, _)| body).collect();
    if beam.is_empty() {
        vec![context.base.clone()]
    } else {
        beam
    }
}

#[async_trait]
impl Strategy for Critique {
    async fn propose(&self, context: &Context<'_>) -> Result<Proposal, StepError> {
        let Some(optimizer) = context.optimizer else {
            return Err(StepError::Failed(crate::worker::JobError::permanent(
                "critique needs an optimizer model",
            )));
        };
        let beam = beam(context);
        // Round robin over the beam (never empty: the base when nothing is scored).
        let current = (context.iteration as usize)
            .saturating_sub(1)
            .checked_rem(beam.len())
            .and_then(|index| beam.get(index))
            .unwrap_or(context.base);
        let text = instruction(current).to_owned();

        let (items, failures) = shown_failures(context, current, PURPOSE_MINIBATCH).await?;

        let task = format!(
            "This prompt template is filled in with each example's input (placeholders: {vars}) \
             and sent to a model, whose output is scored with {metric} (0 to 1):\n\
             <prompt>{text}</prompt>\n",
            vars = placeholders(context.variables),
            metric = context.metric,
        );
        let diagnosis = if failures.is_empty() {
            format!("No failures on {items} training items; make the template more robust.")
        } else {
            optimizer
                .ask(
                    "You diagnose why a prompt template fails. Be brief and specific.",
                    format!(
                        "{task}\nIt failed on these examples:\n{}\n\n\
                         Give the reasons the template fails, in a few sentences.",
                        failures.join("\n")
                    ),
                )
                .await?
        };
        let reply = optimizer
            .ask(
                super::opro::SYSTEM,
                format!(
                    "{task}\nWhat is wrong with it:\n{diagnosis}\n\n\
                     Write {count} edited templates that fix these problems. Keep every \
                     placeholder, written exactly as above. Put each template between \
                     <prompt> and </prompt>.",
                    count = context.count
                ),
            )
            .await?;
        Ok(Proposal {
            candidates: candidates_from_reply(&reply, context),
            diagnosis: Some(diagnosis),
            ..Proposal::default()
        })
    }
}
