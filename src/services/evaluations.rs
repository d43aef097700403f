//! Evaluations: a version run over a dataset with a provider and scored by
//! metrics, queued as a durable job in the transaction that creates it;
//! their results, aggregates and comparisons.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{Map, Value};
use uuid::Uuid;

use crate::domain::auth::Actor;
use crate::domain::content::{diff_lines, DiffBlock, PromptBody};
use crate::domain::jobs::{
    Evaluation, EvaluationFilter, ItemResult, MetricSpec, NewEvaluation, ResultTotals, StoredResult,
};
use crate::domain::names::LATEST;
use crate::domain::{
    Engine, LabelName, Page, ProjectId, PromptContent, PromptName, Version, VersionRef,
};
use crate::eval::judge::{default_template, JudgeSpec, Rubric, LLM_JUDGE};
use crate::eval::report::Scores;
use crate::eval::stats::{summarize_moments, Comparison, Summary};
use crate::providers::Providers;
use crate::store::{page_from_overfetch, NewPrompt, NewVersion, PageKey, PageRequest, StoreError};

use super::drafts::Changes;
use super::{Registry, ServiceError, ServiceResult};

const DEFAULT_CONCURRENCY: u32 = 8;
const MAX_CONCURRENCY: u32 = 256;
/// Tries per evaluation job before it counts as failed.
const MAX_ATTEMPTS: i32 = 3;

/// What to evaluate, as a caller asks for it.
#[derive(Debug, Clone)]
pub struct EvaluationSpec {
    pub prompt: PromptName,
    pub reference: VersionRef,
    pub dataset: String,
    pub provider: String,
    pub model: Option<String>,
    pub params: Map<String, Value>,
    pub metrics: Vec<MetricSpec>,
    pub concurrency: Option<u32>,
}

/// Why `name` cannot be used as a provider, or `None` when it is configured.
pub fn unknown_provider(providers: &Providers, name: &str) -> Option<String> {
    if providers.get(name).is_some() {
        return None;
    }
    let known: Vec<String> = providers.list().into_iter().map(|p| p.name).collect();
    Some(format!(
        "no provider named {name:?} is configured; configured: {}",
        if known.is_empty() {
            "none".to_owned()
        } else {
            known.join(", ")
        }
    ))
}

/// Queues an evaluation (answered before it runs; a worker runs it).
pub async fn start(
    registry: &Registry,
    providers: &Providers,
    project: ProjectId,
    actor: &Actor,
    mut spec: EvaluationSpec,
) -> ServiceResult<Evaluation> {
    pin_judges(registry, providers, project, actor, &mut spec.metrics).await?;
    let concurrency = spec.concurrency.unwrap_or(DEFAULT_CONCURRENCY);
    if !(1..=MAX_CONCURRENCY).contains(&concurrency) {
        return Err(ServiceError::validation(
            "concurrency",
            format!("1 to {MAX_CONCURRENCY}"),
        ));
    }
    if let Some(why) = unknown_provider(providers, &spec.provider) {
        return Err(ServiceError::ProviderNotFound(why));
    }
    let version = registry
        .get_version(project, &spec.prompt, &spec.reference)
        .await?;
    let dataset = registry.store.get_dataset(project, &spec.dataset).await?;
    let new = NewEvaluation {
        prompt_id: version.prompt_id,
        version_id: version.id,
        dataset_id: dataset.id,
        item_count: dataset.item_count,
        provider: spec.provider,
        model: spec.model,
        params: spec.params,
        metrics: spec.metrics,
        concurrency: concurrency as i32,
        max_attempts: MAX_ATTEMPTS,
        trace_parent: crate::telemetry::trace::current_traceparent(),
    };
    Ok(registry
        .store
        .insert_evaluation(project, new, actor)
        .await?)
}

