//! What has been run, listed: evaluations, optimizations and jobs, newest
//! first, filtered, paged to the end, refusing bad parameters, and never
//! showing another project's. No worker runs here: the jobs stay queued or
//! are cancelled, which is what the status filters tell apart.

use axum::http::Method;
use serde_json::{json, Value};

use crate::backend_tests;
use crate::support::{TestApp, TestResponse};

/// Prompts `geo` and `math` (1.0.0 and 1.0.1 each) and datasets
/// `capitals` and `sums` (two items each) in the admin key's project.
async fn seed(app: &TestApp) {
    for prompt in ["geo", "math"] {
        app.seed_prompt(prompt).await;
        app.seed_version(prompt, "Q: {{q}}").await;
        app.seed_version(prompt, "Question: {{q}}").await;
    }
    for dataset in ["capitals", "sums"] {
        let created = app.post("/v1/datasets", json!({"name": dataset})).await;
        assert_eq!(created.status, 201, "{}", created.body);
        let items = app
            .upload(
                dataset,
                "application/x-ndjson",
                "{\"input\": {\"q\": \"a\"}, \"expected\": \"a\"}\n{\"input\": {\"q\": \"b\"}, \"expected\": \"b\"}\n",
            )
            .await;
        assert_eq!(items.status, 200, "{}", items.body);
    }
}

/// Queues an evaluation (with the never-called provider `walk`); its body.
async fn evaluate(app: &TestApp, prompt: &str, version: &str, dataset: &str) -> Value {
    let created = app
        .post(
            "/v1/evaluations",
            json!({"prompt": prompt, "ref": version, "dataset": dataset, "provider": "walk",
                   "metrics": ["exact_match"]}),
        )
        .await;
    assert_eq!(created.status, 202, "{}", created.body);
    created.body
}

/// Queues an optimization of `prompt` 1.0.0 on `capitals`; its body.
async fn optimize(app: &TestApp, prompt: &str) -> Value {
    let created = app
        .post(
            "/v1/optimizations",
            json!({"prompt": prompt, "ref": "1.0.0", "dataset": "capitals", "metric": "exact_match",
                   "target": {"provider": "walk"}, "strategy": "fewshot"}),
        )
        .await;
    assert_eq!(created.status, 202, "{}", created.body);
    created.body
}

async fn cancel(app: &TestApp, created: &Value) {
    let job = created["job_id"].as_str().expect("job id");
    let cancelled = app.post(&format!("/v1/jobs/{job}/cancel"), json!({})).await;
    assert_eq!(cancelled.status, 200, "{}", cancelled.body);
}

fn ids(page: &TestResponse) -> Vec<String> {
    assert_eq!(page.status, 200, "{}", page.body);
    page.body["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|item| item["id"].as_str().expect("id").to_owned())
        .collect()
}

fn id_of(created: &Value) -> String {
    created["id"].as_str().expect("id").to_owned()
}

/// Every item of `path` (which has a query already), `limit` at a time,
/// following `next_cursor` to the end; the pages' lengths too.
async fn walk_pages(app: &TestApp, path: &str, limit: u32) -> (Vec<String>, Vec<usize>) {
    let mut all = Vec::new();
    let mut sizes = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page_path = match &cursor {
            Some(c) => format!("{path}&limit={limit}&cursor={c}"),
            None => format!("{path}&limit={limit}"),
        };
        let page = app.get(&page_path).await;
        let page_ids = ids(&page);
        sizes.push(page_ids.len());
        all.extend(page_ids);
        match page.body["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return (all, sizes),
        }
        assert!(sizes.len() < 20, "paging does not end");
    }
}

/// Each `(query, parameter)` answers 422 naming that parameter.
async fn assert_refused(app: &TestApp, path: &str, cases: &[(&str, &str)]) {
    for (query, parameter) in cases {
        let answer = app.get(&format!("{path}?{query}")).await;
        assert_eq!(answer.status, 422, "{query}: {}", answer.body);
        assert_eq!(
            answer.error_fields(),
            vec![parameter.to_string()],
            "{query}: {}",
            answer.body
        );
    }
}

