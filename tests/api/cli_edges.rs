//! The CLI off the happy path, as a new user meets it: closed pipes, odd
//! folders and file lists for `validate`, refused keys, empty matches,
//! dry-run wording, include order, help text, browsing (`ls`, `show`,
//! `history`), log colours and server URLs. The real binary throughout.

use std::path::Path;
use std::process::{Output, Stdio};

use serde_json::{json, Value};

use crate::backend_tests;
use crate::cli::{cli, cli_json};
use crate::support::{enc, TestApp, ADMIN_KEY};

const BIN: &str = env!("CARGO_BIN_EXE_promptreg");

fn write(dir: &Path, relative: &str, text: &str) {
    let path = dir.join(relative);
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(path, text).expect("write");
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Runs the binary with only `env` for its settings (no server, no key
/// unless given), in `cwd` when given.
async fn run(args: &[&str], env: &[(&str, &str)], cwd: Option<&Path>) -> Output {
    let mut command = tokio::process::Command::new(BIN);
    command.args(args);
    for key in [
        "PROMPTREG_URL",
        "PROMPTREG_TOKEN",
        "DATABASE_URL",
        "RUST_LOG",
        "GITHUB_SHA",
        "GITHUB_REF_NAME",
        "GITHUB_RUN_ID",
    ] {
        command.env_remove(key);
    }
    command.envs(env.iter().copied());
    if let Some(cwd) = cwd {
        command.current_dir(cwd);
    }
    command.output().await.expect("run promptreg")
}

/// Runs the binary with its stdout already closed by the reader, as in
/// `promptreg … | head -0`.
async fn run_with_stdout_closed(args: &[&str]) -> Output {
    let mut child = tokio::process::Command::new(BIN)
        .args(args)
        .env_remove("PROMPTREG_URL")
        .env_remove("PROMPTREG_TOKEN")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn promptreg");
    drop(child.stdout.take());
    child.wait_with_output().await.expect("wait")
}

#[tokio::test]
async fn a_closed_stdout_ends_the_command_quietly() {
    let dir = tempfile::tempdir().expect("temp dir");
    write(dir.path(), "a.prompt.yaml", "template: Hi {{name}}\n");
    let path = dir.path().to_str().expect("path");
    for args in [
        vec!["openapi"],
        vec!["validate", path],
        vec!["validate", path, "--output", "json"],
    ] {
        let output = run_with_stdout_closed(&args).await;
        assert_eq!(
            output.status.code(),
            Some(141),
            "{args:?}: {}",
            stderr(&output)
        );
        assert_eq!(stderr(&output), "", "{args:?}");
    }
}

#[tokio::test]
async fn validate_finds_a_name_taken_by_a_file_with_other_errors() {
    let dir = tempfile::tempdir().expect("temp dir");
    // `other.prompt.yaml` claims the name `b`; `b.prompt.yaml` is broken too.
    write(
        dir.path(),
        "b.prompt.yaml",
        "template: hi\ntemperature: 0.2\n",
    );
    write(dir.path(), "other.prompt.yaml", "name: b\ntemplate: hi\n");
    let output = run(&["validate", dir.path().to_str().expect("path")], &[], None).await;
    assert_eq!(output.status.code(), Some(1));
    let text = stdout(&output);
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("is also defined by"))
        .collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(
        lines[0].contains("b.prompt.yaml:") && lines[0].contains("other.prompt.yaml"),
        "{text}"
    );
    // The duplicate points at the `name` that causes it.
    assert!(lines[1].contains("other.prompt.yaml:1:7: error"), "{text}");
    assert!(text.contains("temperature"), "{text}");
}

#[tokio::test]
async fn validate_reads_prompt_yml_files() {
    let dir = tempfile::tempdir().expect("temp dir");
    write(dir.path(), "good.prompt.yml", "template: Hi {{name}}\n");
    write(
        dir.path(),
        "bad.prompt.yml",
        "template: \"{{#if x}}open\"\n",
    );
    let (code, report) = cli_json(
        "http://127.0.0.1:9",
        &["validate", dir.path().to_str().expect("path")],
    )
    .await;
    assert_eq!(code, 1, "{report}");
    assert_eq!(report["files"], 2);
    assert_eq!(
        report["errors"][0]["path"]
            .as_str()
            .map(|p| p.ends_with("bad.prompt.yml")),
        Some(true),
        "{report}"
    );
}

#[tokio::test]
async fn validate_of_a_folder_without_prompt_files_fails() {
    let dir = tempfile::tempdir().expect("temp dir");
    write(dir.path(), "notes.yaml", "x: 1\n");
    let path = dir.path().to_str().expect("path");
    let output = run(&["validate", path], &[], None).await;
    assert_eq!(output.status.code(), Some(1), "{}", stdout(&output));
    assert!(
        stderr(&output).contains(&format!(
            "no prompt files (*.prompt.yaml, *.prompt.yml) under {path}"
        )),
        "{}",
        stderr(&output)
    );
    let (code, report) = cli_json("http://127.0.0.1:9", &["validate", path]).await;
    assert_eq!(code, 1);
    assert!(
        report["error"]
            .as_str()
            .is_some_and(|e| e.contains("no prompt files")),
        "{report}"
    );
    // Pushing it is the same mistake (a wrong path), said before any request.
    let output = run(&["push", path], &[("PROMPTREG_URL", "127.0.0.1:9")], None).await;
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("no prompt files"),
        "{}",
        stderr(&output)
    );
}

