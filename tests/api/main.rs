//! HTTP-level conformance suite: every behaviour runs against SQLite and Postgres.

mod support;

mod auth;
mod cli;
mod datasets;
mod errors;
mod labels;
mod prompts;
mod render;
mod service;
mod versions;
