//! The CLI (`push`, `pull`, `validate`, `diff`, `promote`, `rollback`): the
//! real binary against a real server on a local port, on both backends.

use std::path::Path;
use std::process::Output;

use serde_json::{json, Value};

use crate::backend_tests;
use crate::support::{enc, TestApp, ADMIN_KEY};

const GREETING: &str = "\
description: Greets a customer
tags: [support]
template: |
  Hello {{name}}!
  How can we help?
";

const REPLY: &str = "\
type: chat
model_config:
  temperature: 0.3
messages:
  - role: system
    content: You are helpful.
  - role: placeholder
    name: history
  - role: user
    content: \"{{question}}\"
";

const INVOICE: &str = "\
engine: jinja
input_schema:
  type: object
  properties:
    invoice: {type: string}
output_schema:
  type: object
  properties:
    total: {type: number}
template: \"Total of {{ invoice }}\"
";

const WITH_PARTIAL: &str = "\
template: \"{{> common/tone}} Reply to {{name}}.\"
";

const TONE: &str = "template: Be kind.\n";

fn write(dir: &Path, relative: &str, text: &str) {
    let path = dir.join(relative);
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(path, text).expect("write");
}

fn prompt_folder() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    write(dir.path(), "support/greeting.prompt.yaml", GREETING);
    write(dir.path(), "support/reply.prompt.yaml", REPLY);
    write(dir.path(), "extract/invoice.prompt.yaml", INVOICE);
    write(dir.path(), "support/escalate.prompt.yaml", WITH_PARTIAL);
    write(dir.path(), "common/tone.prompt.yaml", TONE);
    dir
}

/// Runs the `promptreg` binary with `args` against `server`.
pub(crate) async fn cli(server: &str, args: &[&str]) -> Output {
    cli_in_ci(server, args, &[]).await
}

