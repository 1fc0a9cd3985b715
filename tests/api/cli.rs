//! The `tessera` binary itself: help, refusals of bad settings, migrate, export-schema, and
//! serving with the embedded defaults until SIGTERM.

use std::{
    process::{Command, Stdio},
    time::Duration,
};

fn tessera(dir: &std::path::Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tessera"));
    command
        .current_dir(dir)
        .env_remove("DATABASE_URL")
        .env_remove("REDIS_URL")
        .env_remove("LISTEN_ADDR")
        .env_remove("RUST_LOG")
        .env("LOG_FORMAT", "json");
    command
}

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
    let dir = tempfile::tempdir().unwrap();
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().port()
    };
    let mut child = tokio::process::Command::from(tessera(dir.path()))
        .env("LISTEN_ADDR", format!("127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let ready = format!("http://127.0.0.1:{port}/ready");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(response) = client.get(&ready).send().await
            && response.status() == 200
        {
            let body: serde_json::Value = response.json().await.unwrap();
            assert_eq!(body["checks"]["database"]["backend"], "sqlite");
            assert_eq!(body["checks"]["kv"]["backend"], "memory");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "never became ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(dir.path().join("data/tessera.db").exists());

    let pid = child.id().unwrap().to_string();
    let killed = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(killed.success());
    let status = tokio::time::timeout(Duration::from_secs(15), child.wait())
        .await
        .expect("exits after SIGTERM")
        .unwrap();
    assert!(status.success(), "{status:?}");
}
