//! Few-shot (after DSPy's BootstrapFewShot): demonstrations come from the
//! training items the target model already gets right, with its own output;
//! when fewer than k qualify, labelled items (input and expected output)
//! fill up. Each candidate is the base template with a different set of k
//! demonstrations before its own text (chat: as user/assistant pairs before
//! the last user message), so the input stays last. No optimizer model.

use async_trait::async_trait;
use rand::seq::IndexedRandom;
use serde_json::Value;

use super::{check_candidate, format_input, rng, Context, Proposal, StepError, Strategy};
use crate::domain::content::PromptBody;
use crate::domain::optimization::Demo;
use crate::domain::{ChatMessage, Engine};

/// Draws per wanted candidate before giving up on finding new sets.
const DRAWS_PER_CANDIDATE: usize = 5;
const PURPOSE_DEMOS: u64 = 3;

pub struct FewShot;

#[async_trait]
impl Strategy for FewShot {
    async fn propose(&self, context: &Context<'_>) -> Result<Proposal, StepError> {
        let demos = &context.state.demos;
        let k = context.num_demos.min(demos.len());
        let tried: Vec<&PromptBody> = context
            .state
            .iterations
            .iter()
            .flat_map(|i| &i.candidates)
            .map(|c| &c.template)
            .collect();
        let mut random = rng(context.seed, context.iteration, PURPOSE_DEMOS);
        let mut candidates = Vec::new();
        let mut seen: Vec<PromptBody> = Vec::new();
        for draw in 0..context.count * DRAWS_PER_CANDIDATE {
            if candidates.len() == context.count || k == 0 {
                break;
            }
            // Every demonstration is paid for in every call: when the
            // objective bounds that cost, smaller sets are tried as well.
            let size = if context.objective.bounds_prompt_cost() {
                1 + (candidates.len() + draw) % k
            } else {
                k
            };
            let set: Vec<&Demo> = draw_set(demos, size, &mut random)
                .into_iter()
                .filter_map(|i| demos.get(i as usize))
                .collect();
            let body = with_demos(context.base, context.engine, &set);
            if tried.contains(&&body) || seen.contains(&body) {
                continue;
            }
            seen.push(body.clone());
            candidates.push(check_candidate(body, context.engine, context.variables));
        }
        Ok(Proposal {
            candidates,
            ..Proposal::default()
        })
    }
}

/// `size` demonstrations drawn from `demos` (as indices, ordered by their
/// input): the model's own right answers first, labelled items to fill up.
pub fn draw_set(demos: &[Demo], size: usize, random: &mut impl rand::Rng) -> Vec<u32> {
    let (bootstrapped, labelled): (Vec<u32>, Vec<u32>) =
        (0..demos.len() as u32).partition(|&i| demos[i as usize].bootstrapped);
    let size = size.min(demos.len());
    let mut set: Vec<u32> = if bootstrapped.len() >= size {
        bootstrapped
            .choose_multiple(random, size)
            .copied()
            .collect()
    } else {
        let mut set = bootstrapped;
        set.extend(labelled.choose_multiple(random, size - set.len()).copied());
        set
    };
    set.sort_by_key(|&i| format_input(&demos[i as usize].input));
    set
}

/// The demonstrations `fewshot` may use: every training item the baseline
/// scored perfectly, with the model's output, and every other one with its
/// expected output (if it has one).
pub fn demo_pool(train: &[crate::domain::DatasetItem], outcomes: &[super::Outcome]) -> Vec<Demo> {
    train
        .iter()
        .zip(outcomes)
        .filter_map(
            |(item, outcome)| match (&outcome.output, outcome.score >= 1.0) {
                (Some(output), true) => Some(Demo {
                    input: item.input.clone(),
                    output: output.clone(),
                    bootstrapped: true,
                }),
                _ => item.expected.as_ref().map(|expected| Demo {
                    input: item.input.clone(),
                    output: crate::eval::text_of(expected),
                    bootstrapped: false,
                }),
            },
        )
        .collect()
}

