//! Logs, traces and metrics.
//!
//! Logs: an `EnvFilter` (from `RUST_LOG`, else the configured level) and a
//! pretty (coloured only on a terminal) or JSON formatter, on stdout; JSON
//! lines inside a traced span carry its `trace_id` and `span_id`, so logs
//! and traces join.
//!
//! Traces: off unless a collector is configured; then spans go out over
//! OTLP/HTTP (protobuf) from a batch processor on its own thread, so a slow
//! or absent collector never holds up a request ([`trace`]).
//!
//! Metrics: Prometheus names and labels in [`metrics`].

pub mod metrics;
pub mod trace;

use std::io::IsTerminal;

use tracing_opentelemetry::OtelData;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::config::{self, Config, LogFormat};

/// Keeps the trace exporter running; dropping it flushes the spans still
/// queued (a bounded wait) and stops the exporter.
#[must_use = "dropping the guard stops trace export"]
pub struct Telemetry {
    traces: Option<trace::Exporter>,
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(traces) = self.traces.take() {
            traces.shutdown();
        }
    }
}

/// Installs the global subscriber (logs, and traces when configured). A
/// second call (as in tests) keeps the first subscriber and exports nothing.
pub fn init(config: &Config) -> Telemetry {
    let directive = config::rust_log().unwrap_or_else(|| config.log_level.clone());
    let filter = EnvFilter::try_new(&directive).unwrap_or_else(|_| EnvFilter::new("info"));
    let exporter = trace::Exporter::start(&config.telemetry);
    // Spans are exported whatever the log level: a quiet log (`warn`) must
    // not switch tracing off.
    let otel_layer = exporter.as_ref().map(|exporter| {
        exporter.layer().with_filter(
            tracing_subscriber::filter::Targets::new()
                .with_target("promptreg", tracing::Level::INFO),
        )
    });
    let fmt_layer = match config.log_format {
        LogFormat::Json => json_layer().with_filter(filter).boxed(),
        // Colours are for people at a terminal; in a file or a pipe the
        // escape codes are noise. Logs go to stdout, so stdout decides.
        LogFormat::Pretty => tracing_subscriber::fmt::layer()
            .compact()
            .with_ansi(std::io::stdout().is_terminal())
            .with_filter(filter)
            .boxed(),
    };
    let installed = tracing_subscriber::registry()
        .with(otel_layer)
        .with(fmt_layer)
        .try_init()
        .is_ok();
    match exporter {
        Some(exporter) if installed => {
            trace::set_enabled(true);
            tracing::info!(
                endpoint = %exporter.endpoint(),
                "exporting traces over OTLP/HTTP"
            );
            Telemetry {
                traces: Some(exporter),
            }
        }
        Some(exporter) => {
            exporter.shutdown();
            Telemetry { traces: None }
        }
        None => Telemetry { traces: None },
    }
}

/// One JSON object per line, in `tracing-subscriber`'s shape (`timestamp`,
/// `level`, `fields`, `target`, `span`) plus `trace_id` and `span_id` when
/// the event happens inside a traced span.
fn json_layer<S>() -> json_subscriber::fmt::Layer<S>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    let mut layer = json_subscriber::fmt::layer()
        .with_current_span(true)
        .with_span_list(false);
    let inner = layer.inner_layer_mut();
    inner.add_from_extension::<OtelData, _, _>("trace_id", |otel| {
        otel.trace_id().map(|id| id.to_string())
    });
    inner.add_from_extension::<OtelData, _, _>("span_id", |otel| {
        otel.span_id().map(|id| id.to_string())
    });
    layer
}
