//! `hookrelay listen` as a developer runs it: a child process against a running server,
//! forwarding to a receiver on loopback that checks both signatures. The server runs on the
//! test's own runtime, so the test waits for the child's output without blocking it.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, ExitStatus, Stdio};

use tokio::sync::mpsc;

use super::*;
use crate::common::process::BIN;

/// A running `hookrelay listen`, its stdout and stderr read line by line.
struct Listen {
    child: Option<Child>,
    stdout: mpsc::UnboundedReceiver<String>,
    stderr: mpsc::UnboundedReceiver<String>,
}

fn lines(stream: impl std::io::Read + Send + 'static) -> mpsc::UnboundedReceiver<String> {
    let (sender, lines) = mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            let _ = sender.send(line);
        }
    });
    lines
}

impl Listen {
    fn start(app: &TestApp, receiver: &Receiver, args: &[&str]) -> Listen {
        let mut child = Command::new(BIN)
            .env_clear()
            .args(["listen", "--api", &app.address, "--key", &app.key])
            .args(["--forward-to", &receiver.url("/local")])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the binary starts");
        let stdout = lines(child.stdout.take().unwrap());
        let stderr = lines(child.stderr.take().unwrap());
        Listen {
            child: Some(child),
            stdout,
            stderr,
        }
    }

    /// The next stderr line `wanted` accepts, failing the test after a while.
    async fn said(&mut self, wanted: impl Fn(&str) -> bool) -> String {
        let mut heard = Vec::new();
        loop {
            let Ok(Some(line)) = tokio::time::timeout(WAIT, self.stderr.recv()).await else {
                panic!("listen did not say what the test waits for; it said {heard:#?}");
            };
            if wanted(&line) {
                return line;
            }
            heard.push(line);
        }
    }

    async fn printed(&mut self) -> String {
        tokio::time::timeout(WAIT, self.stdout.recv())
            .await
            .ok()
            .flatten()
            .expect("listen prints a line per delivery")
    }

    fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().unwrap().id().to_string();
        let sent = Command::new("kill").args([signal, &pid]).status().unwrap();
        assert!(sent.success());
    }

    async fn wait(mut self) -> ExitStatus {
        let mut child = self.child.take().unwrap();
        eventually(WAIT, "listen exits", || {
            let status = child.try_wait().unwrap();
            async move { status }
        })
        .await
    }
}

impl Drop for Listen {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The value after `label` on a line of listen's banner.
fn after<'a>(line: &'a str, label: &str) -> &'a str {
    line.split_once(label)
        .unwrap()
        .1
        .trim()
        .trim_end_matches('.')
}

