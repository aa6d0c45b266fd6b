//! The binary as a user runs it: help, bootstrap output, the admin CLI, migrate and SIGTERM.

use std::process::Command;

use serde_json::Value;

use crate::backend_tests;
use crate::common::TestDb;
use crate::common::process::{BIN, Server, hookrelay, provision_tenant};

/// A field of the bootstrap banner, which is one JSON object on stdout when logs are JSON.
fn printed(stdout: &str, field: &str) -> Option<String> {
    stdout.lines().find_map(|line| {
        let banner: Value = serde_json::from_str(line).ok()?;
        banner[field].as_str().map(str::to_owned)
    })
}

/// A value of the bootstrap banner's `export` lines, as text logs print them.
fn exported(stdout: &str, variable: &str) -> Option<String> {
    stdout
        .lines()
        .find_map(|line| line.trim().strip_prefix(&format!("export {variable}=")))
        .map(str::to_owned)
}

fn run_json(command: &mut Command) -> Value {
    let output = command.output().expect("the binary runs");
    assert!(
        output.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("stdout is one JSON document")
}

async fn list_status(address: &str, project: &str, key: &str) -> u16 {
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .get(format!("{address}/api/v2/projects/{project}/webhooks"))
        .bearer_auth(key)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[test]
fn serve_help_lists_every_setting_with_its_variable() {
    let output = Command::new(BIN)
        .args(["serve", "--help"])
        .output()
        .unwrap();
    assert!(output.status.success());
    let help = String::from_utf8(output.stdout).unwrap();
    for variable in [
        "DATABASE_URL",
        "HOOKRELAY_LISTEN",
        "HOOKRELAY_BOOTSTRAP",
        "HOOKRELAY_ADMIN_TOKEN",
        "HOOKRELAY_ALLOW_HTTP",
        "HOOKRELAY_ALLOW_PRIVATE_TARGETS",
        "HOOKRELAY_RATE_LIMIT_PER_MINUTE",
        "HOOKRELAY_MAX_WEBHOOKS_PER_PROJECT",
        "HOOKRELAY_LOG_FORMAT",
        "HOOKRELAY_LOG",
        "HOOKRELAY_DB_MAX_CONNECTIONS",
        "HOOKRELAY_MAX_EVENT_BYTES",
        "HOOKRELAY_WORKER",
        "HOOKRELAY_DELIVERY_TIMEOUT_MS",
        "HOOKRELAY_RETRY_MAX",
        "HOOKRELAY_RETRY_BASE_MS",
        "HOOKRELAY_DELIVERY_CONCURRENCY",
        "HOOKRELAY_ENDPOINT_CONCURRENCY",
        "HOOKRELAY_LEASE_MS",
        "HOOKRELAY_POLL_INTERVAL_MS",
        "HOOKRELAY_SHUTDOWN_GRACE_MS",
        "HOOKRELAY_RETENTION_DAYS",
        "HOOKRELAY_DISABLE_AFTER_HOURS",
        "HOOKRELAY_DISABLE_MIN_FAILURES",
        "HOOKRELAY_ENCRYPTION_KEY",
        "HOOKRELAY_ENCRYPTION_OLD_KEYS",
    ] {
        assert!(
            help.contains(&format!("[env: {variable}]")),
            "{variable} missing from:\n{help}"
        );
    }
    assert!(
        !help.contains("=]"),
        "no empty value after an env name:\n{help}"
    );
    for heading in [
        "Database:",
        "Delivery:",
        "Security:",
        "Limits:",
        "Operations:",
    ] {
        assert!(help.contains(heading), "{heading} missing from:\n{help}");
    }
}

#[test]
fn top_level_help_is_short_and_names_the_subcommands() {
    let output = Command::new(BIN).arg("--help").output().unwrap();
    let help = String::from_utf8(output.stdout).unwrap();
    for command in ["serve", "migrate", "admin", "serve --help"] {
        assert!(help.contains(command), "{command} missing from:\n{help}");
    }
    assert!(
        !help.contains("--delivery-timeout-ms"),
        "the settings are serve's: {help}"
    );
    assert!(help.lines().count() < 30, "{help}");
    let version = Command::new(BIN).arg("--version").output().unwrap();
    let version = String::from_utf8(version.stdout).unwrap();
    assert!(version.starts_with("hookrelay 0."), "{version}");
    assert!(
        version.contains('(') && version.trim_end().ends_with(')'),
        "the commit: {version}"
    );
}

#[test]
fn an_unknown_database_scheme_fails_with_a_clear_message() {
    let output = hookrelay("mysql://localhost/db")
        .arg("migrate")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("postgres://"), "{stderr}");
}

#[test]
fn the_database_and_log_settings_are_accepted_after_a_subcommand() {
    let file = std::env::temp_dir().join(format!("hookrelay-after-{}.db", uuid::Uuid::new_v4()));
    let url = format!("sqlite://{}", file.display());
    // DATABASE_URL names another file: only the flag after the subcommand can be honoured.
    let elsewhere = format!("sqlite://{}.unused", file.display());
    let migrated = hookrelay(&elsewhere)
        .args(["migrate", "--database-url", &url, "--log-format", "text"])
        .output()
        .unwrap();
    assert!(
        migrated.status.success(),
        "{}",
        String::from_utf8_lossy(&migrated.stderr)
    );
    let created = run_json(hookrelay(&elsewhere).args([
        "admin",
        "account",
        "create",
        "--name",
        "Acme",
        "--database-url",
        &url,
    ]));
    assert!(created["id"].is_string(), "{created}");
    assert!(file.exists());
    assert!(!std::path::Path::new(&format!("{}.unused", file.display())).exists());
    let _ = std::fs::remove_file(&file);
}

#[test]
fn admin_commands_never_create_a_database_and_name_the_one_they_cannot_open() {
    let file = std::env::temp_dir().join(format!("hookrelay-missing-{}.db", uuid::Uuid::new_v4()));
    let url = format!("sqlite://{}", file.display());
    let output = hookrelay(&url)
        .args(["admin", "account", "create", "--name", "Acme"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    assert!(
        stderr.contains(&url) && stderr.contains("migrate"),
        "{stderr}"
    );
    assert!(
        !file.exists(),
        "the admin command created {}",
        file.display()
    );

    let unreachable = hookrelay("postgres://hookrelay:s3cret@127.0.0.1:1/none")
        .env("HOOKRELAY_DB_ACQUIRE_TIMEOUT_MS", "500")
        .args(["admin", "account", "create", "--name", "Acme"])
        .output()
        .unwrap();
    assert!(!unreachable.status.success());
    let stderr = String::from_utf8_lossy(&unreachable.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    assert!(
        stderr.contains("127.0.0.1:1/none"),
        "names the database: {stderr}"
    );
    assert!(!stderr.contains("s3cret"), "never the password: {stderr}");
}

backend_tests! {
    async fn first_start_prints_a_working_key_once(backend) {
        let db = TestDb::create(backend).await;
        // The key is printed before the listening line, so stdout is complete once we stop.
        let (clean_exit, stdout) = Server::start(hookrelay(&db.url)).terminate();
        assert!(clean_exit, "SIGTERM ends the server cleanly");
        assert_eq!(stdout.trim().lines().count(), 1, "one JSON object: {stdout}");
        let project = printed(&stdout, "projectId").expect("the project id is printed");
        let key = printed(&stdout, "apiKey").expect("the key is printed");
        assert!(key.starts_with("dtk_live_"));

        let server = Server::start(hookrelay(&db.url));
        assert_eq!(list_status(&server.address, &project, &key).await, 200);
        let (_, stdout) = server.terminate();
        assert!(printed(&stdout, "apiKey").is_none(), "printed once only: {stdout}");
    }

    async fn json_logs_carry_numbers_and_each_span_once(backend) {
        let db = TestDb::create(backend).await;
        let server = Server::start(hookrelay(&db.url));
        list_status(&server.address, "00000000-0000-4000-8000-000000000000", "nope").await;
        let finished = server.next_log(|entry| entry["message"] == "request finished");
        assert_eq!(finished["status"], 401, "{finished}");
        assert!(finished["latency_ms"].is_u64(), "latency is a number: {finished}");
        assert_eq!(finished["span"]["name"], "request", "{finished}");
        assert!(finished.get("spans").is_none(), "no list repeating the span: {finished}");
        server.terminate();
    }

    async fn text_logs_print_the_bootstrap_key_as_shell_exports(backend) {
        let db = TestDb::create(backend).await;
        let mut command = hookrelay(&db.url);
        command.env("HOOKRELAY_LOG_FORMAT", "text");
        let output = command.arg("serve").env("HOOKRELAY_LISTEN", "127.0.0.1:0");
        let mut child = output
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
        let mut printed_lines = String::new();
        while exported(&printed_lines, "HOOKRELAY_API_KEY").is_none() {
            let mut line = String::new();
            assert!(std::io::BufRead::read_line(&mut stdout, &mut line).unwrap() > 0, "{printed_lines}");
            printed_lines.push_str(&line);
        }
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(exported(&printed_lines, "HOOKRELAY_PROJECT_ID").is_some(), "{printed_lines}");
        assert!(exported(&printed_lines, "HOOKRELAY_API_KEY").unwrap().starts_with("dtk_live_"));
    }

    async fn bootstrap_false_creates_nothing(backend) {
        let db = TestDb::create(backend).await;
        let mut command = hookrelay(&db.url);
        command.env("HOOKRELAY_BOOTSTRAP", "false");
        let (_, stdout) = Server::start(command).terminate();
        assert!(printed(&stdout, "apiKey").is_none(), "{stdout}");
    }

    async fn the_admin_cli_provisions_keys_that_the_server_honours(backend) {
        let db = TestDb::create(backend).await;
        let account = run_json(hookrelay(&db.url).args(["admin", "account", "create", "--name", "Acme"]));
        let account_id = account["id"].as_str().unwrap();
        let project = run_json(hookrelay(&db.url).args(["admin", "project", "create", "--account", account_id, "--name", "Web"]));
        let project_id = project["id"].as_str().unwrap();
        let key = run_json(hookrelay(&db.url).args(["admin", "key", "create", "--project", project_id, "--scopes", "webhooks.read,events.write"]));
        let plaintext = key["key"].as_str().unwrap();
        assert!(plaintext.starts_with("dtk_live_"));

        let mut command = hookrelay(&db.url);
        command.env("HOOKRELAY_BOOTSTRAP", "false");
        let server = Server::start(command);
        assert_eq!(list_status(&server.address, project_id, plaintext).await, 200);
        let revoked = run_json(hookrelay(&db.url).args(["admin", "key", "revoke", key["id"].as_str().unwrap()]));
        assert_eq!(revoked["revoked"], true);
        assert_eq!(list_status(&server.address, project_id, plaintext).await, 401);
        server.terminate();

        // Uses are written in batches, and the last batch at shutdown.
        let listed = run_json(hookrelay(&db.url).args(["admin", "key", "list", "--project", project_id]));
        let listed = listed.as_array().unwrap();
        assert_eq!(listed.len(), 1);
        let entry = &listed[0];
        assert_eq!(entry["id"], key["id"]);
        assert_eq!(entry["prefix"], &plaintext[..13]);
        assert_eq!(entry["scopes"], serde_json::json!(["webhooks.read", "events.write"]));
        assert!(entry["lastUsedAt"].is_string(), "{entry}");
        assert!(entry["revokedAt"].is_string(), "{entry}");
        assert!(!listed.iter().any(|k| k.to_string().contains(plaintext)), "never the key itself");

        let bad_scope = hookrelay(&db.url)
            .args(["admin", "key", "create", "--project", project_id, "--scopes", "root"])
            .output()
            .unwrap();
        assert!(!bad_scope.status.success());
        assert!(String::from_utf8_lossy(&bad_scope.stderr).contains("scope"));
        let unknown = hookrelay(&db.url)
            .args(["admin", "project", "create", "--account", &uuid::Uuid::new_v4().to_string(), "--name", "x"])
            .output()
            .unwrap();
        assert!(!unknown.status.success());
        assert!(String::from_utf8_lossy(&unknown.stderr).contains("account not found"));
    }

    async fn events_send_and_webhooks_list_drive_the_api_from_the_binary(backend) {
        let db = TestDb::create(backend).await;
        let (project, key) = provision_tenant(&db.url);
        let mut command = hookrelay(&db.url);
        command.env("HOOKRELAY_BOOTSTRAP", "false");
        let server = Server::start(command);
        let client = |args: &[&str], key: &str| {
            Command::new(BIN)
                .env_clear()
                .args(args)
                .args(["--api", &server.address, "--key", key])
                .output()
                .expect("the binary runs")
        };
        let created = reqwest::Client::builder().no_proxy().build().unwrap()
            .post(format!("{}/api/v2/projects/{project}/webhooks", server.address))
            .bearer_auth(&key)
            .json(&serde_json::json!({ "mode": "pull", "events": ["action.created"] }))
            .send()
            .await
            .unwrap();
        assert_eq!(created.status(), 201);
        let webhook: Value = created.json().await.unwrap();
        let webhook_id = webhook["data"]["id"].as_str().unwrap();

        let sent = client(&["events", "send", "--event", "action.created", "--data", r#"{"n": 1}"#], &key);
        assert!(sent.status.success(), "{}", String::from_utf8_lossy(&sent.stderr));
        let sent: Value = serde_json::from_slice(&sent.stdout).expect("the API's answer as JSON");
        assert_eq!(sent["data"]["deliveries"], 1, "{sent}");
        assert_eq!(sent["meta"]["projectId"], project.as_str());

        let listed = client(&["webhooks", "list"], &key);
        assert!(listed.status.success());
        let table = String::from_utf8(listed.stdout).unwrap();
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 2, "{table}");
        assert!(lines[0].starts_with("ID") && lines[0].contains("MODE"), "{table}");
        assert!(lines[1].starts_with(webhook_id) && lines[1].contains("pull"), "{table}");
        assert!(lines[1].contains("(pull: 1 due, 0 leased)"), "the event waits for a poller: {table}");
        let listed = client(&["webhooks", "list", "--json"], &key);
        let listed: Value = serde_json::from_slice(&listed.stdout).unwrap();
        assert_eq!(listed["data"]["webhooks"][0]["id"], webhook_id);

        // Mistakes are one line each, naming what to fix.
        let not_object = client(&["events", "send", "--event", "action.created", "--data", "[1]"], &key);
        assert!(!not_object.status.success());
        assert!(String::from_utf8_lossy(&not_object.stderr).contains("--data must be a JSON object"));
        let refused = client(&["webhooks", "list"], "dtk_live_nope");
        assert!(!refused.status.success());
        let refused = String::from_utf8(refused.stderr).unwrap();
        assert_eq!(refused.lines().count(), 1, "{refused}");
        assert!(refused.contains("401 unauthorized"), "{refused}");
        let unknown_type = client(&["events", "send", "--event", "nope.happened"], &key);
        let unknown_type = String::from_utf8(unknown_type.stderr).unwrap();
        assert!(unknown_type.contains("400 validation_error") && unknown_type.contains("event"), "{unknown_type}");
        let nowhere = Command::new(BIN)
            .env_clear()
            .args(["webhooks", "list", "--api", "http://127.0.0.1:9", "--key", &key])
            .output()
            .unwrap();
        assert!(String::from_utf8_lossy(&nowhere.stderr).contains("cannot reach the API at http://127.0.0.1:9"));
        server.terminate();
    }

    async fn migrate_prepares_an_empty_database(backend) {
        let db = TestDb::create_empty(backend).await;
        let output = hookrelay(&db.url).arg("migrate").output().unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        let again = hookrelay(&db.url).arg("migrate").output().unwrap();
        assert!(again.status.success());
        let account = run_json(hookrelay(&db.url).args(["admin", "account", "create", "--name", "x"]));
        assert!(account["id"].is_string());
        let key = "BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=";
        let resealed = run_json(hookrelay(&db.url).env("HOOKRELAY_ENCRYPTION_KEY", key).args(["admin", "reencrypt"]));
        assert_eq!(resealed, serde_json::json!({ "resealed": 0 }));
        let bad = hookrelay(&db.url).env("HOOKRELAY_ENCRYPTION_KEY", "c2hvcnQ=").args(["admin", "reencrypt"]).output().unwrap();
        assert!(!bad.status.success());
        assert!(String::from_utf8_lossy(&bad.stderr).contains("32 bytes"), "{}", String::from_utf8_lossy(&bad.stderr));
    }
}
