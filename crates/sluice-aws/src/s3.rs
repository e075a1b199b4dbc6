//! S3: the `s3_key` sensor.
//!
//! A plain key is checked with HeadObject. A key holding `*` or `?` is a pattern: the prefix
//! before the first wildcard is listed (ListObjectsV2, every page) and each key is matched
//! against the whole pattern ([`glob_match`]: `*` any run of characters, `/` included; `?`
//! exactly one). A missing bucket or key is what the sensor waits out, not a failure: it keeps
//! poking (and says so in the log) until the object appears or the task's `timeout` ends it.

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use serde_json::{Map, Value};
use sluice_operator::{Outcome, TaskError, TaskOperator, TryContext};

use crate::clients::Clients;
use crate::wait::{aws_error, AwsError, Poll, Waiter};

/// `sensor` of kind `s3_key`.
pub struct KeySensor {
    pub bucket: String,
    pub key: String,
    pub poke_interval: Duration,
    pub clients: Arc<Clients>,
    pub connection: Option<String>,
}

/// Whether a key is a pattern rather than a plain key.
pub fn is_pattern(key: &str) -> bool {
    key.contains(['*', '?'])
}

/// The part of a pattern before its first wildcard: what to list.
pub fn literal_prefix(pattern: &str) -> &str {
    pattern.find(['*', '?']).map_or(pattern, |i| &pattern[..i])
}

/// Matches `text` against `pattern`: `*` is any run of characters (`/` included, possibly
/// none), `?` exactly one character, everything else itself.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    // The last `*` seen, and the text position it was tried at: on a mismatch the star takes
    // one more character and matching resumes after it.
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        match p.get(pi) {
            Some('*') => {
                star = Some((pi, ti));
                pi += 1;
            }
            Some(&c) if c == '?' || c == t[ti] => {
                pi += 1;
                ti += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    pi = sp + 1;
                    ti = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

fn status(e: &SdkError<impl std::fmt::Debug>) -> Option<u16> {
    match e {
        SdkError::ServiceError(se) => Some(se.raw().status().as_u16()),
        _ => None,
    }
}

impl KeySensor {
    /// One look: the matching key, or why not yet.
    async fn poke(&self, s3: &aws_sdk_s3::Client) -> Result<Poll<String>, AwsError> {
        let bucket = self.bucket.as_str();
        if !is_pattern(&self.key) {
            return match s3.head_object().bucket(bucket).key(&self.key).send().await {
                Ok(_) => Ok(Poll::Ready(self.key.clone())),
                // HEAD has no body: a missing bucket and a missing key both answer 404.
                Err(e) if status(&e) == Some(404) => {
                    Ok(Poll::Pending(format!("s3://{bucket}/{} does not exist yet", self.key)))
                }
                Err(e) => Err(aws_error("HeadObject", e)),
            };
        }
        let prefix = literal_prefix(&self.key);
        let mut pages = s3.list_objects_v2().bucket(bucket).prefix(prefix).into_paginator().send();
        while let Some(page) = pages.next().await {
            let page = match page {
                Ok(p) => p,
                Err(e) if e.code() == Some("NoSuchBucket") => {
                    return Ok(Poll::Pending(format!("bucket {bucket} does not exist yet")));
                }
                Err(e) => return Err(aws_error("ListObjectsV2", e)),
            };
            if let Some(k) = page.contents().iter().filter_map(|o| o.key()).find(|k| glob_match(&self.key, k)) {
                return Ok(Poll::Ready(k.to_string()));
            }
        }
        Ok(Poll::Pending(format!("no key matches s3://{bucket}/{} yet", self.key)))
    }
}

#[async_trait::async_trait]
impl TaskOperator for KeySensor {
    async fn run(&self, ctx: &TryContext) -> Result<Outcome, TaskError> {
        let s3 = self.clients.s3(self.connection.as_deref()).await?;
        let found = Waiter::new(format!("s3://{}/{}", self.bucket, self.key), self.poke_interval)
            .wait(ctx, || self.poke(&s3))
            .await?;
        ctx.log.line(&format!("[aws] found s3://{}/{found}", self.bucket));
        Ok(Outcome::Success(Map::new()))
    }

    fn can_resume(&self, _recorded: &Map<String, Value>) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob() {
        assert!(glob_match("a/b.csv", "a/b.csv"));
        assert!(!glob_match("a/b.csv", "a/b.csvx"));
        assert!(glob_match("data/*.csv", "data/x.csv"));
        assert!(glob_match("data/*.csv", "data/2024/01/x.csv"), "* crosses /");
        assert!(glob_match("data/*.csv", "data/.csv"), "* may be empty");
        assert!(!glob_match("data/*.csv", "data/x.json"));
        assert!(glob_match("data/part-?.csv", "data/part-1.csv"));
        assert!(!glob_match("data/part-?.csv", "data/part-12.csv"));
        assert!(!glob_match("data/part-?.csv", "data/part-.csv"));
        assert!(glob_match("*", ""));
        assert!(glob_match("a*b*c", "aXbYbZc"));
        assert!(!glob_match("a*b*c", "aXbYbZ"));
        assert!(glob_match("**x", "abcx"));
        assert!(glob_match("é?", "éà"), "characters, not bytes");
        assert!(glob_match("logs/*/_SUCCESS", "logs/2024-01-01/_SUCCESS"));
        assert!(!glob_match("logs/*/_SUCCESS", "logs/2024-01-01/_SUCCESS.tmp"));
    }

    #[test]
    fn prefix_before_the_first_wildcard() {
        assert_eq!(literal_prefix("data/2024/*.csv"), "data/2024/");
        assert_eq!(literal_prefix("data/part-?/*.csv"), "data/part-");
        assert_eq!(literal_prefix("*"), "");
        assert_eq!(literal_prefix("plain/key"), "plain/key");
        assert!(is_pattern("a?b") && is_pattern("a*") && !is_pattern("a/b"));
    }
}
