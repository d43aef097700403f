//! What the CLI reads from a server: the project's prompts with their labels
//! and latest content hash, and single versions.

use std::collections::{BTreeMap, HashMap};

use serde::Deserialize;
use serde_json::Value;

use super::http::{segment, Client, ClientError};
use crate::domain::content::{parse_content, ContentFields};
use crate::domain::{ChatMessage, Engine, PromptContent, PromptType};

#[derive(Debug, Clone, Deserialize)]
pub struct RemotePrompt {
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    pub latest_version: Option<String>,
    pub latest_content_hash: Option<String>,
}

#[derive(Deserialize)]
struct Page<T> {
    items: Vec<T>,
    next_cursor: Option<String>,
}

/// Every (unarchived) prompt of the caller's project, by name.
pub async fn list_prompts(client: &Client) -> Result<HashMap<String, RemotePrompt>, ClientError> {
    let mut all = HashMap::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/prompts?limit=100&cursor={c}"),
            None => "/v1/prompts?limit=100".to_owned(),
        };
        let (_, body) = client.get(&path).await?;
        let page: Page<RemotePrompt> = decode(client, body)?;
        all.extend(page.items.into_iter().map(|p| (p.name.clone(), p)));
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => return Ok(all),
        }
    }
}

/// A stored version as the API answers it.
#[derive(Debug, Clone, Deserialize)]
pub struct RemoteVersion {
    pub version: String,
    #[serde(rename = "type")]
    pub prompt_type: PromptType,
    pub engine: Engine,
    pub template: Option<String>,
    pub messages: Option<Vec<ChatMessage>>,
    #[serde(default)]
    pub model_config: serde_json::Map<String, Value>,
    pub input_schema: Option<Value>,
    pub output_schema: Option<Value>,
}

impl RemoteVersion {
    pub fn content(&self) -> Option<PromptContent> {
        parse_content(
            ContentFields {
                prompt_type: Some(self.prompt_type),
                template: self.template.clone(),
                messages: self.messages.clone(),
                engine: Some(self.engine),
                model_config: Some(self.model_config.clone()),
                input_schema: self.input_schema.clone(),
                output_schema: self.output_schema.clone(),
            },
            &mut Vec::new(),
        )
    }
}

pub async fn get_version(
    client: &Client,
    name: &str,
    reference: &str,
) -> Result<RemoteVersion, ClientError> {
    let (_, body) = client
        .get(&format!(
            "/v1/prompts/{}/versions/{reference}",
            segment(name)
        ))
        .await?;
    decode(client, body)
}

pub fn decode<T: serde::de::DeserializeOwned>(
    client: &Client,
    body: Value,
) -> Result<T, ClientError> {
    serde_json::from_value(body).map_err(|e| ClientError::Status {
        status: 200,
        code: None,
        message: format!("{} answered something unexpected: {e}", client.base()),
    })
}