/// Checks each LLM judge's provider, makes sure its judge prompt exists in
/// the registry (created from the rubric's default template the first time,
/// then the team's to edit), and pins the prompt's latest version.
async fn pin_judges(
    registry: &Registry,
    providers: &Providers,
    project: ProjectId,
    actor: &Actor,
    specs: &mut [MetricSpec],
) -> ServiceResult<()> {
    for (i, spec) in specs.iter_mut().enumerate() {
        if spec.name != LLM_JUDGE {
            continue;
        }
        let mut judge = JudgeSpec::parse(&spec.params)
            .map_err(|e| ServiceError::validation(format!("metrics[{i}]"), e))?;
        if providers.get(&judge.provider).is_none() {
            return Err(ServiceError::ProviderNotFound(format!(
                "metrics[{i}]: no provider named {:?} is configured",
                judge.provider
            )));
        }
        let name = PromptName::parse(&judge.prompt_name())
            .map_err(|e| ServiceError::invalid_name(&format!("metrics[{i}]"), e))?;
        let latest =
            LabelName::parse(LATEST).map_err(|e| ServiceError::Internal(anyhow::anyhow!("{e}")))?;
        let version = match registry
            .get_version(project, &name, &VersionRef::Label(latest))
            .await
        {
            Ok(version) => version,
            Err(StoreError::PromptNotFound(_)) => {
                create_judge_prompt(registry, project, actor, &name, judge.rubric).await?
            }
            Err(e) => return Err(e.into()),
        };
        judge.prompt_version = Some(version.version.to_string());
        spec.params = serde_json::to_value(&judge).unwrap_or(Value::Null);
    }
    Ok(())
}

async fn create_judge_prompt(
    registry: &Registry,
    project: ProjectId,
    actor: &Actor,
    name: &PromptName,
    rubric: Rubric,
) -> ServiceResult<Arc<Version>> {
    let prompt = NewPrompt {
        name: name.clone(),
        description: format!("LLM judge: {}", rubric.as_str()),
        tags: vec!["judge".to_owned()],
    };
    match registry.create_prompt(project, prompt, actor).await {
        Ok(_) | Err(StoreError::PromptExists(_)) => {}
        Err(e) => return Err(e.into()),
    }
    let content = PromptContent {
        body: PromptBody::Text(default_template(rubric)),
        engine: Engine::Handlebars,
        model_config: Map::new(),
        input_schema: None,
        output_schema: None,
    };
    let variables = crate::template::variables(content.engine, &content.body)?;
    let new = NewVersion {
        content,
        variables,
        message: Some("The default judge prompt; edit it like any other prompt".to_owned()),
        metadata: Map::new(),
        version: None,
        bump: None,
        parent: None,
        expected_latest: None,
        labels: Vec::new(),
    };
    let created = registry
        .changed(registry.store.create_version(project, name, new, actor))
        .await?;
    Ok(Arc::new(created.version))
}

/// An evaluation with its scores so far.
pub async fn get(
    registry: &Registry,
    project: ProjectId,
    id: Uuid,
) -> ServiceResult<(Evaluation, Scores)> {
    let evaluation = registry.store.get_evaluation(project, id).await?;
    let scores = Scores::load(&registry.store, &evaluation).await?;
    Ok((evaluation, scores))
}

/// An evaluation with what its results add up to: per metric the mean,
/// spread and interval, and the totals.
#[derive(Debug, Clone, PartialEq)]
pub struct EvaluationSummary {
    pub evaluation: Evaluation,
    pub metrics: BTreeMap<String, Summary>,
    pub totals: ResultTotals,
}

/// The project's evaluations that `filter` lets through, newest first,
/// each summed up by the database rather than read item by item.
pub async fn list(
    registry: &Registry,
    project: ProjectId,
    filter: &EvaluationFilter,
    page: PageRequest,
) -> ServiceResult<Page<EvaluationSummary>> {
    let page = registry
        .store
        .list_evaluations(project, filter, page)
        .await?;
    let items = page
        .items
        .into_iter()
        .map(|listing| EvaluationSummary {
            metrics: listing
                .metrics
                .into_iter()
                .map(|(metric, m)| {
                    let n = usize::try_from(m.n).unwrap_or(0);
                    (metric, summarize_moments(n, m.mean, m.squared_deviations))
                })
                .collect(),
            totals: listing.totals,
            evaluation: listing.evaluation,
        })
        .collect();
    Ok(Page {
        items,
        next_cursor: page.next_cursor,
    })
}

