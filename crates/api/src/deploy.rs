//! The deploy API on the admin listener: the seed's paths (`POST /api/containers/upload`,
//! `GET /api/mcp-projects`, `DELETE /api/containers/servers/{id}`) and their REST twins under
//! `/v1/projects`, plus `POST /v1/tokens` for `valet token create`. Every endpoint needs a
//! bearer token ([`crate::principal`]); users see only their own projects, and a project that
//! is not theirs answers 404 as if it did not exist.

use crate::error::ApiError;
use crate::owned::Owned;
use crate::principal::{require_principal, JwtCheck, Principal};
use crate::Admin;
use axum::extract::{DefaultBodyLimit, FromRequest, Multipart, Query, Request, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{delete, get, post};
use axum::{middleware, Extension, Json, Router};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use valet_deploy::{Deployer, Plan, Plans, Upload};
use valet_store::Project;

/// What the deploy endpoints need besides the admin state.
pub struct DeployApi {
    /// Runs deploys; holds the store.
    pub deployer: Arc<Deployer>,
    /// `[plans.*]`: the policy lives in valet-deploy, this layer maps its refusals.
    pub plans: Plans,
    /// Checks JWTs against `[auth]`, when it is configured.
    pub jwt: Option<JwtCheck>,
}

impl DeployApi {
    /// The caller's plan; admins have none.
    fn plan_of(&self, principal: &Principal) -> Result<Option<Plan<'_>>, ApiError> {
        let Principal::User { plan, .. } = principal else {
            return Ok(None);
        };
        Ok(self.plans.of_user(plan.as_deref())?)
    }
}

/// The deploy routes, each behind the principal check.
pub fn routes(admin: Arc<Admin>) -> Router<Arc<Admin>> {
    Router::new()
        .route(
            "/api/containers/upload",
            // The upload's own cap (upload_body.rs) replaces axum's default 2 MB limit.
            post(upload).layer(DefaultBodyLimit::disable()),
        )
        .route("/api/mcp-projects", get(list))
        .route("/api/containers/servers/{id}", delete(remove))
        .route(
            "/v1/projects",
            get(list).post(upload).layer(DefaultBodyLimit::disable()),
        )
        .route("/v1/projects/{id}", get(show).delete(remove))
        .route("/v1/projects/{id}/versions", get(versions))
        .route("/v1/projects/{id}/rollback", post(rollback))
        .route("/v1/projects/{id}/logs", get(logs))
        .route("/v1/tokens", get(crate::tokens::list).post(create_token))
        .route("/v1/tokens/{id}", delete(crate::tokens::revoke))
        .route(
            "/v1/classes/{class}/secrets",
            get(crate::secrets::class_list),
        )
        .route(
            "/v1/classes/{class}/secrets/{name}",
            axum::routing::put(crate::secrets::class_put).delete(crate::secrets::class_remove),
        )
        .route("/v1/registries/secrets", get(crate::secrets::registry_list))
        .route(
            "/v1/registries/secrets/{name}",
            axum::routing::put(crate::secrets::registry_put)
                .delete(crate::secrets::registry_remove),
        )
        .route("/v1/projects/{id}/secrets", get(crate::secrets::list))
        .route(
            "/v1/projects/{id}/secrets/{name}",
            axum::routing::put(crate::secrets::put).delete(crate::secrets::remove),
        )
        .route_layer(middleware::from_fn_with_state(admin, require_principal))
}

pub(crate) fn api(admin: &Admin) -> Result<&DeployApi, ApiError> {
    admin
        .deploy
        .as_ref()
        .ok_or_else(|| ApiError::NotFound("the deploy API is not enabled".into()))
}

/// The multipart fields of an upload.
struct Form {
    upload: Upload,
    id: Option<String>,
}

async fn read_form(
    mut multipart: Multipart,
    limit: u64,
    over: &AtomicBool,
) -> Result<Form, ApiError> {
    let mut upload = Upload::default();
    let mut id = None;
    let mut has_file = false;
    loop {
        let field = match multipart.next_field().await {
            Ok(Some(field)) => field,
            Ok(None) => break,
            Err(e) => return Err(multipart_error(e, limit, over)),
        };
        let name = field.name().unwrap_or("").to_string();
        let file_name = field.file_name().map(str::to_string);
        let bytes = field
            .bytes()
            .await
            .map_err(|e| multipart_error(e, limit, over))?;
        if name == "file" {
            upload.file_name = file_name
                .ok_or_else(|| ApiError::BadRequest("the file field needs a filename".into()))?;
            upload.bytes = bytes.to_vec();
            has_file = true;
            continue;
        }
        let text = String::from_utf8(bytes.to_vec())
            .map_err(|_| ApiError::BadRequest(format!("the {name} field is not UTF-8")))?;
        match name.as_str() {
            "name" => upload.name = Some(text),
            "runtime" => upload.runtime = Some(text),
            "requirements" => upload.requirements = Some(text),
            "id" => id = Some(text),
            _ => {}
        }
    }
    if !has_file {
        return Err(ApiError::BadRequest(
            "a multipart field named file is required".into(),
        ));
    }
    Ok(Form { upload, id })
}

