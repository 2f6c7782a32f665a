import { expect, test } from "@playwright/test";
import { markPage, paidOrder, partnerEvent, signIn, snapshot, stillSamePage, tokens } from "./support";

test("a delivery is tracked from creation to confirmation, live and without a reload", async ({ page, request }) => {
  const id = await paidOrder(request);
  await signIn(page, tokens.customer);
  await page.getByLabel("Delivery number").fill(id);
  await page.getByRole("button", { name: "Track" }).click();

  await expect(page.getByText("Waiting for pickup").first()).toBeVisible();
  await expect(page.locator("[data-connection=live]")).toBeVisible();
  await expect(page.getByText("Pride and Prejudice")).toBeVisible();
  await markPage(page);
  await snapshot(page, "tracking-1-created");

  const eta = new Date(Date.now() + 3 * 3600_000).toISOString();
  await partnerEvent(request, id, "PICKED_UP", {
    partner_order_number: "PN-E2E-1",
    driver: { name: "Charles Bingley", phone: "+44 7700 900456", vehicle: "cargo bike" },
    eta,
  });
  await expect(page.locator(".status-line")).toContainText("On the way");
  const driver = page.getByTestId("driver");
  await expect(driver).toContainText("Charles Bingley");
  await expect(driver).toContainText("456");
  await expect(driver).not.toContainText("900456"); // the phone is masked
  await expect(page.getByTestId("eta")).toBeVisible();
  await expect(page.locator('[data-state="PICKED_UP"][aria-current="step"]')).toContainText("Picked up");
  await snapshot(page, "tracking-2-picked-up");

  await partnerEvent(request, id, "DELIVERED", { proof: { signed_by: "E. Bennet" } });
  const confirm = page.getByRole("button", { name: "Confirm receipt" });
  await expect(confirm).toBeVisible();
  await snapshot(page, "tracking-3-delivered");
  await confirm.click();

  await expect(page.locator(".status-line")).toContainText("Received");
  const confirmed = page.locator('li[data-state="DELIVERY_CONFIRMED"]');
  await expect(confirmed).toHaveAttribute("aria-current", "step");
  await expect(confirmed.locator("time")).toBeVisible();
  await expect(page.getByRole("button", { name: "Confirm receipt" })).toHaveCount(0);
  await stillSamePage(page);
  await snapshot(page, "tracking-4-confirmed");
});

test("a customer reports a problem and reads what happens next", async ({ page, request }) => {
  const id = await paidOrder(request);
  await partnerEvent(request, id, "PICKED_UP", { partner_order_number: "PN-E2E-2" });
  await partnerEvent(request, id, "DELIVERED", {});
  await signIn(page, tokens.customer);
  await page.goto(`/track/${id}`);
  await page.getByRole("button", { name: "Report a problem" }).click();
  await page.getByLabel("What went wrong?").selectOption("DAMAGED");
  await page.getByLabel("Details (optional)").fill("the cover is torn");
  await page.getByRole("button", { name: "Send the report" }).click();
  await expect(page.locator(".status-line")).toContainText("With our support team");
  await expect(page.getByTestId("explanation")).toContainText("the parcel arrived damaged");
  await expect(page.getByTestId("explanation")).toContainText("the cover is torn");
  await snapshot(page, "tracking-5-disputed");
});

test("customers cannot open operator pages or other customers' deliveries", async ({ page }) => {
  await signIn(page, tokens.customer);
  await expect(page.getByRole("navigation", { name: "Main" }).getByRole("link", { name: "Operator queue" })).toHaveCount(0);
  await page.goto("/ops/queue");
  await expect(page.getByRole("heading", { name: "Not for your role" })).toBeVisible();
  await page.goto("/track/0196a3b0-7c1e-7cc0-9d1e-2f3a4b5c6d7e");
  await expect(page.getByRole("alert")).toContainText("0196a3b0-7c1e-7cc0-9d1e-2f3a4b5c6d7e");
});

test("on a phone, from the keyboard alone: sign in, track, confirm", async ({ page, request }) => {
  await page.setViewportSize({ width: 390, height: 844 });
  const id = await paidOrder(request);
  await partnerEvent(request, id, "PICKED_UP", {
    partner_order_number: "PN-E2E-6",
    driver: { name: "Mary Bennet", phone: "+44 7700 900789" },
  });
  await partnerEvent(request, id, "DELIVERED", {});

  await page.goto(`/track/${id}`);
  await page.getByLabel("Access token").focus();
  await page.keyboard.insertText(tokens.customer);
  await page.keyboard.press("Tab");
  await expect(page.getByRole("button", { name: "Sign in" })).toBeFocused();
  await page.keyboard.press("Enter");

  // Deep link kept: the page asked for is the page shown after signing in.
  await expect(page.getByRole("button", { name: "Confirm receipt" })).toBeVisible();
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  expect(overflow, "no sideways scrolling on a phone").toBeLessThanOrEqual(0);
  await snapshot(page, "tracking-6-phone");

  for (let i = 0; i < 30; i++) {
    const focused = await page.evaluate(() => document.activeElement?.textContent ?? "");
    if (focused === "Confirm receipt") break;
    await page.keyboard.press("Tab");
  }
  await expect(page.getByRole("button", { name: "Confirm receipt" })).toBeFocused();
  await page.keyboard.press("Enter");
  await expect(page.locator(".status-line")).toContainText("Received");
});
