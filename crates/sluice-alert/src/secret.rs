//! Secrets (webhook URLs, header values, SMTP passwords): never in `sluice.toml` itself, only
//! named there, as an environment variable (`*_env`) or a file (`*_file`).
//!
//! A secret is read when a message is sent, not when the configuration loads: a rotated file or
//! a changed variable is used from the next message on, without a restart. A secret that cannot
//! be read is an error naming the variable or the file, never a value. [`Secret`]'s `Debug`
//! shows no value either.

use std::fmt;
use std::io::Read;
use std::path::PathBuf;

/// The largest secret file read (a URL, a password or a token is far smaller).
pub const SECRET_FILE_MAX_BYTES: u64 = 64 * 1024;

/// Where a secret comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    Env(String),
    File(PathBuf),
}

impl SecretSource {
    /// The source from a channel's `<key>_env` / `<key>_file` pair: exactly one must be set.
    /// `Err` is the message for the channel (without its name).
    pub fn from_pair(key: &str, env: Option<&str>, file: Option<&std::path::Path>) -> Result<SecretSource, String> {
        match (env, file) {
            (Some(_), Some(_)) => Err(format!("set one of `{key}_env` and `{key}_file`, not both")),
            (None, None) => Err(format!(
                "set `{key}_env` (an environment variable) or `{key}_file` (a file) to give the {key}: it is a \
                 secret and is never written in sluice.toml"
            )),
            (Some(v), None) if v.trim().is_empty() => {
                Err(format!("`{key}_env` is empty: name an environment variable"))
            }
            (None, Some(p)) if p.as_os_str().is_empty() => Err(format!("`{key}_file` is empty: give a file's path")),
            (Some(v), None) => Ok(SecretSource::Env(v.to_string())),
            (None, Some(p)) => Ok(SecretSource::File(p.to_path_buf())),
        }
    }

    /// "environment variable `X`" or "file `/run/secrets/x`".
    pub fn describe(&self) -> String {
        match self {
            SecretSource::Env(v) => format!("environment variable `{v}`"),
            SecretSource::File(p) => format!("file `{}`", p.display()),
        }
    }

    /// Reads the secret now. A file's trailing line break is not part of it; an empty secret is
    /// an error (a variable set to nothing is a mistake, not a URL).
    pub fn read(&self) -> Result<Secret, String> {
        let value = match self {
            SecretSource::Env(v) => match std::env::var(v) {
                Ok(s) => s,
                Err(std::env::VarError::NotPresent) => return Err(format!("{} is not set", self.describe())),
                Err(std::env::VarError::NotUnicode(_)) => {
                    return Err(format!("{} is not valid UTF-8", self.describe()))
                }
            },
            SecretSource::File(p) => {
                let file =
                    std::fs::File::open(p).map_err(|e| format!("cannot read {}: {}", self.describe(), e.kind()))?;
                let mut text = String::new();
                file.take(SECRET_FILE_MAX_BYTES + 1)
                    .read_to_string(&mut text)
                    .map_err(|e| format!("cannot read {}: {}", self.describe(), e.kind()))?;
                if text.len() as u64 > SECRET_FILE_MAX_BYTES {
                    return Err(format!("{} is larger than {SECRET_FILE_MAX_BYTES} bytes", self.describe()));
                }
                text.trim_end_matches(['\n', '\r']).to_string()
            }
        };
        if value.trim().is_empty() {
            return Err(format!("{} is empty", self.describe()));
        }
        Ok(Secret(value))
    }
}

/// A secret's value. Its `Debug` and `Display` print `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// `text` with every occurrence of the given secrets replaced by `***`: for anything a remote
/// end answered, which may echo what it was sent.
pub fn scrub(text: &str, secrets: &[String]) -> String {
    let mut out = text.to_string();
    for s in secrets {
        if !s.is_empty() {
            out = out.replace(s.as_str(), "***");
        }
    }
    out
}
