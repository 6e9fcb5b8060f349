//! The admin API under `/api`: list pipelines, pause and resume them, reload or upload a plugin
//! version, replay from an offset or a timestamp, read a stateful plugin's state (`state.rs`).
//!
//! Every request needs `Authorization: Bearer TOKEN`. The operator token (`admin.operator_token`)
//! reaches every pipeline; a tenant's token (`tenant.admin_token`) only that tenant's: others are
//! not listed, and acting on one is refused with 403. A request refused (400, 401, 403, 404, 409,
//! 413, 422, 429) changes nothing.
//!
//! The caller is authenticated from the headers before any byte of a body is read, and bodies are
//! read with a cap: `admin.max_upload_bytes` for a component, [`MAX_JSON_BODY`] for JSON. An
//! unauthenticated upload costs the host its headers only.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use futures::StreamExt;
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::AdminState;
use crate::config::Config;
use crate::pipeline::PipelineStatus;
use crate::reload::Offer;
use crate::source::{REPLAY_OUT_OF_RANGE, ReplayFrom};

/// Largest JSON body (a replay request is a few dozen bytes).
pub const MAX_JSON_BODY: usize = 4 * 1024;
/// Uploads read at once, all callers together; one more answers `429`.
pub const MAX_CONCURRENT_UPLOADS: usize = 4;
/// An upload whose body has not fully arrived after this long answers `408`.
pub const UPLOAD_READ_TIMEOUT: Duration = Duration::from_secs(120);

/// Who may call the API (digests of the configured tokens), and the admin settings it serves
/// with.
#[derive(Clone)]
pub struct Tokens {
    operator: Option<[u8; 32]>,
    tenants: Vec<(String, [u8; 32])>,
    /// `admin.max_upload_bytes`.
    pub(super) max_upload: usize,
    /// `admin.metrics_listen`.
    pub(super) metrics_listen: Option<std::net::SocketAddr>,
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

impl Tokens {
    /// The tokens and admin settings of a config.
    pub fn from_config(config: &Config) -> Tokens {
        Tokens {
            operator: config.admin.operator_token.as_deref().map(digest),
            tenants: config
                .tenants
                .iter()
                .filter_map(|t| Some((t.name.clone(), digest(t.admin_token.as_deref()?))))
                .collect(),
            max_upload: usize::try_from(config.admin.max_upload_bytes).unwrap_or(usize::MAX),
            metrics_listen: config.admin.metrics_listen,
        }
    }

