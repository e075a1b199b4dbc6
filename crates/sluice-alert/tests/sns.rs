//! The SNS channel on the moto emulator (the support code of sluice-aws's tests): a message
//! published to a topic through a `[connections]` entry, read back from moto's model data.

#[path = "../../sluice-aws/tests/support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::sync::Arc;

use aws_credential_types::provider::SharedCredentialsProvider;
use aws_credential_types::Credentials;
use chrono::{TimeZone, Utc};
use serde_json::Value;
use sluice_alert::{AlertMessage, ChannelRef, ChannelsConfig, Notifier};
use sluice_aws::Clients;
use sluice_operator::Connection;
use support::Moto;

fn clients(moto: &Moto) -> (BTreeMap<String, Connection>, Arc<Clients>) {
    let connection = Connection {
        endpoint_url: Some(moto.endpoint.clone()),
        region: Some(support::REGION.into()),
        ..Default::default()
    };
    let connections = BTreeMap::from([("emulator".to_string(), connection)]);
    let credentials = SharedCredentialsProvider::new(Credentials::new(
        support::ACCESS_KEY_ID,
        support::SECRET_ACCESS_KEY,
        None,
        None,
        "tests",
    ));
    let clients = Arc::new(Clients::with_credentials(connections.clone(), credentials));
    (connections, clients)
}

/// What moto recorded as published to `topic_arn`: (message id, message, subject).
async fn published(moto: &Moto, topic_arn: &str) -> Vec<(String, String, Option<String>)> {
    let data: Value =
        reqwest::get(format!("{}/moto-api/data.json", moto.endpoint)).await.unwrap().json().await.unwrap();
    let topics = data["sns"]["Topic"].as_array().expect("moto's SNS topics");
    let topic = topics.iter().find(|t| t["arn"] == topic_arn).expect("the topic");
    topic["sent_notifications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            (n[0].as_str().unwrap().to_string(), n[1].as_str().unwrap().to_string(), n[2].as_str().map(str::to_string))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_message_is_published_to_the_topic_with_its_subject() {
    let moto = Moto::start();
    let (connections, clients) = clients(&moto);
    let sns = sluice_aws::sns::client(&clients, Some("emulator")).await.unwrap();
    let topic = sns.create_topic().name("pipeline-alerts").send().await.unwrap();
    let arn = topic.topic_arn().unwrap().to_string();

    let config = ChannelsConfig::from_sluice_toml(&format!(
        "[channels.sns.pipeline-alerts]\ntopic_arn = {arn:?}\nconnection = \"emulator\"\n\
         [channels.sns.nowhere]\ntopic_arn = \"arn:aws:sns:us-east-1:123456789012:no-such-topic\"\nconnection = \"emulator\"\n"
    ))
    .unwrap();
    let names: Vec<&str> = connections.keys().map(String::as_str).collect();
    let notifier = Notifier::with_clients(config, &names, clients.clone()).unwrap();

    let mut msg = AlertMessage::new(
        "deadline_missed",
        format!("Run 2026-01-01 of `dashboard` missed its 07:00 deadline {}", "and is still running ".repeat(6)),
        "dashboard",
        Utc.with_ymd_and_hms(2026, 1, 2, 7, 0, 0).unwrap(),
    );
    msg.run_id = Some("scheduled__2026-01-01".into());
    msg.state = Some("running".into());
    let channel: ChannelRef = "sns:pipeline-alerts".parse().unwrap();
    let answer = notifier.send(&channel, &msg).await.unwrap();

    let sent = published(&moto, &arn).await;
    assert_eq!(sent.len(), 1);
    let (id, text, subject) = &sent[0];
    assert_eq!(answer, format!("message id {id}"));
    let subject = subject.as_deref().unwrap();
    assert_eq!(subject.chars().count(), 100, "{subject}");
    assert!(subject.starts_with("Run 2026-01-01 of `dashboard` missed its 07:00 deadline and is still running"));
    assert_eq!(text, &msg.text());
    assert!(text.contains("Run:          scheduled__2026-01-01\nState:        running\n"), "{text}");
    // Counted like every other AWS request.
    assert!(
        clients.telemetry().services().iter().any(|(s, c)| *s == "sns" && c.calls >= 1),
        "SNS requests are counted"
    );

    let e = notifier.send(&"sns:nowhere".parse().unwrap(), &msg).await.unwrap_err();
    assert!(!e.retryable, "{e:?}");
    assert!(e.message.starts_with("sns:nowhere: SNS Publish: NotFound"), "{}", e.message);
}
