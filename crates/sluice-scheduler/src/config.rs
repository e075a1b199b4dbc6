//! `sluice.toml`: where the database, the DAGs and the logs are, and how much runs at once.
//! Every setting has a default, so no config file is needed; the CLI overrides each one with
//! a flag or an environment variable.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use sluice_dag::{AlertRule, ChannelKind, ChannelRef, Duration};
pub use sluice_operator::Connection;

/// The scheduler's settings.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Database URL: `sqlite:PATH` or a file path. Default `sqlite:sluice.db`.
    pub db: String,
    /// The DAG folder. Default `dags`.
    pub dags: PathBuf,
    /// Where task logs go: `<logs>/<dag>/<run>/<task>/<try>.log`. Default `logs`.
    pub logs: PathBuf,
    /// Most task tries running at once, over all DAGs. Default 32.
    pub parallelism: usize,
    /// On SIGTERM/SIGINT, how long running local processes may take to finish. Default 30s.
    pub grace_period: Duration,
    /// On a database several schedulers share (PostgreSQL): how long a scheduler's claim on
    /// its tries lasts without renewal, in the database's time. It renews every quarter of it
    /// and stops its own work after three quarters without a renewal; past it, another
    /// scheduler takes its tries over. Default 10s.
    pub lease: Duration,
    /// Named pools and their slot counts; a task with `pool = "x"` takes one slot of `x`.
    pub pools: BTreeMap<String, usize>,
    /// Named AWS connections; a DAG or task with `connection = "x"` uses `[connections.x]`.
    /// A task that names none uses `[connections.default]` if declared, else the default
    /// credential chain and region.
    pub connections: BTreeMap<String, Connection>,
    /// Caps every operator's `poke_interval` (e.g. "1s" against a local emulator, where the
    /// DAGs' production intervals would only slow things down). Default: no cap.
    pub max_poke_interval: Option<Duration>,
    /// The HTTP API the daemon (and `dagctl server`) serves: `[api]`.
    pub api: ApiSettings,
    /// `[[alerts]]`: the rules of every DAG that does not set `default_alerts = false`.
    pub alerts: Vec<AlertRule>,
    /// `[alerting]`: how alerts go out.
    pub alerting: AlertingSettings,
    /// `[channels.<kind>.<name>]`: where alerts can go. The binary's channels read each
    /// table's keys (see `sluice-alert`); here only the names count, for the rules' checks.
    pub channels: BTreeMap<String, BTreeMap<String, toml::Table>>,
}

/// `[alerting]` of `sluice.toml`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertingSettings {
    /// Where the API is reached by the people alerted (`https://sluice.example.com`): alerts
    /// link to the run under it. Default: no link.
    pub base_url: Option<String>,
}

/// `[api]` of `sluice.toml`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiSettings {
    /// Whether `dagctl scheduler` serves the API. Default true.
    pub enabled: bool,
    /// Where it listens. Default `127.0.0.1:8080`; an address off loopback needs a token to
    /// exist (`dagctl tokens create`).
    pub bind: String,
    /// `/readyz` says the scheduler is stalled when its loop has not turned for this long.
    /// Default 30s.
    pub stall_after: Duration,
    /// A PEM certificate (chain) and its key, to serve HTTPS instead of HTTP.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
}

impl Default for ApiSettings {
    fn default() -> Self {
        ApiSettings {
            enabled: true,
            bind: "127.0.0.1:8080".into(),
            stall_after: Duration::from_secs(30),
            tls_cert: None,
            tls_key: None,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            db: "sqlite:sluice.db".into(),
            dags: PathBuf::from("dags"),
            logs: PathBuf::from("logs"),
            parallelism: 32,
            grace_period: Duration::from_secs(30),
            lease: Duration::from_secs(10),
            pools: BTreeMap::new(),
            connections: BTreeMap::new(),
            max_poke_interval: None,
            api: ApiSettings::default(),
            alerts: Vec::new(),
            alerting: AlertingSettings::default(),
            channels: BTreeMap::new(),
        }
    }
}

/// A config file that could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

