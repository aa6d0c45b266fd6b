//! Calls to the hookrelay API under test: admin provisioning, webhooks and events.

use std::sync::Arc;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::BenchResult;
use crate::server::Server;

/// The one event type the bench publishes and subscribes to.
const EVENT_TYPE: &str = "action.created";

/// A handle on one running server's API.
#[derive(Clone)]
pub struct Api {
    http: reqwest::Client,
    base: Arc<str>,
    admin_token: Arc<str>,
}

/// A provisioned project and an API key with every scope.
#[derive(Clone)]
pub struct Project {
    pub id: String,
    key: String,
}

pub struct CreatedWebhook {
    pub id: String,
    pub secret: String,
}

fn text(value: &Value, pointer: &str) -> BenchResult<String> {
    value
        .pointer(pointer)
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| format!("the response has no {pointer}: {value}").into())
}

impl Api {
    pub fn new(http: reqwest::Client, server: &Server) -> Self {
        Self {
            http,
            base: server.base_url.as_str().into(),
            admin_token: server.admin_token.as_str().into(),
        }
    }

    /// Sends one request and checks the status; returns the JSON body (`null` if empty).
    async fn call(
        &self,
        method: Method,
        path: &str,
        token: &str,
        body: Option<Value>,
        expected: StatusCode,
    ) -> BenchResult<Value> {
        let mut request = self
            .http
            .request(method.clone(), format!("{}{path}", self.base))
            .bearer_auth(token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await?;
        let status = response.status();
        let bytes = response.bytes().await?;
        if status != expected {
            let body = String::from_utf8_lossy(&bytes);
            return Err(format!("{method} {path}: {status} {body}").into());
        }
        if bytes.is_empty() {
            return Ok(Value::Null);
        }
        Ok(serde_json::from_slice(&bytes)?)
    }

    /// One account holding `count` projects, each with a key of every scope.
    pub async fn provision(&self, count: usize) -> BenchResult<Vec<Project>> {
        let token = self.admin_token.clone();
        let post = |path: String, body: Value| {
            let token = token.clone();
            async move {
                self.call(Method::POST, &path, &token, Some(body), StatusCode::CREATED)
                    .await
            }
        };
        let account = post("/admin/v1/accounts".into(), json!({"name": "bench"})).await?;
        let account_id = text(&account, "/data/id")?;
        let mut projects = Vec::with_capacity(count);
        for n in 0..count {
            let body = json!({"accountId": account_id, "name": format!("bench {n}")});
            let project = post("/admin/v1/projects".into(), body).await?;
            let id = text(&project, "/data/id")?;
            let key = post(format!("/admin/v1/projects/{id}/keys"), json!({})).await?;
            let key = text(&key, "/data/key")?;
            projects.push(Project { id, key });
        }
        Ok(projects)
    }

    pub async fn create_webhook(
        &self,
        project: &Project,
        url: &str,
    ) -> BenchResult<CreatedWebhook> {
        let body = json!({"url": url, "events": [EVENT_TYPE]});
        let path = format!("/api/v2/projects/{}/webhooks", project.id);
        let created = self
            .call(
                Method::POST,
                &path,
                &project.key,
                Some(body),
                StatusCode::CREATED,
            )
            .await?;
        Ok(CreatedWebhook {
            id: text(&created, "/data/id")?,
            secret: text(&created, "/data/secret")?,
        })
    }

    pub async fn list_webhooks(&self, project: &Project) -> BenchResult<()> {
        let path = format!("/api/v2/projects/{}/webhooks", project.id);
        self.call(Method::GET, &path, &project.key, None, StatusCode::OK)
            .await
            .map(drop)
    }

    /// Rotates a webhook's secret; returns the new one.
    pub async fn rotate_secret(&self, project: &Project, webhook: &str) -> BenchResult<String> {
        let path = format!(
            "/api/v2/projects/{}/webhooks/{webhook}/rotate-secret",
            project.id
        );
        let rotated = self
            .call(Method::POST, &path, &project.key, None, StatusCode::OK)
            .await?;
        text(&rotated, "/data/secret")
    }

    pub async fn delete_webhook(&self, project: &Project, webhook: &str) -> BenchResult<()> {
        let path = format!("/api/v2/projects/{}/webhooks/{webhook}", project.id);
        self.call(Method::DELETE, &path, &project.key, None, StatusCode::OK)
            .await
            .map(drop)
    }

    /// Publishes one event tagged with `run` and `seq`; `Ok` only on 202.
    pub async fn publish(&self, project: &Project, run: u32, seq: u64) -> Result<(), String> {
        // Written by hand: this runs thousands of times a second beside the server.
        let body = format!(r#"{{"event":"{EVENT_TYPE}","data":{{"run":{run},"seq":{seq}}}}}"#);
        let response = self
            .http
            .post(format!(
                "{}/api/v2/projects/{}/events",
                self.base, project.id
            ))
            .bearer_auth(&project.key)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .map_err(|e| format!("request failed: {e}"))?;
        let status = response.status();
        // Reading the body to its end returns the connection to the pool.
        let _ = response.bytes().await;
        if status == StatusCode::ACCEPTED {
            Ok(())
        } else {
            Err(format!("answered {status}"))
        }
    }
}
