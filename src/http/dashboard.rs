//! The routes that serve the dashboard's static files.

use axum::response::Response;

use super::errors::ApiError;
use super::extract::ApiPath;
use crate::dashboard;

pub async fn get_dashboard() -> Response {
    dashboard::index()
}

pub async fn get_dashboard_asset(ApiPath(name): ApiPath<String>) -> Result<Response, ApiError> {
    dashboard::asset(&name)
        .ok_or_else(|| ApiError::NotFound(format!("the dashboard has no file named {name}")))
}
