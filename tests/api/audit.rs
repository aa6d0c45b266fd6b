//! The audit log: every change with its actor and channel, never a secret.

use reqwest::Method;
use serde_json::{Value, json};

use crate::backend_tests;
use crate::common::{TestApp, assert_error, status_and_json};

async fn audit_log(app: &TestApp, query: &str) -> Value {
    let (status, body) = status_and_json(
        app.get(&app.project_path(&format!("/audit-log{query}")))
            .await,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body["data"].clone()
}

backend_tests! {
    async fn every_change_is_recorded_with_who_and_how_and_no_secret(backend) {
        let app = TestApp::spawn_with(backend, |c| {
            c.allow_http = true;
            c.allow_private_targets = true;
            c.delivery.worker = false;
        })
        .await;
        let (_, me) = status_and_json(app.get("/api/v2/me").await).await;
        let key_id = me["data"]["keyId"].clone();
        let created = app.create_webhook("http://127.0.0.1:9009/hook", &["action.created"]).await;
        let id = created["id"].as_str().unwrap();
        let path = app.project_path(&format!("/webhooks/{id}"));
        let patched = app
            .client
            .patch(app.url(&path))
            .bearer_auth(&app.key)
            .header("x-hookrelay-channel", "dashboard")
            .json(&json!({ "events": ["action.updated"] }))
            .send()
            .await
            .unwrap();
        assert_eq!(patched.status(), 200);
        let (_, details) = status_and_json(app.get(&path).await).await;
        assert_eq!(details["data"]["lastModifiedBy"], key_id);
        assert_eq!(details["data"]["lastModifiedVia"], "dashboard");
        let (_, rotated) = status_and_json(app.call(Method::POST, &format!("{path}/rotate-secret"), Some(&app.key), None).await).await;
        app.call(Method::POST, &format!("{path}/test"), Some(&app.key), None).await;
        app.call(Method::DELETE, &path, Some(&app.key), None).await;
        let (_, details) = status_and_json(app.get(&path).await).await;
        assert_eq!(details["data"]["lastModifiedVia"], "api");

        let log = audit_log(&app, "").await;
        let entries = log["entries"].as_array().unwrap();
        let actions: Vec<&str> = entries.iter().map(|e| e["action"].as_str().unwrap()).collect();
        assert_eq!(
            actions,
            ["webhook.deleted", "webhook.test_sent", "webhook.secret_rotated", "webhook.updated", "webhook.created", "api_key.created"]
        );
        for entry in &entries[..5] {
            assert_eq!(entry["actor"], json!({ "type": "api_key", "id": key_id }));
            assert_eq!(entry["targetId"], id);
            assert!(crate::common::is_api_timestamp(&entry["at"]));
        }
        assert_eq!(entries[3]["channel"], "dashboard");
        assert_eq!(entries[3]["changes"], json!({ "events": ["action.updated"] }));
        assert_eq!(entries[4]["channel"], "api");
        assert_eq!(entries[4]["changes"]["url"], "http://127.0.0.1:9009/hook");
        assert_eq!(entries[5]["actor"], json!({ "type": "admin", "id": null }));
        assert_eq!(entries[5]["channel"], "cli");
        let text = log.to_string();
        assert!(!text.contains(created["secret"].as_str().unwrap()), "no secret is logged");
        assert!(!text.contains(rotated["data"]["secret"].as_str().unwrap()), "no secret is logged");
        assert!(!text.contains(&app.key), "no key is logged");
    }

    async fn the_audit_log_pages_and_needs_the_read_scope(backend) {
        let app = TestApp::spawn_with(backend, |c| c.delivery.worker = false).await;
        for n in 0..3 {
            app.create_webhook(&format!("https://93.184.215.14/{n}"), &["action.created"]).await;
        }
        let first = audit_log(&app, "?limit=2").await;
        assert_eq!(first["entries"].as_array().unwrap().len(), 2);
        let cursor = first["nextCursor"].as_str().unwrap();
        let second = audit_log(&app, &format!("?limit=2&cursor={cursor}")).await;
        assert_eq!(second["entries"].as_array().unwrap().len(), 2);
        assert_eq!(second["nextCursor"], Value::Null);
        assert_ne!(first["entries"][1]["id"], second["entries"][0]["id"]);
        for bad in ["?limit=0", "?limit=201", "?cursor=nope"] {
            assert_error(app.get(&app.project_path(&format!("/audit-log{bad}"))).await, 400, "bad_request").await;
        }
        let events_only = app.key_with_scopes(&["events.write"]).await;
        let refused = app.call(Method::GET, &app.project_path("/audit-log"), Some(&events_only), None).await;
        assert_error(refused, 403, "forbidden").await;
    }

    async fn admin_key_changes_are_recorded_in_the_keys_project(backend) {
        let token = "audit-admin-token-0123456789abcdef";
        let app = TestApp::spawn_with(backend, |c| {
            c.admin_token = Some(token.into());
            c.delivery.worker = false;
        })
        .await;
        let keys = format!("/admin/v1/projects/{}/keys", app.project_id);
        let (_, created) = status_and_json(app.call(Method::POST, &keys, Some(token), Some(json!({ "scopes": ["webhooks.read"] }))).await).await;
        let key_id = created["data"]["id"].as_str().unwrap();
        app.call(Method::DELETE, &format!("/admin/v1/keys/{key_id}"), Some(token), None).await;
        let log = audit_log(&app, "").await;
        let entries = log["entries"].as_array().unwrap();
        assert_eq!(entries[0]["action"], "api_key.revoked");
        assert_eq!(entries[1]["action"], "api_key.created");
        assert_eq!(entries[1]["changes"], json!({ "scopes": ["webhooks.read"] }));
        for entry in &entries[..2] {
            assert_eq!(entry["targetId"], key_id);
            assert_eq!(entry["channel"], "admin");
            assert_eq!(entry["actor"]["type"], "admin");
        }
        assert!(!log.to_string().contains(created["data"]["key"].as_str().unwrap()));
    }
}
