//! The `Auth<S>` extractor: authenticates the bearer key, checks that it
//! holds scope `S` and takes a token from its rate-limit bucket. A handler
//! states the scope it needs in its signature (`auth: Auth<scope::Write>`) and
//! in its OpenAPI `security`; the route-table test keeps the two in step.

use std::future::Future;
use std::marker::PhantomData;
use std::ops::Deref;

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use axum::response::IntoResponse;

use super::AppState;
use crate::auth::{AuthError, Caller};
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

/// How a front door reads its caller from `Authorization`, and how it
/// refuses: `/v1` takes a bearer key and answers problem+json; the
/// compatible APIs take their clients' credentials and answer in their
/// clients' formats.
pub trait Credentials: Send + Sync {
    type Rejection: IntoResponse + From<AuthError>;

    fn caller(
        state: &AppState,
        authorization: Option<&str>,
    ) -> impl Future<Output = Result<Caller, Self::Rejection>> + Send;
}

/// `/v1`'s credentials: `Authorization: Bearer <key>`.
pub struct Bearer;

impl Credentials for Bearer {
    type Rejection = ApiError;

    async fn caller(state: &AppState, authorization: Option<&str>) -> Result<Caller, ApiError> {
        Ok(state.auth.authenticate(authorization).await?)
    }
}

pub struct Auth<S, C = Bearer> {
    caller: Caller,
    marker: PhantomData<(S, C)>,
}

impl<S, C> Deref for Auth<S, C> {
    type Target = Caller;

    fn deref(&self) -> &Caller {
        &self.caller
    }
}

impl<S, C: Credentials> Auth<S, C> {
    /// Requires one more scope, for requests that do more than the route's
    /// own (a version post that also moves labels needs `promote`).
    pub fn also_require(&self, state: &AppState, scope: Scope) -> Result<(), C::Rejection> {
        Ok(state.auth.authorize(&self.caller, scope)?)
    }
}

impl<S: RequiredScope, C: Credentials> FromRequestParts<AppState> for Auth<S, C> {
    type Rejection = C::Rejection;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, C::Rejection> {
        let header = parts
            .headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        let caller = C::caller(state, header).await?;
        state.auth.authorize(&caller, S::SCOPE)?;
        Ok(Self {
            caller,
            marker: PhantomData,
        })
    }
}