    /// True when at least one token is configured (otherwise the API refuses everything).
    pub fn any(&self) -> bool {
        self.operator.is_some() || !self.tenants.is_empty()
    }
}

/// The uploads being read or validated, by caller.
#[derive(Default)]
pub(super) struct Uploads(Mutex<HashSet<String>>);

/// An upload in progress; dropping it frees the caller's slot.
struct UploadSlot {
    uploads: Arc<Uploads>,
    caller: String,
}

impl Uploads {
    /// Takes the caller's one upload slot, if it and a global slot are free.
    fn start(self: &Arc<Self>, caller: &Caller) -> Result<UploadSlot, ApiError> {
        let key = match caller {
            Caller::Operator => "operator".to_string(),
            Caller::Tenant(t) => format!("tenant `{t}`"),
        };
        let mut busy = self.0.lock().expect("uploads lock");
        let refused = if busy.contains(&key) {
            format!("an upload of {key} is already in progress: send one at a time")
        } else if busy.len() >= MAX_CONCURRENT_UPLOADS {
            format!("{MAX_CONCURRENT_UPLOADS} uploads are in progress: retry in a moment")
        } else {
            busy.insert(key.clone());
            return Ok(UploadSlot {
                uploads: self.clone(),
                caller: key,
            });
        };
        Err(ApiError(StatusCode::TOO_MANY_REQUESTS, refused))
    }
}

impl Drop for UploadSlot {
    fn drop(&mut self) {
        self.uploads
            .0
            .lock()
            .expect("uploads lock")
            .remove(&self.caller);
    }
}

/// Reads a request body of at most `limit` bytes: `413` as soon as it is known to be larger
/// (its `Content-Length`, else the bytes received), `408` when it has not arrived after
/// `timeout`. Only call it once the caller is authenticated.
async fn read_body(
    body: Body,
    headers: &HeaderMap,
    limit: usize,
    timeout: Duration,
    what: &str,
) -> Result<Bytes, ApiError> {
    let too_large = || {
        ApiError(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("{what} is larger than {limit} bytes"),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    let read = async {
        let mut buf = Vec::with_capacity(declared.unwrap_or(0) as usize);
        let mut stream = body.into_data_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| {
                ApiError(
                    StatusCode::BAD_REQUEST,
                    format!("reading the request body: {e}"),
                )
            })?;
            if buf.len() + chunk.len() > limit {
                return Err(too_large());
            }
            buf.extend_from_slice(&chunk);
        }
        Ok(Bytes::from(buf))
    };
    tokio::time::timeout(timeout, read).await.map_err(|_| {
        ApiError(
            StatusCode::REQUEST_TIMEOUT,
            format!("{what} did not arrive within {} s", timeout.as_secs()),
        )
    })?
}

/// The caller of a request.
pub(super) enum Caller {
    /// The operator: everything.
    Operator,
    /// A tenant: its own pipelines.
    Tenant(String),
}

/// A refused request: status and message, as JSON.
pub(super) struct ApiError(pub(super) StatusCode, pub(super) String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Json(json!({ "error": self.1 }));
        if self.0 == StatusCode::UNAUTHORIZED {
            (self.0, [(header::WWW_AUTHENTICATE, "Bearer")], body).into_response()
        } else {
            (self.0, body).into_response()
        }
    }
}

pub(super) type ApiResult = Result<Json<Value>, ApiError>;

/// The `/api` routes.
pub fn routes() -> axum::Router<AdminState> {
    axum::Router::new()
        .route("/api/pipelines", get(list))
        .route("/api/pipelines/{name}", get(show))
        .route("/api/pipelines/{name}/pause", post(pause))
        .route("/api/pipelines/{name}/resume", post(resume))
        .route("/api/pipelines/{name}/reload", post(reload))
        .route("/api/pipelines/{name}/replay", post(replay))
        .route("/api/pipelines/{name}/rollback", post(rollback))
        .route("/api/pipelines/{name}/plugins/{plugin}", put(upload))
        .route("/api/pipelines/{name}/state", get(super::state::lookup))
}

/// The caller named by the request's bearer token; `401` without one or with an unknown one.
pub(super) fn authenticate(state: &AdminState, headers: &HeaderMap) -> Result<Caller, ApiError> {
    let unauthorized = |why: &str| ApiError(StatusCode::UNAUTHORIZED, why.to_string());
    if !state.tokens.any() {
        return Err(unauthorized(
            "the admin API has no tokens configured: set admin.operator_token or a tenant's admin_token",
        ));
    }
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| unauthorized("missing `Authorization: Bearer TOKEN` header"))?;
    // Digests of equal length, compared without an early exit.
    let presented = digest(token.trim());
    let same = |d: &[u8; 32]| {
        d.iter()
            .zip(&presented)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
    };
    if state.tokens.operator.as_ref().is_some_and(same) {
        return Ok(Caller::Operator);
    }
    state
        .tokens
        .tenants
        .iter()
        .find(|(_, d)| same(d))
        .map(|(name, _)| Caller::Tenant(name.clone()))
        .ok_or_else(|| unauthorized("unknown token"))
}

/// The pipeline `name`, if the caller may see it.
pub(super) fn find<'a>(
    state: &'a AdminState,
    headers: &HeaderMap,
    name: &str,
) -> Result<&'a Arc<PipelineStatus>, ApiError> {
    Ok(find_as(state, headers, name)?.1)
}

