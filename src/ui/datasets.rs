//! Dataset pages: the list (archived ones on request) with a form that
//! creates one, and a dataset (its items paged, with input variables,
//! expected output and metadata, and the evaluations that ran on it) with
//! an upload form: JSON, JSON Lines or CSV pasted (or read from a file by
//! our script), previewed with every bad row's error before anything is
//! written, then appended all or nothing through the same service as
//! `POST /v1/datasets/{name}/items`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::editor::Problems;
use super::evaluations::{evaluation_row, EvaluationRow};
use super::prompts::authorize;
use super::session::{Posted, Signed};
use super::{page_request, render, time, with_query, Me, UiError};
use crate::api::extract::{dataset_name, Path, Query};
use crate::api::AppState;
use crate::domain::auth::Scope;
use crate::domain::{DatasetItem, NewItem};
use crate::error::ApiError;
use crate::services::datasets::{self, UploadFormat, UploadPreview};
use crate::services::{FieldError, ServiceError};
use crate::store::StoreError;

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
    /// Items the upload just before added (the page says so).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    added: String,
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
    /// What the last upload added.
    added: Option<u64>,
    upload: UploadForm,
    formats: [(&'static str, &'static str); 3],
    upload_url: String,
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
    let next = overview.items.next_cursor.map(|cursor| {
        with_query(
            &url,
            &DatasetParams {
                cursor,
                added: String::new(),
            },
        )
    });
    let more_evaluations = overview
        .evaluations
        .next_cursor
        .map(|_| with_query("/ui/evaluations", &[("dataset", dataset.name.as_str())]));
    let context = DatasetPage {
        me: Me::of(&session),
        section: "datasets",
        items: overview.items.items.into_iter().map(item_row).collect(),
        paged: !params.cursor.is_empty(),
        upload_url: format!("{url}/items"),
        first: url,
        next,
        evaluations: overview
            .evaluations
            .items
            .into_iter()
            .map(evaluation_row)
            .collect(),
        more_evaluations,
        added: params.added.parse().ok(),
        upload: UploadForm::default(),
        formats: FORMATS,
        name: dataset.name,
        description: dataset.description,
        item_count: dataset.item_count,
        archived: dataset.archived,
        created_at: time(dataset.created_at),
        updated_at: time(dataset.updated_at),
    };
    Ok(render(StatusCode::OK, "dataset.html", context))
}

/// Upload formats as the form offers them: (value, words).
const FORMATS: [(&str, &str); 3] = [
    ("jsonl", "JSON Lines: one item per line"),
    ("json", "JSON: an array of items"),
    ("csv", "CSV: a header row, then one item per row"),
];

/// Rows a preview shows.
const PREVIEW_ROWS: usize = 10;

#[derive(Deserialize, Serialize, Default)]
pub struct UploadForm {
    #[serde(default)]
    format: String,
    #[serde(default)]
    content: String,
    /// `preview` or `upload`: which button was pressed.
    #[serde(default)]
    action: String,
}

impl UploadForm {
    fn format(&self) -> Result<UploadFormat, FieldError> {
        match self.format.as_str() {
            "jsonl" => Ok(UploadFormat::JsonLines),
            "json" => Ok(UploadFormat::JsonArray),
            "csv" => Ok(UploadFormat::Csv),
            _ => Err(FieldError::new("format", "choose JSON Lines, JSON or CSV")),
        }
    }
}

#[derive(Serialize)]
struct PreviewRow {
    number: usize,
    input: Vec<(String, String)>,
    expected: Option<String>,
    metadata: Option<String>,
}

/// A bad row in words: which row, which line, what is wrong.
#[derive(Serialize)]
struct RowError {
    row: u64,
    line: Option<u64>,
    message: String,
}

#[derive(Serialize)]
struct PreviewView {
    rows: Vec<PreviewRow>,
    valid: u64,
    errors: Vec<RowError>,
    more_errors: u64,
}

fn preview_view(preview: UploadPreview) -> PreviewView {
    PreviewView {
        rows: preview
            .first
            .into_iter()
            .enumerate()
            .map(|(i, item): (usize, NewItem)| PreviewRow {
                number: i + 1,
                input: item
                    .input
                    .iter()
                    .map(|(name, value)| (name.clone(), shown(value)))
                    .collect(),
                expected: item.expected.as_ref().map(shown),
                metadata: (!item.metadata.is_empty())
                    .then(|| serde_json::to_string_pretty(&item.metadata).unwrap_or_default()),
            })
            .collect(),
        valid: preview.valid,
        errors: preview
            .errors
            .into_iter()
            .map(|e| RowError {
                row: e.item,
                line: e.line,
                message: e.message,
            })
            .collect(),
        more_errors: preview.more_errors,
    }
}

