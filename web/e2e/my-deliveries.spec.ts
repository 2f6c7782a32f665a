import { expect, test } from "@playwright/test";
import { paidOrder, partnerEvent, signIn, snapshot, tokens, untilState } from "./support";

test("a customer finds their deliveries on the start page, with their state, without an id", async ({ page, request }) => {
  const older = await paidOrder(request);
  const newer = await paidOrder(request);
  await partnerEvent(request, older, "PICKED_UP", { partner_order_number: "PN-E2E-MINE", driver: { name: "Jane Bennet" } });
  await untilState(request, older, "PICKED_UP");

  await signIn(page, tokens.customer);
  const mine = page.getByTestId("my-deliveries");
  await expect(mine.getByTestId(`mine-${newer}`)).toContainText("Waiting for pickup");
  await expect(mine.getByTestId(`mine-${older}`)).toContainText("On the way");
  await expect(mine.getByTestId(`mine-${newer}`)).toContainText("1 × Pride and Prejudice");
  // Newest first.
  const rows = await mine.locator("tbody tr").evaluateAll((trs) => trs.map((tr) => tr.getAttribute("data-testid")));
  expect(rows.indexOf(`mine-${newer}`)).toBeLessThan(rows.indexOf(`mine-${older}`));
  await snapshot(page, "my-deliveries-1-list");

  await mine.getByTestId(`mine-${older}`).getByRole("link").click();
  await expect(page).toHaveURL(new RegExp(`/track/${older}$`));
  await expect(page.getByRole("heading", { name: "Your delivery" })).toBeVisible();
  await snapshot(page, "my-deliveries-2-opened");
});
