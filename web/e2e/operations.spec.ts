import { expect, test } from "@playwright/test";
import { markPage, orderDueSoon, paidOrder, partnerEvent, signIn, snapshot, stillSamePage, tokens } from "./support";

test("the dashboard lists deadlines at risk live, and draws the last 24 hours as charts", async ({ page, request }) => {
  // An order before the page opens, so the charts (computed at most once a minute) count one.
  await paidOrder(request);
  await signIn(page, tokens.operator);
  await page.goto("/ops");
  const atRisk = page.getByTestId("at-risk");
  await expect(atRisk.getByRole("heading", { name: "Deadlines at risk" })).toBeVisible();
  await expect(atRisk.getByLabel("Deadlines within")).toHaveValue("2h");
  await expect(page.locator("[data-connection=live]")).toBeVisible();
  await markPage(page);

  // Pushed: an order due in 10 minutes appears without a reload, with the time left.
  const id = await orderDueSoon();
  const row = atRisk.getByTestId(`at-risk-${id}`);
  await expect(row).toContainText("Pickup deadline");
  await expect(row).toContainText("Waiting for pickup");
  await expect(row.getByTestId("time-left")).toHaveText(/^([1-9]|10) min left$/);
  await snapshot(page, "operations-1-at-risk");

  // Picked up: its delivery deadline is 7 days away, so it leaves the 2-hour list at once.
  await partnerEvent(request, id, "PICKED_UP", { partner_order_number: "PN-E2E-RISK", driver: { name: "Charles Bingley" } });
  await expect(row).toHaveCount(0);
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