/// The caller, and the pipeline `name` if the caller may see it.
fn find_as<'a>(
    state: &'a AdminState,
    headers: &HeaderMap,
    name: &str,
) -> Result<(Caller, &'a Arc<PipelineStatus>), ApiError> {
    let caller = authenticate(state, headers)?;
    let pipeline = state
        .pipelines
        .iter()
        .find(|p| p.name == name)
        .ok_or_else(|| ApiError(StatusCode::NOT_FOUND, format!("no pipeline `{name}`")))?;
    match &caller {
        Caller::Tenant(tenant) if *tenant != pipeline.tenant => Err(ApiError(
            StatusCode::FORBIDDEN,
            format!("pipeline `{name}` belongs to another tenant"),
        )),
        _ => Ok((caller, pipeline)),
    }
}

fn conflict(message: String) -> ApiError {
    ApiError(StatusCode::CONFLICT, message)
}

async fn list(State(state): State<AdminState>, headers: HeaderMap) -> ApiResult {
    let caller = authenticate(&state, &headers)?;
    let pipelines: Vec<Value> = state
        .pipelines
        .iter()
        .filter(|p| match &caller {
            Caller::Operator => true,
            Caller::Tenant(t) => *t == p.tenant,
        })
        .map(|p| p.describe())
        .collect();
    Ok(Json(json!({ "pipelines": pipelines })))
}

