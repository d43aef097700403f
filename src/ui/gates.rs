//! A prompt's gates page: each label's gate (dataset and rules) and what it
//! says of the version the label points at now (the verdict a label move
//! would get, with the evaluation it rests on and each rule's mean), and
//! for the promote role the forms that set, change and remove a gate
//! through the same service as `PUT`/`DELETE /v1/prompts/{name}/gates/{label}`.
//! A refused form shows the page again with the problems beside its fields.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use serde::{Deserialize, Serialize};

use super::datasets::dataset_url;
use super::evaluations::evaluation_url;
use super::prompts::authorize;
use super::session::{Posted, Signed};
use super::{prompt_url, render, Me, UiError};
use crate::api::extract::{label_name, prompt_name, Path};
use crate::api::AppState;
use crate::domain::auth::Scope;
use crate::domain::jobs::{Gate, GateRule};
use crate::domain::PromptName;
use crate::error::ApiError;
use crate::eval::report::{Breach, GateVerdict};
use crate::eval::METRIC_NAMES;
use crate::services::labels::{self, GateStanding};
use crate::services::sessions::SignedIn;
use crate::services::ServiceError;
use crate::store::StoreError;

/// Rule rows a gate form offers at most.
const MAX_RULES: usize = 12;
/// Empty rule rows a gate form offers beyond the gate's rules.
const SPARE_RULES: usize = 1;
/// Rule rows of the form that adds a gate.
const NEW_GATE_RULES: usize = 3;

pub fn gates_url(name: &str) -> String {
    format!("{}/gates", prompt_url(name))
}

#[derive(Serialize)]
struct GatesPage<'a> {
    me: Me<'a>,
    section: &'static str,
    name: String,
    url: String,
    gates_url: String,
    gated: Vec<GatedLabel>,
    /// Labels without a gate: (label, version).
    ungated: Vec<(String, String)>,
    /// The form that adds a gate (promote role only).
    new_gate: Option<GateForm>,
    metric_names: &'static [&'static str],
    /// Why a form was refused, when it names no field.
    refusal: Option<String>,
}

#[derive(Serialize)]
struct GatedLabel {
    label: String,
    version: Option<String>,
    version_url: Option<String>,
    dataset: String,
    dataset_url: String,
    /// `passes`, `fails` or `not set`.
    state: &'static str,
    /// The verdict in words.
    verdict: String,
    evaluation_url: Option<String>,
    rules: Vec<RuleView>,
    /// The form that changes this gate (promote role only).
    form: Option<GateForm>,
}

#[derive(Serialize)]
struct RuleView {
    rule: String,
    mean: Option<String>,
    /// `passes`, `fails`, or `–` when nothing was checked.
    outcome: &'static str,
}

/// A gate form's fields, as shown or as posted.
#[derive(Serialize, Default)]
struct GateForm {
    /// Makes the fields' ids unique on the page.
    key: String,
    label: String,
    /// The label is fixed (the form changes an existing gate).
    existing: bool,
    dataset: String,
    rules: Vec<RuleRow>,
    label_error: Option<String>,
    dataset_error: Option<String>,
    rules_error: Option<String>,
    /// Shown open: it was posted and refused.
    open: bool,
}

#[derive(Serialize, Default, Clone)]
struct RuleRow {
    metric: String,
    min: String,
    max: String,
    error: Option<String>,
}

fn bound(value: Option<f64>) -> String {
    value.map(|v| v.to_string()).unwrap_or_default()
}

fn padded(mut rows: Vec<RuleRow>, at_least: usize) -> Vec<RuleRow> {
    let wanted = (rows.len() + SPARE_RULES).max(at_least).min(MAX_RULES);
    rows.resize(wanted.max(rows.len()), RuleRow::default());
    rows
}

fn gate_form(key: String, gate: &Gate) -> GateForm {
    let rules = gate
        .rules
        .iter()
        .map(|r| RuleRow {
            metric: r.metric.clone(),
            min: bound(r.min),
            max: bound(r.max),
            error: None,
        })
        .collect();
    GateForm {
        key,
        label: gate.label.clone(),
        existing: true,
        dataset: gate.dataset_name.clone(),
        rules: padded(rules, 0),
        ..GateForm::default()
    }
}

