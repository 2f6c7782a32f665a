// What the browser tests need besides the browser: the stack's gateway, tokens for each role,
// and the harness's control endpoint (restarting the gateway).
import { expect, type APIRequestContext, type Page } from "@playwright/test";
import { randomUUID } from "node:crypto";

export interface Tokens {
  customer: string;
  customer_sub: string;
  operator: string;
  payment_service: string;
  partner: string;
}

function required(name: string): string {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set: run the browser tests through make test (tests/tests/web_ui.rs)`);
  return value;
}

export const tokens: Tokens = JSON.parse(required("E2E_TOKENS"));

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
  for (let attempt = 0; answer.status() === 503 && attempt < 20; attempt++) {
    const wait = Number(answer.headers()["retry-after"] ?? "1");
    await new Promise((resolve) => setTimeout(resolve, Math.min(wait, 2) * 1000));
    answer = await post();
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
