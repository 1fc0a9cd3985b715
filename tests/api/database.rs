use std::sync::Arc;

use futures_util::future::join_all;
use sea_orm::{ConnectionTrait, Statement};
use serde_json::json;
use tessera::platform::{
    audit::{self, AuditEntry},
    db::Backend,
};

use crate::helpers::TestApp;

#[tokio::test]
async fn migrations_create_the_audit_log() {
    let app = TestApp::spawn().await;
    let db = &app.state.db;
    let actor = uuid::Uuid::now_v7();
    let txn = db.begin_write().await.unwrap();
    audit::record(
        &txn,
        AuditEntry {
            actor_id: Some(actor),
            action: "test.granted",
            target_type: Some("user"),
            target_id: Some("42".into()),
            details: json!({"amount": 5, "reason": "welcome"}),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    txn.commit().await.unwrap();

    // A rolled-back action leaves no audit row.
    let txn = db.begin_write().await.unwrap();
    audit::record(
        &txn,
        AuditEntry {
            action: "test.rolled_back",
            ..Default::default()
        },
    )
    .await
    .unwrap();
    txn.rollback().await.unwrap();

    let rows = audit::recent(db.conn(), 10).await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].action, "test.granted");
    assert_eq!(rows[0].actor_id, Some(actor));
    assert_eq!(rows[0].details["amount"], 5);
}

#[tokio::test]
async fn sqlite_runs_in_wal_with_a_busy_timeout() {
    let app = TestApp::builder().spawn().await;
    if app.state.db.backend() != Backend::Sqlite {
        return;
    }
    let conn = app.state.db.conn();
    let row = conn
        .query_one_raw(Statement::from_string(
            conn.get_database_backend(),
            "PRAGMA journal_mode",
        ))
        .await
        .unwrap()
        .unwrap();
    let mode: String = row.try_get_by_index(0).unwrap();
    assert_eq!(mode, "wal");
    let row = conn
        .query_one_raw(Statement::from_string(
            conn.get_database_backend(),
            "PRAGMA busy_timeout",
        ))
        .await
        .unwrap()
        .unwrap();
    let timeout: i64 = row.try_get_by_index(0).unwrap();
    assert_eq!(timeout, 5000);
}

/// Read-modify-write from many tasks at once loses no update: IMMEDIATE transactions on
/// SQLite queue writers; on PostgreSQL the row lock does.
#[tokio::test]
async fn concurrent_write_transactions_lose_no_update() {
    let app = TestApp::spawn().await;
    let db = app.state.db.clone();
    let backend = db.conn().get_database_backend();
    db.conn()
        .execute_unprepared("CREATE TABLE counter (id INTEGER PRIMARY KEY, value BIGINT NOT NULL)")
        .await
        .unwrap();
    db.conn()
        .execute_unprepared("INSERT INTO counter (id, value) VALUES (1, 0)")
        .await
        .unwrap();
    let select = match db.backend() {
        Backend::Sqlite => "SELECT value FROM counter WHERE id = 1",
        Backend::Postgres => "SELECT value FROM counter WHERE id = 1 FOR UPDATE",
    };
    let db = Arc::new(db);
    let tasks = (0..8).map(|_| {
        let db = Arc::clone(&db);
        tokio::spawn(async move {
            for _ in 0..10 {
                let txn = db.begin_write().await.expect("begin");
                let row = txn
                    .query_one_raw(Statement::from_string(backend, select))
                    .await
                    .expect("read")
                    .expect("row");
                let value: i64 = row.try_get_by_index(0).unwrap();
                tokio::task::yield_now().await;
                txn.execute_raw(Statement::from_sql_and_values(
                    backend,
                    match backend {
                        sea_orm::DbBackend::Postgres => {
                            "UPDATE counter SET value = $1 WHERE id = 1"
                        }
                        _ => "UPDATE counter SET value = ? WHERE id = 1",
                    },
                    [(value + 1).into()],
                ))
                .await
                .expect("write");
                txn.commit().await.expect("commit");
            }
        })
    });
    for result in join_all(tasks).await {
        result.unwrap();
    }
    let row = db
        .conn()
        .query_one_raw(Statement::from_string(
            backend,
            "SELECT value FROM counter WHERE id = 1",
        ))
        .await
        .unwrap()
        .unwrap();
    let value: i64 = row.try_get_by_index(0).unwrap();
    assert_eq!(value, 80);
}

/// Two server instances on one database and one kv namespace see the same state.
#[tokio::test]
async fn two_instances_share_database_and_kv() {
    let a = TestApp::spawn().await;
    let b = a.spawn_peer().await;
    assert_eq!(a.database_url, b.database_url);
    assert_eq!(a.kv_prefix, b.kv_prefix);

    audit::record(
        a.state.db.conn(),
        AuditEntry {
            action: "test.from_a",
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let rows = audit::recent(b.state.db.conn(), 5).await.unwrap();
    assert_eq!(rows[0].action, "test.from_a");

    if a.state.kv.backend() == "redis" {
        use futures_util::StreamExt;
        let mut sub = b.state.kv.subscribe("instances").await.unwrap();
        a.state.kv.set("shared", b"yes", None).await.unwrap();
        assert_eq!(
            b.state.kv.get("shared").await.unwrap(),
            Some(b"yes".to_vec())
        );
        a.state.kv.publish("instances", b"hello b").await.unwrap();
        let delivery = tokio::time::timeout(std::time::Duration::from_secs(5), sub.next())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            delivery,
            tessera::platform::kv::Delivery::Message(b"hello b".to_vec())
        );
    }
    b.stop().await.unwrap();
    a.stop().await.unwrap();
}