/// The evaluations of prompt `prompt`, as [`list`]; a prompt that does not
/// exist is not found rather than an empty list.
pub async fn list_of_prompt(
    registry: &Registry,
    project: ProjectId,
    prompt: &PromptName,
    filter: EvaluationFilter,
    page: PageRequest,
) -> ServiceResult<Page<EvaluationSummary>> {
    registry.get_prompt(project, prompt).await?;
    let filter = EvaluationFilter {
        prompt: Some(prompt.clone()),
        ..filter
    };
    list(registry, project, &filter, page).await
}

/// Per-item results in the order they completed.
pub async fn results(
    registry: &Registry,
    project: ProjectId,
    id: Uuid,
    page: PageRequest,
) -> ServiceResult<Page<StoredResult>> {
    let evaluation = registry.store.get_evaluation(project, id).await?;
    let after = match page.after {
        Some(PageKey::Int(id)) => id,
        _ => 0,
    };
    let results = registry
        .store
        .list_results(evaluation.id, after, page.limit + 1)
        .await?;
    Ok(page_from_overfetch(results, page.limit, |r| {
        PageKey::Int(r.id)
    }))
}

/// Two evaluations of one dataset compared item by item: per metric both
/// scored, the paired difference b − a.
pub async fn compare(
    registry: &Registry,
    project: ProjectId,
    a: Uuid,
    b: Uuid,
) -> ServiceResult<(Evaluation, Evaluation, BTreeMap<String, Comparison>)> {
    let paired = load_pair(registry, project, a, b).await?;
    let metrics = paired.a_scores.compare(&paired.b_scores);
    Ok((paired.a, paired.b, metrics))
}

/// Two evaluations with every score, refused unless they ran on one dataset.
struct Pair {
    a: Evaluation,
    a_scores: Scores,
    b: Evaluation,
    b_scores: Scores,
}

async fn load_pair(
    registry: &Registry,
    project: ProjectId,
    a: Uuid,
    b: Uuid,
) -> ServiceResult<Pair> {
    let (a, a_scores) = get(registry, project, a).await?;
    let (b, b_scores) = get(registry, project, b).await?;
    if a.dataset_id != b.dataset_id {
        return Err(ServiceError::validation(
            "b",
            format!(
                "evaluation a ran on dataset {:?} and b on {:?}; compare evaluations of one dataset",
                a.dataset_name, b.dataset_name
            ),
        ));
    }
    Ok(Pair {
        a,
        a_scores,
        b,
        b_scores,
    })
}

/// One item both evaluations scored, where they disagree: both results,
/// the item, and the metric whose scores differ most.
#[derive(Debug, Clone, PartialEq)]
pub struct Disagreement {
    pub item: Option<crate::domain::DatasetItem>,
    pub a: ItemResult,
    pub b: ItemResult,
    pub metric: String,
    /// b's score minus a's on `metric`.
    pub difference: f64,
    /// a's output against b's, by line and word.
    pub outputs: Vec<DiffBlock>,
}

/// Two evaluations compared as a page shows them: [`compare`]'s numbers,
/// the items they disagree on most, and how their prompt versions differ.
pub struct ComparisonDetail {
    pub a: Evaluation,
    pub b: Evaluation,
    pub metrics: BTreeMap<String, Comparison>,
    /// Largest score difference first.
    pub disagreements: Vec<Disagreement>,
    /// a's version against b's.
    pub versions: Changes,
}

/// Scores closer than this are the same (as the comparison's ties).
const SAME_SCORE: f64 = crate::eval::stats::TIE_TOLERANCE;

