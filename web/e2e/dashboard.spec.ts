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
  // Orders past CREATED: other specs' orders move between later states meanwhile (the simulator
  // delivers them), which can leave one state's count where it was, but none goes back to
  // CREATED, so this figure grows exactly when an order moves on, as this one will.
  // Both figures are read in one look at the page, so a refresh cannot fall between them.
  const movedOn = () =>
    page.evaluate(() => {
      const figureOf = (id: string) =>
        Number(document.querySelector(`[data-testid="${id}"] .big, [data-testid="${id}"] td.num`)?.textContent);
      return figureOf("total-total") - figureOf("count-CREATED");
    });
  const total = await figure(page, "total-total");
  const before = await movedOn();
  await snapshot(page, "dashboard-1-before");

  const id = await paidOrder(request);
  await partnerEvent(request, id, "PICKED_UP", {
    partner_order_number: "PN-E2E-4",
    driver: { name: "Fitzwilliam Darcy" },
  });

  // Pushed at once into the feed; the counts within the state's 5 s cache.
  await expect(page.getByTestId("feed")).toContainText(id.slice(0, 8));
  await expect.poll(() => figure(page, "total-total"), { timeout: 20_000 }).toBeGreaterThan(total);
  await expect.poll(movedOn, { timeout: 20_000 }).toBeGreaterThan(before);
  const drivers = page.locator(".drivers");
  await expect(drivers).toContainText("Fitzwilliam Darcy");
  await expect(drivers.getByRole("link", { name: `workflow of ${id} in Temporal Web UI` })).toBeVisible();
  await snapshot(page, "dashboard-2-after");
});
