//! `hookrelay listen`: long-polls a pull webhook and forwards each delivery to a local URL with
//! the method, body bytes and headers a push would send, so the receiver's signature checks run
//! unchanged; the local answers are acknowledged as soon as the poll's batch is forwarded (or a
//! second after the oldest), and a hard kill loses nothing: what was not acknowledged comes
//! back when its lease ends.

use std::io::Write;
use std::time::{Duration, Instant};

use chrono::{SecondsFormat, Utc};
use reqwest::Method;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::forward::{Forwarded, Forwarder};
use super::{Api, CALL_TIMEOUT, CallError};
use crate::cli::CliError;
use crate::config::ListenArgs;

/// How long one poll waits on the server for a delivery.
const POLL_WAIT_SECS: u64 = 20;
/// An answer is acknowledged at most this long after it came, even mid-batch.
const ACK_WITHIN: Duration = Duration::from_secs(1);
/// Longest pause between polls while the server cannot be reached.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

pub async fn listen(args: &ListenArgs) -> Result<(), CliError> {
    let forwarder = Forwarder::new(&args.forward_to, Duration::from_secs(args.forward_timeout))?;
    let api = Api::connect(&args.api).await?;
    let stop = stop_on_signals()?;
    let (webhook, created) = match &args.webhook {
        Some(id) => (existing(&api, id).await?, false),
        None => (create(&api, &args.events, &args.forward_to).await?, true),
    };
    eprintln!(
        "Forwarding to {} — Ctrl-C to stop{}.",
        args.forward_to,
        if created {
            " (the webhook is deleted then)"
        } else {
            ""
        }
    );
    let listener = Listener {
        api: &api,
        webhook: &webhook,
        forwarder,
        json: args.json,
        lease: args.lease,
        limit: args.limit,
    };
    let outcome = listener.run(&stop).await;
    if created {
        match api
            .call(
                Method::DELETE,
                &api.project_path(&format!("/webhooks/{webhook}")),
                None,
                CALL_TIMEOUT,
            )
            .await
        {
            Ok(_) => eprintln!("Deleted pull webhook {webhook}."),
            Err(error) => eprintln!("Could not delete pull webhook {webhook}: {error}"),
        }
    }
    outcome
}

/// Cancelled by the first SIGINT or SIGTERM; a second one ends the process at once.
fn stop_on_signals() -> Result<CancellationToken, CliError> {
    let stop = CancellationToken::new();
    let mut signals = Signals::install()?;
    let cancel = stop.clone();
    tokio::spawn(async move {
        signals.next().await;
        eprintln!(
            "Stopping: forwarding what is held, then acknowledging it (Ctrl-C again to quit now)."
        );
        cancel.cancel();
        signals.next().await;
        std::process::exit(130);
    });
    Ok(stop)
}

