//! One SDK configuration per connection, built once and shared by every operator that uses
//! that connection: the default credential chain and region, or `[connections.NAME]` of
//! `sluice.toml` (region, profile, role to assume, endpoint URL). Credentials themselves never
//! pass through Sluice's files or logs.
//!
//! A connection's credentials are resolved before its first request, once for every try that
//! uses it: a success is kept (until the credentials expire, when they do), a failure fails the
//! try at once and for good (a retry cannot make credentials appear), with one line that says
//! where the chain looked and what to set. A failure is repeated to the tries that ask within
//! [`RETRY_AFTER`] and then looked for again, from a fresh configuration (which re-reads the
//! environment and the shared files): credentials may appear while the scheduler runs (a
//! refreshed profile, an `aws sso login`). The same happens when AWS rejects credentials that
//! resolved (an invalid key, an expired token): see [`scoped`].

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::{Arc, Mutex as StdMutex};
use std::time::{Duration, Instant, SystemTime};

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::provider::error::CredentialsError;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_smithy_types::error::ErrorMetadata;
use sluice_operator::Connection;
use sluice_operator::{TaskError, Telemetry, TryContext};
use tokio::sync::Mutex;

/// The connection used by tasks that name none, when `sluice.toml` declares it.
pub const DEFAULT_CONNECTION: &str = "default";

/// How long a connection's failed credential lookup answers for it before the chain is asked
/// again: long enough that a burst of tries does not hammer the chain (or STS), short enough
/// that credentials that appear are soon used.
pub const RETRY_AFTER: Duration = Duration::from_secs(30);

/// The longest a try waits for a connection's configuration and credentials. The default chain
/// gives up on its own (measured: at once with `AWS_EC2_METADATA_DISABLED=true`, about 1 s when
/// the instance metadata endpoint never answers, 3 s more for the region when none is set);
/// this bounds whatever else could hang, such as a slow STS.
pub const RESOLVE_LIMIT: Duration = Duration::from_secs(5);

/// Where the default credential chain looks, in its order.
const CHAIN: &str =
    "environment, shared config and credentials files, SSO, web identity, container and instance metadata";

pub struct Clients {
    connections: BTreeMap<String, Connection>,
    /// Replaces the default chain as every connection's credentials (a role is still assumed
    /// with them); `None` in the scheduler.
    credentials: Option<SharedCredentialsProvider>,
    slots: StdMutex<HashMap<Option<String>, Arc<Mutex<Slot>>>>,
    /// Every client built here counts its requests on it ([`crate::telemetry`]).
    telemetry: Arc<Telemetry>,
}

/// What is known of one connection. Its lock is held while it is resolved, so that the tries
/// that ask at the same time wait for one lookup instead of each making their own.
#[derive(Default)]
enum Slot {
    #[default]
    Unknown,
    /// Credentials resolved, good until `until` (`None`: they do not expire).
    Ready { config: Box<SdkConfig>, until: Option<SystemTime> },
    /// The lookup failed (or AWS rejected what it found) at `at`.
    Failed { error: TaskError, at: Instant },
}

impl Clients {
    pub fn new(connections: BTreeMap<String, Connection>) -> Clients {
        Clients {
            connections,
            credentials: None,
            slots: StdMutex::new(HashMap::new()),
            telemetry: Arc::new(Telemetry::new(crate::telemetry::FAMILY)),
        }
    }

    /// What the clients' requests and the operators' work have counted so far.
    pub fn telemetry(&self) -> &Arc<Telemetry> {
        &self.telemetry
    }

    /// Clients whose connections take their credentials from `provider` instead of the default
    /// chain (a connection's `role_arn` is still assumed with them): for tests and embedders
    /// that must not read the process environment.
    pub fn with_credentials(connections: BTreeMap<String, Connection>, provider: SharedCredentialsProvider) -> Clients {
        Clients { credentials: Some(provider), ..Clients::new(connections) }
    }

    /// The name messages use for a connection: a task that names none uses `default`.
    fn label(name: Option<&str>) -> &str {
        name.unwrap_or(DEFAULT_CONNECTION)
    }

