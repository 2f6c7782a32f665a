import { expect, test, type Page } from "@playwright/test";
import { locationPing, markPage, paidOrder, partnerEvent, signIn, snapshot, stillSamePage, tokens } from "./support";

/** How many points the drawn route line goes through (Leaflet's SVG path: M x y, then L x y). */
async function linePoints(page: Page): Promise<number> {
  const d = await page.locator("[data-testid=route-map] path.route-line").getAttribute("d");
  return (d?.match(/[ML]/g) ?? []).length;
}

test("the route map draws every ping live, the current position and the destination, without tiles", async ({ page, request }) => {
  const id = await paidOrder(request);
  await partnerEvent(request, id, "PICKED_UP", { partner_order_number: "PN-E2E-ROUTE", driver: { name: "Lydia Bennet" } });
  const destination = { lat: 51.52, lon: -0.1278 };
  await locationPing(request, id, { lat: 51.5074, lon: -0.1278 }, destination);
  await locationPing(request, id, { lat: 51.5084, lon: -0.1268 }, destination);

  await signIn(page, tokens.customer);
  await page.goto(`/track/${id}`);
  const map = page.getByTestId("route-map");
  await expect(map).toHaveAttribute("data-points", "2");
  await expect.poll(() => linePoints(page)).toBe(2);
  await expect(map.locator(".route-current")).toHaveCount(1);
  await expect(map.locator(".route-destination")).toHaveCount(1);
  // No MAP_TILE_URL here: no tiles asked for, and a scale to read distances by.
  await expect(map.locator(".leaflet-tile")).toHaveCount(0);
  await expect(map.locator(".leaflet-control-scale")).toBeVisible();
  await expect(page.locator("figure.route figcaption")).toContainText("2 positions reported");
  await expect(page.locator("[data-connection=live]")).toBeVisible();
  await markPage(page);

  // Pushed pings extend the line without a reload.
  await locationPing(request, id, { lat: 51.5094, lon: -0.1258 }, destination);
  await locationPing(request, id, { lat: 51.5104, lon: -0.1248 }, destination);
  await expect(map).toHaveAttribute("data-points", "4");
  await expect.poll(() => linePoints(page)).toBe(4);
  await stillSamePage(page);
  await snapshot(page, "route-map-1-four-pings");

  // The route as the API keeps it says the same.
  const route = await request.get(`/api/v1/tracking/${id}/route`, { headers: { Authorization: `Bearer ${tokens.customer}` } });
  expect(route.status()).toBe(200);
  const body = await route.json();
  expect(body.points.map((p: { lat: number }) => p.lat)).toEqual([51.5074, 51.5084, 51.5094, 51.5104]);
  expect(body.destination).toEqual(destination);
});
