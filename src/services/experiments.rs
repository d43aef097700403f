//! Online experiments: start a split of a label's traffic (each variant
//! other than the control passes the label's gate, as a promotion would),
//! ramp it, stop it (optionally promoting a variant through the gate), read
//! its statistics, and the guard that acts on them as feedback arrives.
//! Serving the split is the registry's hot path (`Registry::serve_version`).

use uuid::Uuid;

use crate::domain::auth::Actor;
use crate::domain::experiments::stats::{self, Comparison, Decision, Sample};
use crate::domain::experiments::{self, Direction, Experiment, ExperimentStatus};
use crate::domain::{LabelName, ProjectId, PromptName, VersionRef};
use crate::store::experiments::NewExperiment;

use super::{labels, FieldError, Registry, ServiceError, ServiceResult};

/// Who the guard's moves are recorded as.
pub const GUARD: &str = "guard";

/// An experiment with its statistics.
#[derive(Debug, Clone)]
pub struct ExperimentReport {
    pub experiment: Experiment,
    /// Per variant, in the experiment's order: its feedback on the metric,
    /// and (for treatments, once both have values) the comparison.
    pub samples: Vec<(Sample, Option<Comparison>)>,
}

/// Starts an experiment on `name`'s label `new.label`.
pub async fn start(
    registry: &Registry,
    project: ProjectId,
    actor: &Actor,
    name: &PromptName,
    new: NewExperiment,
) -> ServiceResult<Experiment> {
    check_new(&new)?;
    // Serving a variant to live traffic is a promotion: the gate decides.
    for (version, _) in new.variants.iter().skip(1) {
        let target = registry
            .get_version(project, name, &VersionRef::Exact(version.clone()))
            .await?;
        labels::check_gate(registry, project, name, &new.label, Some(&target)).await?;
    }
    Ok(registry
        .changed(registry.store.insert_experiment(project, name, new, actor))
        .await?)
}

fn check_new(new: &NewExperiment) -> ServiceResult<()> {
    let mut errors = Vec::new();
    let weights: Vec<u32> = new.variants.iter().map(|(_, w)| *w).collect();
    if let Err(message) = experiments::check_weights(&weights) {
        errors.push(FieldError::new("variants", message));
    }
    for (i, (version, _)) in new.variants.iter().enumerate() {
        if new.variants[..i].iter().any(|(v, _)| v == version) {
            errors.push(FieldError::new(
                format!("variants[{i}].version"),
                format!("version {version} is named twice"),
            ));
        }
    }
    if new.metric.trim().is_empty() || new.metric.len() > 100 {
        errors.push(FieldError::new(
            "metric",
            "a feedback name of 1 to 100 characters",
        ));
    }
    if new.min_samples == 0 {
        errors.push(FieldError::new("min_samples", "at least 1"));
    }
    if !(new.confidence > 0.5 && new.confidence < 1.0) {
        errors.push(FieldError::new(
            "confidence",
            "a number between 0.5 and 1 (exclusive)",
        ));
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ServiceError::Validation(errors))
    }
}

pub async fn list(
    registry: &Registry,
    project: ProjectId,
    prompt: Option<&PromptName>,
    status: Option<ExperimentStatus>,
) -> ServiceResult<Vec<Experiment>> {
    flush(registry).await;
    Ok(registry
        .store
        .list_experiments(project, prompt, status)
        .await?)
}

/// The experiment and its statistics; this replica's served counts are
/// written first, so they are current here.
pub async fn report(
    registry: &Registry,
    project: ProjectId,
    id: Uuid,
) -> ServiceResult<ExperimentReport> {
    flush(registry).await;
    let experiment = registry.store.get_experiment(project, id).await?;
    let sums = registry
        .store
        .feedback_sums(experiment.id, &experiment.metric)
        .await?;
    let sample_of = |version: &semver::Version| {
        let version = version.to_string();
        sums.iter()
            .find(|s| s.version == version)
            .map(|s| Sample {
                n: u64::try_from(s.n).unwrap_or(0),
                sum: s.sum,
                sum_sq: s.sum_sq,
            })
            .unwrap_or_default()
    };
    let test = stats::Test {
        alpha: 1.0 - experiment.confidence,
        min_samples: u64::from(experiment.min_samples),
        higher_is_better: experiment.direction == Direction::Higher,
        running: experiment.status == ExperimentStatus::Running,
    };
    let control = experiment
        .control()
        .map(|c| sample_of(&c.version))
        .unwrap_or_default();
    let samples = experiment
        .variants
        .iter()
        .enumerate()
        .map(|(i, variant)| {
            let sample = sample_of(&variant.version);
            let comparison = (i > 0)
                .then(|| stats::compare(&control, &sample, test))
                .flatten();
            (sample, comparison)
        })
        .collect();
    Ok(ExperimentReport {
        experiment,
        samples,
    })
}