/// Runs the binary as a CI job would, with `ci_env` set.
async fn cli_in_ci(server: &str, args: &[&str], ci_env: &[(&str, &str)]) -> Output {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_promptreg"));
    command
        .args(args)
        .env("PROMPTREG_URL", server)
        .env("PROMPTREG_TOKEN", ADMIN_KEY);
    for key in ["GITHUB_SHA", "GITHUB_REF_NAME", "GITHUB_RUN_ID"] {
        command.env_remove(key);
    }
    command.envs(ci_env.iter().copied());
    command.output().await.expect("run promptreg")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Runs a command with `--output json`; answers its exit code and the one JSON object.
pub(crate) async fn cli_json(server: &str, args: &[&str]) -> (i32, Value) {
    let mut all = args.to_vec();
    all.extend(["--output", "json"]);
    let output = cli(server, &all).await;
    let text = stdout(&output);
    let report = serde_json::from_str(&text).unwrap_or_else(|e| {
        panic!(
            "stdout is not one JSON object ({e}):\n{text}\nstderr:\n{}",
            String::from_utf8_lossy(&output.stderr)
        )
    });
    (output.status.code().unwrap_or(-1), report)
}

fn names(report: &Value, key: &str) -> Vec<String> {
    let mut names: Vec<String> = report[key]
        .as_array()
        .unwrap_or_else(|| panic!("{key} in {report}"))
        .iter()
        .map(|v| v.as_str().unwrap_or_default().to_owned())
        .collect();
    names.sort();
    names
}

fn all_names() -> Vec<String> {
    let mut all: Vec<String> = [
        "common/tone",
        "extract/invoice",
        "support/escalate",
        "support/greeting",
        "support/reply",
    ]
    .map(str::to_owned)
    .to_vec();
    all.sort();
    all
}

async fn push_creates_then_changes_only_what_changed(app: TestApp) {
    let server = app.serve().await;
    let dir = prompt_folder();
    let path = dir.path().to_str().expect("utf-8 path");

    let (code, first) = cli_json(&server, &["push", path]).await;
    assert_eq!(code, 0, "{first}");
    assert_eq!(names(&first, "created"), all_names());
    assert_eq!(first["failed"], json!([]));
    assert_eq!(first["versions"]["support/reply"], "1.0.0");

    let (code, again) = cli_json(&server, &["push", path]).await;
    assert_eq!(code, 0, "{again}");
    assert_eq!(names(&again, "created"), Vec::<String>::new());
    assert_eq!(names(&again, "unchanged"), all_names());

    write(
        dir.path(),
        "support/greeting.prompt.yaml",
        &GREETING.replace("How can we help?", "What can we do?"),
    );
    let ci_env = [
        ("GITHUB_SHA", "0123abcd"),
        ("GITHUB_REF_NAME", "main"),
        ("GITHUB_RUN_ID", "42"),
    ];
    let output = cli_in_ci(
        &server,
        &["push", path, "--message", "Friendlier", "--output", "json"],
        &ci_env,
    )
    .await;
    assert_eq!(output.status.code(), Some(0));
    let third: Value = serde_json::from_slice(&output.stdout).expect("one JSON object");
    assert_eq!(names(&third, "created"), Vec::<String>::new());
    assert_eq!(
        names(&third, "new_versions"),
        vec!["support/greeting".to_owned()]
    );
    assert_eq!(third["versions"]["support/greeting"], "1.0.1");

    let latest = app
        .get(&format!(
            "/v1/prompts/{}/versions/latest",
            enc("support/greeting")
        ))
        .await;
    assert_eq!(
        latest.body["template"],
        "Hello {{name}}!\nWhat can we do?\n"
    );
    assert_eq!(latest.body["message"], "Friendlier");
    assert_eq!(
        latest.body["metadata"],
        json!({
            "source": "support/greeting.prompt.yaml",
            "git_commit": "0123abcd",
            "git_branch": "main",
            "ci_run": "42"
        })
    );
    let prompt = app
        .get(&format!("/v1/prompts/{}", enc("support/greeting")))
        .await;
    assert_eq!(prompt.body["description"], "Greets a customer");
    assert_eq!(prompt.body["tags"], json!(["support"]));
    let versions = app
        .get(&format!("/v1/prompts/{}/versions", enc("support/reply")))
        .await;
    assert_eq!(versions.body["items"].as_array().map(Vec::len), Some(1));
}

async fn pull_writes_files_that_push_back_unchanged(app: TestApp) {
    let server = app.serve().await;
    let dir = prompt_folder();
    let (code, _) = cli_json(&server, &["push", dir.path().to_str().expect("path")]).await;
    assert_eq!(code, 0);

    let pulled = tempfile::tempdir().expect("temp dir");
    let pulled_path = pulled.path().to_str().expect("path");
    let (code, report) = cli_json(&server, &["pull", pulled_path]).await;
    assert_eq!(code, 0, "{report}");
    assert_eq!(names(&report, "written"), all_names());
    let reply = std::fs::read_to_string(pulled.path().join("support/reply.prompt.yaml"))
        .expect("pulled file");
    assert!(reply.contains("role: placeholder"), "{reply}");

    let (code, pushed) = cli_json(&server, &["push", pulled_path]).await;
    assert_eq!(code, 0, "{pushed}");
    assert_eq!(names(&pushed, "created"), Vec::<String>::new());
    assert_eq!(names(&pushed, "unchanged"), all_names());

    // Pulling again rewrites nothing.
    let (_, again) = cli_json(&server, &["pull", pulled_path]).await;
    assert_eq!(names(&again, "unchanged"), all_names());
}

async fn dry_run_writes_nothing(app: TestApp) {
    let server = app.serve().await;
    let dir = prompt_folder();
    let path = dir.path().to_str().expect("path");
    cli_json(&server, &["push", path]).await;
    write(
        dir.path(),
        "common/tone.prompt.yaml",
        "template: Be very kind.\n",
    );
    write(dir.path(), "brand/new.prompt.yaml", "template: New {{x}}\n");

    let (code, report) =
        cli_json(&server, &["push", path, "--dry-run", "--label", "staging"]).await;
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["dry_run"], true);
    assert_eq!(names(&report, "created"), vec!["brand/new".to_owned()]);
    assert_eq!(
        names(&report, "new_versions"),
        vec!["common/tone".to_owned()]
    );
    let diff = report["diffs"]["common/tone"].as_str().expect("a diff");
    assert!(
        diff.contains("-Be kind.") && diff.contains("+Be very kind."),
        "{diff}"
    );

    let human = stdout(&cli(&server, &["push", path, "--dry-run"]).await);
    assert!(human.contains("would create"), "{human}");

    assert_eq!(
        app.get(&format!("/v1/prompts/{}", enc("brand/new")))
            .await
            .status,
        404
    );
    let tone = app
        .get(&format!("/v1/prompts/{}", enc("common/tone")))
        .await;
    assert_eq!(tone.body["latest_version"], "1.0.0");
    assert_eq!(tone.body["labels"], json!({}));
}

