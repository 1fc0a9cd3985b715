//! The pages that mail links open (`/verify-email`, `/reset-password`). Each is a small
//! static page that calls the matching mutation; the SPA takes these paths over when it is
//! served. The token stays in the page (no referrer, removed from the address bar).

use poem::{IntoResponse, Response, handler, web::Html};

const VERIFY_EMAIL: &str = include_str!("pages/verify-email.html");
const RESET_PASSWORD: &str = include_str!("pages/reset-password.html");

fn page(html: &'static str) -> Response {
    Html(html)
        .with_header("cache-control", "no-store")
        .with_header("referrer-policy", "no-referrer")
        .with_header("x-frame-options", "DENY")
        .into_response()
}

#[handler]
pub async fn verify_email_page() -> Response {
    page(VERIFY_EMAIL)
}

#[handler]
pub async fn reset_password_page() -> Response {
    page(RESET_PASSWORD)
}