/// [`compare`], with the `most` items whose scores differ most (on any
/// metric both scored) and the diff of the two prompt versions.
pub async fn compare_detail(
    registry: &Registry,
    project: ProjectId,
    a: Uuid,
    b: Uuid,
    most: usize,
) -> ServiceResult<ComparisonDetail> {
    let paired = load_pair(registry, project, a, b).await?;
    let metrics = paired.a_scores.compare(&paired.b_scores);
    // Per item, the metric with the largest difference.
    let mut widest: BTreeMap<Uuid, (String, f64)> = BTreeMap::new();
    for (metric, a_scores) in &paired.a_scores.by_metric {
        let Some(b_scores) = paired.b_scores.by_metric.get(metric) else {
            continue;
        };
        for (item, a_score) in a_scores {
            let Some(b_score) = b_scores.get(item) else {
                continue;
            };
            let difference = b_score - a_score;
            if difference.abs() <= SAME_SCORE {
                continue;
            }
            let wider = widest
                .get(item)
                .is_none_or(|(_, known)| difference.abs() > known.abs());
            if wider {
                widest.insert(*item, (metric.clone(), difference));
            }
        }
    }
    let mut ranked: Vec<(Uuid, String, f64)> = widest
        .into_iter()
        .map(|(item, (metric, difference))| (item, metric, difference))
        .collect();
    ranked.sort_by(|x, y| y.2.abs().total_cmp(&x.2.abs()));
    ranked.truncate(most);
    let wanted: std::collections::BTreeSet<Uuid> = ranked.iter().map(|(item, ..)| *item).collect();
    let mut a_results = results_of_items(registry, &paired.a, &wanted).await?;
    let mut b_results = results_of_items(registry, &paired.b, &wanted).await?;
    let mut disagreements = Vec::with_capacity(ranked.len());
    for (item, metric, difference) in ranked {
        let (Some(a), Some(b)) = (a_results.remove(&item), b_results.remove(&item)) else {
            continue;
        };
        let item = registry
            .store
            .list_items_for_run(paired.a.dataset_id, a.item_seq - 1, a.item_seq, 1)
            .await?
            .into_iter()
            .next();
        disagreements.push(Disagreement {
            outputs: diff_lines(
                a.output.as_deref().unwrap_or_default(),
                b.output.as_deref().unwrap_or_default(),
            ),
            item,
            a,
            b,
            metric,
            difference,
        });
    }
    let version_of = |e: &Evaluation| VersionRef::Exact(e.version.clone());
    let prompt_of = |e: &Evaluation| {
        PromptName::parse(&e.prompt_name)
            .map_err(|err| ServiceError::Internal(anyhow::anyhow!("stored prompt name: {err}")))
    };
    let a_version = registry
        .get_version(project, &prompt_of(&paired.a)?, &version_of(&paired.a))
        .await?;
    let b_version = registry
        .get_version(project, &prompt_of(&paired.b)?, &version_of(&paired.b))
        .await?;
    Ok(ComparisonDetail {
        versions: Changes::between(&a_version, &b_version),
        a: paired.a,
        b: paired.b,
        metrics,
        disagreements,
    })
}

/// The results `evaluation` stored for the items in `wanted`, read page by
/// page (results are kept in the order they completed, not by item).
async fn results_of_items(
    registry: &Registry,
    evaluation: &Evaluation,
    wanted: &std::collections::BTreeSet<Uuid>,
) -> ServiceResult<BTreeMap<Uuid, ItemResult>> {
    let mut found = BTreeMap::new();
    let mut after = 0;
    while found.len() < wanted.len() {
        let batch = registry
            .store
            .list_results(evaluation.id, after, RESULT_SCAN)
            .await?;
        let Some(last) = batch.last() else { break };
        after = last.id;
        let ended = batch.len() < RESULT_SCAN as usize;
        for stored in batch {
            if wanted.contains(&stored.result.item_id) {
                found.insert(stored.result.item_id, stored.result);
            }
        }
        if ended {
            break;
        }
    }
    Ok(found)
}

/// Below this a score counts as failed, for pages that show failures only.
pub const FAILING_BELOW: f64 = 0.5;

/// Whether `result` failed: it carries an error, or a metric scored it
/// below [`FAILING_BELOW`].
pub fn is_failure(result: &crate::domain::jobs::ItemResult) -> bool {
    result.error.is_some()
        || result
            .scores
            .values()
            .filter_map(Value::as_f64)
            .any(|score| score < FAILING_BELOW)
}