/// `base` with `demos` before its own text, as literal text the engine
/// will not interpret.
pub fn with_demos(base: &PromptBody, engine: Engine, demos: &[&Demo]) -> PromptBody {
    match base {
        PromptBody::Text(text) => {
            let shown: String = demos
                .iter()
                .map(|d| {
                    format!(
                        "Input: {}\nOutput: {}\n\n",
                        format_input(&d.input),
                        d.output
                    )
                })
                .collect();
            PromptBody::Text(format!("{}{text}", literal(engine, &shown)))
        }
        PromptBody::Chat(messages) => {
            let last_user = messages
                .iter()
                .rposition(|m| matches!(m, ChatMessage::User { .. }))
                .unwrap_or(messages.len());
            let user_template = messages
                .get(last_user)
                .and_then(ChatMessage::content)
                .unwrap_or_default();
            let (before, after) = messages.split_at(last_user.min(messages.len()));
            let mut out = before.to_vec();
            for demo in demos {
                out.push(ChatMessage::User {
                    content: literal(engine, &user_text(engine, user_template, demo)),
                });
                out.push(ChatMessage::Assistant {
                    content: literal(engine, &demo.output),
                });
            }
            out.extend_from_slice(after);
            PromptBody::Chat(out)
        }
    }
}

/// The last user message as the demo's input renders it; the bare input
/// when it does not render on its own (it includes partials, say).
fn user_text(engine: Engine, template: &str, demo: &Demo) -> String {
    let rendered = crate::template::render(
        engine,
        &PromptBody::Text(template.to_owned()),
        &Value::Object(demo.input.clone()),
        &Default::default(),
        &Default::default(),
    );
    match rendered {
        Ok(crate::template::Rendered::Text(text)) => text,
        _ => format_input(&demo.input),
    }
}

/// `text` written so that `engine` outputs it unchanged.
pub fn literal(engine: Engine, text: &str) -> String {
    match engine {
        Engine::Handlebars => text.replace("{{", "\\{{"),
        Engine::Jinja => {
            if text.contains('{') {
                format!(
                    "{{% raw %}}{}{{% endraw %}}",
                    text.replace("{% endraw %}", "{% endraw %}{{ '{% endraw %}' }}{% raw %}")
                )
            } else {
                text.to_owned()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn render(engine: Engine, body: &PromptBody, vars: Value) -> crate::template::Rendered {
        crate::template::render(
            engine,
            body,
            &vars,
            &Default::default(),
            &Default::default(),
        )
        .expect("renders")
    }

    fn demo(q: &str, a: &str) -> Demo {
        Demo {
            input: json!({"q": q}).as_object().cloned().unwrap_or_default(),
            output: a.to_owned(),
            bootstrapped: true,
        }
    }

    #[test]
    fn text_demos_go_first_and_stay_literal_in_both_engines() {
        let tricky = demo("what is {{x}}?", "{% raw %}{{y}}{% endraw %}");
        for engine in [Engine::Handlebars, Engine::Jinja] {
            let body = with_demos(&PromptBody::Text("Q: {{q}}".into()), engine, &[&tricky]);
            let crate::template::Rendered::Text(text) = render(engine, &body, json!({"q": "now"}))
            else {
                panic!("text renders to text");
            };
            assert_eq!(
                text, "Input: what is {{x}}?\nOutput: {% raw %}{{y}}{% endraw %}\n\nQ: now",
                "{engine:?}"
            );
        }
    }

    #[test]
    fn chat_demos_go_before_the_last_user_message() {
        let base = PromptBody::Chat(vec![
            ChatMessage::System {
                content: "Answer.".into(),
            },
            ChatMessage::User {
                content: "Q: {{q}}".into(),
            },
        ]);
        let body = with_demos(
            &base,
            Engine::Handlebars,
            &[&demo("a", "1"), &demo("b", "2")],
        );
        let crate::template::Rendered::Chat(messages) =
            render(Engine::Handlebars, &body, json!({"q": "c"}))
        else {
            panic!("chat renders to chat");
        };
        let shown: Vec<(&str, &str)> = messages
            .iter()
            .map(|m| (m.role.as_str(), m.content.as_str()))
            .collect();
        assert_eq!(
            shown,
            vec![
                ("system", "Answer."),
                ("user", "Q: a"),
                ("assistant", "1"),
                ("user", "Q: b"),
                ("assistant", "2"),
                ("user", "Q: c"),
            ]
        );
    }
}