fn multipart_error(
    e: axum::extract::multipart::MultipartError,
    limit: u64,
    over: &AtomicBool,
) -> ApiError {
    if over.load(Ordering::Relaxed) || e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        return ApiError::refuse(
            413,
            "too_large",
            format!("the upload is larger than valet accepts ({limit} bytes)"),
        );
    }
    ApiError::BadRequest(format!("cannot read the multipart body: {}", e.body_text()))
}

/// `POST /api/containers/upload`, `POST /v1/projects`: 201 with the project's endpoint.
async fn upload(
    State(admin): State<Arc<Admin>>,
    Extension(principal): Extension<Principal>,
    Query(query): Query<UploadQuery>,
    req: Request,
) -> Result<axum::response::Response, ApiError> {
    let deploy = api(&admin)?;
    let limit = deploy.plans.body_limit();
    let (req, over) = crate::upload_body::capped(req, limit);
    let multipart = Multipart::from_request(req, &admin)
        .await
        .map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let form = read_form(multipart, limit, &over).await?;
    let plan = deploy.plan_of(&principal)?;
    if let Some(plan) = &plan {
        plan.check_upload(form.upload.bytes.len() as u64)?;
    }
    let store = deploy.deployer.store();
    let owner = principal.owner().to_string();
    let existing = match (&form.id, &form.upload.name) {
        (Some(id), _) => Some(visible(deploy, &principal, id).await?),
        (None, Some(name)) => store.project_named(&owner, name).await?,
        // No name: the file's, as the deployer names a new project, so uploading the same
        // file again is its next version (and is not counted against max_projects).
        (None, None) => {
            let name = valet_deploy::default_name(&form.upload.file_name);
            store.project_named(&owner, &name).await?
        }
    };
    if let (None, Some(plan)) = (&existing, &plan) {
        plan.check_new_project(store.count_projects(&owner).await?)?;
    }
    if let Some(plan) = &plan {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        let times = store
            .deploy_times_since(&owner, Plan::rate_window_start(now))
            .await?;
        plan.check_deploy_rate(&times, now)?;
    }
    if query.progress.is_some_and(|p| p != "0") {
        return Ok(crate::deploy_stream::stream(
            admin.clone(),
            owner,
            existing,
            form.upload,
        ));
    }
    let deployed = deploy
        .deployer
        .deploy(&owner, existing, form.upload)
        .await?;
    Ok((StatusCode::CREATED, Json(deployed_view(&deployed))).into_response())
}

/// The answer to a deploy: `{id, name, runtime, version, endpoint, reused_cache}`.
pub(crate) fn deployed_view(deployed: &valet_deploy::Deployed) -> Value {
    json!({
        "id": deployed.project.id,
        "name": deployed.project.name,
        "runtime": deployed.deployment.runtime,
        "version": deployed.deployment.version,
        "endpoint": deployed.endpoint,
        "reused_cache": deployed.reused_cache,
    })
}

/// Query of the upload endpoints: `?progress=1` answers with a stream of events.
#[derive(serde::Deserialize)]
pub(crate) struct UploadQuery {
    progress: Option<String>,
}

/// A project the caller may see; others' projects are "not found", never "forbidden", so
/// their ids cannot be probed.
pub(crate) async fn visible(
    deploy: &DeployApi,
    principal: &Principal,
    id: &str,
) -> Result<Project, ApiError> {
    match deploy.deployer.store().project(id).await? {
        Some(p) if principal.may_touch(&p) => Ok(p),
        _ => Err(ApiError::NotFound(format!("no project {id:?}"))),
    }
}

fn view(deploy: &DeployApi, p: &Project) -> Value {
    json!({
        "id": p.id,
        "name": p.name,
        "owner": p.owner,
        "runtime": p.runtime,
        "version": p.current_version,
        "endpoint": deploy.deployer.endpoint(&p.id),
        "state": deploy.deployer.state(&p.id),
        "created_at": p.created_at,
    })
}

