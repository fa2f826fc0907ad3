//! `log-drains`, as Heroku's Platform API has them: `GET` and `POST
//! /apps/{app}/log-drains`, `DELETE /apps/{app}/log-drains/{id or url}` (the URL
//! percent-encoded as one path segment); routed in the app route table.

use super::{AppPath, JsonBody, Shared};
use crate::error::ApiError;
use crate::wire::{CreateDrain, DrainInfo};
use axum::Json;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};

pub(super) async fn list(
    State(p): State<Shared>,
    AppPath(app): AppPath,
) -> Result<Json<Vec<DrainInfo>>, ApiError> {
    p.drains(&app).await.map(Json)
}

pub(super) async fn add(
    State(p): State<Shared>,
    AppPath(app): AppPath,
    JsonBody(req): JsonBody<CreateDrain>,
) -> Result<Response, ApiError> {
    let drain = p.add_drain(&app, req).await?;
    Ok((http::StatusCode::CREATED, Json(drain)).into_response())
}

pub(super) async fn remove(
    State(p): State<Shared>,
    AppPath(app): AppPath,
    Path((_, which)): Path<(String, String)>,
) -> Result<Json<DrainInfo>, ApiError> {
    p.remove_drain(&app, &which).await.map(Json)
}
