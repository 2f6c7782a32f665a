// Browser tests against the real stack. `make test` runs them through the Rust test
// `tests/tests/integration/web_ui.rs`, which starts Temporal, the worker and the gateway (serving web/dist)
// and passes E2E_BASE_URL, E2E_TOKENS and E2E_CONTROL_URL. Chromium is Debian's: no browser
// download.
import { defineConfig } from "@playwright/test";

export default defineConfig({
  testDir: "e2e",
  // One browser at a time: the tests share one stack, and one restarts its gateway.
  workers: 1,
  fullyParallel: false,
  timeout: 120_000,
  expect: { timeout: 20_000 },
  outputDir: "test-results",
  reporter: [["list"]],
  use: {
    baseURL: process.env.E2E_BASE_URL,
    screenshot: "on",
    trace: "retain-on-failure",
    launchOptions: {
      executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
      // What a closed network and a root user need: no sandbox, no calls home.
      args: [
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
      ],
    },
  },
});