/// A stored result with the dataset item it scored (absent only if the
/// item could not be read back).
#[derive(Debug, Clone, PartialEq)]
pub struct ResultWithItem {
    pub stored: StoredResult,
    pub item: Option<crate::domain::DatasetItem>,
}

/// An evaluation as its page shows it: every score (for summaries and
/// histograms) and one page of results with their items.
#[derive(Debug, Clone, PartialEq)]
pub struct EvaluationDetail {
    pub evaluation: Evaluation,
    pub scores: Scores,
    pub results: Page<ResultWithItem>,
}

/// Results read at once while looking for failures.
const RESULT_SCAN: u32 = 500;
/// The widest run of item positions read back in one query.
const ITEM_WINDOW: i64 = 200;

/// The order a page of results is shown in.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum ResultOrder {
    /// As the results were stored.
    #[default]
    Stored,
    /// By one metric's score, lowest (or highest, when `descending`) first;
    /// results without that score come last, ties in stored order.
    ByScore { metric: String, descending: bool },
}

/// Evaluation `id` with its scores and a page of results (only failures,
/// as [`is_failure`] tells, when `only_failures`) in `order`, each with
/// its item. A page's cursor is the id of its last result, in either order.
pub async fn detail(
    registry: &Registry,
    project: ProjectId,
    id: Uuid,
    page: PageRequest,
    only_failures: bool,
    order: &ResultOrder,
) -> ServiceResult<EvaluationDetail> {
    let (evaluation, scores) = get(registry, project, id).await?;
    let results = match order {
        ResultOrder::Stored => stored_order(registry, evaluation.id, page, only_failures).await?,
        ResultOrder::ByScore { metric, descending } => {
            let known = scores.by_metric.contains_key(metric)
                || evaluation.metrics.iter().any(|m| &m.name == metric);
            if !known {
                let mut names: Vec<&str> =
                    evaluation.metrics.iter().map(|m| m.name.as_str()).collect();
                names.extend(scores.by_metric.keys().map(String::as_str));
                names.sort_unstable();
                names.dedup();
                return Err(ServiceError::validation(
                    "sort",
                    format!(
                        "this evaluation has no metric {metric:?}; it has {}",
                        names.join(", ")
                    ),
                ));
            }
            score_order(
                registry,
                evaluation.id,
                page,
                only_failures,
                metric,
                *descending,
            )
            .await?
        }
    };
    let items = items_by_seq(
        registry,
        evaluation.dataset_id,
        results.items.iter().map(|r| r.result.item_seq).collect(),
    )
    .await?;
    let mut by_seq: BTreeMap<i64, crate::domain::DatasetItem> =
        items.into_iter().map(|item| (item.seq, item)).collect();
    let results = Page {
        next_cursor: results.next_cursor,
        items: results
            .items
            .into_iter()
            .map(|stored| ResultWithItem {
                item: by_seq.remove(&stored.result.item_seq),
                stored,
            })
            .collect(),
    };
    Ok(EvaluationDetail {
        evaluation,
        scores,
        results,
    })
}

/// A page of results in stored order.
async fn stored_order(
    registry: &Registry,
    evaluation: Uuid,
    page: PageRequest,
    only_failures: bool,
) -> ServiceResult<Page<StoredResult>> {
    let mut after = page.after_int().unwrap_or(0);
    let mut kept = Vec::new();
    // Filtering happens here, so read on until the page is full (one more
    // than it holds tells whether another follows) or the results end.
    loop {
        let batch = registry
            .store
            .list_results(evaluation, after, RESULT_SCAN)
            .await?;
        let Some(last) = batch.last() else { break };
        after = last.id;
        let ended = batch.len() < RESULT_SCAN as usize;
        kept.extend(
            batch
                .into_iter()
                .filter(|r| !only_failures || is_failure(&r.result)),
        );
        if ended || kept.len() > page.limit as usize {
            break;
        }
    }
    Ok(page_from_overfetch(kept, page.limit, |r| {
        PageKey::Int(r.id)
    }))
}

