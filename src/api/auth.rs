//! The `Auth<S>` extractor: authenticates the bearer key, checks that it
//! holds scope `S` and takes a token from its rate-limit bucket. A handler
//! states the scope it needs in its signature (`auth: Auth<scope::Write>`) and
//! in its OpenAPI `security`; the route-table test keeps the two in step.

use std::marker::PhantomData;
use std::ops::Deref;

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;

use super::AppState;
use crate::auth::Caller;
use crate::domain::auth::Scope;
use crate::error::ApiError;

pub trait RequiredScope: Send + Sync {
    const SCOPE: Scope;
}

/// Scope markers for [`Auth`].
pub mod scope {
    use super::{RequiredScope, Scope};

    macro_rules! markers {
        ($($name:ident => $scope:expr),* $(,)?) => {
            $(
                pub struct $name;
                impl RequiredScope for $name {
                    const SCOPE: Scope = $scope;
                }
            )*
        };
    }

    markers!(
        Read => Scope::Read,
        Write => Scope::Write,
        Promote => Scope::Promote,
        Evaluate => Scope::Evaluate,
        Feedback => Scope::Feedback,
        Admin => Scope::Admin,
    );
}

pub struct Auth<S> {
    caller: Caller,
    scope: PhantomData<S>,
}

impl<S> Deref for Auth<S> {
    type Target = Caller;

    fn deref(&self) -> &Caller {
        &self.caller
    }
}

impl<S> Auth<S> {
    /// Requires one more scope, for requests that do more than the route's
    /// own (a version post that also moves labels needs `promote`).
    pub fn also_require(&self, state: &AppState, scope: Scope) -> Result<(), ApiError> {
        Ok(state.auth.authorize(&self.caller, scope)?)
    }
}

impl<S: RequiredScope> FromRequestParts<AppState> for Auth<S> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let header = parts
            .headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        let caller = state.auth.authenticate(header).await?;
        state.auth.authorize(&caller, S::SCOPE)?;
        Ok(Self {
            caller,
            scope: PhantomData,
        })
    }
}
