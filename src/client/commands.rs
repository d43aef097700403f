//! Each CLI command end to end: run it, print the human or JSON report, and
//! answer the exit status (0 all succeeded, 1 something failed; usage errors
//! are clap's 2).

use std::path::Path;
use std::process::ExitCode;

use reqwest::Method;
use serde::Serialize;

use super::files::Severity;
use super::http::{segment, Client, ClientError};
use super::report::{fail, job_report, print_json, status};
pub use super::report::{Output, FAILED, USAGE};
use super::{pull, push, validate};
use crate::api::wire::{DiffResponse, LabelResponse, SetLabelRequest};
use crate::domain::LabelName;

fn require_dir(dir: &Path) -> Result<(), ExitCode> {
    if dir.is_dir() {
        Ok(())
    } else {
        eprintln!("promptreg: {} is not a folder", dir.display());
        Err(ExitCode::from(USAGE))
    }
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
    match output {
        Output::Json => print_json(&report),
        Output::Human => print!("{}", report.human()),
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
                Output::Human => print!("{}", report.human(reference)),
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

pub fn validate(dir: &Path, output: Output) -> ExitCode {
    if let Err(code) = require_dir(dir) {
        return code;
    }
    let checked = match validate::check_dir(dir) {
        Ok(checked) => checked,
        Err(e) => {
            eprintln!("promptreg: cannot read {}: {e}", dir.display());
            return ExitCode::from(FAILED);
        }
    };
    let files = checked.prompts.len() + checked.failed.len();
    match output {
        Output::Human => {
            for d in &checked.diagnostics {
                println!("{d}");
            }
            let warnings = checked.diagnostics.len() - checked.errors();
            println!(
                "{files} files checked: {} errors, {warnings} warnings",
                checked.errors()
            );
        }
        Output::Json => {
            let (errors, warnings): (Vec<_>, Vec<_>) = checked
                .diagnostics
                .iter()
                .partition(|d| d.severity == Severity::Error);
            let convert = |list: Vec<&super::files::Diagnostic>| {
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
    status(checked.errors() == 0)
}

pub async fn diff(client: &Client, name: &str, from: &str, to: &str, output: Output) -> ExitCode {
    let path = format!("/v1/prompts/{}/diff?from={from}&to={to}", segment(name));
    match client.get_json::<DiffResponse>(&path).await {
        Ok(diff) => {
            match output {
                Output::Json => print_json(&diff),
                Output::Human => {
                    println!("{name}: {} -> {}", diff.from, diff.to);
                    for change in &diff.changes {
                        if change.field != "template" && change.field != "messages" {
                            println!("{}: {} -> {}", change.field, change.from, change.to);
                        }
                    }
                    print!("{}", diff.diff);
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
                Output::Human => println!("{name}: {} -> {}", label.name, label.version),
            }
            ExitCode::SUCCESS
        }
        Err(e) => fail(output, &e),
    }
}
