//! One SDK configuration per connection, built once and shared by every operator that uses
//! that connection: the default credential chain and region, or `[connections.NAME]` of
//! `sluice.toml` (region, profile, role to assume, endpoint URL). Credentials themselves never
//! pass through Sluice's files or logs.

use std::collections::{BTreeMap, HashMap};

use aws_config::{BehaviorVersion, Region, SdkConfig};
use sluice_scheduler::config::Connection;
use sluice_scheduler::operators::TaskError;
use tokio::sync::Mutex;

/// The connection used by tasks that name none, when `sluice.toml` declares it.
pub const DEFAULT_CONNECTION: &str = "default";

pub struct Clients {
    connections: BTreeMap<String, Connection>,
    configs: Mutex<HashMap<Option<String>, SdkConfig>>,
}

impl Clients {
    pub fn new(connections: BTreeMap<String, Connection>) -> Clients {
        Clients { connections, configs: Mutex::new(HashMap::new()) }
    }

    /// The SDK configuration of a connection (`None`: the default chain).
    pub async fn config(&self, name: Option<&str>) -> Result<SdkConfig, TaskError> {
        let key = name.map(str::to_string);
        let mut configs = self.configs.lock().await;
        if let Some(c) = configs.get(&key) {
            return Ok(c.clone());
        }
        // A task that names no connection uses `[connections.default]` when there is one, as
        // Airflow's operators use `aws_default`; else the plain default chain.
        let conn = match name {
            Some(n) => self.connections.get(n).cloned().ok_or_else(|| {
                TaskError::fatal(format!("connection `{n}` is not declared in the [connections] of sluice.toml"))
            })?,
            None => self.connections.get(DEFAULT_CONNECTION).cloned().unwrap_or_default(),
        };
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
        let mut config = loader.load().await;
        if let Some(role) = &conn.role_arn {
            let provider = aws_config::sts::AssumeRoleProvider::builder(role)
                .session_name("sluice")
                .configure(&config)
                .build()
                .await;
            config = config
                .into_builder()
                .credentials_provider(aws_credential_types::provider::SharedCredentialsProvider::new(provider))
                .build();
        }
        configs.insert(key, config.clone());
        Ok(config)
    }

    pub async fn emr(&self, name: Option<&str>) -> Result<aws_sdk_emr::Client, TaskError> {
        Ok(aws_sdk_emr::Client::new(&self.config(name).await?))
    }

    pub async fn emr_serverless(&self, name: Option<&str>) -> Result<aws_sdk_emrserverless::Client, TaskError> {
        Ok(aws_sdk_emrserverless::Client::new(&self.config(name).await?))
    }

    pub async fn glue(&self, name: Option<&str>) -> Result<aws_sdk_glue::Client, TaskError> {
        Ok(aws_sdk_glue::Client::new(&self.config(name).await?))
    }

    pub async fn athena(&self, name: Option<&str>) -> Result<aws_sdk_athena::Client, TaskError> {
        Ok(aws_sdk_athena::Client::new(&self.config(name).await?))
    }

    /// S3, path-style when an endpoint URL is set (emulators and VPC endpoints need it).
    pub async fn s3(&self, name: Option<&str>) -> Result<aws_sdk_s3::Client, TaskError> {
        let config = self.config(name).await?;
        let s3 = aws_sdk_s3::config::Builder::from(&config).force_path_style(config.endpoint_url().is_some()).build();
        Ok(aws_sdk_s3::Client::from_conf(s3))
    }
}
