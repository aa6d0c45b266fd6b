//! The dashboard in a real headless Chromium: every main task a person does there.

use hookrelay::domain::WebhookKind;
use std::time::Duration;

use base64::Engine;
use serde_json::json;

use crate::common::browser::Browser;
use crate::common::receiver::{Receiver, Reply};
use crate::common::{Backend, TestApp};

const WAIT: Duration = Duration::from_secs(15);

fn visible(id: &str) -> String {
    format!("!document.getElementById('{id}').hidden")
}

fn dialog_open(id: &str) -> String {
    format!("document.getElementById('{id}').open")
}

async fn stored_secret(app: &TestApp) -> String {
    let webhooks = app
        .store
        .list_webhooks(app.project_id, WebhookKind::Webhook, true)
        .await
        .unwrap();
    webhooks[0].secret.expose().to_owned()
}

#[tokio::test]
async fn the_dashboard_is_served_from_the_binary_with_a_strict_policy() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let page = app.get("/dashboard").await;
    assert_eq!(page.status(), 200);
    assert_eq!(page.headers()["content-type"], "text/html; charset=utf-8");
    let policy = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        policy.contains("default-src 'none'") && policy.contains("script-src 'self'"),
        "{policy}"
    );
    let html = page.text().await.unwrap();
    for external in ["src=\"http", "href=\"http", "src=\"//", "href=\"//"] {
        assert!(
            !html.contains(external),
            "the page loads nothing from elsewhere"
        );
    }
    for (asset, kind) in [
        ("app.js", "text/javascript"),
        ("app.css", "text/css"),
        ("favicon.svg", "image/svg+xml"),
    ] {
        let response = app.get(&format!("/dashboard/{asset}")).await;
        assert_eq!(response.status(), 200, "{asset}");
        assert!(
            response.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with(kind)
        );
    }
    crate::common::assert_error(app.get("/dashboard/secrets.txt").await, 404, "not_found").await;
}

