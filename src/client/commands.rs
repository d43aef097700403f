//! Each CLI command end to end: run it, print the human or JSON report, and
//! answer the exit status (0 all succeeded, 1 something failed or nothing
//! matched; usage errors are clap's 2; 141 when stdout's reader went away).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use reqwest::Method;
use serde::Serialize;
use serde_json::json;

use super::files::{Diagnostic, Pos, Severity};
use super::http::{query_value, segment, Client, ClientError};
use super::report::{count, fail, job_report, out, outln, print_json, status};
pub use super::report::{Output, FAILED, STDOUT_CLOSED, USAGE};
use super::{browse, pull, push, remote, validate};
use crate::api::wire::{DiffResponse, LabelMovePage, LabelResponse, SetLabelRequest};
use crate::domain::LabelName;

fn require_dir(dir: &Path) -> Result<(), ExitCode> {
    if dir.is_dir() {
        Ok(())
    } else {
        eprintln!("promptreg: {} is not a folder", dir.display());
        Err(ExitCode::from(USAGE))
    }
}

/// Says that nothing matched, for people on stderr and for machines as
/// `{"error"}`, and answers 1.
fn nothing_matched(output: Output, message: &str) -> ExitCode {
    match output {
        Output::Json => print_json(&json!({ "error": message, "code": null })),
        Output::Human => eprintln!("promptreg: {message}"),
    }
    ExitCode::from(FAILED)
}

fn no_prompt_files(paths: &[PathBuf]) -> String {
    let paths: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
    format!(
        "no prompt files (*.prompt.yaml, *.prompt.yml) under {}",
        paths.join(", ")
    )
}

pub async fn push(
    client: &Client,
    dir: &Path,
    mut options: push::PushOptions,
    provenance: push::Provenance,
    output: Output,
) -> ExitCode {
    if let Err(code) = require_dir(dir) {
        return code;
    }
    if options.message.is_none() {
        options.message = push::git_subject(dir);
    }
    options.metadata.extend(provenance.metadata(dir));
    let report = match push::push(client, dir, &options).await {
        Ok(report) => report,
        Err(e) => {
            eprintln!("promptreg: cannot read {}: {e}", dir.display());
            return ExitCode::from(FAILED);
        }
    };
    if !report.attempted() && report.error.is_none() {
        return nothing_matched(output, &no_prompt_files(&[dir.to_path_buf()]));
    }
    match output {
        Output::Json => print_json(&report),
        Output::Human => {
            if report.attempted() {
                out!("{}", report.human());
            }
            if let Some(error) = &report.error {
                eprintln!("promptreg: {error}");
            }
        }
    }
    status(report.succeeded())
}

pub async fn pull(
    client: &Client,
    dir: &Path,
    reference: &str,
    concurrency: usize,
    output: Output,
) -> ExitCode {
    match pull::pull(client, dir, reference, concurrency).await {
        Ok(report) => {
            match output {
                Output::Json => print_json(&report),
                Output::Human => match &report.error {
                    Some(error) => eprintln!("promptreg: {error}"),
                    None => out!("{}", report.human(reference)),
                },
            }
            status(report.succeeded())
        }
        Err(e) => fail(output, &e),
    }
}

#[derive(Serialize)]
struct ValidateReport {
    files: usize,
    errors: Vec<DiagnosticJson>,
    warnings: Vec<DiagnosticJson>,
}

#[derive(Serialize)]
struct DiagnosticJson {
    path: String,
    line: usize,
    column: usize,
    message: String,
}

/// Checks the prompt files `paths` name (folders, files, or both), offline.
pub fn validate(paths: &[PathBuf], root: Option<&Path>, output: Output) -> ExitCode {
    for path in paths {
        if !path.exists() {
            eprintln!("promptreg: {}: no such file or folder", path.display());
            return ExitCode::from(USAGE);
        }
    }
    let selection = match validate::select(paths, root) {
        Ok(selection) => selection,
        Err(e) => {
            eprintln!("promptreg: cannot read the files to check: {e}");
            return ExitCode::from(FAILED);
        }
    };
    let skipped: Vec<Diagnostic> = selection
        .skipped
        .iter()
        .map(|path| Diagnostic {
            path: path.clone(),
            pos: Pos { line: 1, column: 1 },
            severity: Severity::Warning,
            message: "not a prompt file (*.prompt.yaml, *.prompt.yml): skipped".into(),
        })
        .collect();
    if selection.files.is_empty() {
        for d in &skipped {
            eprintln!("{d}");
        }
        return nothing_matched(output, &no_prompt_files(paths));
    }
    let mut checked = validate::check_files(selection.files);
    checked.diagnostics.extend(skipped);
    let files = checked.prompts.len() + checked.failed.len();
    let errors = checked.errors();
    let warnings = checked.diagnostics.len() - errors;
    match output {
        Output::Human => {
            for d in &checked.diagnostics {
                outln!("{d}");
            }
            outln!(
                "{} checked: {}, {}",
                count(files, "file"),
                count(errors, "error"),
                count(warnings, "warning")
            );
        }
        Output::Json => {
            let (errors, warnings): (Vec<_>, Vec<_>) = checked
                .diagnostics
                .iter()
                .partition(|d| d.severity == Severity::Error);
            let convert = |list: Vec<&Diagnostic>| {
                list.into_iter()
                    .map(|d| DiagnosticJson {
                        path: d.path.display().to_string(),
                        line: d.pos.line,
                        column: d.pos.column,
                        message: d.message.clone(),
                    })
                    .collect()
            };
            print_json(&ValidateReport {
                files,
                errors: convert(errors),
                warnings: convert(warnings),
            });
        }
    }
    status(errors == 0)
}