async fn evaluations_are_listed_newest_first_filtered_and_paged(app: TestApp) {
    seed(&app).await;
    let created = [
        evaluate(&app, "geo", "1.0.0", "capitals").await,
        evaluate(&app, "geo", "1.0.1", "capitals").await,
        evaluate(&app, "geo", "1.0.1", "sums").await,
        evaluate(&app, "math", "1.0.0", "sums").await,
        evaluate(&app, "geo", "1.0.0", "capitals").await,
    ];
    cancel(&app, &created[1]).await;
    let newest_first: Vec<String> = created.iter().rev().map(id_of).collect();
    let picked = |indexes: &[usize]| -> Vec<String> {
        indexes.iter().rev().map(|&i| id_of(&created[i])).collect()
    };

    let all = app.get("/v1/evaluations").await;
    assert_eq!(ids(&all), newest_first);
    assert_eq!(all.body["next_cursor"], Value::Null);
    // An item reads as `GET /v1/evaluations/{id}` answers it.
    let first = &all.body["items"][4];
    let one = app
        .get(&format!("/v1/evaluations/{}", id_of(&created[0])))
        .await;
    assert_eq!(first, &one.body);
    assert_eq!(first["prompt"], "geo");
    assert_eq!(first["version"], "1.0.0");
    assert_eq!(first["dataset"], "capitals");
    assert_eq!(first["status"], "queued");
    assert_eq!(first["metrics"], json!({}));
    assert_eq!(first["usage"]["cost_usd"], 0.0);

    let filtered = [
        ("prompt=geo", picked(&[0, 1, 2, 4])),
        ("prompt=math", picked(&[3])),
        ("prompt=nobody", vec![]),
        ("version=1.0.1", picked(&[1, 2])),
        ("dataset=sums", picked(&[2, 3])),
        ("status=cancelled", picked(&[1])),
        ("status=queued", picked(&[0, 2, 3, 4])),
        ("prompt=geo&version=1.0.0&dataset=capitals", picked(&[0, 4])),
        ("prompt=geo&dataset=sums&status=queued", picked(&[2])),
        ("prompt=&dataset=", newest_first.clone()),
    ];
    for (query, expected) in filtered {
        let page = app.get(&format!("/v1/evaluations?{query}")).await;
        assert_eq!(ids(&page), expected, "{query}");
    }

    let (paged, sizes) = walk_pages(&app, "/v1/evaluations?prompt=geo", 3).await;
    assert_eq!(paged, picked(&[0, 1, 2, 4]));
    assert_eq!(sizes, vec![3, 1]);
    let (paged, sizes) = walk_pages(&app, "/v1/evaluations?status=queued", 2).await;
    assert_eq!(paged, picked(&[0, 2, 3, 4]));
    assert_eq!(sizes, vec![2, 2]);
    let (paged, _) = walk_pages(&app, "/v1/evaluations?x=1", 1).await;
    assert_eq!(paged, newest_first);

    // The prompt's own list: the same, for a prompt that must exist.
    let of_geo = app.get("/v1/prompts/geo/evaluations").await;
    assert_eq!(ids(&of_geo), picked(&[0, 1, 2, 4]));
    let of_geo = app
        .get("/v1/prompts/geo/evaluations?version=1.0.1&status=queued")
        .await;
    assert_eq!(ids(&of_geo), picked(&[2]));
    let (paged, sizes) = walk_pages(&app, "/v1/prompts/geo/evaluations?dataset=capitals", 1).await;
    assert_eq!(paged, picked(&[0, 1, 4]));
    assert_eq!(sizes, vec![1, 1, 1]);
    app.get("/v1/prompts/nobody/evaluations")
        .await
        .assert_problem(404, "prompt_not_found");

    assert_refused(
        &app,
        "/v1/evaluations",
        &[
            ("status=done", "status"),
            ("status=", "status"),
            ("limit=0", "limit"),
            ("limit=101", "limit"),
            ("limit=many", "limit"),
            ("cursor=not-a-cursor", "cursor"),
            ("version=1.x", "version"),
            ("prompt=Bad%20Name", "prompt"),
        ],
    )
    .await;
    app.get("/v1/evaluations?prompt=Bad%20Name")
        .await
        .assert_problem(422, "invalid_name");
    app.get("/v1/evaluations?status=done")
        .await
        .assert_problem(422, "validation_failed");
    assert_refused(
        &app,
        "/v1/prompts/geo/evaluations",
        &[
            ("status=finished", "status"),
            ("limit=0", "limit"),
            ("cursor=zzz", "cursor"),
            ("version=latest", "version"),
        ],
    )
    .await;
}

