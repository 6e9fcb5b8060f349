//! Operating Sluice over HTTP: Prometheus metrics on `/metrics`, liveness on `/healthz`, and
//! readiness on `/readyz` (every pipeline running with its partitions assigned).
//!
//! Metrics are recorded through the `metrics` facade where they happen (source, runtime, reload,
//! pipeline, sinks) and rendered here by the Prometheus exporter.
//!
//! On `admin.listen`, what names a tenant's pipelines, topics or versions needs a token, as the
//! API does: without one, `/metrics` has only the host-wide series (no label but `le` or
//! `quantile`) and `/readyz` only the overall status; a tenant's token adds the series and
//! pipelines of that tenant, the operator's everything; an unknown token answers `401`. On
//! `admin.metrics_listen`, which the operator puts on a private network, all three endpoints
//! answer in full without a token.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context, Result};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::get;
use metrics_exporter_prometheus::PrometheusHandle;

use crate::telemetry::metrics_handle;
use serde_json::json;
use tokio::sync::watch;

use crate::pipeline::PipelineStatus;
use crate::runtime::Runtime;

mod api;
mod state;

pub use api::Tokens;

#[derive(Clone)]
struct AdminState {
    /// Serving `admin.metrics_listen`: everything, without a token.
    open: bool,
    metrics: PrometheusHandle,
    pipelines: Vec<Arc<PipelineStatus>>,
    runtime: Arc<Runtime>,
    tokens: Tokens,
    /// Uploads being read or validated.
    uploads: Arc<api::Uploads>,
}

/// Binds the admin listener, so that a taken port fails the start, not later.
pub async fn bind(listen: SocketAddr) -> Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(listen).await.with_context(|| {
        format!("binding the admin listener to {listen} (admin.listen): is another process using it?")
    })
}

/// The admin endpoints of a running host, when `admin.listen` is set: started by the CLI (or an
/// embedding program) beside [`crate::pipeline::Host::run`], so the pipelines do not depend on
/// the HTTP side.
pub struct AdminServer {
    task: Option<tokio::task::JoinHandle<Result<()>>>,
}

impl AdminServer {
    /// Binds `admin.listen` (and `admin.metrics_listen`) and serves until `stop`; does nothing
    /// when `admin.listen` is unset.
    pub async fn start(
        host: &crate::pipeline::Host,
        stop: watch::Receiver<bool>,
    ) -> Result<AdminServer> {
        let config = host.config();
        let Some(listen) = config.admin.listen else {
            return Ok(AdminServer { task: None });
        };
        let listener = bind(listen).await?;
        let task = tokio::spawn(serve(
            listener,
            host.status(),
            host.runtime().clone(),
            Tokens::from_config(config),
            stop,
        ));
        Ok(AdminServer { task: Some(task) })
    }

    /// Stops serving; returns how serving ended.
    pub async fn finish(self) -> Result<()> {
        let Some(task) = self.task else {
            return Ok(());
        };
        task.abort();
        match task.await {
            Ok(result) => result,
            Err(_) => Ok(()),
        }
    }
}