backend_tests! {
    async fn listen_forwards_signed_deliveries_prints_each_and_deletes_its_webhook_on_sigint(backend) {
        let app = spawn(backend, |_| {}).await;
        let mut receiver = Receiver::start().await;
        let mut listen = Listen::start(&app, &receiver, &["--events", "action.created,visibility.changed"]);
        let created = listen.said(|l| l.starts_with("Created pull webhook")).await;
        let webhook_id = after(&created, "Created pull webhook").split(' ').next().unwrap().to_owned();
        let secret = after(&listen.said(|l| l.starts_with("Signing secret")).await, "):").to_owned();
        let standard = after(&listen.said(|l| l.starts_with("Standard Webhooks secret")).await, "):").to_owned();
        listen.said(|l| l.starts_with("Forwarding to")).await;
        let webhook = json!({ "id": webhook_id });
        let details = app.webhook_details(&webhook["id"]).await;
        assert_eq!((details["mode"].clone(), details["events"].clone()), (json!("pull"), json!(["action.created", "visibility.changed"])));

        let mut published = HashSet::new();
        for n in 0..20 {
            let event = if n % 2 == 0 { "action.created" } else { "visibility.changed" };
            let accepted = app.publish(event, json!({ "n": n })).await;
            published.insert(accepted["deliveryIds"][0].as_str().unwrap().to_owned());
        }
        let mut arrived = HashSet::new();
        for _ in 0..20 {
            let request = receiver.expect(WAIT).await;
            assert_eq!(request.path, "/local");
            assert_eq!(request.header("content-type"), "application/json");
            assert_eq!(request.header("x-devtune-signature"), devtune_signature(&secret, &request.body));
            assert!(standard_webhooks_verifies(&standard, &request), "webhook-signature verifies");
            assert_eq!(request.header("x-devtune-event"), request.json()["event"]);
            arrived.insert(request.header("x-devtune-delivery").to_owned());
        }
        assert_eq!(arrived, published);
        let mut printed = HashSet::new();
        for _ in 0..20 {
            let line = listen.printed().await;
            let fields: Vec<&str> = line.split_whitespace().collect();
            // time, event type, delivery id, local status, milliseconds.
            assert!(chrono::DateTime::parse_from_rfc3339(fields[0]).is_ok(), "{line}");
            assert!(["action.created", "visibility.changed"].contains(&fields[1]), "{line}");
            assert_eq!((fields[3], fields[5]), ("200", "ms"), "{line}");
            printed.insert(fields[2].to_owned());
        }
        assert_eq!(printed, published, "one line per delivery");
        let stats = eventually(WAIT, "every answer is acknowledged", || async {
            let stats = app.webhook_details(&webhook["id"]).await["stats"].clone();
            (stats["successfulDeliveries"] == 20).then_some(stats)
        })
        .await;
        assert_eq!(stats["totalDeliveries"], 20);

        listen.signal("-INT");
        listen.said(|l| l.starts_with(&format!("Deleted pull webhook {webhook_id}"))).await;
        assert!(listen.wait().await.success());
        let deleted = app.webhook_details(&webhook["id"]).await;
        assert_eq!(deleted["isActive"], false, "{deleted}");
    }

    async fn listen_killed_mid_stream_loses_nothing_once_restarted_on_its_webhook(backend) {
        let app = spawn(backend, |_| {}).await;
        let mut receiver = Receiver::start().await;
        // Slow enough answers that the kill lands while deliveries are held.
        receiver.reply_by_default(Reply::Slow(Duration::from_millis(40), 200));
        let webhook = app.create_pull_webhook(&["action.created"]).await;
        let id = webhook["id"].as_str().unwrap();
        let secret = webhook["secret"].as_str().unwrap();
        let args = ["--webhook", id, "--lease", "2", "--json"];
        let mut first = Listen::start(&app, &receiver, &args);
        first.said(|l| l.starts_with("Forwarding to")).await;
        let mut published = HashSet::new();
        for n in 0..20 {
            let accepted = app.publish("action.created", json!({ "n": n })).await;
            published.insert(accepted["deliveryIds"][0].as_str().unwrap().to_owned());
        }
        let mut arrived = HashSet::new();
        while arrived.len() < 5 {
            let request = receiver.expect(WAIT).await;
            assert_eq!(request.header("x-devtune-signature"), devtune_signature(secret, &request.body));
            arrived.insert(request.header("x-devtune-delivery").to_owned());
        }
        first.signal("-KILL");
        assert!(!first.wait().await.success(), "killed, not stopped");

        let mut second = Listen::start(&app, &receiver, &args);
        second.said(|l| l.starts_with("Listening on pull webhook")).await;
        while arrived.len() < 20 {
            let request = receiver.expect(WAIT).await;
            assert_eq!(request.header("x-devtune-signature"), devtune_signature(secret, &request.body));
            arrived.insert(request.header("x-devtune-delivery").to_owned());
        }
        assert_eq!(arrived, published, "every delivery arrived, some perhaps twice");
        let line: Value = serde_json::from_str(&second.printed().await).expect("--json prints JSON lines");
        assert_eq!(keys(&line), ["acknowledged", "attempt", "deliveryId", "durationMs", "eventType", "status", "time"]);
        eventually(WAIT, "every delivery succeeded", || async {
            let details = app.webhook_details(&webhook["id"]).await;
            (details["stats"]["successfulDeliveries"] == 20 && details["queue"]["leased"] == 0).then_some(())
        })
        .await;

        second.signal("-INT");
        assert!(second.wait().await.success());
        let kept = app.webhook_details(&webhook["id"]).await;
        assert_eq!(kept["isActive"], true, "a webhook given with --webhook is not deleted");
    }
}
