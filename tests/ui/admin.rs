//! Administration in the browser: a key created with its secret shown once
//! and then revoked (the API refuses it at once), users created, their
//! roles changed and deleted, projects created, both key actions found in
//! the audit page with their diffs, and every other role kept out.

use axum::http::StatusCode;
use fantoccini::Locator;
use serde_json::json;

use super::support::TestApp;
use super::{http, setup, Browser, PASSWORD};

/// A served app with admin user `ada`, and a browser signed in as her.
async fn as_admin(url: &str) -> Option<(TestApp, String, Browser)> {
    let (app, base, browser) = setup(url).await?;
    add_admin(&app).await;
    browser.sign_in(&base, "ada").await;
    Some((app, base, browser))
}

/// User `ada`, admin of project `default`.
pub(super) async fn add_admin(app: &TestApp) {
    let created = app
        .post(
            "/v1/users",
            json!({"name": "ada", "password": PASSWORD, "roles": {"default": "admin"}}),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
}

async fn check(browser: &Browser, css: &str) {
    browser
        .client
        .find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"))
        .click()
        .await
        .expect("click");
}

async fn select(browser: &Browser, css: &str, value: &str) {
    browser
        .client
        .find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"))
        .select_by_value(value)
        .await
        .expect("pick");
}

async fn texts(browser: &Browser, css: &str) -> Vec<String> {
    let mut found = Vec::new();
    for element in browser.client.find_all(Locator::Css(css)).await.expect(css) {
        found.push(element.text().await.expect("text"));
    }
    found
}

/// Whether `key` opens `/v1/prompts` (200) or is refused (401).
async fn status_with_key(base: &str, key: &str) -> u16 {
    http()
        .get(format!("{base}/v1/prompts"))
        .bearer_auth(key)
        .send()
        .await
        .expect("a response")
        .status()
        .as_u16()
}

async fn a_key_is_shown_once_revoked_and_both_are_in_the_audit(url: String) {
    let Some((_app, base, browser)) = as_admin(&url).await else {
        return;
    };
    browser
        .client
        .find(Locator::LinkText("Admin"))
        .await
        .expect("an Admin link for an admin")
        .click()
        .await
        .expect("click");
    browser.wait_for_heading("Administration").await;
    browser.fill("#key-name", "deploy-bot").await;
    check(&browser, "input[name=scope][value=read]").await;
    check(&browser, "input[name=scope][value=write]").await;
    browser.press("Create key").await;
    browser.wait_for_heading("Administration").await;
    let secret = texts(&browser, "#new-key-secret").await.concat();
    assert!(secret.starts_with("pr_"), "{secret:?}");
    assert_eq!(status_with_key(&base, &secret).await, 200, "the key works");
    let address = browser.client.current_url().await.expect("the address");
    assert!(!address.as_str().contains(&secret), "{address}");

    // Loading the same address again (and the list) never shows it again.
    browser.goto(address.as_str()).await;
    browser.wait_for_heading("Administration").await;
    let source = browser.client.source().await.expect("the page");
    assert!(!source.contains(&secret), "the secret is shown again");
    assert!(texts(&browser, "#new-key-secret").await.is_empty());
    let main = browser.main_text().await;
    assert!(main.contains("deploy-bot"), "{main}");
    assert!(main.contains("read, write"), "{main}");

    browser.open_details("Revoke deploy-bot").await;
    assert!(browser
        .main_text()
        .await
        .contains("Every request made with key “deploy-bot” will be refused at once"));
    browser.press("Yes, revoke deploy-bot").await;
    browser.wait_for_heading("Administration").await;
    assert_eq!(status_with_key(&base, &secret).await, 401, "revoked");
    let rows = texts(&browser, "main table tr").await;
    assert!(
        rows.iter()
            .any(|r| r.contains("deploy-bot") && r.contains("revoked")),
        "{rows:?}"
    );

    // Both in the audit log, found with the filters, each with its diff.
    browser
        .client
        .find(Locator::LinkText("Audit"))
        .await
        .expect("an Audit link for an admin")
        .click()
        .await
        .expect("click");
    browser.wait_for_heading("Audit").await;
    browser.fill("#actor", "user:ada").await;
    browser.fill("#action", "key.create").await;
    browser.press("Filter").await;
    browser.wait_for_heading("Audit").await;
    let entries = texts(&browser, "ol.audit > li").await;
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert!(entries[0].contains("by user:ada"), "{entries:?}");
    let added = texts(&browser, "ol.audit tr.ins").await.join("\n");
    assert!(added.contains("\"name\": \"deploy-bot\""), "{added}");
    assert!(added.contains("\"write\""), "{added}");
    assert!(texts(&browser, "ol.audit tr.del").await.is_empty());

    browser
        .goto(&format!("{base}/ui/audit?action=key.revoke"))
        .await;
    browser.wait_for_heading("Audit").await;
    assert_eq!(texts(&browser, "ol.audit > li").await.len(), 1);
    assert_eq!(
        texts(&browser, "ol.audit tr.del del").await,
        ["false"],
        "the changed word, marked"
    );
    assert_eq!(texts(&browser, "ol.audit tr.ins ins").await, ["true"]);

    // The time range: around now finds both; one in the future finds none.
    let now = chrono::Utc::now();
    let minute = |at: chrono::DateTime<chrono::Utc>| at.format("%Y-%m-%dT%H:%M").to_string();
    let around = format!(
        "{base}/ui/audit?actor=user%3Aada&from={}&to={}",
        minute(now - chrono::Duration::hours(1)),
        minute(now + chrono::Duration::hours(1))
    );
    browser.goto(&around).await;
    browser.wait_for_heading("Audit").await;
    let headings = texts(&browser, "ol.audit h2").await;
    assert!(
        headings.iter().any(|h| h.starts_with("key.revoke"))
            && headings.iter().any(|h| h.starts_with("key.create")),
        "{headings:?}"
    );
    let from = browser
        .client
        .find(Locator::Css("#from"))
        .await
        .expect("the from field")
        .prop("value")
        .await
        .expect("value");
    assert_eq!(
        from.as_deref(),
        Some(minute(now - chrono::Duration::hours(1)).as_str())
    );
    browser
        .goto(&format!(
            "{base}/ui/audit?actor=user%3Aada&from={}",
            minute(now + chrono::Duration::hours(1))
        ))
        .await;
    browser.wait_for_heading("Audit").await;
    assert!(texts(&browser, "ol.audit > li").await.is_empty());
    assert!(browser
        .main_text()
        .await
        .contains("No entries match these filters."));
    browser.close().await;
}

async fn the_key_answer_is_the_page_itself_and_not_cached(url: String) {
    let Some((_app, base, browser)) = as_admin(&url).await else {
        return;
    };
    browser.goto(&format!("{base}/ui/admin")).await;
    browser.wait_for_heading("Administration").await;
    let cookie = browser.session_cookie().await;
    let csrf = browser.csrf_token().await;
    let answer = http()
        .post(format!("{base}/ui/admin/keys"))
        .header("cookie", format!("promptreg_session={cookie}"))
        .header("origin", &base)
        .form(&[
            ("csrf_token", csrf.as_str()),
            ("name", "ci"),
            ("scope", "read"),
        ])
        .send()
        .await
        .expect("a response");
    assert_eq!(answer.status(), 200);
    assert_eq!(
        answer
            .headers()
            .get("cache-control")
            .and_then(|v| v.to_str().ok()),
        Some("no-store")
    );
    assert!(answer.headers().get("location").is_none());
    let page = answer.text().await.expect("the page");
    assert!(page.contains("Key “ci” created"), "{page}");
    let again = http()
        .get(format!("{base}/ui/admin/keys"))
        .header("cookie", format!("promptreg_session={cookie}"))
        .send()
        .await
        .expect("a response");
    assert_eq!(again.status(), 303, "a reload by GET goes to the list");

    // A refused key: the reasons beside the fields, nothing created.
    browser.fill("#key-name", "nothing").await;
    browser.press("Create key").await;
    browser.wait_for_heading("Administration").await;
    let problem = texts(&browser, "#key-scopes-error").await.concat();
    assert!(problem.contains("at least one scope"), "{problem}");
    assert!(texts(&browser, "#new-key-secret").await.is_empty());
    browser.close().await;
}

async fn an_admin_manages_users_roles_and_projects(url: String) {
    let Some((app, base, browser)) = as_admin(&url).await else {
        return;
    };
    browser.goto(&format!("{base}/ui/admin")).await;
    browser.wait_for_heading("Administration").await;

    browser.fill("#project-name", "team-a").await;
    browser.press("Create project").await;
    browser.wait_for_heading("Administration").await;
    let projects = app.get("/v1/projects").await;
    assert!(
        projects.body["items"]
            .as_array()
            .expect("items")
            .iter()
            .any(|p| p["name"] == "team-a"),
        "{}",
        projects.body
    );

    // Too short a password: said beside the field, nothing created.
    browser.fill("#user-name", "nina").await;
    browser.fill("#user-password", "short").await;
    browser.press("Create user").await;
    browser.wait_for_heading("Administration").await;
    let problem = texts(&browser, "#user-password-error").await.concat();
    assert!(problem.contains("characters"), "{problem}");
    app.get("/v1/users/nina")
        .await
        .assert_problem(404, "user_not_found");

    browser.fill("#user-password", PASSWORD).await;
    select(&browser, "#new-role-default", "editor").await;
    select(&browser, "#new-role-team-a", "viewer").await;
    browser.press("Create user").await;
    browser.wait_for_heading("Administration").await;
    let nina = app.get("/v1/users/nina").await;
    assert_eq!(nina.status, StatusCode::OK, "{}", nina.body);
    assert_eq!(
        nina.body["roles"],
        json!({"default": "editor", "team-a": "viewer"})
    );
    let rows = texts(&browser, "main table tr").await;
    assert!(
        rows.iter()
            .any(|r| r.contains("nina") && r.contains("default: editor")),
        "{rows:?}"
    );

    browser.open_details("Change roles of nina").await;
    select(&browser, "#roles-nina-default", "releaser").await;
    select(&browser, "#roles-nina-team-a", "").await;
    browser.press("Save roles of nina").await;
    browser.wait_for_heading("Administration").await;
    let nina = app.get("/v1/users/nina").await;
    assert_eq!(nina.body["roles"], json!({"default": "releaser"}));

    browser.open_details("Delete nina").await;
    browser.press("Yes, delete nina").await;
    browser.wait_for_heading("Administration").await;
    app.get("/v1/users/nina")
        .await
        .assert_problem(404, "user_not_found");

    // The role change, as the audit page shows it.
    browser
        .goto(&format!("{base}/ui/audit?action=user.update"))
        .await;
    browser.wait_for_heading("Audit").await;
    let removed = texts(&browser, "ol.audit tr.del").await.join("\n");
    let added = texts(&browser, "ol.audit tr.ins").await.join("\n");
    assert!(removed.contains("\"default\": \"editor\""), "{removed}");
    assert!(removed.contains("\"team-a\": \"viewer\""), "{removed}");
    assert!(added.contains("\"default\": \"releaser\""), "{added}");
    browser.close().await;
}

async fn other_roles_see_no_admin_link_and_are_refused(url: String) {
    let Some((app, base, browser)) = setup(&url).await else {
        return;
    };
    let (key_id, key) = app
        .create_key(json!({"name": "kept", "scopes": ["read"]}))
        .await;
    for user in ["vera", "rita"] {
        browser.sign_in(&base, user).await;
        for link in ["Admin", "Audit"] {
            let links = browser
                .client
                .find_all(Locator::LinkText(link))
                .await
                .expect("links");
            assert!(links.is_empty(), "{user} sees a {link} link");
        }
        // The token of a page the user may see (the refusal page has no forms).
        let cookie = browser.session_cookie().await;
        let csrf = browser.csrf_token().await;
        browser.goto(&format!("{base}/ui/admin")).await;
        let main = browser.main_text().await;
        assert!(main.contains("does not allow this"), "{user}: {main}");

        for page in ["/ui/admin", "/ui/audit", "/ui/audit?action=key.create"] {
            let answer = http()
                .get(format!("{base}{page}"))
                .header("cookie", format!("promptreg_session={cookie}"))
                .send()
                .await
                .expect("a response");
            assert_eq!(answer.status(), 403, "{user}: {page}");
        }
        // The user's own session, token and origin: refused by role.
        for (path, fields) in [
            (
                "/ui/admin/keys".to_owned(),
                vec![("name", "sneaky"), ("scope", "admin")],
            ),
            (format!("/ui/admin/keys/{key_id}/revoke"), vec![]),
            (
                "/ui/admin/users".to_owned(),
                vec![
                    ("name", "sneaky"),
                    ("password", PASSWORD),
                    ("role.default", "admin"),
                ],
            ),
            (
                format!("/ui/admin/users/{user}/roles"),
                vec![("role.default", "admin")],
            ),
            ("/ui/admin/users/ada/delete".to_owned(), vec![]),
            ("/ui/admin/projects".to_owned(), vec![("name", "sneaky")]),
        ] {
            let mut form = vec![("csrf_token", csrf.as_str())];
            form.extend(fields);
            let answer = http()
                .post(format!("{base}{path}"))
                .header("cookie", format!("promptreg_session={cookie}"))
                .header("origin", &base)
                .form(&form)
                .send()
                .await
                .expect("a response");
            assert_eq!(answer.status(), 403, "{user}: {path}");
        }
        browser.goto(&format!("{base}/ui/prompts")).await;
        browser.press("Sign out").await;
        browser.wait_for_heading("Sign in").await;
    }
    assert_eq!(status_with_key(&base, &key).await, 200, "not revoked");
    let keys = app.get("/v1/keys").await;
    assert!(
        keys.body["items"]
            .as_array()
            .expect("items")
            .iter()
            .all(|k| k["name"] != "sneaky"),
        "{}",
        keys.body
    );
    app.get("/v1/users/sneaky")
        .await
        .assert_problem(404, "user_not_found");
    let rita = app.get("/v1/users/rita").await;
    assert_eq!(rita.body["roles"], json!({"default": "releaser"}));
    let projects = app.get("/v1/projects").await;
    assert!(
        projects.body["items"]
            .as_array()
            .expect("items")
            .iter()
            .all(|p| p["name"] != "sneaky"),
        "{}",
        projects.body
    );
    browser.close().await;
}

crate::backend_url_tests!(
    a_key_is_shown_once_revoked_and_both_are_in_the_audit,
    the_key_answer_is_the_page_itself_and_not_cached,
    an_admin_manages_users_roles_and_projects,
    other_roles_see_no_admin_link_and_are_refused,
);
