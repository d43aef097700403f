//! Labels: named pointers to versions, their history and rollback, and the
//! gates that guard them. [`move_label`] is the only way a label moves to a
//! chosen version, and [`check_gate`] the only place a gate is decided, so
//! every caller (the label route, a version post with labels, the Langfuse
//! routes, an optimization's promotion) gets the same answer;
//! [`gate_standings`] shows that same verdict for each label's version.

use crate::domain::auth::Actor;
use crate::domain::jobs::{Gate, GateRule};
use crate::domain::webhooks::{self, OutboxEvent};
use crate::domain::{
    Label, LabelMove, LabelName, Page, ProjectId, PromptName, Version, VersionRef,
};
use crate::eval::judge::is_judge_score;
use crate::eval::report::{self, Breach, GateVerdict};
use crate::eval::METRIC_NAMES;
use crate::store::PageRequest;

use super::{FieldError, Registry, ServiceError, ServiceResult};

pub async fn list_labels(
    registry: &Registry,
    project: ProjectId,
    name: &PromptName,
) -> ServiceResult<Vec<Label>> {
    Ok(registry.list_labels(project, name).await?)
}

/// Points `label` at `version`, once the label's gate (if any) passes.
pub async fn move_label(
    registry: &Registry,
    project: ProjectId,
    actor: &Actor,
    name: &PromptName,
    label: &LabelName,
    version: &semver::Version,
) -> ServiceResult<Label> {
    let moved = move_labels(
        registry,
        project,
        actor,
        name,
        std::slice::from_ref(label),
        version,
    )
    .await?;
    moved
        .into_iter()
        .next()
        .ok_or_else(|| ServiceError::Internal(anyhow::anyhow!("a label move answered nothing")))
}

/// Points every label of `labels` at `version`, once all their gates pass:
/// either every gate passes and each label moves, or none moves.
pub async fn move_labels(
    registry: &Registry,
    project: ProjectId,
    actor: &Actor,
    name: &PromptName,
    labels: &[LabelName],
    version: &semver::Version,
) -> ServiceResult<Vec<Label>> {
    let target = registry
        .get_version(project, name, &VersionRef::Exact(version.clone()))
        .await?;
    for label in labels {
        if let Err(refused) = check_gate(registry, project, name, label, Some(&target)).await {
            report_gate_failure(registry, project, actor, name, label, version, &refused).await;
            return Err(refused);
        }
    }
    let mut moved = Vec::with_capacity(labels.len());
    for label in labels {
        moved.push(
            registry
                .changed(
                    registry
                        .store
                        .set_label(project, name, label, version, actor),
                )
                .await?,
        );
    }
    Ok(moved)
}

/// Tells webhooks of a move a gate refused (`gate.failed`). The refusal
/// stands whether or not this is written: a failure here is logged.
async fn report_gate_failure(
    registry: &Registry,
    project: ProjectId,
    actor: &Actor,
    name: &PromptName,
    label: &LabelName,
    version: &semver::Version,
    refused: &ServiceError,
) {
    let ServiceError::GateFailed { reason, failed, .. } = refused else {
        return;
    };
    let event = OutboxEvent::new(
        webhooks::GATE_FAILED,
        Some(name.as_str()),
        serde_json::json!({
            "prompt": name.as_str(),
            "label": label.as_str(),
            "version": version.to_string(),
            "reason": reason,
            "failed": failed,
            "by": actor.key_name,
        }),
    );
    if let Err(e) = registry.store.record_event(project, &event).await {
        tracing::warn!(error = %e, "cannot record the gate.failed event");
    }
}

/// A label move no gate guards: back to the label's previous target, or
/// away (the label is deleted). Rollbacks skip the gate on purpose: they
/// return to a version the label already held, and an emergency rollback
/// must never wait for an evaluation.
#[derive(Debug, Clone, Copy)]
pub enum Retreat {
    Rollback,
    Delete,
}

pub async fn retreat_label(
    registry: &Registry,
    project: ProjectId,
    actor: &Actor,
    name: &PromptName,
    label: &LabelName,
    how: Retreat,
) -> ServiceResult<Label> {
    let store = &registry.store;
    let write = match how {
        Retreat::Rollback => store.rollback_label(project, name, label, actor),
        Retreat::Delete => store.delete_label(project, name, label, actor),
    };
    Ok(registry.changed(write).await?)
}

pub async fn label_history(
    registry: &Registry,
    project: ProjectId,
    name: &PromptName,
    label: &LabelName,
    page: PageRequest,
) -> ServiceResult<Page<LabelMove>> {
    Ok(registry
        .store
        .list_label_moves(project, name, label, page)
        .await?)
}

