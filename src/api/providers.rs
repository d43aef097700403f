//! The LLM providers configured on this server, without their secrets.

use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;

use super::auth::{scope, Auth};
use super::AppState;
use crate::providers::ProviderInfo;

#[derive(Serialize, ToSchema)]
pub struct ProviderList {
    items: Vec<ProviderInfo>,
}

/// List the configured providers: kind, base URL, default model, prices;
/// whether a key is set, never the key.
#[utoipa::path(get, path = "/v1/providers", tag = "providers",
    security(("bearer" = ["read"])),
    responses(
        (status = 200, description = "The providers", body = ProviderList),
    ))]
pub async fn list_providers(
    State(state): State<AppState>,
    _auth: Auth<scope::Read>,
) -> axum::Json<ProviderList> {
    axum::Json(ProviderList {
        items: state.providers.list(),
    })
}