/// Serves the admin endpoints on `listener` (and the open metrics listener, if
/// `admin.metrics_listen` is set) until `stop`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    pipelines: Vec<Arc<PipelineStatus>>,
    runtime: Arc<Runtime>,
    tokens: Tokens,
    mut stop: watch::Receiver<bool>,
) -> Result<()> {
    let api = tokens.any();
    let open_listener = match tokens.metrics_listen {
        Some(address) => Some(
            tokio::net::TcpListener::bind(address)
                .await
                .with_context(|| {
                    format!(
                        "binding the open metrics listener to {address} (admin.metrics_listen): \
                         is another process using it?"
                    )
                })
                .inspect_err(|e| {
                    tracing::error!("{e:#}; the admin endpoints are not served");
                })?,
        ),
        None => None,
    };
    let state = AdminState {
        open: false,
        metrics: metrics_handle()?,
        pipelines,
        runtime,
        tokens,
        uploads: Arc::default(),
    };
    let open = open_listener.map(|listener| {
        let app = axum::Router::new()
            .route("/metrics", get(metrics))
            .route("/healthz", get(|| async { "ok\n" }))
            .route("/readyz", get(readyz))
            .with_state(AdminState {
                open: true,
                ..state.clone()
            });
        let mut stop = stop.clone();
        tokio::spawn(async move {
            tracing::info!(listen = %listener.local_addr()?, "serving /metrics, /healthz and /readyz without a token (admin.metrics_listen)");
            axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stop.wait_for(|s| *s).await;
                })
                .await
                .context("serving admin.metrics_listen")
        })
    });
    let app = api::routes()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(state);
    tracing::info!(listen = %listener.local_addr()?, api, "serving /metrics, /healthz, /readyz and the admin API under /api");
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            let _ = stop.wait_for(|s| *s).await;
        })
        .await
        .context("serving the admin endpoints");
    if let Some(open) = open {
        open.await.context("the admin.metrics_listen task")??;
    }
    served
}

/// What a request to `/metrics` or `/readyz` may see.
enum View {
    /// Host-wide figures only: no pipeline, tenant, topic or version named.
    Public,
    /// Host-wide figures and this tenant's pipelines.
    Tenant(String),
    /// Everything.
    Full,
}

/// The view of the caller: public without an `Authorization` header, by token with one (`401`
/// for an unknown token).
fn view(state: &AdminState, headers: &HeaderMap) -> Result<View, api::ApiError> {
    if state.open {
        return Ok(View::Full);
    }
    if !headers.contains_key(header::AUTHORIZATION) {
        return Ok(View::Public);
    }
    Ok(match api::authenticate(state, headers)? {
        api::Caller::Operator => View::Full,
        api::Caller::Tenant(t) => View::Tenant(t),
    })
}

async fn metrics(State(state): State<AdminState>, headers: HeaderMap) -> Response {
    let view = match view(&state, &headers) {
        Ok(view) => view,
        Err(e) => return e.into_response(),
    };
    let text = state.metrics.render();
    let text = match view {
        View::Full => text,
        View::Public => filter_exposition(&text, |labels| visible(labels, None, &state)),
        View::Tenant(t) => filter_exposition(&text, |labels| visible(labels, Some(&t), &state)),
    };
    ([("content-type", "text/plain; version=0.0.4")], text).into_response()
}

/// Labels that describe a series' shape, not what it is about.
const SHAPE_LABELS: &[&str] = &["le", "quantile"];

/// Whether a series with these labels may be shown to `tenant` (None: to anyone). A series
/// about a pipeline is its tenant's; one with a `tenant` label that tenant's; one with no label
/// but [`SHAPE_LABELS`] everyone's; anything else (a label naming something of unknown owner)
/// the operator's only.
fn visible(labels: &[(&str, String)], tenant: Option<&str>, state: &AdminState) -> bool {
    let Some(tenant) = tenant else {
        return labels.iter().all(|(k, _)| SHAPE_LABELS.contains(k));
    };
    let label = |name: &str| labels.iter().find(|(k, _)| *k == name).map(|(_, v)| v);
    let pipeline = label("pipeline");
    let owner = label("tenant");
    if pipeline.is_none() && owner.is_none() {
        return labels.iter().all(|(k, _)| SHAPE_LABELS.contains(k));
    }
    pipeline.is_none_or(|name| {
        state
            .pipelines
            .iter()
            .any(|p| p.name == *name && p.tenant == tenant)
    }) && owner.is_none_or(|t| t == tenant)
}

