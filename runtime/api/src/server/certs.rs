//! The apps' TLS certificates: `GET` and `POST /apps/{app}/certs`, `DELETE
//! /apps/{app}/certs/{domain}`; routed in the app route table. The private key goes in
//! with a `POST` and never comes back out.

use super::{AppPath, Caller, JsonBody, Shared};
use crate::error::ApiError;
use crate::wire::{CertInfo, CreateCert};
use axum::Json;
use axum::extract::{Extension, Path, State};

pub(super) async fn list(
    State(p): State<Shared>,
    AppPath(app): AppPath,
) -> Result<Json<Vec<CertInfo>>, ApiError> {
    p.certs(&app).await.map(Json)
}

pub(super) async fn add(
    State(p): State<Shared>,
    AppPath(app): AppPath,
    Extension(by): Extension<Caller>,
    JsonBody(req): JsonBody<CreateCert>,
) -> Result<(http::StatusCode, Json<Vec<CertInfo>>), ApiError> {
    let set = p.add_cert(&app, &by, req).await?;
    Ok((http::StatusCode::CREATED, Json(set)))
}

pub(super) async fn remove(
    State(p): State<Shared>,
    AppPath(app): AppPath,
    Extension(by): Extension<Caller>,
    Path((_, domain)): Path<(String, String)>,
) -> Result<Json<CertInfo>, ApiError> {
    p.remove_cert(&app, &by, &domain).await.map(Json)
}
