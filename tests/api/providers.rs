//! LLM provider clients end to end against the scripted fake (`fake_llm`):
//! each wire format's request and reply, retries and giving up, errors that
//! are not retried, the concurrency limit, and keys that never leak. No
//! database: these run once, not per backend.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use promptreg::config::{ModelPrice, ProviderConfig, Redacted};
use promptreg::providers::{
    Completion, CompletionRequest, LlmProvider, ProviderError, ProviderKind, Providers, Usage,
};
use promptreg::template::{Rendered, RenderedMessage};
use serde_json::{json, Map, Value};

use crate::fake_llm::{FakeLlm, Reply, FAKE_MODEL};

/// The one provider, named `p`, built through `Providers::from_config`.
fn provider(config: ProviderConfig) -> Arc<dyn LlmProvider> {
    let providers =
        Providers::from_config(&BTreeMap::from([("p".to_owned(), config)])).expect("providers");
    providers.get("p").expect("provider p")
}

fn chat() -> Rendered {
    let message = |role: &str, content: &str| RenderedMessage {
        role: role.to_owned(),
        content: content.to_owned(),
    };
    Rendered::Chat(vec![
        message("system", "Be brief."),
        message("user", "Say hi"),
    ])
}

fn params(value: Value) -> Map<String, Value> {
    value.as_object().cloned().expect("an object")
}

fn priced(mut config: ProviderConfig, model: &str, input: f64, output: f64) -> ProviderConfig {
    config.prices.insert(
        model.to_owned(),
        ModelPrice {
            input_per_million: input,
            output_per_million: output,
        },
    );
    config
}

async fn complete(provider: &dyn LlmProvider) -> Result<Completion, ProviderError> {
    provider.complete(&CompletionRequest::new(chat())).await
}