/// Keeps the samples of a Prometheus text exposition whose labels `keep` accepts, with the
/// `# HELP` and `# TYPE` lines of the metrics that keep at least one. A line that cannot be read
/// is dropped.
fn filter_exposition(text: &str, keep: impl Fn(&[(&str, String)]) -> bool) -> String {
    let mut out = String::with_capacity(text.len());
    let mut comments: Vec<&str> = Vec::new();
    let mut after_sample = false;
    for line in text.lines() {
        if line.starts_with('#') {
            if after_sample {
                comments.clear();
                after_sample = false;
            }
            comments.push(line);
        } else if !line.trim().is_empty() {
            after_sample = true;
            if parse_labels(line).is_some_and(|labels| keep(&labels)) {
                for c in comments.drain(..) {
                    out.push_str(c);
                    out.push('\n');
                }
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    out
}

/// The labels of a sample line (`name{k="v",…} value` or `name value`), unescaped; None when the
/// line is not one.
fn parse_labels(line: &str) -> Option<Vec<(&str, String)>> {
    let name_end = line.find(['{', ' '])?;
    if !line[name_end..].starts_with('{') {
        return Some(Vec::new());
    }
    let mut rest = &line[name_end + 1..];
    let mut labels = Vec::new();
    loop {
        rest = rest.trim_start();
        if let Some(after) = rest.strip_prefix('}') {
            return after.starts_with(' ').then_some(labels);
        }
        let eq = rest.find('=')?;
        let key = rest[..eq].trim();
        let quoted = rest[eq + 1..].strip_prefix('"')?;
        let mut value = String::new();
        let mut chars = quoted.char_indices();
        let end = loop {
            match chars.next()? {
                (_, '\\') => match chars.next()? {
                    (_, 'n') => value.push('\n'),
                    (_, c) => value.push(c),
                },
                (i, '"') => break i,
                (_, c) => value.push(c),
            }
        };
        labels.push((key, value));
        rest = &quoted[end + 1..];
        rest = rest.strip_prefix(',').unwrap_or(rest);
    }
}

async fn readyz(State(state): State<AdminState>, headers: HeaderMap) -> Response {
    let view = match view(&state, &headers) {
        Ok(view) => view,
        Err(e) => return e.into_response(),
    };
    let ready = state.pipelines.iter().all(|p| p.is_ready());
    let code = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let shown: Vec<_> = state
        .pipelines
        .iter()
        .filter(|p| match &view {
            View::Full => true,
            View::Tenant(t) => p.tenant == *t,
            View::Public => false,
        })
        .map(|p| p.snapshot())
        .collect();
    if let View::Public = view {
        return (code, Json(json!({ "ready": ready }))).into_response();
    }
    let not_ready: Vec<_> = shown
        .iter()
        .filter(|p| p["ready"] != json!(true))
        .map(|p| p["name"].clone())
        .collect();
    (
        code,
        Json(json!({ "ready": ready, "not_ready": not_ready, "pipelines": shown })),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_read_with_escapes() {
        assert_eq!(parse_labels("up 1"), Some(vec![]));
        assert_eq!(
            parse_labels(r#"x_bucket{pipeline="a\"b",le="0.5"} 3"#),
            Some(vec![
                ("pipeline", "a\"b".to_string()),
                ("le", "0.5".to_string())
            ])
        );
        assert_eq!(parse_labels(r#"x{pipeline="a"#), None);
        assert_eq!(parse_labels("garbage"), None);
    }

    #[test]
    fn exposition_keeps_only_accepted_series_and_their_help() {
        let text = "# HELP a A.\n# TYPE a counter\na{pipeline=\"p\"} 1\na{pipeline=\"q\"} 2\n\
                    # HELP b B.\n# TYPE b gauge\nb{pipeline=\"q\"} 3\n\
                    # HELP c C.\n# TYPE c histogram\nc_bucket{le=\"1\"} 4\nc_sum 5\n";
        let kept = filter_exposition(text, |labels| {
            labels.iter().all(|(k, v)| *k != "pipeline" || v == "p")
        });
        assert_eq!(
            kept,
            "# HELP a A.\n# TYPE a counter\na{pipeline=\"p\"} 1\n\
             # HELP c C.\n# TYPE c histogram\nc_bucket{le=\"1\"} 4\nc_sum 5\n"
        );
    }
}