/// New weights for a running experiment: every variant named once.
pub async fn ramp(
    registry: &Registry,
    project: ProjectId,
    actor: &Actor,
    id: Uuid,
    weights: Vec<(semver::Version, u32)>,
) -> ServiceResult<Experiment> {
    let experiment = registry.store.get_experiment(project, id).await?;
    let mut ordered = Vec::with_capacity(experiment.variants.len());
    for variant in &experiment.variants {
        let named: Vec<u32> = weights
            .iter()
            .filter(|(v, _)| *v == variant.version)
            .map(|(_, w)| *w)
            .collect();
        match named[..] {
            [weight] => ordered.push(weight),
            _ => {
                return Err(ServiceError::validation(
                    "variants",
                    format!(
                        "name each of the experiment's versions ({}) once",
                        experiment
                            .variants
                            .iter()
                            .map(|v| v.version.to_string())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ))
            }
        }
    }
    if weights.len() != ordered.len() {
        return Err(ServiceError::validation(
            "variants",
            "name only the experiment's versions",
        ));
    }
    experiments::check_weights(&ordered).map_err(|m| ServiceError::validation("variants", m))?;
    Ok(registry
        .changed(registry.store.update_weights(project, id, &weights, actor))
        .await?)
}

/// Ends a running experiment; with `promote`, that variant becomes the
/// label's version first, through the gate (a refusal leaves it running).
pub async fn stop(
    registry: &Registry,
    project: ProjectId,
    actor: &Actor,
    id: Uuid,
    promote: Option<semver::Version>,
) -> ServiceResult<Experiment> {
    flush(registry).await;
    let experiment = registry.store.get_experiment(project, id).await?;
    if experiment.status != ExperimentStatus::Running {
        return Err(crate::store::StoreError::ExperimentEnded(experiment.status).into());
    }
    let status = match promote {
        None => ExperimentStatus::Stopped,
        Some(version) => {
            if !experiment.variants.iter().any(|v| v.version == version) {
                return Err(ServiceError::validation(
                    "promote",
                    format!("version {version} is not one of the experiment's variants"),
                ));
            }
            promote_variant(registry, project, actor, &experiment, &version).await?;
            ExperimentStatus::Promoted
        }
    };
    Ok(registry
        .changed(registry.store.end_experiment(project, id, status, actor))
        .await?)
}

async fn promote_variant(
    registry: &Registry,
    project: ProjectId,
    actor: &Actor,
    experiment: &Experiment,
    version: &semver::Version,
) -> ServiceResult<()> {
    let (name, label) = names_of(experiment)?;
    labels::move_label(registry, project, actor, &name, &label, version).await?;
    Ok(())
}

fn names_of(experiment: &Experiment) -> ServiceResult<(PromptName, LabelName)> {
    let corrupt = |what: &str| {
        ServiceError::Internal(anyhow::anyhow!(
            "experiment {}: stored {what} is invalid",
            experiment.id
        ))
    };
    Ok((
        PromptName::parse(&experiment.prompt).map_err(|_| corrupt("prompt name"))?,
        LabelName::parse(&experiment.label).map_err(|_| corrupt("label"))?,
    ))
}

/// Writes this replica's served counts; a failure is logged and the counts
/// wait for the next flush.
pub async fn flush(registry: &Registry) {
    if let Err(e) = registry.flush_served().await {
        tracing::warn!(error = %e, "cannot write experiments' served counts");
    }
}

/// Acts on an experiment's statistics, as feedback arrives: once each
/// variant has `min_samples` values, a treatment confidently worse than
/// the control leaves the split (its weight goes to the control, a move by
/// `guard`), and the experiment ends `rolled_back` when no treatment is
/// left; with `auto_promote`, a treatment confidently better becomes the
/// label's version through the gate and the experiment ends `promoted`.
pub async fn guard(registry: &Registry, project: ProjectId, id: Uuid) -> ServiceResult<()> {
    let report = report(registry, project, id).await?;
    let experiment = &report.experiment;
    if experiment.status != ExperimentStatus::Running {
        return Ok(());
    }
    let guard = Actor {
        key_id: None,
        key_name: GUARD.to_owned(),
    };
    let mut weights: Vec<u32> = experiment.variants.iter().map(|v| v.weight).collect();
    let mut removed = false;
    for (i, (_, comparison)) in report.samples.iter().enumerate().skip(1) {
        let decision = comparison.map(|c| c.decision);
        if decision == Some(Decision::Better) && experiment.auto_promote {
            let version = &experiment.variants[i].version;
            match promote_variant(registry, project, &guard, experiment, version).await {
                Ok(()) => {
                    registry
                        .changed(registry.store.end_experiment(
                            project,
                            id,
                            ExperimentStatus::Promoted,
                            &guard,
                        ))
                        .await?;
                    return Ok(());
                }
                // The gate may refuse: the experiment goes on.
                Err(ServiceError::GateFailed { reason, .. }) => {
                    tracing::info!(experiment = %id, %reason, "the guard's promotion was refused by the gate");
                }
                Err(other) => return Err(other),
            }
        }
        if decision == Some(Decision::Worse) && experiment.rollback_if_worse && weights[i] > 0 {
            weights[0] += weights[i];
            weights[i] = 0;
            removed = true;
        }
    }
    if !removed {
        return Ok(());
    }
    let named: Vec<(semver::Version, u32)> = experiment
        .variants
        .iter()
        .zip(&weights)
        .map(|(v, w)| (v.version.clone(), *w))
        .collect();
    registry
        .changed(registry.store.update_weights(project, id, &named, &guard))
        .await?;
    if weights.iter().skip(1).all(|w| *w == 0) {
        registry
            .changed(registry.store.end_experiment(
                project,
                id,
                ExperimentStatus::RolledBack,
                &guard,
            ))
            .await?;
    }
    Ok(())
}