#[tokio::test]
async fn validate_takes_files_as_a_pre_commit_hook_passes_them() {
    let dir = tempfile::tempdir().expect("temp dir");
    write(
        dir.path(),
        "prompts/support/greeting.prompt.yaml",
        "template: Hi {{name}}\n",
    );
    write(
        dir.path(),
        "prompts/sales/greeting.prompt.yaml",
        "template: Buy, {{name}}\n",
    );
    write(
        dir.path(),
        "prompts/support/broken.prompt.yaml",
        "template: \"{{/if}}\"\n",
    );
    write(dir.path(), "README.md", "# prompts\n");
    let files = [
        "prompts/support/greeting.prompt.yaml",
        "prompts/sales/greeting.prompt.yaml",
        "README.md",
    ];

    // Two files with one file name in different folders are two prompts.
    let mut args = vec!["validate", "--root", "prompts"];
    args.extend(files);
    let output = run(&args, &[], Some(dir.path())).await;
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}{}",
        stdout(&output),
        stderr(&output)
    );
    let text = stdout(&output);
    assert!(
        text.contains("README.md:1:1: warning: not a prompt file"),
        "{text}"
    );
    assert!(
        text.contains("2 files checked: 0 errors, 1 warning"),
        "{text}"
    );

    // Without --root, names start from the current folder: still distinct.
    let output = run(&["validate", files[0], files[1]], &[], Some(dir.path())).await;
    assert_eq!(output.status.code(), Some(0), "{}", stdout(&output));

    // A single file with an error fails; a single good one passes.
    let output = run(
        &["validate", "prompts/support/broken.prompt.yaml"],
        &[],
        Some(dir.path()),
    )
    .await;
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stdout(&output).contains("1 file checked: 1 error, 0 warnings"),
        "{}",
        stdout(&output)
    );

    // A name set in one file and a path-given name of another collide.
    write(
        dir.path(),
        "prompts/copy.prompt.yaml",
        "name: support/greeting\ntemplate: x\n",
    );
    let output = run(
        &[
            "validate",
            "--root",
            "prompts",
            "prompts/copy.prompt.yaml",
            "prompts/support/greeting.prompt.yaml",
        ],
        &[],
        Some(dir.path()),
    )
    .await;
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stdout(&output).contains("is also defined by"),
        "{}",
        stdout(&output)
    );

    // Only files that are not prompt files: nothing to check.
    let output = run(&["validate", "README.md"], &[], Some(dir.path())).await;
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("no prompt files"),
        "{}",
        stderr(&output)
    );

    // A path that does not exist is a usage error.
    let output = run(&["validate", "nope.prompt.yaml"], &[], Some(dir.path())).await;
    assert_eq!(output.status.code(), Some(2));
}

const TONE: &str = "template: Be kind.\n";

fn small_folder() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    write(dir.path(), "common/tone.prompt.yaml", TONE);
    write(
        dir.path(),
        "support/greeting.prompt.yaml",
        "template: Hello {{name}}\n",
    );
    write(
        dir.path(),
        "support/escalate.prompt.yaml",
        "template: \"{{> common/tone}} Reply to {{name}}.\"\n",
    );
    dir
}

