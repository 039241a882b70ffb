//! A pass's frames and packets over HTTP, extracted on demand from the store-once archive:
//! `GET /api/v1/passes/{id}/data` (the VCIDs with frames and the APIDs with packets),
//! `GET /api/v1/passes/{id}/frames/{vcid}` (the good frames of one VC after RS, concatenated in
//! arrival order) and `GET /api/v1/passes/{id}/packets/{apid}` (the packets of one APID,
//! concatenated in arrival order: what `downlink decode --packets-out` writes for it). The bytes
//! are streamed as they are extracted ([`archive::pass_store::StoredPass`]); a failure half way
//! (an index that does not match the data) ends the response early instead of completing it.

use std::io::Read;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use bytes::Bytes;

use super::Shared;
use archive::pass::valid_pass_id;
use archive::pass_store::StoredPass;
use decoder::Profile;

/// The routes.
pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/api/v1/passes/{id}/data", get(contents))
        .route("/api/v1/passes/{id}/frames/{vcid}", get(frames))
        .route("/api/v1/passes/{id}/packets/{apid}", get(packets))
        .with_state(shared)
}

/// Chunks handed from the extracting thread to the response body.
const CHUNK: usize = 64 * 1024;
/// Chunks in flight: a slow client holds the extraction back, never memory.
const IN_FLIGHT: usize = 4;

/// An answer other than the data: its status and message.
type Refusal = (StatusCode, String);

fn status(code: StatusCode, msg: &str) -> Refusal {
    (code, msg.to_owned())
}

/// The pass directory and the profile its record names (built-in profiles only).
fn locate(shared: &Shared, id: &str) -> Result<(std::path::PathBuf, Profile), Refusal> {
    if !valid_pass_id(id) {
        return Err(status(StatusCode::BAD_REQUEST, "invalid pass id"));
    }
    let dir = shared.archive.join("passes").join(id);
    let rec: serde_json::Value = std::fs::read(dir.join("pass.json"))
        .ok()
        .and_then(|t| serde_json::from_slice(&t).ok())
        .ok_or_else(|| status(StatusCode::NOT_FOUND, "not found"))?;
    let name = rec["profile"].as_str().unwrap_or_default();
    let profile = Profile::builtin(name).map_err(|_| {
        status(
            StatusCode::UNPROCESSABLE_ENTITY,
            &format!("the pass's profile {name:?} is not built in"),
        )
    })?;
    Ok((dir, profile))
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, Refusal> + Send + 'static,
) -> Result<T, Refusal> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|_| Err(status(StatusCode::INTERNAL_SERVER_ERROR, "task failed")))
}

fn io_error(e: &std::io::Error) -> Refusal {
    status(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string())
}

async fn contents(State(shared): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
    let r = blocking(move || {
        let (dir, profile) = locate(&shared, &id)?;
        let p = StoredPass::open(&dir);
        let vcids = p.vcids(&profile).map_err(|e| io_error(&e))?;
        let apids = p.apids(&profile).map_err(|e| io_error(&e))?;
        Ok(serde_json::json!({ "id": id, "vcids": vcids, "apids": apids }))
    })
    .await;
    match r {
        Ok(v) => Json(v).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn frames(
    State(shared): State<Arc<Shared>>,
    params: Result<Path<(String, String)>, PathRejection>,
) -> Response {
    let Ok(Path((id, n))) = params else {
        return status(StatusCode::NOT_FOUND, "not found").into_response();
    };
    let Some(vcid) = n.parse::<u8>().ok().filter(|v| *v < 64) else {
        return status(StatusCode::BAD_REQUEST, "a VCID is 0..=63").into_response();
    };
    stream(shared, id, move |p, profile| p.frames(profile, vcid)).await
}

async fn packets(
    State(shared): State<Arc<Shared>>,
    params: Result<Path<(String, String)>, PathRejection>,
) -> Response {
    let Ok(Path((id, n))) = params else {
        return status(StatusCode::NOT_FOUND, "not found").into_response();
    };
    let Some(apid) = n.parse::<u16>().ok().filter(|a| *a < 2048) else {
        return status(StatusCode::BAD_REQUEST, "an APID is 0..=2047").into_response();
    };
    stream(shared, id, move |p, profile| p.packets(profile, apid)).await
}

async fn stream(
    shared: Arc<Shared>,
    id: String,
    open: impl FnOnce(&StoredPass, &Profile) -> std::io::Result<Box<dyn Read + Send>> + Send + 'static,
) -> Response {
    let reader = blocking(move || {
        let (dir, profile) = locate(&shared, &id)?;
        open(&StoredPass::open(&dir), &profile).map_err(|e| io_error(&e))
    })
    .await;
    let mut reader = match reader {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(IN_FLIGHT);
    tokio::task::spawn_blocking(move || {
        let mut buf = vec![0u8; CHUNK];
        loop {
            let msg = match reader.read(&mut buf) {
                Ok(0) => return,
                Ok(n) => Ok(Bytes::copy_from_slice(buf.get(..n).unwrap_or_default())),
                Err(e) => Err(e),
            };
            let failed = msg.is_err();
            // The client went away: stop extracting.
            if tx.blocking_send(msg).is_err() || failed {
                return;
            }
        }
    });
    (
        [(header::CONTENT_TYPE, "application/octet-stream")],
        axum::body::Body::new(ChannelBody(rx)),
    )
        .into_response()
}

/// A response body fed by the extracting thread.
struct ChannelBody(tokio::sync::mpsc::Receiver<std::io::Result<Bytes>>);

impl http_body::Body for ChannelBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, std::io::Error>>> {
        self.0
            .poll_recv(cx)
            .map(|o| o.map(|r| r.map(http_body::Frame::data)))
    }
}
