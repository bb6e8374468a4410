//! `POST /v1/projects?progress=1`: the deploy's progress as Server-Sent Events, for
//! `valet deploy`. Events: `stage` (unpacking, installing, starting), `log` (one installer
//! line), then `done` (the 201 answer's JSON) or `error` (the error answer's JSON, with its
//! status). The deploy runs in its own task: a client that leaves does not stop it.

use crate::deploy::deployed_view;
use crate::Admin;
use axum::response::sse::{Event as Sse, KeepAlive};
use axum::response::{IntoResponse, Response};
use futures_util::stream::StreamExt;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use valet_deploy::{Event, Progress, Upload};
use valet_store::Project;

/// What the stream carries: a progress event or the outcome.
enum Item {
    Progress(Event),
    Done(Result<serde_json::Value, (u16, serde_json::Value)>),
}

/// Starts the deploy and answers with its event stream.
pub fn stream(
    admin: Arc<Admin>,
    owner: String,
    existing: Option<Project>,
    upload: Upload,
) -> Response {
    let (tx, rx) = mpsc::unbounded_channel::<Item>();
    let (events_tx, mut events_rx) = mpsc::unbounded_channel::<Event>();
    let forward = tx.clone();
    let forwarder = tokio::spawn(async move {
        while let Some(event) = events_rx.recv().await {
            let _ = forward.send(Item::Progress(event));
        }
    });
    tokio::spawn(async move {
        let Some(deploy) = admin.deploy.as_ref() else {
            return;
        };
        let progress = Progress::to(events_tx);
        let result = deploy
            .deployer
            .deploy_reporting(&owner, existing, upload, &progress)
            .await;
        // Every progress sender is gone now; once the forwarder has passed on the last line,
        // the outcome follows it.
        drop(progress);
        let _ = forwarder.await;
        let outcome = match result {
            Ok(deployed) => Ok(deployed_view(&deployed)),
            Err(e) => {
                let error = crate::ApiError::from(e);
                Err((error.status_code().as_u16(), error.body()))
            }
        };
        let _ = tx.send(Item::Done(outcome));
    });
    let events = until_done(rx).map(|item| {
        let event = match item {
            Item::Progress(Event::Stage(name)) => Sse::default().event("stage").data(name),
            Item::Progress(Event::Line(line)) => Sse::default().event("log").data(line),
            Item::Done(Ok(body)) => Sse::default().event("done").data(body.to_string()),
            Item::Done(Err((status, body))) => Sse::default()
                .event("error")
                .data(json!({ "status": status, "body": body }).to_string()),
        };
        Ok::<_, std::convert::Infallible>(event)
    });
    axum::response::sse::Sse::new(events)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}

/// The receiver as a stream that ends after the outcome.
fn until_done(
    mut rx: mpsc::UnboundedReceiver<Item>,
) -> impl futures_util::Stream<Item = Item> + Send {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx)).scan(false, |finished, item| {
        if *finished {
            return futures_util::future::ready(None);
        }
        *finished = matches!(item, Item::Done(_));
        futures_util::future::ready(Some(item))
    })
}
