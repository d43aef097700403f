//! A prompt's description and tags, edited from its page by people with
//! `write`, through the same store use-case and the same checks as
//! `PATCH /v1/prompts/{name}` (audited as the signed-in person). A refusal
//! shows the prompt page again with the reason beside the form.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::prompts::{authorize, overview, prompt_page};
use super::session::Posted;
use super::{prompt_url, render, UiError};
use crate::api::extract::{prompt_name, Path};
use crate::api::prompts::{description, tags};
use crate::api::AppState;
use crate::domain::auth::Scope;
use crate::error::ApiError;
use crate::store::PromptPatch;

#[derive(Deserialize)]
pub struct AboutForm {
    #[serde(default)]
    description: String,
    /// Separated by commas or white space.
    #[serde(default)]
    tags: String,
}

/// The form as the API's patch, checked by the API's own rules.
fn patch_of(form: AboutForm) -> Result<PromptPatch, ApiError> {
    let split: Vec<String> = form
        .tags
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
        .collect();
    Ok(PromptPatch {
        description: description(Some(form.description.trim().to_owned()))?,
        tags: tags("tags", Some(split))?,
        archived: None,
    })
}

pub async fn edit_about(
    State(state): State<AppState>,
    Path(name): Path<String>,
    posted: Posted<AboutForm>,
) -> Result<Response, UiError> {
    let session = &posted.session;
    authorize(&state, session, Scope::Write)?;
    let name = prompt_name(&name)?;
    let updated = match patch_of(posted.form) {
        Ok(patch) => state
            .registry
            .update_prompt(
                session.caller.project,
                &name,
                patch,
                &session.caller.actor(),
            )
            .await
            .map(|_| ())
            .map_err(ApiError::from),
        Err(err) => Err(err),
    };
    let err = match updated {
        Ok(()) => return Ok(Redirect::to(&prompt_url(name.as_str())).into_response()),
        Err(err) if err.problem().status >= 500 || err.problem().status == 404 => {
            return Err(err.into())
        }
        Err(err) => err,
    };
    let overview = overview(&state, session, &name).await?;
    let mut page = prompt_page(session, overview, None);
    page.about_error = Some(err.problem().detail);
    Ok(render(
        StatusCode::UNPROCESSABLE_ENTITY,
        "prompt.html",
        page,
    ))
}
