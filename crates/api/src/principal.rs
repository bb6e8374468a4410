//! Who is calling the deploy API: the admin (admin token, or a store token made with
//! `--admin`), or a user (a store token made by `valet token create`, or a JWT whose `sub` is
//! the user and whose `plan` claim names the plan). A user sees and changes only their own
//! projects.

use crate::auth::bearer;
use crate::error::ApiError;
use crate::Admin;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use std::sync::Arc;
use valet_store::Project;

/// Checks a JWT and returns its `sub` and `plan` claims; made by the binary from `[auth]`.
pub type JwtCheck = Arc<dyn Fn(&str) -> Result<(String, Option<String>), String> + Send + Sync>;

/// The caller of a deploy endpoint, put into the request's extensions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// Sees and changes everything; no plan limits.
    Admin,
    /// Sees and changes their own projects, within their plan.
    User {
        /// The user's name (token `--user`, JWT `sub`).
        user: String,
        /// The plan's name, if one was given.
        plan: Option<String>,
    },
}

impl Principal {
    /// The owner recorded on projects this caller makes.
    pub fn owner(&self) -> &str {
        match self {
            Self::Admin => "admin",
            Self::User { user, .. } => user,
        }
    }

    /// Whether this caller may see and change `project`.
    pub fn may_touch(&self, project: &Project) -> bool {
        match self {
            Self::Admin => true,
            Self::User { user, .. } => &project.owner == user,
        }
    }
}

/// Resolves the bearer token into a [`Principal`], or answers 401.
pub async fn require_principal(
    State(admin): State<Arc<Admin>>,
    mut req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let token = bearer(req.headers()).map(str::to_string);
    let principal = match token {
        Some(token) => identify(&admin, &token).await?,
        None => None,
    };
    match principal {
        Some(principal) => {
            req.extensions_mut().insert(principal);
            Ok(next.run(req).await)
        }
        None => Err(ApiError::Unauthorized),
    }
}

async fn identify(admin: &Admin, token: &str) -> Result<Option<Principal>, ApiError> {
    if admin.token.matches(token) {
        return Ok(Some(Principal::Admin));
    }
    let Some(deploy) = &admin.deploy else {
        return Ok(None);
    };
    if token.starts_with("vt_") {
        let record = deploy.deployer.store().token(token).await.map_err(|e| {
            tracing::error!(error = %e, "token lookup failed");
            ApiError::Internal
        })?;
        return Ok(record.map(|r| {
            if r.admin {
                Principal::Admin
            } else {
                Principal::User {
                    user: r.user,
                    plan: Some(r.plan),
                }
            }
        }));
    }
    match &deploy.jwt {
        Some(check) => match check(token) {
            Ok((user, plan)) => Ok(Some(Principal::User { user, plan })),
            Err(message) => Err(ApiError::BadToken(message)),
        },
        None => Ok(None),
    }
}