#[tokio::test]
async fn a_person_manages_webhooks_in_the_dashboard() {
    let Some(browser) = Browser::start().await else {
        return;
    };
    let app = TestApp::spawn_with(Backend::Sqlite, |c| {
        c.allow_http = true;
        c.allow_private_targets = true;
        c.delivery.retry_max = Some(0);
        c.max_webhooks_per_project = 1;
    })
    .await;
    let mut receiver = Receiver::start().await;

    // Sign in: a wrong key is refused with a clear message, the right one opens the empty list.
    browser.goto(&app.url("/dashboard")).await;
    browser
        .wait_until(&visible("sign-in-view"), "the sign-in form")
        .await;
    assert_eq!(
        browser.eval("return document.title;", json!([])).await,
        "Webhooks · hookrelay"
    );
    browser.screenshot("01-sign-in").await;
    browser
        .type_into("#api-key", &format!("dtk_live_{}", "A".repeat(40)))
        .await;
    browser.click("#sign-in-form button[type=submit]").await;
    browser
        .wait_until(
            "document.getElementById('sign-in-error').textContent.includes('not valid')",
            "the wrong-key message",
        )
        .await;
    browser.type_into("#api-key", &app.key).await;
    browser.click("#sign-in-form button[type=submit]").await;
    browser
        .wait_until(&visible("empty-state"), "the empty state")
        .await;
    assert_eq!(
        browser.text("#project-label").await,
        "Test project",
        "the header names the project"
    );
    let url = browser.eval("return location.href;", json!([])).await;
    assert!(
        !url.as_str().unwrap().contains("dtk_live_"),
        "the key never goes in a URL"
    );
    browser.screenshot("02-empty").await;

    // Create: the client-side checks mirror the API's before anything is sent.
    browser.click("#create-button").await;
    browser
        .wait_until(&dialog_open("webhook-dialog"), "the create dialog")
        .await;
    browser.click("#webhook-submit").await;
    assert!(!browser.text("#url-error").await.is_empty());
    browser
        .type_into("#webhook-url", "ftp://example.com/hook")
        .await;
    browser.click("#webhook-submit").await;
    assert!(browser.text("#url-error").await.contains("https"));
    browser
        .type_into(
            "#webhook-url",
            &receiver.url("/from-dashboard?token=s3cr3t"),
        )
        .await;
    browser.click("#webhook-submit").await;
    assert!(
        browser
            .text("#events-error")
            .await
            .contains("at least one event")
    );
    browser.click("#event-2").await;
    browser.type_into("#webhook-rate-limit", "0").await;
    browser.click("#webhook-submit").await;
    assert!(
        browser
            .text("#rate-limit-error")
            .await
            .contains("1 to 10000")
    );
    browser
        .type_into("#webhook-description", "Orders to the warehouse")
        .await;
    browser
        .type_into("#webhook-headers", "no separator here")
        .await;
    browser.click("#webhook-submit").await;
    assert!(
        browser
            .text("#headers-error")
            .await
            .contains("name : value")
    );
    browser
        .type_into("#webhook-headers", "X-Api-Key: k-123456")
        .await;
    browser
        .type_into("#webhook-metadata", "team = warehouse")
        .await;
    browser
        .type_into("#webhook-filters", "priority = high")
        .await;
    browser.type_into("#webhook-rate-limit", "5").await;
    browser.type_into("#webhook-max-concurrency", "3").await;
    browser.click("#webhook-submit").await;
    browser
        .wait_until(&dialog_open("secret-dialog"), "the secret dialog")
        .await;
    let created = &app
        .store
        .list_webhooks(app.project_id, WebhookKind::Webhook, true)
        .await
        .unwrap()[0];
    assert_eq!(
        (created.limits.rate_limit, created.limits.max_concurrency),
        (Some(5), Some(3)),
        "the form's limits reach the webhook"
    );
    assert_eq!(
        created.labels.description.as_deref(),
        Some("Orders to the warehouse")
    );
    assert_eq!(
        created
            .labels
            .metadata
            .entries()
            .get("team")
            .map(String::as_str),
        Some("warehouse")
    );
    assert_eq!(
        created.labels.headers.iter().collect::<Vec<_>>(),
        [("x-api-key", "k-123456")]
    );
    assert_eq!(
        created.filters.to_pairs(),
        [("priority".to_owned(), "high".to_owned())],
        "the form's filters reach the webhook"
    );
    let secret = browser.value("#secret-value").await;
    assert_eq!(
        secret,
        stored_secret(&app).await,
        "the dialog shows the real secret"
    );
    assert!(
        browser
            .text("#secret-warning")
            .await
            .contains("not be shown again")
    );
    assert_eq!(
        browser.value("#standard-secret-value").await,
        format!(
            "whsec_{}",
            base64::engine::general_purpose::STANDARD.encode(secret.as_bytes())
        ),
        "both forms of the secret are shown"
    );
    browser.screenshot("03-secret").await;
    browser.click("#secret-dialog [data-close]").await;
    assert_eq!(
        browser.value("#secret-value").await,
        "",
        "the secret leaves the page with the dialog"
    );
    assert_eq!(browser.value("#standard-secret-value").await, "");
    browser
        .wait_until(
            "document.querySelectorAll('#webhook-rows tr').length === 1",
            "the new row",
        )
        .await;
    assert!(
        browser
            .text("#webhook-rows [data-action=rotate]")
            .await
            .contains("Rotate secret"),
        "the rotate action says what it does"
    );
    assert!(
        browser.count("#webhook-rows td.url wbr").await > 0,
        "the URL may break after / . and -"
    );
    // A query value may be a credential: the page shows it as ***.
    let row = browser.text("#webhook-rows tr").await;
    assert!(row.contains("/from-dashboard?token=***"), "{row}");
    assert!(!row.contains("s3cr3t"), "{row}");
    browser.screenshot("04-list").await;

    // The API's own refusal (here: the project's webhook cap) is shown in the dialog.
    browser.click("#create-button").await;
    browser
        .wait_until(&dialog_open("webhook-dialog"), "the create dialog")
        .await;
    browser
        .type_into("#webhook-url", &receiver.url("/second"))
        .await;
    browser.click("#event-0").await;
    browser.click("#webhook-submit").await;
    browser
        .wait_until(
            "document.getElementById('form-error').textContent.includes('active webhooks')",
            "the API's error",
        )
        .await;
    browser.click("#webhook-dialog [data-close]").await;

    // Rotate: a confirmation, then the new secret, once.
    browser.click("#webhook-rows [data-action=rotate]").await;
    browser
        .wait_until(&dialog_open("confirm-dialog"), "the rotate confirmation")
        .await;
    assert!(
        browser
            .text("#confirm-text")
            .await
            .contains("stops working at once")
    );
    browser.click("#confirm-ok").await;
    browser
        .wait_until(&dialog_open("secret-dialog"), "the rotated secret")
        .await;
    let rotated = browser.value("#secret-value").await;
    assert_ne!(rotated, secret);
    assert_eq!(rotated, stored_secret(&app).await);
    browser.click("#secret-dialog [data-close]").await;

    // Open it, send a test event and watch it arrive and show up in the log.
    browser.click("#webhook-rows a").await;
    browser
        .wait_until(&visible("detail-view"), "the webhook page")
        .await;
    let title = browser.text("#detail-title").await;
    assert!(title.ends_with("/from-dashboard?token=***"), "{title}");
    assert!(
        browser
            .text("#detail-facts")
            .await
            .contains("Orders to the warehouse"),
        "the description from the form"
    );

    // Pause and resume: the webhook's state follows, and the button says what it will do.
    browser.click("#pause-button").await;
    browser
        .wait_until(
            "document.getElementById('pause-button').textContent === 'Resume'",
            "the paused state",
        )
        .await;
    assert!(browser.text("#detail-facts").await.contains("paused"));
    let paused = &app
        .store
        .list_webhooks(app.project_id, WebhookKind::Webhook, true)
        .await
        .unwrap()[0];
    assert!(paused.paused_at.is_some(), "the pause reached the webhook");
    browser.screenshot("04b-paused").await;
    browser.click("#pause-button").await;
    browser
        .wait_until(
            "document.getElementById('pause-button').textContent === 'Pause'",
            "the resumed state",
        )
        .await;
    let resumed = &app
        .store
        .list_webhooks(app.project_id, WebhookKind::Webhook, true)
        .await
        .unwrap()[0];
    assert!(
        resumed.paused_at.is_none(),
        "the resume reached the webhook"
    );
    browser.click("#test-button").await;
    let request = receiver.expect(WAIT).await;
    assert_eq!(request.header("x-devtune-event"), "webhook.test");
    browser
        .wait_until(
            "document.querySelector('#delivery-list li[data-status=succeeded]')",
            "a succeeded delivery",
        )
        .await;
    browser
        .click("#delivery-list li button[aria-controls]")
        .await;
    browser
        .wait_until(
            "document.querySelector('#delivery-list .attempt')",
            "the attempts",
        )
        .await;
    assert!(
        browser
            .text("#delivery-list .attempt")
            .await
            .contains("HTTP 200")
    );
    // The test answered synchronously; the expanded row shows the payload and the headers.
    browser
        .wait_until(
            "document.getElementById('detail-status').textContent.includes('Test delivered: HTTP 200')",
            "the synchronous test result",
        )
        .await;
    let payload = browser.text("#delivery-list .payload pre").await;
    let sent: serde_json::Value = serde_json::from_slice(&request.body).unwrap();
    let shown: serde_json::Value = serde_json::from_str(&payload).expect("the payload, as JSON");
    assert_eq!(shown, sent, "the payload as sent");
    assert!(
        browser
            .text("#delivery-list .attempt .headers")
            .await
            .contains(&format!(
                "x-devtune-delivery: {}",
                request.header("x-devtune-delivery")
            ))
    );
    assert_eq!(
        browser.text("#delivery-list li .delivery-id").await,
        request.header("x-devtune-delivery"),
        "each row shows its delivery id"
    );
    let stamp = browser
        .eval(
            "return document.querySelector('#delivery-list li time').getAttribute('title');",
            json!([]),
        )
        .await;
    assert!(
        crate::common::is_api_timestamp(&stamp),
        "the full timestamp on hover: {stamp}"
    );
    let shown_time = browser.text("#delivery-list li time").await;
    assert!(
        shown_time.matches(':').count() >= 2,
        "times show seconds: {shown_time}"
    );
    browser.screenshot("05-delivery-log").await;

    // A failed delivery, retried from its Retry button once the endpoint is healthy again.
    receiver.reply_by_default(Reply::Status(500));
    browser.click("#test-button").await;
    browser
        .wait_until(
            "document.getElementById('detail-status').textContent.includes('Test failed: HTTP 500')",
            "the failed test's result",
        )
        .await;
    browser
        .wait_until(
            "document.querySelector('#delivery-list li[data-status=failed]')",
            "a failed delivery",
        )
        .await;
    receiver.reply_by_default(Reply::Status(200));
    browser
        .click("#delivery-list li[data-status=failed] [data-action=retry]")
        .await;
    browser
        .wait_until(
            "document.querySelectorAll('#delivery-list li[data-status=succeeded]').length === 2",
            "the retried delivery to succeed",
        )
        .await;

    // Recover: a preview of how many failed, then they are sent again.
    receiver.reply_by_default(Reply::Status(500));
    browser.click("#test-button").await;
    browser
        .wait_until(
            "document.querySelector('#delivery-list li[data-status=failed]')",
            "another failed delivery",
        )
        .await;
    receiver.reply_by_default(Reply::Status(200));
    browser.click("#recover-button").await;
    browser
        .wait_until(&dialog_open("confirm-dialog"), "the recover preview")
        .await;
    let preview = browser.text("#confirm-text").await;
    assert!(preview.starts_with("1 failed delivery"), "{preview}");
    browser.screenshot("05b-recover-preview").await;
    browser.click("#confirm-ok").await;
    browser
        .wait_until(
            "document.querySelectorAll('#delivery-list li[data-status=succeeded]').length === 3",
            "the recovered delivery to succeed",
        )
        .await;
    assert!(browser.text("#detail-status").await.contains("Queued 1"));

    // Edit the events and the metadata; the custom header, left alone, stays.
    browser.click("#edit-button").await;
    browser
        .wait_until(&dialog_open("webhook-dialog"), "the edit dialog")
        .await;
    assert_eq!(browser.value("#webhook-metadata").await, "team = warehouse");
    assert_eq!(
        browser.value("#webhook-headers").await,
        "",
        "header values are never shown"
    );
    browser.click("#event-1").await;
    browser
        .type_into("#webhook-metadata", "team = shipping")
        .await;
    assert_eq!(browser.value("#webhook-filters").await, "priority = high");
    browser
        .type_into("#webhook-filters", "priority = high,urgent")
        .await;
    browser.click("#webhook-submit").await;
    browser
        .wait_until(
            "document.getElementById('detail-facts').textContent.includes('visibility.changed')",
            "the new events",
        )
        .await;
    let edited = &app
        .store
        .list_webhooks(app.project_id, WebhookKind::Webhook, true)
        .await
        .unwrap()[0];
    assert_eq!(
        edited
            .labels
            .metadata
            .entries()
            .get("team")
            .map(String::as_str),
        Some("shipping")
    );
    assert_eq!(
        edited.labels.headers.iter().collect::<Vec<_>>(),
        [("x-api-key", "k-123456")],
        "an edit without new headers keeps them"
    );
    assert_eq!(
        edited.filters.to_pairs(),
        [("priority".to_owned(), "high,urgent".to_owned())]
    );

    // Narrow screens: the webhook page does not scroll sideways.
    browser.set_size(360, 740).await;
    browser
        .wait_until(
            "document.documentElement.scrollWidth <= window.innerWidth",
            "a 360 px webhook page",
        )
        .await;
    browser.screenshot("05b-narrow-webhook").await;
    browser.set_size(1280, 800).await;

    // Delete from the list: the row goes, and comes back as inactive without the filter.
    browser.click("#back-link").await;
    browser.wait_until(&visible("list-view"), "the list").await;
    browser.click("#webhook-rows [data-action=delete]").await;
    browser
        .wait_until(&dialog_open("confirm-dialog"), "the delete confirmation")
        .await;
    browser.click("#confirm-ok").await;
    browser
        .wait_until(&visible("empty-state"), "the row to go")
        .await;
    browser.click("#hide-inactive").await;
    browser
        .wait_until(
            "document.querySelector('#webhook-rows .badge.inactive')",
            "the inactive row",
        )
        .await;
    browser.screenshot("06-inactive").await;

    // Narrow screens: nothing spills sideways, and every cell of a row is in view.
    browser.set_size(360, 740).await;
    browser
        .wait_until(
            "document.documentElement.scrollWidth <= window.innerWidth",
            "a 360 px layout",
        )
        .await;
    let in_view = browser
        .eval(
            "const row = document.querySelector('#webhook-rows tr'); \
             return [...row.querySelectorAll('td')] \
               .every((e) => e.getBoundingClientRect().right <= window.innerWidth);",
            json!([]),
        )
        .await;
    assert_eq!(in_view, true, "rows stack on narrow screens");
    browser.screenshot("07-narrow").await;

    browser.click("#sign-out").await;
    browser
        .wait_until(
            &visible("sign-in-view"),
            "the sign-in form after signing out",
        )
        .await;
    let stored = browser
        .eval("return sessionStorage.length;", json!([]))
        .await;
    assert_eq!(stored, 0, "signing out forgets the key");
    browser.close().await;
}

