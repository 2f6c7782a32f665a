import { expect, test, type Page } from "@playwright/test";
import { paidOrder, partnerEvent, signIn, snapshot, tokens } from "./support";

async function figure(page: Page, testId: string): Promise<number> {
  return Number(await page.getByTestId(testId).locator(".big, td.num").first().textContent());
}

test("the dashboard shows health, and its counts and feed change as deliveries move", async ({ page, request }) => {
  await signIn(page, tokens.operator);
  await page.goto("/ops");
  for (const name of ["temporal", "workers", "postgresql", "redis"]) {
    await expect(page.getByTestId(`health-${name}`)).toContainText("OK");
  }
  await expect(page.locator("[data-connection=live]")).toBeVisible();
  const total = await figure(page, "total-total");
  const pickedUp = await figure(page, "count-PICKED_UP");
  await snapshot(page, "dashboard-1-before");

  const id = await paidOrder(request);
  await partnerEvent(request, id, "PICKED_UP", {
    partner_order_number: "PN-E2E-4",
    driver: { name: "Fitzwilliam Darcy" },
  });

  // Pushed at once into the feed; the counts within the state's 5 s cache.
  await expect(page.getByTestId("feed")).toContainText(id.slice(0, 8));
  await expect.poll(() => figure(page, "total-total"), { timeout: 20_000 }).toBeGreaterThan(total);
  await expect.poll(() => figure(page, "count-PICKED_UP"), { timeout: 20_000 }).toBeGreaterThan(pickedUp);
  const drivers = page.locator(".drivers");
  await expect(drivers).toContainText("Fitzwilliam Darcy");
  await expect(drivers.getByRole("link", { name: `workflow of ${id} in Temporal Web UI` })).toBeVisible();
  await snapshot(page, "dashboard-2-after");
});
