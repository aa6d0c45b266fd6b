//! The DevTune webhook operations and our additions, checked field by field against the guide.

use hookrelay::domain::WebhookKind;
use reqwest::Method;
use serde_json::{Value, json};

use crate::backend_tests;
use crate::common::{TestApp, assert_error, is_api_timestamp, keys, status_and_json};

const DOC_URL: &str = "https://93.184.215.14/webhooks/devtune";
const DOC_EVENTS: [&str; 2] = ["action.created", "action.recommendation.created"];

fn is_lower_hex_64(value: &Value) -> bool {
    value.as_str().is_some_and(|s| {
        s.len() == 64
            && s.chars()
                .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
    })
}

backend_tests! {
    async fn create_webhook_answers_201_with_the_documented_fields(backend) {
        let app = TestApp::spawn(backend).await;
        let response = app
            .post(&app.project_path("/webhooks"), json!({ "url": DOC_URL, "events": DOC_EVENTS }))
            .await;
        let (status, body) = status_and_json(response).await;
        assert_eq!(status, 201);
        assert_eq!(keys(&body), ["data", "meta"]);
        let data = &body["data"];
        assert_eq!(
            keys(data),
            ["createdAt", "description", "events", "id", "isActive", "metadata", "mode", "secret", "standardWebhooksSecret", "updatedAt", "url"]
        );
        assert!(data["id"].as_str().unwrap().parse::<uuid::Uuid>().is_ok());
        assert_eq!(data["url"], DOC_URL);
        assert_eq!(data["mode"], "push", "a webhook pushes unless asked otherwise");
        assert_eq!(data["events"], json!(DOC_EVENTS));
        assert_eq!(data["isActive"], true);
        assert!(is_lower_hex_64(&data["secret"]), "secret {}", data["secret"]);
        assert!(is_api_timestamp(&data["createdAt"]));
        assert_eq!(data["createdAt"], data["updatedAt"]);
        assert_eq!(keys(&body["meta"]), ["projectId", "timestamp"]);
        assert_eq!(body["meta"]["projectId"], app.project_id.to_string());
        assert!(is_api_timestamp(&body["meta"]["timestamp"]));
    }

    async fn every_created_webhook_gets_its_own_secret(backend) {
        let app = TestApp::spawn(backend).await;
        let a = app.create_webhook(DOC_URL, &["action.created"]).await;
        let b = app.create_webhook(DOC_URL, &["action.created"]).await;
        assert_ne!(a["secret"], b["secret"]);
        assert_ne!(a["id"], b["id"]);
    }

    async fn create_webhook_accepts_all_six_event_types(backend) {
        let app = TestApp::spawn(backend).await;
        let all = [
            "search-tracking.completed",
            "visibility.changed",
            "action.created",
            "action.updated",
            "action.recommendation.created",
            "action.recommendation.updated",
        ];
        let data = app.create_webhook(DOC_URL, &all).await;
        assert_eq!(data["events"], json!(all));
    }

    async fn list_webhooks_shows_active_webhooks_without_secrets(backend) {
        let app = TestApp::spawn(backend).await;
        let first = app.create_webhook(DOC_URL, &DOC_EVENTS).await;
        let second = app.create_webhook("https://93.184.215.14/b", &["visibility.changed"]).await;
        let deleted = app.create_webhook("https://93.184.215.14/c", &["action.updated"]).await;
        let path = app.project_path(&format!("/webhooks/{}", deleted["id"].as_str().unwrap()));
        assert_eq!(app.call(Method::DELETE, &path, Some(&app.key), None).await.status(), 200);

        let (status, body) = status_and_json(app.get(&app.project_path("/webhooks")).await).await;
        assert_eq!(status, 200);
        assert_eq!(keys(&body), ["data", "meta"]);
        assert_eq!(keys(&body["data"]), ["webhooks"]);
        let listed = body["data"]["webhooks"].as_array().unwrap();
        assert_eq!(listed.len(), 2);
        assert_eq!(listed[0]["id"], first["id"]);
        assert_eq!(listed[1]["id"], second["id"]);
        for item in listed {
            assert_eq!(
                keys(item),
                [
                    "createdAt", "description", "enabled", "events", "id", "isActive", "metadata",
                    "mode", "pausedAt", "updatedAt", "url"
                ]
            );
            assert_eq!((&item["enabled"], &item["pausedAt"]), (&json!(true), &Value::Null));
            assert_eq!(item["isActive"], true);
        }
        assert_eq!(listed[0]["url"], DOC_URL);
        assert_eq!(listed[0]["events"], json!(DOC_EVENTS));
        assert_eq!(listed[0]["createdAt"], first["createdAt"]);
        assert_eq!(body["meta"]["projectId"], app.project_id.to_string());
    }

    async fn list_webhooks_with_include_inactive_shows_deleted_ones(backend) {
        let app = TestApp::spawn(backend).await;
        let kept = app.create_webhook(DOC_URL, &DOC_EVENTS).await;
        let deleted = app.create_webhook("https://93.184.215.14/c", &["action.updated"]).await;
        let path = app.project_path(&format!("/webhooks/{}", deleted["id"].as_str().unwrap()));
        app.call(Method::DELETE, &path, Some(&app.key), None).await;

        let response = app.get(&app.project_path("/webhooks?includeInactive=true")).await;
        let (status, body) = status_and_json(response).await;
        assert_eq!(status, 200);
        let listed = body["data"]["webhooks"].as_array().unwrap();
        let states: Vec<(Value, Value)> = listed
            .iter()
            .map(|w| (w["id"].clone(), w["isActive"].clone()))
            .collect();
        assert_eq!(
            states,
            [(kept["id"].clone(), json!(true)), (deleted["id"].clone(), json!(false))]
        );

        let response = app.get(&app.project_path("/webhooks?includeInactive=false")).await;
        let (_, body) = status_and_json(response).await;
        assert_eq!(body["data"]["webhooks"].as_array().unwrap().len(), 1);
    }

    async fn list_webhooks_rejects_a_non_boolean_include_inactive(backend) {
        let app = TestApp::spawn(backend).await;
        let response = app.get(&app.project_path("/webhooks?includeInactive=maybe")).await;
        assert_error(response, 400, "bad_request").await;
    }

    async fn list_webhooks_of_an_empty_project_is_an_empty_list(backend) {
        let app = TestApp::spawn(backend).await;
        let (status, body) = status_and_json(app.get(&app.project_path("/webhooks")).await).await;
        assert_eq!(status, 200);
        assert_eq!(body["data"]["webhooks"], json!([]));
    }

    async fn delete_webhook_answers_deleted_true_and_keeps_the_row(backend) {
        let app = TestApp::spawn(backend).await;
        let created = app.create_webhook(DOC_URL, &DOC_EVENTS).await;
        let path = app.project_path(&format!("/webhooks/{}", created["id"].as_str().unwrap()));
        let response = app.call(Method::DELETE, &path, Some(&app.key), None).await;
        let (status, body) = status_and_json(response).await;
        assert_eq!(status, 200);
        assert_eq!(body, json!({ "deleted": true }));

        let (status, details) = status_and_json(app.get(&path).await).await;
        assert_eq!(status, 200);
        assert_eq!(details["data"]["isActive"], false);
        assert!(is_api_timestamp(&details["data"]["deletedAt"]));
    }

    async fn delete_webhook_twice_is_a_404(backend) {
        let app = TestApp::spawn(backend).await;
        let created = app.create_webhook(DOC_URL, &DOC_EVENTS).await;
        let path = app.project_path(&format!("/webhooks/{}", created["id"].as_str().unwrap()));
        app.call(Method::DELETE, &path, Some(&app.key), None).await;
        let again = app.call(Method::DELETE, &path, Some(&app.key), None).await;
        assert_error(again, 404, "not_found").await;
    }

    async fn delete_of_an_unknown_webhook_is_a_404(backend) {
        let app = TestApp::spawn(backend).await;
        let path = app.project_path(&format!("/webhooks/{}", uuid::Uuid::new_v4()));
        let response = app.call(Method::DELETE, &path, Some(&app.key), None).await;
        assert_error(response, 404, "not_found").await;
    }

    async fn a_webhook_of_another_project_is_a_404_for_every_operation(backend) {
        let app = TestApp::spawn(backend).await;
        let (other_project, other_key) = app.other_project().await;
        let created = app.create_webhook(DOC_URL, &DOC_EVENTS).await;
        let id = created["id"].as_str().unwrap();
        let path = format!("/api/v2/projects/{other_project}/webhooks/{id}");
        let key = Some(other_key.as_str());
        assert_error(app.call(Method::GET, &path, key, None).await, 404, "not_found").await;
        let patch = Some(json!({ "events": ["action.updated"] }));
        assert_error(app.call(Method::PATCH, &path, key, patch).await, 404, "not_found").await;
        let rotate = format!("{path}/rotate-secret");
        assert_error(app.call(Method::POST, &rotate, key, None).await, 404, "not_found").await;
        assert_error(app.call(Method::DELETE, &path, key, None).await, 404, "not_found").await;

        let own = app.project_path(&format!("/webhooks/{id}"));
        let (_, details) = status_and_json(app.get(&own).await).await;
        assert_eq!(details["data"]["isActive"], true, "the webhook is untouched");
        assert_eq!(details["data"]["events"], json!(DOC_EVENTS));
    }

    async fn rotate_secret_returns_a_new_secret_and_changes_the_preview(backend) {
        let app = TestApp::spawn(backend).await;
        let created = app.create_webhook(DOC_URL, &DOC_EVENTS).await;
        let path = app.project_path(&format!("/webhooks/{}", created["id"].as_str().unwrap()));
        let response = app
            .call(Method::POST, &format!("{path}/rotate-secret"), Some(&app.key), None)
            .await;
        let (status, body) = status_and_json(response).await;
        assert_eq!(status, 200);
        assert_eq!(keys(&body), ["data", "meta"]);
        assert_eq!(keys(&body["data"]), ["secret", "standardWebhooksSecret"]);
        let secret = body["data"]["secret"].as_str().unwrap();
        assert!(is_lower_hex_64(&body["data"]["secret"]));
        assert_ne!(secret, created["secret"].as_str().unwrap());
        assert_eq!(body["meta"]["projectId"], app.project_id.to_string());
        assert!(is_api_timestamp(&body["meta"]["timestamp"]));

        let (_, details) = status_and_json(app.get(&path).await).await;
        let expected_preview = format!("\u{2026}{}", &secret[60..]);
        assert_eq!(details["data"]["secretPreview"], expected_preview);
        let webhook = app
            .store
            .get_webhook(app.project_id, WebhookKind::Webhook, created["id"].as_str().unwrap().parse().unwrap())
            .await
            .unwrap();
        assert_eq!(webhook.secret.expose(), secret, "the stored secret is the new one");
    }

    async fn rotate_secret_ignores_a_body_and_needs_none(backend) {
        let app = TestApp::spawn(backend).await;
        let created = app.create_webhook(DOC_URL, &DOC_EVENTS).await;
        let path = app.project_path(&format!(
            "/webhooks/{}/rotate-secret",
            created["id"].as_str().unwrap()
        ));
        let with_body = app.post(&path, json!({ "unexpected": true })).await;
        assert_eq!(with_body.status(), 200);
        let without = app.call(Method::POST, &path, Some(&app.key), None).await;
        assert_eq!(without.status(), 200);
    }

    async fn rotate_secret_of_a_deleted_or_unknown_webhook_is_a_404(backend) {
        let app = TestApp::spawn(backend).await;
        let created = app.create_webhook(DOC_URL, &DOC_EVENTS).await;
        let path = app.project_path(&format!("/webhooks/{}", created["id"].as_str().unwrap()));
        app.call(Method::DELETE, &path, Some(&app.key), None).await;
        let rotate = app
            .call(Method::POST, &format!("{path}/rotate-secret"), Some(&app.key), None)
            .await;
        assert_error(rotate, 404, "not_found").await;
        let unknown = app.project_path(&format!("/webhooks/{}/rotate-secret", uuid::Uuid::new_v4()));
        let rotate = app.call(Method::POST, &unknown, Some(&app.key), None).await;
        assert_error(rotate, 404, "not_found").await;
    }

    async fn get_webhook_shows_preview_stats_and_no_secret(backend) {
        let app = TestApp::spawn(backend).await;
        let created = app.create_webhook(DOC_URL, &DOC_EVENTS).await;
        let path = app.project_path(&format!("/webhooks/{}", created["id"].as_str().unwrap()));
        let (status, body) = status_and_json(app.get(&path).await).await;
        assert_eq!(status, 200);
        let data = &body["data"];
        assert_eq!(
            keys(data),
            [
                "createdAt", "deletedAt", "description", "disabledAt", "disabledReason",
                "effectiveConcurrency", "enabled", "events", "filters", "headers", "id", "isActive",
                "lastModifiedBy", "lastModifiedVia", "maxConcurrency", "metadata", "mode", "pausedAt",
                "rateLimit", "retrySchedule", "secretPreview", "stats", "throttledUntil",
                "updatedAt", "url"
            ]
        );
        assert_eq!(data["filters"], json!({}));
        assert_eq!((&data["description"], &data["metadata"], &data["headers"]), (&Value::Null, &json!({}), &json!({})));
        let defaults = [&data["retrySchedule"], &data["rateLimit"], &data["maxConcurrency"], &data["throttledUntil"]];
        assert!(defaults.iter().all(|v| v.is_null()), "{data}");
        assert_eq!(data["effectiveConcurrency"], app.config.delivery.endpoint_concurrency);
        let secret = created["secret"].as_str().unwrap();
        assert_eq!(data["secretPreview"], format!("\u{2026}{}", &secret[60..]));
        assert_eq!(data["deletedAt"], Value::Null);
        assert_eq!(
            data["stats"],
            json!({
                "totalDeliveries": 0,
                "successfulDeliveries": 0,
                "failedDeliveries": 0,
                "lastSuccessAt": null,
                "lastFailureAt": null,
                "consecutiveFailures": 0
            })
        );
        assert!(!body.to_string().contains(secret), "the full secret is never read back");
    }

    async fn get_of_an_unknown_webhook_is_a_404(backend) {
        let app = TestApp::spawn(backend).await;
        let path = app.project_path(&format!("/webhooks/{}", uuid::Uuid::new_v4()));
        assert_error(app.get(&path).await, 404, "not_found").await;
    }

    async fn patch_changes_url_and_events_and_bumps_updated_at(backend) {
        let app = TestApp::spawn(backend).await;
        // Created a second ago, so a PATCH in the same millisecond cannot hide a missing bump.
        let a_second_ago = chrono::Utc::now() - chrono::TimeDelta::seconds(1);
        let seeded = app.store.create_webhook(
            app.project_id,
            hookrelay::store::NewWebhook {
                id: hookrelay::domain::WebhookId::generate(),
                kind: WebhookKind::Webhook,
                destination: hookrelay::domain::Destination::Push(
                    hookrelay::domain::EndpointUrl::parse(DOC_URL, Default::default()).unwrap(),
                ),
                events: hookrelay::domain::EventTypes::parse(&DOC_EVENTS).unwrap(),
                filters: Default::default(),
                secret: hookrelay::domain::WebhookSecret::generate(),
                created_at: a_second_ago,
                limits: Default::default(),
                labels: Default::default(),
            },
            25,
            crate::common::cli_audit("webhook.created"),
        ).await.unwrap();
        let path = app.project_path(&format!("/webhooks/{}", seeded.id));
        let created = status_and_json(app.get(&path).await).await.1["data"].clone();
        let body = json!({ "url": "https://93.184.215.14/new", "events": ["visibility.changed"] });
        let response = app.call(Method::PATCH, &path, Some(&app.key), Some(body)).await;
        let (status, patched) = status_and_json(response).await;
        assert_eq!(status, 200);
        assert_eq!(patched["data"]["url"], "https://93.184.215.14/new");
        assert_eq!(patched["data"]["events"], json!(["visibility.changed"]));
        assert_eq!(patched["data"]["createdAt"], created["createdAt"]);
        let at = |v: &Value| chrono::DateTime::parse_from_rfc3339(v.as_str().unwrap()).unwrap();
        assert!(at(&patched["data"]["updatedAt"]) > at(&created["updatedAt"]), "updatedAt bumped");
        assert!(patched["data"].get("secret").is_none());

        let only_events = json!({ "events": ["action.updated", "action.created"] });
        let response = app.call(Method::PATCH, &path, Some(&app.key), Some(only_events)).await;
        let (_, patched) = status_and_json(response).await;
        assert_eq!(patched["data"]["url"], "https://93.184.215.14/new", "url kept");
        assert_eq!(patched["data"]["events"], json!(["action.updated", "action.created"]));

        let (_, listed) = status_and_json(app.get(&app.project_path("/webhooks")).await).await;
        assert_eq!(listed["data"]["webhooks"][0]["url"], "https://93.184.215.14/new");
    }

    async fn patch_sets_replaces_and_clears_filters(backend) {
        let app = TestApp::spawn(backend).await;
        let created = app.create_webhook(DOC_URL, &DOC_EVENTS).await;
        let path = app.project_path(&format!("/webhooks/{}", created["id"].as_str().unwrap()));
        let set = json!({ "filters": { "priority": "high", "surface": "backlog,recommendations" } });
        let (status, patched) = status_and_json(app.call(Method::PATCH, &path, Some(&app.key), Some(set)).await).await;
        assert_eq!(status, 200, "{patched}");
        assert_eq!(
            patched["data"]["filters"],
            json!({ "priority": "high", "surface": "backlog,recommendations" })
        );
        assert_eq!(patched["data"]["events"], json!(DOC_EVENTS), "events kept");
        let cleared = json!({ "filters": {} });
        let (_, patched) = status_and_json(app.call(Method::PATCH, &path, Some(&app.key), Some(cleared)).await).await;
        assert_eq!(patched["data"]["filters"], json!({}));
        for bad in [
            json!({ "filters": "priority=high" }),
            json!({ "filters": { "priority": 1 } }),
            json!({ "filters": { "priority": " , " } }),
            json!({ "filters": { "prio\u{0}rity": "high" } }),
        ] {
            let response = app.call(Method::PATCH, &path, Some(&app.key), Some(bad.clone())).await;
            let body = assert_error(response, 400, "validation_error").await;
            assert_eq!(body["details"][0]["field"], "filters", "{bad}");
        }
    }

    async fn patch_validates_like_create_and_changes_nothing_on_error(backend) {
        let app = TestApp::spawn(backend).await;
        let created = app.create_webhook(DOC_URL, &DOC_EVENTS).await;
        let path = app.project_path(&format!("/webhooks/{}", created["id"].as_str().unwrap()));
        let bad = json!({ "url": "http://93.184.215.14/", "events": ["action.created"] });
        let response = app.call(Method::PATCH, &path, Some(&app.key), Some(bad)).await;
        let body = assert_error(response, 400, "validation_error").await;
        assert_eq!(body["details"][0]["field"], "url");
        let empty = app.call(Method::PATCH, &path, Some(&app.key), Some(json!({}))).await;
        assert_error(empty, 400, "validation_error").await;

        let (_, details) = status_and_json(app.get(&path).await).await;
        assert_eq!(details["data"]["url"], DOC_URL);
        assert_eq!(details["data"]["events"], json!(DOC_EVENTS));
        assert_eq!(details["data"]["updatedAt"], created["updatedAt"]);
    }

    async fn patch_of_a_deleted_webhook_is_a_404(backend) {
        let app = TestApp::spawn(backend).await;
        let created = app.create_webhook(DOC_URL, &DOC_EVENTS).await;
        let path = app.project_path(&format!("/webhooks/{}", created["id"].as_str().unwrap()));
        app.call(Method::DELETE, &path, Some(&app.key), None).await;
        let patch = json!({ "events": ["action.updated"] });
        let response = app.call(Method::PATCH, &path, Some(&app.key), Some(patch)).await;
        assert_error(response, 404, "not_found").await;
    }

    async fn the_active_webhook_cap_is_a_400_and_deleting_frees_a_slot(backend) {
        let app = TestApp::spawn_with(backend, |c| c.max_webhooks_per_project = 2).await;
        let first = app.create_webhook(DOC_URL, &DOC_EVENTS).await;
        app.create_webhook(DOC_URL, &DOC_EVENTS).await;
        let response = app
            .post(&app.project_path("/webhooks"), json!({ "url": DOC_URL, "events": DOC_EVENTS }))
            .await;
        let body = assert_error(response, 400, "webhook_limit_reached").await;
        assert!(body["message"].as_str().unwrap().contains(" 2 active webhooks"), "{body}");

        let path = app.project_path(&format!("/webhooks/{}", first["id"].as_str().unwrap()));
        app.call(Method::DELETE, &path, Some(&app.key), None).await;
        app.create_webhook(DOC_URL, &DOC_EVENTS).await;
    }

    async fn the_cap_holds_under_concurrent_creates(backend) {
        let app = TestApp::spawn_with(backend, |c| c.max_webhooks_per_project = 3).await;
        let url = app.url(&app.project_path("/webhooks"));
        let body = json!({ "url": DOC_URL, "events": DOC_EVENTS });
        let mut requests = tokio::task::JoinSet::new();
        for _ in 0..10 {
            let request = app.client.post(&url).bearer_auth(&app.key).json(&body);
            requests.spawn(async move { request.send().await.unwrap().status().as_u16() });
        }
        let statuses = requests.join_all().await;
        assert_eq!(statuses.iter().filter(|s| **s == 201).count(), 3, "{statuses:?}");
        assert_eq!(statuses.iter().filter(|s| **s == 400).count(), 7, "{statuses:?}");
    }

    async fn project_ids_are_independent_tenants(backend) {
        let app = TestApp::spawn(backend).await;
        let (other_project, other_key) = app.other_project().await;
        app.create_webhook(DOC_URL, &DOC_EVENTS).await;
        let path = format!("/api/v2/projects/{other_project}/webhooks");
        let response = app.call(Method::GET, &path, Some(&other_key), None).await;
        let (_, body) = status_and_json(response).await;
        assert_eq!(body["data"]["webhooks"], json!([]));
    }
}

