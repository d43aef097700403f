//! Monitors on labels: set, read and remove them, and the check that runs
//! as feedback arrives (within the request that brings it, like the
//! experiment guard). A check compares the label's version's mean over the
//! window with the version before it, or with the version's own first
//! window, using the guard's anytime-valid test (`domain::monitors::judge`);
//! a confident drop of more than `max_drop` fires the monitor once per
//! version: a note in the label's history, an audit entry and a
//! `monitor.fired` webhook event, and with `rollback` a rollback of the
//! label through the labels service, all by `monitor`.

use std::collections::BTreeSet;

use chrono::{DateTime, TimeDelta, Utc};
use serde_json::json;
use uuid::Uuid;

use crate::domain::auth::Actor;
use crate::domain::experiments::stats::Sample;
use crate::domain::monitors::{
    self, Monitor, MonitorAction, MonitorDecision, MonitorSpec, MonitorState, Side,
};
use crate::domain::{LabelName, ProjectId, PromptName};
use crate::store::monitors::Firing;

use super::labels::{self, Retreat};
use super::{FieldError, Registry, ServiceError, ServiceResult};

/// Who a monitor's notes and rollbacks are recorded as.
pub const MONITOR: &str = "monitor";

/// Creates or replaces the monitor on `label`; a replaced monitor keeps
/// its state (it does not fire again for a version it fired for).
pub async fn put_monitor(
    registry: &Registry,
    project: ProjectId,
    actor: &Actor,
    name: &PromptName,
    label: &LabelName,
    spec: MonitorSpec,
) -> ServiceResult<Monitor> {
    check_spec(&spec)?;
    Ok(registry
        .store
        .put_monitor(project, name, label, &spec, actor)
        .await?)
}

