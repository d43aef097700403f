//! The one layer every request passes through on its way in and out: its
//! request id, its trace span and log line, its metrics, its timeout, panic
//! catching and the default headers of every answer.
//!
//! One layer rather than a stack of tower-http's (set and propagate the
//! request id, trace, catch panic, timeout and its error handler, a
//! `map_response` for the headers): each of those wraps the future, and some
//! the body, of every request, and together they cost as much as axum itself
//! on a cached read. Here a request costs one future and no body wrapper, and
//! the timeout's timer is armed only when the handler does not answer at its
//! first poll, which a cached read always does.

use std::convert::Infallible;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request};
use axum::http::{header, HeaderName, HeaderValue, Method};
use axum::response::{IntoResponse, Response};
use pin_project_lite::pin_project;
use tokio::time::Sleep;

use crate::error::ApiError;
use crate::services::ServiceError;
use crate::telemetry;

/// The header that carries a request's id, both ways.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// What every answer carries unless its handler said otherwise. Answers may
/// carry secrets (a new key), so none is stored; only versions say otherwise.
const DEFAULT_HEADERS: [(HeaderName, HeaderValue); 4] = [
    (
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    ),
    (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
    (
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    ),
    (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
];

/// The layer; `metrics` says whether answers are counted (a metrics
/// recorder is installed).
#[derive(Debug, Clone, Copy)]
pub struct EnvelopeLayer {
    pub timeout: Duration,
    pub metrics: bool,
}

impl<S> tower::Layer<S> for EnvelopeLayer {
    type Service = Envelope<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Envelope {
            inner,
            settings: *self,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Envelope<S> {
    inner: S,
    settings: EnvelopeLayer,
}

impl<S> tower::Service<Request> for Envelope<S>
where
    S: tower::Service<Request, Response = Response, Error = Infallible>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = EnvelopeFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let started = Instant::now();
        // A caller's own id is kept, so its logs and ours share it.
        let request_id = request
            .headers()
            .get(REQUEST_ID)
            .cloned()
            .unwrap_or_else(new_request_id);
        let route = request.extensions().get::<MatchedPath>().cloned();
        let method = request.method().clone();
        let span = request_span(&request, route.as_ref(), &request_id);
        let called = {
            let _entered = span.enter();
            tracing::debug!("started processing request");
            catch_unwind(AssertUnwindSafe(|| self.inner.call(request)))
        };
        let state = match called {
            Ok(future) => State::Running {
                future,
                timer: None,
            },
            Err(_) => State::Answered {
                response: Some(panic_response()),
            },
        };
        EnvelopeFuture {
            state,
            span,
            request_id,
            route,
            method,
            started,
            settings: self.settings,
        }
    }
}

pin_project! {
    pub struct EnvelopeFuture<F> {
        #[pin]
        state: State<F>,
        span: tracing::Span,
        request_id: HeaderValue,
        route: Option<MatchedPath>,
        method: Method,
        started: Instant,
        settings: EnvelopeLayer,
    }
}

pin_project! {
    #[project = StateProjection]
    enum State<F> {
        Running {
            #[pin]
            future: F,
            // Armed at the first poll that does not answer.
            timer: Option<Pin<Box<Sleep>>>,
        },
        // The handler panicked while being called.
        Answered { response: Option<Response> },
    }
}

impl<F> Future for EnvelopeFuture<F>
where
    F: Future<Output = Result<Response, Infallible>>,
{
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let _entered = this.span.enter();
        let mut response = match this.state.project() {
            StateProjection::Running { future, timer } => {
                // A bug (say, a template parser's panic on odd input) costs
                // one request a 500, not the connection.
                match catch_unwind(AssertUnwindSafe(|| future.poll(cx))) {
                    Ok(Poll::Ready(Ok(response))) => response,
                    Ok(Poll::Ready(Err(never))) => match never {},
                    Err(_) => panic_response(),
                    Ok(Poll::Pending) => {
                        let deadline = *this.started + this.settings.timeout;
                        let timer = timer.get_or_insert_with(|| {
                            Box::pin(tokio::time::sleep_until(deadline.into()))
                        });
                        if timer.as_mut().poll(cx).is_pending() {
                            return Poll::Pending;
                        }
                        ApiError::Timeout.into_response()
                    }
                }
            }
            StateProjection::Answered { response } => {
                response.take().unwrap_or_else(panic_response)
            }
        };
        let headers = response.headers_mut();
        // At most one growth of the map for all that follows.
        headers.reserve(DEFAULT_HEADERS.len() + 1);
        for (name, value) in DEFAULT_HEADERS {
            headers.entry(name).or_insert(value);
        }
        headers
            .entry(REQUEST_ID)
            .or_insert_with(|| this.request_id.clone());
        let elapsed = this.started.elapsed();
        let route = this.route.as_ref().map_or("unmatched", MatchedPath::as_str);
        on_response(&response, elapsed, this.span);
        if this.settings.metrics {
            telemetry::metrics::http_request(
                this.method,
                route,
                response.status().as_u16(),
                elapsed,
            );
        }
        Poll::Ready(Ok(response))
    }
}

/// A random (v4) uuid, written straight into the header value rather than
/// through `Display`, which costs more than drawing the uuid.
fn new_request_id() -> HeaderValue {
    let mut buffer = [0u8; uuid::fmt::Hyphenated::LENGTH];
    let id = uuid::Uuid::new_v4().hyphenated().encode_lower(&mut buffer);
    HeaderValue::from_str(id).unwrap_or_else(|_| HeaderValue::from_static("unknown"))
}

fn panic_response() -> Response {
    ApiError::from(ServiceError::Internal(anyhow::anyhow!(
        "a request handler panicked"
    )))
    .into_response()
}

/// One server span per request, named and attributed as OpenTelemetry's
/// HTTP conventions say, joined to the caller's trace when the request
/// carries a `traceparent`; the response adds the status. The route is the
/// matched template (`/v1/prompts/{name}`), never the raw path: low
/// cardinality, and no prompt name in a span name.
fn request_span(
    request: &Request,
    route: Option<&MatchedPath>,
    request_id: &HeaderValue,
) -> tracing::Span {
    let route = route.map_or("unmatched", MatchedPath::as_str);
    let request_id = request_id.to_str().unwrap_or_default();
    // OpenTelemetry's name for a method outside the standard ones.
    let method = telemetry::metrics::standard_method(request.method()).unwrap_or("_OTHER");
    let span = tracing::info_span!(
        "request",
        otel.name = format_args!("{method} {route}"),
        otel.kind = "server",
        otel.status_code = tracing::field::Empty,
        http.request.method = method,
        http.route = route,
        url.path = request.uri().path(),
        http.response.status_code = tracing::field::Empty,
        request_id
    );
    telemetry::trace::continue_trace(&span, request.headers());
    span
}

/// Records the status on the request span and logs the answer; a server
/// error is logged as an error.
fn on_response(response: &Response, latency: Duration, span: &tracing::Span) {
    let status = response.status();
    let latency_us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
    span.record("http.response.status_code", i64::from(status.as_u16()));
    if status.is_server_error() {
        span.record("otel.status_code", "ERROR");
        tracing::error!(status = status.as_u16(), latency_us, "response failed");
    }
    tracing::info!(
        status = status.as_u16(),
        latency_us,
        "finished processing request"
    );
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::StatusCode;
    use tower::{service_fn, Layer, ServiceExt};

    use super::*;

    const LAYER: EnvelopeLayer = EnvelopeLayer {
        timeout: Duration::from_millis(50),
        metrics: false,
    };

    fn request(id: Option<&'static str>) -> Request {
        let mut builder = Request::builder().uri("/somewhere");
        if let Some(id) = id {
            builder = builder.header(REQUEST_ID, id);
        }
        builder.body(Body::empty()).expect("a valid request")
    }

    async fn problem_code(response: Response) -> String {
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .expect("the body");
        let problem: serde_json::Value = serde_json::from_slice(&bytes).expect("problem+json");
        problem["code"].as_str().unwrap_or_default().to_owned()
    }

    #[tokio::test]
    async fn an_answer_gets_the_default_headers_and_the_callers_request_id() {
        let service = LAYER.layer(service_fn(|_: Request| async {
            let mut response = "ok".into_response();
            response
                .headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("max-age=5"));
            Ok::<_, Infallible>(response)
        }));
        let response = service
            .oneshot(request(Some("abc-123")))
            .await
            .expect("an answer");
        assert_eq!(response.status(), StatusCode::OK);
        let headers = response.headers();
        assert_eq!(headers[REQUEST_ID], "abc-123");
        assert_eq!(headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        assert_eq!(headers[header::X_FRAME_OPTIONS], "DENY");
        // The handler's own header wins over the default.
        assert_eq!(headers[header::CACHE_CONTROL], "max-age=5");
    }

    #[tokio::test]
    async fn a_request_without_an_id_gets_a_new_one_each_time() {
        let service = LAYER.layer(service_fn(|_: Request| async {
            Ok::<_, Infallible>("ok".into_response())
        }));
        let first = service
            .clone()
            .oneshot(request(None))
            .await
            .expect("an answer");
        let second = service.oneshot(request(None)).await.expect("an answer");
        let first = first.headers()[REQUEST_ID]
            .to_str()
            .expect("ascii")
            .to_owned();
        let second = second.headers()[REQUEST_ID]
            .to_str()
            .expect("ascii")
            .to_owned();
        assert!(uuid::Uuid::parse_str(&first).is_ok(), "{first}");
        assert_ne!(first, second);
    }

    #[tokio::test]
    async fn a_handler_slower_than_the_timeout_answers_408() {
        let service = LAYER.layer(service_fn(|_: Request| async {
            tokio::time::sleep(Duration::from_secs(5)).await;
            Ok::<_, Infallible>("too late".into_response())
        }));
        let response = service
            .oneshot(request(Some("slow")))
            .await
            .expect("an answer");
        assert_eq!(response.status(), StatusCode::REQUEST_TIMEOUT);
        assert_eq!(response.headers()[REQUEST_ID], "slow");
        assert_eq!(response.headers()[header::CACHE_CONTROL], "no-store");
        assert_eq!(problem_code(response).await, "request_timeout");
    }

    #[tokio::test]
    async fn a_handler_that_waits_but_answers_in_time_is_not_cut_off() {
        let service = LAYER.layer(service_fn(|_: Request| async {
            tokio::time::sleep(Duration::from_millis(5)).await;
            Ok::<_, Infallible>("in time".into_response())
        }));
        let response = service.oneshot(request(None)).await.expect("an answer");
        assert_eq!(response.status(), StatusCode::OK);
    }

    #[tokio::test]
    async fn a_panic_while_answering_or_being_called_is_a_500() {
        let panics_in_future = LAYER.layer(service_fn(|_: Request| async {
            if std::hint::black_box(true) {
                panic!("a bug");
            }
            Ok::<_, Infallible>("never".into_response())
        }));
        let response = panics_in_future
            .oneshot(request(Some("p1")))
            .await
            .expect("an answer");
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(response.headers()[REQUEST_ID], "p1");
        assert_eq!(problem_code(response).await, "internal");

        #[derive(Clone)]
        struct PanicsWhenCalled;
        impl tower::Service<Request> for PanicsWhenCalled {
            type Response = Response;
            type Error = Infallible;
            type Future = std::future::Ready<Result<Response, Infallible>>;
            fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
                Poll::Ready(Ok(()))
            }
            fn call(&mut self, _: Request) -> Self::Future {
                panic!("a bug in call");
            }
        }
        let response = LAYER
            .layer(PanicsWhenCalled)
            .oneshot(request(Some("p2")))
            .await
            .expect("an answer");
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(response.headers()[REQUEST_ID], "p2");
    }
}