#[tokio::test]
async fn a_person_adds_an_alert_endpoint_and_tries_it_in_the_dashboard() {
    let Some(browser) = Browser::start().await else {
        return;
    };
    let app = TestApp::spawn_with(Backend::Sqlite, |c| {
        c.allow_http = true;
        c.allow_private_targets = true;
    })
    .await;
    let mut receiver = Receiver::start().await;
    browser.goto(&app.url("/dashboard")).await;
    browser
        .wait_until(&visible("sign-in-view"), "the sign-in form")
        .await;
    browser.type_into("#api-key", &app.key).await;
    browser.click("#sign-in-form button[type=submit]").await;
    browser
        .wait_until(
            "document.getElementById('alerts-status').textContent.includes('nobody hears')",
            "the empty alert endpoints",
        )
        .await;

    // The form checks the URL and the notices before anything is sent.
    browser.click("#alert-create-button").await;
    browser
        .wait_until(&dialog_open("alert-dialog"), "the alert endpoint dialog")
        .await;
    browser.click("#alert-form button[type=submit]").await;
    assert!(!browser.text("#alert-url-error").await.is_empty());
    browser.type_into("#alert-url", &receiver.url("/ops")).await;
    for n in 0..3 {
        browser.click(&format!("#notice-{n}")).await;
    }
    browser.click("#alert-form button[type=submit]").await;
    assert!(
        browser
            .text("#alert-events-error")
            .await
            .contains("at least one notice")
    );
    browser.click("#notice-1").await;
    browser.click("#alert-form button[type=submit]").await;
    browser
        .wait_until(&dialog_open("secret-dialog"), "the secret dialog")
        .await;
    let stored = app
        .store
        .list_webhooks(app.project_id, WebhookKind::AlertEndpoint, false)
        .await
        .unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(
        stored[0]
            .events
            .iter()
            .map(|e| e.as_str())
            .collect::<Vec<_>>(),
        ["webhook.disabled"]
    );
    assert_eq!(
        browser.value("#secret-value").await,
        stored[0].secret.expose(),
        "the dialog shows the real secret"
    );
    browser.click("#secret-dialog [data-close]").await;
    browser
        .wait_until(
            "document.querySelectorAll('#alert-list .alert-endpoint').length === 1",
            "the new alert endpoint",
        )
        .await;
    assert!(
        browser
            .text("#alert-list")
            .await
            .contains("webhook.disabled")
    );

    // A test reaches the receiver, says so, and shows up among the endpoint's notices.
    browser.click("#alert-list [data-action=test]").await;
    let request = receiver.expect(WAIT).await;
    assert_eq!(request.path, "/ops");
    assert_eq!(request.header("x-devtune-event"), "webhook.test");
    browser
        .wait_until(
            "document.getElementById('alerts-status').textContent.includes('Test delivered')",
            "the test's result",
        )
        .await;
    browser.click("#alert-list button[aria-controls]").await;
    browser
        .wait_until(
            "document.querySelector('#alert-list [data-event=\"webhook.test\"]')",
            "the test among the notices",
        )
        .await;
    browser.screenshot("08-alert-endpoints").await;

    browser.click("#alert-list [data-action=delete]").await;
    browser
        .wait_until(&dialog_open("confirm-dialog"), "the delete confirmation")
        .await;
    assert!(browser.text("#confirm-text").await.contains("notices"));
    browser.click("#confirm-ok").await;
    browser
        .wait_until(
            "document.querySelectorAll('#alert-list .alert-endpoint').length === 0",
            "the endpoint to go",
        )
        .await;
    browser.close().await;
}

