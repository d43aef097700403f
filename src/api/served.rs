//! What every front door that serves a label says about an experiment's
//! choice: the unit a client names (`?unit=` or `x-promptreg-unit`), and
//! the headers naming the experiment and variant served.

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

/// The unit: the query parameter, else the header.
pub fn unit<'a>(query: Option<&'a str>, headers: &'a HeaderMap) -> Option<&'a str> {
    query.or_else(|| headers.get(UNIT_HEADER).and_then(|v| v.to_str().ok()))
}

/// `Vary: x-promptreg-unit` for an answer through a label, and, when an
/// experiment chose the version, the headers naming its choice.
pub fn headers(served: &Served) -> Vec<(HeaderName, HeaderValue)> {
    let mut headers = vec![(header::VARY, HeaderValue::from_static(UNIT_HEADER))];
    if let Some(experiment) = served.experiment {
        let version = &served.version.version;
        let values = [
            (EXPERIMENT_HEADER, experiment.to_string()),
            (VARIANT_HEADER, version.to_string()),
            (SERVED_ID_HEADER, served_id(experiment, version)),
        ];
        headers.extend(
            values
                .into_iter()
                .filter_map(|(name, value)| Some((name, HeaderValue::from_str(&value).ok()?))),
        );
    }
    headers
}