fn new_gate_form() -> GateForm {
    GateForm {
        key: "new".to_owned(),
        rules: padded(Vec::new(), NEW_GATE_RULES),
        ..GateForm::default()
    }
}

fn gated_label(
    name: &str,
    key: usize,
    standing: GateStanding,
    gate: Gate,
    can_promote: bool,
) -> GatedLabel {
    let version = standing.version.as_ref().map(ToString::to_string);
    let verdict = standing.verdict;
    let (state, words, evaluation) = match (&version, &verdict) {
        (None, _) | (_, None) => (
            "not set",
            "The label is not set; the gate applies to the version it is first set to.".to_owned(),
            None,
        ),
        (Some(version), Some(GateVerdict::NotEvaluated)) => (
            "fails",
            format!(
                "Fails: version {version} has no succeeded evaluation on dataset {}.",
                gate.dataset_name
            ),
            None,
        ),
        (Some(version), Some(verdict @ GateVerdict::Evaluated { evaluation, .. })) => {
            let broken = verdict.violations().len();
            if verdict.passed() {
                (
                    "passes",
                    format!(
                        "Passes: version {version} meets every rule in its latest evaluation on {}.",
                        gate.dataset_name
                    ),
                    Some(*evaluation),
                )
            } else {
                (
                    "fails",
                    format!(
                        "Fails: version {version} breaks {broken} of {} rules in its latest evaluation on {}.",
                        gate.rules.len(),
                        gate.dataset_name
                    ),
                    Some(*evaluation),
                )
            }
        }
    };
    let checks = match &verdict {
        Some(GateVerdict::Evaluated { checks, .. }) => Some(checks.as_slice()),
        _ => None,
    };
    let rules = gate
        .rules
        .iter()
        .enumerate()
        .map(|(i, rule)| {
            let check = checks.and_then(|c| c.get(i));
            RuleView {
                rule: rule.to_string(),
                mean: check.and_then(|c| c.mean).map(|m| format!("{m:.3}")),
                outcome: match (check, &verdict) {
                    (Some(c), _) if c.breach.is_none() => "passes",
                    (Some(c), _) if matches!(c.breach, Some(Breach::NoScores)) => {
                        "fails (no scores)"
                    }
                    (Some(_), _) | (None, Some(GateVerdict::NotEvaluated)) => "fails",
                    (None, _) => "–",
                },
            }
        })
        .collect();
    GatedLabel {
        version_url: version
            .as_ref()
            .map(|v| format!("{}/versions/{v}", prompt_url(name))),
        label: standing.label,
        version,
        dataset_url: dataset_url(&gate.dataset_name),
        state,
        verdict: words,
        evaluation_url: evaluation.map(evaluation_url),
        rules,
        form: can_promote.then(|| gate_form(key.to_string(), &gate)),
        dataset: gate.dataset_name,
    }
}

fn gates_page<'a>(
    session: &'a SignedIn,
    name: &PromptName,
    standings: Vec<GateStanding>,
    mut refused: Option<GateForm>,
    refusal: Option<String>,
) -> GatesPage<'a> {
    let can_promote = session.caller.has(Scope::Promote);
    let mut gated = Vec::new();
    let mut ungated = Vec::new();
    for mut standing in standings {
        match standing.gate.take() {
            Some(gate) => {
                let key = gated.len() + 1;
                let mut view = gated_label(name.as_str(), key, standing, gate, can_promote);
                if let Some(posted) = refused.take_if(|f| f.existing && f.label == view.label) {
                    view.form = Some(GateForm {
                        key: key.to_string(),
                        open: true,
                        ..posted
                    });
                }
                gated.push(view);
            }
            None => ungated.push((
                standing.label,
                standing.version.map(|v| v.to_string()).unwrap_or_default(),
            )),
        }
    }
    let new_gate = can_promote.then(|| match refused {
        Some(posted) => GateForm {
            key: "new".to_owned(),
            existing: false,
            ..posted
        },
        None => new_gate_form(),
    });
    GatesPage {
        me: Me::of(session),
        section: "prompts",
        url: prompt_url(name.as_str()),
        gates_url: gates_url(name.as_str()),
        name: name.to_string(),
        gated,
        ungated,
        new_gate,
        metric_names: METRIC_NAMES,
        refusal,
    }
}