#[tokio::test]
async fn openai_format_end_to_end() {
    let fake = FakeLlm::start().await;
    fake.set_usage(100, 50);
    fake.push(Reply::text("Hi there"));
    let provider = provider(priced(
        fake.config(ProviderKind::Openai),
        "gpt-test",
        1.0,
        2.0,
    ));

    let request = CompletionRequest {
        model: Some("gpt-test".to_owned()),
        params: params(json!({"temperature": 0.2, "max_tokens": 64, "stream": true})),
        output_schema: Some(json!({"type": "object"})),
        ..CompletionRequest::new(chat())
    };
    let completion = provider.complete(&request).await.expect("completion");

    assert_eq!(completion.text, "Hi there");
    assert_eq!(completion.model, "gpt-test");
    assert_eq!(
        completion.usage,
        Usage {
            input_tokens: 100,
            output_tokens: 50
        }
    );
    let cost = completion.cost_usd.expect("priced");
    assert!((cost - 0.0002).abs() < 1e-12, "{cost}");
    assert_eq!(completion.attempts, 1);

    let requests = fake.requests();
    assert_eq!(requests.len(), 1);
    let sent = &requests[0];
    assert_eq!(sent.path, "/v1/chat/completions");
    assert_eq!(sent.header("authorization"), Some("Bearer test-key-openai"));
    assert_eq!(sent.body["model"], "gpt-test");
    assert_eq!(sent.body["temperature"], 0.2);
    assert_eq!(sent.body["max_tokens"], 64);
    assert_eq!(
        sent.body["messages"],
        json!([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hi"}])
    );
    assert_eq!(sent.body["response_format"]["type"], "json_schema");
    assert!(sent.body.get("stream").is_none(), "{}", sent.body);
}

#[tokio::test]
async fn openai_compatible_server_without_a_key_gets_no_auth_header() {
    let fake = FakeLlm::start().await;
    let mut config = ProviderConfig::new(ProviderKind::Openai);
    config.base_url = Some(fake.openai_base_url());
    config.default_model = Some("llama".to_owned());
    let provider = provider(config);

    let completion = complete(provider.as_ref()).await.expect("completion");

    assert_eq!(completion.model, "llama");
    assert_eq!(completion.cost_usd, None, "no price configured");
    let sent = &fake.requests()[0];
    assert_eq!(sent.header("authorization"), None);
    assert_eq!(sent.body["model"], "llama");
}

#[tokio::test]
async fn anthropic_format_end_to_end() {
    let fake = FakeLlm::start().await;
    fake.set_usage(30, 7);
    fake.push(Reply::text("Hello from Claude"));
    let provider = provider(priced(
        fake.config(ProviderKind::Anthropic),
        FAKE_MODEL,
        3.0,
        15.0,
    ));

    let request = CompletionRequest {
        params: params(json!({"temperature": 0.5, "stop": "END", "seed": 1})),
        ..CompletionRequest::new(chat())
    };
    let completion = provider.complete(&request).await.expect("completion");

    assert_eq!(completion.text, "Hello from Claude");
    assert_eq!(completion.model, FAKE_MODEL);
    assert_eq!(
        completion.usage,
        Usage {
            input_tokens: 30,
            output_tokens: 7
        }
    );
    let cost = completion.cost_usd.expect("priced");
    assert!(
        (cost - (30.0 * 3.0 + 7.0 * 15.0) / 1e6).abs() < 1e-12,
        "{cost}"
    );

    let sent = &fake.requests()[0];
    assert_eq!(sent.path, "/v1/messages");
    assert_eq!(sent.header("x-api-key"), Some("test-key-anthropic"));
    assert_eq!(sent.header("anthropic-version"), Some("2023-06-01"));
    assert_eq!(sent.header("authorization"), None);
    assert_eq!(sent.body["model"], FAKE_MODEL);
    assert_eq!(sent.body["system"], "Be brief.");
    assert_eq!(
        sent.body["messages"],
        json!([{"role": "user", "content": "Say hi"}])
    );
    assert_eq!(sent.body["max_tokens"], 1024);
    assert_eq!(sent.body["stop_sequences"], json!(["END"]));
    assert!(sent.body.get("seed").is_none(), "{}", sent.body);
}

#[tokio::test]
async fn gemini_format_end_to_end() {
    let fake = FakeLlm::start().await;
    fake.set_usage(12, 4);
    fake.push(Reply::text("Hello from Gemini"));
    let provider = provider(priced(
        fake.config(ProviderKind::Gemini),
        "gemini-test",
        0.5,
        1.5,
    ));

    let request = CompletionRequest {
        model: Some("gemini-test".to_owned()),
        params: params(json!({"temperature": 0.1, "max_tokens": 32})),
        ..CompletionRequest::new(chat())
    };
    let completion = provider.complete(&request).await.expect("completion");

    assert_eq!(completion.text, "Hello from Gemini");
    assert_eq!(completion.model, "gemini-test");
    assert_eq!(
        completion.usage,
        Usage {
            input_tokens: 12,
            output_tokens: 4
        }
    );
    let cost = completion.cost_usd.expect("priced");
    assert!(
        (cost - (12.0 * 0.5 + 4.0 * 1.5) / 1e6).abs() < 1e-12,
        "{cost}"
    );

    let sent = &fake.requests()[0];
    assert_eq!(sent.path, "/v1beta/models/gemini-test:generateContent");
    assert_eq!(sent.header("x-goog-api-key"), Some("test-key-gemini"));
    assert_eq!(sent.header("authorization"), None);
    assert_eq!(
        sent.body["contents"],
        json!([{"role": "user", "parts": [{"text": "Say hi"}]}])
    );
    assert_eq!(
        sent.body["systemInstruction"],
        json!({"parts": [{"text": "Be brief."}]})
    );
    assert_eq!(
        sent.body["generationConfig"],
        json!({"temperature": 0.1, "maxOutputTokens": 32})
    );
    assert!(sent.body.get("model").is_none(), "{}", sent.body);
}

#[tokio::test]
async fn the_model_comes_from_the_request_then_params_then_the_default() {
    let fake = FakeLlm::start().await;
    let provider = provider(fake.config(ProviderKind::Openai));
    let from_params = CompletionRequest {
        params: params(json!({"model": "from-params"})),
        ..CompletionRequest::new(chat())
    };
    let explicit = CompletionRequest {
        model: Some("explicit".to_owned()),
        ..from_params.clone()
    };

    for (request, model) in [
        (explicit, "explicit"),
        (from_params, "from-params"),
        (CompletionRequest::new(chat()), FAKE_MODEL),
    ] {
        let completion = provider.complete(&request).await.expect("completion");
        assert_eq!(completion.model, model);
    }
    let sent: Vec<String> = fake.requests().iter().filter_map(|r| r.model()).collect();
    assert_eq!(sent, ["explicit", "from-params", FAKE_MODEL]);
}

#[tokio::test]
async fn no_model_anywhere_fails_without_calling() {
    let fake = FakeLlm::start().await;
    let mut config = fake.config(ProviderKind::Anthropic);
    config.default_model = None;
    let err = complete(provider(config).as_ref())
        .await
        .expect_err("no model");
    assert_eq!(err, ProviderError::NoModel);
    assert_eq!(fake.request_count(), 0);
}

#[tokio::test]
async fn retries_through_429_honouring_retry_after() {
    let fake = FakeLlm::start().await;
    fake.push(Reply::Status(429, Some(1)));
    fake.push(Reply::text("finally"));
    let provider = provider(fake.config(ProviderKind::Anthropic));

    let started = Instant::now();
    let completion = complete(provider.as_ref()).await.expect("completion");

    assert_eq!(completion.text, "finally");
    assert_eq!(completion.attempts, 2);
    assert_eq!(fake.request_count(), 2);
    // A lower bound only: the client waited as asked, however slow the machine.
    assert!(started.elapsed() >= Duration::from_millis(900));
}

#[tokio::test]
async fn retries_through_a_server_error_and_a_timeout() {
    let fake = FakeLlm::start().await;
    fake.push(Reply::Status(500, None));
    fake.push(Reply::delayed(
        Duration::from_secs(30),
        Reply::text("too late"),
    ));
    fake.push(Reply::text("third time lucky"));
    let mut config = fake.config(ProviderKind::Gemini);
    // Long enough for a loaded machine to answer the third try in time.
    config.timeout = 1.0;
    let provider = provider(config);

    let completion = complete(provider.as_ref()).await.expect("completion");

    assert_eq!(completion.text, "third time lucky");
    assert_eq!(completion.attempts, 3);
    assert_eq!(fake.request_count(), 3);
}

#[tokio::test]
async fn gives_up_after_max_retries_with_the_last_error() {
    let fake = FakeLlm::start().await;
    fake.set_default(|_| Reply::Status(503, None));
    let mut config = fake.config(ProviderKind::Openai);
    config.max_retries = 2;
    let err = complete(provider(config).as_ref())
        .await
        .expect_err("gives up");
    assert!(
        matches!(&err, ProviderError::Server { status: 503, message } if message.contains("scripted")),
        "{err:?}"
    );
    assert_eq!(err.code(), "provider_server_error");
    assert_eq!(fake.request_count(), 3, "one try and two retries");

    let fake = FakeLlm::start().await;
    fake.set_default(|_| Reply::Status(429, Some(0)));
    let mut config = fake.config(ProviderKind::Gemini);
    config.max_retries = 1;
    let err = complete(provider(config).as_ref())
        .await
        .expect_err("gives up");
    assert_eq!(
        err,
        ProviderError::RateLimited {
            retry_after_secs: Some(0)
        }
    );
    assert_eq!(fake.request_count(), 2);
}

#[tokio::test]
async fn timeouts_give_up_as_timeout() {
    let fake = FakeLlm::start().await;
    fake.set_default(|_| Reply::delayed(Duration::from_secs(30), Reply::text("late")));
    let mut config = fake.config(ProviderKind::Openai);
    config.timeout = 0.2;
    config.max_retries = 1;
    let err = complete(provider(config).as_ref())
        .await
        .expect_err("times out");
    assert_eq!(err, ProviderError::Timeout);
    assert!(err.retryable());
    assert_eq!(fake.request_count(), 2);
}

#[tokio::test]
async fn client_errors_are_not_retried() {
    for status in [400, 401, 404, 422] {
        let fake = FakeLlm::start().await;
        fake.push(Reply::Status(status, None));
        let err = complete(provider(fake.config(ProviderKind::Anthropic)).as_ref())
            .await
            .expect_err("rejected");
        assert!(
            matches!(&err, ProviderError::Rejected { status: s, .. } if *s == status),
            "{err:?}"
        );
        assert!(!err.retryable());
        assert_eq!(fake.request_count(), 1, "{status} is not retried");
    }
}

#[tokio::test]
async fn a_malformed_reply_is_retried_once() {
    let fake = FakeLlm::start().await;
    fake.push(Reply::Malformed);
    fake.push(Reply::text("fine now"));
    let client = provider(fake.config(ProviderKind::Openai));
    let completion = complete(client.as_ref()).await.expect("completion");
    assert_eq!(completion.text, "fine now");
    assert_eq!(completion.attempts, 2);

    fake.set_default(|_| Reply::Malformed);
    let err = complete(client.as_ref()).await.expect_err("malformed");
    assert_eq!(err.code(), "provider_malformed_reply");
    assert_eq!(
        fake.request_count(),
        4,
        "a second malformed reply ends the call though retries remain"
    );

    let mut config = fake.config(ProviderKind::Openai);
    config.max_retries = 0;
    complete(provider(config).as_ref())
        .await
        .expect_err("malformed");
    assert_eq!(fake.request_count(), 5, "no retries configured: no retry");
}

#[tokio::test]
async fn network_errors_are_retried_then_reported() {
    // A port that was free a moment ago: nothing answers there.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("address");
    drop(listener);
    let mut config = ProviderConfig::new(ProviderKind::Openai);
    config.base_url = Some(format!("http://{addr}/v1"));
    config.default_model = Some("m".to_owned());
    config.max_retries = 1;

    let err = complete(provider(config).as_ref())
        .await
        .expect_err("unreachable");

    assert!(matches!(err, ProviderError::Network(_)), "{err:?}");
    assert_eq!(err.code(), "provider_unreachable");
}

#[tokio::test]
async fn concurrency_is_limited_per_provider() {
    let fake = FakeLlm::start().await;
    fake.set_latency(Duration::from_millis(100));
    let mut config = fake.config(ProviderKind::Openai);
    config.max_concurrency = 2;
    let provider = provider(config);

    let calls = (0..6).map(|_| complete(provider.as_ref()));
    let results = futures::future::join_all(calls).await;

    assert!(results.iter().all(Result::is_ok), "{results:?}");
    assert_eq!(fake.request_count(), 6);
    let most = fake.max_in_flight();
    assert!((1..=2).contains(&most), "{most} requests in flight at once");
}

#[tokio::test]
async fn a_missing_key_names_its_variable_and_calls_nothing() {
    for kind in [ProviderKind::Anthropic, ProviderKind::Gemini] {
        let fake = FakeLlm::start().await;
        let mut config = fake.config(kind);
        config.api_key_env = Some("PROMPTREG_TEST_NO_SUCH_KEY".to_owned());
        config.api_key = None;

        let err = complete(provider(config).as_ref())
            .await
            .expect_err("no key");

        assert_eq!(
            err,
            ProviderError::MissingApiKey {
                env: "PROMPTREG_TEST_NO_SUCH_KEY".to_owned()
            }
        );
        assert!(
            err.to_string().contains("PROMPTREG_TEST_NO_SUCH_KEY"),
            "{err}"
        );
        assert_eq!(err.code(), "provider_missing_api_key");
        assert_eq!(fake.request_count(), 0);
    }
}

#[tokio::test]
async fn the_key_never_shows_in_errors_or_listings() {
    let secret = "sk-leaky-secret-42";
    let fake = FakeLlm::start().await;
    fake.push(Reply::Json(
        401,
        json!({"error": {"message": format!("Incorrect API key provided: {secret}")}}),
    ));
    let mut config = fake.config(ProviderKind::Openai);
    config.api_key = Some(Redacted(secret.to_owned()));
    let providers = Providers::from_config(&BTreeMap::from([("p".to_owned(), config.clone())]))
        .expect("providers");

    let err = complete(providers.get("p").expect("p").as_ref())
        .await
        .expect_err("rejected");

    assert!(
        matches!(err, ProviderError::Rejected { status: 401, .. }),
        "{err:?}"
    );
    for shown in [err.to_string(), format!("{err:?}")] {
        assert!(!shown.contains(secret), "{shown}");
        assert!(shown.contains("Incorrect API key provided: ***"), "{shown}");
    }
    let listing = serde_json::to_string(&providers.list()).expect("json");
    assert!(!listing.contains(secret), "{listing}");
    assert!(!format!("{providers:?} {config:?}").contains(secret));

    let info = &providers.list()[0];
    assert_eq!(info.name, "p");
    assert_eq!(info.kind, ProviderKind::Openai);
    assert_eq!(info.base_url, fake.openai_base_url());
    assert_eq!(info.default_model.as_deref(), Some(FAKE_MODEL));
    assert_eq!(info.max_concurrency, 8);
    assert!(info.has_api_key);
}

#[tokio::test]
async fn the_fake_serves_every_format_from_one_server() {
    let fake = FakeLlm::start().await;
    fake.set_default(|request| {
        Reply::text(format!(
            "echo: {}",
            request.last_user_text().unwrap_or_default()
        ))
    });
    let providers = fake.providers();
    for name in ["openai", "anthropic", "gemini"] {
        let provider = providers.get(name).expect(name);
        let completion = complete(provider.as_ref()).await.expect(name);
        assert_eq!(completion.text, "echo: Say hi", "{name}");
    }
    let paths: Vec<String> = fake.requests().into_iter().map(|r| r.path).collect();
    assert_eq!(
        paths,
        [
            "/v1/chat/completions",
            "/v1/messages",
            "/v1beta/models/fake-model:generateContent"
        ]
    );
}
