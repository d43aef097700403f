//! What the CLI reads from a server: the project's prompts with their labels
//! and latest content hash, single versions, and a label's moves, as the
//! API's own types.

use std::collections::HashMap;

use super::http::{query_value, segment, Client, ClientError};
use crate::api::wire::{
    LabelMovePage, LabelMoveResponse, PromptPage, PromptResponse, VersionResponse,
};
use crate::domain::content::{parse_content, ContentFields};
use crate::domain::PromptContent;

/// Every (unarchived) prompt of the caller's project, by name.
pub async fn list_prompts(client: &Client) -> Result<HashMap<String, PromptResponse>, ClientError> {
    let all = list_matching(client, None).await?;
    Ok(all.into_iter().map(|p| (p.name.clone(), p)).collect())
}

/// The (unarchived) prompts whose name or description contains `query`
/// (all, without one), in the API's order, every page read.
pub async fn list_matching(
    client: &Client,
    query: Option<&str>,
) -> Result<Vec<PromptResponse>, ClientError> {
    let mut all = Vec::new();
    let mut cursor: Option<String> = None;
    let filter = query.map_or(String::new(), |q| format!("&q={}", query_value(q)));
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/prompts?limit=100{filter}&cursor={}", query_value(c)),
            None => format!("/v1/prompts?limit=100{filter}"),
        };
        let page: PromptPage = client.get_json(&path).await?;
        all.extend(page.items);
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => return Ok(all),
        }
    }
}

/// Every move of a label, newest first, every page read.
pub async fn label_history(
    client: &Client,
    name: &str,
    label: &str,
) -> Result<Vec<LabelMoveResponse>, ClientError> {
    let mut all = Vec::new();
    let mut cursor: Option<String> = None;
    let base = format!(
        "/v1/prompts/{}/labels/{}/history?limit=100",
        segment(name),
        query_value(label)
    );
    loop {
        let path = match &cursor {
            Some(c) => format!("{base}&cursor={}", query_value(c)),
            None => base.clone(),
        };
        let page: LabelMovePage = client.get_json(&path).await?;
        all.extend(page.items);
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
            "/v1/prompts/{}/versions/{}",
            segment(name),
            query_value(reference)
        ))
        .await
}
