//! Database URLs, parsed in this one place: the store factory, the scheduler lock, the
//! `SLUICE_DB` a task is given and the CLI's "does the database exist yet" all read a [`DbUrl`].

use std::path::PathBuf;

use crate::{Result, StoreError};

/// What a database URL names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DbUrl {
    /// A SQLite file: `sqlite:PATH`, `sqlite://PATH` (`sqlite:///abs/path`) or a bare path.
    Sqlite { path: PathBuf },
    /// A private in-memory SQLite database: `sqlite::memory:`, `:memory:`, `?mode=memory`.
    SqliteMemory,
    /// `postgres://...` or `postgresql://...`, kept whole (it may carry a password: never
    /// print it or hand it to a task).
    Postgres(String),
}

/// What [`StoreError::UnsupportedUrl`] says is supported.
pub const SUPPORTED: &str = "sqlite:PATH, sqlite://PATH, a file path, sqlite::memory:, or postgres://...";

impl DbUrl {
    /// Parses `url`; anything else is [`StoreError::UnsupportedUrl`]. SQLite query parameters
    /// (`?mode=rwc`) are accepted and ignored but for `mode=memory`: the store always opens a
    /// file read-write, creating it.
    pub fn parse(url: &str) -> Result<DbUrl> {
        let unsupported = || StoreError::UnsupportedUrl(url.to_string());
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(DbUrl::Postgres(url.to_string()));
        }
        if url == ":memory:" {
            return Ok(DbUrl::SqliteMemory);
        }
        let Some(rest) = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:")) else {
            if url.is_empty() || has_scheme(url) {
                return Err(unsupported());
            }
            return Ok(DbUrl::Sqlite { path: PathBuf::from(url) });
        };
        let (file, params) = rest.split_once('?').unwrap_or((rest, ""));
        if file == ":memory:" || params.split('&').any(|p| p == "mode=memory") {
            return Ok(DbUrl::SqliteMemory);
        }
        // An empty name would give each connection its own temporary database.
        if file.is_empty() || file.starts_with(':') {
            return Err(unsupported());
        }
        Ok(DbUrl::Sqlite { path: PathBuf::from(file) })
    }

    /// The URL for a process started elsewhere (a task's `SLUICE_DB`): a SQLite file as an
    /// absolute `sqlite:` URL, resolved against `cwd`. `None` for an in-memory database (no
    /// other process can open it) and for a server URL, which may carry a password that must
    /// not reach task environments and their logs.
    pub fn for_task(&self, cwd: &std::path::Path) -> Option<String> {
        match self {
            DbUrl::Sqlite { path } => Some(format!("sqlite:{}", cwd.join(path).display())),
            DbUrl::SqliteMemory | DbUrl::Postgres(_) => None,
        }
    }
}

/// `url` fit to print: a server URL's password replaced by `***` (a SQLite URL has none).
pub fn redacted(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_string() };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else { return url.to_string() };
    match rest[..at].split_once(':') {
        Some((user, _password)) => format!("{scheme}://{user}:***{}", &rest[at..]),
        None => url.to_string(),
    }
}

/// `mysql:...`, `http://...`: a URL scheme (two characters or more, so that a Windows drive
/// letter is still a path).
fn has_scheme(url: &str) -> bool {
    if url.contains("://") {
        return true;
    }
    match url.split_once(':') {
        Some((scheme, _)) => {
            scheme.len() >= 2
                && scheme.starts_with(|c: char| c.is_ascii_alphabetic())
                && scheme.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_is_never_printed() {
        assert_eq!(
            redacted("postgres://u:s3cret@db:5432/x?sslmode=require"),
            "postgres://u:***@db:5432/x?sslmode=require"
        );
        assert_eq!(redacted("postgresql://u:p%40ss@h/d"), "postgresql://u:***@h/d");
        assert_eq!(redacted("postgres://u@h/d"), "postgres://u@h/d");
        assert_eq!(redacted("postgres://h/d?options[search_path]=a@b"), "postgres://h/d?options[search_path]=a@b");
        assert_eq!(redacted("sqlite:/var/lib/sluice.db"), "sqlite:/var/lib/sluice.db");
    }

    fn sqlite(p: &str) -> DbUrl {
        DbUrl::Sqlite { path: PathBuf::from(p) }
    }

    #[test]
    fn every_form_parses_to_what_it_names() {
        assert_eq!(DbUrl::parse("sqlite:sluice.db").unwrap(), sqlite("sluice.db"));
        assert_eq!(DbUrl::parse("sqlite://state/s.db").unwrap(), sqlite("state/s.db"));
        assert_eq!(DbUrl::parse("sqlite:///var/lib/s.db?mode=rwc").unwrap(), sqlite("/var/lib/s.db"));
        assert_eq!(DbUrl::parse("state/s.db").unwrap(), sqlite("state/s.db"));
        assert_eq!(DbUrl::parse("C:/data/s.db").unwrap(), sqlite("C:/data/s.db"));
        for memory in ["sqlite::memory:", ":memory:", "sqlite://:memory:", "sqlite:x.db?mode=memory&cache=shared"] {
            assert_eq!(DbUrl::parse(memory).unwrap(), DbUrl::SqliteMemory, "{memory}");
        }
        let pg = "postgres://u:secret@localhost/sluice";
        assert_eq!(DbUrl::parse(pg).unwrap(), DbUrl::Postgres(pg.into()));
    }

    #[test]
    fn other_urls_are_unsupported_and_named() {
        for url in ["mysql://localhost/db", "postgresql:sluice", "", "sqlite:", "sqlite:?mode=rwc", "http://x/y"] {
            match DbUrl::parse(url) {
                Err(StoreError::UnsupportedUrl(u)) => assert_eq!(u, url),
                other => panic!("{url}: expected UnsupportedUrl, got {other:?}"),
            }
        }
    }

    #[test]
    fn a_task_gets_an_absolute_sqlite_url_and_never_a_server_url() {
        let cwd = std::path::Path::new("/srv/sluice");
        assert_eq!(DbUrl::parse("sluice.db").unwrap().for_task(cwd).as_deref(), Some("sqlite:/srv/sluice/sluice.db"));
        assert_eq!(DbUrl::parse("sqlite:///abs/s.db").unwrap().for_task(cwd).as_deref(), Some("sqlite:/abs/s.db"));
        assert_eq!(DbUrl::parse("sqlite::memory:").unwrap().for_task(cwd), None);
        assert_eq!(DbUrl::parse("postgres://u:p@h/d").unwrap().for_task(cwd), None);
    }
}