async fn push_without_a_usable_key_stops_with_one_message(app: TestApp) {
    let server = app.serve().await;
    let dir = small_folder();
    let path = dir.path().to_str().expect("path");
    let (_, read_only) = app
        .create_key(json!({"name": "reader", "scopes": ["read"]}))
        .await;
    for (token, status) in [
        (None, "401"),
        (Some("pr_wrong0000000000000000000000000000000000"), "401"),
        (Some(read_only.as_str()), "403"),
    ] {
        let mut env = vec![("PROMPTREG_URL", server.as_str())];
        if let Some(token) = token {
            env.push(("PROMPTREG_TOKEN", token));
        }
        let output = run(&["push", path], &env, None).await;
        assert_eq!(output.status.code(), Some(1), "{token:?}");
        let errors = stderr(&output);
        assert_eq!(errors.lines().count(), 1, "{token:?}: {errors}");
        assert!(errors.contains(status), "{token:?}: {errors}");
        assert!(
            !stdout(&output).contains("failed  "),
            "{token:?}: {}",
            stdout(&output)
        );

        let mut args = vec!["push", path, "--output", "json"];
        args.extend(["--concurrency", "1"]);
        let output = run(&args, &env, None).await;
        assert_eq!(output.status.code(), Some(1));
        let report: Value = serde_json::from_slice(&output.stdout).expect("one JSON object");
        assert_eq!(report["failed"], json!([]), "{report}");
        assert!(
            report["error"].as_str().is_some_and(|e| e.contains(status)),
            "{report}"
        );
    }
    assert_eq!(
        app.get(&format!("/v1/prompts/{}", enc("common/tone")))
            .await
            .status,
        404
    );
}

async fn pull_and_ls_say_when_nothing_matched(app: TestApp) {
    let server = app.serve().await;
    let empty = tempfile::tempdir().expect("temp dir");
    let (code, report) = cli_json(&server, &["ls"]).await;
    assert_eq!(code, 1, "{report}");
    assert_eq!(report["error"], "the project has no prompts");

    let dir = small_folder();
    let (code, _) = cli_json(&server, &["push", dir.path().to_str().expect("path")]).await;
    assert_eq!(code, 0);
    let pulled = empty.path().to_str().expect("path");
    let output = cli(&server, &["pull", pulled, "--ref", "nosuch"]).await;
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(stdout(&output), "");
    assert!(
        stderr(&output).contains("no prompt has a version at \"nosuch\" (3 prompts looked at)"),
        "{}",
        stderr(&output)
    );
    let (code, report) = cli_json(&server, &["pull", pulled, "--ref", "nosuch"]).await;
    assert_eq!(code, 1);
    assert!(report["error"].is_string(), "{report}");
    assert_eq!(std::fs::read_dir(empty.path()).expect("dir").count(), 0);

    let output = cli(&server, &["ls", "nosuch/"]).await;
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("no prompt's name starts with \"nosuch/\""),
        "{}",
        stderr(&output)
    );
}

#[tokio::test]
async fn keys_list_of_an_unknown_project_fails_and_creates_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}/keys.db", dir.path().display());
    let env = [("RUST_LOG", "warn")];
    // The database options go before or after the subcommand alike.
    let created = run(
        &["keys", "create", "--database-url", &url, "--scopes", "read"],
        &env,
        None,
    )
    .await;
    assert_eq!(created.status.code(), Some(0), "{}", stderr(&created));
    assert!(stdout(&created).starts_with("pr_"), "{}", stdout(&created));

    for args in [
        [
            "keys",
            "list",
            "--database-url",
            &url,
            "--project",
            "nosuch",
        ],
        [
            "keys",
            "--database-url",
            &url,
            "list",
            "--project",
            "nosuch",
        ],
    ] {
        let output = run(&args, &env, None).await;
        assert_eq!(output.status.code(), Some(1), "{args:?}");
        assert!(
            stderr(&output).contains("no project named \"nosuch\""),
            "{}",
            stderr(&output)
        );
        assert_eq!(stdout(&output), "");
    }
    let listed = run(&["keys", "list", "--database-url", &url], &env, None).await;
    assert_eq!(listed.status.code(), Some(0), "{}", stderr(&listed));
    assert_eq!(stdout(&listed).lines().count(), 1, "{}", stdout(&listed));
}