impl Config {
    /// The channels `[channels]` declares, as alert rules name them (`slack:data-oncall`).
    pub fn declared_channels(&self) -> Vec<ChannelRef> {
        let mut out = Vec::new();
        for (kind, names) in &self.channels {
            let Ok(kind) = kind.parse::<ChannelKind>() else { continue };
            out.extend(names.keys().map(|n| ChannelRef::new(kind, n.clone())));
        }
        out
    }

    /// Reads a config file; relative paths in it are taken from the file's folder.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let src =
            std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_path_buf(), source })?;
        Config::parse(path, &src)
    }

    pub fn parse(path: &Path, src: &str) -> Result<Config, ConfigError> {
        let mut c: Config = toml::from_str(src).map_err(|e| {
            let line = e.span().map(|s| src[..s.start].matches('\n').count() + 1);
            let at = line.map(|l| format!("line {l}: ")).unwrap_or_default();
            ConfigError::Invalid { path: path.to_path_buf(), message: format!("{at}{}", e.message()) }
        })?;
        if c.parallelism == 0 {
            return Err(ConfigError::Invalid {
                path: path.to_path_buf(),
                message: "parallelism must be at least 1".into(),
            });
        }
        if c.lease.as_std() < std::time::Duration::from_secs(1) {
            return Err(ConfigError::Invalid {
                path: path.to_path_buf(),
                message: format!("lease must be at least 1s (it is {})", c.lease),
            });
        }
        if let Some((name, _)) = c.pools.iter().find(|(_, n)| **n == 0) {
            return Err(ConfigError::Invalid {
                path: path.to_path_buf(),
                message: format!("pool `{name}` must have at least 1 slot"),
            });
        }
        let invalid = |message: String| ConfigError::Invalid { path: path.to_path_buf(), message };
        for (kind, names) in &c.channels {
            kind.parse::<ChannelKind>().map_err(|e| invalid(format!("[channels.{kind}]: {e}")))?;
            for name in names.keys() {
                sluice_dag::alerts::check_channel_name(name)
                    .map_err(|e| invalid(format!("[channels.{kind}.{name}]: {e}")))?;
            }
        }
        let declared = c.declared_channels();
        for (k, rule) in c.alerts.iter().enumerate() {
            if let Some(e) = rule.to.iter().find_map(|ch| sluice_dag::alerts::undeclared_channel(ch, &declared)) {
                return Err(invalid(format!("[[alerts]] number {}: {e}", k + 1)));
            }
        }
        if c.api.tls_cert.is_some() != c.api.tls_key.is_some() {
            return Err(ConfigError::Invalid {
                path: path.to_path_buf(),
                message: "[api] tls_cert and tls_key go together: give both or neither".into(),
            });
        }
        let base = path.parent().unwrap_or(Path::new("."));
        let tls = [c.api.tls_cert.as_mut(), c.api.tls_key.as_mut()].into_iter().flatten();
        for p in [&mut c.dags, &mut c.logs].into_iter().chain(tls) {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
        if let Some(file) = c.db.strip_prefix("sqlite:").filter(|f| !f.starts_with("//") && !f.starts_with(':')) {
            if Path::new(file).is_relative() {
                c.db = format!("sqlite:{}", base.join(file).display());
            }
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_api_section_has_defaults_and_its_tls_files_go_together() {
        let c = Config::parse(Path::new("/srv/sluice.toml"), "").unwrap();
        assert_eq!((c.api.enabled, c.api.bind.as_str()), (true, "127.0.0.1:8080"));
        assert_eq!(c.api.stall_after, Duration::from_secs(30));
        let c = Config::parse(
            Path::new("/srv/sluice.toml"),
            "[api]\nbind = \"0.0.0.0:9443\"\ntls_cert = \"tls/cert.pem\"\ntls_key = \"/etc/key.pem\"\nstall_after = \"1m\"\n",
        )
        .unwrap();
        assert_eq!(c.api.tls_cert, Some(PathBuf::from("/srv/tls/cert.pem")));
        assert_eq!(c.api.tls_key, Some(PathBuf::from("/etc/key.pem")));
        assert_eq!(c.api.stall_after, Duration::from_secs(60));
        let e = Config::parse(Path::new("/srv/sluice.toml"), "[api]\ntls_cert = \"c.pem\"\n").unwrap_err();
        assert!(e.to_string().contains("tls_cert and tls_key go together"), "{e}");
        let e = Config::parse(Path::new("/srv/sluice.toml"), "[api]\nport = 1\n").unwrap_err();
        assert!(e.to_string().contains("unknown field `port`"), "{e}");
    }

    #[test]
    fn parses_a_full_file_and_resolves_paths() {
        let c = Config::parse(
            Path::new("/srv/sluice/sluice.toml"),
            "db = \"sqlite:state/sluice.db\"\ndags = \"pipelines\"\nparallelism = 4\ngrace_period = \"5s\"\n[pools]\nemr = 2\n",
        )
        .unwrap();
        assert_eq!(c.db, "sqlite:/srv/sluice/state/sluice.db");
        assert_eq!(c.dags, PathBuf::from("/srv/sluice/pipelines"));
        assert_eq!(c.logs, PathBuf::from("/srv/sluice/logs"));
        assert_eq!(c.parallelism, 4);
        assert_eq!(c.pools["emr"], 2);
    }

    #[test]
    fn a_misspelt_key_names_its_line() {
        let e = Config::parse(Path::new("sluice.toml"), "parallelism = 4\npool = {}\n").unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("line 2") && msg.contains("unknown field `pool`"), "{msg}");
    }

    #[test]
    fn the_shipped_example_parses_with_its_connections() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/sluice.toml");
        let c = Config::load(&path).unwrap();
        assert_eq!(c.connections["default"].region.as_deref(), Some("eu-west-2"));
        let a = &c.connections["analytics"];
        assert_eq!(a.profile.as_deref(), Some("analytics"));
        assert!(a.role_arn.as_deref().unwrap().ends_with(":role/sluice-runner"));
        assert_eq!(c.pools["emr"], 2);
        let e = Config::parse(
            Path::new("s.toml"),
            "[connections.x]
regoin = \"eu-west-1\"\n",
        )
        .unwrap_err();
        assert!(e.to_string().contains("unknown field `regoin`"), "{e}");
    }

    #[test]
    fn alert_defaults_name_declared_channels() {
        let text = "[[alerts]]\non = [\"failure\"]\nto = [\"slack:oncall\"]\n\n[alerting]\nbase_url = \"https://sluice.example.com\"\n\n[channels.slack.oncall]\nwebhook_url_env = \"SLACK_URL\"\n";
        let c = Config::parse(Path::new("s.toml"), text).unwrap();
        assert_eq!(c.alerts.len(), 1);
        assert_eq!(c.alerts[0].to[0].to_string(), "slack:oncall");
        assert_eq!(c.declared_channels(), [ChannelRef::new(ChannelKind::Slack, "oncall")]);
        assert_eq!(c.alerting.base_url.as_deref(), Some("https://sluice.example.com"));

        let e = Config::parse(
            Path::new("s.toml"),
            "[[alerts]]\non = [\"failure\"]\nto = [\"slack:oncal\"]\n[channels.slack.oncall]\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("[[alerts]] number 1") && e.contains("slack:oncal") && e.contains("did you mean `slack:oncall`"),
            "{e}"
        );
        let e = Config::parse(Path::new("s.toml"), "[channels.teams.x]\n").unwrap_err().to_string();
        assert!(e.contains("[channels.teams]"), "{e}");
        let e = Config::parse(Path::new("s.toml"), "[[alerts]]\non = [\"failur\"]\nto = [\"slack:x\"]\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("line") && e.contains("failure"), "{e}");
    }

    #[test]
    fn zero_slots_are_rejected() {
        assert!(Config::parse(Path::new("s.toml"), "[pools]\nx = 0\n").is_err());
        assert!(Config::parse(Path::new("s.toml"), "parallelism = 0\n").is_err());
    }
}
