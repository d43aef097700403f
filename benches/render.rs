//! In-process render speed of compiled templates, the work a render request
//! does once its version is resolved (`bench/load.sh` measures it over HTTP).
//! Figures are recorded in docs/benchmarks.md.

use std::collections::HashMap;
use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use promptreg::domain::content::PromptBody;
use promptreg::domain::{ChatMessage, Engine};
use promptreg::template::{CompiledBody, Limits};
use serde_json::json;

fn one_liner(c: &mut Criterion) {
    let variables = json!({"name": "Ada", "place": "Paris"});
    for (engine, template) in [
        (Engine::Handlebars, "Hello {{name}}, welcome to {{place}}!"),
        (Engine::Jinja, "Hello {{ name }}, welcome to {{ place }}!"),
    ] {
        let body = PromptBody::Text(template.to_owned());
        let compiled = CompiledBody::compile(engine, &body, &HashMap::new(), Limits::default())
            .expect("compiles");
        c.bench_function(
            &format!("one_line_text_two_variables/{}", engine.as_str()),
            |b| b.iter(|| compiled.render(black_box(&variables)).expect("renders")),
        );
    }
}

/// 20 messages: a system message with a loop over 10 items, 18 short turns
/// with a variable each, and a placeholder spliced in with 4 history messages.
fn chat_with_loop(c: &mut Criterion) {
    for engine in [Engine::Handlebars, Engine::Jinja] {
        let (system, turn) = match engine {
            Engine::Handlebars => (
                "You help {{company}}. Products:{{#each products}} {{this.name}} ({{this.price}}){{/each}}",
                "Turn about {{topic}}",
            ),
            Engine::Jinja => (
                "You help {{ company }}. Products:{% for p in products %} {{ p.name }} ({{ p.price }}){% endfor %}",
                "Turn about {{ topic }}",
            ),
        };
        let mut messages = vec![ChatMessage::System {
            content: system.to_owned(),
        }];
        for i in 0..18 {
            messages.push(if i % 2 == 0 {
                ChatMessage::User {
                    content: turn.to_owned(),
                }
            } else {
                ChatMessage::Assistant {
                    content: turn.to_owned(),
                }
            });
        }
        messages.push(ChatMessage::Placeholder {
            name: "history".to_owned(),
        });
        let body = PromptBody::Chat(messages);
        let products: Vec<_> = (0..10)
            .map(|i| json!({"name": format!("item {i}"), "price": i * 10}))
            .collect();
        let variables = json!({
            "company": "Acme", "topic": "billing", "products": products,
            "history": [
                {"role": "user", "content": "a"}, {"role": "assistant", "content": "b"},
                {"role": "user", "content": "c"}, {"role": "assistant", "content": "d"}
            ]
        });
        let compiled = CompiledBody::compile(engine, &body, &HashMap::new(), Limits::default())
            .expect("compiles");
        c.bench_function(
            &format!("chat_20_messages_with_loop/{}", engine.as_str()),
            |b| b.iter(|| compiled.render(black_box(&variables)).expect("renders")),
        );
    }
}

criterion_group!(benches, one_liner, chat_with_loop);
criterion_main!(benches);