async fn dry_run_names_versions_and_only_labels_that_move(app: TestApp) {
    let server = app.serve().await;
    let dir = small_folder();
    let path = dir.path().to_str().expect("path");
    let (code, first) = cli_json(&server, &["push", path, "--label", "staging"]).await;
    assert_eq!(code, 0, "{first}");

    write(
        dir.path(),
        "common/tone.prompt.yaml",
        "template: Be very kind.\n",
    );
    write(
        dir.path(),
        "brand/new.prompt.yaml",
        "template: New {{x}}\nbump: minor\n",
    );
    let (code, planned) =
        cli_json(&server, &["push", path, "--dry-run", "--label", "staging"]).await;
    assert_eq!(code, 0, "{planned}");
    assert_eq!(planned["created"], json!(["brand/new"]), "{planned}");
    assert_eq!(planned["new_versions"], json!(["common/tone"]), "{planned}");
    assert_eq!(planned["versions"]["common/tone"], "1.0.1");
    assert_eq!(planned["versions"]["brand/new"], "1.0.0");
    assert_eq!(
        planned["labels"],
        json!({"brand/new": {"staging": "1.0.0"}, "common/tone": {"staging": "1.0.1"}})
    );
    let human = stdout(&cli(&server, &["push", path, "--dry-run", "--label", "staging"]).await);
    assert!(human.contains("would create brand/new 1.0.0\n"), "{human}");
    assert!(
        human.contains("new version  common/tone 1.0.0 -> 1.0.1\n"),
        "{human}"
    );
    assert!(
        human.contains("would label  common/tone staging -> 1.0.1\n"),
        "{human}"
    );
    assert!(!human.contains("support/greeting staging"), "{human}");
    assert!(
        human.ends_with(
            "4 files: 1 to create, 1 new version, 2 unchanged, 0 failed (dry run: nothing written)\n"
        ),
        "{human}"
    );

    let output = cli(&server, &["push", path, "--label", "staging"]).await;
    assert_eq!(output.status.code(), Some(0));
    let human = stdout(&output);
    assert!(human.contains("created      brand/new 1.0.0\n"), "{human}");
    assert!(
        human.contains("new version  common/tone 1.0.0 -> 1.0.1\n"),
        "{human}"
    );
    assert!(
        human.contains("labelled     common/tone staging -> 1.0.1\n"),
        "{human}"
    );
    assert!(
        human.contains("labelled     brand/new staging -> 1.0.0\n"),
        "{human}"
    );
    // The label already pointed at support/greeting's version: nothing moved.
    assert!(!human.contains("labelled     support/greeting"), "{human}");
    assert!(
        human.ends_with("4 files: 1 created, 1 new version, 2 unchanged, 0 failed\n"),
        "{human}"
    );

    // One file, one new version.
    let single = tempfile::tempdir().expect("temp dir");
    write(
        single.path(),
        "common/tone.prompt.yaml",
        "template: Be kindest.\n",
    );
    let human = stdout(
        &cli(
            &server,
            &["push", single.path().to_str().expect("path"), "--dry-run"],
        )
        .await,
    );
    assert!(
        human.ends_with("1 file: 0 to create, 1 new version, 0 unchanged, 0 failed (dry run: nothing written)\n"),
        "{human}"
    );
}

async fn push_creates_included_prompts_before_their_includers(app: TestApp) {
    let server = app.serve().await;
    let dir = tempfile::tempdir().expect("temp dir");
    // Alphabetical order is the reverse of the include order.
    write(
        dir.path(),
        "a/first.prompt.yaml",
        "template: \"{{> b/middle}} first\"\n",
    );
    write(
        dir.path(),
        "b/middle.prompt.yaml",
        "engine: jinja\ntemplate: \"{% include 'c/last' %} middle\"\n",
    );
    write(dir.path(), "c/last.prompt.yaml", "template: last\n");
    write(
        dir.path(),
        "d/loop.prompt.yaml",
        "template: \"{{> e/loop}}\"\n",
    );
    write(
        dir.path(),
        "e/loop.prompt.yaml",
        "template: \"{{> d/loop}}\"\n",
    );
    let (_, report) = cli_json(
        &server,
        &[
            "push",
            dir.path().to_str().expect("path"),
            "--concurrency",
            "1",
        ],
    )
    .await;
    assert_eq!(
        report["created"].as_array().map(Vec::len).unwrap_or(0)
            + report["failed"].as_array().map(Vec::len).unwrap_or(0),
        5,
        "{report}"
    );
    let created_at = |name: &'static str| {
        let app = app.clone();
        async move {
            let version = app
                .get(&format!("/v1/prompts/{}/versions/latest", enc(name)))
                .await;
            assert_eq!(version.status, 200, "{name}: {}", version.body);
            version.body["created_at"]
                .as_str()
                .expect("created_at")
                .to_owned()
        }
    };
    let (last, middle, first) = (
        created_at("c/last").await,
        created_at("b/middle").await,
        created_at("a/first").await,
    );
    assert!(last < middle && middle < first, "{last} {middle} {first}");
}

