//! Counts every answered request by route template, method and status class.

use super::App;
use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use std::sync::Arc;

/// The route template the request matched (`/v1/sessions/{id}`), never the path itself:
/// ids in paths would give every session its own series.
pub async fn count(State(app): State<Arc<App>>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |m| m.as_str().to_owned());
    let method = request.method().clone();
    let response = next.run(request).await;
    app.metrics.http_request(&route, &method, response.status());
    response
}
