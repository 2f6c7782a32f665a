/// <reference types="vitest/config" />
import { defineConfig } from "vite";

// The gateway serves the built app; `npm run dev` proxies the API to a running `make run`.
const gateway = process.env.GATEWAY_URL ?? "http://127.0.0.1:8080";

export default defineConfig({
  esbuild: { jsx: "automatic" },
  server: {
    proxy: {
      "/api": { target: gateway, ws: true },
    },
  },
  build: { outDir: "dist", sourcemap: true },
  test: {
    environment: "jsdom",
    include: ["src/**/*.test.{ts,tsx}"],
    restoreMocks: true,
  },
});