/// The options and arguments listed in a `--help` page, each with whether
/// a description follows it.
fn described_arguments(help: &str) -> Vec<(String, bool)> {
    let mut found = Vec::new();
    let mut in_list = false;
    let lines: Vec<&str> = help.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        if line.ends_with(':') && !line.starts_with(' ') {
            in_list = matches!(*line, "Arguments:" | "Options:");
            continue;
        }
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        if !in_list
            || !(2..=6).contains(&indent)
            || !(trimmed.starts_with('-') || trimmed.starts_with('<') || trimmed.starts_with('['))
        {
            continue;
        }
        // `  --label <LABEL>  Point this label…` or the description on the next lines.
        let (spec, rest) = match trimmed.find("  ") {
            Some(at) => (&trimmed[..at], trimmed[at..].trim()),
            None => (trimmed, ""),
        };
        let next_is_description = lines.get(i + 1).is_some_and(|next| {
            let t = next.trim_start();
            next.len() - t.len() > indent + 2 && !t.is_empty()
        });
        found.push((spec.to_owned(), !rest.is_empty() || next_is_description));
    }
    found
}

/// The subcommands a `--help` page lists.
fn subcommands(help: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut in_list = false;
    for line in help.lines() {
        if line.ends_with(':') && !line.starts_with(' ') {
            in_list = line == "Commands:";
            continue;
        }
        if in_list {
            if let Some(name) = line.split_whitespace().next() {
                if line.starts_with("  ") && !line.starts_with("   ") && name != "help" {
                    found.push(name.to_owned());
                }
            }
        }
    }
    found
}

#[tokio::test]
async fn every_argument_has_a_help_line() {
    let top = stdout(&run(&["--help"], &[], None).await);
    let mut pending: Vec<Vec<String>> = subcommands(&top).into_iter().map(|c| vec![c]).collect();
    assert!(pending.len() > 10, "{top}");
    let mut missing = Vec::new();
    let mut seen = 0;
    while let Some(command) = pending.pop() {
        let mut args: Vec<&str> = command.iter().map(String::as_str).collect();
        args.push("--help");
        let output = run(&args, &[], None).await;
        assert_eq!(output.status.code(), Some(0), "{args:?}");
        let help = stdout(&output);
        seen += 1;
        for (spec, described) in described_arguments(&help) {
            if !described {
                missing.push(format!("{} {spec}", command.join(" ")));
            }
        }
        let usage = help
            .lines()
            .find(|l| l.starts_with("Usage:"))
            .unwrap_or_default();
        assert!(
            !usage.contains("--server") && !usage.contains("--token"),
            "{args:?}: {usage}"
        );
        for sub in subcommands(&help) {
            let mut deeper = command.clone();
            deeper.push(sub);
            pending.push(deeper);
        }
    }
    assert!(seen > 15, "{seen} help pages");
    assert!(missing.is_empty(), "arguments without help: {missing:#?}");
    let worker = stdout(&run(&["worker", "--help"], &[], None).await);
    assert!(worker.contains("optimizations"), "{worker}");
}

