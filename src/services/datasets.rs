//! Datasets: named collections of items (input variables, an optional
//! reference output, metadata) that evaluations run over. Items are appended
//! by uploads in JSON, JSON Lines or CSV, parsed as they stream in (an upload
//! is never held whole in memory) and written in one transaction: one bad
//! item keeps none of the upload. Written items never change, so an
//! evaluation can be reproduced.

use futures::StreamExt;
use serde_json::{Map, Value};
use tokio::io::AsyncRead;
use tokio::sync::mpsc;

use crate::domain::auth::Actor;
use crate::domain::text;
use crate::domain::{Dataset, DatasetItem, NewItem, Page, ProjectId, PromptName};
use crate::store::{DatasetPatch, ItemError, PageRequest};

use super::{Registry, ServiceError, ServiceResult};

const MAX_DESCRIPTION: usize = 4096;
/// Items handed to the store at once; also bounds what an upload holds in memory.
const BATCH: usize = 1000;

/// The formats an upload may come in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UploadFormat {
    /// An array of `{input, expected?, metadata?}`.
    JsonArray,
    /// One such object per line.
    JsonLines,
    /// A header row; `expected`, `metadata.KEY` and (`input.`)`KEY` columns.
    Csv,
}

fn check_description(description: &str) -> ServiceResult<()> {
    if description.chars().count() > MAX_DESCRIPTION {
        return Err(ServiceError::validation(
            "description",
            format!("at most {MAX_DESCRIPTION} characters"),
        ));
    }
    Ok(())
}

pub async fn create_dataset(
    registry: &Registry,
    project: ProjectId,
    actor: &Actor,
    name: &PromptName,
    description: &str,
) -> ServiceResult<Dataset> {
    check_description(description)?;
    Ok(registry
        .store
        .insert_dataset(project, name, description, actor)
        .await?)
}

/// Datasets newest first; archived ones only when `include_archived`.
pub async fn list_datasets(
    registry: &Registry,
    project: ProjectId,
    include_archived: bool,
    page: PageRequest,
) -> ServiceResult<Page<Dataset>> {
    Ok(registry
        .store
        .list_datasets(project, include_archived, page)
        .await?)
}

/// Renames, describes, archives or restores dataset `name`. Evaluations
/// refer to datasets by id, so a rename keeps them.
pub async fn update_dataset(
    registry: &Registry,
    project: ProjectId,
    actor: &Actor,
    name: &str,
    patch: DatasetPatch,
) -> ServiceResult<Dataset> {
    if let Some(description) = &patch.description {
        check_description(description)?;
    }
    Ok(registry
        .store
        .update_dataset(project, name, patch, actor)
        .await?)
}

/// Deletes dataset `name` with its items; refused while evaluations,
/// optimizations or gates use it, which archiving leaves intact.
pub async fn delete_dataset(
    registry: &Registry,
    project: ProjectId,
    actor: &Actor,
    name: &str,
) -> ServiceResult<()> {
    Ok(registry.store.delete_dataset(project, name, actor).await?)
}

pub async fn get_dataset(
    registry: &Registry,
    project: ProjectId,
    name: &str,
) -> ServiceResult<Dataset> {
    Ok(registry.store.get_dataset(project, name).await?)
}

pub async fn list_items(
    registry: &Registry,
    project: ProjectId,
    name: &str,
    page: PageRequest,
) -> ServiceResult<Page<DatasetItem>> {
    Ok(registry.store.list_items(project, name, page).await?)
}

/// Appends every item `upload` holds to dataset `name`, all or nothing, and
/// answers the dataset after with how many items were added.
pub async fn append_items(
    registry: &Registry,
    project: ProjectId,
    actor: &Actor,
    name: &str,
    format: UploadFormat,
    upload: impl AsyncRead + Send + Unpin + 'static,
) -> ServiceResult<(Dataset, i64)> {
    let before = registry.store.get_dataset(project, name).await?;
    let (sender, receiver) = mpsc::channel::<Result<Vec<NewItem>, ItemError>>(2);
    let bridge = tokio_util::io::SyncIoBridge::new(upload);
    // The parsers are synchronous (serde_json, csv): they run on a blocking
    // thread and hand batches over a small channel, which bounds memory.
    let parser = tokio::task::spawn_blocking(move || parse_items(format, bridge, &sender));
    let batches = futures::stream::unfold(receiver, |mut receiver| async move {
        receiver.recv().await.map(|batch| (batch, receiver))
    })
    .boxed();
    let stored = registry
        .store
        .append_items(project, name, batches, actor)
        .await;
    // The parser ends once the store stops listening; it never outlives the call.
    let _ = parser.await;
    let dataset = stored?;
    let added = dataset.item_count - before.item_count;
    Ok((dataset, added))
}

/// Bad items a preview lists at most; the rest are only counted.
pub const PREVIEW_ERRORS: usize = 100;

/// What an upload would store, read without writing anything: its first
/// items, how many items parse, and every bad item's error (the first
/// [`PREVIEW_ERRORS`] of them listed).
#[derive(Debug, Clone, PartialEq)]
pub struct UploadPreview {
    pub first: Vec<NewItem>,
    /// Items that parse, in all.
    pub valid: u64,
    pub errors: Vec<ItemError>,
    /// Bad items beyond those listed.
    pub more_errors: u64,
}

