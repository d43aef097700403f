//! Generated documentation stays in step with the OpenAPI document:
//! `docs/routes.md` is the route table the README points at, built from
//! `openapi/openapi.json` (which `service.rs` keeps equal to the code).

use serde_json::Value;

const ROUTES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/routes.md");
const OPENAPI: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/openapi/openapi.json");
/// Set to write `docs/routes.md` instead of comparing it.
const WRITE: &str = "PROMPTREG_WRITE_ROUTES";
const REGENERATE: &str = "PROMPTREG_WRITE_ROUTES=1 cargo test --test api routes_table";

const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

/// One table per tag, in the document's tag order: method, path, the
/// operation's summary, and the scope its key needs.
fn routes_table(spec: &Value) -> String {
    let mut out = format!(
        "# Routes\n\n\
         Every route of the HTTP API, generated from `openapi/openapi.json`; do not\n\
         edit by hand. After a change to the API, regenerate the OpenAPI document\n\
         (`cargo run -- openapi > openapi/openapi.json`), then this file:\n\
         `{REGENERATE}`.\n\n\
         A running server shows the same operations, with their parameters, bodies,\n\
         answers and errors, in Swagger UI at `/docs`; the document itself is at\n\
         `/openapi.json`. Both are public.\n\n\
         *Scope* is what the caller's key must allow (`admin` allows everything).\n\
         `/v1` routes take `Authorization: Bearer pr_…`; the Langfuse routes\n\
         (`/api/public/…`) take the SDK's Basic credentials (`Basic` below), with\n\
         the same scopes; the MLflow routes (`/api/2.0/mlflow/…`) take either a\n\
         bearer key or Basic credentials (`mlflow_basic`: the key's id and the key).\n\
         *public* routes need no key.\n"
    );
    let tags: Vec<(&str, &str)> = spec["tags"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| Some((t["name"].as_str()?, t["description"].as_str().unwrap_or(""))))
        .collect();
    let paths = spec["paths"].as_object().cloned().unwrap_or_default();
    for (tag, description) in tags {
        let mut rows = Vec::new();
        for (path, item) in &paths {
            for method in METHODS {
                let op = &item[method];
                let tagged = op["tags"]
                    .as_array()
                    .is_some_and(|tags| tags.iter().any(|t| t == tag));
                if tagged {
                    rows.push(format!(
                        "| `{}` | `{path}` | {} | {} |",
                        method.to_uppercase(),
                        cell(op["summary"].as_str().unwrap_or_default()),
                        scope(op)
                    ));
                }
            }
        }
        if rows.is_empty() {
            continue;
        }
        out.push_str(&format!("\n## {tag}\n\n"));
        if !description.is_empty() {
            out.push_str(&format!("{}\n\n", one_line(description)));
        }
        out.push_str("| method | path | summary | scope |\n| --- | --- | --- | --- |\n");
        for row in rows {
            out.push_str(&row);
            out.push('\n');
        }
    }
    out
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Text fit for a table cell: one line, `|` escaped.
fn cell(text: &str) -> String {
    one_line(text).replace('|', "\\|")
}

/// `read`, `promote`, `read (Basic)`…, or `public` for no requirement.
fn scope(op: &Value) -> String {
    let mut scopes = Vec::new();
    for requirement in op["security"].as_array().into_iter().flatten() {
        for (scheme, names) in requirement.as_object().into_iter().flatten() {
            for name in names.as_array().into_iter().flatten() {
                let name = name.as_str().unwrap_or_default();
                scopes.push(match scheme.as_str() {
                    "bearer" => name.to_owned(),
                    "basic" => format!("{name} (Basic)"),
                    other => format!("{name} ({other})"),
                });
            }
        }
    }
    if scopes.is_empty() {
        "public".to_owned()
    } else {
        scopes.join(", ")
    }
}

#[test]
fn routes_table_matches_the_openapi_document() {
    let spec: Value =
        serde_json::from_str(&std::fs::read_to_string(OPENAPI).expect("read openapi/openapi.json"))
            .expect("openapi/openapi.json is JSON");
    let generated = routes_table(&spec);
    if std::env::var_os(WRITE).is_some() {
        std::fs::write(ROUTES, &generated).expect("write docs/routes.md");
        return;
    }
    let committed = std::fs::read_to_string(ROUTES).unwrap_or_default();
    assert!(
        committed == generated,
        "docs/routes.md is not what openapi/openapi.json describes; regenerate it with \
         `{REGENERATE}` and commit it"
    );
}

/// Every operation of the document is a row of the table: none is left out
/// because its tag is missing from the document's tag list.
#[test]
fn routes_table_lists_every_operation() {
    let spec = serde_json::to_value(promptreg::api::openapi()).expect("spec");
    let table = routes_table(&spec);
    for (path, item) in spec["paths"].as_object().into_iter().flatten() {
        for method in METHODS {
            if item.get(method).is_some() {
                let row = format!("| `{}` | `{path}` |", method.to_uppercase());
                assert!(table.contains(&row), "{row} is missing from the table");
            }
        }
    }
}
