// What the browser tests need besides the browser: the stack's gateway, tokens for each role,
// the harness's control endpoint (restarting the gateway), and the partner simulator (the
// pickups it accepted).
import { expect, type APIRequestContext, type Page } from "@playwright/test";
import { createHmac, randomUUID } from "node:crypto";

export interface Tokens {
  customer: string;
  customer_sub: string;
  operator: string;
  payment_service: string;
  partner: string;
  partner_webhook_secret: string;
}

function required(name: string): string {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set: run the browser tests through make test (tests/tests/integration/web_ui.rs)`);
  return value;
}

export const tokens: Tokens = JSON.parse(required("E2E_TOKENS"));

/** The pickup the simulated partner accepted for delivery order `id`, as it answered the booking. */
async function pickupOf(request: APIRequestContext, id: string): Promise<string> {
  let found: string | undefined;
  await expect(async () => {
    const answer = await request.get(`${required("E2E_PARTNER_URL")}/_sim/pickups`);
    expect(answer.status()).toBe(200);
    const { pickups } = (await answer.json()) as { pickups: { pickup_id: string; delivery_order_id: string }[] };
    found = pickups.find((p) => p.delivery_order_id === id)?.pickup_id;
    expect(found, `a pickup for ${id}`).toBeTruthy();
  }).toPass({ timeout: 15_000 });
  return found!;
}

/** A paid order with one physical book for the test customer; returns its delivery order id. */
export async function paidOrder(request: APIRequestContext): Promise<string> {
  const payment = `pay-${randomUUID()}`;
  const created = await request.post("/api/v1/payment-events", {
    headers: { Authorization: `Bearer ${tokens.payment_service}` },
    data: {
      event_id: `evt-${payment}`,
      payment_id: payment,
      ordering_id: `ord-${payment}`,
      customer_id: tokens.customer_sub,
      items: [{ sku: "bk-9780141439518", title: "Pride and Prejudice", format: "PHYSICAL", quantity: 1 }],
      shipping_address: {
        name: "Elizabeth Bennet",
        line1: "Longbourn House",
        city: "Meryton",
        postal_code: "HP1 1AA",
        country: "GB",
        phone: "+44 1632 960123",
      },
    },
  });
  expect(created.status(), await created.text()).toBe(201);
  const id = (await created.json()).delivery_order_id as string;
  // Read our own write: the order is in the read model before the page asks for it.
  const read = await request.get(`/api/v1/delivery-orders/${id}?min_version=0`, {
    headers: { Authorization: `Bearer ${tokens.payment_service}` },
  });
  expect(read.status(), await read.text()).toBe(200);
  return id;
}

/**
 * An event as the delivery partner sends it. With an event id, so a retry (after a connection
 * lost to a gateway restart, or a 503 while the partner's pickup confirmation is on its way)
 * cannot apply it twice. A 503 says when to retry (`Retry-After`); the partner retries as told.
 */
export async function partnerEvent(request: APIRequestContext, id: string, type: string, data: object) {
  const event_id = `e2e-${randomUUID()}`;
  const post = () =>
    request.post(`/api/v1/delivery-orders/${id}/events`, {
      headers: { Authorization: `Bearer ${tokens.partner}` },
      data: { type, data, event_id },
    });
  let answer = await post().catch(() => post());
  // Before the partner's pickup is confirmed the gateway answers 503 pickup-not-confirmed with
  // retry_after_seconds, and partners send the event again; so does this, for up to 15 s.
  for (let tries = 0; answer.status() === 503 && tries < 30; tries++) {
    await new Promise((resolve) => setTimeout(resolve, 500));
    answer = await post().catch(() => post());
  }
  expect(answer.status(), await answer.text()).toBe(200);
  return answer.json();
}

/** Waits until the read model shows `id` in `state` (the workflow may take a step by itself). */
export async function untilState(request: APIRequestContext, id: string, state: string) {
  await expect
    .poll(
      async () => {
        const answer = await request.get(`/api/v1/delivery-orders/${id}`, {
          headers: { Authorization: `Bearer ${tokens.operator}` },
        });
        return (await answer.json()).state;
      },
      { timeout: 30_000 },
    )
    .toBe(state);
}

export async function signIn(page: Page, token: string) {
  await page.goto("/");
  await page.getByLabel("Access token").fill(token);
  await page.getByRole("button", { name: "Sign in" }).click();
  await expect(page.getByRole("button", { name: "Sign out" })).toBeVisible();
}

/** Marks the page, so a test can prove it was never reloaded. */
export async function markPage(page: Page) {
  await page.evaluate(() => ((window as unknown as { __sameDocument: boolean }).__sameDocument = true));
}

export async function stillSamePage(page: Page) {
  expect(await page.evaluate(() => (window as unknown as { __sameDocument?: boolean }).__sameDocument)).toBe(true);
}

/** Kills the gateway and starts it again on the same port (the harness does it). */
export async function restartGateway() {
  const answer = await fetch(`${required("E2E_CONTROL_URL")}/restart-gateway`, { method: "POST" });
  expect(answer.status).toBe(200);
}

export async function snapshot(page: Page, name: string) {
  await page.screenshot({ path: `test-results/screenshots/${name}.png`, fullPage: true });
}

/**
 * A location ping as the partner ("sim") sends it: a webhook signed with its secret
 * (`t=<unix>,v1=<hex HMAC-SHA256 of "t.body">`), each with an event id of its own.
 */
export async function locationPing(
  request: APIRequestContext,
  id: string,
  at: { lat: number; lon: number },
  destination?: { lat: number; lon: number },
) {
  const body = JSON.stringify({
    event_id: `ping-${randomUUID()}`,
    type: "LOCATION",
    delivery_order_id: id,
    pickup_id: await pickupOf(request, id),
    data: destination ? { ...at, destination } : at,
  });
  const t = Math.floor(Date.now() / 1000);
  const mac = createHmac("sha256", tokens.partner_webhook_secret).update(`${t}.${body}`).digest("hex");
  const answer = await request.post("/api/v1/partner-webhooks/sim", {
    headers: { "Content-Type": "application/json", "X-Partner-Signature": `t=${t},v1=${mac}` },
    data: body,
  });
  expect(answer.status(), await answer.text()).toBe(200);
  expect((await answer.json()).outcome).toBe("tracking_updated");
}

/**
 * An order of the test customer whose pickup is due in 10 minutes, started by the harness
 * through Temporal (the gateway's orders wait 48 h); its id, once its pickup is accepted.
 */
export async function orderDueSoon(): Promise<string> {
  const answer = await fetch(`${required("E2E_CONTROL_URL")}/order-due-soon`, { method: "POST" });
  expect(answer.status).toBe(200);
  return answer.text();
}

/**
 * Forgets the charts the gateways share for a minute (in Redis), so the next page computes them
 * afresh (the harness does it).
 */
export async function forgetCharts() {
  const answer = await fetch(`${required("E2E_CONTROL_URL")}/forget-charts`, { method: "POST" });
  expect(answer.status).toBe(200);
}

/** The order as operators read it. */
export async function readOrder(request: APIRequestContext, id: string) {
  const answer = await request.get(`/api/v1/delivery-orders/${id}`, {
    headers: { Authorization: `Bearer ${tokens.operator}` },
  });
  expect(answer.status(), await answer.text()).toBe(200);
  return answer.json();
}
