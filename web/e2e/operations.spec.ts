import { expect, test } from "@playwright/test";
import { markPage, paidOrder, partnerEvent, signIn, snapshot, stillSamePage, tokens } from "./support";

test("the dashboard lists deadlines at risk live, and draws the last 24 hours as charts", async ({ page, request }) => {
  // An order before the page opens, so the charts (computed at most once a minute) count one.
  const earlier = await paidOrder(request);
  await signIn(page, tokens.operator);
  await page.goto("/ops");
  const atRisk = page.getByTestId("at-risk");
  await expect(atRisk.getByRole("heading", { name: "Deadlines at risk" })).toBeVisible();
  // A new order's pickup deadline is 48 h away: inside a 3-day window.
  await atRisk.getByLabel("Deadlines within").selectOption("3d");
  await expect(page.locator("[data-connection=live]")).toBeVisible();
  await expect(atRisk.getByTestId(`at-risk-${earlier}`)).toContainText("Pickup deadline");
  await markPage(page);

  // Pushed: a new order's row appears without a reload.
  const id = await paidOrder(request);
  const row = atRisk.getByTestId(`at-risk-${id}`);
  await expect(row).toContainText("Pickup deadline");
  await expect(row.getByTestId("time-left")).toHaveText(/^(1 d 23 h|2 d 0 h) left$/);
  await snapshot(page, "operations-1-at-risk");

  // Picked up: the delivery deadline (7 days) replaces it, outside this window, at once.
  await partnerEvent(request, id, "PICKED_UP", { partner_order_number: "PN-E2E-RISK", driver: { name: "Charles Bingley" } });
  await expect(row).toHaveCount(0);
  await atRisk.getByLabel("Deadlines within").selectOption("7d");
  await expect(row).toContainText("Delivery deadline");
  await expect(row).toContainText("On the way");
  await stillSamePage(page);

  // Charts: drawn by the chart library (canvas), with a legend in words and the figures as tables.
  const entered = page.getByTestId("chart-entered");
  await expect(entered.locator("canvas")).toHaveCount(1);
  await expect(entered.locator(".u-title")).toHaveText("Orders entering each state, per hour");
  await expect(entered.locator(".u-legend")).toContainText("Waiting for pickup");
  await expect(page.getByTestId("chart-stages").locator("canvas")).toHaveCount(1);
  await expect(page.getByTestId("table-entered").getByTestId("entered-CREATED")).toBeVisible();
  const created = Number(await page.getByTestId("entered-CREATED").locator("td").nth(2).textContent());
  expect(created).toBeGreaterThan(0);
  await page.getByTestId("chart-entered").scrollIntoViewIfNeeded();
  await snapshot(page, "operations-2-charts");
});
