//! LLM providers. For now: the request bodies each provider's API takes,
//! built from a rendered prompt (`requests`). The clients that send them come
//! with evaluations and reuse these builders.

pub mod requests;
