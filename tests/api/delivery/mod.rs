//! Delivery end to end: a real receiver on loopback, signatures checked the way receivers do.
//! The helpers every delivery test shares live here; the tests, by topic, in the modules.

mod alerts;
mod fanout;
mod health;
mod labels;
mod limits;
mod listen;
mod log;
mod pause;
mod pressure;
mod pull;
mod recover;
mod retries;
mod signing;
mod sync_test;

pub(crate) use std::collections::HashSet;
pub(crate) use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use reqwest::Method;
use serde_json::{Value, json};
use sha2::Sha256;

use crate::backend_tests;
use crate::common::receiver::{Received, Receiver, Reply, eventually};
use crate::common::{Backend, TestApp, assert_error, keys, status_and_json};

const WAIT: Duration = Duration::from_secs(15);

async fn spawn(
    backend: Backend,
    configure: impl FnOnce(&mut hookrelay::config::ServeConfig),
) -> TestApp {
    TestApp::spawn_with(backend, |c| {
        c.allow_http = true;
        c.allow_private_targets = true;
        configure(c);
    })
    .await
}

/// The DevTune guide's recipe: hex HMAC-SHA256 of the raw body, keyed with the secret's bytes.
fn devtune_signature(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// The Standard Webhooks recipe: the key is the base64 part of `whsec_…`, the content
/// `id.timestamp.body`, the signature list space-separated `v1,<base64>` entries.
fn standard_webhooks_verifies(whsec: &str, request: &Received) -> bool {
    let key = STANDARD
        .decode(whsec.strip_prefix("whsec_").unwrap())
        .unwrap();
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
    mac.update(request.header("webhook-id").as_bytes());
    mac.update(b".");
    mac.update(request.header("webhook-timestamp").as_bytes());
    mac.update(b".");
    mac.update(&request.body);
    let expected = format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()));
    request
        .header("webhook-signature")
        .split(' ')
        .any(|s| s == expected)
}

fn whsec(secret: &str) -> String {
    format!("whsec_{}", STANDARD.encode(secret.as_bytes()))
}

impl TestApp {
    async fn publish(&self, event: &str, data: Value) -> Value {
        let response = self
            .post(
                &self.project_path("/events"),
                json!({ "event": event, "data": data }),
            )
            .await;
        let (status, body) = status_and_json(response).await;
        assert_eq!(status, 202, "{body}");
        body["data"].clone()
    }

    async fn delivery(&self, id: &Value) -> Value {
        let path = self.project_path(&format!("/deliveries/{}", id.as_str().unwrap()));
        let (status, body) = status_and_json(self.get(&path).await).await;
        assert_eq!(status, 200, "{body}");
        body["data"].clone()
    }

    async fn delivery_when(&self, id: &Value, status: &str) -> Value {
        eventually(WAIT, &format!("delivery status {status}"), || async {
            let delivery = self.delivery(id).await;
            (delivery["status"] == status).then_some(delivery)
        })
        .await
    }

    /// Creates a pull webhook and returns the 201 body's `data`.
    async fn create_pull_webhook(&self, events: &[&str]) -> Value {
        let response = self
            .post(
                &self.project_path("/webhooks"),
                json!({ "mode": "pull", "events": events }),
            )
            .await;
        let (status, body) = status_and_json(response).await;
        assert_eq!(status, 201, "{body}");
        body["data"].clone()
    }

    async fn webhook_details(&self, id: &Value) -> Value {
        let path = self.project_path(&format!("/webhooks/{}", id.as_str().unwrap()));
        status_and_json(self.get(&path).await).await.1["data"].clone()
    }
}

/// A webhook's delivery log, newest first (its first page).
async fn delivery_log(app: &TestApp, webhook: &Value) -> Vec<Value> {
    let path = app.project_path(&format!(
        "/webhooks/{}/deliveries",
        webhook["id"].as_str().unwrap()
    ));
    let (status, body) = status_and_json(app.get(&path).await).await;
    assert_eq!(status, 200, "{body}");
    body["data"]["deliveries"].as_array().unwrap().clone()
}
