//! The audit page (admin scope only, as `GET /v1/audit`): the project's
//! writes newest first, filtered by actor, action, prompt and time, each
//! with its before and after as a line diff of the pretty-printed JSON
//! (changed words marked, as on the prompt diff page).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use chrono::{DateTime, NaiveDateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::diff::{unified_lines, UnifiedLine};
use super::prompts::authorize;
use super::session::Signed;
use super::{page_request, prompt_url, render, time, with_query, Me, UiError};
use crate::api::extract::{Query, MAX_FILTER_LEN};
use crate::api::AppState;
use crate::domain::auth::Scope;
use crate::domain::content::diff_lines;
use crate::domain::names::PromptName;
use crate::domain::{AuditEntry, AuditFilter};
use crate::error::ApiError;
use crate::services::admin;

const ENTRIES_PER_PAGE: u32 = 20;

#[derive(Deserialize, Serialize, Default, Clone)]
pub struct AuditParams {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    actor: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    action: String,
    /// A prompt or a folder of prompts.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    prompt: String,
    /// UTC, as a `datetime-local` field sends it (`2026-01-31T09:30`) or RFC 3339.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    from: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    to: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    cursor: String,
}

#[derive(Serialize)]
struct EntryView {
    at: String,
    actor: String,
    action: String,
    target: String,
    /// The prompt page, when the target is a prompt or lies below one.
    link: Option<String>,
    had_before: bool,
    has_after: bool,
    lines: Vec<UnifiedLine>,
}

#[derive(Serialize)]
struct AuditPage<'a> {
    me: Me<'a>,
    section: &'static str,
    filters: &'a AuditParams,
    entries: Vec<EntryView>,
    next: Option<String>,
    filtered: bool,
}

/// A time typed in a filter, read as UTC.
fn parse_time(field: &str, raw: &str) -> Result<Option<DateTime<Utc>>, ApiError> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Ok(None);
    }
    if let Ok(at) = DateTime::parse_from_rfc3339(raw) {
        return Ok(Some(at.with_timezone(&Utc)));
    }
    [
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%dT%H:%M:%S%.f",
    ]
    .iter()
    .find_map(|format| NaiveDateTime::parse_from_str(raw, format).ok())
    .map(|at| Some(at.and_utc()))
    .ok_or_else(|| ApiError::validation(field, "a date and time such as 2026-01-31T09:30"))
}

fn text_filter(field: &str, raw: &str) -> Result<Option<String>, ApiError> {
    let raw = raw.trim();
    if raw.chars().count() > MAX_FILTER_LEN {
        return Err(ApiError::validation(
            field,
            format!("at most {MAX_FILTER_LEN} characters"),
        ));
    }
    Ok(Some(raw.to_owned()).filter(|t| !t.is_empty()))
}

fn filter_of(params: &AuditParams) -> Result<AuditFilter, ApiError> {
    let prompt = match params.prompt.trim().trim_end_matches('/') {
        "" => None,
        raw => {
            let name = PromptName::parse(raw).map_err(|e| ApiError::invalid_name("prompt", e))?;
            Some(format!("prompts/{}", name.as_str()))
        }
    };
    Ok(AuditFilter {
        actor: text_filter("actor", &params.actor)?,
        action: text_filter("action", &params.action)?,
        target: prompt,
        from: parse_time("from", &params.from)?,
        to: parse_time("to", &params.to)?,
    })
}

/// A value as diffable lines: pretty JSON, nothing for none.
fn json_text(value: Option<&Value>) -> String {
    match value {
        None => String::new(),
        Some(value) => {
            let mut text = serde_json::to_string_pretty(value).unwrap_or_default();
            text.push('\n');
            text
        }
    }
}

/// The prompt a target names (`prompts/NAME…/labels/x`), for a link.
fn prompt_of(target: &str) -> Option<String> {
    let rest = target.strip_prefix("prompts/")?;
    let name = ["/labels/", "/gates/", "/monitors/", "/versions/"]
        .iter()
        .filter_map(|marker| rest.find(marker))
        .min()
        .map_or(rest, |end| &rest[..end]);
    Some(prompt_url(name))
}

fn entry_view(entry: AuditEntry) -> EntryView {
    let blocks = diff_lines(
        &json_text(entry.before.as_ref()),
        &json_text(entry.after.as_ref()),
    );
    EntryView {
        at: time(entry.at),
        link: prompt_of(&entry.target),
        had_before: entry.before.is_some(),
        has_after: entry.after.is_some(),
        lines: unified_lines(&blocks),
        actor: entry.key_name,
        action: entry.action,
        target: entry.target,
    }
}

/// `GET /ui/audit`.
pub async fn list_audit(
    State(state): State<AppState>,
    Signed(session): Signed,
    Query(params): Query<AuditParams>,
) -> Result<Response, UiError> {
    authorize(&state, &session, Scope::Admin)?;
    let filter = filter_of(&params)?;
    let page = admin::list_audit(
        &state.registry,
        session.caller.project,
        &filter,
        page_request(ENTRIES_PER_PAGE, &params.cursor)?,
    )
    .await?;
    let next = page.next_cursor.map(|cursor| {
        with_query(
            "/ui/audit",
            &AuditParams {
                cursor,
                ..params.clone()
            },
        )
    });
    let context = AuditPage {
        me: Me::of(&session),
        section: "audit",
        filtered: filter != AuditFilter::default(),
        filters: &params,
        entries: page.items.into_iter().map(entry_view).collect(),
        next,
    };
    Ok(render(StatusCode::OK, "audit.html", context))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_target_links_to_the_prompt_it_lies_below() {
        for (target, link) in [
            ("prompts/greet", Some("/ui/prompts/greet")),
            (
                "prompts/support/greeting/labels/production",
                Some("/ui/prompts/support%2Fgreeting"),
            ),
            ("prompts/a/gates/staging", Some("/ui/prompts/a")),
            ("keys/0190", None),
        ] {
            assert_eq!(prompt_of(target).as_deref(), link, "{target}");
        }
    }

    #[test]
    fn filter_times_are_read_as_utc() {
        let at = parse_time("from", "2026-01-31T09:30")
            .expect("parses")
            .expect("a time");
        assert_eq!(at.to_rfc3339(), "2026-01-31T09:30:00+00:00");
        let at = parse_time("to", "2026-01-31T10:30:00+01:00")
            .expect("parses")
            .expect("a time");
        assert_eq!(at.to_rfc3339(), "2026-01-31T09:30:00+00:00");
        assert_eq!(parse_time("from", " ").expect("empty is none"), None);
        assert!(parse_time("from", "yesterday").is_err());
    }
}
