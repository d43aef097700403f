//! The administration page (admin scope only): the project's API keys
//! (created with their secret shown once, on the answer to the form and
//! never again; revoked), the users and their role in each project, and
//! the projects. Every form posts with the session's CSRF token; a refused
//! form shows the page again with the reasons beside its fields.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Serialize;
use uuid::Uuid;

use super::prompts::authorize;
use super::session::{Posted, Signed};
use super::{render, time, Me, UiError};
use crate::api::extract::Path;
use crate::api::AppState;
use crate::domain::auth::Scope;
use crate::domain::users::Role;
use crate::error::ApiError;
use crate::services::sessions::SignedIn;
use crate::services::{admin, users, ServiceError};

/// A posted form as its (name, value) pairs: checkboxes and one role
/// select per project repeat or vary the names.
type Fields = Vec<(String, String)>;

fn field<'a>(fields: &'a Fields, name: &str) -> &'a str {
    fields
        .iter()
        .find(|(n, _)| n == name)
        .map_or("", |(_, v)| v.as_str())
}

/// The role picked per project in selects named `role.PROJECT` ("" is none).
fn picked_roles(fields: &Fields) -> Result<BTreeMap<String, Role>, ServiceError> {
    let mut roles = BTreeMap::new();
    for (name, value) in fields {
        let Some(project) = name.strip_prefix("role.") else {
            continue;
        };
        if value.is_empty() {
            continue;
        }
        let role = Role::ALL
            .into_iter()
            .find(|r| r.as_str() == value)
            .ok_or_else(|| {
                ServiceError::validation(format!("roles.{project}"), format!("no role {value:?}"))
            })?;
        roles.insert(project.to_owned(), role);
    }
    Ok(roles)
}

#[derive(Serialize)]
struct KeyRow {
    id: String,
    name: String,
    scopes: String,
    prefix: String,
    created_at: String,
    revoked: bool,
}

#[derive(Serialize)]
struct UserRow {
    name: String,
    /// (project, role or "") for every project, for the role selects.
    roles: Vec<(String, String)>,
    /// "project: role" for the roles the user has.
    summary: Vec<String>,
}

#[derive(Serialize)]
struct ProjectRow {
    name: String,
    created_at: String,
}

/// A key just created: the one page that shows its secret.
#[derive(Serialize)]
struct NewKey {
    name: String,
    secret: String,
}

/// What the create forms were filled with, kept across a refusal.
#[derive(Serialize, Default)]
struct Typed {
    key_name: String,
    key_scopes: Vec<String>,
    user_name: String,
    /// (project, role) picked in the new user form.
    user_roles: BTreeMap<String, String>,
    project_name: String,
}

#[derive(Serialize)]
struct AdminPage<'a> {
    me: Me<'a>,
    section: &'static str,
    project: &'a str,
    keys: Vec<KeyRow>,
    users: Vec<UserRow>,
    projects: Vec<ProjectRow>,
    scopes: Vec<&'static str>,
    roles: Vec<&'static str>,
    new_key: Option<NewKey>,
    typed: Typed,
    errors: Errors,
}

/// (form, field) pairs the page shows a message beside.
const SHOWN_FIELDS: [(&str, &str); 5] = [
    ("key", "name"),
    ("key", "scopes"),
    ("user", "name"),
    ("user", "password"),
    ("project", "name"),
];

/// Why a form was refused, in words.
#[derive(Serialize, Default)]
struct Errors {
    /// `form.field` → message, shown beside that field (`key.name`).
    fields: BTreeMap<String, String>,
    /// form → messages naming no field shown, above the form (`key`,
    /// `user`, `users` for the role and delete forms, `project`).
    alerts: BTreeMap<String, Vec<String>>,
}

impl Errors {
    fn alert(&mut self, form: &str, message: String) {
        self.alerts
            .entry(form.to_owned())
            .or_default()
            .push(message);
    }
}

