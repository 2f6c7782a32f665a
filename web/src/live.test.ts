import { afterEach, describe, expect, it, vi } from "vitest";
import { LiveSocket, backoffDelay, decide, type Connection } from "./live";
import type { DeliveryOrder } from "./types";
import { FakeSocket } from "./test/fakes";

const order = (version: number) => ({ delivery_order_id: "d1", version, state: "PICKED_UP" }) as DeliveryOrder;

describe("decide", () => {
  it("applies a snapshot and the next version", () => {
    expect(decide(null, { type: "snapshot", delivery_order: order(3) }).action).toBe("apply");
    expect(decide(3, { type: "update", delivery_order: order(4) }).action).toBe("apply");
  });

  it("ignores what it has already shown", () => {
    expect(decide(4, { type: "update", delivery_order: order(4) }).action).toBe("ignore");
    expect(decide(4, { type: "update", delivery_order: order(2) }).action).toBe("ignore");
    expect(decide(5, { type: "snapshot", delivery_order: order(4) }).action).toBe("ignore");
  });

  it("resyncs after a gap and when the server says so", () => {
    const gap = decide(3, { type: "update", delivery_order: order(6) });
    expect(gap).toEqual({ action: "resync", reason: "missed versions 4–5" });
    expect(decide(3, { type: "resync", missed: 12 }).action).toBe("resync");
  });
});

describe("backoffDelay", () => {
  it("doubles up to the ceiling, jittered between half and all of it", () => {
    expect(backoffDelay(1, 500, 15_000, () => 1)).toBe(500);
    expect(backoffDelay(3, 500, 15_000, () => 1)).toBe(2000);
    expect(backoffDelay(3, 500, 15_000, () => 0)).toBe(1000);
    expect(backoffDelay(20, 500, 15_000, () => 1)).toBe(15_000);
  });
});

describe("LiveSocket", () => {
  afterEach(() => {
    vi.useRealTimers();
    FakeSocket.all = [];
  });

  it("reconnects with growing delays, reports each state, and stops for good", () => {
    vi.useFakeTimers();
    const states: Connection[] = [];
    const messages: unknown[] = [];
    const live = new LiveSocket({
      url: () => "ws://gateway/api/v1/ws/events",
      onMessage: (m) => messages.push(m),
      onConnection: (c) => states.push(c),
      random: () => 1,
      socketFactory: (url) => new FakeSocket(url) as unknown as WebSocket,
    });
    live.start();
    FakeSocket.latest().open();
    FakeSocket.latest().receive({ type: "resync" });
    expect(messages).toEqual([{ type: "resync" }]);

    FakeSocket.latest().drop();
    expect(states.at(-1)).toEqual({ status: "offline", retryInMs: 500, attempt: 1 });
    vi.advanceTimersByTime(500);
    expect(FakeSocket.all).toHaveLength(2);
    FakeSocket.latest().drop(); // the gateway is still down
    expect(states.at(-1)).toEqual({ status: "offline", retryInMs: 1000, attempt: 2 });
    vi.advanceTimersByTime(999);
    expect(FakeSocket.all).toHaveLength(2);
    vi.advanceTimersByTime(1);
    FakeSocket.latest().open();
    expect(states.at(-1)).toEqual({ status: "live" });

    // A successful connection resets the backoff.
    FakeSocket.latest().drop();
    expect(states.at(-1)).toMatchObject({ retryInMs: 500 });
    live.stop();
    vi.advanceTimersByTime(60_000);
    expect(FakeSocket.all).toHaveLength(3);
  });
});
