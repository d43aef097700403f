//! `GET /v1/audit` filters: by actor, action, target (and what lies below
//! it) and time, combined, across pages; another project's entries never
//! show.

use axum::http::{Method, StatusCode};
use serde_json::{json, Value};

use crate::support::TestApp;

crate::backend_tests!(
    audit_filters_by_actor_action_and_target,
    audit_filters_by_time_range_and_pages_keep_the_filter,
    audit_filters_never_show_another_project,
    audit_filters_refuse_bad_values,
);

/// Every entry of the listing at `path` (following `next_cursor`), as
/// (action, target, key_name, at).
async fn all_entries(app: &TestApp, path: &str) -> Vec<(String, String, String, String)> {
    let mut entries = Vec::new();
    let mut url = path.to_owned();
    loop {
        let page = app.get(&url).await;
        assert_eq!(page.status, StatusCode::OK, "{url}: {}", page.body);
        for e in page.body["items"].as_array().expect("items") {
            let text = |field: &str| e[field].as_str().unwrap_or_default().to_owned();
            entries.push((text("action"), text("target"), text("key_name"), text("at")));
        }
        match page.body["next_cursor"].as_str() {
            Some(cursor) => {
                let separator = if path.contains('?') { '&' } else { '?' };
                url = format!("{path}{separator}cursor={cursor}");
            }
            None => return entries,
        }
    }
}

fn query(pairs: &[(&str, &str)]) -> String {
    format!(
        "/v1/audit?{}",
        serde_urlencoded::to_string(pairs).expect("a query")
    )
}

/// Prompts `greet`, `greeting` and `support/greet` with a version each, some
/// made by key `bot`, the others by the admin key.
async fn seed(app: &TestApp) {
    let (_, bot) = app
        .create_key(json!({"name": "bot", "scopes": ["write", "promote"]}))
        .await;
    for name in ["greet", "support/greet"] {
        let created = app
            .request_as(
                Some(&bot),
                Method::POST,
                "/v1/prompts",
                Some(json!({"name": name})),
            )
            .await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    }
    let version = app
        .request_as(
            Some(&bot),
            Method::POST,
            "/v1/prompts/greet/versions",
            Some(json!({"template": "Hello"})),
        )
        .await;
    assert_eq!(version.status, StatusCode::CREATED, "{}", version.body);
    app.seed_prompt("greeting").await;
    app.seed_version("greeting", "Hi").await;
    app.set_label("greet", "production", "1.0.0").await;
}

async fn audit_filters_by_actor_action_and_target(app: TestApp) {
    seed(&app).await;
    let everything = all_entries(&app, "/v1/audit").await;
    assert!(everything.len() >= 7, "{everything:?}");

    let by_bot = all_entries(&app, &query(&[("actor", "bot")])).await;
    let actions: Vec<&str> = by_bot.iter().map(|e| e.0.as_str()).collect();
    assert_eq!(
        actions,
        ["version.create", "prompt.create", "prompt.create"],
        "{by_bot:?}"
    );
    assert!(by_bot.iter().all(|e| e.2 == "bot"));

    let created = all_entries(&app, &query(&[("action", "prompt.create")])).await;
    let targets: Vec<&str> = created.iter().map(|e| e.1.as_str()).collect();
    assert_eq!(
        targets,
        ["prompts/greeting", "prompts/support/greet", "prompts/greet"]
    );

    // A target and what lies below it; not a longer name that starts alike.
    let greet = all_entries(&app, &query(&[("target", "prompts/greet")])).await;
    let targets: Vec<&str> = greet.iter().map(|e| e.1.as_str()).collect();
    assert_eq!(
        targets,
        [
            "prompts/greet/labels/production",
            "prompts/greet/versions/1.0.0",
            "prompts/greet"
        ]
    );
    let folder = all_entries(&app, &query(&[("target", "prompts/support/")])).await;
    let targets: Vec<&str> = folder.iter().map(|e| e.1.as_str()).collect();
    assert_eq!(targets, ["prompts/support/greet"]);

    let combined = all_entries(
        &app,
        &query(&[
            ("actor", "bot"),
            ("action", "prompt.create"),
            ("target", "prompts/greet"),
        ]),
    )
    .await;
    assert_eq!(combined.len(), 1, "{combined:?}");
    assert_eq!(combined[0].1, "prompts/greet");

    let nobody = all_entries(&app, &query(&[("actor", "nobody")])).await;
    assert!(nobody.is_empty(), "{nobody:?}");
    let case = all_entries(&app, &query(&[("target", "prompts/GREET")])).await;
    assert!(case.is_empty(), "targets match case-sensitively: {case:?}");
}