async fn admin_page(
    state: &AppState,
    session: &SignedIn,
    status: StatusCode,
    new_key: Option<NewKey>,
    typed: Typed,
    errors: Errors,
) -> Result<Response, UiError> {
    let overview = admin::overview(&state.registry, session.caller.project).await?;
    let project_names: Vec<String> = overview.projects.iter().map(|p| p.name.clone()).collect();
    let context = AdminPage {
        me: Me::of(session),
        section: "admin",
        project: session.caller.project_name(),
        keys: overview
            .keys
            .into_iter()
            .map(|k| KeyRow {
                id: k.id.to_string(),
                scopes: k
                    .scopes
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                prefix: k.prefix,
                created_at: time(k.created_at),
                revoked: k.revoked,
                name: k.name,
            })
            .collect(),
        users: overview
            .users
            .into_iter()
            .map(|u| UserRow {
                roles: project_names
                    .iter()
                    .map(|p| {
                        let role = u.roles.get(p).map_or("", |r| r.as_str());
                        (p.clone(), role.to_owned())
                    })
                    .collect(),
                summary: u
                    .roles
                    .iter()
                    .map(|(p, r)| format!("{p}: {}", r.as_str()))
                    .collect(),
                name: u.name,
            })
            .collect(),
        projects: overview
            .projects
            .into_iter()
            .map(|p| ProjectRow {
                name: p.name,
                created_at: time(p.created_at),
            })
            .collect(),
        scopes: Scope::ALL.iter().map(|s| s.as_str()).collect(),
        roles: Role::ALL.iter().map(|r| r.as_str()).collect(),
        new_key,
        typed,
        errors,
    };
    let mut response = render(status, "admin.html", context);
    // The answer that shows a secret must not be kept by any cache; the
    // others change with every write anyway.
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    Ok(response)
}

/// A refused write: the page again, the reasons beside the fields of `form`
/// (a 5xx is an error page instead).
async fn refused(
    state: &AppState,
    session: &SignedIn,
    form: &str,
    err: ServiceError,
    typed: Typed,
) -> Result<Response, UiError> {
    let api = ApiError::from(err);
    let status =
        StatusCode::from_u16(api.problem().status).unwrap_or(StatusCode::UNPROCESSABLE_ENTITY);
    if status.is_server_error() {
        return Err(api.into());
    }
    let problems = match &api {
        ApiError::Service(err) => err.field_errors(),
        _ => Vec::new(),
    };
    let mut errors = Errors::default();
    if problems.is_empty() {
        errors.alert(form, api.problem().detail);
    }
    for problem in problems {
        if SHOWN_FIELDS.contains(&(form, problem.field.as_str())) {
            errors
                .fields
                .entry(format!("{form}.{}", problem.field))
                .or_insert(problem.message);
        } else {
            errors.alert(form, format!("{}: {}", problem.field, problem.message));
        }
    }
    admin_page(state, session, status, None, typed, errors).await
}

/// `GET /ui/admin`.
pub async fn show_admin(
    State(state): State<AppState>,
    Signed(session): Signed,
) -> Result<Response, UiError> {
    authorize(&state, &session, Scope::Admin)?;
    admin_page(
        &state,
        &session,
        StatusCode::OK,
        None,
        Typed::default(),
        Errors::default(),
    )
    .await
}

/// `GET` of a form's address (a reload of its answer): the page, which
/// never shows a secret again.
pub async fn to_admin() -> Redirect {
    Redirect::to("/ui/admin")
}

fn back_to(anchor: &str) -> Response {
    Redirect::to(&format!("/ui/admin#{anchor}")).into_response()
}

/// `POST /ui/admin/keys`: answers with the page itself, the secret on it
/// (not a redirect: the secret must not travel in a URL or be shown twice).
pub async fn create_key(
    State(state): State<AppState>,
    posted: Posted<Fields>,
) -> Result<Response, UiError> {
    let session = &posted.session;
    authorize(&state, session, Scope::Admin)?;
    let fields = &posted.form;
    let name = field(fields, "name").trim().to_owned();
    let picked: Vec<String> = fields
        .iter()
        .filter(|(n, _)| n == "scope")
        .map(|(_, v)| v.clone())
        .collect();
    let typed = Typed {
        key_name: name.clone(),
        key_scopes: picked.clone(),
        ..Typed::default()
    };
    let scopes: Result<Vec<Scope>, ServiceError> = picked
        .iter()
        .map(|raw| {
            Scope::parse(raw)
                .ok_or_else(|| ServiceError::validation("scopes", format!("no scope {raw:?}")))
        })
        .collect();
    let created = match scopes {
        Ok(scopes) => {
            admin::create_key(
                &state.registry,
                &state.auth,
                session.caller.project,
                &session.caller.actor(),
                &name,
                scopes,
                None,
            )
            .await
        }
        Err(err) => Err(err),
    };
    match created {
        Ok((key, secret)) => {
            let new_key = NewKey {
                name: key.name,
                secret: secret.expose().to_owned(),
            };
            admin_page(
                &state,
                session,
                StatusCode::OK,
                Some(new_key),
                Typed::default(),
                Errors::default(),
            )
            .await
        }
        Err(err) => refused(&state, session, "key", err, typed).await,
    }
}

