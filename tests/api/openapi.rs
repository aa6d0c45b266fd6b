//! openapi/openapi.yaml and the router describe the same set of routes.

use std::collections::BTreeSet;

use hookrelay::http::route_inventory;
use reqwest::Method;

use crate::backend_tests;
use crate::common::TestApp;

const SPEC: &str = include_str!("../../openapi/openapi.yaml");

/// (METHOD, path) pairs under `paths:`: paths at two spaces, methods at four.
fn spec_routes() -> BTreeSet<(String, String)> {
    let mut routes = BTreeSet::new();
    let mut in_paths = false;
    let mut current = None;
    for line in SPEC.lines() {
        if !line.starts_with(' ') && !line.trim().is_empty() {
            in_paths = line == "paths:";
            continue;
        }
        if !in_paths {
            continue;
        }
        if let Some(path) = line.strip_prefix("  /").and_then(|l| l.strip_suffix(':')) {
            current = Some(format!("/{path}"));
        } else if let Some(method) = line.strip_prefix("    ").and_then(|l| l.strip_suffix(':')) {
            let known = ["get", "post", "put", "patch", "delete", "head", "options"];
            if known.contains(&method) {
                let path = current.clone().expect("a method under a path");
                routes.insert((method.to_uppercase(), path));
            }
        }
    }
    routes
}

fn router_routes() -> BTreeSet<(String, String)> {
    route_inventory()
        .into_iter()
        .map(|(method, path)| (method.to_string(), path.to_owned()))
        .collect()
}

#[test]
fn the_spec_and_the_router_list_the_same_routes() {
    let spec = spec_routes();
    assert!(
        spec.len() >= 13,
        "the scanner found too few routes: {spec:?}"
    );
    let router = router_routes();
    let missing_in_spec: Vec<_> = router.difference(&spec).collect();
    let missing_in_router: Vec<_> = spec.difference(&router).collect();
    assert!(
        missing_in_spec.is_empty(),
        "routes served but not documented: {missing_in_spec:?}"
    );
    assert!(
        missing_in_router.is_empty(),
        "routes documented but not served: {missing_in_router:?}"
    );
}

#[test]
fn the_devtune_operations_keep_their_operation_ids() {
    for id in [
        "createWebhook",
        "listWebhooks",
        "deleteWebhook",
        "rotateWebhookSecret",
    ] {
        assert!(
            SPEC.contains(&format!("operationId: {id}\n")),
            "{id} is missing"
        );
    }
}

backend_tests! {
    async fn every_documented_route_is_served(backend) {
        let app = TestApp::spawn_with(backend, |c| c.admin_token = Some("t".repeat(32))).await;
        for (method, path) in spec_routes() {
            let concrete = path
                .replace("{projectId}", &app.project_id.to_string())
                .replace("{webhookId}", &uuid::Uuid::new_v4().to_string())
                .replace("{keyId}", &uuid::Uuid::new_v4().to_string())
                .replace("{deliveryId}", &uuid::Uuid::new_v4().to_string())
                .replace("{asset}", "app.js");
            let method = Method::from_bytes(method.as_bytes()).unwrap();
            let response = app.call(method.clone(), &concrete, None, None).await;
            let expected = if path.starts_with("/api/") || path.starts_with("/admin/") { 401 } else { 200 };
            assert_eq!(response.status().as_u16(), expected, "{method} {path}");
        }
    }

    async fn the_served_spec_is_the_repository_file(backend) {
        let app = TestApp::spawn(backend).await;
        let response = app.get("/openapi.yaml").await;
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["content-type"], "application/yaml");
        assert_eq!(response.text().await.unwrap(), SPEC);
    }
}