pub async fn show_gates(
    State(state): State<AppState>,
    Signed(session): Signed,
    Path(name): Path<String>,
) -> Result<Response, UiError> {
    authorize(&state, &session, Scope::Read)?;
    let name = prompt_name(&name)?;
    let standings = labels::gate_standings(&state.registry, session.caller.project, &name).await?;
    Ok(render(
        StatusCode::OK,
        "gates.html",
        gates_page(&session, &name, standings, None, None),
    ))
}

/// A posted gate form, as its fields came: `label`, `dataset`, and per rule
/// row `metric-N`, `min-N` and `max-N`.
struct PostedGate {
    form: GateForm,
    /// The rules given, each with the row it came from.
    rules: Vec<(usize, GateRule)>,
}

fn read_gate_form(fields: &[(String, String)]) -> PostedGate {
    let field = |name: &str| {
        fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.trim().to_owned())
            .unwrap_or_default()
    };
    let mut form = GateForm {
        label: field("label"),
        existing: field("existing") == "true",
        dataset: field("dataset"),
        ..GateForm::default()
    };
    let mut rules = Vec::new();
    for row in 0..MAX_RULES {
        let mut given = RuleRow {
            metric: field(&format!("metric-{row}")),
            min: field(&format!("min-{row}")),
            max: field(&format!("max-{row}")),
            error: None,
        };
        if fields.iter().all(|(k, _)| k != &format!("metric-{row}")) {
            break;
        }
        let number = |raw: &str, what: &str| match raw {
            "" => Ok(None),
            raw => raw
                .parse::<f64>()
                .map(Some)
                .map_err(|_| format!("the {what} {raw:?} is not a number")),
        };
        let blank = given.metric.is_empty() && given.min.is_empty() && given.max.is_empty();
        if !blank {
            match (number(&given.min, "minimum"), number(&given.max, "maximum")) {
                (Ok(min), Ok(max)) => rules.push((
                    row,
                    GateRule {
                        metric: given.metric.clone(),
                        min,
                        max,
                    },
                )),
                (Err(why), _) | (_, Err(why)) => given.error = Some(why),
            }
        }
        form.rules.push(given);
    }
    PostedGate { form, rules }
}

/// Puts each of `errors` beside the field it names; answers what names
/// no field of the form.
fn place_errors(
    form: &mut GateForm,
    rows: &[usize],
    errors: Vec<crate::services::FieldError>,
) -> Vec<String> {
    let mut unplaced = Vec::new();
    for error in errors {
        let message = error.message;
        let rule = error
            .field
            .strip_prefix("rules[")
            .and_then(|rest| rest.strip_suffix(']'))
            .and_then(|i| i.parse::<usize>().ok())
            .and_then(|i| rows.get(i))
            .and_then(|row| form.rules.get_mut(*row));
        let slot = match (error.field.as_str(), rule) {
            (_, Some(row)) => &mut row.error,
            ("label", _) => &mut form.label_error,
            ("dataset", _) => &mut form.dataset_error,
            ("rules", _) => &mut form.rules_error,
            _ => {
                unplaced.push(message);
                continue;
            }
        };
        *slot = Some(match slot.take() {
            Some(before) => format!("{before}; {message}"),
            None => message,
        });
    }
    unplaced
}

