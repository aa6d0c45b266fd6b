"""Drives a running hookrelay through the Python client generated from openapi/openapi.yaml by
openapi-python-client: create, list, get, patch, publish, read the delivery log, retry, rotate,
delete, each answer parsed into the generated models. Exits non-zero on the first surprise.

Usage: python_client_run.py BASE_URL PROJECT_ID API_KEY (the generated package on PYTHONPATH).
"""

import http.server
import sys
import threading
import time
from uuid import UUID

from hookrelay_client import AuthenticatedClient
from hookrelay_client.api.deliveries import (
    acknowledge_webhook_deliveries,
    get_delivery,
    list_webhook_deliveries,
    poll_webhook,
    retry_delivery,
)
from hookrelay_client.api.events import create_event
from hookrelay_client.api.webhooks import (
    create_webhook,
    delete_webhook,
    get_webhook,
    list_webhooks,
    rotate_webhook_secret,
    update_webhook,
)
from hookrelay_client.models import (
    AckAnswered,
    AckRequest,
    CreateEventRequest,
    CreateEventRequestData,
    CreatePullWebhookRequest,
    CreatePullWebhookRequestMode,
    CreatePushWebhookRequest,
    DeleteWebhookResponse,
    UpdateWebhookRequest,
    WebhookEventType,
)


class Receiver(http.server.BaseHTTPRequestHandler):
    """Answers the first delivery with 500 and later ones with 200."""

    received: list[bytes] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        Receiver.received.append(body)
        self.send_response(500 if len(Receiver.received) == 1 else 200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def expect(condition: bool, what: str) -> None:
    if not condition:
        sys.exit(f"python client: {what}")


def parsed(response, status: int, what: str):
    expect(response.status_code == status, f"{what} answered {response.status_code}: {response.content!r}")
    expect(response.parsed is not None, f"{what}: the answer did not parse into the generated model")
    return response.parsed


def wait_for(what: str, check):
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        value = check()
        if value is not None:
            return value
        time.sleep(0.05)
    sys.exit(f"python client: timed out waiting for {what}")


def main() -> None:
    base_url, project, key = sys.argv[1], UUID(sys.argv[2]), sys.argv[3]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    target = f"http://127.0.0.1:{server.server_address[1]}/hook"
    client = AuthenticatedClient(base_url=base_url, token=key)

    created = parsed(
        create_webhook.sync_detailed(
            project,
            client=client,
            body=CreatePushWebhookRequest(url=target, events=[WebhookEventType.ACTION_CREATED]),
        ),
        201,
        "createWebhook",
    ).data
    expect(len(created.secret) == 64, "the secret is 64 hex characters")
    webhook = created.id

    listed = parsed(list_webhooks.sync_detailed(project, client=client), 200, "listWebhooks")
    expect([w.id for w in listed.data.webhooks] == [webhook], "the list holds the new webhook")
    read = parsed(get_webhook.sync_detailed(project, webhook, client=client), 200, "getWebhook").data
    expect(read.stats.total_deliveries == 0, "a new webhook has no deliveries")

    patched = parsed(
        update_webhook.sync_detailed(
            project,
            webhook,
            client=client,
            body=UpdateWebhookRequest(enabled=True, description="orders", max_concurrency=4),
        ),
        200,
        "updateWebhook",
    ).data
    expect(patched.description == "orders" and patched.max_concurrency == 4, "the patch applied")

    data = CreateEventRequestData.from_dict({"actionId": "a1", "changedFields": ["status"]})

    def publish():
        body = CreateEventRequest(event=WebhookEventType.ACTION_CREATED, data=data)
        return parsed(create_event.sync_detailed(project, client=client, body=body), 202, "createEvent").data

    accepted = publish()
    expect(accepted.deliveries == 1, "the event reached the one webhook")
    delivery = accepted.delivery_ids[0]

    def failed_once():
        answer = get_delivery.sync_detailed(project, delivery, client=client)
        details = parsed(answer, 200, "getDelivery").data
        return details if details.attempt_count == 1 else None

    details = wait_for("the first attempt", failed_once)
    expect(details.attempts[0].response_status == 500, "the first attempt got the receiver's 500")
    expect(details.payload.encode() == Receiver.received[0], "the payload is the body as sent")

    parsed(retry_delivery.sync_detailed(project, delivery, client=client), 202, "retryDelivery")

    def succeeded():
        page = parsed(
            list_webhook_deliveries.sync_detailed(project, webhook, client=client), 200, "listWebhookDeliveries"
        )
        rows = page.data.deliveries
        return rows if rows and rows[0].status.value == "succeeded" else None

    rows = wait_for("the retried delivery to succeed", succeeded)
    expect(rows[0].id == delivery and rows[0].attempt_count == 2, "the retry was the second attempt")

    rotated = parsed(rotate_webhook_secret.sync_detailed(project, webhook, client=client), 200, "rotateWebhookSecret")
    expect(rotated.data.secret != created.secret, "rotation gives a new secret")

    deleted = parsed(delete_webhook.sync_detailed(project, webhook, client=client), 200, "deleteWebhook")
    expect(isinstance(deleted, DeleteWebhookResponse) and deleted.deleted, "the delete answered deleted: true")
    listed = parsed(list_webhooks.sync_detailed(project, client=client), 200, "listWebhooks")
    expect(listed.data.webhooks == [], "the deleted webhook is no longer listed")

    # A pull webhook: its delivery is leased by a poll and acknowledged.
    pull = parsed(
        create_webhook.sync_detailed(
            project,
            client=client,
            body=CreatePullWebhookRequest(
                mode=CreatePullWebhookRequestMode.PULL, events=[WebhookEventType.ACTION_CREATED]
            ),
        ),
        201,
        "createWebhook (pull)",
    ).data
    accepted = publish()
    polled = parsed(
        poll_webhook.sync_detailed(project, pull.id, client=client, wait=5), 200, "pollWebhook"
    ).data.deliveries
    expect([d.delivery_id for d in polled] == accepted.delivery_ids, "the poll leased the delivery")
    acked = parsed(
        acknowledge_webhook_deliveries.sync_detailed(
            project,
            pull.id,
            client=client,
            body=AckRequest(
                results=[AckAnswered(delivery_id=polled[0].delivery_id, lease_id=polled[0].lease_id, status=204)]
            ),
        ),
        200,
        "acknowledgeWebhookDeliveries",
    ).data
    expect(acked.recorded == 1 and acked.results[0].outcome.value == "succeeded", "the ack was recorded")
    server.shutdown()
    print("python client: create, list, get, patch, publish, log, retry, rotate, delete, poll, ack all worked")


if __name__ == "__main__":
    main()