fn check_spec(spec: &MonitorSpec) -> ServiceResult<()> {
    let mut errors = Vec::new();
    if spec.feedback.trim().is_empty() || spec.feedback.len() > 100 {
        errors.push(FieldError::new(
            "feedback",
            "a feedback name of 1 to 100 characters",
        ));
    }
    if let Err(message) = monitors::parse_window(&spec.window) {
        errors.push(FieldError::new("window", message));
    }
    if spec.min_samples == 0 {
        errors.push(FieldError::new("min_samples", "at least 1"));
    }
    if !(spec.max_drop.is_finite() && spec.max_drop >= 0.0) {
        errors.push(FieldError::new(
            "max_drop",
            "a finite number, 0 or more (in the feedback's units)",
        ));
    }
    if !(spec.confidence > 0.5 && spec.confidence < 1.0) {
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

pub async fn get_monitor(
    registry: &Registry,
    project: ProjectId,
    name: &PromptName,
    label: &LabelName,
) -> ServiceResult<Monitor> {
    registry
        .store
        .find_monitor(project, name, label.as_str())
        .await?
        .ok_or_else(|| ServiceError::MonitorNotFound(label.to_string()))
}

pub async fn list_monitors(
    registry: &Registry,
    project: ProjectId,
    name: &PromptName,
) -> ServiceResult<Vec<Monitor>> {
    Ok(registry.store.list_monitors(project, name).await?)
}

pub async fn delete_monitor(
    registry: &Registry,
    project: ProjectId,
    actor: &Actor,
    name: &PromptName,
    label: &LabelName,
) -> ServiceResult<()> {
    if registry
        .store
        .delete_monitor(project, name, label, actor)
        .await?
    {
        Ok(())
    } else {
        Err(ServiceError::MonitorNotFound(label.to_string()))
    }
}

/// Checks every monitor watching feedback just stored: `touched` holds
/// (prompt id, version id, feedback name) of each new value. A failing
/// check is logged; the feedback stays stored.
pub async fn check_after_feedback(
    registry: &Registry,
    project: ProjectId,
    touched: &BTreeSet<(Uuid, Uuid, String)>,
) {
    for (prompt_id, version_id, name) in touched {
        let watching = match registry
            .store
            .monitors_on_version(*prompt_id, *version_id, name)
            .await
        {
            Ok(watching) => watching,
            Err(e) => {
                tracing::warn!(error = %e, "cannot find the monitors of a version");
                continue;
            }
        };
        for monitor in watching {
            if let Err(e) = check(registry, project, &monitor).await {
                tracing::warn!(prompt = %monitor.prompt, label = %monitor.label, error = %e, "a monitor's check failed");
            }
        }
    }
}

/// The two sides a check compares, as of `now`.
struct Sides {
    current: Side,
    current_sample: Sample,
    previous: Side,
    previous_sample: Sample,
    first_window: bool,
    /// The version a rollback returns to, when the label held one before.
    rollback_to: Option<String>,
}

/// Reads both sides: the current version's values over the last window
/// (never before it took the label), against the previous version's over
/// the window before the move; with no previous version, the current
/// version's first window after the move against its values since then.
async fn read_sides(
    registry: &Registry,
    monitor: &Monitor,
    now: DateTime<Utc>,
) -> ServiceResult<Option<Sides>> {
    let store = &registry.store;
    let Some(lineage) = store
        .label_lineage(monitor.prompt_id, &monitor.label)
        .await?
    else {
        return Ok(None);
    };
    let window = monitor.spec.window();
    let feedback = monitor.spec.feedback.as_str();
    // Feedback is stamped before the check runs; the bound is exclusive.
    let until = now + TimeDelta::microseconds(1);
    let (previous_version, previous_sample, current_from, first_window) = match &lineage.previous {
        Some((id, version)) => {
            let sample = store
                .version_feedback_sums(*id, feedback, lineage.since - window, lineage.since)
                .await?;
            (version.clone(), sample, lineage.since, false)
        }
        None => {
            let first_end = lineage.since + window;
            let sample = store
                .version_feedback_sums(
                    lineage.current_version_id,
                    feedback,
                    lineage.since,
                    first_end.min(until),
                )
                .await?;
            (lineage.current_version.clone(), sample, first_end, true)
        }
    };
    let current_from = current_from.max(now - window);
    let current_sample = if current_from < until {
        store
            .version_feedback_sums(lineage.current_version_id, feedback, current_from, until)
            .await?
    } else {
        Sample::default()
    };
    let side = |version: String, sample: &Sample| Side {
        version,
        n: i64::try_from(sample.n).unwrap_or(i64::MAX),
        mean: sample.mean(),
    };
    Ok(Some(Sides {
        current: side(lineage.current_version.clone(), &current_sample),
        current_sample,
        previous: side(previous_version.clone(), &previous_sample),
        previous_sample,
        first_window,
        rollback_to: lineage.previous.map(|(_, v)| v),
    }))
}

/// Checks one monitor now, and fires it on a confident drop.
async fn check(registry: &Registry, project: ProjectId, monitor: &Monitor) -> ServiceResult<()> {
    let now = Utc::now();
    let Some(sides) = read_sides(registry, monitor, now).await? else {
        return Ok(());
    };
    let (decision, comparison) =
        monitors::judge(&sides.previous_sample, &sides.current_sample, &monitor.spec);
    let state = MonitorState {
        checked_at: Some(now),
        decision: Some(decision),
        current: Some(sides.current.clone()),
        previous: Some(sides.previous.clone()),
        first_window: sides.first_window,
        fired_at: monitor.state.fired_at,
        fired_version: monitor.state.fired_version.clone(),
    };
    let already_fired = monitor.state.fired_version.as_deref() == Some(&sides.current.version);
    if decision != MonitorDecision::Dropped || already_fired {
        registry
            .store
            .record_monitor_check(monitor.prompt_id, &monitor.label, &state)
            .await?;
        return Ok(());
    }
    let name = PromptName::parse(&monitor.prompt).map_err(|_| corrupt(monitor, "prompt name"))?;
    let label = LabelName::parse(&monitor.label).map_err(|_| corrupt(monitor, "label"))?;
    let spec = &monitor.spec;
    let rolls_back = spec.action == MonitorAction::Rollback && sides.rollback_to.is_some();
    let baseline = if sides.first_window {
        format!("its own first {} window", spec.window)
    } else {
        format!("{}'s", sides.previous.version)
    };
    let what_next = match (spec.action, &sides.rollback_to) {
        (MonitorAction::Alert, _) => "alert only".to_owned(),
        (MonitorAction::Rollback, Some(to)) => format!("rolling back to {to}"),
        (MonitorAction::Rollback, None) => "no previous version to roll back to".to_owned(),
    };
    let note = format!(
        "monitor fired: {} mean {} (n {}) fell below {baseline} {} (n {}) by more than {}; {what_next}",
        spec.feedback,
        shown(sides.current.mean),
        sides.current.n,
        shown(sides.previous.mean),
        sides.previous.n,
        spec.max_drop,
    );
    let data = json!({
        "prompt": monitor.prompt,
        "label": monitor.label,
        "feedback": spec.feedback,
        "window": spec.window,
        "version": sides.current.version,
        "current": {"version": sides.current.version, "n": sides.current.n, "mean": sides.current.mean},
        "previous": {"version": sides.previous.version, "n": sides.previous.n, "mean": sides.previous.mean,
                     "first_window": sides.first_window},
        "difference": comparison.map(|c| c.difference),
        "interval": comparison.map(|c| [c.interval.0, c.interval.1]),
        "max_drop": spec.max_drop,
        "action": spec.action.as_str(),
        "rolled_back_to": if rolls_back { sides.rollback_to.clone() } else { None },
        "by": MONITOR,
    });
    let actor = Actor {
        key_id: None,
        key_name: MONITOR.to_owned(),
    };
    let fired = registry
        .store
        .fire_monitor(
            project,
            &name,
            &monitor.label,
            &state,
            &Firing { note, data },
            &actor,
        )
        .await?;
    if fired && rolls_back {
        labels::retreat_label(registry, project, &actor, &name, &label, Retreat::Rollback).await?;
    }
    Ok(())
}

fn shown(mean: Option<f64>) -> String {
    mean.map_or_else(|| "none".to_owned(), |m| format!("{m:.4}"))
}

fn corrupt(monitor: &Monitor, what: &str) -> ServiceError {
    ServiceError::Internal(anyhow::anyhow!(
        "monitor {}/{}: stored {what} is invalid",
        monitor.prompt,
        monitor.label
    ))
}
