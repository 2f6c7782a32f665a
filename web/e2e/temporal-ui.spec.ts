// Temporal Web UI, as an operator opens it from the service's web UI: the dev server started
// with --ui-codec-endpoint at the gateway, which decodes for the codec cookie that signing in sets
// (docs/security.md, "The codec endpoint"). Run alone, on a stack with a Temporal Web UI, by
// `temporal_web_ui_decodes_for_an_operator_with_the_codec_cookie` in
// tests/tests/integration/web_ui.rs; `browser_flows` leaves it out (its tag).
import { expect, test, type BrowserContext, type Page } from "@playwright/test";
import { paidOrder, signIn, tokens } from "./support";

function required(name: string): string {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set: run this through tests/tests/integration/web_ui.rs`);
  return value;
}

const COOKIE = "delivery_codec_token";

/** The workflow's page shows its input; waits until the decode it asked the gateway for was answered `status`. */
async function openWorkflow(page: Page, url: string, codec: string, status: number, reload = false) {
  const decoded = page.waitForResponse((r) => r.url().startsWith(`${codec}/decode`) && r.request().method() === "POST");
  if (reload) await page.reload();
  else await page.goto(url);
  expect((await decoded).status()).toBe(status);
}

/** Shows the stored payload only: the codec refused, the input is the ciphertext, no address. */
async function expectEncrypted(page: Page) {
  await expect(page.locator("#content").getByText("Codec Server could not connect")).toBeVisible();
  const input = page.getByRole("textbox", { name: "Input" });
  await expect(input).toHaveText(/^"[A-Za-z0-9+/]{40,}={0,2}"$/);
  await expect(input).not.toContainText("Longbourn House");
  await expect(page.getByText("Longbourn House")).toHaveCount(0);
}

async function codecCookies(context: BrowserContext, gateway: string) {
  return (await context.cookies(`${gateway}/codec/decode`)).filter((c) => c.name === COOKIE);
}

test(
  "Temporal Web UI shows an order's input decoded to an operator holding the codec cookie, and only then",
  { tag: "@temporal-ui" },
  async ({ page, context, request, baseURL }) => {
    const gateway = baseURL!;
    const codec = `${gateway}/codec`;
    const id = await paidOrder(request);
    const workflow = `${required("E2E_TEMPORAL_UI_URL")}/namespaces/default/workflows/delivery-order-${id}`;

    // As the server is configured: the cluster's endpoint, no credentials sent, refused.
    await openWorkflow(page, workflow, codec, 401);
    await expectEncrypted(page);

    // The operator's one-time setting (docs/security.md): the data encoder button, the browser's
    // own endpoint (the cluster's, which --ui-codec-endpoint set), cross-origin credentials.
    await page.getByRole("navigation", { name: "Main" }).getByRole("button", { name: /Codec Server/ }).click();
    const dialog = page.getByRole("dialog", { name: "Codec Server" });
    await expect(dialog.getByText(codec, { exact: true })).toBeVisible();
    await dialog.getByRole("radio", { name: /Use my browser setting/ }).check();
    await dialog.getByRole("textbox", { name: "Codec Server browser endpoint" }).fill(codec);
    // The switch is a visually hidden input under its label: clicked as a person does.
    await dialog.getByText("Include cross-origin credentials", { exact: true }).click();
    await expect(dialog.getByRole("switch", { name: "Include cross-origin credentials" })).toBeChecked();
    await dialog.getByRole("button", { name: "Apply" }).click();
    await expect(dialog).toBeHidden();

    // Credentials included, but no cookie yet: still refused, still encrypted.
    expect(await codecCookies(context, gateway)).toHaveLength(0);
    await openWorkflow(page, workflow, codec, 401, true);
    await expectEncrypted(page);

    // The operator signs in to the service's web UI, which sets the codec cookie, and follows
    // the order's link to its workflow: decoded.
    const service = await context.newPage();
    await signIn(service, tokens.operator);
    await expect.poll(async () => (await codecCookies(context, gateway)).length).toBe(1);
    await service.goto(`/track/${id}`);
    const link = service.getByRole("link", { name: "Open this delivery's workflow in Temporal Web UI" });
    await expect(link).toHaveAttribute("href", workflow);
    const opened = context.waitForEvent("page");
    await link.click();
    const temporal = await opened;
    const input = temporal.getByRole("textbox", { name: "Input" });
    await expect(input).toContainText("Longbourn House");
    await expect(input).toContainText("Elizabeth Bennet");
    await expect(temporal.locator("#content").getByText("Codec Server could not connect")).toHaveCount(0);
    await temporal.screenshot({ path: "test-results/screenshots/temporal-ui-decoded.png", fullPage: true });

    // Signing out removes the cookie: the same page decodes no more.
    await service.getByRole("button", { name: "Sign out" }).click();
    await expect.poll(async () => (await codecCookies(context, gateway)).length).toBe(0);
    await openWorkflow(temporal, workflow, codec, 401, true);
    await expectEncrypted(temporal);
  },
);
