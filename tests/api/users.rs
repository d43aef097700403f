//! Users (`/v1/users`) and the web UI's sessions at the HTTP level: sign-in
//! with a password or a key, the cookie's attributes, CSRF and `Origin`
//! checks on every POST, the failed sign-in limit, sign-out, and `GET /`.

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::json;
use tower::ServiceExt;

use crate::support::{TestApp, ADMIN_KEY};

mod editing;

const HOST: &str = "registry.test";
const ORIGIN: &str = "http://registry.test";
const PASSWORD: &str = "correct horse battery";

/// An answer of the UI: status, headers and the body as text.
struct Page {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: String,
}

impl Page {
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }

    /// The session cookie's value from `Set-Cookie`.
    fn session(&self) -> String {
        let cookie = self.header("set-cookie");
        cookie
            .split(';')
            .next()
            .and_then(|pair| pair.strip_prefix("promptreg_session="))
            .unwrap_or_else(|| panic!("no session cookie in {cookie:?}"))
            .to_owned()
    }

    /// The CSRF token of the first form on the page.
    fn csrf(&self) -> String {
        let marker = "name=\"csrf_token\" value=\"";
        let start = self.body.find(marker).expect("a csrf_token field") + marker.len();
        self.body[start..]
            .split('"')
            .next()
            .expect("token")
            .to_owned()
    }
}

async fn browse(
    app: &TestApp,
    method: Method,
    path: &str,
    cookie: Option<&str>,
    origin: Option<&str>,
    form: &str,
) -> Page {
    let mut request = Request::builder()
        .method(method)
        .uri(path)
        .header(header::HOST, HOST)
        .header(header::ACCEPT, "text/html");
    if let Some(cookie) = cookie {
        request = request.header(header::COOKIE, format!("promptreg_session={cookie}"));
    }
    if let Some(origin) = origin {
        request = request.header(header::ORIGIN, origin);
    }
    let request = request
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(form.to_owned()))
        .expect("request");
    let response = app
        .router
        .clone()
        .oneshot(request)
        .await
        .expect("infallible");
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    Page {
        status,
        headers,
        body: String::from_utf8_lossy(&bytes).into_owned(),
    }
}

async fn get(app: &TestApp, path: &str, cookie: &str) -> Page {
    browse(app, Method::GET, path, Some(cookie), None, "").await
}

async fn post(app: &TestApp, path: &str, cookie: &str, form: &str) -> Page {
    browse(app, Method::POST, path, Some(cookie), Some(ORIGIN), form).await
}

fn form(pairs: &[(&str, &str)]) -> String {
    serde_urlencoded::to_string(pairs).expect("form")
}

async fn create_user(app: &TestApp, name: &str, role: &str) {
    let response = app
        .post(
            "/v1/users",
            json!({"name": name, "password": PASSWORD, "roles": {"default": role}}),
        )
        .await;
    assert_eq!(response.status, StatusCode::CREATED, "{}", response.body);
}

/// Signs `name` in with the password; answers the session cookie.
async fn sign_in(app: &TestApp, name: &str) -> String {
    let page = browse(
        app,
        Method::POST,
        "/ui/signin",
        None,
        Some(ORIGIN),
        &form(&[("name", name), ("password", PASSWORD)]),
    )
    .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
    assert_eq!(page.header("location"), "/ui/prompts");
    page.session()
}

/// Posts the sign-in-with-a-key form; answers the page (the session cookie on success).
async fn sign_in_with_key(app: &TestApp, key: &str) -> Page {
    browse(
        app,
        Method::POST,
        "/ui/signin/key",
        None,
        Some(ORIGIN),
        &form(&[("key", key)]),
    )
    .await
}