/// `ls [PREFIX]`: the prompts whose name starts with `prefix`.
pub async fn ls(client: &Client, prefix: Option<&str>, output: Output) -> ExitCode {
    let page = match browse::list(client, prefix).await {
        Ok(page) => page,
        Err(e) => return fail(output, &e),
    };
    if page.items.is_empty() {
        let message = match prefix.filter(|p| !p.is_empty()) {
            Some(prefix) => format!("no prompt's name starts with {prefix:?}"),
            None => "the project has no prompts".to_owned(),
        };
        return nothing_matched(output, &message);
    }
    match output {
        Output::Json => print_json(&page),
        Output::Human => out!("{}", browse::list_lines(&page.items)),
    }
    ExitCode::SUCCESS
}

/// `show NAME[@REF]`: one version.
pub async fn show(client: &Client, spec: &str, output: Output) -> ExitCode {
    let (name, reference) = browse::split_reference(spec);
    match remote::get_version(client, name, reference).await {
        Ok(version) => {
            match output {
                Output::Json => print_json(&version),
                Output::Human => out!("{}", browse::version_text(&version, reference)),
            }
            ExitCode::SUCCESS
        }
        Err(e) => fail(output, &e),
    }
}

/// `history NAME --label L`: the label's moves, newest first.
pub async fn history(client: &Client, name: &str, label: &LabelName, output: Output) -> ExitCode {
    match remote::label_history(client, name, label.as_str()).await {
        Ok(items) => {
            match output {
                Output::Json => print_json(&LabelMovePage {
                    items,
                    next_cursor: None,
                }),
                Output::Human => out!("{}", browse::history_lines(&items)),
            }
            ExitCode::SUCCESS
        }
        Err(e) => fail(output, &e),
    }
}

pub async fn diff(client: &Client, name: &str, from: &str, to: &str, output: Output) -> ExitCode {
    let path = format!(
        "/v1/prompts/{}/diff?from={}&to={}",
        segment(name),
        query_value(from),
        query_value(to)
    );
    match client.get_json::<DiffResponse>(&path).await {
        Ok(diff) => {
            match output {
                Output::Json => print_json(&diff),
                Output::Human => {
                    outln!("{name}: {} -> {}", diff.from, diff.to);
                    for change in &diff.changes {
                        if change.field != "template" && change.field != "messages" {
                            outln!("{}: {} -> {}", change.field, change.from, change.to);
                        }
                    }
                    out!("{}", diff.diff);
                }
            }
            ExitCode::SUCCESS
        }
        Err(e) => fail(output, &e),
    }
}

pub async fn evaluate(
    client: &Client,
    options: &super::evaluate::EvaluateOptions,
    output: Output,
) -> ExitCode {
    job_report(super::evaluate::evaluate(client, options).await, output)
}

pub async fn optimize(
    client: &Client,
    options: &super::optimize::OptimizeOptions,
    output: Output,
) -> ExitCode {
    job_report(super::optimize::optimize(client, options).await, output)
}

pub async fn promote(
    client: &Client,
    name: &str,
    label: &LabelName,
    version: &str,
    output: Output,
) -> ExitCode {
    let path = format!("/v1/prompts/{}/labels/{label}", segment(name));
    let body = SetLabelRequest {
        version: version.to_owned(),
    };
    let result = client.send_json(Method::PUT, &path, Some(&body)).await;
    label_moved(name, result, output)
}

pub async fn rollback(client: &Client, name: &str, label: &LabelName, output: Output) -> ExitCode {
    let path = format!("/v1/prompts/{}/labels/{label}/rollback", segment(name));
    let result = client.send_json::<(), _>(Method::POST, &path, None).await;
    label_moved(name, result, output)
}

fn label_moved(
    name: &str,
    result: Result<(reqwest::StatusCode, LabelResponse), ClientError>,
    output: Output,
) -> ExitCode {
    match result {
        Ok((_, label)) => {
            match output {
                Output::Json => print_json(&label),
                Output::Human => outln!("{name}: {} -> {}", label.name, label.version),
            }
            ExitCode::SUCCESS
        }
        Err(e) => fail(output, &e),
    }
}