#[tokio::test]
async fn a_person_creates_a_pull_webhook_and_watches_its_queue() {
    let Some(browser) = Browser::start().await else {
        return;
    };
    let app = TestApp::spawn(Backend::Sqlite).await;
    browser.goto(&app.url("/dashboard")).await;
    browser
        .wait_until(&visible("sign-in-view"), "the sign-in form")
        .await;
    browser.type_into("#api-key", &app.key).await;
    browser.click("#sign-in-form button[type=submit]").await;
    browser
        .wait_until(&visible("empty-state"), "the empty list")
        .await;

    // Choosing pull hides the URL and the push limits; the webhook is created without them.
    browser.click("#create-button").await;
    browser
        .wait_until(&dialog_open("webhook-dialog"), "the webhook dialog")
        .await;
    browser.click("input[name=mode][value=pull]").await;
    browser
        .wait_until(
            "document.getElementById('push-url').hidden && document.getElementById('push-limits').hidden",
            "the push-only fields hidden",
        )
        .await;
    browser.click("#event-2").await;
    browser.click("#webhook-form button[type=submit]").await;
    browser
        .wait_until(&dialog_open("secret-dialog"), "the secret dialog")
        .await;
    let stored = app
        .store
        .list_webhooks(app.project_id, WebhookKind::Webhook, false)
        .await
        .unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].mode.as_str(), "pull");
    assert_eq!(stored[0].url, None);
    assert_eq!(
        browser.value("#secret-value").await,
        stored[0].secret.expose()
    );
    browser.click("#secret-dialog [data-close]").await;

    // The list says what it is and how much waits for its poller.
    let event = stored[0].events[0].as_str();
    let published = app
        .post(
            &app.project_path("/events"),
            json!({ "event": event, "data": {} }),
        )
        .await;
    assert_eq!(published.status(), 202);
    browser.goto(&app.url("/dashboard")).await;
    browser
        .wait_until(
            "document.querySelector('#webhook-rows .queue')?.textContent === '1 due, 0 scheduled, 0 leased'",
            "the pull webhook's queue in the list",
        )
        .await;
    assert_eq!(browser.text("#webhook-rows [data-mode=pull]").await, "pull");
    browser.screenshot("09-pull-webhook").await;

    browser.click("#webhook-rows a").await;
    browser
        .wait_until(&visible("detail-view"), "the webhook's page")
        .await;
    browser
        .wait_until(
            "document.getElementById('detail-facts').textContent.includes('1 due, 0 scheduled, 0 leased')",
            "the queue among the facts",
        )
        .await;
    assert!(
        browser
            .text("#detail-title")
            .await
            .starts_with("Pull webhook")
    );
    browser.close().await;
}
