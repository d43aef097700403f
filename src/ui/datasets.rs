//! Dataset pages: the list (archived ones on request) and a dataset (its
//! items paged, with input variables, expected output and metadata, and
//! the evaluations that ran on it). Read-only: uploads go through `/v1`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::evaluations::{evaluation_row, EvaluationRow};
use super::prompts::authorize;
use super::session::Signed;
use super::{page_request, render, time, with_query, Me, UiError};
use crate::api::extract::{Path, Query};
use crate::api::AppState;
use crate::domain::auth::Scope;
use crate::domain::DatasetItem;
use crate::services::datasets;

/// Datasets per list page.
const DATASETS_PER_PAGE: u32 = 50;
/// Items per dataset page.
const ITEMS_PER_PAGE: u32 = 20;
/// Evaluations a dataset page lists.
const EVALUATIONS_SHOWN: u32 = 20;

/// `/ui/datasets/{name}` with the name's folder slashes percent-encoded.
pub fn dataset_url(name: &str) -> String {
    format!("/ui/datasets/{}", name.replace('/', "%2F"))
}

#[derive(Deserialize, Serialize, Default)]
pub struct ListParams {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    archived: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    cursor: String,
}

#[derive(Serialize)]
struct ListPage<'a> {
    me: Me<'a>,
    section: &'static str,
    archived: bool,
    datasets: Vec<DatasetRow>,
    next: Option<String>,
}

#[derive(Serialize)]
struct DatasetRow {
    name: String,
    url: String,
    description: String,
    item_count: i64,
    archived: bool,
    updated_at: String,
}

pub async fn list_datasets(
    State(state): State<AppState>,
    Signed(session): Signed,
    Query(params): Query<ListParams>,
) -> Result<Response, UiError> {
    authorize(&state, &session, Scope::Read)?;
    let archived = matches!(params.archived.as_str(), "true" | "1" | "on");
    let page = datasets::list_datasets(
        &state.registry,
        session.caller.project,
        archived,
        page_request(DATASETS_PER_PAGE, &params.cursor)?,
    )
    .await?;
    let next = page.next_cursor.map(|cursor| {
        with_query(
            "/ui/datasets",
            &ListParams {
                archived: params.archived.clone(),
                cursor,
            },
        )
    });
    let datasets = page
        .items
        .into_iter()
        .map(|d| DatasetRow {
            url: dataset_url(&d.name),
            name: d.name,
            description: d.description,
            item_count: d.item_count,
            archived: d.archived,
            updated_at: time(d.updated_at),
        })
        .collect();
    let context = ListPage {
        me: Me::of(&session),
        section: "datasets",
        archived,
        datasets,
        next,
    };
    Ok(render(StatusCode::OK, "datasets.html", context))
}

#[derive(Deserialize, Serialize, Default)]
pub struct DatasetParams {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    cursor: String,
}

#[derive(Serialize)]
struct DatasetPage<'a> {
    me: Me<'a>,
    section: &'static str,
    name: String,
    description: String,
    item_count: i64,
    archived: bool,
    created_at: String,
    updated_at: String,
    items: Vec<ItemRow>,
    /// Not the first page of items.
    paged: bool,
    first: String,
    next: Option<String>,
    evaluations: Vec<EvaluationRow>,
    more_evaluations: Option<String>,
}

#[derive(Serialize)]
struct ItemRow {
    seq: i64,
    input: Vec<(String, String)>,
    expected: Option<String>,
    metadata: Option<String>,
}

/// A JSON value as a person reads it: strings without quotes, the rest as JSON.
pub(super) fn shown(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        other => serde_json::to_string_pretty(other).unwrap_or_default(),
    }
}

fn item_row(item: DatasetItem) -> ItemRow {
    ItemRow {
        seq: item.seq,
        input: item
            .input
            .iter()
            .map(|(name, value)| (name.clone(), shown(value)))
            .collect(),
        expected: item.expected.as_ref().map(shown),
        metadata: (!item.metadata.is_empty())
            .then(|| serde_json::to_string_pretty(&item.metadata).unwrap_or_default()),
    }
}

pub async fn show_dataset(
    State(state): State<AppState>,
    Signed(session): Signed,
    Path(name): Path<String>,
    Query(params): Query<DatasetParams>,
) -> Result<Response, UiError> {
    authorize(&state, &session, Scope::Read)?;
    let overview = datasets::overview(
        &state.registry,
        session.caller.project,
        &name,
        page_request(ITEMS_PER_PAGE, &params.cursor)?,
        EVALUATIONS_SHOWN,
    )
    .await?;
    let dataset = overview.dataset;
    let url = dataset_url(&dataset.name);
    let next = overview
        .items
        .next_cursor
        .map(|cursor| with_query(&url, &DatasetParams { cursor }));
    let more_evaluations = overview
        .evaluations
        .next_cursor
        .map(|_| with_query("/ui/evaluations", &[("dataset", dataset.name.as_str())]));
    let context = DatasetPage {
        me: Me::of(&session),
        section: "datasets",
        items: overview.items.items.into_iter().map(item_row).collect(),
        paged: !params.cursor.is_empty(),
        first: url,
        next,
        evaluations: overview
            .evaluations
            .items
            .into_iter()
            .map(evaluation_row)
            .collect(),
        more_evaluations,
        name: dataset.name,
        description: dataset.description,
        item_count: dataset.item_count,
        archived: dataset.archived,
        created_at: time(dataset.created_at),
        updated_at: time(dataset.updated_at),
    };
    Ok(render(StatusCode::OK, "dataset.html", context))
}
