import { expect, test } from "@playwright/test";
import { paidOrder, partnerEvent, signIn, snapshot, tokens, untilState } from "./support";

test("a failed delivery is resolved from the console and the new order shows, linked", async ({ page, request }) => {
  const id = await paidOrder(request);
  await partnerEvent(request, id, "PICKED_UP", { partner_order_number: "PN-E2E-3" });
  await partnerEvent(request, id, "DELIVERY_FAILED", { reason: "RECIPIENT_UNAVAILABLE", detail: "three attempts" });
  await untilState(request, id, "PENDING_BY_OPERATOR");

  await signIn(page, tokens.operator);
  await page.getByRole("navigation", { name: "Main" }).getByRole("link", { name: "Operator queue" }).click();
  const item = page.getByTestId(`queue-item-${id}`);
  await expect(item).toBeVisible();
  await expect(item.getByTestId("reason")).toContainText("nobody was there to receive the parcel");
  await expect(item.getByTestId("reason")).toContainText("three attempts");
  await item.getByText(/Audit trail \(\d+ events\)/).click();
  await expect(item.locator(".trail")).toContainText("delivery failed by partner");
  await expect(item.getByRole("link", { name: "workflow in Temporal Web UI" })).toHaveAttribute(
    "href",
    new RegExp(`/workflows/delivery-order-${id}$`),
  );
  await snapshot(page, "console-1-queue");

  // A resolution needs a note.
  await item.getByRole("button", { name: "Reship" }).click();
  await expect(item.getByRole("alert")).toContainText("Write a note");
  await item.getByLabel("Note for the record (required)").fill("customer is home on Saturdays");
  await item.getByRole("button", { name: "Reship" }).click();

  const replacement = page.getByTestId("replacement-link");
  await expect(replacement).toBeVisible();
  await expect(page.getByTestId(`queue-item-${id}`)).toHaveCount(0);
  const newId = (await replacement.textContent())!.trim();
  expect(newId).not.toBe(id);
  await snapshot(page, "console-2-resolved");

  await replacement.click();
  await expect(page).toHaveURL(new RegExp(`/track/${newId}$`));
  await expect(page.getByText("Waiting for pickup").first()).toBeVisible();
  await expect(page.getByTestId("explanation")).toContainText("replaces an earlier one");
  await page.getByRole("link", { name: "see it" }).click();
  await expect(page.locator(".status-line")).toContainText("Replaced by a new delivery");
  await expect(page.getByTestId("explanation")).toContainText("customer is home on Saturdays");
  await snapshot(page, "console-3-old-order");
});
