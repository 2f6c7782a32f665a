import { act, cleanup, fireEvent, render, screen, waitFor, within } from "@testing-library/react";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { App } from "./App";
import { FakeSocket, stubFetch, token } from "./test/fakes";
import type { AtRiskList, DeliveryOrder, DeliveryOrderPage, DeliveryRoute, Tracking } from "./types";

const ID = "0196a3b0-7c1e-7cc0-9d1e-2f3a4b5c6d7e";

function order(version: number, state: DeliveryOrder["state"]): DeliveryOrder {
  return {
    delivery_order_id: ID,
    ordering_id: "ord-1",
    customer_id: "cust-1",
    state,
    version,
    allowed_events: [],
    shipping_address: { name: "Ada", line1: "1 Main St", city: "Lisbon", postal_code: "1000", country: "PT" },
    items: [{ sku: "b-1", title: "Dune", format: "PHYSICAL", quantity: 1 }],
    graph_version: 1,
    created_at: "2026-11-20T09:00:00Z",
    updated_at: "2026-11-20T09:00:00Z",
  };
}

function tracking(version: number, state: DeliveryOrder["state"]): Tracking {
  return {
    delivery_order_id: ID,
    state,
    version,
    steps: [
      { state: "CREATED", reached_at: "2026-11-20T09:00:00Z", current: false },
      { state: "PICKED_UP", reached_at: "2026-11-20T10:00:00Z", current: state === "PICKED_UP" },
      { state: "DELIVERED", reached_at: state === "DELIVERED" ? "2026-11-20T12:00:00Z" : undefined, current: state === "DELIVERED" },
      { state: "DELIVERY_CONFIRMED", current: false },
    ],
    driver: { name: "Rui", phone: "*******123" },
    eta: "2026-11-20T13:00:00Z",
    ordering_id: "ord-1",
    items: [],
    recipient: "Ada",
    city: "Lisbon",
  };
}

function route(state: DeliveryOrder["state"]): DeliveryRoute {
  const points = [
    { lat: 38.71, lon: -9.14, at: "2026-11-20T10:01:00Z" },
    { lat: 38.72, lon: -9.14, at: "2026-11-20T10:02:00Z" },
  ];
  return { delivery_order_id: ID, state, points, current: points[1], destination: { lat: 38.73, lon: -9.14 } };
}

function signIn(sub: string, roles: string[]) {
  window.localStorage.setItem("delivery.session.token", token(sub, roles));
}

beforeEach(() => {
  FakeSocket.all = [];
  vi.stubGlobal("WebSocket", FakeSocket);
});

afterEach(() => {
  cleanup();
  window.localStorage.clear();
  window.history.pushState(null, "", "/");
  vi.unstubAllGlobals();
});

