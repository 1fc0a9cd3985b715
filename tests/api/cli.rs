//! The `tessera` binary itself: help, refusals of bad settings, migrate, export-schema, and
//! serving with the embedded defaults until SIGTERM.

use std::process::Stdio;

use crate::helpers::{BinaryServer, tessera_command as tessera};

#[test]
fn help_lists_every_setting_with_its_variable() {
    let dir = tempfile::tempdir().unwrap();
    for args in [
        &["--help"][..],
        &["serve", "--help"],
        &["migrate", "--help"],
    ] {
        let out = tessera(dir.path()).args(args).output().unwrap();
        assert!(out.status.success());
        let help = String::from_utf8(out.stdout).unwrap();
        for var in [
            "LISTEN_ADDR",
            "PUBLIC_URL",
            "DATABASE_URL",
            "REDIS_URL",
            "LOG_FORMAT",
            "OTEL_EXPORTER_OTLP_ENDPOINT",
        ] {
            assert!(
                help.contains(&format!("[env: {var}")),
                "{args:?} lacks {var}:\n{help}"
            );
        }
        assert!(help.contains("[default: 127.0.0.1:8000]"), "{args:?}");
    }
    let out = tessera(dir.path()).arg("--help").output().unwrap();
    let help = String::from_utf8(out.stdout).unwrap();
    for sub in ["serve", "migrate", "export-schema"] {
        assert!(help.contains(sub), "{sub} missing:\n{help}");
    }
}

#[test]
fn bad_settings_exit_2_naming_the_variable() {
    let dir = tempfile::tempdir().unwrap();
    for (var, value) in [
        ("LISTEN_ADDR", "not-an-address"),
        ("DATABASE_URL", "mysql://localhost/x"),
        ("LOG_FORMAT", "xml"),
        ("GRAPHQL_MAX_DEPTH", "-1"),
        ("PUBLIC_URL", "ftp://example.com"),
    ] {
        let out = tessera(dir.path()).env(var, value).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{var}={value}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(var), "{var}: {stderr}");
        assert!(!stderr.contains("panicked"), "{var}: {stderr}");
    }
}

#[test]
fn migrate_up_status_down() {
    let dir = tempfile::tempdir().unwrap();
    let run = |action: &str| {
        let out = tessera(dir.path())
            .args(["migrate", action])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "migrate {action}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let status = run("status");
    assert!(
        status.contains("Pending") && status.contains("create_audit_log"),
        "{status}"
    );
    run("up");
    assert!(
        dir.path().join("data/tessera.db").exists(),
        "relative SQLite path under ./data"
    );
    let status = run("status");
    assert!(
        status.contains("Applied") && !status.contains("Pending"),
        "{status}"
    );
    run("down");
    assert!(run("status").contains("Pending"));
}

#[test]
fn export_schema_prints_what_the_code_serves() {
    let dir = tempfile::tempdir().unwrap();
    let out = tessera(dir.path()).arg("export-schema").output().unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        tessera::graphql::sdl()
    );
    let out = tessera(dir.path())
        .args(["export-schema", "--output", "schema.graphql"])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(
        std::fs::read_to_string(dir.path().join("schema.graphql")).unwrap(),
        tessera::graphql::sdl()
    );
}

#[tokio::test]
async fn serves_with_embedded_defaults_and_stops_on_sigterm() {
    let server = BinaryServer::start(&[]).await;
    let body: serde_json::Value = server
        .client
        .get(format!("{}/ready", server.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["checks"]["database"]["backend"], "sqlite");
    assert_eq!(body["checks"]["kv"]["backend"], "memory");
    assert!(server.dir.path().join("data/tessera.db").exists());
    assert!(
        server.dir.path().join("data/identity-keys.json").exists(),
        "development keys are generated under ./data"
    );
    let logs = server.stop().await;
    assert!(logs.contains("stopped"), "{logs}");
}

/// Runs `tessera create-admin --email EMAIL --password-stdin` in `dir` with `password` on
/// standard input.
fn create_admin_with_password(
    dir: &std::path::Path,
    email: &str,
    password: &str,
) -> std::process::Output {
    use std::io::Write;
    let mut child = tessera(dir)
        .args(["create-admin", "--email", email, "--password-stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{password}\n").as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn create_admin_makes_or_promotes_an_admin() {
    let dir = tempfile::tempdir().unwrap();
    let out =
        create_admin_with_password(dir.path(), "Root@Example.com", "granite-falcon-harbour-8");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        stdout.starts_with("created admin root@example.com"),
        "{stdout}"
    );

    let out = tessera(dir.path())
        .args(["create-admin", "--email", "root@example.com"])
        .output()
        .unwrap();
    assert!(
        String::from_utf8(out.stdout)
            .unwrap()
            .starts_with("promoted admin")
    );

    let out = tessera(dir.path())
        .args(["create-admin", "--email", "not-an-email"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not an email address"));
}

#[tokio::test]
async fn the_created_admin_signs_in_as_admin() {
    let server = BinaryServer::start(&[]).await;
    let out = create_admin_with_password(
        server.dir.path(),
        "ops@example.com",
        "granite-falcon-harbour-8",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let body = server
        .graphql(
            "mutation { login(email: \"ops@example.com\", password: \"granite-falcon-harbour-8\") { user { role } } }",
            serde_json::json!({}),
        )
        .await;
    assert_eq!(body["data"]["login"]["user"]["role"], "ADMIN", "{body}");
    server.stop().await;
}
