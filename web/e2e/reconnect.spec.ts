import { expect, test, type Page } from "@playwright/test";
import { markPage, paidOrder, partnerEvent, restartGateway, signIn, snapshot, stillSamePage, tokens } from "./support";

/** Records every connection state the page shows from now on. */
async function recordConnectionStates(page: Page) {
  await page.evaluate(() => {
    const seen: string[] = [];
    (window as unknown as { __connectionStates: string[] }).__connectionStates = seen;
    const note = () => {
      const state = document.querySelector("[data-connection]")?.getAttribute("data-connection");
      if (state && seen.at(-1) !== state) seen.push(state);
    };
    new MutationObserver(note).observe(document.body, { subtree: true, childList: true, attributes: true });
    note();
  });
}

const connectionStates = (page: Page) =>
  page.evaluate(() => (window as unknown as { __connectionStates: string[] }).__connectionStates);

test("live updates reconnect after the gateway restarts and catch up by version", async ({ page, request }) => {
  const id = await paidOrder(request);
  await signIn(page, tokens.customer);
  await page.goto(`/track/${id}`);
  await expect(page.locator("[data-connection=live]")).toBeVisible();
  await markPage(page);
  await recordConnectionStates(page);

  await restartGateway();
  // A change made while the page may still be reconnecting reaches it through the snapshot the
  // new socket starts with (a newer version than it shows).
  await partnerEvent(request, id, "PICKED_UP", { partner_order_number: "PN-E2E-5", driver: { name: "Jane Bennet" } });
  await expect(page.locator("[data-connection=live]")).toBeVisible({ timeout: 30_000 });
  expect(await connectionStates(page)).toContain("offline");
  await expect(page.locator(".status-line")).toContainText("On the way");
  await expect(page.getByTestId("driver")).toContainText("Jane Bennet");

  // And the new socket pushes what comes next.
  await partnerEvent(request, id, "DELIVERED", {});
  await expect(page.getByRole("button", { name: "Confirm receipt" })).toBeVisible();
  await stillSamePage(page);
  await snapshot(page, "reconnect-1-caught-up");
});

test("the page says so when the browser goes offline", async ({ page, context, request }) => {
  const id = await paidOrder(request);
  await signIn(page, tokens.customer);
  await page.goto(`/track/${id}`);
  await expect(page.locator("[data-connection=live]")).toBeVisible();
  await context.setOffline(true);
  await expect(page.locator("[data-connection=offline]")).toContainText("You are offline");
  await snapshot(page, "reconnect-2-offline");
  await context.setOffline(false);
  await expect(page.locator("[data-connection=live]")).toBeVisible({ timeout: 30_000 });
});
