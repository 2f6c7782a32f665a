import { expect, test } from "@playwright/test";
import { forgetCharts, markPage, orderDueSoon, paidOrder, partnerEvent, signIn, snapshot, stillSamePage, tokens } from "./support";

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

test("the failures-by-reason chart draws the count of each reason", async ({ page, request }) => {
  // A delivery lost on the way, then charts computed afresh (the gateways share them for a minute).
  const id = await paidOrder(request);
  await partnerEvent(request, id, "PICKED_UP", { partner_order_number: "PN-E2E-LOST", driver: { name: "George Wickham" } });
  await partnerEvent(request, id, "DELIVERY_FAILED", { reason: "PACKAGE_LOST", detail: "not found at the depot" });
  await forgetCharts();
  await signIn(page, tokens.operator);
  await page.goto("/ops");

  const chart = page.getByTestId("chart-failures");
  await expect(chart.locator("canvas")).toHaveCount(1);
  await expect(chart.locator(".u-title")).toHaveText("Failures by reason");
  const lost = page.getByTestId("failures-PACKAGE_LOST");
  await expect(lost.locator("td").first()).toHaveText("the parcel was lost");
  expect(Number(await lost.locator("td.num").textContent())).toBeGreaterThan(0);
  // The table's rows are the chart's bars, in order (most failures first): pointing at each bar,
  // the chart's legend gives the figure it drew, which must be the table's.
  const counts = await page
    .getByTestId("table-failures")
    .locator("tbody tr")
    .evaluateAll((rows) => rows.map((row) => (row as HTMLTableRowElement).cells[1]?.textContent ?? ""));
  const plot = chart.locator(".u-over");
  await plot.scrollIntoViewIfNeeded();
  const box = await plot.boundingBox();
  expect(box).not.toBeNull();
  const value = chart.locator(".u-legend .u-series").nth(1).locator(".u-value");
  for (const [i, count] of counts.entries()) {
    await page.mouse.move(box!.x + (box!.width * (i + 0.5)) / counts.length, box!.y + box!.height / 2);
    await expect(value).toHaveText(count);
  }
  await snapshot(page, "operations-3-failures");
});