async fn users_are_created_listed_changed_and_deleted(app: TestApp) {
    let created = app
        .post(
            "/v1/users",
            json!({"name": "ada", "password": PASSWORD, "roles": {"default": "editor"}}),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    assert_eq!(created.header("location"), Some("/v1/users/ada"));
    assert_eq!(created.body["roles"], json!({"default": "editor"}));
    assert!(created.body.get("password").is_none() && created.body.get("password_hash").is_none());

    let list = app.get("/v1/users").await;
    let names: Vec<&str> = list.body["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|u| u["name"].as_str())
        .collect();
    assert_eq!(names, ["ada", "admin"], "the first admin user exists too");

    let changed = app
        .patch("/v1/users/ada", json!({"roles": {"default": "releaser"}}))
        .await;
    assert_eq!(changed.status, StatusCode::OK, "{}", changed.body);
    assert_eq!(
        app.get("/v1/users/ada").await.body["roles"]["default"],
        "releaser"
    );

    app.post("/v1/users", json!({"name": "ada", "password": PASSWORD}))
        .await
        .assert_problem(409, "user_exists");

    let deleted = app.delete("/v1/users/ada").await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    app.get("/v1/users/ada")
        .await
        .assert_problem(404, "user_not_found");
    app.delete("/v1/users/ada")
        .await
        .assert_problem(404, "user_not_found");

    let audit = app.get("/v1/audit").await;
    let actions: Vec<&str> = audit.body["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter(|e| e["target"] == "users/ada")
        .filter_map(|e| e["action"].as_str())
        .collect();
    assert_eq!(actions, ["user.delete", "user.update", "user.create"]);
}

async fn bad_users_are_refused_naming_the_field(app: TestApp) {
    let cases = [
        (
            json!({"name": "Ada", "password": PASSWORD}),
            422,
            "invalid_name",
            "name",
        ),
        (
            json!({"name": "ada", "password": "short"}),
            422,
            "validation_failed",
            "password",
        ),
        (
            json!({"name": "ada", "password": PASSWORD, "roles": {"nowhere": "viewer"}}),
            422,
            "validation_failed",
            "roles.nowhere",
        ),
        (
            json!({"name": "ada", "password": PASSWORD, "roles": {"default": "root"}}),
            422,
            "validation_failed",
            "roles.default",
        ),
    ];
    for (body, status, code, field) in cases {
        let response = app.post("/v1/users", body.clone()).await;
        response.assert_problem(status, code);
        assert!(
            response.error_fields().iter().any(|f| f.starts_with(field)),
            "{body}: {}",
            response.body
        );
    }
    app.patch("/v1/users/nobody", json!({"roles": {}}))
        .await
        .assert_problem(404, "user_not_found");
}

async fn users_need_the_admin_scope(app: TestApp) {
    let (_, reader) = app
        .create_key(json!({"name": "r", "scopes": ["read", "write", "promote"]}))
        .await;
    for (method, path, body) in [
        (Method::GET, "/v1/users", None),
        (
            Method::POST,
            "/v1/users",
            Some(json!({"name": "x", "password": PASSWORD})),
        ),
        (Method::GET, "/v1/users/admin", None),
        (Method::DELETE, "/v1/users/admin", None),
    ] {
        app.request_as(Some(&reader), method, path, body)
            .await
            .assert_problem(403, "insufficient_scope");
    }
}

async fn a_signed_in_user_browses_with_a_strict_cookie_and_policy(app: TestApp) {
    create_user(&app, "vera", "viewer").await;
    let page = browse(
        &app,
        Method::POST,
        "/ui/signin",
        None,
        Some(ORIGIN),
        &form(&[("name", "vera"), ("password", PASSWORD)]),
    )
    .await;
    let cookie = page.header("set-cookie").to_owned();
    for attribute in [
        "HttpOnly",
        "SameSite=Strict",
        "Path=/",
        "Secure",
        "Max-Age=43200",
    ] {
        assert!(cookie.contains(attribute), "{attribute} in {cookie}");
    }
    let session = page.session();
    let prompts = get(&app, "/ui/prompts", &session).await;
    assert_eq!(prompts.status, StatusCode::OK, "{}", prompts.body);
    assert!(prompts.body.contains("Signed in as <strong>vera</strong>"));
    assert_eq!(
        prompts.header("content-security-policy"),
        "default-src 'self'; frame-ancestors 'none'"
    );
    assert!(!prompts.body.contains("<script"), "no script at all");

    let anonymous = browse(&app, Method::GET, "/ui/prompts", None, None, "").await;
    assert_eq!(anonymous.status, StatusCode::SEE_OTHER);
    assert_eq!(anonymous.header("location"), "/ui/signin");
}

async fn every_post_needs_the_origin_and_the_csrf_token(app: TestApp) {
    create_user(&app, "rita", "releaser").await;
    app.seed_prompt("greet").await;
    app.seed_version("greet", "Hello").await;
    app.seed_version("greet", "Hi").await;
    let session = sign_in(&app, "rita").await;
    let csrf = get(&app, "/ui/prompts/greet", &session).await.csrf();
    let promote = "/ui/prompts/greet/labels";
    let good = form(&[
        ("csrf_token", &csrf),
        ("label", "production"),
        ("version", "1.0.0"),
    ]);
    let forged = [
        (
            form(&[("label", "production"), ("version", "1.0.0")]),
            Some(ORIGIN),
            "no token",
        ),
        (
            form(&[
                ("csrf_token", "wrong"),
                ("label", "production"),
                ("version", "1.0.0"),
            ]),
            Some(ORIGIN),
            "a wrong token",
        ),
        (good.clone(), Some("http://evil.test"), "another origin"),
        (good.clone(), Some("null"), "an opaque origin"),
        (good.clone(), None, "no origin"),
    ];
    for (body, origin, why) in forged {
        let page = browse(&app, Method::POST, promote, Some(&session), origin, &body).await;
        assert_eq!(page.status, StatusCode::FORBIDDEN, "{why}");
    }
    app.get("/v1/prompts/greet/labels/production/history")
        .await
        .assert_problem(404, "label_not_found");

    let moved = post(&app, promote, &session, &good).await;
    assert_eq!(moved.status, StatusCode::SEE_OTHER, "{}", moved.body);
    let label = app.get("/v1/prompts/greet/versions/production").await;
    assert_eq!(label.body["version"], "1.0.0");
    let audit = app.get("/v1/audit").await;
    let entry = audit.body["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|e| e["action"] == "label.set")
        .cloned()
        .expect("a label.set entry");
    assert_eq!(entry["key_name"], "user:rita");
    assert_eq!(entry["key_id"], serde_json::Value::Null);
}

async fn a_viewer_cannot_promote_even_with_a_valid_token(app: TestApp) {
    create_user(&app, "vera", "viewer").await;
    app.seed_prompt("greet").await;
    app.seed_version("greet", "Hello").await;
    let session = sign_in(&app, "vera").await;
    let page = get(&app, "/ui/prompts/greet", &session).await;
    assert!(!page.body.contains(">Promote<") && !page.body.contains("Set label"));
    let body = form(&[
        ("csrf_token", &page.csrf()),
        ("label", "production"),
        ("version", "1.0.0"),
    ]);
    let refused = post(&app, "/ui/prompts/greet/labels", &session, &body).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.body);
    assert!(refused.body.contains("promote"), "{}", refused.body);
}

async fn signing_out_ends_the_session(app: TestApp) {
    let session = {
        let page = sign_in_with_key(&app, ADMIN_KEY).await;
        assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
        page.session()
    };
    let csrf = get(&app, "/ui/prompts", &session).await.csrf();
    let out = post(
        &app,
        "/ui/signout",
        &session,
        &form(&[("csrf_token", &csrf)]),
    )
    .await;
    assert_eq!(out.status, StatusCode::SEE_OTHER);
    assert!(out.header("set-cookie").contains("Max-Age=0"));
    let after = get(&app, "/ui/prompts", &session).await;
    assert_eq!(
        after.status,
        StatusCode::SEE_OTHER,
        "the old cookie is refused"
    );
    assert_eq!(after.header("location"), "/ui/signin");
}

async fn deleting_a_user_or_revoking_a_key_ends_their_sessions(app: TestApp) {
    create_user(&app, "ada", "editor").await;
    let user_session = sign_in(&app, "ada").await;
    let (id, key) = app
        .create_key(json!({"name": "k", "scopes": ["read"]}))
        .await;
    let key_page = sign_in_with_key(&app, &key).await;
    let key_session = key_page.session();
    for session in [&user_session, &key_session] {
        assert_eq!(
            get(&app, "/ui/prompts", session).await.status,
            StatusCode::OK
        );
    }
    assert_eq!(
        app.delete("/v1/users/ada").await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        app.delete(&format!("/v1/keys/{id}")).await.status,
        StatusCode::NO_CONTENT
    );
    for session in [&user_session, &key_session] {
        assert_eq!(
            get(&app, "/ui/prompts", session).await.status,
            StatusCode::SEE_OTHER
        );
    }
}

async fn ten_failed_sign_ins_lock_the_name_out(app: TestApp) {
    create_user(&app, "ada", "viewer").await;
    let attempt = |password: &'static str| {
        let app = app.clone();
        async move {
            browse(
                &app,
                Method::POST,
                "/ui/signin",
                None,
                Some(ORIGIN),
                &form(&[("name", "ada"), ("password", password)]),
            )
            .await
        }
    };
    for _ in 0..10 {
        let page = attempt("wrong password!").await;
        assert_eq!(page.status, StatusCode::UNAUTHORIZED);
        assert!(page.body.contains("The name or the password is wrong."));
    }
    let locked = attempt(PASSWORD).await;
    assert_eq!(
        locked.status,
        StatusCode::TOO_MANY_REQUESTS,
        "even the right password"
    );
    assert!(
        locked.body.contains("Too many failed sign-ins"),
        "{}",
        locked.body
    );
}

async fn the_root_sends_browsers_to_the_ui_and_clients_links(app: TestApp) {
    let browser = browse(&app, Method::GET, "/", None, None, "").await;
    assert_eq!(browser.status, StatusCode::SEE_OTHER);
    assert_eq!(browser.header("location"), "/ui/");
    let client = app.get("/").await;
    assert_eq!(client.status, StatusCode::OK);
    assert_eq!(client.body["links"]["ui"], "/ui/");
    assert_eq!(client.body["links"]["openapi"], "/openapi.json");
}

async fn a_template_with_a_script_is_shown_as_text(app: TestApp) {
    app.seed_prompt("xss").await;
    app.seed_version("xss", "<script>alert(1)</script>").await;
    let session = {
        let page = sign_in_with_key(&app, ADMIN_KEY).await;
        page.session()
    };
    let page = get(&app, "/ui/prompts/xss/versions/1.0.0", &session).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(
        page.body
            .contains("&lt;script&gt;alert(1)&lt;&#x2f;script&gt;")
            || page.body.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{}",
        page.body
    );
    assert!(!page.body.contains("<script>"));
}

crate::backend_tests!(
    users_are_created_listed_changed_and_deleted,
    bad_users_are_refused_naming_the_field,
    users_need_the_admin_scope,
    a_signed_in_user_browses_with_a_strict_cookie_and_policy,
    every_post_needs_the_origin_and_the_csrf_token,
    a_viewer_cannot_promote_even_with_a_valid_token,
    signing_out_ends_the_session,
    deleting_a_user_or_revoking_a_key_ends_their_sessions,
    ten_failed_sign_ins_lock_the_name_out,
    the_root_sends_browsers_to_the_ui_and_clients_links,
    a_template_with_a_script_is_shown_as_text,
);