async fn optimizations_are_listed_newest_first_filtered_and_paged(app: TestApp) {
    seed(&app).await;
    let created = [
        optimize(&app, "geo").await,
        optimize(&app, "math").await,
        optimize(&app, "geo").await,
    ];
    cancel(&app, &created[0]).await;
    let picked = |indexes: &[usize]| -> Vec<String> {
        indexes.iter().rev().map(|&i| id_of(&created[i])).collect()
    };

    let all = app.get("/v1/optimizations").await;
    assert_eq!(ids(&all), picked(&[0, 1, 2]));
    let item = &all.body["items"][1];
    assert_eq!(item["prompt"], "math");
    assert_eq!(item["version"], "1.0.0");
    assert_eq!(item["dataset"], "capitals");
    assert_eq!(item["strategy"], "fewshot");
    assert_eq!(item["metric"]["name"], "exact_match");
    assert_eq!(item["status"], "queued");
    assert_eq!(item["best_val_score"], Value::Null);
    assert_eq!(item["result_version"], Value::Null);
    assert_eq!(item["usage"], json!({"calls": 0, "cost_usd": 0.0}));
    // A summary: the iterations and their templates are the single read's.
    assert!(item.get("iterations").is_none(), "{item}");
    assert_eq!(all.body["items"][2]["status"], "cancelled");

    for (query, expected) in [
        ("prompt=geo", picked(&[0, 2])),
        ("prompt=math", picked(&[1])),
        ("status=cancelled", picked(&[0])),
        ("status=queued", picked(&[1, 2])),
        ("prompt=geo&status=queued", picked(&[2])),
        ("status=succeeded", vec![]),
    ] {
        let page = app.get(&format!("/v1/optimizations?{query}")).await;
        assert_eq!(ids(&page), expected, "{query}");
    }
    let (paged, sizes) = walk_pages(&app, "/v1/optimizations?x=1", 2).await;
    assert_eq!(paged, picked(&[0, 1, 2]));
    assert_eq!(sizes, vec![2, 1]);

    assert_refused(
        &app,
        "/v1/optimizations",
        &[
            ("status=stopped", "status"),
            ("limit=0", "limit"),
            ("cursor=%21%21", "cursor"),
            ("prompt=Nope%21", "prompt"),
        ],
    )
    .await;
}

async fn jobs_of_every_kind_are_listed_newest_first_filtered_and_paged(app: TestApp) {
    seed(&app).await;
    let evaluation = evaluate(&app, "geo", "1.0.0", "capitals").await;
    let optimization = optimize(&app, "geo").await;
    let cancelled = evaluate(&app, "math", "1.0.1", "sums").await;
    cancel(&app, &cancelled).await;
    let job = |created: &Value| created["job_id"].as_str().expect("job id").to_owned();

    let all = app.get("/v1/jobs").await;
    assert_eq!(
        ids(&all),
        vec![job(&cancelled), job(&optimization), job(&evaluation)]
    );
    let one = app.get(&format!("/v1/jobs/{}", job(&evaluation))).await;
    assert_eq!(all.body["items"][2], one.body);
    assert_eq!(all.body["items"][1]["kind"], "optimization");
    assert_eq!(
        all.body["items"][1]["payload"]["optimization_id"],
        optimization["id"]
    );

    for (query, expected) in [
        ("kind=evaluation", vec![job(&cancelled), job(&evaluation)]),
        ("kind=optimization", vec![job(&optimization)]),
        ("status=cancelled", vec![job(&cancelled)]),
        ("status=queued", vec![job(&optimization), job(&evaluation)]),
        ("kind=evaluation&status=queued", vec![job(&evaluation)]),
        ("status=running", vec![]),
    ] {
        let page = app.get(&format!("/v1/jobs?{query}")).await;
        assert_eq!(ids(&page), expected, "{query}");
    }
    let (paged, sizes) = walk_pages(&app, "/v1/jobs?kind=", 1).await;
    assert_eq!(
        paged,
        vec![job(&cancelled), job(&optimization), job(&evaluation)]
    );
    assert_eq!(sizes, vec![1, 1, 1]);

    assert_refused(
        &app,
        "/v1/jobs",
        &[
            ("kind=export", "kind"),
            ("status=paused", "status"),
            ("limit=-1", "limit"),
            ("cursor=czp4", "cursor"),
        ],
    )
    .await;
}

