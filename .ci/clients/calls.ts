// Calls every operation of openapi/openapi.yaml through a client generated from it
// (openapi-typescript types, openapi-fetch calls). CI only type-checks this file with
// `tsc --strict`: a spec that types a body or an answer wrongly fails here.
import createClient from "openapi-fetch";
import type { paths } from "./generated/api";

type UpdateBody = NonNullable<
  paths["/api/v2/projects/{projectId}/webhooks/{webhookId}"]["patch"]["requestBody"]
>["content"]["application/json"];
// The update body is typed: a field it does not have is an error (a body typed `unknown`, as a
// root `anyOf` of `required` lists made it, would take anything).
// @ts-expect-error colour is not a field of UpdateWebhookRequest
export const notAField: UpdateBody = { colour: "blue" };

const api = createClient<paths>({ baseUrl: "http://127.0.0.1:8080" });
const admin = createClient<paths>({ baseUrl: "http://127.0.0.1:8080" });
const projectId = "3f1c2b9e-8a4d-4c6e-9b1a-5d7e2f0a6c34";
const project = { path: { projectId } };

export async function everyOperation(): Promise<void> {
  const created = await api.POST("/api/v2/projects/{projectId}/webhooks", {
    params: project,
    body: { url: "https://hooks.example.com/in", events: ["action.created"], filters: { priority: "high" } },
  });
  if (!created.data) throw new Error(created.error?.message);
  const webhookId: string = created.data.data.id;
  const secret: string = created.data.data.secret;
  const webhook = { path: { projectId, webhookId } };

  const listed = await api.GET("/api/v2/projects/{projectId}/webhooks", {
    params: { ...project, query: { includeInactive: true } },
  });
  const enabled: boolean | undefined = listed.data?.data.webhooks[0]?.enabled;
  const read = await api.GET("/api/v2/projects/{projectId}/webhooks/{webhookId}", { params: webhook });
  const failures: number | undefined = read.data?.data.stats.consecutiveFailures;
  await api.PATCH("/api/v2/projects/{projectId}/webhooks/{webhookId}", {
    params: webhook,
    body: { enabled: true, description: null, metadata: { team: "ops" }, headers: { "X-Api-Key": "k" } },
  });
  await api.PATCH("/api/v2/projects/{projectId}/webhooks/{webhookId}", {
    params: webhook,
    body: { retrySchedule: [30, 300], rateLimit: null, maxConcurrency: 4 },
  });
  await api.POST("/api/v2/projects/{projectId}/webhooks/{webhookId}/rotate-secret", {
    params: webhook,
    body: { graceSeconds: 3600 },
  });
  const published = await api.POST("/api/v2/projects/{projectId}/events", {
    params: { ...project, header: { "Idempotency-Key": "order-1" } },
    body: { event: "action.created", data: { actionId: "a1", changedFields: ["status"], count: 2 } },
  });
  const deliveryId: string = published.data?.data.deliveryIds[0] ?? "";
  const delivery = { path: { projectId, deliveryId } };
  const page = await api.GET("/api/v2/projects/{projectId}/webhooks/{webhookId}/deliveries", {
    params: { ...webhook, query: { limit: 20, status: "failed" } },
  });
  const cursor: string | null | undefined = page.data?.data.nextCursor;
  const details = await api.GET("/api/v2/projects/{projectId}/deliveries/{deliveryId}", { params: delivery });
  const payload: string | undefined = details.data?.data.payload;
  await api.POST("/api/v2/projects/{projectId}/deliveries/{deliveryId}/retry", { params: delivery });
  await api.POST("/api/v2/projects/{projectId}/deliveries/{deliveryId}/replay", {
    params: delivery,
    body: { url: "https://staging.example.com/in" },
  });
  await api.POST("/api/v2/projects/{projectId}/webhooks/{webhookId}/test", {
    params: { ...webhook, query: { wait: true } },
  });
  await api.POST("/api/v2/projects/{projectId}/webhooks/{webhookId}/recover", {
    params: webhook,
    body: { since: "2026-02-08T00:00:00Z", statuses: ["failed", "cancelled"], dryRun: true },
  });
  await api.POST("/api/v2/projects/{projectId}/deliveries/recover", {
    params: project,
    body: { since: "2026-02-08T00:00:00Z", webhookIds: [webhookId] },
  });
  await api.GET("/api/v2/projects/{projectId}/audit-log", { params: { ...project, query: { limit: 50 } } });

  const pull = await api.POST("/api/v2/projects/{projectId}/webhooks", {
    params: project,
    body: { mode: "pull", events: ["action.created"] },
  });
  if (!pull.data) throw new Error(pull.error?.message);
  const pulled = { path: { projectId, webhookId: pull.data.data.id } };
  const polled = await api.GET("/api/v2/projects/{projectId}/webhooks/{webhookId}/poll", {
    params: { ...pulled, query: { limit: 100, wait: 20, lease: 60 } },
  });
  const leased = polled.data?.data.deliveries ?? [];
  const body: string = leased[0]?.body ?? "";
  const acked = await api.POST("/api/v2/projects/{projectId}/webhooks/{webhookId}/poll/ack", {
    params: pulled,
    body: {
      results: leased.map((d) =>
        body ? { deliveryId: d.deliveryId, leaseId: d.leaseId, status: 204, durationMs: 3 } : { deliveryId: d.deliveryId, leaseId: d.leaseId, error: "connection refused" },
      ),
    },
  });
  const recorded: number | undefined = acked.data?.data.recorded;
  void recorded;
  await api.GET("/api/v2/me");

  const alert = await api.POST("/api/v2/projects/{projectId}/alert-endpoints", {
    params: project,
    body: { url: "https://ops.example.com/alerts", events: ["webhook.failing", "webhook.disabled"] },
  });
  const alertEndpointId: string = alert.data?.data.id ?? "";
  const endpoint = { path: { projectId, alertEndpointId } };
  await api.GET("/api/v2/projects/{projectId}/alert-endpoints", { params: project });
  await api.GET("/api/v2/projects/{projectId}/alert-endpoints/{alertEndpointId}", { params: endpoint });
  await api.POST("/api/v2/projects/{projectId}/alert-endpoints/{alertEndpointId}/rotate-secret", { params: endpoint });
  await api.GET("/api/v2/projects/{projectId}/alert-endpoints/{alertEndpointId}/deliveries", { params: endpoint });
  await api.POST("/api/v2/projects/{projectId}/alert-endpoints/{alertEndpointId}/test", { params: endpoint });
  await api.DELETE("/api/v2/projects/{projectId}/alert-endpoints/{alertEndpointId}", { params: endpoint });

  const deleted = await api.DELETE("/api/v2/projects/{projectId}/webhooks/{webhookId}", { params: webhook });
  const gone: boolean | undefined = deleted.data?.deleted;

  await api.GET("/healthz");
  await api.GET("/readyz");
  await api.GET("/metrics", { parseAs: "text" });
  await api.GET("/openapi.yaml", { parseAs: "text" });
  await api.GET("/dashboard", { parseAs: "text" });
  await api.GET("/dashboard/{asset}", { params: { path: { asset: "app.js" } }, parseAs: "text" });

  const account = await admin.POST("/admin/v1/accounts", { body: { name: "Acme" } });
  const accountId: string = account.data?.data.id ?? "";
  const made = await admin.POST("/admin/v1/projects", { body: { accountId, name: "Web" } });
  const newProject: string = made.data?.data.id ?? "";
  const key = await admin.POST("/admin/v1/projects/{projectId}/keys", {
    params: { path: { projectId: newProject } },
    body: { scopes: ["webhooks.read", "webhooks.write", "events.write"] },
  });
  const keyId: string = key.data?.data.id ?? "";
  const revoked = await admin.DELETE("/admin/v1/keys/{keyId}", { params: { path: { keyId } } });
  const done: boolean | undefined = revoked.data?.data.revoked;

  console.log(secret, enabled, failures, cursor, payload, gone, done);
}