    /// The settings of a connection, and whether `sluice.toml` declares it.
    fn connection(&self, name: Option<&str>) -> Result<(Connection, bool), TaskError> {
        // A task that names no connection uses `[connections.default]` when there is one, as
        // Airflow's operators use `aws_default`; else the plain default chain.
        match name {
            Some(n) => self.connections.get(n).cloned().map(|c| (c, true)).ok_or_else(|| {
                TaskError::fatal(format!("connection `{n}` is not declared in the [connections] of sluice.toml"))
            }),
            None => Ok(match self.connections.get(DEFAULT_CONNECTION) {
                Some(c) => (c.clone(), true),
                None => (Connection::default(), false),
            }),
        }
    }

    fn slot(&self, name: Option<&str>) -> Arc<Mutex<Slot>> {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        slots.entry(name.map(str::to_string)).or_default().clone()
    }

    /// The SDK configuration of a connection (`None`: the default chain), with credentials that
    /// resolved; a connection without credentials fails the try (not retried).
    pub async fn config(&self, name: Option<&str>) -> Result<SdkConfig, TaskError> {
        let (conn, declared) = self.connection(name)?;
        let slot = self.slot(name);
        let mut slot = slot.lock().await;
        let mut built = None;
        match &*slot {
            Slot::Ready { config, until } => {
                if until.is_none_or(|t| t > SystemTime::now()) {
                    return Ok((**config).clone());
                }
                // Expired: the same configuration's provider refreshes them, or says why not.
                built = Some((**config).clone());
            }
            Slot::Failed { error, at } if at.elapsed() < RETRY_AFTER => return Err(error.clone()),
            _ => {}
        }
        let label = Clients::label(name);
        let resolved = tokio::time::timeout(RESOLVE_LIMIT, self.resolve(label, &conn, declared, built)).await;
        let resolved = resolved.unwrap_or_else(|_| {
            Err(TaskError::retryable(format!(
                "no AWS credentials for connection `{label}` within {}s: the credential chain (or STS) did not \
                 answer; off EC2, set AWS_EC2_METADATA_DISABLED=true so that it does not wait for instance metadata",
                RESOLVE_LIMIT.as_secs()
            )))
        });
        match resolved {
            Ok((config, until)) => {
                *slot = Slot::Ready { config: Box::new(config.clone()), until };
                Ok(config)
            }
            Err(error) => {
                *slot = Slot::Failed { error: error.clone(), at: Instant::now() };
                Err(error)
            }
        }
    }

    /// Builds the configuration (unless given) and resolves its credentials once.
    async fn resolve(
        &self,
        label: &str,
        conn: &Connection,
        declared: bool,
        built: Option<SdkConfig>,
    ) -> Result<(SdkConfig, Option<SystemTime>), TaskError> {
        let config = match built {
            Some(c) => c,
            None => self.build(conn).await,
        };
        if config.region().is_none() {
            return Err(TaskError::fatal(format!(
                "no AWS region for connection `{label}`: set AWS_REGION (or a region in the AWS profile), or {}",
                section(label, declared, "a region")
            )));
        }
        let Some(provider) = config.credentials_provider() else {
            return Ok((config, None));
        };
        match provider.provide_credentials().await {
            Ok(credentials) => Ok((config, credentials.expiry())),
            Err(e) => Err(missing(label, conn, declared, &e)),
        }
    }

    async fn build(&self, conn: &Connection) -> SdkConfig {
        let mut loader = aws_config::defaults(BehaviorVersion::latest());
        if let Some(r) = &conn.region {
            loader = loader.region(Region::new(r.clone()));
        }
        if let Some(p) = &conn.profile {
            loader = loader.profile_name(p);
        }
        if let Some(u) = &conn.endpoint_url {
            loader = loader.endpoint_url(u);
        }
        if let Some(c) = &self.credentials {
            loader = loader.credentials_provider(c.clone());
        }
        let mut config = loader.load().await;
        if let Some(role) = &conn.role_arn {
            let provider = aws_config::sts::AssumeRoleProvider::builder(role)
                .session_name("sluice")
                .configure(&config)
                .build()
                .await;
            config = config.into_builder().credentials_provider(SharedCredentialsProvider::new(provider)).build();
        }
        config
    }

