//! HTTP-level conformance suite: every behaviour runs against SQLite and Postgres.

mod support;

mod errors;
mod labels;
mod prompts;
mod service;
mod versions;