async fn other_projects_runs_are_not_listed(app: TestApp) {
    seed(&app).await;
    let ours = evaluate(&app, "geo", "1.0.0", "capitals").await;
    let our_optimization = optimize(&app, "geo").await;

    app.post("/v1/projects", json!({"name": "rival"})).await;
    let (_, rival) = app
        .create_key(json!({"name": "rival", "scopes": ["admin"], "project": "rival"}))
        .await;
    let as_rival = |method: Method, path: &str, body: Option<Value>| {
        let app = app.clone();
        let rival = rival.clone();
        let path = path.to_owned();
        async move { app.request_as(Some(&rival), method, &path, body).await }
    };
    // The rival has a prompt and a dataset of the same names, and one run.
    as_rival(Method::POST, "/v1/prompts", Some(json!({"name": "geo"}))).await;
    as_rival(
        Method::POST,
        "/v1/prompts/geo/versions",
        Some(json!({"template": "Q: {{q}}"})),
    )
    .await;
    as_rival(
        Method::POST,
        "/v1/datasets",
        Some(json!({"name": "capitals"})),
    )
    .await;
    let theirs = as_rival(
        Method::POST,
        "/v1/evaluations",
        Some(
            json!({"prompt": "geo", "ref": "1.0.0", "dataset": "capitals", "provider": "walk",
                    "metrics": ["exact_match"]}),
        ),
    )
    .await;
    assert_eq!(theirs.status, 202, "{}", theirs.body);

    for path in [
        "/v1/evaluations",
        "/v1/evaluations?prompt=geo",
        "/v1/prompts/geo/evaluations",
    ] {
        assert_eq!(ids(&app.get(path).await), vec![id_of(&ours)], "{path}");
        assert_eq!(
            ids(&as_rival(Method::GET, path, None).await),
            vec![id_of(&theirs.body)],
            "{path} as the rival"
        );
    }
    assert_eq!(
        ids(&app.get("/v1/optimizations").await),
        vec![id_of(&our_optimization)]
    );
    assert!(ids(&as_rival(Method::GET, "/v1/optimizations", None).await).is_empty());
    assert_eq!(ids(&app.get("/v1/jobs").await).len(), 2);
    assert_eq!(
        ids(&as_rival(Method::GET, "/v1/jobs", None).await),
        vec![theirs.body["job_id"].as_str().expect("job").to_owned()]
    );
    // Our prompt `math` does not exist for the rival.
    as_rival(Method::GET, "/v1/prompts/math/evaluations", None)
        .await
        .assert_problem(404, "prompt_not_found");
    // Our cursor does not open our items to the rival.
    let page = app.get("/v1/jobs?limit=1").await;
    let cursor = page.body["next_cursor"].as_str().expect("a next page");
    let theirs_after = as_rival(Method::GET, &format!("/v1/jobs?cursor={cursor}"), None).await;
    for id in ids(&theirs_after) {
        assert_eq!(id, theirs.body["job_id"].as_str().expect("job"));
    }
}

backend_tests!(
    evaluations_are_listed_newest_first_filtered_and_paged,
    optimizations_are_listed_newest_first_filtered_and_paged,
    jobs_of_every_kind_are_listed_newest_first_filtered_and_paged,
    other_projects_runs_are_not_listed,
);
