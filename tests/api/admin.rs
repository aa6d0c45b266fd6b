//! The /admin/v1 provisioning API: off without a token, guarded by it, and end to end.

use reqwest::Method;
use serde_json::{Value, json};

use crate::backend_tests;
use crate::common::{TestApp, assert_error, status_and_json};

const TOKEN: &str = "test-admin-token-0123456789abcdefghij";

async fn admin(
    app: &TestApp,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> reqwest::Response {
    app.call(method, path, Some(TOKEN), body).await
}

async fn spawn_with_admin(backend: crate::common::Backend) -> TestApp {
    TestApp::spawn_with(backend, |c| c.admin_token = Some(TOKEN.into())).await
}

backend_tests! {
    async fn admin_routes_do_not_exist_without_a_token(backend) {
        let app = TestApp::spawn(backend).await;
        let response = admin(&app, Method::POST, "/admin/v1/accounts", Some(json!({"name": "a"}))).await;
        assert_error(response, 404, "not_found").await;
        let blank = TestApp::spawn_with(backend, |c| c.admin_token = Some("  ".into())).await;
        let response = blank.call(Method::POST, "/admin/v1/accounts", Some("  "), Some(json!({"name": "a"}))).await;
        assert_error(response, 404, "not_found").await;
    }

    async fn admin_routes_refuse_a_missing_or_wrong_token(backend) {
        let app = spawn_with_admin(backend).await;
        let body = Some(json!({ "name": "acme" }));
        let missing = app.call(Method::POST, "/admin/v1/accounts", None, body.clone()).await;
        assert_error(missing, 401, "unauthorized").await;
        let wrong = app.call(Method::POST, "/admin/v1/accounts", Some("not-the-token"), body.clone()).await;
        assert_error(wrong, 401, "unauthorized").await;
        let api_key = app.call(Method::POST, "/admin/v1/accounts", Some(&app.key), body).await;
        assert_error(api_key, 401, "unauthorized").await;
    }

    async fn admin_provisions_a_tenant_whose_key_works_until_revoked(backend) {
        let app = spawn_with_admin(backend).await;
        let (status, account) = status_and_json(
            admin(&app, Method::POST, "/admin/v1/accounts", Some(json!({ "name": "Acme" }))).await,
        )
        .await;
        assert_eq!(status, 201);
        assert_eq!(crate::common::keys(&account["data"]), ["id"]);
        let account_id = account["data"]["id"].as_str().unwrap();
        let project_body = json!({ "accountId": account_id, "name": "Production" });
        let (status, project) = status_and_json(
            admin(&app, Method::POST, "/admin/v1/projects", Some(project_body)).await,
        )
        .await;
        assert_eq!(status, 201);
        let project_id = project["data"]["id"].as_str().unwrap();
        let keys_path = format!("/admin/v1/projects/{project_id}/keys");
        let (status, key) = status_and_json(
            admin(&app, Method::POST, &keys_path, Some(json!({ "scopes": ["webhooks.read"] }))).await,
        )
        .await;
        assert_eq!(status, 201);
        assert_eq!(crate::common::keys(&key["data"]), ["id", "key"]);
        let plaintext = key["data"]["key"].as_str().unwrap();
        assert!(plaintext.starts_with("dtk_live_") && plaintext.len() >= 41);

        let webhooks = format!("/api/v2/projects/{project_id}/webhooks");
        let list = app.call(Method::GET, &webhooks, Some(plaintext), None).await;
        assert_eq!(list.status(), 200);
        let create = app
            .call(Method::POST, &webhooks, Some(plaintext),
                  Some(json!({ "url": "https://93.184.215.14/", "events": ["action.created"] })))
            .await;
        assert_error(create, 403, "forbidden").await;

        let revoke_path = format!("/admin/v1/keys/{}", key["data"]["id"].as_str().unwrap());
        let (status, revoked) = status_and_json(admin(&app, Method::DELETE, &revoke_path, None).await).await;
        assert_eq!(status, 200);
        assert_eq!(revoked["data"], json!({ "id": key["data"]["id"], "revoked": true }));
        let after = app.call(Method::GET, &webhooks, Some(plaintext), None).await;
        assert_error(after, 401, "unauthorized").await;
        let again = admin(&app, Method::DELETE, &revoke_path, None).await;
        assert_error(again, 404, "not_found").await;
    }

    async fn a_key_revoked_through_one_instance_is_refused_by_another_from_the_answer_on(backend) {
        let app = spawn_with_admin(backend).await;
        let peer = app.spawn_peer().await;
        let keys_path = format!("/admin/v1/projects/{}/keys", app.project_id);
        let (status, key) = status_and_json(admin(&app, Method::POST, &keys_path, None).await).await;
        assert_eq!(status, 201);
        let plaintext = key["data"]["key"].as_str().unwrap().to_owned();
        let on_peer = || app.client.get(format!("{peer}{}", app.project_path("/webhooks"))).bearer_auth(&plaintext).send();
        // Checked a moment ago, the key is in the peer's cache as live.
        for _ in 0..3 {
            assert_eq!(on_peer().await.unwrap().status(), 200);
        }
        let revoke_path = format!("/admin/v1/keys/{}", key["data"]["id"].as_str().unwrap());
        assert_eq!(admin(&app, Method::DELETE, &revoke_path, None).await.status(), 200);
        assert_error(on_peer().await.unwrap(), 401, "unauthorized").await;
    }

    async fn admin_key_without_a_body_gets_every_scope(backend) {
        let app = spawn_with_admin(backend).await;
        let path = format!("/admin/v1/projects/{}/keys", app.project_id);
        let (status, key) = status_and_json(admin(&app, Method::POST, &path, None).await).await;
        assert_eq!(status, 201);
        let plaintext = key["data"]["key"].as_str().unwrap();
        let create = app
            .call(Method::POST, &app.project_path("/webhooks"), Some(plaintext),
                  Some(json!({ "url": "https://93.184.215.14/", "events": ["action.created"] })))
            .await;
        assert_eq!(create.status(), 201);
        let list = app.call(Method::GET, &app.project_path("/webhooks"), Some(plaintext), None).await;
        assert_eq!(list.status(), 200);
    }

    async fn admin_validates_its_input(backend) {
        let app = spawn_with_admin(backend).await;
        let no_name = admin(&app, Method::POST, "/admin/v1/accounts", Some(json!({}))).await;
        let body = assert_error(no_name, 400, "validation_error").await;
        assert_eq!(body["details"][0]["field"], "name");
        let blank = admin(&app, Method::POST, "/admin/v1/accounts", Some(json!({ "name": "  " }))).await;
        assert_error(blank, 400, "validation_error").await;

        let bad_project = admin(&app, Method::POST, "/admin/v1/projects",
                                Some(json!({ "accountId": "nope", "name": 5 }))).await;
        let body = assert_error(bad_project, 400, "validation_error").await;
        let fields: Vec<&str> = body["details"].as_array().unwrap().iter()
            .map(|d| d["field"].as_str().unwrap()).collect();
        assert_eq!(fields, ["accountId", "name"]);

        let unknown_account = admin(&app, Method::POST, "/admin/v1/projects",
            Some(json!({ "accountId": uuid::Uuid::new_v4(), "name": "p" }))).await;
        assert_error(unknown_account, 404, "not_found").await;

        let unknown_project = format!("/admin/v1/projects/{}/keys", uuid::Uuid::new_v4());
        assert_error(admin(&app, Method::POST, &unknown_project, None).await, 404, "not_found").await;

        let keys_path = format!("/admin/v1/projects/{}/keys", app.project_id);
        for scopes in [json!(["webhooks.admin"]), json!([]), json!("webhooks.read"), json!(["events.write", "events.write"])] {
            let response = admin(&app, Method::POST, &keys_path, Some(json!({ "scopes": scopes }))).await;
            let body = assert_error(response, 400, "validation_error").await;
            assert_eq!(body["details"][0]["field"], "scopes", "{scopes}");
        }

        let unknown_key = format!("/admin/v1/keys/{}", uuid::Uuid::new_v4());
        assert_error(admin(&app, Method::DELETE, &unknown_key, None).await, 404, "not_found").await;
        assert_error(admin(&app, Method::DELETE, "/admin/v1/keys/xyz", None).await, 400, "bad_request").await;
    }
}

#[tokio::test]
async fn a_short_admin_token_is_refused_at_start() {
    let db = crate::common::TestDb::create(crate::common::Backend::Sqlite).await;
    let mut config = crate::common::test_config(&db.url);
    config.admin_token = Some("x".repeat(31));
    let refused = hookrelay::App::build(&config)
        .await
        .err()
        .expect("a short token is refused");
    assert!(
        refused.to_string().contains("at least 32 characters"),
        "{refused}"
    );
    config.admin_token = Some("x".repeat(32));
    assert!(hookrelay::App::build(&config).await.is_ok());
}
