use std::time::Duration;

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use crate::error::ApiError;
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

/// The process can serve: the database is connected, migrated and answering.
async fn readyz(State(state): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    let ready = state.ready()?;
    let ping = sqlx::query_scalar::<_, i32>("SELECT 1").fetch_one(ready.store.pool());
    match tokio::time::timeout(Duration::from_secs(2), ping).await {
        Ok(Ok(_)) => Ok(Json(json!({"status": "ready"}))),
        Ok(Err(e)) => Err(ApiError::Unavailable(Some(Box::new(e)))),
        Err(elapsed) => Err(ApiError::Unavailable(Some(Box::new(elapsed)))),
    }
}

async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let ready = state.try_ready();
    let position = ready.map_or(0, |r| r.store.commits().borrow().position());
    (
        [(CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics().render(ready.is_some(), position),
    )
}