    /// AWS rejected the credentials a connection resolved to (`error` says so): the tries that
    /// ask within [`RETRY_AFTER`] fail with the same error, and the lookup then starts afresh.
    pub async fn reject(&self, name: Option<&str>, error: TaskError) {
        *self.slot(name).lock().await = Slot::Failed { error, at: Instant::now() };
    }

    pub async fn emr(&self, name: Option<&str>) -> Result<aws_sdk_emr::Client, TaskError> {
        let config = aws_sdk_emr::config::Builder::from(&self.config(name).await?).interceptor(self.counting("emr"));
        Ok(aws_sdk_emr::Client::from_conf(config.build()))
    }

    pub async fn emr_serverless(&self, name: Option<&str>) -> Result<aws_sdk_emrserverless::Client, TaskError> {
        let config = aws_sdk_emrserverless::config::Builder::from(&self.config(name).await?)
            .interceptor(self.counting("emr_serverless"));
        Ok(aws_sdk_emrserverless::Client::from_conf(config.build()))
    }

    pub async fn glue(&self, name: Option<&str>) -> Result<aws_sdk_glue::Client, TaskError> {
        let config = aws_sdk_glue::config::Builder::from(&self.config(name).await?).interceptor(self.counting("glue"));
        Ok(aws_sdk_glue::Client::from_conf(config.build()))
    }

    pub async fn athena(&self, name: Option<&str>) -> Result<aws_sdk_athena::Client, TaskError> {
        let config =
            aws_sdk_athena::config::Builder::from(&self.config(name).await?).interceptor(self.counting("athena"));
        Ok(aws_sdk_athena::Client::from_conf(config.build()))
    }

    pub async fn lambda(&self, name: Option<&str>) -> Result<aws_sdk_lambda::Client, TaskError> {
        let config =
            aws_sdk_lambda::config::Builder::from(&self.config(name).await?).interceptor(self.counting("lambda"));
        Ok(aws_sdk_lambda::Client::from_conf(config.build()))
    }

    /// The region a connection's requests go to, when its configuration resolves.
    pub async fn region(&self, name: Option<&str>) -> Option<String> {
        self.config(name).await.ok().and_then(|c| c.region().map(|r| r.to_string()))
    }

    /// S3, path-style when an endpoint URL is set (emulators and VPC endpoints need it).
    pub async fn s3(&self, name: Option<&str>) -> Result<aws_sdk_s3::Client, TaskError> {
        let config = self.config(name).await?;
        let s3 = aws_sdk_s3::config::Builder::from(&config)
            .force_path_style(config.endpoint_url().is_some())
            .interceptor(self.counting("s3"))
            .build();
        Ok(aws_sdk_s3::Client::from_conf(s3))
    }

    fn counting(&self, service: &'static str) -> crate::telemetry::Counting {
        crate::telemetry::Counting::new(&self.telemetry, service)
    }
}

/// "declare [connections.default] with a region in sluice.toml", or "give [connections.x] a
/// region in sluice.toml" when it is declared.
fn section(label: &str, declared: bool, what: &str) -> String {
    if declared {
        format!("give [connections.{label}] {what} in sluice.toml")
    } else {
        format!("declare [connections.{label}] with {what} in sluice.toml")
    }
}

/// The profile a connection reads: its own, else `AWS_PROFILE`.
fn profile_of(conn: &Connection) -> Option<(String, &'static str)> {
    match &conn.profile {
        Some(p) => Some((p.clone(), "its `profile`")),
        None => std::env::var("AWS_PROFILE").ok().filter(|p| !p.is_empty()).map(|p| (p, "AWS_PROFILE")),
    }
}

/// The innermost reason in an error's source chain, on one line and short: what went wrong
/// without the SDK's full report. The chain's own report of what it tried (several lines, one
/// per provider) is cut to its first line: the messages here say where the chain looks.
pub(crate) fn short_reason(e: &(dyn std::error::Error + 'static)) -> String {
    let mut last = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        // An AWS error under it (STS refusing an AssumeRole): its code and message.
        if let Some(code) = s.downcast_ref::<ErrorMetadata>().and_then(|m| m.code()) {
            let message = s.downcast_ref::<ErrorMetadata>().and_then(|m| m.message()).unwrap_or_default();
            return one_line(format!("{code}: {message}").trim_end_matches('.'), 200);
        }
        let text = s.to_string();
        if !text.trim().is_empty() {
            last = text;
        }
        cur = s.source();
    }
    let first = last.lines().next().unwrap_or_default().trim().trim_end_matches(" Attempted:");
    one_line(first.trim_end_matches('.'), 200)
}

