//! What the Langfuse SDKs call besides prompts: the health probe, the
//! key's project (`auth_check()`), and the OTLP trace sink, which accepts
//! and drops what it is sent (promptreg keeps no traces).

use axum::body::Bytes;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use serde::Serialize;
use serde_json::{Map, Value};
use utoipa::ToSchema;

use super::{LangfuseAuth, LangfuseErrorBody};
use crate::api::auth::scope;

#[derive(Serialize, ToSchema)]
pub struct LangfuseHealth {
    #[schema(example = "OK")]
    status: &'static str,
    /// promptreg's version.
    #[schema(example = "0.1.0")]
    version: &'static str,
}

/// The server is up. Needs no key.
#[utoipa::path(get, path = "/api/public/health", tag = "langfuse", operation_id = "langfuse_health",
    responses((status = 200, description = "Up", body = LangfuseHealth)))]
pub async fn health() -> axum::Json<LangfuseHealth> {
    axum::Json(LangfuseHealth {
        status: "OK",
        version: env!("CARGO_PKG_VERSION"),
    })
}

#[derive(Serialize, ToSchema)]
pub struct LangfuseOrganization {
    #[schema(example = "promptreg")]
    id: &'static str,
    #[schema(example = "promptreg")]
    name: &'static str,
}

#[derive(Serialize, ToSchema)]
pub struct LangfuseProject {
    id: uuid::Uuid,
    #[schema(example = "default")]
    name: String,
    organization: LangfuseOrganization,
    #[schema(value_type = Object)]
    metadata: Map<String, Value>,
}

#[derive(Serialize, ToSchema)]
pub struct LangfuseProjects {
    data: Vec<LangfuseProject>,
}

/// The key's project: what the SDK's `auth_check()` asks for.
#[utoipa::path(get, path = "/api/public/projects", tag = "langfuse", operation_id = "langfuse_list_projects",
    security(("langfuse_basic" = ["read"])),
    responses((status = 200, description = "The key's project", body = LangfuseProjects)))]
pub async fn list_projects(auth: LangfuseAuth<scope::Read>) -> axum::Json<LangfuseProjects> {
    axum::Json(LangfuseProjects {
        data: vec![LangfuseProject {
            id: auth.project,
            name: auth.project_name().to_owned(),
            organization: LangfuseOrganization {
                id: "promptreg",
                name: "promptreg",
            },
            metadata: Map::new(),
        }],
    })
}

/// An OTLP/HTTP trace export (protobuf, usually gzip): accepted and dropped.
/// The SDK exports its spans here on `flush()` and logs an error on failure.
#[utoipa::path(post, path = "/api/public/otel/v1/traces", tag = "langfuse", operation_id = "langfuse_ingest_traces",
    security(("langfuse_basic" = ["read"])),
    request_body(content = Vec<u8>, content_type = "application/x-protobuf",
        description = "An OTLP ExportTraceServiceRequest; not kept"),
    responses(
        (status = 200, description = "Accepted (an empty ExportTraceServiceResponse)"),
        (status = 400, description = "`InvalidRequestError`: larger than the body limit", body = LangfuseErrorBody),
    ))]
pub async fn ingest_traces(
    _auth: LangfuseAuth<scope::Read>,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<impl IntoResponse, super::LangfuseError> {
    // Reading the body to its end is all: nothing of it is kept.
    body.map_err(|e| super::LangfuseError::invalid(format!("body: {}", e.body_text())))?;
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/x-protobuf")],
        Bytes::new(),
    ))
}