backend_tests! {
    async fn query_values_are_hidden_from_read_only_keys_and_the_audit_log(backend) {
        let app = TestApp::spawn(backend).await;
        let url = "https://93.184.215.14/hook?token=s3cret&env=prod";
        let created = app.create_webhook(url, &DOC_EVENTS).await;
        assert_eq!(created["url"], url, "the creator sees what it sent");
        let path = app.project_path(&format!("/webhooks/{}", created["id"].as_str().unwrap()));
        let reader = app.key_with_scopes(&["webhooks.read"]).await;
        let hidden = "https://93.184.215.14/hook?token=***&env=***";
        let (_, listed) = status_and_json(app.call(Method::GET, &app.project_path("/webhooks"), Some(&reader), None).await).await;
        assert_eq!(listed["data"]["webhooks"][0]["url"], hidden);
        let (_, one) = status_and_json(app.call(Method::GET, &path, Some(&reader), None).await).await;
        assert_eq!(one["data"]["url"], hidden);
        let (_, full) = status_and_json(app.get(&path).await).await;
        assert_eq!(full["data"]["url"], url, "a key that may change webhooks sees them whole");
        let (_, audit) = status_and_json(app.get(&app.project_path("/audit-log")).await).await;
        let logged = audit.to_string();
        assert!(!logged.contains("s3cret") && logged.contains("token=***"), "{logged}");
    }
}
