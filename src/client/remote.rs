//! What the CLI reads from a server: the project's prompts with their labels
//! and latest content hash, and single versions, as the API's own types.

use std::collections::HashMap;

use super::http::{segment, Client, ClientError};
use crate::api::wire::{PromptPage, PromptResponse, VersionResponse};
use crate::domain::content::{parse_content, ContentFields};
use crate::domain::PromptContent;

/// Every (unarchived) prompt of the caller's project, by name.
pub async fn list_prompts(client: &Client) -> Result<HashMap<String, PromptResponse>, ClientError> {
    let mut all = HashMap::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/prompts?limit=100&cursor={c}"),
            None => "/v1/prompts?limit=100".to_owned(),
        };
        let page: PromptPage = client.get_json(&path).await?;
        all.extend(page.items.into_iter().map(|p| (p.name.clone(), p)));
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => return Ok(all),
        }
    }
}

/// A stored version's content, checked as the server checks a new one;
/// `None` when this client cannot read it.
pub fn content(version: &VersionResponse) -> Option<PromptContent> {
    parse_content(
        ContentFields {
            prompt_type: Some(version.prompt_type),
            template: version.template.clone(),
            messages: version.messages.clone(),
            engine: Some(version.engine),
            model_config: Some(version.model_config.clone()),
            input_schema: version.input_schema.clone(),
            output_schema: version.output_schema.clone(),
        },
        &mut Vec::new(),
    )
}

pub async fn get_version(
    client: &Client,
    name: &str,
    reference: &str,
) -> Result<VersionResponse, ClientError> {
    client
        .get_json(&format!(
            "/v1/prompts/{}/versions/{reference}",
            segment(name)
        ))
        .await
}
