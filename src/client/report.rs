//! How a command's outcome reaches the terminal: the output format, JSON
//! printing, exit statuses, and the report of a job command (`evaluate`,
//! `optimize`). Commands and job clients both use it; it uses neither.

use std::process::ExitCode;

use serde::Serialize;
use serde_json::json;

use super::http::ClientError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    Human,
    Json,
}

pub const FAILED: u8 = 1;
pub const USAGE: u8 = 2;

pub(super) fn print_json(value: &impl Serialize) {
    match serde_json::to_string_pretty(value) {
        Ok(text) => println!("{text}"),
        Err(e) => eprintln!("promptreg: cannot encode the report: {e}"),
    }
}

pub(super) fn status(ok: bool) -> ExitCode {
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(FAILED)
    }
}

/// How a job command (`evaluate`, `optimize`) ended, for people and for exit codes.
pub trait JobReport: Serialize {
    fn human(&self) -> String;
    fn succeeded(&self) -> bool;
}

pub(super) fn job_report(result: Result<impl JobReport, ClientError>, output: Output) -> ExitCode {
    match result {
        Ok(report) => {
            match output {
                Output::Json => print_json(&report),
                Output::Human => print!("{}", report.human()),
            }
            status(report.succeeded())
        }
        Err(e) => fail(output, &e),
    }
}

/// Reports a failed request: on stderr for people, as `{"error"}` for machines.
pub(super) fn fail(output: Output, e: &ClientError) -> ExitCode {
    match output {
        Output::Json => print_json(&json!({ "error": e.to_string(), "code": e.code() })),
        Output::Human => eprintln!("promptreg: {e}"),
    }
    ExitCode::from(FAILED)
}