/// `GET /api/mcp-projects`, `GET /v1/projects`.
async fn list(
    State(admin): State<Arc<Admin>>,
    Extension(principal): Extension<Principal>,
) -> Result<Json<Value>, ApiError> {
    let deploy = api(&admin)?;
    let owner = match &principal {
        Principal::Admin => None,
        Principal::User { user, .. } => Some(user.as_str()),
    };
    let projects = deploy.deployer.store().projects(owner).await?;
    Ok(Json(Value::Array(
        projects.iter().map(|p| view(deploy, p)).collect(),
    )))
}

/// `GET /v1/projects/{id}`.
async fn show(owned: Owned) -> Result<Json<Value>, ApiError> {
    Ok(Json(view(owned.deploy(), &owned.project)))
}

/// `DELETE /api/containers/servers/{id}`, `DELETE /v1/projects/{id}`.
async fn remove(owned: Owned) -> Result<Json<Value>, ApiError> {
    owned.deploy().deployer.delete(&owned.project).await?;
    Ok(Json(json!({ "deleted": owned.project.id })))
}

/// `GET /v1/projects/{id}/versions`.
async fn versions(owned: Owned) -> Result<Json<Value>, ApiError> {
    let project = &owned.project;
    let all = owned
        .deploy()
        .deployer
        .store()
        .deployments(&project.id)
        .await?;
    Ok(Json(Value::Array(
        all.iter()
            .map(|d| {
                json!({
                    "version": d.version,
                    "runtime": d.runtime,
                    "requirements": d.requirements,
                    "created_at": d.created_at,
                    "current": d.version == project.current_version,
                })
            })
            .collect(),
    )))
}

/// Body of `POST /v1/projects/{id}/rollback`.
#[derive(serde::Deserialize)]
struct RollbackBody {
    version: i64,
}

/// `POST /v1/projects/{id}/rollback` `{"version": N}`: traffic moves once N is ready.
async fn rollback(
    owned: Owned,
    body: Result<Json<RollbackBody>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let Json(body) = body.map_err(|e| {
        ApiError::BadRequest(format!("expected {{\"version\": N}}: {}", e.body_text()))
    })?;
    let deployer = &owned.deploy().deployer;
    deployer.rollback(&owned.project, body.version).await?;
    let project = deployer
        .store()
        .project(&owned.project.id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no project {:?}", owned.project.id)))?;
    Ok(Json(view(owned.deploy(), &project)))
}

/// Query of `GET /v1/projects/{id}/logs`.
#[derive(serde::Deserialize)]
struct LogsQuery {
    lines: Option<usize>,
}

/// `GET /v1/projects/{id}/logs?lines=N`: the current version's output.
async fn logs(owned: Owned, Query(q): Query<LogsQuery>) -> Result<Json<Value>, ApiError> {
    let lines = owned
        .deploy()
        .deployer
        .logs(&owned.project.id, q.lines.unwrap_or(100).min(10_000));
    Ok(Json(json!({ "lines": lines })))
}

/// Body of `POST /v1/tokens`.
#[derive(serde::Deserialize, Default)]
#[serde(default)]
struct TokenBody {
    user: Option<String>,
    plan: Option<String>,
    admin: bool,
}

/// `POST /v1/tokens` (admin only): a new API token, shown once.
async fn create_token(
    State(admin): State<Arc<Admin>>,
    Extension(principal): Extension<Principal>,
    body: Option<Json<TokenBody>>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let deploy = api(&admin)?;
    if principal != Principal::Admin {
        return Err(ApiError::refuse(
            403,
            "forbidden",
            "only an admin may make tokens".into(),
        ));
    }
    let body = body.map(|Json(b)| b).unwrap_or_default();
    let user = body
        .user
        .unwrap_or_else(|| format!("user-{}", valet_store::random_hex(4)));
    crate::principal::check_user(&user).map_err(|e| ApiError::BadRequest(format!("user: {e}")))?;
    let plan = match deploy.plans.of_user(body.plan.as_deref()) {
        Ok(Some(plan)) => plan.name.to_string(),
        // No [plans]: nobody has limits. A plan named anyway would be a typo or a plan the
        // operator believes exists; either way the token would silently carry no limits.
        Ok(None) => match body.plan {
            Some(plan) => {
                return Err(ApiError::BadRequest(format!(
                    "no plan named {plan:?}: this valet's config has no [plans], so users have no limits; leave --plan out, or add [plans.{plan}]"
                )))
            }
            None => String::new(),
        },
        Err(valet_deploy::PlanRefusal::UnknownPlan { name, known }) => {
            return Err(ApiError::BadRequest(format!(
                "no plan named {name:?} in [plans] (plans: {known})"
            )))
        }
        Err(e) => return Err(ApiError::BadRequest(e.to_string())),
    };
    let token = deploy
        .deployer
        .store()
        .create_token(&user, &plan, body.admin)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "token": token, "user": user, "plan": plan, "admin": body.admin })),
    ))
}