#[derive(Serialize)]
struct UploadPage<'a> {
    me: Me<'a>,
    section: &'static str,
    name: String,
    url: String,
    upload_url: String,
    upload: UploadForm,
    formats: [(&'static str, &'static str); 3],
    preview: Option<PreviewView>,
    /// Why nothing was written, when Upload was pressed.
    refusal: Option<String>,
    problems: Problems,
}

/// `POST /ui/datasets/{name}/items`: Preview parses the pasted upload and
/// shows its first rows and every bad row, writing nothing; Upload appends
/// it all or nothing and goes back to the dataset, or shows the same
/// preview with why nothing was written.
pub async fn upload_items(
    State(state): State<AppState>,
    Path(name): Path<String>,
    posted: Posted<UploadForm>,
) -> Result<Response, UiError> {
    let session = &posted.session;
    authorize(&state, session, Scope::Write)?;
    let form = posted.form;
    let url = dataset_url(&name);
    let mut page = UploadPage {
        me: Me::of(session),
        section: "datasets",
        upload_url: format!("{url}/items"),
        url,
        name,
        upload: UploadForm::default(),
        formats: FORMATS,
        preview: None,
        refusal: None,
        problems: Problems::default(),
    };
    let format = match form.format() {
        Ok(format) => format,
        Err(e) => {
            page.problems = Problems::of(vec![e], |f| Some(f.to_owned()));
            page.upload = form;
            return Ok(render(
                StatusCode::UNPROCESSABLE_ENTITY,
                "dataset_upload.html",
                page,
            ));
        }
    };
    let status = if form.action == "upload" {
        let appended = datasets::append_items(
            &state.registry,
            session.caller.project,
            &session.caller.actor(),
            &page.name,
            format,
            std::io::Cursor::new(form.content.clone().into_bytes()),
        )
        .await;
        match appended {
            Ok((_, added)) => {
                let back = with_query(&page.url, &[("added", added.to_string())]);
                return Ok(Redirect::to(&format!("{back}#items")).into_response());
            }
            Err(err @ ServiceError::InvalidItem(_)) => {
                page.refusal = Some(format!("Nothing was written: {err}."));
                StatusCode::UNPROCESSABLE_ENTITY
            }
            Err(err @ ServiceError::Store(StoreError::DatasetArchived(_))) => {
                page.refusal = Some(format!("Nothing was written: {err}."));
                StatusCode::CONFLICT
            }
            Err(err) => return Err(err.into()),
        }
    } else {
        // A preview of a dataset that is not there would mislead.
        datasets::get_dataset(&state.registry, session.caller.project, &page.name).await?;
        StatusCode::OK
    };
    let preview = datasets::preview_items(format, form.content.as_bytes(), PREVIEW_ROWS);
    let status = if status == StatusCode::OK && !preview.is_clean() {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        status
    };
    page.preview = Some(preview_view(preview));
    page.upload = form;
    Ok(render(status, "dataset_upload.html", page))
}

#[derive(Deserialize, Serialize, Default)]
pub struct NewDatasetForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    description: String,
}

#[derive(Serialize)]
struct NewDatasetPage<'a> {
    me: Me<'a>,
    section: &'static str,
    form: NewDatasetForm,
    problems: Problems,
}

/// `POST /ui/datasets`: creates a dataset and opens it; a refusal shows
/// the form again with the reason beside the field.
pub async fn create_dataset(
    State(state): State<AppState>,
    posted: Posted<NewDatasetForm>,
) -> Result<Response, UiError> {
    let session = &posted.session;
    authorize(&state, session, Scope::Write)?;
    let form = posted.form;
    let shown = |field: &str| matches!(field, "name" | "description").then(|| field.to_owned());
    let problems = match dataset_name(form.name.trim()) {
        Err(err) => Problems::of_refusal(err, shown)?,
        Ok(name) => {
            let created = datasets::create_dataset(
                &state.registry,
                session.caller.project,
                &session.caller.actor(),
                &name,
                form.description.trim(),
            )
            .await;
            match created {
                Ok(dataset) => return Ok(Redirect::to(&dataset_url(&dataset.name)).into_response()),
                Err(ServiceError::Store(err @ StoreError::DatasetExists(_))) => {
                    Problems::of(vec![FieldError::new("name", err.to_string())], shown)
                }
                Err(err) => Problems::of_refusal(ApiError::from(err), shown)?,
            }
        }
    };
    let page = NewDatasetPage {
        me: Me::of(session),
        section: "datasets",
        form,
        problems,
    };
    Ok(render(
        StatusCode::UNPROCESSABLE_ENTITY,
        "new_dataset.html",
        page,
    ))
}