async fn show(
    State(state): State<AdminState>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> ApiResult {
    Ok(Json(find(&state, &headers, &name)?.describe()))
}

async fn pause(
    State(state): State<AdminState>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> ApiResult {
    let pipeline = find(&state, &headers, &name)?;
    pipeline.set_paused(true).await.map_err(conflict)?;
    tracing::info!(pipeline = %name, "paused through the admin API");
    Ok(Json(pipeline.describe()))
}

async fn resume(
    State(state): State<AdminState>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> ApiResult {
    let pipeline = find(&state, &headers, &name)?;
    pipeline.set_paused(false).await.map_err(conflict)?;
    tracing::info!(pipeline = %name, "resumed through the admin API");
    Ok(Json(pipeline.describe()))
}

/// What an offer did, as JSON.
fn offer_json(plugin: &str, offer: &Offer) -> Value {
    match offer {
        Offer::Unchanged => json!({ "plugin": plugin, "outcome": "unchanged" }),
        Offer::Rejected => json!({ "plugin": plugin, "outcome": "rejected",
            "error": "this content was rolled back after failing probation; it is not loaded again" }),
        Offer::Invalid(e) => {
            json!({ "plugin": plugin, "outcome": "invalid", "error": e.to_string() })
        }
        Offer::Swapped { label } => {
            json!({ "plugin": plugin, "outcome": "swapped", "version": &**label })
        }
    }
}

async fn reload(
    State(state): State<AdminState>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> ApiResult {
    let pipeline = find(&state, &headers, &name)?.clone();
    let runtime = state.runtime.clone();
    let live = live_chain(&pipeline)?;
    let outcomes = tokio::task::spawn_blocking(move || {
        live.specs()
            .iter()
            .enumerate()
            .map(|(i, spec)| match std::fs::read(&spec.path) {
                Ok(bytes) => offer_json(&spec.name, &live.offer(&runtime, i, &bytes)),
                Err(e) => json!({ "plugin": spec.name, "outcome": "invalid",
                    "error": format!("reading {}: {e}", spec.path.display()) }),
            })
            .collect::<Vec<_>>()
    })
    .await
    .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    Ok(Json(json!({ "plugins": outcomes })))
}

async fn upload(
    State(state): State<AdminState>,
    headers: HeaderMap,
    Path((name, plugin)): Path<(String, String)>,
    body: Body,
) -> ApiResult {
    // Who is calling, and may they, before reading a byte of the body.
    let (caller, pipeline) = find_as(&state, &headers, &name)?;
    let live = live_chain(pipeline)?;
    let index = live
        .specs()
        .iter()
        .position(|s| s.name == plugin)
        .ok_or_else(|| {
            let names: Vec<&str> = live.specs().iter().map(|s| s.name.as_str()).collect();
            ApiError(
                StatusCode::NOT_FOUND,
                format!(
                    "pipeline `{name}` has no plugin `{plugin}` (plugins: {})",
                    names.join(", ")
                ),
            )
        })?;
    // One upload per caller and a few in all, each read only up to its cap: held until the
    // upload is validated, so the bodies held at once stay bounded.
    let slot = state.uploads.start(&caller)?;
    let body = read_body(
        body,
        &headers,
        state.tokens.max_upload,
        UPLOAD_READ_TIMEOUT,
        "the component (admin.max_upload_bytes)",
    )
    .await?;
    let runtime = state.runtime.clone();
    // The slot goes with the validation: a caller hanging up does not stop it, so it must not
    // free the slot for another upload while it runs.
    let offer = tokio::task::spawn_blocking(move || {
        let _slot = slot;
        live.offer(&runtime, index, &body)
    })
    .await
    .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let result = offer_json(&plugin, &offer);
    match offer {
        Offer::Invalid(e) => Err(ApiError(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("the uploaded component was rejected; the running version stays: {e}"),
        )),
        Offer::Rejected => Err(conflict(
            "this content was rolled back after failing probation; it is not loaded again".into(),
        )),
        _ => {
            tracing::info!(pipeline = %name, plugin = %plugin, "plugin version uploaded through the admin API: {}", result["outcome"]);
            Ok(Json(result))
        }
    }
}

/// The pipeline's live chain; `409` when its plugins could not be loaded at start.
fn live_chain(pipeline: &PipelineStatus) -> Result<Arc<crate::reload::LiveChain>, ApiError> {
    pipeline.live.clone().ok_or_else(|| {
        conflict(format!(
            "pipeline `{}` did not start: its plugins could not be loaded (see /readyz); fix \
             them and restart the host",
            pipeline.name
        ))
    })
}

/// Returns to the last version that passed probation before the live one (`409` if none is
/// kept); the rolled-back content is not loaded again until its file changes.
async fn rollback(
    State(state): State<AdminState>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> ApiResult {
    let pipeline = find(&state, &headers, &name)?;
    let restored = live_chain(pipeline)?
        .roll_back_to_passed()
        .map_err(conflict)?;
    tracing::info!(pipeline = %name, restored = %restored, "rolled back through the admin API");
    Ok(Json(pipeline.describe()))
}

/// Body of a replay request: exactly one of the two.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReplayRequest {
    offset: Option<i64>,
    timestamp: Option<i64>,
}

async fn replay(
    State(state): State<AdminState>,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: Body,
) -> ApiResult {
    let pipeline = find(&state, &headers, &name)?;
    let body = read_body(
        body,
        &headers,
        MAX_JSON_BODY,
        Duration::from_secs(10),
        "a replay request",
    )
    .await?;
    let request: ReplayRequest = serde_json::from_slice(&body).map_err(|e| {
        ApiError(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("expected {{\"offset\": N}} or {{\"timestamp\": MILLIS}}: {e}"),
        )
    })?;
    let from = match (request.offset, request.timestamp) {
        (Some(o), None) => ReplayFrom::Offset(o),
        (None, Some(t)) => ReplayFrom::Timestamp(t),
        _ => {
            return Err(ApiError(
                StatusCode::UNPROCESSABLE_ENTITY,
                "expected exactly one of `offset` or `timestamp` (milliseconds)".into(),
            ));
        }
    };
    if let ReplayFrom::Offset(n) | ReplayFrom::Timestamp(n) = from
        && n < 0
    {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            format!("{n} is negative: expected an offset or a time in milliseconds, 0 or more"),
        ));
    }
    // A target outside what a partition holds is the request's fault (400), and changes nothing.
    let positions =
        pipeline
            .replay(from)
            .await
            .map_err(|e| match e.strip_prefix(REPLAY_OUT_OF_RANGE) {
                Some(why) => ApiError(StatusCode::BAD_REQUEST, why.to_string()),
                None => conflict(e),
            })?;
    tracing::info!(pipeline = %name, ?positions, "replaying through the admin API");
    let positions: Vec<Value> = positions
        .iter()
        .map(|((t, p), o)| json!({ "topic": &**t, "partition": p, "offset": o }))
        .collect();
    Ok(Json(json!({ "replaying_from": positions })))
}