describe("App", () => {
  it("asks for a token first and explains a bad one", async () => {
    stubFetch({ "/api/v1/ui-config": { body: {} } });
    render(<App />);
    fireEvent.change(screen.getByLabelText("Access token"), { target: { value: "not a token" } });
    fireEvent.click(screen.getByRole("button", { name: "Sign in" }));
    expect((await screen.findByRole("alert")).textContent).toMatch(/three parts/);
  });

  it("shows operators their pages and hides them from customers", async () => {
    stubFetch({ "/api/v1/ui-config": { body: {} } });
    signIn("alice", ["operator"]);
    const { unmount } = render(<App />);
    const nav = () => within(screen.getByRole("navigation", { name: "Main" }));
    expect(nav().getByRole("link", { name: "Operator queue" })).toBeTruthy();
    expect(nav().getByRole("link", { name: "Dashboard" })).toBeTruthy();
    unmount();

    signIn("cust-1", ["customer"]);
    window.history.pushState(null, "", "/ops/queue");
    render(<App />);
    expect(nav().queryByRole("link", { name: "Operator queue" })).toBeNull();
    expect(nav().queryByRole("link", { name: "Dashboard" })).toBeNull();
    expect(screen.getByRole("heading", { name: "Not for your role" })).toBeTruthy();
  });

  it("tracks live, offers receipt only to the customer, and resyncs after a gap", async () => {
    let current = order(3, "PICKED_UP");
    const calls = stubFetch({
      "/api/v1/ui-config": { body: { workflow_url_template: "http://t/wf/{delivery_order_id}" } },
      [`/api/v1/delivery-orders/${ID}`]: () => ({ body: current }),
      [`/api/v1/tracking/${ID}/route`]: () => ({ body: route(current.state) }),
      [`/api/v1/tracking/${ID}`]: () => ({ body: tracking(current.version, current.state) }),
    });
    signIn("cust-1", ["customer"]);
    window.history.pushState(null, "", `/track/${ID}`);
    render(<App />);
    await screen.findByText("On the way");
    expect(screen.getByTestId("driver").textContent).toContain("Rui");
    expect(screen.queryByRole("button", { name: "Confirm receipt" })).toBeNull();
    // Customers do not get the Temporal link.
    expect(screen.queryByText(/Temporal Web UI/)).toBeNull();

    const socket = FakeSocket.latest();
    expect(socket.url).toContain(`/api/v1/ws/delivery-orders/${ID}?access_token=`);
    act(() => socket.open());
    await screen.findByText("Live");

    // The next version applies as pushed.
    current = order(4, "DELIVERED");
    act(() => socket.receive({ type: "update", delivery_order: current }));
    await screen.findByRole("button", { name: "Confirm receipt" });

    // Versions 5 and 6 were missed: the page reads the order again instead of trusting 7.
    const reads = () => calls.filter((c) => c.path === `/api/v1/delivery-orders/${ID}`).length;
    const before = reads();
    current = order(7, "DELIVERY_CONFIRMED");
    act(() => socket.receive({ type: "update", delivery_order: { ...current, state: "DELIVERED" } }));
    await waitFor(() => expect(reads()).toBe(before + 1));
    await screen.findByText("Received");

    act(() => socket.drop());
    expect((await screen.findByText(/Offline: live updates are interrupted/)).textContent).toMatch(/Reconnecting in/);
  });

  it("keeps a pushed version when an older read answers after it", async () => {
    let answerRead: (() => void) | null = null;
    const fetch = vi.fn(async (input: RequestInfo | URL) => {
      const path = String(input);
      const json = (body: unknown) => new Response(JSON.stringify(body), { headers: { "Content-Type": "application/json" } });
      if (path.startsWith("/api/v1/ui-config")) return json({});
      if (path.startsWith(`/api/v1/tracking/${ID}/route`)) return json(route("DELIVERED"));
      if (path.startsWith(`/api/v1/tracking/${ID}`)) return json(tracking(5, "DELIVERED"));
      // The first read is slow and answers with what was true when it was sent.
      await new Promise<void>((resolve) => (answerRead = resolve));
      return json(order(4, "PICKED_UP"));
    });
    vi.stubGlobal("fetch", fetch);
    signIn("cust-1", ["customer"]);
    window.history.pushState(null, "", `/track/${ID}`);
    render(<App />);
    const socket = FakeSocket.latest();
    act(() => socket.open());
    act(() => socket.receive({ type: "snapshot", delivery_order: order(5, "DELIVERED") }));
    await screen.findByRole("button", { name: "Confirm receipt" });
    await waitFor(() => expect(answerRead).not.toBeNull());
    await act(async () => answerRead!());
    expect(screen.getByRole("button", { name: "Confirm receipt" })).toBeTruthy();
    expect(screen.queryByText("On the way")).toBeNull();
  });

  it("lists a customer's own deliveries on the start page, newest first, a page at a time", async () => {
    const first: DeliveryOrderPage = { items: [order(2, "PICKED_UP")], next_cursor: "c1" };
    const older = { ...order(0, "DELIVERY_CONFIRMED"), delivery_order_id: "0196a3b0-0000-7cc0-9d1e-2f3a4b5c6d7e" };
    const calls = stubFetch({
      "/api/v1/ui-config": { body: {} },
      "/api/v1/me/delivery-orders?limit=20&cursor=c1": { body: { items: [older] } },
      "/api/v1/me/delivery-orders": { body: first },
    });
    signIn("cust-1", ["customer"]);
    render(<App />);
    const mine = await screen.findByTestId(`mine-${ID}`);
    expect(mine.textContent).toContain("On the way");
    expect(mine.textContent).toContain("1 × Dune");
    expect(within(mine).getByRole("link").getAttribute("href")).toBe(`/track/${ID}`);
    fireEvent.click(screen.getByRole("button", { name: "Show older deliveries" }));
    expect((await screen.findByTestId(`mine-${older.delivery_order_id}`)).textContent).toContain("Received");
    expect(screen.queryByRole("button", { name: "Show older deliveries" })).toBeNull();
    expect(calls.some((c) => c.path === "/api/v1/me/delivery-orders?limit=20&cursor=c1")).toBe(true);
  });

  it("shows operators the deadlines at risk and reads them again when a change is pushed", async () => {
    const due = new Date(Date.now() + 65 * 60_000).toISOString();
    let list: AtRiskList = { within_seconds: 7200, entries: [], total: 0 };
    const calls = stubFetch({
      "/api/v1/ui-config": { body: {} },
      "/api/v1/operator/at-risk": () => ({ body: list }),
      "/api/v1/operator/queue": { body: { entries: [] } },
    });
    signIn("alice", ["operator"]);
    window.history.pushState(null, "", "/ops/queue");
    render(<App />);
    await screen.findByText("No deadline falls within this window.");
    // The soonest of three: the list was cut at its limit, and says so.
    list = {
      within_seconds: 7200,
      entries: [{ delivery_order: order(0, "CREATED"), deadline: { timer: "pickup_deadline", due_at: due }, seconds_left: 3900 }],
      total: 3,
    };
    const socket = FakeSocket.latest();
    act(() => socket.open());
    act(() => socket.receive({ type: "update", delivery_order: order(0, "CREATED") }));
    const row = await screen.findByTestId(`at-risk-${ID}`, {}, { timeout: 3000 });
    expect(row.textContent).toContain("Pickup deadline");
    expect(within(row).getByTestId("time-left").textContent).toMatch(/^1 h [45] min left$/);
    expect(screen.getByTestId("at-risk-count").textContent).toBe(
      "Showing the 1 soonest of 3 orders with a deadline in this window.",
    );
    fireEvent.change(screen.getByLabelText("Deadlines within"), { target: { value: "3d" } });
    await waitFor(() => expect(calls.some((c) => c.path === "/api/v1/operator/at-risk?within=3d")).toBe(true));
  });

  it("sends the customer's receipt and shows the gateway's refusal in words", async () => {
    const current = order(4, "DELIVERED");
    stubFetch({
      "/api/v1/ui-config": { body: {} },
      [`/api/v1/delivery-orders/${ID}/events`]: {
        status: 409,
        body: { title: "Conflict", detail: "CONFIRMED is not allowed in state DELIVERY_CONFIRMED" },
      },
      [`/api/v1/delivery-orders/${ID}`]: { body: current },
      [`/api/v1/tracking/${ID}/route`]: { body: route("DELIVERED") },
      [`/api/v1/tracking/${ID}`]: { body: tracking(4, "DELIVERED") },
    });
    signIn("cust-1", ["customer"]);
    window.history.pushState(null, "", `/track/${ID}`);
    render(<App />);
    fireEvent.click(await screen.findByRole("button", { name: "Confirm receipt" }));
    expect((await screen.findByRole("alert")).textContent).toContain("not allowed in state DELIVERY_CONFIRMED");
  });
});