async fn label_moves_onto_every_pushed_prompt(app: TestApp) {
    let server = app.serve().await;
    let dir = prompt_folder();
    let path = dir.path().to_str().expect("path");
    let (code, first) = cli_json(&server, &["push", path, "--label", "staging"]).await;
    assert_eq!(code, 0, "{first}");
    assert_eq!(first["labels"]["support/reply"]["staging"], "1.0.0");

    // One prompt changes; another loses its label by hand. Both end up labelled.
    write(
        dir.path(),
        "common/tone.prompt.yaml",
        "template: Be very kind.\n",
    );
    let deleted = app
        .delete(&format!(
            "/v1/prompts/{}/labels/staging",
            enc("support/reply")
        ))
        .await;
    assert_eq!(deleted.status, 204);
    let (code, second) = cli_json(&server, &["push", path, "--label", "staging"]).await;
    assert_eq!(code, 0, "{second}");
    assert_eq!(
        names(&second, "new_versions"),
        vec!["common/tone".to_owned()]
    );
    for (name, version) in [
        ("common/tone", "1.0.1"),
        ("support/reply", "1.0.0"),
        ("support/greeting", "1.0.0"),
    ] {
        let prompt = app.get(&format!("/v1/prompts/{}", enc(name))).await;
        assert_eq!(
            prompt.body["labels"]["staging"], version,
            "{name}: {}",
            prompt.body
        );
    }
}

async fn one_bad_file_fails_alone(app: TestApp) {
    let server = app.serve().await;
    let dir = prompt_folder();
    write(
        dir.path(),
        "broken.prompt.yaml",
        "template: \"{{#if x}}open\"\n",
    );
    let (code, report) = cli_json(&server, &["push", dir.path().to_str().expect("path")]).await;
    assert_eq!(code, 1, "{report}");
    assert_eq!(names(&report, "created"), all_names());
    assert_eq!(report["failed"][0]["name"], "broken");
    let error = report["failed"][0]["error"].as_str().expect("error");
    assert!(error.contains("broken.prompt.yaml:1:"), "{error}");
    assert_eq!(app.get("/v1/prompts/broken").await.status, 404);
}

async fn diff_promote_and_rollback(app: TestApp) {
    let server = app.serve().await;
    let dir = prompt_folder();
    let path = dir.path().to_str().expect("path");
    cli_json(&server, &["push", path]).await;
    write(
        dir.path(),
        "common/tone.prompt.yaml",
        "template: Be very kind.\n",
    );
    cli_json(&server, &["push", path]).await;

    let diff = cli(
        &server,
        &["diff", "common/tone", "--from", "1.0.0", "--to", "latest"],
    )
    .await;
    assert!(diff.status.success());
    let text = stdout(&diff);
    assert!(
        text.contains("-Be kind.") && text.contains("+Be very kind."),
        "{text}"
    );

    for version in ["1.0.0", "1.0.1"] {
        let (code, moved) = cli_json(
            &server,
            &[
                "promote",
                "common/tone",
                "--label",
                "production",
                "--version",
                version,
            ],
        )
        .await;
        assert_eq!(code, 0, "{moved}");
        assert_eq!(moved["version"], version);
    }
    let (code, back) = cli_json(
        &server,
        &["rollback", "common/tone", "--label", "production"],
    )
    .await;
    assert_eq!(code, 0, "{back}");
    assert_eq!(back["version"], "1.0.0");

    let (code, missing) = cli_json(
        &server,
        &[
            "promote",
            "common/tone",
            "--label",
            "production",
            "--version",
            "9.0.0",
        ],
    )
    .await;
    assert_eq!(code, 1);
    assert_eq!(missing["code"], "version_not_found");
    // A usage error: no --label.
    let usage = cli(&server, &["rollback", "common/tone"]).await;
    assert_eq!(usage.status.code(), Some(2));
}

