//! The database: one sea-orm connection pool over SQLite (embedded default) or PostgreSQL.
//!
//! SQLite has no row locks, and a deferred transaction that later wants to write fails with
//! `SQLITE_BUSY` at once instead of waiting. So every transaction that may write is started
//! with [`Db::begin_write`], which is `BEGIN IMMEDIATE` on SQLite (writers queue on the
//! database lock, bounded by the busy timeout) and a plain `BEGIN` on PostgreSQL, where
//! callers use conditional updates or row locks. The journal is WAL so readers never wait
//! for a writer. [`is_retryable`] tells which errors a caller may retry with a bound.

use std::{path::Path, time::Duration};

use migration::{Migrator, MigratorTrait};
use sea_orm::{
    ConnectOptions, ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbBackend, DbErr,
    RuntimeErr, SqliteTransactionMode, TransactionOptions, TransactionTrait,
    sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous},
};

use crate::config::Config;

/// Which engine a [`Db`] talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

/// The shared connection pool. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Db {
    conn: DatabaseConnection,
    backend: Backend,
}

impl Db {
    /// Connects with the pool settings of `config`, creating the SQLite file's folder if needed.
    pub async fn connect(config: &Config) -> anyhow::Result<Self> {
        let url = config.database_url.expose();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else {
            Backend::Postgres
        };
        if backend == Backend::Sqlite
            && let Some(parent) = sqlite_path(url).and_then(|p| p.parent().map(Path::to_path_buf))
            && !parent.as_os_str().is_empty()
        {
            std::fs::create_dir_all(&parent).map_err(|e| {
                anyhow::anyhow!(
                    "DATABASE_URL: cannot create folder {}: {e}",
                    parent.display()
                )
            })?;
        }

        let mut options = ConnectOptions::new(url.to_owned());
        options
            .max_connections(config.database_max_connections)
            .min_connections(config.database_min_connections)
            .connect_timeout(config.database_connect_timeout.0)
            .acquire_timeout(config.database_connect_timeout.0)
            .idle_timeout(Duration::from_secs(600))
            .sqlx_logging(true)
            .sqlx_logging_level(log::LevelFilter::Trace)
            .sqlx_slow_statements_logging_settings(
                log::LevelFilter::Warn,
                Duration::from_millis(500),
            );
        let busy_timeout = config.sqlite_busy_timeout.0;
        options.map_sqlx_sqlite_opts(move |opts| {
            opts.journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .busy_timeout(busy_timeout)
                .foreign_keys(true)
        });
        let conn = sea_orm::Database::connect(options)
            .await
            .map_err(|e| anyhow::anyhow!("cannot connect to {:?}: {e}", config.database_url))?;
        Ok(Self { conn, backend })
    }

    pub fn conn(&self) -> &DatabaseConnection {
        &self.conn
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Starts a transaction that may write (`BEGIN IMMEDIATE` on SQLite).
    pub async fn begin_write(&self) -> Result<DatabaseTransaction, DbErr> {
        let options = TransactionOptions {
            sqlite_transaction_mode: (self.backend == Backend::Sqlite)
                .then_some(SqliteTransactionMode::Immediate),
            ..Default::default()
        };
        self.conn.begin_with_options(options).await
    }

    /// Round trip to the database, for readiness checks.
    pub async fn ping(&self) -> Result<(), DbErr> {
        self.conn.execute_unprepared("SELECT 1").await.map(|_| ())
    }

    pub async fn migrate_up(&self) -> Result<(), DbErr> {
        Migrator::up(&self.conn, None).await
    }

    pub async fn close(self) {
        if let Err(e) = self.conn.close().await {
            tracing::warn!(error = %e, "closing the database pool failed");
        }
    }

    pub fn sea_backend(&self) -> DbBackend {
        self.conn.get_database_backend()
    }
}

/// The file path of a `sqlite://PATH?…` URL, or `None` for in-memory databases.
pub fn sqlite_path(url: &str) -> Option<std::path::PathBuf> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or("");
    if path.is_empty() || path == ":memory:" {
        return None;
    }
    Some(std::path::PathBuf::from(path))
}

/// Whether `err` is a transient conflict that the same transaction may succeed at when
/// retried: SQLite busy/locked, PostgreSQL serialization failure or deadlock.
/// One page of a list read newest first by a time-ordered (UUID v7) id.
#[derive(Debug)]
pub struct Page<T> {
    pub rows: Vec<T>,
    /// Rows remain after this page.
    pub has_next: bool,
    /// Rows matching `filter`, all pages together.
    pub total: u64,
}

/// Rows of `E` matching `filter`, newest first by `id`, strictly older than `before` when
/// given: `first` of them, and whether more remain. Pages stay put while rows are added.
pub async fn newest_first<E>(
    conn: &impl sea_orm::ConnectionTrait,
    filter: sea_orm::Condition,
    id: E::Column,
    first: u64,
    before: Option<uuid::Uuid>,
) -> Result<Page<E::Model>, DbErr>
where
    E: sea_orm::EntityTrait,
    E::Model: Send + Sync,
{
    use sea_orm::{ColumnTrait, PaginatorTrait, QueryFilter, QueryOrder, QuerySelect};
    let total = E::find().filter(filter.clone()).count(conn).await?;
    let filter = match before {
        Some(before) => filter.add(id.lt(before)),
        None => filter,
    };
    let mut rows = E::find()
        .filter(filter)
        .order_by_desc(id)
        .limit(first + 1)
        .all(conn)
        .await?;
    let has_next = rows.len() as u64 > first;
    rows.truncate(first as usize);
    Ok(Page {
        rows,
        has_next,
        total,
    })
}

pub fn is_retryable(err: &DbErr) -> bool {
    let sqlx_err = match err {
        DbErr::Exec(RuntimeErr::SqlxError(e))
        | DbErr::Query(RuntimeErr::SqlxError(e))
        | DbErr::Conn(RuntimeErr::SqlxError(e)) => e,
        _ => return false,
    };
    let Some(db_err) = sqlx_err.as_database_error() else {
        return false;
    };
    match db_err.code().as_deref() {
        // SQLITE_BUSY (5), SQLITE_LOCKED (6) and their extended codes (e.g. 517 BUSY_SNAPSHOT).
        Some(code)
            if code
                .parse::<u32>()
                .is_ok_and(|c| c & 0xff == 5 || c & 0xff == 6) =>
        {
            true
        }
        // serialization_failure, deadlock_detected
        Some("40001") | Some("40P01") => true,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_paths() {
        assert_eq!(
            sqlite_path("sqlite://data/tessera.db?mode=rwc").unwrap(),
            std::path::PathBuf::from("data/tessera.db")
        );
        assert_eq!(
            sqlite_path("sqlite:///tmp/x.db").unwrap(),
            std::path::PathBuf::from("/tmp/x.db")
        );
        assert!(sqlite_path("sqlite::memory:").is_none());
        assert!(sqlite_path("postgres://localhost/x").is_none());
    }
}
