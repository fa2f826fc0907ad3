//! `log-drains`, as Heroku's Platform API has them: `GET` and `POST
//! /apps/{app}/log-drains`, `DELETE /apps/{app}/log-drains/{id or url}` (the URL
//! percent-encoded as one path segment).

use super::{AppPath, JsonBody, Shared};
use crate::error::ApiError;
use crate::wire::{CreateDrain, DrainInfo};
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use axum::{Json, Router};

pub(super) fn routes() -> Router<Shared> {
    Router::new()
        .route("/apps/{app}/log-drains", get(list).post(add))
        .route("/apps/{app}/log-drains/{drain}", delete(remove))
}

async fn list(
    State(p): State<Shared>,
    AppPath(app): AppPath,
) -> Result<Json<Vec<DrainInfo>>, ApiError> {
    p.drains(&app).await.map(Json)
}

async fn add(
    State(p): State<Shared>,
    AppPath(app): AppPath,
    JsonBody(req): JsonBody<CreateDrain>,
) -> Result<Response, ApiError> {
    let drain = p.add_drain(&app, req).await?;
    Ok((http::StatusCode::CREATED, Json(drain)).into_response())
}

async fn remove(
    State(p): State<Shared>,
    AppPath(app): AppPath,
    Path((_, which)): Path<(String, String)>,
) -> Result<Json<DrainInfo>, ApiError> {
    p.remove_drain(&app, &which).await.map(Json)
}