backend_tests!(
    push_creates_then_changes_only_what_changed,
    pull_writes_files_that_push_back_unchanged,
    dry_run_writes_nothing,
    label_moves_onto_every_pushed_prompt,
    one_bad_file_fails_alone,
    diff_promote_and_rollback,
);

/// A port nothing listens on: bound, then released.
async fn dead_server() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    format!("http://{addr}")
}

#[tokio::test]
async fn push_to_a_server_that_is_down_fails_clearly() {
    let server = dead_server().await;
    let dir = prompt_folder();
    let path = dir.path().to_str().expect("path");
    let (code, report) = cli_json(&server, &["push", path]).await;
    assert_eq!(code, 1, "{report}");
    // Said once, not once per file: nothing was tried.
    assert_eq!(report["failed"], json!([]), "{report}");
    let error = report["error"].as_str().expect("error");
    assert!(error.contains("cannot reach the server"), "{error}");

    let human = cli(&server, &["push", path]).await;
    assert_eq!(human.status.code(), Some(1));
    let errors = String::from_utf8_lossy(&human.stderr);
    assert!(errors.contains("cannot reach the server"), "{errors}");
    assert_eq!(errors.lines().count(), 1, "{errors}");
}

#[tokio::test]
async fn validate_reports_problems_like_a_compiler() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().to_str().expect("path");
    write(dir.path(), "good.prompt.yaml", GREETING);
    write(
        dir.path(),
        "bad/syntax.prompt.yaml",
        "description: broken\ntemplate: |\n  line one\n  Hello {{/if}} there\n",
    );
    write(
        dir.path(),
        "bad/field.prompt.yaml",
        "template: hi\ntemperature: 0.2\n",
    );
    write(
        dir.path(),
        "bad/schema.prompt.yaml",
        "template: hi\ninput_schema:\n  type: 12\n",
    );
    write(dir.path(), "Bad Name.prompt.yaml", "template: hi\n");
    write(
        dir.path(),
        "warn/undeclared.prompt.yaml",
        "template: \"{{who}} and {{what}}\"\ninput_schema:\n  type: object\n  properties:\n    who: {type: string}\n",
    );

    let output = cli("http://127.0.0.1:9", &["validate", path]).await;
    assert_eq!(output.status.code(), Some(1));
    let text = stdout(&output);
    let line_for = |file: &str| {
        text.lines()
            .find(|l| l.contains(file))
            .unwrap_or_else(|| panic!("no line for {file} in:\n{text}"))
            .to_owned()
    };
    let syntax = line_for("syntax.prompt.yaml");
    // Line 2, column 9 of the template: the block starts on line 3, indented by 2.
    assert!(syntax.contains("syntax.prompt.yaml:4:11:"), "{syntax}");
    assert!(syntax.contains("error"), "{syntax}");
    let field = line_for("field.prompt.yaml");
    assert!(
        field.contains("field.prompt.yaml:2:1:") && field.contains("temperature"),
        "{field}"
    );
    assert!(
        line_for("schema.prompt.yaml").contains("schema.prompt.yaml:3:"),
        "{text}"
    );
    assert!(line_for("Bad Name.prompt.yaml").contains("name"), "{text}");
    let warning = line_for("undeclared.prompt.yaml");
    assert!(
        warning.contains("warning") && warning.contains("`what`"),
        "{warning}"
    );
    assert!(!text.contains("good.prompt.yaml"), "{text}");

    let (code, report) = cli_json("http://127.0.0.1:9", &["validate", path]).await;
    assert_eq!(code, 1);
    assert_eq!(report["files"], 6);
    assert_eq!(
        report["errors"].as_array().map(Vec::len),
        Some(4),
        "{report}"
    );
    assert_eq!(
        report["warnings"].as_array().map(Vec::len),
        Some(1),
        "{report}"
    );

    // Warnings alone pass.
    std::fs::remove_dir_all(dir.path().join("bad")).expect("rm");
    std::fs::remove_file(dir.path().join("Bad Name.prompt.yaml")).expect("rm");
    let output = cli("http://127.0.0.1:9", &["validate", path]).await;
    assert_eq!(output.status.code(), Some(0), "{}", stdout(&output));
}
