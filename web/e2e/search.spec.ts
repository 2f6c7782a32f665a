import { expect, test } from "@playwright/test";
import { paidOrder, partnerEvent, readOrder, signIn, snapshot, tokens } from "./support";

test("an operator finds an order by its payment, its partner order number, or its state and day", async ({ page, request }) => {
  const id = await paidOrder(request);
  const number = `PN-E2E-${id.slice(0, 8).toUpperCase()}`;
  await partnerEvent(request, id, "PICKED_UP", { partner_order_number: number, driver: { name: "Mary Bennet" } });
  const order = await readOrder(request, id);

  await signIn(page, tokens.operator);
  await page.goto("/ops/queue");
  const search = page.getByTestId("search");
  await search.getByLabel("Reference").fill(order.payment_id);
  await search.getByRole("button", { name: "Search" }).click();
  const results = search.getByTestId("search-results");
  await expect(results.locator("tbody tr")).toHaveCount(1);
  await expect(results).toContainText(order.payment_id);
  await snapshot(page, "search-1-by-payment");

  await search.getByLabel("Search by").selectOption("partner_order_number");
  await search.getByLabel("Reference").fill(number);
  await search.getByRole("button", { name: "Search" }).click();
  await expect(results.locator("tbody tr")).toHaveCount(1);
  await expect(results).toContainText(number);

  // No reference: every order picked up today, newest first; ours is among them.
  const today = new Date();
  const day = `${today.getFullYear()}-${String(today.getMonth() + 1).padStart(2, "0")}-${String(today.getDate()).padStart(2, "0")}`;
  await search.getByLabel("Reference").fill("");
  await search.getByLabel("State").selectOption("PICKED_UP");
  await search.getByLabel("Created from").fill(day);
  await search.getByLabel("Created to").fill(day);
  await search.getByRole("button", { name: "Search" }).click();
  await expect(results.getByRole("link", { name: id.slice(0, 8) })).toBeVisible();

  // What the gateway would refuse is said before asking.
  await search.getByLabel("Reference").fill("two words");
  await search.getByRole("button", { name: "Search" }).click();
  await expect(search.getByRole("alert")).toContainText("letters, digits");
  await snapshot(page, "search-2-refused");

  await search.getByLabel("Reference").fill(number);
  await search.getByLabel("State").selectOption("");
  await search.getByRole("button", { name: "Search" }).click();
  await results.getByRole("link", { name: id.slice(0, 8) }).click();
  await expect(page).toHaveURL(new RegExp(`/track/${id}$`));
});
