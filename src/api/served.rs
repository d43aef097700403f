//! What every front door that serves a label says about an experiment's
//! choice: the unit a client names (`?unit=` or `x-promptreg-unit`), and
//! the headers naming the experiment and variant served.

use std::convert::Infallible;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue};
use serde::Deserialize;
use utoipa::IntoParams;

use crate::domain::experiments::served_id;
use crate::services::registry::Served;

pub const UNIT_HEADER: &str = "x-promptreg-unit";
const EXPERIMENT_HEADER: HeaderName = HeaderName::from_static("x-promptreg-experiment");
const VARIANT_HEADER: HeaderName = HeaderName::from_static("x-promptreg-variant");
const SERVED_ID_HEADER: HeaderName = HeaderName::from_static("x-promptreg-served-id");

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UnitParams {
    /// A user, session or tenant id: while an experiment splits the label,
    /// the same unit always gets the same variant. Also the header
    /// `x-promptreg-unit`. Without one the variant is chosen at random.
    #[param(example = "user-42")]
    pub unit: Option<String>,
}

/// The `x-promptreg-unit` header, taken alone: a hot read has no use for a
/// copy of every header.
pub struct UnitHeader(Option<HeaderValue>);

impl<S: Send + Sync> FromRequestParts<S> for UnitHeader {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Infallible> {
        Ok(Self(parts.headers.get(UNIT_HEADER).cloned()))
    }
}

/// The unit: the query parameter, else the header.
pub fn unit<'a>(query: Option<&'a str>, header: &'a UnitHeader) -> Option<&'a str> {
    query.or_else(|| header.0.as_ref().and_then(|v| v.to_str().ok()))
}

/// `Vary: x-promptreg-unit` for an answer through a label, and, when an
/// experiment chose the version, the headers naming its choice.
pub fn headers(served: &Served) -> HeaderMap {
    let mut headers = HeaderMap::new();
    add_headers(served, &mut headers);
    headers
}

/// [`headers`], added to an answer's own.
pub fn add_headers(served: &Served, headers: &mut HeaderMap) {
    headers.insert(header::VARY, HeaderValue::from_static(UNIT_HEADER));
    if let Some(experiment) = served.experiment {
        let version = &served.version.version;
        let values = [
            (EXPERIMENT_HEADER, experiment.to_string()),
            (VARIANT_HEADER, version.to_string()),
            (SERVED_ID_HEADER, served_id(experiment, version)),
        ];
        for (name, value) in values {
            if let Ok(value) = HeaderValue::from_str(&value) {
                headers.insert(name, value);
            }
        }
    }
}