struct Signals {
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> Result<Self, CliError> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(Self {
                terminate: signal(SignalKind::terminate())?,
                interrupt: signal(SignalKind::interrupt())?,
            })
        }
        #[cfg(not(unix))]
        Ok(Self {})
    }

    async fn next(&mut self) {
        #[cfg(unix)]
        tokio::select! {
            _ = self.terminate.recv() => {}
            _ = self.interrupt.recv() => {}
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Checks that `id` is one of the project's pull webhooks.
async fn existing(api: &Api, id: &str) -> Result<String, CliError> {
    let found = api
        .call(
            Method::GET,
            &api.project_path(&format!("/webhooks/{id}")),
            None,
            CALL_TIMEOUT,
        )
        .await?;
    let webhook = &found["data"];
    if webhook["mode"] != "pull" {
        return Err(format!(
            "webhook {id} pushes to {}; listen needs a pull webhook (leave out --webhook and give \
             --events to create one)",
            webhook["url"].as_str().unwrap_or("its URL")
        )
        .into());
    }
    eprintln!(
        "Listening on pull webhook {id} for {}. Its signing secret was shown when it was created \
         (POST …/webhooks/{id}/rotate-secret shows a new one).",
        events_of(webhook)
    );
    Ok(id.to_owned())
}

/// Creates a pull webhook for `events` and shows its secret, this once.
async fn create(api: &Api, events: &[String], forward_to: &str) -> Result<String, CliError> {
    let body = json!({
        "mode": "pull",
        "events": events,
        "description": format!("hookrelay listen, forwarding to {forward_to}"),
    });
    let created = api
        .call(
            Method::POST,
            &api.project_path("/webhooks"),
            Some(&body),
            CALL_TIMEOUT,
        )
        .await?;
    let webhook = &created["data"];
    let id = webhook["id"]
        .as_str()
        .ok_or("the API created a webhook without an id")?;
    eprintln!(
        "Created pull webhook {id} for {}.\n\
         Signing secret (X-DevTune-Signature): {}\n\
         Standard Webhooks secret (webhook-signature): {}",
        events_of(webhook),
        webhook["secret"].as_str().unwrap_or_default(),
        webhook["standardWebhooksSecret"]
            .as_str()
            .unwrap_or_default(),
    );
    Ok(id.to_owned())
}

fn events_of(webhook: &Value) -> String {
    webhook["events"]
        .as_array()
        .map(|events| {
            events
                .iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default()
}

struct Listener<'a> {
    api: &'a Api,
    webhook: &'a str,
    forwarder: Forwarder,
    json: bool,
    lease: u64,
    limit: u64,
}

impl Listener<'_> {
    /// Polls and forwards until `stop`; what a poll leased is forwarded and acknowledged even
    /// when `stop` comes meanwhile.
    async fn run(&self, stop: &CancellationToken) -> Result<(), CliError> {
        let poll_path = self.api.project_path(&format!(
            "/webhooks/{}/poll?limit={}&wait={POLL_WAIT_SECS}&lease={}",
            self.webhook, self.limit, self.lease
        ));
        let mut backoff = Duration::ZERO;
        while !stop.is_cancelled() {
            let polled = tokio::select! {
                polled = self.api.call(
                    Method::GET,
                    &poll_path,
                    None,
                    Duration::from_secs(POLL_WAIT_SECS) + CALL_TIMEOUT,
                ) => polled,
                () = stop.cancelled() => break,
            };
            let deliveries = match polled {
                Ok(answer) => {
                    if !backoff.is_zero() {
                        eprintln!("Reconnected.");
                    }
                    backoff = Duration::ZERO;
                    answer["data"]["deliveries"]
                        .as_array()
                        .cloned()
                        .unwrap_or_default()
                }
                Err(error) if error.passes() => {
                    backoff = (backoff * 2).clamp(Duration::from_millis(250), MAX_BACKOFF);
                    eprintln!("{error}; polling again in {} ms", backoff.as_millis());
                    tokio::select! {
                        () = tokio::time::sleep(backoff) => continue,
                        () = stop.cancelled() => break,
                    }
                }
                Err(error) => return Err(error.into()),
            };
            self.deliver(&deliveries).await;
        }
        Ok(())
    }

    /// Forwards a poll's deliveries one by one and acknowledges their answers: together at
    /// the end, or sooner once the oldest answer has waited `ACK_WITHIN`, so a slow receiver
    /// neither outlasts the leases nor costs a request per delivery.
    async fn deliver(&self, deliveries: &[Value]) {
        let mut answered: Vec<(&Value, Forwarded)> = Vec::new();
        let mut oldest = Instant::now();
        for delivery in deliveries {
            if answered.is_empty() {
                oldest = Instant::now();
            }
            let answer = self.forwarder.forward(delivery).await;
            answered.push((delivery, answer));
            if oldest.elapsed() >= ACK_WITHIN {
                self.acknowledge(std::mem::take(&mut answered)).await;
            }
        }
        if !answered.is_empty() {
            self.acknowledge(answered).await;
        }
    }

    /// Acknowledges answers in one request (tried again once if the API is briefly
    /// unavailable) and prints a line for each.
    async fn acknowledge(&self, answered: Vec<(&Value, Forwarded)>) {
        let results: Vec<Value> = answered
            .iter()
            .map(|(delivery, answer)| result(delivery, answer))
            .collect();
        let path = self
            .api
            .project_path(&format!("/webhooks/{}/poll/ack", self.webhook));
        let body = json!({ "results": results });
        let mut acked = self
            .api
            .call(Method::POST, &path, Some(&body), CALL_TIMEOUT)
            .await;
        if acked.as_ref().is_err_and(CallError::passes) {
            tokio::time::sleep(Duration::from_secs(1)).await;
            acked = self
                .api
                .call(Method::POST, &path, Some(&body), CALL_TIMEOUT)
                .await;
        }
        for (n, (delivery, answer)) in answered.iter().enumerate() {
            let recorded = acked
                .as_ref()
                .map(|a| a["data"]["results"][n]["recorded"] == true)
                .map_err(ToString::to_string);
            self.print(delivery, answer, recorded);
        }
    }

    /// One line for a delivery; `recorded` is whether its acknowledgement was recorded, or why
    /// it could not be sent.
    fn print(&self, delivery: &Value, answer: &Forwarded, recorded: Result<bool, String>) {
        let time = Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true);
        let mut out = std::io::stdout().lock();
        if self.json {
            let mut line = json!({
                "time": time,
                "eventType": delivery["eventType"],
                "deliveryId": delivery["deliveryId"],
                "attempt": delivery["attempt"],
                "durationMs": answer.duration_ms,
                "acknowledged": recorded == Ok(true),
            });
            match &answer.outcome {
                Ok(local) => line["status"] = json!(local.status),
                Err(error) => line["error"] = json!(error),
            }
            let _ = writeln!(out, "{line}");
        } else {
            let local = match &answer.outcome {
                Ok(local) => local.status.to_string(),
                Err(error) => format!("error ({error})"),
            };
            let _ = writeln!(
                out,
                "{time}  {}  {}  {local}  {} ms",
                delivery["eventType"].as_str().unwrap_or("?"),
                delivery["deliveryId"].as_str().unwrap_or("?"),
                answer.duration_ms
            );
        }
        let _ = out.flush();
        drop(out);
        match recorded {
            Err(error) => eprintln!(
                "Could not acknowledge {}: {error}; it is delivered again once its lease ends.",
                delivery["deliveryId"].as_str().unwrap_or("?")
            ),
            Ok(false) => eprintln!(
                "The lease on {} had ended, so this answer was not recorded; it is delivered \
                 again.",
                delivery["deliveryId"].as_str().unwrap_or("?")
            ),
            Ok(true) => {}
        }
    }
}

/// The acknowledgement of one forwarded delivery.
fn result(delivery: &Value, answer: &Forwarded) -> Value {
    let mut result = json!({
        "deliveryId": delivery["deliveryId"],
        "leaseId": delivery["leaseId"],
        "durationMs": answer.duration_ms,
    });
    match &answer.outcome {
        Ok(local) => {
            result["status"] = json!(local.status);
            result["responseExcerpt"] = json!(local.excerpt);
            if let Some(retry_after) = &local.retry_after {
                result["retryAfter"] = json!(retry_after);
            }
        }
        Err(error) => result["error"] = json!(error),
    }
    result
}
