use std::time::Duration;

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use crate::http::error::ApiError;
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
}

/// The process is up.
async fn healthz() -> impl IntoResponse {
    Json(json!({"status": "ok"}))
}

/// The process can serve: the database is connected, migrated and answering (it reads the
/// event store's head, the cheapest read there is).
async fn readyz(State(state): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    let ready = state.ready()?;
    let ping = ready.store.head();
    match tokio::time::timeout(Duration::from_secs(2), ping).await {
        Ok(Ok(_)) => Ok(Json(json!({"status": "ready"}))),
        Ok(Err(e)) => Err(ApiError::Unavailable(Some(Box::new(e)))),
        Err(elapsed) => Err(ApiError::Unavailable(Some(Box::new(elapsed)))),
    }
}

async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let ready = state.try_ready();
    let position = ready.map_or(0, |r| r.store.committed_here().position());
    let mut body = state.metrics().render(ready.is_some(), position);
    let hub = state.hub();
    body.push_str(&format!(
        "# HELP cairn_ws_connections Open /ws connections on this node.\n# TYPE cairn_ws_connections gauge\ncairn_ws_connections {}\n\
         # HELP cairn_ws_slow_consumers_closed_total /ws connections closed because their queue was full.\n# TYPE cairn_ws_slow_consumers_closed_total counter\ncairn_ws_slow_consumers_closed_total {}\n",
        hub.connections(),
        hub.slow_closed(),
    ));
    if let Some(ready) = ready {
        // The same positions as `cairn projections`, and the relay's.
        let lags = projections::registry::all_statuses(&ready.store)
            .await
            .ok()
            .map(|statuses| {
                statuses
                    .into_iter()
                    .map(|s| (s.name, s.cursor.position(), s.lag))
                    .collect::<Vec<_>>()
            });
        if let Some(lags) = lags {
            body.push_str("# HELP cairn_projection_position Global position a projection has applied.\n# TYPE cairn_projection_position gauge\n");
            for (name, position, _) in &lags {
                body.push_str(&format!(
                    "cairn_projection_position{{projection=\"{name}\"}} {position}\n"
                ));
            }
            body.push_str("# HELP cairn_projection_lag_events Events committed but not yet applied (approximate).\n# TYPE cairn_projection_lag_events gauge\n");
            for (name, _, lag) in &lags {
                body.push_str(&format!(
                    "cairn_projection_lag_events{{projection=\"{name}\"}} {lag}\n"
                ));
            }
        }
    }
    ([(CONTENT_TYPE, "text/plain; version=0.0.4")], body)
}
