//! The single-page app, served from `SPA_DIR` (the output of `npm run build` in
//! `frontend/`): hashed assets under `/assets/` cached for a year, `index.html` (never
//! cached, with the Content-Security-Policy) for any other GET that accepts HTML and is not
//! a server route, so the app's own routes survive a reload. Without a built app every
//! such path is 404 as before.

use std::path::{Component, Path};

use bytes::Bytes;

use poem::{
    Request, Response, handler,
    http::{Method, StatusCode, header},
    web::Data,
};

use crate::{app::AppState, graphql::error::http_error};

/// Paths the server answers itself; an unknown one under them is a 404, never the app.
const SERVER_PREFIXES: [&str; 12] = [
    "/graphql",
    "/auth/",
    "/ads/",
    "/dev/",
    "/access/",
    "/proxy/",
    "/workers/",
    "/billing/",
    "/webhooks/",
    "/health",
    "/ready",
    "/metrics",
];

fn content_type(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()).unwrap_or("") {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" | "map" => "application/json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "webp" => "image/webp",
        "woff2" => "font/woff2",
        "txt" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

/// The file of the build that `path` names, relative to the app's root, if it is a plain
/// relative path (no `..`, no absolute parts, no dotfiles) to something other than a page.
fn resolve(path: &str) -> Option<&str> {
    let relative = path.trim_start_matches('/');
    let plain = Path::new(relative).components().all(|c| match c {
        Component::Normal(part) => !part.to_string_lossy().starts_with('.'),
        _ => false,
    });
    // Pages (index.html above all) go out only with their headers, below.
    let page = Path::new(relative).extension().is_some_and(|e| e == "html");
    (plain && !page && !relative.is_empty()).then_some(relative)
}

/// The app built into the binary (`embedded-spa`).
#[cfg(feature = "embedded-spa")]
#[derive(rust_embed::Embed)]
#[folder = "frontend/dist/"]
struct Embedded;

/// A file of the app (`relative` already checked by [`resolve`], or `index.html`): from
/// `SPA_DIR` when an app is built there, else, with `embedded-spa`, from the binary.
async fn app_file(root: &Path, relative: &str) -> Option<Bytes> {
    // Which one is decided once, at the first request: SPA_DIR does not change.
    #[cfg(feature = "embedded-spa")]
    static FROM_BINARY: tokio::sync::OnceCell<bool> = tokio::sync::OnceCell::const_new();
    #[cfg(feature = "embedded-spa")]
    if *FROM_BINARY
        .get_or_init(|| async {
            !tokio::fs::try_exists(root.join("index.html"))
                .await
                .unwrap_or(false)
        })
        .await
    {
        return Embedded::get(relative).map(|file| match file.data {
            std::borrow::Cow::Borrowed(data) => Bytes::from_static(data),
            std::borrow::Cow::Owned(data) => Bytes::from(data),
        });
    }
    tokio::fs::read(root.join(relative))
        .await
        .ok()
        .map(Bytes::from)
}

/// The Content-Security-Policy of the app: its own origin, plus the ad and challenge
/// hosts only when those are on.
pub fn content_security_policy(state: &AppState) -> String {
    let public = state.config.public_url();
    let own = public.origin().ascii_serialization();
    // Hosts of the enabled third parties: their scripts, frames, calls, images and video.
    let mut hosts: Vec<String> = Vec::new();
    let mut foreign = |url: &str| {
        if let Ok(u) = url::Url::parse(url) {
            let origin = u.origin().ascii_serialization();
            if origin != own && !hosts.contains(&origin) {
                hosts.push(origin);
            }
        }
    };
    if let Some(m) = &state.ads.monetag {
        foreign(&m.script_url);
    }
    if let Some(tag) = &state.ads.ad_tag_base
        && !state.ads.dev_tag
    {
        foreign(tag.as_str());
        foreign(state.config.ads.ima_sdk_url.as_str());
    }
    if state.config.ads.turnstile_enabled() {
        // The widget's script and the frame it draws come from the same origin.
        foreign(state.config.ads.turnstile_script_url.as_str());
    }
    let with = |base: &str| {
        std::iter::once(base.to_owned())
            .chain(hosts.iter().cloned())
            .collect::<Vec<_>>()
            .join(" ")
    };
    format!(
        "default-src 'self'; script-src {}; frame-src {}; connect-src {}; img-src {}; media-src {}; style-src 'self'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'; object-src 'none'",
        with("'self'"),
        with("'self'"),
        with("'self'"),
        with("'self' data:"),
        with("'self' blob:"),
    )
}

fn not_found() -> Response {
    http_error(StatusCode::NOT_FOUND, "not_found", "no such route")
}

/// Every GET the routes above do not take.
#[handler]
pub async fn spa(req: &Request, Data(state): Data<&AppState>) -> Response {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return not_found();
    }
    let path = req.uri().path();
    if SERVER_PREFIXES.iter().any(|p| path.starts_with(p)) {
        return not_found();
    }
    let root = &state.config.spa_dir;
    // A file of the build: hashed assets forever, anything else briefly.
    if let Some(file) = resolve(path)
        && let Some(bytes) = app_file(root, file).await
    {
        let cache = if path.starts_with("/assets/") {
            "public, max-age=31536000, immutable"
        } else {
            "public, max-age=300"
        };
        return Response::builder()
            .content_type(content_type(Path::new(file)))
            .header(header::CACHE_CONTROL, cache)
            .header("x-content-type-options", "nosniff")
            .body(bytes);
    }
    let wants_html = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("text/html"));
    if !wants_html || path.starts_with("/assets/") {
        return not_found();
    }
    index(state, false).await.unwrap_or_else(not_found)
}

/// The app's `index.html` with its headers, when an app is built. `secret_url`: the
/// address carries a one-time token (a mail link), so the page is never stored and no
/// referrer leaves it.
pub async fn index(state: &AppState, secret_url: bool) -> Option<Response> {
    let bytes = app_file(&state.config.spa_dir, "index.html").await?;
    let (cache, referrer) = if secret_url {
        ("no-store", "no-referrer")
    } else {
        ("no-cache", "same-origin")
    };
    Some(
        Response::builder()
            .content_type("text/html; charset=utf-8")
            .header(header::CACHE_CONTROL, cache)
            .header("content-security-policy", content_security_policy(state))
            .header("x-content-type-options", "nosniff")
            .header("referrer-policy", referrer)
            .body(bytes),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_relative_paths_resolve() {
        assert_eq!(resolve("/assets/index-1.js"), Some("assets/index-1.js"));
        assert_eq!(resolve("/assets/../../etc/passwd"), None);
        assert_eq!(resolve("/./index.html"), None);
        assert_eq!(
            resolve("/index.html"),
            None,
            "pages go out with their headers"
        );
        assert_eq!(resolve("/"), None);
        assert_eq!(resolve("/.env"), None);
        assert_eq!(resolve("/assets/.hidden/x.js"), None);
        assert_eq!(
            content_type(Path::new("a.js")),
            "text/javascript; charset=utf-8"
        );
        assert_eq!(content_type(Path::new("a.bin")), "application/octet-stream");
    }
}