/// Whether a credential lookup failed because some provider under it found nothing (e.g. the
/// credentials a role is to be assumed with).
fn found_nothing_under(e: &CredentialsError) -> bool {
    let mut cur = std::error::Error::source(e);
    while let Some(err) = cur {
        if let Some(CredentialsError::CredentialsNotLoaded(_)) = err.downcast_ref::<CredentialsError>() {
            return true;
        }
        cur = err.source();
    }
    false
}

/// `text` on one line, at most `max` characters.
pub(crate) fn one_line(text: &str, max: usize) -> String {
    let flat = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match flat.char_indices().nth(max) {
        Some((i, _)) => format!("{}...", &flat[..i]),
        None => flat,
    }
}

/// The reason the chain gives for its `Profile` attempt, when it names one ("profile `x` was
/// not defined: ..."); only to show it, what failed is known from the error's type.
fn profile_reason(e: &CredentialsError) -> Option<String> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        let text = err.to_string();
        if let Some(line) = text.lines().find_map(|l| l.trim().strip_prefix("Profile: ")) {
            let reason = line.trim_start_matches("the credential provider was not enabled").trim_start_matches(": ");
            return (!reason.is_empty()).then(|| one_line(reason, 200));
        }
        cur = err.source();
    }
    None
}

/// The one line for a connection whose credentials did not resolve. Fatal, except when a
/// provider timed out (that may pass).
pub(crate) fn missing(label: &str, conn: &Connection, declared: bool, e: &CredentialsError) -> TaskError {
    if let CredentialsError::ProviderTimedOut(_) = e {
        return TaskError::retryable(format!(
            "no AWS credentials for connection `{label}` yet: {} (tried again on the next try)",
            short_reason(e)
        ));
    }
    if let Some(role) = &conn.role_arn {
        let reason = if matches!(e, CredentialsError::CredentialsNotLoaded(_)) || found_nothing_under(e) {
            format!("no credentials to assume it with (looked in: {CHAIN})")
        } else {
            short_reason(e)
        };
        return TaskError::fatal(format!(
            "cannot assume role {role} for connection `{label}`: {reason}: check the credentials it is assumed \
             with (AWS_PROFILE, AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or the connection's `profile`) and that \
             the role's trust policy lets them call sts:AssumeRole"
        ));
    }
    if let CredentialsError::InvalidConfiguration(_) = e {
        return TaskError::fatal(format!(
            "the AWS configuration of connection `{label}` is invalid: {}: fix the shared config files \
             (~/.aws/config, ~/.aws/credentials)",
            short_reason(e)
        ));
    }
    if let Some((profile, from)) = profile_of(conn) {
        let reason = match e {
            CredentialsError::CredentialsNotLoaded(_) => {
                profile_reason(e).unwrap_or_else(|| "it is not in the shared config and credentials files".into())
            }
            other => short_reason(other),
        };
        return TaskError::fatal(format!(
            "no AWS credentials for connection `{label}` from profile `{profile}` ({from}): {reason}: define it, \
             with credentials, in ~/.aws/config or ~/.aws/credentials (or AWS_CONFIG_FILE, \
             AWS_SHARED_CREDENTIALS_FILE), or name another profile"
        ));
    }
    let stopped = match e {
        CredentialsError::CredentialsNotLoaded(_) => String::new(),
        other => format!("; stopped at: {}", short_reason(other)),
    };
    TaskError::fatal(format!(
        "no AWS credentials for connection `{label}`: set AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, \
         or {} (looked in: {CHAIN}{stopped})",
        section(label, declared, "a profile or role_arn")
    ))
}

tokio::task_local! {
    static SCOPE: Arc<Scope>;
}

