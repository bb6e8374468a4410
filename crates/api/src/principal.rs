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

/// The owner recorded on the admin's projects. Kept as it always was, so stores made before
/// stay the admin's; no user may carry it (see [`check_user`]).
pub const ADMIN_OWNER: &str = "admin";

/// User names no user may have: the admin principal's owner name, in any case (a store or a
/// JWT issuer may compare names without case). A user by that name would own, list and
/// delete the admin's projects.
const RESERVED_USERS: &[&str] = &[ADMIN_OWNER];

/// Checks a user name from any source (`POST /v1/tokens`, a stored token, a JWT's `sub`):
/// a project name's rules, and none of the reserved names.
pub fn check_user(name: &str) -> Result<(), String> {
    valet_deploy::check_name(name)
        .map_err(|e| e.to_string().replace("project name", "user name"))?;
    if RESERVED_USERS
        .iter()
        .any(|r| name.trim().eq_ignore_ascii_case(r))
    {
        return Err(format!(
            "the user name {name:?} is reserved for valet's admin; choose another"
        ));
    }
    Ok(())
}

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
            Self::Admin => ADMIN_OWNER,
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

/// Resolves the bearer token into a [`Principal`], or answers 401 saying whether the token
/// was missing or unknown.
pub async fn require_principal(
    State(admin): State<Arc<Admin>>,
    mut req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let Some(token) = bearer(req.headers()).map(str::to_string) else {
        return Err(ApiError::NoToken);
    };
    match identify(&admin, &token).await? {
        Some(principal) => {
            req.extensions_mut().insert(principal);
            Ok(next.run(req).await)
        }
        None => Err(ApiError::UnknownToken),
    }
}

/// Who a bearer token is: the admin token, a stored token (user or `--admin`), or a JWT.
/// `None` for a token valet does not know. A user whose name is reserved is refused here,
/// whatever made the token, so no path lets one act as the admin's owner name.
pub(crate) async fn identify(admin: &Admin, token: &str) -> Result<Option<Principal>, ApiError> {
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
        return match record {
            None => Ok(None),
            Some(r) if r.admin => Ok(Some(Principal::Admin)),
            Some(r) => {
                // A token made before reserved names were refused.
                check_user(&r.user).map_err(ApiError::BadToken)?;
                Ok(Some(Principal::User {
                    user: r.user,
                    plan: Some(r.plan),
                }))
            }
        };
    }
    match &deploy.jwt {
        Some(check) => match check(token) {
            Ok((user, plan)) => {
                check_user(&user).map_err(|e| ApiError::BadToken(format!("sub: {e}")))?;
                Ok(Some(Principal::User { user, plan }))
            }
            Err(message) => Err(ApiError::BadToken(message)),
        },
        None => Ok(None),
    }
}
