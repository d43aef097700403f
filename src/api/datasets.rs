//! Datasets: named collections of items (input variables, an optional
//! reference output, metadata) that evaluations run over. Items are appended
//! by uploads in JSON, JSON Lines or CSV, parsed as they stream in (an upload
//! is never held whole in memory) and written in one transaction; once
//! written they never change, so an evaluation can be reproduced.

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::IntoResponse;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use http_body_util::BodyExt;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::sync::mpsc;
use utoipa::ToSchema;

use super::auth::{scope, Auth};
use super::extract::{prompt_name, Json, PageParams, Path, Query};
use super::AppState;
use crate::domain::{Dataset, DatasetItem, NewItem};
use crate::error::{ApiError, Problem};
use crate::store::ItemError;

const MAX_DESCRIPTION: usize = 4096;
/// Items handed to the store at once; also bounds what an upload holds in memory.
const BATCH: usize = 1000;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "support/faq", "description": "Real customer questions with approved answers"}))]
pub struct CreateDatasetRequest {
    /// `[a-z0-9][a-z0-9._/-]{0,127}`, like prompt names.
    name: String,
    description: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct DatasetResponse {
    #[schema(example = "support/faq")]
    name: String,
    description: String,
    /// How many items the dataset holds.
    #[schema(example = 250)]
    item_count: i64,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl From<Dataset> for DatasetResponse {
    fn from(d: Dataset) -> Self {
        Self {
            name: d.name,
            description: d.description,
            item_count: d.item_count,
            created_at: d.created_at,
            updated_at: d.updated_at,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct DatasetPage {
    items: Vec<DatasetResponse>,
    next_cursor: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct DatasetItemResponse {
    id: uuid::Uuid,
    /// 1, 2, 3… in upload order.
    seq: i64,
    /// The variables a prompt is rendered with.
    #[schema(example = json!({"question": "Where is my order?"}))]
    input: Map<String, Value>,
    /// The reference output, if any.
    #[schema(example = "It ships within two days.")]
    expected: Option<Value>,
    metadata: Map<String, Value>,
    created_at: DateTime<Utc>,
}

impl From<DatasetItem> for DatasetItemResponse {
    fn from(i: DatasetItem) -> Self {
        Self {
            id: i.id,
            seq: i.seq,
            input: i.input,
            expected: i.expected,
            metadata: i.metadata,
            created_at: i.created_at,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct DatasetItemPage {
    items: Vec<DatasetItemResponse>,
    next_cursor: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct AppendItemsResponse {
    /// Items this upload added.
    #[schema(example = 100000)]
    added: i64,
    dataset: DatasetResponse,
}

/// Create a dataset.
#[utoipa::path(post, path = "/v1/datasets", tag = "datasets",
    security(("bearer" = ["write"])),
    request_body = CreateDatasetRequest,
    responses(
        (status = 201, description = "Created", body = DatasetResponse),
        (status = 409, description = "`dataset_exists`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`invalid_name` or `validation_failed`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn create_dataset(
    State(state): State<AppState>,
    auth: Auth<scope::Write>,
    Json(body): Json<CreateDatasetRequest>,
) -> Result<impl IntoResponse, ApiError> {
    let name = prompt_name(&body.name)?;
    let description = body.description.unwrap_or_default();
    if description.chars().count() > MAX_DESCRIPTION {
        return Err(ApiError::validation(
            "description",
            format!("at most {MAX_DESCRIPTION} characters"),
        ));
    }
    let dataset = state
        .registry
        .store()
        .insert_dataset(auth.project, &name, &description, &auth.actor())
        .await
        .map_err(|e| ApiError::from_store(e, name.as_str()))?;
    let location = format!("/v1/datasets/{}", name.as_str().replace('/', "%2F"));
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        axum::Json(DatasetResponse::from(dataset)),
    ))
}

/// List datasets, newest first.
#[utoipa::path(get, path = "/v1/datasets", tag = "datasets",
    security(("bearer" = ["read"])),
    params(PageParams),
    responses(
        (status = 200, description = "A page of datasets", body = DatasetPage),
    ))]
pub async fn list_datasets(
    State(state): State<AppState>,
    auth: Auth<scope::Read>,
    Query(page): Query<PageParams>,
) -> Result<axum::Json<DatasetPage>, ApiError> {
    let page = state
        .registry
        .store()
        .list_datasets(auth.project, page.to_request()?)
        .await
        .map_err(|e| ApiError::from_store(e, ""))?;
    Ok(axum::Json(DatasetPage {
        items: page.items.into_iter().map(DatasetResponse::from).collect(),
        next_cursor: page.next_cursor,
    }))
}

/// Get a dataset.
#[utoipa::path(get, path = "/v1/datasets/{name}", tag = "datasets",
    security(("bearer" = ["read"])),
    params(("name" = String, Path, description = "The dataset's name, URL-encoded")),
    responses(
        (status = 200, description = "The dataset", body = DatasetResponse),
        (status = 404, description = "`dataset_not_found`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get_dataset(
    State(state): State<AppState>,
    auth: Auth<scope::Read>,
    Path(name): Path<String>,
) -> Result<axum::Json<DatasetResponse>, ApiError> {
    let dataset = state
        .registry
        .store()
        .get_dataset(auth.project, &name)
        .await
        .map_err(|e| ApiError::from_store(e, &name))?;
    Ok(axum::Json(dataset.into()))
}

/// List a dataset's items in upload order.
#[utoipa::path(get, path = "/v1/datasets/{name}/items", tag = "datasets",
    security(("bearer" = ["read"])),
    params(("name" = String, Path, description = "The dataset's name, URL-encoded"), PageParams),
    responses(
        (status = 200, description = "A page of items", body = DatasetItemPage),
        (status = 404, description = "`dataset_not_found`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list_items(
    State(state): State<AppState>,
    auth: Auth<scope::Read>,
    Path(name): Path<String>,
    Query(page): Query<PageParams>,
) -> Result<axum::Json<DatasetItemPage>, ApiError> {
    let page = state
        .registry
        .store()
        .list_items(auth.project, &name, page.to_request()?)
        .await
        .map_err(|e| ApiError::from_store(e, &name))?;
    Ok(axum::Json(DatasetItemPage {
        items: page
            .items
            .into_iter()
            .map(DatasetItemResponse::from)
            .collect(),
        next_cursor: page.next_cursor,
    }))
}

/// The formats an upload may come in, by `Content-Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    /// `application/json`: an array of `{input, expected?, metadata?}`.
    JsonArray,
    /// `application/x-ndjson`, `application/jsonl`: one such object per line.
    JsonLines,
    /// `text/csv`: a header row; `expected`, `metadata.KEY` and (`input.`)`KEY` columns.
    Csv,
}

impl Format {
    fn of(headers: &HeaderMap) -> Result<Self, ApiError> {
        let content_type = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let essence = content_type
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        match essence.as_str() {
            "application/json" => Ok(Self::JsonArray),
            "application/x-ndjson" | "application/jsonl" | "application/json-lines"
            | "application/jsonlines" => Ok(Self::JsonLines),
            "text/csv" => Ok(Self::Csv),
            _ => Err(ApiError::UnsupportedUpload(format!(
                "items come as application/json (an array), application/x-ndjson (JSON Lines) or text/csv, not {:?}",
                if content_type.is_empty() { "nothing" } else { content_type }
            ))),
        }
    }
}

/// Append items to a dataset: a JSON array, JSON Lines or CSV, by
/// `Content-Type`. All or nothing: one bad item keeps none of the upload.
#[utoipa::path(post, path = "/v1/datasets/{name}/items", tag = "datasets",
    security(("bearer" = ["write"])),
    params(("name" = String, Path, description = "The dataset's name, URL-encoded")),
    request_body(
        description = "`application/json`: `[{\"input\": {…}, \"expected\": …, \"metadata\": {…}}]`; \
            `application/x-ndjson`: one such object per line; `text/csv`: a header row, then one item \
            per row: column `expected` is the reference, `metadata.KEY` columns the metadata, every \
            other column (optionally written `input.KEY`) an input variable (as text).",
        content(
            (Vec<Value> = "application/json"),
            (String = "application/x-ndjson"),
            (String = "text/csv"),
        )
    ),
    responses(
        (status = 200, description = "Appended", body = AppendItemsResponse),
        (status = 404, description = "`dataset_not_found`", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "`payload_too_large`", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "`unsupported_media_type`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`invalid_item`: which item, and why", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn append_items(
    State(state): State<AppState>,
    auth: Auth<scope::Write>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<axum::Json<AppendItemsResponse>, ApiError> {
    let format = Format::of(&headers)?;
    let limit = state.config.http.upload_limit_bytes;
    let before = state
        .registry
        .store()
        .get_dataset(auth.project, &name)
        .await
        .map_err(|e| ApiError::from_store(e, &name))?;
    let (sender, receiver) = mpsc::channel::<Result<Vec<NewItem>, ItemError>>(2);
    // Set when the body passes the limit: the parser then fails like on any
    // unreadable upload, and this tells the two apart.
    let over_limit = Arc::new(AtomicBool::new(false));
    let reader = tokio_util::io::StreamReader::new(
        http_body_util::Limited::new(body, limit)
            .into_data_stream()
            .map({
                let over_limit = over_limit.clone();
                move |chunk| {
                    chunk.map_err(|e| {
                        if e.is::<http_body_util::LengthLimitError>() {
                            over_limit.store(true, Ordering::SeqCst);
                        }
                        std::io::Error::other(e)
                    })
                }
            }),
    );
    let bridge = tokio_util::io::SyncIoBridge::new(reader);
    // The parsers are synchronous (serde_json, csv): they run on a blocking
    // thread and hand batches over a small channel, which bounds memory.
    let parser = tokio::task::spawn_blocking(move || parse_items(format, bridge, &sender));
    let batches = futures::stream::unfold(receiver, |mut receiver| async move {
        receiver.recv().await.map(|batch| (batch, receiver))
    })
    .boxed();
    let stored = state
        .registry
        .store()
        .append_items(auth.project, &name, batches, &auth.actor())
        .await;
    // The parser ends once the store stops listening; it never outlives the request.
    let _ = parser.await;
    let dataset = stored.map_err(|e| match e {
        crate::store::StoreError::InvalidItem(_) if over_limit.load(Ordering::SeqCst) => {
            ApiError::UploadTooLarge(limit)
        }
        other => ApiError::from_store(other, &name),
    })?;
    Ok(axum::Json(AppendItemsResponse {
        added: dataset.item_count - before.item_count,
        dataset: dataset.into(),
    }))
}

/// Reads every item of an upload, sending full batches as they fill up.
/// Stops at the first bad item (sending its error) or when nobody listens.
fn parse_items(
    format: Format,
    reader: impl std::io::Read,
    sender: &mpsc::Sender<Result<Vec<NewItem>, ItemError>>,
) {
    let mut batch = Vec::with_capacity(BATCH);
    let mut emit = |item: Result<NewItem, ItemError>| -> bool {
        match item {
            Ok(item) => {
                batch.push(item);
                if batch.len() == BATCH {
                    let full = std::mem::replace(&mut batch, Vec::with_capacity(BATCH));
                    return sender.blocking_send(Ok(full)).is_ok();
                }
                true
            }
            Err(e) => {
                let _ = sender.blocking_send(Err(e));
                false
            }
        }
    };
    let finished = match format {
        Format::JsonLines => json_lines(reader, &mut emit),
        Format::JsonArray => json_array(reader, &mut emit),
        Format::Csv => csv_rows(reader, &mut emit),
    };
    if finished && !batch.is_empty() {
        let _ = sender.blocking_send(Ok(batch));
    }
}

fn item_error(item: u64, line: Option<u64>, message: impl Into<String>) -> ItemError {
    ItemError {
        item,
        line,
        message: message.into(),
    }
}

/// `{input, expected?, metadata?}` into an item.
fn item_of(value: Value, item: u64, line: Option<u64>) -> Result<NewItem, ItemError> {
    let fail = |message: String| item_error(item, line, message);
    let Value::Object(mut object) = value else {
        return Err(fail(
            "an item is an object: {\"input\": {…}, \"expected\": …, \"metadata\": {…}}".into(),
        ));
    };
    if let Some(unknown) = object
        .keys()
        .find(|k| !matches!(k.as_str(), "input" | "expected" | "metadata"))
    {
        return Err(fail(format!(
            "unknown field `{unknown}`; an item has `input`, `expected` and `metadata`"
        )));
    }
    let input = match object.remove("input") {
        Some(Value::Object(input)) => input,
        Some(_) => return Err(fail("`input` must be an object of variables".into())),
        None => return Err(fail("`input` (an object of variables) is required".into())),
    };
    let metadata = match object.remove("metadata") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(metadata)) => metadata,
        Some(_) => return Err(fail("`metadata` must be an object".into())),
    };
    let expected = object.remove("expected").filter(|e| !e.is_null());
    Ok(NewItem {
        input,
        expected,
        metadata,
    })
}

fn io_error(item: u64, line: Option<u64>, e: &std::io::Error) -> ItemError {
    item_error(item, line, format!("the upload could not be read: {e}"))
}

fn json_lines(
    reader: impl std::io::Read,
    emit: &mut impl FnMut(Result<NewItem, ItemError>) -> bool,
) -> bool {
    use std::io::BufRead;
    let mut item = 0;
    for (index, line) in std::io::BufReader::new(reader).lines().enumerate() {
        let line_no = index as u64 + 1;
        let parsed = match line {
            Err(e) => Err(io_error(item + 1, Some(line_no), &e)),
            Ok(text) if text.trim().is_empty() => continue,
            Ok(text) => {
                item += 1;
                serde_json::from_str(&text)
                    .map_err(|e| item_error(item, Some(line_no), format!("not JSON: {e}")))
                    .and_then(|value| item_of(value, item, Some(line_no)))
            }
        };
        if !emit(parsed) {
            return false;
        }
    }
    true
}

fn json_array(
    reader: impl std::io::Read,
    emit: &mut impl FnMut(Result<NewItem, ItemError>) -> bool,
) -> bool {
    use serde::de::{Deserializer as _, SeqAccess, Visitor};

    struct Items<'a, F> {
        emit: &'a mut F,
        count: u64,
        stopped: bool,
    }

    impl<'de, F: FnMut(Result<NewItem, ItemError>) -> bool> Visitor<'de> for &mut Items<'_, F> {
        type Value = ();

        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("an array of items")
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
            while let Some(value) = seq.next_element::<Value>()? {
                self.count += 1;
                if !(self.emit)(item_of(value, self.count, None)) {
                    self.stopped = true;
                    return Ok(());
                }
            }
            Ok(())
        }
    }

    let mut items = Items {
        emit,
        count: 0,
        stopped: false,
    };
    let mut deserializer = serde_json::Deserializer::from_reader(reader);
    let result = (&mut deserializer).deserialize_seq(&mut items);
    if items.stopped {
        return false;
    }
    let result = result.and_then(|()| deserializer.end());
    match result {
        Ok(()) => true,
        Err(e) => {
            (items.emit)(Err(item_error(
                items.count + 1,
                Some(e.line() as u64),
                format!("not a JSON array of items: {e}"),
            )));
            false
        }
    }
}

fn csv_rows(
    reader: impl std::io::Read,
    emit: &mut impl FnMut(Result<NewItem, ItemError>) -> bool,
) -> bool {
    let mut csv = csv::ReaderBuilder::new()
        .flexible(false)
        .from_reader(reader);
    let headers = match csv.headers() {
        Ok(headers) => headers.clone(),
        Err(e) => return emit(Err(csv_error(1, &e))),
    };
    enum Column {
        Input(String),
        Expected,
        Metadata(String),
    }
    let mut columns = Vec::with_capacity(headers.len());
    for (i, name) in headers.iter().enumerate() {
        let column = if name == "expected" {
            Column::Expected
        } else if let Some(key) = name.strip_prefix("metadata.") {
            Column::Metadata(key.to_owned())
        } else {
            Column::Input(name.strip_prefix("input.").unwrap_or(name).to_owned())
        };
        if matches!(&column, Column::Input(k) | Column::Metadata(k) if k.is_empty()) {
            return emit(Err(item_error(
                1,
                Some(1),
                format!("column {} of the header has no name", i + 1),
            )));
        }
        columns.push(column);
    }
    for (index, record) in csv.records().enumerate() {
        let item = index as u64 + 1;
        let parsed = record.map_err(|e| csv_error(item, &e)).map(|record| {
            let mut new = NewItem {
                input: Map::new(),
                expected: None,
                metadata: Map::new(),
            };
            for (column, value) in columns.iter().zip(record.iter()) {
                let value = Value::String(value.to_owned());
                match column {
                    Column::Input(key) => {
                        new.input.insert(key.clone(), value);
                    }
                    Column::Metadata(key) => {
                        new.metadata.insert(key.clone(), value);
                    }
                    Column::Expected => new.expected = Some(value),
                }
            }
            new
        });
        if !emit(parsed) {
            return false;
        }
    }
    true
}

fn csv_error(item: u64, e: &csv::Error) -> ItemError {
    let line = e.position().map(|p| p.line());
    match e.kind() {
        csv::ErrorKind::Io(io) => io_error(item, line, io),
        _ => item_error(item, line, format!("not valid CSV: {e}")),
    }
}