async fn ls_show_and_history_browse_the_registry(app: TestApp) {
    let server = app.serve().await;
    let dir = small_folder();
    let path = dir.path().to_str().expect("path");
    cli_json(&server, &["push", path, "--label", "staging"]).await;
    write(
        dir.path(),
        "common/tone.prompt.yaml",
        "template: Be very kind.\n",
    );
    cli_json(&server, &["push", path]).await;
    for version in ["1.0.0", "1.0.1"] {
        let moved = app.set_label("common/tone", "production", version).await;
        assert_eq!(moved.status, 200, "{}", moved.body);
    }

    let output = cli(&server, &["ls"]).await;
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let listing = stdout(&output);
    let lines: Vec<&str> = listing.lines().collect();
    assert_eq!(lines.len(), 4, "{listing}");
    assert!(
        lines[0].starts_with("NAME") && lines[0].contains("LATEST") && lines[0].contains("LABELS"),
        "{listing}"
    );
    let tone: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(
        tone,
        ["common/tone", "1.0.1", "production=1.0.1", "staging=1.0.0"],
        "{listing}"
    );
    assert!(lines[2].starts_with("support/escalate "), "{listing}");

    let (code, support) = cli_json(&server, &["ls", "support/"]).await;
    assert_eq!(code, 0);
    let mut names: Vec<&str> = support["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    names.sort();
    assert_eq!(names, ["support/escalate", "support/greeting"]);
    assert_eq!(support["next_cursor"], Value::Null);
    let api = app
        .get(&format!("/v1/prompts/{}", enc("support/greeting")))
        .await;
    assert!(
        support["items"]
            .as_array()
            .expect("items")
            .contains(&api.body),
        "{support}"
    );

    let shown = cli(&server, &["show", "common/tone"]).await;
    assert_eq!(shown.status.code(), Some(0), "{}", stderr(&shown));
    let text = stdout(&shown);
    assert!(
        text.starts_with("common/tone 1.0.1 (production)\ntext, handlebars, created "),
        "{text}"
    );
    assert!(text.ends_with("\nBe very kind.\n"), "{text}");
    let old = stdout(&cli(&server, &["show", "common/tone@1.0.0"]).await);
    assert!(
        old.starts_with("common/tone 1.0.0\n") && old.ends_with("\nBe kind.\n"),
        "{old}"
    );
    let (code, json) = cli_json(&server, &["show", "common/tone@staging"]).await;
    assert_eq!(code, 0);
    let api = app
        .get(&format!(
            "/v1/prompts/{}/versions/staging",
            enc("common/tone")
        ))
        .await;
    assert_eq!(json, api.body);
    let (code, missing) = cli_json(&server, &["show", "support/greeting"]).await;
    assert_eq!(code, 1, "{missing}");

    let history = cli(
        &server,
        &["history", "common/tone", "--label", "production"],
    )
    .await;
    assert_eq!(history.status.code(), Some(0), "{}", stderr(&history));
    let text = stdout(&history);
    let moves: Vec<&str> = text.lines().collect();
    assert_eq!(moves.len(), 2, "{text}");
    assert!(moves[0].contains("  1.0.0 -> 1.0.1"), "{text}");
    assert!(moves[1].contains("  (unset) -> 1.0.0"), "{text}");
    let (code, json) = cli_json(&server, &["history", "common/tone"]).await;
    assert_eq!(code, 0);
    let api = app
        .get(&format!(
            "/v1/prompts/{}/labels/production/history",
            enc("common/tone")
        ))
        .await;
    assert_eq!(json, api.body);
    let (code, _) = cli_json(&server, &["history", "common/tone", "--label", "nosuch"]).await;
    assert_eq!(code, 1);
}

async fn a_server_url_without_a_scheme_means_http(app: TestApp) {
    let server = app.serve().await;
    let bare = server.trim_start_matches("http://");
    app.post("/v1/prompts", json!({"name": "plain"})).await;
    let output = run(
        &["ls"],
        &[("PROMPTREG_URL", bare), ("PROMPTREG_TOKEN", ADMIN_KEY)],
        None,
    )
    .await;
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(stdout(&output).contains("plain"), "{}", stdout(&output));
}

async fn promote_says_why_once(app: TestApp) {
    let server = app.serve().await;
    let dir = small_folder();
    cli_json(&server, &["push", dir.path().to_str().expect("path")]).await;
    let output = cli(
        &server,
        &[
            "promote",
            "common/tone",
            "--label",
            "production",
            "--version",
            "staging",
        ],
    )
    .await;
    assert_eq!(output.status.code(), Some(1));
    let message = stderr(&output);
    assert_eq!(message.lines().count(), 1, "{message}");
    assert!(message.contains("staging"), "{message}");
    // No stretch of the message is said twice.
    let chars: Vec<char> = message.chars().collect();
    for window in chars.windows(24) {
        let piece: String = window.iter().collect();
        assert_eq!(
            message.matches(&piece).count(),
            1,
            "{piece:?} twice in {message}"
        );
    }
}

#[tokio::test]
async fn pretty_logs_have_no_colours_off_a_terminal() {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}/logs.db", dir.path().display());
    let output = run(
        &["migrate", "--database-url", &url, "--log-format", "pretty"],
        &[("RUST_LOG", "info")],
        None,
    )
    .await;
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let all = format!("{}{}", stdout(&output), stderr(&output));
    assert!(all.contains("migrations applied"), "{all}");
    assert!(!all.contains('\u{1b}'), "{all:?}");
}

backend_tests!(
    push_without_a_usable_key_stops_with_one_message,
    pull_and_ls_say_when_nothing_matched,
    dry_run_names_versions_and_only_labels_that_move,
    push_creates_included_prompts_before_their_includers,
    ls_show_and_history_browse_the_registry,
    a_server_url_without_a_scheme_means_http,
    promote_says_why_once,
);