pub async fn set_gate(
    State(state): State<AppState>,
    Path(name): Path<String>,
    posted: Posted<Vec<(String, String)>>,
) -> Result<Response, UiError> {
    let session = &posted.session;
    authorize(&state, session, Scope::Promote)?;
    let name = prompt_name(&name)?;
    let PostedGate { mut form, rules } = read_gate_form(&posted.form);
    let rows: Vec<usize> = rules.iter().map(|(row, _)| *row).collect();
    let local_errors = form.rules.iter().any(|r| r.error.is_some());
    let outcome = match label_name("label", &form.label) {
        Err(err) => Err(err),
        Ok(_) if local_errors => Err(ApiError::validation("rules", "fix the bounds marked below")),
        Ok(label) => {
            let rules: Vec<GateRule> = rules.into_iter().map(|(_, rule)| rule).collect();
            labels::put_gate(
                &state.registry,
                session.caller.project,
                &session.caller.actor(),
                &name,
                &label,
                &form.dataset,
                &rules,
            )
            .await
            .map(|_| ())
            .map_err(ApiError::from)
        }
    };
    let err = match outcome {
        Ok(()) => {
            let to = format!("{}#gated-{}", gates_url(name.as_str()), form.label);
            return Ok(Redirect::to(&to).into_response());
        }
        Err(err) => err,
    };
    let problem = err.problem();
    if problem.status >= 500 {
        return Err(err.into());
    }
    let unplaced = match &err {
        ApiError::Service(ServiceError::Store(StoreError::DatasetNotFound(_))) => {
            form.dataset_error = Some(problem.detail.clone());
            Vec::new()
        }
        ApiError::Service(ServiceError::Store(_)) => return Err(err.into()),
        _ => place_errors(&mut form, &rows, problem.errors.clone()),
    };
    let refusal = (!unplaced.is_empty()).then(|| unplaced.join("; "));
    if form.rules.len() < MAX_RULES && form.rules.iter().all(|r| !r.metric.is_empty()) {
        form.rules.push(RuleRow::default());
    }
    let standings = labels::gate_standings(&state.registry, session.caller.project, &name).await?;
    Ok(render(
        StatusCode::UNPROCESSABLE_ENTITY,
        "gates.html",
        gates_page(session, &name, standings, Some(form), refusal),
    ))
}

#[derive(Deserialize)]
pub struct RemoveForm {}

pub async fn remove_gate(
    State(state): State<AppState>,
    Path((name, label)): Path<(String, String)>,
    posted: Posted<RemoveForm>,
) -> Result<Response, UiError> {
    let session = &posted.session;
    authorize(&state, session, Scope::Promote)?;
    let name = prompt_name(&name)?;
    let label = label_name("label", &label)?;
    labels::delete_gate(
        &state.registry,
        session.caller.project,
        &session.caller.actor(),
        &name,
        &label,
    )
    .await?;
    Ok(Redirect::to(&gates_url(name.as_str())).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn blank_rows_are_skipped_and_bad_bounds_marked_on_their_row() {
        let posted = read_gate_form(&fields(&[
            ("label", "production"),
            ("dataset", "golden"),
            ("metric-0", "exact_match"),
            ("min-0", "0.8"),
            ("max-0", ""),
            ("metric-1", ""),
            ("min-1", ""),
            ("max-1", ""),
            ("metric-2", "contains"),
            ("min-2", "lots"),
            ("max-2", ""),
        ]));
        assert_eq!(posted.rules.len(), 1);
        assert_eq!(posted.rules[0].0, 0);
        assert_eq!(posted.rules[0].1.min, Some(0.8));
        assert_eq!(posted.form.rules.len(), 3);
        assert!(posted.form.rules[2]
            .error
            .as_deref()
            .is_some_and(|e| e.contains("\"lots\" is not a number")));
    }

    #[test]
    fn service_errors_land_on_the_rows_they_name() {
        let mut form = GateForm {
            rules: vec![RuleRow::default(); 3],
            ..GateForm::default()
        };
        let unplaced = place_errors(
            &mut form,
            &[0, 2],
            vec![
                crate::services::FieldError::new("rules[1]", "unknown metric"),
                crate::services::FieldError::new("label", "bad label"),
                crate::services::FieldError::new("elsewhere", "odd"),
            ],
        );
        assert_eq!(form.rules[2].error.as_deref(), Some("unknown metric"));
        assert!(form.rules[0].error.is_none());
        assert_eq!(form.label_error.as_deref(), Some("bad label"));
        assert_eq!(unplaced, ["odd"]);
    }
}
