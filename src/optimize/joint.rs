//! Joint (in the spirit of DSPy's MIPROv2): instructions and demonstration
//! sets are searched together. The first iteration asks the optimizer for
//! instructions (the base's own stays in the pool) and draws demonstration
//! sets of every size from none to `num_demos` from the training split;
//! each (instruction, set) pair is one candidate. Every iteration proposes
//! the untried pairs a simple model of the minibatch scores so far ranks
//! highest: the mean of the instruction's mean and the set's mean over the
//! pairs tried, a part never tried counting as perfect (so it gets tried),
//! pairs with parts not yet picked in the iteration first on ties, then a
//! seeded order. Successive halving scores them as for every strategy.
//! When the objective bounds tokens or cost, smaller sets go first on
//! ties, and sets at least as large as one that broke the bound on its
//! minibatch are tried last: a good instruction with fewer demonstrations
//! can win on cost.

use std::cmp::Ordering;
use std::collections::HashMap;

use async_trait::async_trait;
use rand::seq::SliceRandom;

use super::fewshot::{draw_set, with_demos};
use super::{
    check_candidate, extract_prompts, instruction, placeholders, rng, task_examples,
    with_instruction, Context, Proposal, StepError, Strategy,
};
use crate::domain::content::PromptBody;
use crate::domain::optimization::{Candidate, Combination, Demo};

const PURPOSE_SETS: u64 = 5;
const PURPOSE_ORDER: u64 = 6;

pub struct Joint;

#[async_trait]
impl Strategy for Joint {
    async fn propose(&self, context: &Context<'_>) -> Result<Proposal, StepError> {
        let state = context.state;
        let mut proposal = Proposal::default();
        let (instructions, demo_sets) = if state.instructions.is_empty() {
            let (instructions, rejected) = ask_instructions(context).await?;
            proposal.candidates.extend(rejected);
            let sets = demo_sets(context, &state.demos);
            proposal.instructions = Some(instructions.clone());
            proposal.demo_sets = Some(sets.clone());
            (instructions, sets)
        } else {
            (state.instructions.clone(), state.demo_sets.clone())
        };
        let tried: Vec<(Combination, Option<f64>, bool)> = state
            .iterations
            .iter()
            .flat_map(|i| &i.candidates)
            .filter_map(|c| {
                c.combination
                    .map(|pair| (pair, c.minibatch_score, fits(context, c)))
            })
            .collect();
        let picked = pick(context, instructions.len(), &demo_sets, &tried);
        for pair in picked {
            let (Some(text), Some(set)) = (
                instructions.get(pair.instruction as usize),
                demo_sets.get(pair.demo_set as usize),
            ) else {
                continue;
            };
            let demos: Vec<&Demo> = set
                .iter()
                .filter_map(|&i| state.demos.get(i as usize))
                .collect();
            let body = with_demos(
                &with_instruction(context.base, text.clone()),
                context.engine,
                &demos,
            );
            let mut candidate = check_candidate(body, context.engine, context.variables);
            candidate.combination = Some(pair);
            proposal.candidates.push(candidate);
        }
        Ok(proposal)
    }
}

/// Whether a tried pair met, on its minibatch, the constraints that
/// demonstrations make harder to meet (always, without such constraints).
fn fits(context: &Context<'_>, candidate: &Candidate) -> bool {
    let measured = candidate.measured(false);
    let baseline = context.state.baseline.measured(false);
    context
        .objective
        .constraints
        .iter()
        .filter(|c| c.measure.grows_with_prompt())
        .all(|c| {
            c.broken(measured.get(c.measure), baseline.get(c.measure))
                .is_none()
        })
}

/// The base's instruction and those the optimizer proposes that keep every
/// variable; the others come back as discarded candidates, to be shown.
async fn ask_instructions(
    context: &Context<'_>,
) -> Result<(Vec<String>, Vec<Candidate>), StepError> {
    let Some(optimizer) = context.optimizer else {
        return Err(StepError::Failed(crate::worker::JobError::permanent(
            "joint needs an optimizer model",
        )));
    };
    let base = instruction(context.base).to_owned();
    let mut question = format!(
        "A prompt template is filled in with each example's input and sent to a model. \
         The model's output is scored with {metric} (0 to 1, higher is better) against the \
         expected output.\nThe template's placeholders: {vars}.\n\
         The current template:\n<prompt>{base}</prompt>\n\nExamples of the task:\n",
        metric = context.metric,
        vars = placeholders(context.variables),
    );
    question.push_str(&task_examples(context));
    question.push_str(&format!(
        "\nWrite {count} different templates for this task, each a complete instruction that \
         works on its own and with worked examples placed before it. Keep every placeholder, \
         written exactly as above. Put each template between <prompt> and </prompt>.",
        count = context.count
    ));
    let reply = optimizer.ask(super::opro::SYSTEM, question).await?;
    let mut instructions = vec![base];
    let mut rejected = Vec::new();
    for text in extract_prompts(&reply, context.count) {
        if instructions.contains(&text) {
            continue;
        }
        let checked = check_candidate(
            with_instruction(context.base, text.clone()),
            context.engine,
            context.variables,
        );
        if checked.discarded.is_some() {
            rejected.push(checked);
        } else {
            instructions.push(text);
        }
    }
    if instructions.len() == 1 && rejected.is_empty() {
        let excerpt: String = reply.chars().take(200).collect();
        rejected.push(Candidate::discarded(
            PromptBody::Text(excerpt),
            "the optimizer's reply has no <prompt>…</prompt>".to_owned(),
        ));
    }
    Ok((instructions, rejected))
}

