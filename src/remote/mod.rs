//! The API client behind `hookrelay listen`, `events send` and `webhooks list`: one HTTP client
//! with the key, the key's project found once, and the API's Error body turned into one line.

mod commands;
mod forward;
mod listen;

use std::time::Duration;

use reqwest::{Method, RequestBuilder};
use serde_json::Value;

use crate::cli::CliError;
use crate::config::ApiArgs;
use crate::report::error_chain;

pub use commands::{list_webhooks, send_event};
pub use listen::listen;

/// Most a call other than a long poll may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// The API as one key sees it: its base URL and the key's project.
pub struct Api {
    base: String,
    key: String,
    project: String,
    http: reqwest::Client,
}

/// Why a call failed: the API answered with an error, or could not be reached at all.
#[derive(Debug)]
pub enum CallError {
    Answered { status: u16, body: Value },
    Unreachable(String),
}

impl CallError {
    /// Whether trying again shortly may succeed: the server is restarting, overloaded or
    /// briefly without its database.
    fn passes(&self) -> bool {
        match self {
            CallError::Unreachable(_) => true,
            CallError::Answered { status, .. } => matches!(status, 429 | 502 | 503 | 504),
        }
    }
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Answered { status, body } => {
                let code = body["error"].as_str().unwrap_or("error");
                let message = body["message"].as_str().unwrap_or("(no message)");
                write!(f, "the API answered {status} {code}: {message}")?;
                if let Some(details) = body["details"].as_array() {
                    for detail in details {
                        let field = detail["field"].as_str().unwrap_or("?");
                        let why = detail["message"].as_str().unwrap_or("?");
                        write!(f, "; {field} {why}")?;
                    }
                }
                Ok(())
            }
            CallError::Unreachable(why) => f.write_str(why),
        }
    }
}

impl std::error::Error for CallError {}

impl Api {
    /// The client for `args`, with the key's project read from `GET /api/v2/me`.
    pub async fn connect(args: &ApiArgs) -> Result<Self, CliError> {
        let base = args.url.trim_end_matches('/').to_owned();
        url::Url::parse(&base).map_err(|e| {
            format!("--api {base:?} is not a URL ({e}); give e.g. http://127.0.0.1:8080")
        })?;
        let http = reqwest::Client::builder()
            .no_proxy()
            .build()
            .map_err(|e| format!("cannot build an HTTP client: {}", error_chain(&e)))?;
        let mut api = Self {
            base,
            key: args.key.clone(),
            project: String::new(),
            http,
        };
        let me = api
            .call(Method::GET, "/api/v2/me", None, CALL_TIMEOUT)
            .await?;
        api.project = me["data"]["projectId"]
            .as_str()
            .ok_or("GET /api/v2/me did not name the key's project")?
            .to_owned();
        Ok(api)
    }

    pub fn project(&self) -> &str {
        &self.project
    }

    /// The path of `rest` within the key's project, e.g. `project_path("/webhooks")`.
    pub fn project_path(&self, rest: &str) -> String {
        format!("/api/v2/projects/{}{rest}", self.project)
    }

    fn request(&self, method: Method, path: &str, timeout: Duration) -> RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.key)
            .timeout(timeout)
    }

    /// Calls the API and returns the JSON body of a 2xx answer.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        timeout: Duration,
    ) -> Result<Value, CallError> {
        self.send(self.request(method, path, timeout), body).await
    }

    /// As `call`, with extra headers.
    pub async fn call_with(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&Value>,
    ) -> Result<Value, CallError> {
        let mut request = self.request(method, path, CALL_TIMEOUT);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        self.send(request, body).await
    }

    async fn send(
        &self,
        mut request: RequestBuilder,
        body: Option<&Value>,
    ) -> Result<Value, CallError> {
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.map_err(|e| {
            CallError::Unreachable(format!(
                "cannot reach the API at {}: {} (is `hookrelay serve` running there?)",
                self.base,
                error_chain(&e)
            ))
        })?;
        let status = response.status().as_u16();
        let text = response.text().await.map_err(|e| {
            CallError::Unreachable(format!(
                "the API's answer was cut short: {}",
                error_chain(&e)
            ))
        })?;
        let body: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        if (200..300).contains(&status) {
            Ok(body)
        } else {
            Err(CallError::Answered { status, body })
        }
    }
}
