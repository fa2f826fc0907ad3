//! API errors: one type on both sides of the wire.

use crate::wire::ErrorBody;
use axum::response::{IntoResponse, Response};
use http::StatusCode;

#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    pub status: u16,
    pub id: String,
    pub message: String,
}

impl ApiError {
    pub fn new(status: u16, id: &str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            id: id.into(),
            message: message.into(),
        }
    }
    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(404, "not_found", message)
    }
    pub fn invalid(message: impl Into<String>) -> ApiError {
        ApiError::new(422, "invalid_params", message)
    }
    pub fn conflict(message: impl Into<String>) -> ApiError {
        ApiError::new(409, "conflict", message)
    }
    pub fn unauthorized() -> ApiError {
        ApiError::new(
            401,
            "unauthorized",
            "invalid credentials: run `wdeploy login --host URL --token TOKEN` with the token the host printed",
        )
    }
    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(500, "internal", message)
    }
    /// A release of a slug some of whose blobs the host does not hold (any more: the
    /// collector may have removed an unreferenced one after the push asked). The client
    /// uploads what is missing and releases again.
    pub fn blobs_missing(message: impl Into<String>) -> ApiError {
        ApiError::new(409, BLOBS_MISSING, message)
    }
    pub fn is_blobs_missing(&self) -> bool {
        self.id == BLOBS_MISSING
    }
}

const BLOBS_MISSING: &str = "blobs_missing";

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = ErrorBody {
            id: self.id,
            message: self.message,
        };
        (status, axum::Json(body)).into_response()
    }
}
