//! The web UI: static files under `ui/`, compiled into the binary. `/`, `/search` and
//! `/trace/{id}` all answer the single page, which reads its state from the URL; nothing is
//! built or fetched from elsewhere at run time.

use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

const INDEX: &str = include_str!("../ui/index.html");
const STYLE: &str = include_str!("../ui/app.css");
const SCRIPT: &str = include_str!("../ui/app.js");

pub fn router() -> Router {
    Router::new()
        .route("/", get(index))
        .route("/search", get(index))
        .route("/trace/{id}", get(index))
        .route("/ui/app.css", get(|| async { ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], STYLE) }))
        .route("/ui/app.js", get(|| async { ([(header::CONTENT_TYPE, "text/javascript; charset=utf-8")], SCRIPT) }))
}

async fn index() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8"), (header::CACHE_CONTROL, "no-cache")], INDEX)
}
