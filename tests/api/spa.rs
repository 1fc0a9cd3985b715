//! The single-page app is served from SPA_DIR: the app's routes get index.html (with the
//! CSP, never cached), hashed assets are cached for a year, server routes keep answering
//! for themselves, and nothing outside the folder can be read.

use crate::helpers::TestApp;

fn app_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("assets")).unwrap();
    std::fs::write(
        dir.path().join("index.html"),
        "<!doctype html><title>Tessera</title><div id=root></div>",
    )
    .unwrap();
    std::fs::write(dir.path().join("assets/index-abc123.js"), "console.log(1)").unwrap();
    std::fs::write(dir.path().join("favicon.svg"), "<svg/>").unwrap();
    dir
}

async fn get(app: &TestApp, path: &str, accept: &str) -> reqwest::Response {
    app.client
        .get(app.url(path))
        .header("accept", accept)
        .send()
        .await
        .unwrap()
}

const HTML: &str = "text/html,application/xhtml+xml,*/*;q=0.8";

#[tokio::test]
async fn the_app_is_served_with_its_caching_and_policy() {
    let dir = app_dir();
    let root = dir.path().to_path_buf();
    let app = TestApp::builder()
        .configure(move |c| {
            c.spa_dir = root;
            c.ads.ads_dev_fakes = Some(false);
            c.ads.monetag_zone_id = Some("1".into());
            c.ads.monetag_script_url = Some("https://cdn.ads.example/sdk.js".parse().unwrap());
        })
        .spawn()
        .await;
    for path in [
        "/",
        "/index.html",
        "/wallet",
        "/vps/sessions/123",
        "/signin?next=%2Fearn",
    ] {
        let r = get(&app, path, HTML).await;
        assert_eq!(r.status(), 200, "{path}");
        assert_eq!(r.headers()["cache-control"], "no-cache");
        let csp = r.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(csp.starts_with("default-src 'self'"), "{csp}");
        assert!(
            csp.contains("script-src 'self' https://cdn.ads.example;"),
            "the enabled ad SDK's host only: {csp}"
        );
        assert!(
            csp.contains("img-src 'self' data: https://cdn.ads.example;"),
            "{csp}"
        );
        assert!(!csp.contains("challenges.cloudflare.com"), "{csp}");
        assert!(r.text().await.unwrap().contains("<div id=root>"));
    }
    let asset = get(&app, "/assets/index-abc123.js", "*/*").await;
    assert_eq!(asset.status(), 200);
    assert_eq!(
        asset.headers()["cache-control"],
        "public, max-age=31536000, immutable"
    );
    assert_eq!(
        asset.headers()["content-type"],
        "text/javascript; charset=utf-8"
    );
    let icon = get(&app, "/favicon.svg", "*/*").await;
    assert_eq!(icon.headers()["content-type"], "image/svg+xml");
    assert_eq!(icon.headers()["cache-control"], "public, max-age=300");

    // A missing asset, or a non-HTML request for an unknown path, is a 404, not the app.
    assert_eq!(get(&app, "/assets/gone.js", HTML).await.status(), 404);
    assert_eq!(
        get(&app, "/unknown.json", "application/json")
            .await
            .status(),
        404
    );
    // Server routes stay theirs.
    for path in [
        "/ads/nothing",
        "/graphql/nope",
        "/auth/x/y/z",
        "/metricsx",
        "/workers/x",
    ] {
        assert_eq!(get(&app, path, HTML).await.status(), 404, "{path}");
    }
    assert_eq!(get(&app, "/health", HTML).await.status(), 200);
    // Nothing outside the folder.
    let secret = dir.path().parent().unwrap().join("outside.txt");
    std::fs::write(&secret, "secret").unwrap();
    for path in [
        "/../outside.txt",
        "/assets/../../outside.txt",
        "/%2e%2e/outside.txt",
    ] {
        let r = get(&app, path, "*/*").await;
        let body = r.text().await.unwrap();
        assert!(!body.contains("secret"), "{path}");
    }
    // Only GET and HEAD.
    let post = app.client.post(app.url("/wallet")).send().await.unwrap();
    assert!(
        post.status() == 404 || post.status() == 405,
        "{}",
        post.status()
    );
    std::fs::remove_file(secret).unwrap();
}

#[tokio::test]
async fn the_turnstile_widget_host_joins_the_policy_only_with_a_site_key() {
    let dir = app_dir();
    let root = dir.path().to_path_buf();
    let app = TestApp::builder()
        .configure(move |c| {
            c.spa_dir = root;
            c.ads.turnstile_site_key = Some("site-key".into());
            c.ads.turnstile_secret_key = Some(tessera::config::Secret::new("ts-secret"));
            c.ads.turnstile_script_url = "http://127.0.0.1:9/turnstile/v0/api.js".parse().unwrap();
        })
        .spawn()
        .await;
    let r = get(&app, "/earn", HTML).await;
    let csp = r.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        csp.contains("script-src 'self' http://127.0.0.1:9;")
            && csp.contains("frame-src 'self' http://127.0.0.1:9;"),
        "{csp}"
    );
    let kim = app.register("kim@example.com", "kim").await;
    let status = app
        .graphql_as(
            &kim.access,
            "{ adRewardStatus { turnstileScriptUrl } }",
            serde_json::json!({}),
        )
        .await;
    assert_eq!(
        status["data"]["adRewardStatus"]["turnstileScriptUrl"],
        "http://127.0.0.1:9/turnstile/v0/api.js"
    );
}

#[tokio::test]
async fn mail_links_open_the_app_never_stored_and_without_a_referrer() {
    let dir = app_dir();
    let root = dir.path().to_path_buf();
    let app = TestApp::builder()
        .configure(move |c| c.spa_dir = root)
        .spawn()
        .await;
    for path in [
        "/verify-email?token=tsr_ev_x",
        "/reset-password?token=tsr_pr_x",
    ] {
        let r = get(&app, path, HTML).await;
        assert_eq!(r.status(), 200, "{path}");
        assert_eq!(r.headers()["cache-control"], "no-store", "{path}");
        assert_eq!(r.headers()["referrer-policy"], "no-referrer", "{path}");
        assert_eq!(r.headers()["x-frame-options"], "DENY", "{path}");
        assert!(
            r.headers()["content-security-policy"]
                .to_str()
                .unwrap()
                .starts_with("default-src 'self'")
        );
        let body = r.text().await.unwrap();
        assert!(
            body.contains("<div id=root>"),
            "the app, not the small page: {body}"
        );
    }
    // Elsewhere the app's own referrer policy and caching hold.
    let r = get(&app, "/wallet", HTML).await;
    assert_eq!(r.headers()["referrer-policy"], "same-origin");
    assert_eq!(r.headers()["cache-control"], "no-cache");
}

#[tokio::test]
async fn without_a_built_app_app_routes_are_404() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("none");
    let app = TestApp::builder()
        .configure(move |c| c.spa_dir = missing)
        .spawn()
        .await;
    assert_eq!(get(&app, "/", HTML).await.status(), 404);
    assert_eq!(get(&app, "/wallet", HTML).await.status(), 404);
    assert_eq!(get(&app, "/health", HTML).await.status(), 200);
}
