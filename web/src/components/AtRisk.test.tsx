import { cleanup, render, screen, within } from "@testing-library/react";
import { afterEach, describe, expect, it, vi } from "vitest";
import { createApi } from "../api";
import { AppContext } from "../context";
import { stubFetch } from "../test/fakes";
import type { AtRiskList, DeliveryOrder } from "../types";
import { AtRisk } from "./AtRisk";

const ID = "0196a3b0-7c1e-7cc0-9d1e-2f3a4b5c6d7e";

const order: DeliveryOrder = {
  delivery_order_id: ID,
  ordering_id: "ord-1",
  customer_id: "cust-1",
  state: "CREATED",
  version: 0,
  allowed_events: [],
  shipping_address: { name: "Ada", line1: "1 Main St", city: "Lisbon", postal_code: "1000", country: "PT" },
  items: [],
  graph_version: 1,
  created_at: "2026-12-01T11:00:00Z",
  updated_at: "2026-12-01T11:00:00Z",
};

afterEach(() => {
  cleanup();
  vi.useRealTimers();
  vi.unstubAllGlobals();
});

describe("AtRisk", () => {
  it("counts down from the gateway's time left, whatever the browser's clock says", async () => {
    const dueAt = "2026-12-01T12:00:00.000Z";
    // The gateway answered at 11:50, 600 s before the deadline; the browser's clock is 10 minutes
    // ahead of it and reads the deadline itself.
    vi.useFakeTimers({ toFake: ["Date"], now: new Date(dueAt) });
    const list: AtRiskList = {
      within_seconds: 7200,
      entries: [{ delivery_order: order, deadline: { timer: "pickup_deadline", due_at: dueAt }, seconds_left: 600 }],
      total: 1,
    };
    stubFetch({ "/api/v1/operator/at-risk": { body: list } });
    const api = createApi(() => null, () => {});
    render(
      <AppContext.Provider value={{ session: null, api, config: {}, signOut: () => {} }}>
        <AtRisk pulse={0} />
      </AppContext.Provider>,
    );
    const row = await screen.findByTestId(`at-risk-${ID}`);
    expect(within(row).getByTestId("time-left").textContent).toBe("10 min left");
    expect(row.className).not.toContain("overdue");
  });
});