impl UploadPreview {
    pub fn is_clean(&self) -> bool {
        self.errors.is_empty()
    }
}

/// Parses `upload` as [`append_items`] would, keeping the first `shown`
/// items and reading on past bad items to report each of them. A JSON
/// array that is not well-formed JSON cannot be read past its first syntax
/// error, which is then the last error listed.
pub fn preview_items(format: UploadFormat, upload: &[u8], shown: usize) -> UploadPreview {
    let mut preview = UploadPreview {
        first: Vec::new(),
        valid: 0,
        errors: Vec::new(),
        more_errors: 0,
    };
    let mut emit = |item: Result<NewItem, ItemError>| -> bool {
        match item {
            Ok(item) => {
                preview.valid += 1;
                if preview.first.len() < shown {
                    preview.first.push(item);
                }
            }
            Err(e) if preview.errors.len() < PREVIEW_ERRORS => preview.errors.push(e),
            Err(_) => preview.more_errors += 1,
        }
        true
    };
    match format {
        UploadFormat::JsonLines => json_lines(upload, &mut emit),
        UploadFormat::JsonArray => json_array(upload, &mut emit),
        UploadFormat::Csv => csv_rows(upload, &mut emit),
    };
    preview
}

/// Reads every item of an upload, sending full batches as they fill up.
/// Stops at the first bad item (sending its error) or when nobody listens.
fn parse_items(
    format: UploadFormat,
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
        UploadFormat::JsonLines => json_lines(reader, &mut emit),
        UploadFormat::JsonArray => json_array(reader, &mut emit),
        UploadFormat::Csv => csv_rows(reader, &mut emit),
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
    if let Some(path) = text::nul_path(&value) {
        let field = text::field_name(&path, "item");
        return Err(fail(format!("`{field}` {}", text::NUL_MESSAGE)));
    }
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
        if text::has_nul(name) {
            return emit(Err(item_error(
                1,
                Some(1),
                format!("column {} of the header {}", i + 1, text::NUL_MESSAGE),
            )));
        }
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
        let parsed = record.map_err(|e| csv_error(item, &e)).and_then(|record| {
            if let Some(column) = record.iter().position(text::has_nul) {
                let line = record.position().map(|p| p.line());
                let header = headers.get(column).unwrap_or_default();
                return Err(item_error(
                    item,
                    line,
                    format!("column `{header}` {}", text::NUL_MESSAGE),
                ));
            }
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
            Ok(new)
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

/// A dataset as its page shows it: one page of items and the latest
/// evaluations that ran on it.
#[derive(Debug, Clone, PartialEq)]
pub struct DatasetOverview {
    pub dataset: Dataset,
    pub items: Page<DatasetItem>,
    pub evaluations: Page<super::evaluations::EvaluationSummary>,
}

/// Dataset `name`, a page of its items and its latest evaluations (up to
/// `evaluations`, newest first).
pub async fn overview(
    registry: &Registry,
    project: ProjectId,
    name: &str,
    items: PageRequest,
    evaluations: u32,
) -> ServiceResult<DatasetOverview> {
    let dataset = registry.store.get_dataset(project, name).await?;
    let items = registry.store.list_items(project, name, items).await?;
    let filter = crate::domain::jobs::EvaluationFilter {
        dataset: Some(dataset.name.clone()),
        ..Default::default()
    };
    let evaluations = super::evaluations::list(
        registry,
        project,
        &filter,
        PageRequest {
            limit: evaluations,
            after: None,
        },
    )
    .await?;
    Ok(DatasetOverview {
        dataset,
        items,
        evaluations,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_preview_lists_every_bad_item_and_the_first_good_ones() {
        let upload = b"{\"input\": {\"q\": \"a\"}}\nnot json\n\n{\"input\": 3}\n{\"input\": {\"q\": \"b\"}}\n";
        let preview = preview_items(UploadFormat::JsonLines, upload, 1);
        assert_eq!(preview.valid, 2);
        assert_eq!(preview.first.len(), 1, "only as many as asked for");
        let found: Vec<(u64, Option<u64>)> =
            preview.errors.iter().map(|e| (e.item, e.line)).collect();
        assert_eq!(found, [(2, Some(2)), (3, Some(4))]);
        assert!(preview.errors[1]
            .message
            .contains("`input` must be an object"));
        assert!(!preview.is_clean());
    }

    #[test]
    fn a_preview_reads_csv_and_json_arrays() {
        let csv = preview_items(UploadFormat::Csv, b"q,expected\nx,y\nonly-one\n", 5);
        assert_eq!(csv.valid, 1);
        assert_eq!(csv.errors.len(), 1, "{:?}", csv.errors);
        assert_eq!(csv.errors[0].item, 2);

        let array = preview_items(
            UploadFormat::JsonArray,
            br#"[{"input": {"q": 1}}, {"nope": 1}, {"input": {"q": 2}}]"#,
            5,
        );
        assert_eq!(array.valid, 2);
        assert_eq!(array.errors.len(), 1);
        assert_eq!(array.errors[0].item, 2);
        assert!(preview_items(UploadFormat::JsonArray, b"[]", 5).is_clean());
    }
}
