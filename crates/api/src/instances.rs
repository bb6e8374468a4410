//! `/v1/classes` and `/v1/instances/...`: what runs, and start, stop, destroy (Cloudflare's
//! `start`, `stop`, `destroy`). Keys arrive percent-encoded in the path and are decoded by the
//! router, so any key a request can make can be named here.

use crate::error::ApiError;
use crate::views::{ClassView, InstanceView};
use crate::Admin;
use axum::extract::{Path, Query, State};
use axum::Json;
use serde::Deserialize;
use std::sync::Arc;
use valet_instances::ClassRuntime;

pub async fn classes(State(admin): State<Arc<Admin>>) -> Json<Vec<ClassView>> {
    Json(
        admin
            .instances
            .classes()
            .iter()
            .map(|c| ClassView::of(c))
            .collect(),
    )
}

#[derive(Deserialize)]
pub struct ListQuery {
    class: Option<String>,
}

/// Every known instance (sleeping ones too), optionally of one class.
pub async fn list(
    State(admin): State<Arc<Admin>>,
    Query(q): Query<ListQuery>,
) -> Result<Json<Vec<InstanceView>>, ApiError> {
    // A project may be named by its name or id: filter by the class it resolves to.
    let class = match &q.class {
        Some(class) => Some(admin.class(class)?.name.clone()),
        None => None,
    };
    let all = admin.instances.list().into_iter();
    let wanted = all.filter(|i| class.as_ref().is_none_or(|c| *i.class == **c));
    Ok(Json(wanted.map(InstanceView::from).collect()))
}

/// One class's config and counts; a project by its name, id or version class.
pub async fn class(
    State(admin): State<Arc<Admin>>,
    Path(class): Path<String>,
) -> Result<Json<ClassView>, ApiError> {
    let runtime = admin.class(&class)?;
    Ok(Json(ClassView::of(&runtime)))
}

pub async fn get(
    State(admin): State<Arc<Admin>>,
    Path((class, key)): Path<(String, String)>,
) -> Result<Json<InstanceView>, ApiError> {
    admin.view(&class, &key).map(Json)
}

/// Starts the instance (making the key known if it was not) and answers once it is ready or
/// has failed to start, like a first request would.
pub async fn start(
    State(admin): State<Arc<Admin>>,
    Path((class, key)): Path<(String, String)>,
) -> Result<Json<InstanceView>, ApiError> {
    let runtime = admin.class(&class)?;
    admin.instances.start(&runtime, &key).await?;
    tracing::info!(instance = %format!("{}/{key}", runtime.label()), "started by the admin API");
    admin.view(&class, &key).map(Json)
}

/// Stops the instance gracefully; the next request starts it again.
pub async fn stop(
    State(admin): State<Arc<Admin>>,
    Path((class, key)): Path<(String, String)>,
) -> Result<Json<InstanceView>, ApiError> {
    let runtime = admin.class(&class)?;
    if !admin.instances.stop(&runtime, &key, false).await {
        return Err(ApiError::no_instance(runtime.label(), &key));
    }
    tracing::info!(instance = %format!("{}/{key}", runtime.label()), "stopped by the admin API");
    admin.view(&class, &key).map(Json)
}

/// Stops the instance, deletes its persistent data and log, and forgets the key.
pub async fn destroy(
    State(admin): State<Arc<Admin>>,
    Path((class, key)): Path<(String, String)>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let runtime = admin.class(&class)?;
    if !admin.instances.stop(&runtime, &key, true).await {
        return Err(ApiError::no_instance(runtime.label(), &key));
    }
    tracing::info!(instance = %format!("{}/{key}", runtime.label()), "destroyed by the admin API");
    Ok(Json(serde_json::json!({
        "class": &*runtime.name,
        "label": runtime.label(),
        "key": key,
        "destroyed": true,
    })))
}

impl Admin {
    /// A class by what an operator calls it: a `[[containers]]` name, a deployed version's
    /// class name, or a project as `project:<id>`, `project:<name>`, `<id>` or `<name>`
    /// (meaning its current version). A config class wins over a project of the same name.
    pub(crate) fn class(&self, name: &str) -> Result<Arc<ClassRuntime>, ApiError> {
        if let Some(class) = self.instances.class_named(name) {
            return Ok(class);
        }
        let wanted = name.strip_prefix("project:").unwrap_or(name);
        let mut found: Vec<Arc<ClassRuntime>> = self
            .instances
            .project_classes()
            .into_iter()
            .filter(|c| {
                c.project
                    .as_ref()
                    .is_some_and(|p| *p.id == *wanted || *p.name == *wanted)
            })
            .collect();
        match found.len() {
            0 => Err(ApiError::NotFound(format!(
                "no container class or project named {name:?}"
            ))),
            1 => Ok(found.remove(0)),
            // Names are unique per owner only: two tenants may share one.
            _ => {
                let ids: Vec<String> = found
                    .iter()
                    .filter_map(|c| c.project.as_ref().map(|p| p.id.to_string()))
                    .collect();
                Err(ApiError::BadRequest(format!(
                    "{} projects are named {wanted:?}; name one by its id: {}",
                    ids.len(),
                    ids.join(", ")
                )))
            }
        }
    }

    fn view(&self, class: &str, key: &str) -> Result<InstanceView, ApiError> {
        let runtime = self.class(class)?;
        let instance = self
            .instances
            .instance_of(&runtime, key)
            .ok_or_else(|| ApiError::no_instance(runtime.label(), key))?;
        Ok(self.instances.info_of(&instance).into())
    }
}