/// A page of results ordered by `metric`'s score. Reads the results twice:
/// once for every score (only ids and scores are kept), then for the page's.
async fn score_order(
    registry: &Registry,
    evaluation: Uuid,
    page: PageRequest,
    only_failures: bool,
    metric: &str,
    descending: bool,
) -> ServiceResult<Page<StoredResult>> {
    let mut keys: Vec<(Option<f64>, i64)> = Vec::new();
    let mut after = 0;
    loop {
        let batch = registry
            .store
            .list_results(evaluation, after, RESULT_SCAN)
            .await?;
        let Some(last) = batch.last() else { break };
        after = last.id;
        let ended = batch.len() < RESULT_SCAN as usize;
        keys.extend(
            batch
                .iter()
                .filter(|r| !only_failures || is_failure(&r.result))
                .map(|r| (r.result.scores.get(metric).and_then(Value::as_f64), r.id)),
        );
        if ended {
            break;
        }
    }
    keys.sort_by(|(a, a_id), (b, b_id)| {
        let by_score = match (a, b) {
            (Some(a), Some(b)) if descending => b.total_cmp(a),
            (Some(a), Some(b)) => a.total_cmp(b),
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (None, None) => std::cmp::Ordering::Equal,
        };
        by_score.then(a_id.cmp(b_id))
    });
    let start = match page.after_int() {
        None => 0,
        Some(last) => keys
            .iter()
            .position(|(_, id)| *id == last)
            .map_or(keys.len(), |at| at + 1),
    };
    let wanted: Vec<i64> = keys
        .iter()
        .skip(start)
        .take(page.limit as usize + 1)
        .map(|(_, id)| *id)
        .collect();
    let mut found: BTreeMap<i64, StoredResult> = BTreeMap::new();
    if let (Some(first), Some(last)) = (wanted.iter().min(), wanted.iter().max()) {
        let mut after = first - 1;
        while after < *last {
            let batch = registry
                .store
                .list_results(evaluation, after, RESULT_SCAN)
                .await?;
            let Some(end) = batch.last() else { break };
            after = end.id;
            found.extend(
                batch
                    .into_iter()
                    .filter(|r| wanted.contains(&r.id))
                    .map(|r| (r.id, r)),
            );
        }
    }
    let ordered = wanted.iter().filter_map(|id| found.remove(id)).collect();
    Ok(page_from_overfetch(ordered, page.limit, |r| {
        PageKey::Int(r.id)
    }))
}

/// The dataset items at positions `seqs`, read in windows of nearby
/// positions (a page sorted by score may hold items far apart).
async fn items_by_seq(
    registry: &Registry,
    dataset: Uuid,
    mut seqs: Vec<i64>,
) -> ServiceResult<Vec<crate::domain::DatasetItem>> {
    seqs.sort_unstable();
    seqs.dedup();
    let mut items = Vec::with_capacity(seqs.len());
    let mut rest = seqs.as_slice();
    while let Some(&first) = rest.first() {
        let window = rest.partition_point(|&seq| seq < first + ITEM_WINDOW);
        let last = rest[window - 1];
        let span = last - first + 1;
        let read = registry
            .store
            .list_items_for_run(
                dataset,
                first - 1,
                last,
                u32::try_from(span).unwrap_or(u32::MAX),
            )
            .await?;
        items.extend(
            read.into_iter()
                .filter(|item| rest[..window].contains(&item.seq)),
        );
        rest = &rest[window..];
    }
    Ok(items)
}

/// Cancels evaluation `id`'s job, as `POST /v1/jobs/{id}/cancel` does: a
/// queued one at once, a running one at its next step.
pub async fn cancel(
    registry: &Registry,
    project: ProjectId,
    actor: &Actor,
    id: Uuid,
) -> ServiceResult<crate::domain::jobs::Job> {
    let evaluation = registry.store.get_evaluation(project, id).await?;
    super::jobs::cancel_job(registry, project, actor, evaluation.job.id).await
}