/// The demonstration sets: the empty one, then sets of every size from 1
/// to `num_demos`, two draws each, without repeats.
fn demo_sets(context: &Context<'_>, demos: &[Demo]) -> Vec<Vec<u32>> {
    let k = context.num_demos.min(demos.len());
    let mut random = rng(context.seed, 0, PURPOSE_SETS);
    let mut sets: Vec<Vec<u32>> = vec![Vec::new()];
    for _ in 0..2 {
        for size in 1..=k {
            let set = draw_set(demos, size, &mut random);
            if !sets.contains(&set) {
                sets.push(set);
            }
        }
    }
    sets
}

/// The next `count` untried pairs, best predicted first.
fn pick(
    context: &Context<'_>,
    instructions: usize,
    demo_sets: &[Vec<u32>],
    tried: &[(Combination, Option<f64>, bool)],
) -> Vec<Combination> {
    let size = |set: u32| demo_sets.get(set as usize).map_or(0, Vec::len);
    let mut untried: Vec<Combination> = (0..instructions as u32)
        .flat_map(|instruction| {
            (0..demo_sets.len() as u32).map(move |demo_set| Combination {
                instruction,
                demo_set,
            })
        })
        // The base's instruction without demonstrations is the baseline.
        .filter(|pair| (pair.instruction, pair.demo_set) != (0, 0))
        .filter(|pair| !tried.iter().any(|(t, _, _)| t == pair))
        .collect();
    untried.shuffle(&mut rng(context.seed, context.iteration, PURPOSE_ORDER));
    let bounded = context.objective.bounds_prompt_cost();
    if bounded {
        // Stable: the seeded order stays among sets of one size.
        untried.sort_by_key(|pair| size(pair.demo_set));
    }

    // Each part's scores over the pairs tried; the smallest set that broke
    // a constraint on what the prompt costs.
    let mut by_instruction: HashMap<u32, Vec<f64>> = HashMap::new();
    let mut by_set: HashMap<u32, Vec<f64>> = HashMap::new();
    let mut too_large: Option<usize> = None;
    for (pair, score, fits) in tried {
        let Some(score) = score else { continue };
        by_instruction
            .entry(pair.instruction)
            .or_default()
            .push(*score);
        by_set.entry(pair.demo_set).or_default().push(*score);
        if !fits {
            let n = size(pair.demo_set);
            too_large = Some(too_large.map_or(n, |t| t.min(n)));
        }
    }
    // Parts never tried are assumed as good as can be: they get tried.
    let part = |scores: Option<&Vec<f64>>| scores.and_then(|s| mean(s)).unwrap_or(1.0);

    let mut picked: Vec<Combination> = Vec::new();
    while picked.len() < context.count && !untried.is_empty() {
        let key = |pair: &Combination| {
            // Demonstrations are paid for in every call: a set at least as
            // large as one that broke the bound will break it too.
            let affordable = too_large.is_none_or(|t| size(pair.demo_set) < t);
            let predicted = (part(by_instruction.get(&pair.instruction))
                + part(by_set.get(&pair.demo_set)))
                / 2.0;
            let fresh = u8::from(!picked.iter().any(|p| p.instruction == pair.instruction))
                + u8::from(!picked.iter().any(|p| p.demo_set == pair.demo_set));
            (affordable, predicted, fresh)
        };
        // The first of the highest, in the seeded (and size) order.
        let mut best = 0;
        for index in 1..untried.len() {
            let (a, b) = (key(&untried[index]), key(&untried[best]));
            let predicted = if (a.1 - b.1).abs() <= 1e-9 {
                Ordering::Equal
            } else {
                a.1.total_cmp(&b.1)
            };
            let order = a.0.cmp(&b.0).then(predicted).then(a.2.cmp(&b.2));
            if order == Ordering::Greater {
                best = index;
            }
        }
        picked.push(untried.remove(best));
    }
    picked
}

fn mean(values: &[f64]) -> Option<f64> {
    (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
}