/// Refuses (`GateFailed`) to point `label` at `candidate` unless the label
/// has no gate, or a succeeded evaluation of that version on the gate's
/// dataset meets every rule. `None` is a version about to be created, which
/// cannot have been evaluated yet.
pub async fn check_gate(
    registry: &Registry,
    project: ProjectId,
    name: &PromptName,
    label: &LabelName,
    candidate: Option<&Version>,
) -> ServiceResult<()> {
    let store = &registry.store;
    let Some(gate) = store.find_gate(project, name, label.as_str()).await? else {
        return Ok(());
    };
    let verdict = match candidate {
        Some(version) => report::check_gate(store, &gate, version).await?,
        None => GateVerdict::NotEvaluated,
    };
    let failed = |reason: String, failed: Vec<FieldError>| ServiceError::GateFailed {
        label: label.to_string(),
        reason,
        failed,
    };
    let subject = match candidate {
        Some(version) => format!("version {}", version.version),
        None => "a new version".to_owned(),
    };
    let dataset = &gate.dataset_name;
    // Each entry names its rule (metric and bound) and says why it fails,
    // so a reader need not look the gate up.
    let rule_error = |i: usize, why: String| {
        let rule = gate
            .rules
            .get(i)
            .map_or_else(|| format!("rule {i}"), ToString::to_string);
        FieldError::new(format!("rules[{i}]"), format!("{rule}: {why}"))
    };
    if verdict.passed() {
        return Ok(());
    }
    match &verdict {
        GateVerdict::NotEvaluated => {
            let why = format!("{subject} has no succeeded evaluation on dataset {dataset:?}");
            let errors = (0..gate.rules.len())
                .map(|i| rule_error(i, why.clone()))
                .collect();
            Err(failed(why, errors))
        }
        GateVerdict::Evaluated { evaluation, .. } => {
            let violations = verdict.violations();
            let reason = format!(
                "{subject} breaks {} of {} rules on dataset {dataset:?} (evaluation {evaluation})",
                violations.len(),
                gate.rules.len()
            );
            let errors = violations
                .into_iter()
                .map(|(i, breach)| {
                    let why = match breach {
                        Breach::Mean(mean) => format!(
                            "{subject} scored a mean of {mean:.4} on dataset {dataset:?} (evaluation {evaluation})"
                        ),
                        Breach::NoScores => {
                            let metric = gate.rules.get(i).map_or("its metric", |r| &r.metric);
                            format!(
                                "evaluation {evaluation} of {subject} on dataset {dataset:?} has no {metric} scores"
                            )
                        }
                    };
                    rule_error(i, why)
                })
                .collect();
            Err(failed(reason, errors))
        }
    }
}

/// A label, or a gate on a label not set yet, with what its gate says of
/// the version the label points at now.
#[derive(Debug, Clone)]
pub struct GateStanding {
    pub label: String,
    /// The label's version; none while the label is not set.
    pub version: Option<semver::Version>,
    pub gate: Option<Gate>,
    /// The gate's verdict on `version`, decided as [`check_gate`] decides
    /// a move; none without a gate or a version.
    pub verdict: Option<GateVerdict>,
}

/// Every label of `name` and every gate, each with its gate's verdict on
/// the label's current version: set labels first (by name), then gates on
/// labels not set.
pub async fn gate_standings(
    registry: &Registry,
    project: ProjectId,
    name: &PromptName,
) -> ServiceResult<Vec<GateStanding>> {
    let store = &registry.store;
    let labels = registry.list_labels(project, name).await?;
    let mut gates = store.list_gates(project, name).await?;
    let mut standings = Vec::with_capacity(labels.len() + gates.len());
    for label in labels {
        let gate = gates
            .iter()
            .position(|g| g.label == label.name)
            .map(|i| gates.remove(i));
        let verdict = match &gate {
            Some(gate) => {
                let version = registry
                    .get_version(project, name, &VersionRef::Exact(label.version.clone()))
                    .await?;
                Some(report::check_gate(store, gate, &version).await?)
            }
            None => None,
        };
        standings.push(GateStanding {
            label: label.name,
            version: Some(label.version),
            gate,
            verdict,
        });
    }
    standings.extend(gates.into_iter().map(|gate| GateStanding {
        label: gate.label.clone(),
        version: None,
        gate: Some(gate),
        verdict: None,
    }));
    Ok(standings)
}

/// Creates or replaces the gate on `label`.
pub async fn put_gate(
    registry: &Registry,
    project: ProjectId,
    actor: &Actor,
    name: &PromptName,
    label: &LabelName,
    dataset: &str,
    rules: &[GateRule],
) -> ServiceResult<Gate> {
    check_rules(rules)?;
    Ok(registry
        .store
        .put_gate(project, name, label, dataset, rules, actor)
        .await?)
}

pub async fn list_gates(
    registry: &Registry,
    project: ProjectId,
    name: &PromptName,
) -> ServiceResult<Vec<Gate>> {
    Ok(registry.store.list_gates(project, name).await?)
}

pub async fn delete_gate(
    registry: &Registry,
    project: ProjectId,
    actor: &Actor,
    name: &PromptName,
    label: &LabelName,
) -> ServiceResult<()> {
    if registry
        .store
        .delete_gate(project, name, label, actor)
        .await?
    {
        Ok(())
    } else {
        Err(ServiceError::GateNotFound(label.to_string()))
    }
}

fn check_rules(rules: &[GateRule]) -> ServiceResult<()> {
    if rules.is_empty() {
        return Err(ServiceError::validation("rules", "give at least one rule"));
    }
    let mut errors = Vec::new();
    for (i, rule) in rules.iter().enumerate() {
        let field = format!("rules[{i}]");
        if !(METRIC_NAMES.contains(&rule.metric.as_str()) || is_judge_score(&rule.metric)) {
            errors.push(FieldError::new(
                &field,
                format!(
                    "unknown metric {:?}; known: {} and llm_judge_<rubric>",
                    rule.metric,
                    METRIC_NAMES.join(", ")
                ),
            ));
        }
        if rule.min.is_none() && rule.max.is_none() {
            errors.push(FieldError::new(&field, "give `min`, `max` or both"));
        }
        if [rule.min, rule.max]
            .into_iter()
            .flatten()
            .any(|b| !b.is_finite())
        {
            errors.push(FieldError::new(&field, "bounds are finite numbers"));
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ServiceError::Validation(errors))
    }
}
