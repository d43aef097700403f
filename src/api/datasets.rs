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

use utoipa::{IntoParams, ToSchema};

use super::auth::{scope, Auth};
use super::extract::{dataset_name, page_request, Json, PageParams, Path, Query};
use super::AppState;
use crate::domain::{Dataset, DatasetItem};
use crate::error::{ApiError, Problem};
use crate::services::datasets::{self, UploadFormat};
use crate::services::ServiceError;
use crate::store::DatasetPatch;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "support/faq", "description": "Real customer questions with approved answers"}))]
pub struct CreateDatasetRequest {
    /// `[a-z0-9][a-z0-9._/-]{0,127}`, like prompt names.
    name: String,
    description: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "support/faq-2024", "description": "Questions of 2024", "archived": false}))]
pub struct UpdateDatasetRequest {
    /// A new name, free in the project; evaluations of the dataset keep it.
    name: Option<String>,
    description: Option<String>,
    /// `true` hides the dataset from the list and refuses new items;
    /// `false` restores it.
    archived: Option<bool>,
}

#[derive(Serialize, ToSchema)]
pub struct DatasetResponse {
    #[schema(example = "support/faq")]
    name: String,
    description: String,
    /// How many items the dataset holds.
    #[schema(example = 250)]
    item_count: i64,
    /// Hidden from the list (unless `archived=true`), taking no new items.
    archived: bool,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl From<Dataset> for DatasetResponse {
    fn from(d: Dataset) -> Self {
        Self {
            name: d.name,
            description: d.description,
            item_count: d.item_count,
            archived: d.archived,
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

page_from!(DatasetPage of DatasetResponse);

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

page_from!(DatasetItemPage of DatasetItemResponse);

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
    let name = dataset_name(&body.name)?;
    let description = body.description.unwrap_or_default();
    let dataset = datasets::create_dataset(
        &state.registry,
        auth.project,
        &auth.actor(),
        &name,
        &description,
    )
    .await?;
    let location = format!("/v1/datasets/{}", name.as_str().replace('/', "%2F"));
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        axum::Json(DatasetResponse::from(dataset)),
    ))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DatasetListParams {
    /// `true` lists archived datasets too.
    #[param(default = false)]
    archived: Option<bool>,
    /// Items per page, 1 to 100.
    #[param(default = 20, minimum = 1, maximum = 100)]
    limit: Option<u32>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
}

/// List datasets, newest first. Archived datasets are hidden unless `archived=true`.
#[utoipa::path(get, path = "/v1/datasets", tag = "datasets",
    security(("bearer" = ["read"])),
    params(DatasetListParams),
    responses(
        (status = 200, description = "A page of datasets", body = DatasetPage),
        (status = 422, description = "`validation_failed` (archived, limit or cursor)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list_datasets(
    State(state): State<AppState>,
    auth: Auth<scope::Read>,
    Query(params): Query<DatasetListParams>,
) -> Result<axum::Json<DatasetPage>, ApiError> {
    let page = page_request(params.limit, params.cursor.as_deref())?;
    let include_archived = params.archived.unwrap_or(false);
    let page =
        datasets::list_datasets(&state.registry, auth.project, include_archived, page).await?;
    Ok(axum::Json(page.into()))
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
    let dataset = datasets::get_dataset(&state.registry, auth.project, &name).await?;
    Ok(axum::Json(dataset.into()))
}

/// Rename, describe, archive or restore a dataset.
#[utoipa::path(patch, path = "/v1/datasets/{name}", tag = "datasets",
    security(("bearer" = ["write"])),
    params(("name" = String, Path, description = "The dataset's name, URL-encoded")),
    request_body = UpdateDatasetRequest,
    responses(
        (status = 200, description = "The updated dataset", body = DatasetResponse),
        (status = 404, description = "`dataset_not_found`", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`dataset_exists`: another dataset has the new name", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`invalid_name` or `validation_failed`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn update_dataset(
    State(state): State<AppState>,
    auth: Auth<scope::Write>,
    Path(name): Path<String>,
    Json(body): Json<UpdateDatasetRequest>,
) -> Result<axum::Json<DatasetResponse>, ApiError> {
    let patch = DatasetPatch {
        name: body.name.as_deref().map(dataset_name).transpose()?,
        description: body.description,
        archived: body.archived,
    };
    let dataset =
        datasets::update_dataset(&state.registry, auth.project, &auth.actor(), &name, patch)
            .await?;
    Ok(axum::Json(dataset.into()))
}

/// Delete a dataset and its items. Refused while evaluations, optimizations
/// or gates use it: archive it instead.
#[utoipa::path(delete, path = "/v1/datasets/{name}", tag = "datasets",
    security(("bearer" = ["write"])),
    params(("name" = String, Path, description = "The dataset's name, URL-encoded")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "`dataset_not_found`", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`dataset_in_use`: the detail names the evaluations (ids), optimizations and gates that use it", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn delete_dataset(
    State(state): State<AppState>,
    auth: Auth<scope::Write>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    datasets::delete_dataset(&state.registry, auth.project, &auth.actor(), &name).await?;
    Ok(StatusCode::NO_CONTENT)
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
    let page =
        datasets::list_items(&state.registry, auth.project, &name, page.to_request()?).await?;
    Ok(axum::Json(page.into()))
}

/// The upload's format, from its `Content-Type`.
fn upload_format(headers: &HeaderMap) -> Result<UploadFormat, ApiError> {
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
        "application/json" => Ok(UploadFormat::JsonArray),
        "application/x-ndjson" | "application/jsonl" | "application/json-lines"
        | "application/jsonlines" => Ok(UploadFormat::JsonLines),
        "text/csv" => Ok(UploadFormat::Csv),
        _ => Err(ApiError::UnsupportedUpload(format!(
            "items come as application/json (an array), application/x-ndjson (JSON Lines) or text/csv, not {:?}",
            if content_type.is_empty() { "nothing" } else { content_type }
        ))),
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
        (status = 409, description = "`dataset_archived`", body = Problem, content_type = "application/problem+json"),
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
    let format = upload_format(&headers)?;
    let limit = state.config.http.upload_limit_bytes;
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
    let appended = datasets::append_items(
        &state.registry,
        auth.project,
        &auth.actor(),
        &name,
        format,
        reader,
    )
    .await;
    let (dataset, added) = appended.map_err(|e| match e {
        ServiceError::InvalidItem(_) if over_limit.load(Ordering::SeqCst) => {
            ApiError::UploadTooLarge(limit)
        }
        other => other.into(),
    })?;
    Ok(axum::Json(AppendItemsResponse {
        added,
        dataset: dataset.into(),
    }))
}
