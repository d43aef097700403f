//! Datasets: creation, uploads in three formats (all or nothing), paging.

use serde_json::{json, Value};

use crate::backend_tests;
use crate::support::{app_with, enc, test_config, with_database, Backend, TestApp, TestResponse};

async fn create(app: &TestApp, name: &str) -> TestResponse {
    app.post(
        "/v1/datasets",
        json!({"name": name, "description": "questions"}),
    )
    .await
}

async fn all_items(app: &TestApp, name: &str) -> Vec<Value> {
    let mut items = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/datasets/{}/items?limit=2&cursor={c}", enc(name)),
            None => format!("/v1/datasets/{}/items?limit=2", enc(name)),
        };
        let page = app.get(&path).await;
        assert_eq!(page.status, 200, "{}", page.body);
        items.extend(page.body["items"].as_array().cloned().unwrap_or_default());
        match page.body["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return items,
        }
    }
}

async fn datasets_are_created_listed_and_unique(app: TestApp) {
    let created = create(&app, "support/faq").await;
    assert_eq!(created.status, 201, "{}", created.body);
    assert_eq!(
        created.header("location"),
        Some("/v1/datasets/support%2Ffaq")
    );
    assert_eq!(created.body["item_count"], 0);
    create(&app, "evals").await;

    create(&app, "support/faq")
        .await
        .assert_problem(409, "dataset_exists");
    create(&app, "Bad Name")
        .await
        .assert_problem(422, "invalid_name");
    app.post("/v1/datasets", json!({"name": "x", "colour": "red"}))
        .await
        .assert_problem(422, "validation_failed");

    let list = app.get("/v1/datasets").await;
    let names: Vec<&str> = list.body["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|d| d["name"].as_str())
        .collect();
    assert_eq!(names, vec!["evals", "support/faq"]);
    let one = app
        .get(&format!("/v1/datasets/{}", enc("support/faq")))
        .await;
    assert_eq!(one.body["description"], "questions");
    app.get("/v1/datasets/nope")
        .await
        .assert_problem(404, "dataset_not_found");
}

async fn items_upload_as_json_jsonl_and_csv_in_order(app: TestApp) {
    create(&app, "faq").await;
    let array = json!([
        {"input": {"question": "Where is my order?"}, "expected": "In transit", "metadata": {"source": "mail"}},
        {"input": {"question": "Refund?"}}
    ]);
    let added = app
        .upload("faq", "application/json", array.to_string())
        .await;
    assert_eq!(added.status, 200, "{}", added.body);
    assert_eq!(added.body["added"], 2);

    let lines = "{\"input\": {\"question\": \"Hours?\"}, \"expected\": {\"open\": 9}}\n\n{\"input\": {\"question\": \"Phone?\"}}\n";
    let added = app
        .upload("faq", "application/x-ndjson; charset=utf-8", lines)
        .await;
    assert_eq!(added.body["added"], 2, "{}", added.body);

    let csv = "question,input.tone,expected,metadata.source\n\"Where, exactly?\",calm,Here,web\nWhy?,warm,,chat\n";
    let added = app.upload("faq", "text/csv", csv).await;
    assert_eq!(added.body["added"], 2, "{}", added.body);
    assert_eq!(added.body["dataset"]["item_count"], 6);

    let items = all_items(&app, "faq").await;
    let seqs: Vec<i64> = items.iter().filter_map(|i| i["seq"].as_i64()).collect();
    assert_eq!(seqs, vec![1, 2, 3, 4, 5, 6]);
    assert_eq!(items[0]["input"], json!({"question": "Where is my order?"}));
    assert_eq!(items[0]["expected"], "In transit");
    assert_eq!(items[0]["metadata"], json!({"source": "mail"}));
    assert_eq!(items[1]["expected"], Value::Null);
    assert_eq!(items[2]["expected"], json!({"open": 9}));
    assert_eq!(
        items[4]["input"],
        json!({"question": "Where, exactly?", "tone": "calm"})
    );
    assert_eq!(items[4]["expected"], "Here");
    assert_eq!(items[4]["metadata"], json!({"source": "web"}));
    assert_eq!(items[5]["expected"], "");
}

async fn a_bad_item_keeps_nothing_of_its_upload(app: TestApp) {
    create(&app, "faq").await;
    app.upload("faq", "application/x-ndjson", "{\"input\": {\"q\": 1}}\n")
        .await;

    let cases: [(&str, String, &str, &str); 6] = [
        (
            "application/x-ndjson",
            "{\"input\": {\"q\": 1}}\n{\"input\": {\"q\": 2}}\n{\"input\": \"oops\"}\n".into(),
            "items[2]",
            "line 3",
        ),
        (
            "application/x-ndjson",
            "{\"input\": {}}\nnot json\n".into(),
            "items[1]",
            "not JSON",
        ),
        (
            "application/json",
            json!([{"input": {}}, {"input": {}, "answer": "x"}]).to_string(),
            "items[1]",
            "unknown field `answer`",
        ),
        (
            "application/json",
            "[{\"input\": {}}, {\"input\": ".into(),
            "items[1]",
            "not a JSON array",
        ),
        (
            "application/json",
            json!({"input": {}}).to_string(),
            "items[0]",
            "not a JSON array",
        ),
        (
            "text/csv",
            "q,expected\na,b\nc,d,e\n".into(),
            "items[1]",
            "not valid CSV",
        ),
    ];
    for (content_type, body, field, says) in cases {
        let answer = app.upload("faq", content_type, body).await;
        let problem = answer.assert_problem(422, "invalid_item");
        assert_eq!(answer.error_fields(), vec![field.to_owned()], "{problem}");
        let detail = problem["detail"].as_str().unwrap_or_default();
        assert!(
            detail.contains(says),
            "{content_type}: {detail:?} should say {says:?}"
        );
    }
    let dataset = app.get("/v1/datasets/faq").await;
    assert_eq!(dataset.body["item_count"], 1);
    assert_eq!(all_items(&app, "faq").await.len(), 1);

    app.upload("faq", "application/xml", "<items/>")
        .await
        .assert_problem(415, "unsupported_media_type");
    app.upload("nope", "application/json", "[]")
        .await
        .assert_problem(404, "dataset_not_found");
}

async fn one_request_takes_a_hundred_thousand_items(app: TestApp) {
    create(&app, "big").await;
    let mut body = String::with_capacity(100_000 * 60);
    for i in 0..100_000 {
        body.push_str(&format!(
            "{{\"input\": {{\"n\": {i}, \"q\": \"question {i}\"}}, \"expected\": \"answer {i}\"}}\n"
        ));
    }
    let added = app.upload("big", "application/x-ndjson", body).await;
    assert_eq!(added.status, 200, "{}", added.body);
    assert_eq!(added.body["added"], 100_000);
    let first = app.get("/v1/datasets/big/items?limit=1").await;
    assert_eq!(first.body["items"][0]["input"]["n"], 0);
}

fn names(list: &TestResponse) -> Vec<String> {
    assert_eq!(list.status, 200, "{}", list.body);
    list.body["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|d| d["name"].as_str().map(str::to_owned))
        .collect()
}

/// The audit log's entries with this action, newest first.
async fn audited(app: &TestApp, action: &str) -> Vec<Value> {
    let log = app.get("/v1/audit?limit=100").await;
    assert_eq!(log.status, 200, "{}", log.body);
    log.body["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter(|e| e["action"] == action)
        .cloned()
        .collect()
}

async fn datasets_are_renamed_described_archived_and_restored(app: TestApp) {
    create(&app, "support/faq").await;
    create(&app, "other").await;
    let path = format!("/v1/datasets/{}", enc("support/faq"));
    app.upload(
        "support/faq",
        "application/x-ndjson",
        "{\"input\": {\"q\": \"a\"}}\n",
    )
    .await;

    let renamed = app
        .patch(
            &path,
            json!({"name": "support/faq-2024", "description": "Questions of 2024"}),
        )
        .await;
    assert_eq!(renamed.status, 200, "{}", renamed.body);
    assert_eq!(renamed.body["name"], "support/faq-2024");
    assert_eq!(renamed.body["description"], "Questions of 2024");
    assert_eq!(renamed.body["item_count"], 1);
    assert_eq!(renamed.body["archived"], false);
    app.get(&path)
        .await
        .assert_problem(404, "dataset_not_found");
    let path = format!("/v1/datasets/{}", enc("support/faq-2024"));
    assert_eq!(
        app.get(&path).await.body["description"],
        "Questions of 2024"
    );
    let items = all_items(&app, "support/faq-2024").await;
    assert_eq!(items.len(), 1);
    let rename = audited(&app, "dataset.rename").await;
    assert_eq!(rename.len(), 1);
    assert_eq!(rename[0]["target"], "datasets/support/faq-2024");
    assert_eq!(rename[0]["before"]["name"], "support/faq");
    assert_eq!(rename[0]["after"]["name"], "support/faq-2024");

    // Only the description: the name stays.
    let described = app.patch(&path, json!({"description": "2024"})).await;
    assert_eq!(described.body["name"], "support/faq-2024");
    assert_eq!(described.body["description"], "2024");
    assert_eq!(audited(&app, "dataset.update").await.len(), 1);

    app.patch(&path, json!({"name": "other"}))
        .await
        .assert_problem(409, "dataset_exists");
    app.patch(&path, json!({"name": "Bad Name"}))
        .await
        .assert_problem(422, "invalid_name");
    app.patch(&path, json!({"colour": "red"}))
        .await
        .assert_problem(422, "validation_failed");
    app.patch(&path, json!({"description": "x".repeat(4097)}))
        .await
        .assert_problem(422, "validation_failed");
    app.patch("/v1/datasets/nope", json!({"description": "x"}))
        .await
        .assert_problem(404, "dataset_not_found");
    // Nothing of the refused changes was kept.
    let unchanged = app.get(&path).await;
    assert_eq!(unchanged.body["description"], "2024");
    assert_eq!(
        names(&app.get("/v1/datasets").await),
        ["other", "support/faq-2024"]
    );

    let archived = app.patch(&path, json!({"archived": true})).await;
    assert_eq!(archived.status, 200, "{}", archived.body);
    assert_eq!(archived.body["archived"], true);
    assert_eq!(audited(&app, "dataset.archive").await.len(), 1);
    assert_eq!(names(&app.get("/v1/datasets").await), ["other"]);
    assert_eq!(
        names(&app.get("/v1/datasets?archived=false").await),
        ["other"]
    );
    let everything = app.get("/v1/datasets?archived=true").await;
    assert_eq!(names(&everything), ["other", "support/faq-2024"]);
    assert_eq!(everything.body["items"][1]["archived"], true);
    assert_eq!(everything.body["items"][0]["archived"], false);
    let paged = app.get("/v1/datasets?archived=true&limit=1").await;
    let cursor = paged.body["next_cursor"].as_str().expect("a second page");
    let second = app
        .get(&format!(
            "/v1/datasets?archived=true&limit=1&cursor={cursor}"
        ))
        .await;
    assert_eq!(names(&second), ["support/faq-2024"]);
    app.get("/v1/datasets?archived=maybe")
        .await
        .assert_problem(422, "validation_failed");
    // Still readable, but it takes no new items.
    assert_eq!(app.get(&path).await.body["archived"], true);
    assert_eq!(all_items(&app, "support/faq-2024").await.len(), 1);
    app.upload(
        "support/faq-2024",
        "application/x-ndjson",
        "{\"input\": {\"q\": \"b\"}}\n",
    )
    .await
    .assert_problem(409, "dataset_archived");

    let restored = app.patch(&path, json!({"archived": false})).await;
    assert_eq!(restored.body["archived"], false);
    assert_eq!(audited(&app, "dataset.restore").await.len(), 1);
    assert_eq!(
        names(&app.get("/v1/datasets").await),
        ["other", "support/faq-2024"]
    );
    let added = app
        .upload(
            "support/faq-2024",
            "application/x-ndjson",
            "{\"input\": {\"q\": \"b\"}}\n",
        )
        .await;
    assert_eq!(added.status, 200, "{}", added.body);
    assert_eq!(added.body["dataset"]["item_count"], 2);
}

async fn a_dataset_in_use_is_archived_not_deleted(app: TestApp) {
    app.seed_prompt("geo").await;
    app.seed_version("geo", "Capital of {{country}}?").await;
    create(&app, "used").await;
    create(&app, "gated").await;
    create(&app, "spare").await;
    app.upload(
        "spare",
        "application/x-ndjson",
        "{\"input\": {\"country\": \"Peru\"}}\n",
    )
    .await;
    let mut evaluations = Vec::new();
    for _ in 0..2 {
        let created = app
            .post(
                "/v1/evaluations",
                json!({"prompt": "geo", "ref": "1.0.0", "dataset": "used", "provider": "walk",
                       "metrics": ["exact_match"]}),
            )
            .await;
        assert_eq!(created.status, 202, "{}", created.body);
        evaluations.push(created.body["id"].as_str().expect("id").to_owned());
    }
    let gate = app
        .put(
            "/v1/prompts/geo/gates/production",
            json!({"dataset": "gated", "rules": [{"metric": "exact_match", "min": 0.5}]}),
        )
        .await;
    assert_eq!(gate.status, 200, "{}", gate.body);

    let refused = app.delete("/v1/datasets/used").await;
    let detail = refused.assert_problem(409, "dataset_in_use")["detail"]
        .as_str()
        .expect("detail")
        .to_owned();
    for id in &evaluations {
        assert!(detail.contains(id.as_str()), "{detail}");
    }
    assert!(detail.contains("2 evaluations"), "{detail}");
    assert!(detail.contains("archive"), "{detail}");
    let refused = app.delete("/v1/datasets/gated").await;
    let detail = refused.assert_problem(409, "dataset_in_use")["detail"].clone();
    assert!(
        detail
            .as_str()
            .is_some_and(|d| d.contains("geo:production")),
        "{detail}"
    );

    // Archiving is the way out: the evaluations keep their dataset.
    let archived = app
        .patch("/v1/datasets/used", json!({"archived": true}))
        .await;
    assert_eq!(archived.status, 200, "{}", archived.body);
    app.delete("/v1/datasets/used")
        .await
        .assert_problem(409, "dataset_in_use");
    let evaluation = app
        .get(&format!("/v1/evaluations/{}", evaluations[0]))
        .await;
    assert_eq!(evaluation.body["dataset"], "used");
    // A rename shows in the evaluations, which refer to the dataset itself.
    app.patch("/v1/datasets/used", json!({"name": "used-2024"}))
        .await;
    let evaluation = app
        .get(&format!("/v1/evaluations/{}", evaluations[0]))
        .await;
    assert_eq!(evaluation.body["dataset"], "used-2024");
    assert_eq!(audited(&app, "dataset.delete").await.len(), 0);

    // One nothing uses goes, with its items; the name is free again.
    let deleted = app.delete("/v1/datasets/spare").await;
    assert_eq!(deleted.status, 204, "{}", deleted.body);
    app.get("/v1/datasets/spare")
        .await
        .assert_problem(404, "dataset_not_found");
    app.get("/v1/datasets/spare/items")
        .await
        .assert_problem(404, "dataset_not_found");
    app.delete("/v1/datasets/spare")
        .await
        .assert_problem(404, "dataset_not_found");
    let entries = audited(&app, "dataset.delete").await;
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0]["target"], "datasets/spare");
    assert_eq!(entries[0]["before"]["item_count"], 1);
    assert_eq!(entries[0]["after"], Value::Null);
    let again = create(&app, "spare").await;
    assert_eq!(again.status, 201, "{}", again.body);
    assert_eq!(again.body["item_count"], 0);
    assert_eq!(
        names(&app.get("/v1/datasets?archived=true").await),
        ["spare", "gated", "used-2024"]
    );
}

backend_tests!(
    datasets_are_created_listed_and_unique,
    datasets_are_renamed_described_archived_and_restored,
    a_dataset_in_use_is_archived_not_deleted,
    items_upload_as_json_jsonl_and_csv_in_order,
    a_bad_item_keeps_nothing_of_its_upload,
    one_request_takes_a_hundred_thousand_items,
);

#[tokio::test]
async fn uploads_over_the_limit_answer_413_and_keep_nothing() {
    with_database(Backend::Sqlite, |url| async move {
        let mut config = test_config(&url);
        config.http.upload_limit_bytes = 1000;
        let app = app_with(config).await;
        create(&app, "faq").await;
        let line = "{\"input\": {\"question\": \"a question that takes some room\"}}\n";
        let answer = app
            .upload("faq", "application/x-ndjson", line.repeat(100))
            .await;
        answer.assert_problem(413, "payload_too_large");
        let dataset = app.get("/v1/datasets/faq").await;
        assert_eq!(dataset.body["item_count"], 0);
    })
    .await;
}
