//! The diff page: two versions (or labels) of a prompt compared, changed
//! fields first, then the template or messages side by side or unified,
//! with the changed words marked. The comparison itself is computed by the
//! service; this file only lays its lines out for the two views, which the
//! editor's conflict view shares.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::session::Signed;
use super::{prompt_url, render, Me, UiError};
use crate::api::extract::{prompt_name, version_ref, Path, Query};
use crate::api::AppState;
use crate::domain::auth::Scope;
use crate::domain::content::{DiffBlock, DiffLine};
use crate::services::drafts::{self, Changes};

#[derive(Deserialize, Default)]
pub struct DiffParams {
    #[serde(default)]
    from: String,
    #[serde(default)]
    to: String,
    #[serde(default)]
    view: String,
}

/// Which layout the lines take.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Layout {
    Split,
    Unified,
}

impl Layout {
    fn parse(raw: &str) -> Self {
        match raw {
            "unified" => Self::Unified,
            _ => Self::Split,
        }
    }
}

/// A comparison as the templates show it.
#[derive(Serialize)]
pub(super) struct DiffView {
    from: String,
    to: String,
    unified: bool,
    fields: Vec<FieldView>,
    /// Side by side: one row per pair of lines.
    split: Vec<SplitRow>,
    /// Unified: removed lines before added ones in each changed run.
    lines: Vec<UnifiedLine>,
    same_text: bool,
}

#[derive(Serialize)]
struct FieldView {
    field: String,
    from: String,
    to: String,
}

#[derive(Serialize)]
struct SplitRow {
    changed: bool,
    old: Option<DiffLine>,
    new: Option<DiffLine>,
}

#[derive(Serialize)]
pub(super) struct UnifiedLine {
    /// `same`, `del` or `ins`.
    kind: &'static str,
    old_number: Option<usize>,
    new_number: Option<usize>,
    line: DiffLine,
}

fn shown(value: &Value) -> String {
    match value {
        Value::Null => "(none)".to_owned(),
        Value::String(s) => s.clone(),
        other => serde_json::to_string_pretty(other).unwrap_or_default(),
    }
}

/// Where a field of the canonical content sits in the editor's words.
fn field_title(field: &str) -> String {
    match field {
        "type" => "Type",
        "engine" => "Engine",
        "model_config" => "Model configuration",
        "input_schema" => "Input schema",
        "output_schema" => "Output schema",
        "template" => "Template",
        "messages" => "Messages",
        other => other,
    }
    .to_owned()
}

pub(super) fn diff_view(changes: &Changes, from: String, to: String, layout: Layout) -> DiffView {
    // The template and messages are shown line by line below, not as a field.
    let fields = changes
        .fields
        .iter()
        .filter(|c| c.field != "template" && c.field != "messages")
        .map(|c| FieldView {
            field: field_title(&c.field),
            from: shown(&c.from),
            to: shown(&c.to),
        })
        .collect();
    let same_text = changes.blocks.iter().all(|b| !b.changed);
    DiffView {
        from,
        to,
        unified: layout == Layout::Unified,
        fields,
        split: split_rows(&changes.blocks),
        lines: unified_lines(&changes.blocks),
        same_text,
    }
}

fn split_rows(blocks: &[DiffBlock]) -> Vec<SplitRow> {
    let mut rows = Vec::new();
    for block in blocks {
        let mut old = block.old.iter().cloned();
        let mut new = block.new.iter().cloned();
        loop {
            let (o, n) = (old.next(), new.next());
            if o.is_none() && n.is_none() {
                break;
            }
            rows.push(SplitRow {
                changed: block.changed,
                old: o,
                new: n,
            });
        }
    }
    rows
}

pub(super) fn unified_lines(blocks: &[DiffBlock]) -> Vec<UnifiedLine> {
    let mut lines = Vec::new();
    for block in blocks {
        if !block.changed {
            for (old, new) in block.old.iter().zip(&block.new) {
                lines.push(UnifiedLine {
                    kind: "same",
                    old_number: Some(old.number),
                    new_number: Some(new.number),
                    line: new.clone(),
                });
            }
            continue;
        }
        lines.extend(block.old.iter().map(|old| UnifiedLine {
            kind: "del",
            old_number: Some(old.number),
            new_number: None,
            line: old.clone(),
        }));
        lines.extend(block.new.iter().map(|new| UnifiedLine {
            kind: "ins",
            old_number: None,
            new_number: Some(new.number),
            line: new.clone(),
        }));
    }
    lines
}

#[derive(Serialize)]
struct DiffPage<'a> {
    me: Me<'a>,
    section: &'static str,
    name: String,
    url: String,
    from: String,
    to: String,
    /// Versions and labels to pick from: (value, text).
    choices: Vec<(String, String)>,
    split_url: String,
    unified_url: String,
    diff: DiffView,
}

pub async fn show_diff(
    State(state): State<AppState>,
    Signed(session): Signed,
    Path(name): Path<String>,
    Query(params): Query<DiffParams>,
) -> Result<Response, UiError> {
    state.auth.authorize(&session.caller, Scope::Read)?;
    let name = prompt_name(&name)?;
    let reference = |field: &str, raw: &str| match raw.trim() {
        "" => Ok(None),
        raw => version_ref(field, raw).map(Some),
    };
    let from = reference("from", &params.from)?;
    let to = reference("to", &params.to)?;
    let comparison =
        drafts::compare(&state.registry, session.caller.project, &name, from, to).await?;
    let (from, to) = (
        comparison.from.version.to_string(),
        comparison.to.version.to_string(),
    );
    let layout = Layout::parse(&params.view);
    let url = prompt_url(name.as_str());
    let view_url = |view: &str| {
        let query = serde_urlencoded::to_string([
            ("from", from.as_str()),
            ("to", to.as_str()),
            ("view", view),
        ])
        .unwrap_or_default();
        format!("{url}/diff?{query}")
    };
    let mut choices: Vec<(String, String)> = comparison
        .labels
        .iter()
        .map(|l| (l.name.clone(), format!("{} ({})", l.name, l.version)))
        .collect();
    choices.extend(comparison.versions.iter().map(|v| {
        let version = v.version.to_string();
        let text = match &v.message {
            Some(m) => format!("{version}: {m}"),
            None => version.clone(),
        };
        (version, text)
    }));
    let page = DiffPage {
        me: Me::of(&session),
        section: "prompts",
        split_url: view_url("split"),
        unified_url: view_url("unified"),
        diff: diff_view(
            &comparison.changes,
            format!("{name} {from}"),
            format!("{name} {to}"),
            layout,
        ),
        name: name.to_string(),
        url,
        from,
        to,
        choices,
    };
    Ok(render(StatusCode::OK, "diff.html", page))
}
