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
/// The status when stdout's reader went away (`promptreg … | head -1`):
/// 128 + SIGPIPE, what a shell reports for other Unix tools ended that way.
pub const STDOUT_CLOSED: u8 = 141;

/// Writes to stdout. When the reader has gone away (a closed pipe) nothing
/// more can reach it: the command ends at once, quietly, with
/// [`STDOUT_CLOSED`]; any other write error ends it with a message and 1.
pub fn write_stdout(args: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = stdout.write_fmt(args).and_then(|()| stdout.flush()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(i32::from(STDOUT_CLOSED));
        }
        let _ = writeln!(std::io::stderr(), "promptreg: cannot write to stdout: {e}");
        std::process::exit(i32::from(FAILED));
    }
}

/// `println!` through [`write_stdout`].
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::client::report::write_stdout(format_args!("{}\n", format_args!($($arg)*)))
    };
}
pub(crate) use outln;

/// `print!` through [`write_stdout`].
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::client::report::write_stdout(format_args!($($arg)*))
    };
}
pub(crate) use out;

/// `1 file`, `2 files`.
pub fn count(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

pub(super) fn print_json(value: &impl Serialize) {
    match serde_json::to_string_pretty(value) {
        Ok(text) => outln!("{text}"),
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
                Output::Human => out!("{}", report.human()),
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
