import { expect, test, type Page } from "@playwright/test";
import { locationPing, markPage, paidOrder, partnerEvent, signIn, snapshot, stillSamePage, tokens } from "./support";

type Ping = { lat: number; lon: number };

/** The points the drawn route line goes through, in layer pixels (Leaflet's SVG path: M x y, then L x y). */
async function drawnLine(page: Page): Promise<[number, number][]> {
  const d = (await page.locator("[data-testid=route-map] path.route-line").getAttribute("d")) ?? "";
  return [...d.matchAll(/[ML](-?[\d.]+) (-?[\d.]+)/g)].map((m) => [Number(m[1]), Number(m[2])]);
}

/** Web Mercator, the map's projection, up to its scale and offset: x grows east, y north. */
function mercator({ lat, lon }: Ping): [number, number] {
  const rad = Math.PI / 180;
  return [lon * rad, Math.log(Math.tan(Math.PI / 4 + (lat * rad) / 2))];
}

/**
 * Whether the line drawn is the pings, in their order: one scale, the same east and north (the
 * projection is conformal), and one offset put every ping on its point, to Leaflet's rounding to
 * whole pixels. `null` when it is; otherwise what differs.
 */
async function lineMismatch(page: Page, pings: Ping[]): Promise<string | null> {
  const drawn = await drawnLine(page);
  if (drawn.length !== pings.length) return `${drawn.length} points drawn for ${pings.length} pings`;
  const m = pings.map(mercator);
  const last = pings.length - 1;
  const east = (drawn[last][0] - drawn[0][0]) / (m[last][0] - m[0][0]);
  const north = -(drawn[last][1] - drawn[0][1]) / (m[last][1] - m[0][1]);
  if (!(east > 0) || Math.abs(east - north) / east > 0.05) return `scales differ: ${east} east, ${north} north`;
  for (let i = 0; i < pings.length; i++) {
    const x = drawn[0][0] + east * (m[i][0] - m[0][0]);
    const y = drawn[0][1] - east * (m[i][1] - m[0][1]);
    if (Math.abs(drawn[i][0] - x) > 1.5 || Math.abs(drawn[i][1] - y) > 1.5) {
      return `ping ${i} (${pings[i].lat}, ${pings[i].lon}) drawn at ${drawn[i]}, expected near ${x.toFixed(1)},${y.toFixed(1)}`;
    }
  }
  return null;
}

/** The centre of the current-position dot (Leaflet draws a circle as "M x-r,y a r,r ..."). */
async function currentDot(page: Page): Promise<[number, number] | null> {
  const d = (await page.locator("[data-testid=route-map] path.route-current").getAttribute("d")) ?? "";
  const m = d.match(/^M(-?[\d.]+),(-?[\d.]+)a(-?[\d.]+)/);
  return m ? [Number(m[1]) + Number(m[3]), Number(m[2])] : null;
}

test("the route map draws every ping live, the current position and the destination, without tiles", async ({ page, request }) => {
  const id = await paidOrder(request);
  await partnerEvent(request, id, "PICKED_UP", { partner_order_number: "PN-E2E-ROUTE", driver: { name: "Lydia Bennet" } });
  const destination = { lat: 51.52, lon: -0.1278 };
  // Not on one straight line, so a point drawn out of place or out of order shows.
  const pings: Ping[] = [
    { lat: 51.5074, lon: -0.1278 },
    { lat: 51.5084, lon: -0.1268 },
    { lat: 51.5088, lon: -0.124 },
    { lat: 51.5104, lon: -0.1252 },
  ];
  await locationPing(request, id, pings[0], destination);
  await locationPing(request, id, pings[1], destination);

  await signIn(page, tokens.customer);
  await page.goto(`/track/${id}`);
  const map = page.getByTestId("route-map");
  await expect(map).toHaveAttribute("data-points", "2");
  await expect.poll(() => lineMismatch(page, pings.slice(0, 2))).toBeNull();
  await expect(map.locator(".route-current")).toHaveCount(1);
  await expect(map.locator(".route-destination")).toHaveCount(1);
  // No MAP_TILE_URL here: no tiles asked for, and a scale to read distances by.
  await expect(map.locator(".leaflet-tile")).toHaveCount(0);
  await expect(map.locator(".leaflet-control-scale")).toBeVisible();
  await expect(page.locator("figure.route figcaption")).toContainText("2 positions reported");
  await expect(page.locator("[data-connection=live]")).toBeVisible();
  await markPage(page);

  // Pushed pings extend the line without a reload.
  await locationPing(request, id, pings[2], destination);
  await locationPing(request, id, pings[3], destination);
  await expect(map).toHaveAttribute("data-points", "4");
  await expect.poll(() => lineMismatch(page, pings)).toBeNull();
  // The dot is on the latest ping, where the line ends.
  const end = (await drawnLine(page))[3];
  await expect.poll(async () => (await currentDot(page))?.map((v, i) => Math.abs(v - end[i]) <= 1).every(Boolean)).toBe(true);
  await stillSamePage(page);
  await snapshot(page, "route-map-1-four-pings");

  // The route as the API keeps it says the same.
  const route = await request.get(`/api/v1/tracking/${id}/route`, { headers: { Authorization: `Bearer ${tokens.customer}` } });
  expect(route.status()).toBe(200);
  const body = await route.json();
  expect(body.points.map((p: Ping) => ({ lat: p.lat, lon: p.lon }))).toEqual(pings);
  expect(body.destination).toEqual(destination);
});