/// `POST /ui/admin/keys/{id}/revoke`.
pub async fn revoke_key(
    State(state): State<AppState>,
    Path(id): Path<String>,
    posted: Posted<Fields>,
) -> Result<Response, UiError> {
    let session = &posted.session;
    authorize(&state, session, Scope::Admin)?;
    let id = Uuid::parse_str(&id)
        .map_err(|_| ServiceError::Store(crate::store::StoreError::KeyNotFound))?;
    admin::revoke_key(
        &state.auth,
        session.caller.project,
        &session.caller.actor(),
        id,
    )
    .await?;
    Ok(back_to("keys"))
}

/// `POST /ui/admin/users`.
pub async fn create_user(
    State(state): State<AppState>,
    posted: Posted<Fields>,
) -> Result<Response, UiError> {
    let session = &posted.session;
    authorize(&state, session, Scope::Admin)?;
    let fields = &posted.form;
    let name = field(fields, "name").trim().to_owned();
    let typed = Typed {
        user_name: name.clone(),
        user_roles: fields
            .iter()
            .filter_map(|(n, v)| Some((n.strip_prefix("role.")?.to_owned(), v.clone())))
            .collect(),
        ..Typed::default()
    };
    let created = match picked_roles(fields) {
        Ok(roles) => {
            users::create_user(
                &state.registry,
                session.caller.project,
                &session.caller.actor(),
                &name,
                field(fields, "password"),
                roles,
            )
            .await
        }
        Err(err) => Err(err),
    };
    match created {
        Ok(_) => Ok(back_to("users")),
        Err(err) => refused(&state, session, "user", err, typed).await,
    }
}

/// `POST /ui/admin/users/{name}/roles`: replaces every role of the user.
pub async fn change_roles(
    State(state): State<AppState>,
    Path(name): Path<String>,
    posted: Posted<Fields>,
) -> Result<Response, UiError> {
    let session = &posted.session;
    authorize(&state, session, Scope::Admin)?;
    let changed = match picked_roles(&posted.form) {
        Ok(roles) => users::update_user(
            &state.registry,
            session.caller.project,
            &session.caller.actor(),
            &name,
            None,
            Some(roles),
        )
        .await
        .map(|_| ()),
        Err(err) => Err(err),
    };
    match changed {
        Ok(()) => Ok(back_to("users")),
        Err(err) => refused(&state, session, "users", err, Typed::default()).await,
    }
}

/// `POST /ui/admin/users/{name}/delete`.
pub async fn delete_user(
    State(state): State<AppState>,
    Path(name): Path<String>,
    posted: Posted<Fields>,
) -> Result<Response, UiError> {
    let session = &posted.session;
    authorize(&state, session, Scope::Admin)?;
    users::delete_user(
        &state.registry,
        session.caller.project,
        &session.caller.actor(),
        &name,
    )
    .await?;
    Ok(back_to("users"))
}

/// `POST /ui/admin/projects`.
pub async fn create_project(
    State(state): State<AppState>,
    posted: Posted<Fields>,
) -> Result<Response, UiError> {
    let session = &posted.session;
    authorize(&state, session, Scope::Admin)?;
    let name = field(&posted.form, "name").trim().to_owned();
    match admin::create_project(&state.registry, &session.caller.actor(), &name).await {
        Ok(_) => Ok(back_to("projects")),
        Err(err) => {
            let typed = Typed {
                project_name: name,
                ..Typed::default()
            };
            refused(&state, session, "project", err, typed).await
        }
    }
}
