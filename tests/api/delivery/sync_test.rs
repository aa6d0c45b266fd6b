//! Testing an endpoint synchronously, and seeing what each attempt sent.

use super::*;

async fn test_and_wait(app: &TestApp, webhook: &Value) -> (u16, Value) {
    let path = app.project_path(&format!(
        "/webhooks/{}/test?wait=true",
        webhook["id"].as_str().unwrap()
    ));
    status_and_json(app.call(Method::POST, &path, Some(&app.key), None).await).await
}

backend_tests! {
    async fn a_synchronous_test_answers_with_how_the_attempt_went(backend) {
        let app = spawn(backend, |c| {
            c.delivery.timeout_ms = 500;
            c.delivery.retry_max = Some(0);
        })
        .await;
        let mut receiver = Receiver::start().await;
        let webhook = app.create_webhook(&receiver.url("/hook"), &["action.created"]).await;
        let secret = webhook["secret"].as_str().unwrap();

        receiver.reply_by_default(Reply::Body(200, b"thanks".to_vec()));
        let (status, answer) = test_and_wait(&app, &webhook).await;
        assert_eq!(status, 200, "{answer}");
        let result = &answer["data"]["result"];
        assert_eq!(result["outcome"], "succeeded", "{answer}");
        assert_eq!(result["responseStatus"], 200);
        assert_eq!(result["responseExcerpt"], "thanks");
        assert_eq!(result["error"], Value::Null);
        let request = receiver.expect(WAIT).await;
        let headers = &result["requestHeaders"];
        assert_eq!(headers["x-devtune-signature"], devtune_signature(secret, &request.body));
        assert_eq!(headers["webhook-id"], answer["data"]["deliveryId"]);
        assert_eq!(headers["webhook-signature"], request.header("webhook-signature"));

        // The log shows the body exactly as sent, and each attempt's headers.
        let delivery = app.delivery(&answer["data"]["deliveryId"]).await;
        assert_eq!(delivery["payload"].as_str().unwrap().as_bytes(), &request.body[..]);
        assert_eq!(delivery["attempts"][0]["requestHeaders"], *headers);

        receiver.reply_by_default(Reply::Status(500));
        let (status, answer) = test_and_wait(&app, &webhook).await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["data"]["result"]["outcome"], "failed");
        assert_eq!(answer["data"]["result"]["responseStatus"], 500);

        // A receiver that never answers: the attempt's timeout ends it, and the answer says so.
        receiver.reply_by_default(Reply::Slow(Duration::from_secs(5), 200));
        let (status, answer) = test_and_wait(&app, &webhook).await;
        assert_eq!(status, 200, "answered within the timeout plus a second: {answer}");
        let result = &answer["data"]["result"];
        assert_eq!((&result["outcome"], &result["responseStatus"]), (&json!("failed"), &Value::Null));
        assert!(result["error"].as_str().unwrap().starts_with("timed out"), "{result}");

        // Without wait, a test is queued as before.
        let path = app.project_path(&format!("/webhooks/{}/test", webhook["id"].as_str().unwrap()));
        assert_eq!(app.call(Method::POST, &path, Some(&app.key), None).await.status(), 202);
        let bad = app.project_path(&format!("/webhooks/{}/test?wait=soon", webhook["id"].as_str().unwrap()));
        assert_error(app.call(Method::POST, &bad, Some(&app.key), None).await, 400, "bad_request").await;
    }
}