/// The connection the calls of a future use, for the messages of [`crate::wait::aws_error`].
struct Scope {
    clients: Arc<Clients>,
    name: Option<String>,
    /// Set when AWS rejected the connection's credentials.
    rejected: StdMutex<Option<TaskError>>,
}

/// Runs `f` (an operator's try, or its cancel) as a user of connection `name`: credential
/// errors it meets name that connection, and when AWS rejects its credentials the connection
/// is looked up afresh (after [`RETRY_AFTER`]) instead of being reused as it is.
pub async fn scoped<F: Future>(clients: &Arc<Clients>, name: Option<&str>, f: F) -> F::Output {
    let scope =
        Arc::new(Scope { clients: clients.clone(), name: name.map(str::to_string), rejected: StdMutex::new(None) });
    let out = SCOPE.scope(scope.clone(), f).await;
    let rejected = scope.rejected.lock().unwrap_or_else(|e| e.into_inner()).take();
    if let Some(error) = rejected {
        clients.reject(name, error).await;
    }
    out
}

/// Records the connection's region as the try's external id `region` (for the web UI's
/// console links), before the operator records anything: once per try, and not when the
/// configuration does not resolve (the operator's own first call then fails with the reason).
pub async fn record_region(clients: &Clients, name: Option<&str>, ctx: &TryContext) -> Result<(), TaskError> {
    if ctx.resumed("region").is_some() {
        return Ok(());
    }
    match clients.region(name).await {
        Some(region) => ctx.record("region", serde_json::Value::String(region)).await,
        None => Ok(()),
    }
}

/// How a request failed for its credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// None could be resolved (the chain found nothing, a profile is missing, an assumed role
    /// was refused).
    Missing,
    /// AWS does not accept them (an unknown key, a bad signature).
    Rejected,
    /// They have expired.
    Expired,
    /// They are valid but may not do this.
    Denied,
    /// S3 answered a HEAD request 403 with no code: rejected or denied, it does not say.
    Forbidden,
}

/// The one line for a request refused for its credentials, naming the connection in scope.
pub(crate) fn refused(call: &str, refusal: Refusal, detail: &str, source: Option<&CredentialsError>) -> TaskError {
    let scope = SCOPE.try_with(|s| s.clone()).ok();
    let name = scope.as_ref().and_then(|s| s.name.clone());
    let label = Clients::label(name.as_deref());
    let conn = scope.as_ref().and_then(|s| s.clients.connection(name.as_deref()).ok());
    let declared = conn.as_ref().is_some_and(|(_, d)| *d);
    let error = match (refusal, source, &conn) {
        (Refusal::Missing, Some(e), Some((c, declared))) => missing(label, c, *declared, e),
        (Refusal::Missing, _, _) => TaskError::fatal(format!(
            "no AWS credentials for connection `{label}` ({call}): {detail}: set AWS_PROFILE or \
             AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or {}",
            section(label, declared, "a profile or role_arn")
        )),
        (Refusal::Rejected, ..) => TaskError::fatal(format!(
            "AWS rejected the credentials of connection `{label}` ({call}: {detail}): set valid ones \
             (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or the keys of the profile in use), or fix the profile \
             or role_arn of [connections.{label}] in sluice.toml"
        )),
        (Refusal::Expired, ..) => TaskError::fatal(format!(
            "the AWS credentials of connection `{label}` have expired ({call}: {detail}): refresh them (e.g. \
             `aws sso login`, new session keys), or use a profile or role_arn that renews them"
        )),
        (Refusal::Denied, ..) => TaskError::fatal(format!(
            "AWS denied {call} to the credentials of connection `{label}` ({detail}): grant that permission to \
             them, or use a connection whose credentials have it"
        )),
        (Refusal::Forbidden, ..) => TaskError::fatal(format!(
            "AWS answered {call} with 403 Forbidden for connection `{label}` (S3 gives no reason for HEAD \
             requests): its credentials are invalid, or may not read the object (s3:GetObject) or list its \
             bucket (s3:ListBucket)"
        )),
    };
    if matches!(refusal, Refusal::Missing | Refusal::Rejected | Refusal::Expired) {
        if let Some(s) = &scope {
            *s.rejected.lock().unwrap_or_else(|e| e.into_inner()) = Some(error.clone());
        }
    }
    error
}
