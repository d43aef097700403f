//! HTTP-level conformance suite: every behaviour runs against SQLite and Postgres.
//! Provider clients (`providers`) run once, against the fake LLM (`fake_llm`);
//! a database outage (`outage`) runs on Postgres only, on a private cluster.

mod support;

mod audit;
mod auth;
mod cli;
mod cli_edges;
mod datasets;
mod docs;
mod errors;
mod evaluations;
mod experiments;
mod fake_llm;
mod gate_paths;
mod hostile_input;
mod labels;
mod langfuse;
mod lists;
mod mlflow;
mod monitors;
mod objectives;
mod observability;
mod optimizations;
mod outage;
mod prompts;
mod providers;
mod render;
mod render_bounds;
mod service;
mod users;
mod versions;
mod webhooks;
mod worker_panics;
