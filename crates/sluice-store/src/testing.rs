//! Fresh databases for tests, on the backend a test run asks for (feature `testing`, for
//! dev-dependencies only).
//!
//! `SLUICE_TEST_DB` picks the backend: unset or `sqlite` gives a SQLite file in the test's
//! folder; `postgres` gives a schema of its own on the PostgreSQL server of
//! `SLUICE_TEST_POSTGRES` (default: the local server's database `test`), so that tests run in
//! parallel without meeting. A test binary becomes a backend matrix with one test that calls
//! [`rerun_on_postgres`]: it runs the binary's other tests again on PostgreSQL.
//!
//! A schema is named after the test process (`sluice_test_<pid>_<n>`); each new one first drops
//! those whose process is gone, so a killed test run leaves nothing behind for long.

use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use crate::Store;

/// The environment variable that picks the backend.
pub const BACKEND_VAR: &str = "SLUICE_TEST_DB";
const SERVER_VAR: &str = "SLUICE_TEST_POSTGRES";
const DEFAULT_SERVER: &str = "postgres://postgres@127.0.0.1:5432/test";
const PREFIX: &str = "sluice_test_";

/// Which backend this test run uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    /// From [`BACKEND_VAR`]; anything but `postgres` is SQLite.
    pub fn current() -> Backend {
        match std::env::var(BACKEND_VAR).as_deref() {
            Ok("postgres") => Backend::Postgres,
            _ => Backend::Sqlite,
        }
    }
}

/// The URL of a fresh, empty database for one test: a file in `dir` (SQLite), or a new schema
/// (PostgreSQL).
pub async fn url_in(dir: &Path) -> String {
    match Backend::current() {
        Backend::Sqlite => format!("sqlite:{}", dir.join("sluice.db").display()),
        Backend::Postgres => new_schema().await,
    }
}

/// A fresh, empty store for one test (see [`url_in`]).
pub async fn store_in(dir: &Path) -> Arc<dyn Store> {
    crate::open(&url_in(dir).await).await.expect("the test database opens")
}

/// A new schema on the test server; its URL.
#[cfg(feature = "postgres")]
pub async fn new_schema() -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let server = std::env::var(SERVER_VAR).unwrap_or_else(|_| DEFAULT_SERVER.to_string());
    let schema = format!("{PREFIX}{}_{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
    crate::PgStore::drop_orphan_schemas(&server, PREFIX)
        .await
        .unwrap_or_else(|e| panic!("the test PostgreSQL server ({SERVER_VAR}, default {DEFAULT_SERVER}): {e}"));
    crate::PgStore::create_schema(&server, &schema).await.expect("the test schema is created")
}

#[cfg(not(feature = "postgres"))]
pub async fn new_schema() -> String {
    panic!("{BACKEND_VAR}=postgres, but this build has no PostgreSQL backend (feature `postgres`)")
}

/// Runs this test binary's tests again on PostgreSQL, but `this_test` (the caller), and
/// panics with their output unless they all pass. Does nothing when the backend was chosen
/// already (in that rerun, or by whoever ran the binary).
pub fn rerun_on_postgres(this_test: &str) {
    if std::env::var_os(BACKEND_VAR).is_some() {
        return;
    }
    let exe = std::env::current_exe().expect("the test binary's path");
    let out = std::process::Command::new(exe)
        .env(BACKEND_VAR, "postgres")
        .args(["--skip", this_test])
        .output()
        .expect("the test binary runs again");
    assert!(
        out.status.success(),
        "the tests failed on PostgreSQL:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