async fn audit_filters_by_time_range_and_pages_keep_the_filter(app: TestApp) {
    seed(&app).await;
    let everything = all_entries(&app, "/v1/audit").await;
    let at = |e: &(String, String, String, String)| {
        chrono::DateTime::parse_from_rfc3339(&e.3).expect("an RFC 3339 time")
    };
    // The time of an entry in the middle: `from` keeps it and everything
    // after; `to` keeps only what came before it.
    let middle = everything.len() / 2;
    let pivot = at(&everything[middle]);
    let pivot_text = everything[middle].3.clone();
    let from = all_entries(&app, &query(&[("from", &pivot_text)])).await;
    let expected: Vec<_> = everything
        .iter()
        .filter(|e| at(e) >= pivot)
        .cloned()
        .collect();
    assert_eq!(from, expected);
    assert!(from.contains(&everything[middle]));
    let to = all_entries(&app, &query(&[("to", &pivot_text)])).await;
    let expected: Vec<_> = everything
        .iter()
        .filter(|e| at(e) < pivot)
        .cloned()
        .collect();
    assert_eq!(to, expected);
    assert!(!to.contains(&everything[middle]));

    let future = all_entries(&app, &query(&[("from", "2999-01-01T00:00:00Z")])).await;
    assert!(future.is_empty(), "{future:?}");
    let past = all_entries(
        &app,
        &query(&[
            ("from", "2000-01-01T00:00:00+02:00"),
            ("to", "2999-01-01T00:00:00Z"),
        ]),
    )
    .await;
    assert_eq!(past, everything);

    // One entry a page: every page keeps the filter.
    let paged = all_entries(&app, &query(&[("action", "prompt.create"), ("limit", "1")])).await;
    let unpaged = all_entries(&app, &query(&[("action", "prompt.create")])).await;
    assert_eq!(paged.len(), 3);
    assert_eq!(paged, unpaged);
}

async fn audit_filters_never_show_another_project(app: TestApp) {
    let made = app.post("/v1/projects", json!({"name": "other"})).await;
    assert_eq!(made.status, StatusCode::CREATED, "{}", made.body);
    let (_, other) = app
        .create_key(json!({"name": "bot", "scopes": ["admin"], "project": "other"}))
        .await;
    let created = app
        .request_as(
            Some(&other),
            Method::POST,
            "/v1/prompts",
            Some(json!({"name": "greet"})),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    app.seed_prompt("greet").await;

    for filters in [
        vec![("actor", "bot")],
        vec![("target", "prompts/greet")],
        vec![("action", "prompt.create")],
        vec![("from", "2000-01-01T00:00:00Z")],
    ] {
        let ours = all_entries(&app, &query(&filters)).await;
        assert!(
            ours.iter().all(|e| e.2 != "bot"),
            "{filters:?} shows the other project's key: {ours:?}"
        );
        let theirs = app
            .request_as(Some(&other), Method::GET, &query(&filters), None)
            .await;
        assert_eq!(theirs.status, StatusCode::OK, "{}", theirs.body);
        let theirs: Vec<Value> = theirs.body["items"].as_array().expect("items").clone();
        assert!(
            theirs
                .iter()
                .filter(|e| e["target"]
                    .as_str()
                    .is_some_and(|t| t.starts_with("prompts/")))
                .all(|e| e["key_name"] == "bot"),
            "{filters:?} shows this project's prompt to the other: {theirs:?}"
        );
    }
    let ours = all_entries(&app, &query(&[("target", "prompts/greet")])).await;
    assert_eq!(ours.len(), 1, "only this project's prompt: {ours:?}");
    let theirs = app
        .request_as(
            Some(&other),
            Method::GET,
            &query(&[("target", "prompts/greet")]),
            None,
        )
        .await;
    assert_eq!(theirs.body["items"].as_array().expect("items").len(), 1);
    assert_eq!(theirs.body["items"][0]["key_name"], "bot");
}

async fn audit_filters_refuse_bad_values(app: TestApp) {
    let long = "x".repeat(201);
    for (pairs, why) in [
        (vec![("from", "yesterday")], "not a time"),
        (
            vec![
                ("from", "2026-01-02T00:00:00Z"),
                ("to", "2026-01-01T00:00:00Z"),
            ],
            "to before from",
        ),
        (vec![("actor", long.as_str())], "an actor too long"),
        (vec![("limit", "0")], "an empty page"),
    ] {
        let refused = app.get(&query(&pairs)).await;
        assert_eq!(refused.status.as_u16(), 422, "{why}: {}", refused.body);
    }
}
