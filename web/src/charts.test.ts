import { describe, expect, it } from "vitest";
import { CHART_STATES, duration, enteredPerHour, failuresByReason, legendSample, stageTimes, STATE_STYLES } from "./charts";
import { timeLeft } from "./components/AtRisk";
import { legendSampleSvg } from "./components/Charts";
import { searchQuery } from "./components/Search";
import { routeExtent, routeLine } from "./components/RouteMap";
import { withPing } from "./pages/Track";
import type { DeliveryRoute, OperationsCharts } from "./types";

const hours = Array.from({ length: 24 }, (_, i) => new Date(Date.UTC(2026, 11, 1, i)).toISOString());

const charts: OperationsCharts = {
  generated_at: "2026-12-01T23:30:00.000Z",
  hours,
  entered: [
    { hour: hours[0], state: "CREATED", count: 3 },
    { hour: hours[23], state: "CREATED", count: 2 },
    { hour: hours[23], state: "DELIVERY_FAILED", count: 1 },
  ],
  stage_durations: [
    { stage: "PICKED_UP", count: 4, p50_seconds: 600, p95_seconds: 1800 },
    { stage: "CREATED", count: 5, p50_seconds: 120, p95_seconds: 300 },
  ],
  failures_by_reason: [
    { reason: "WRONG_ADDRESS", count: 2 },
    { reason: "PACKAGE_LOST", count: 1 },
  ],
};

describe("chart figures", () => {
  it("fill every hour, one series per state seen, in the graph's order", () => {
    const f = enteredPerHour(charts);
    expect(f.x).toHaveLength(24);
    expect(f.x[1] - f.x[0]).toBe(3600);
    expect(f.states).toEqual(["CREATED", "DELIVERY_FAILED"]);
    expect(f.series[0].values[0]).toBe(3);
    expect(f.series[0].values[23]).toBe(2);
    expect(f.series[0].values.slice(1, 23).every((v) => v === 0)).toBe(true);
    expect(f.series[1].label).toBe("Delivery failed");
  });

  it("give stage times in minutes, stages in the graph's order, and failures most frequent first", () => {
    const s = stageTimes(charts);
    expect(s.labels).toEqual(["Waiting for pickup", "On the way"]);
    expect(s.series[0].values).toEqual([2, 10]);
    expect(s.series[1].values).toEqual([5, 30]);
    const f = failuresByReason(charts, (c) => c.toLowerCase());
    expect(f.labels).toEqual(["wrong_address", "package_lost"]);
    expect(f.series[0].values).toEqual([2, 1]);
  });

  it("tell every state's line apart by pattern, not colour alone", () => {
    const patterns = Object.values(STATE_STYLES).map((s) => `${s.dash.join(",")}/${s.width}/${s.point}`);
    expect(new Set(patterns).size).toBe(patterns.length);
    expect(duration(45)).toBe("45 s");
    expect(duration(750)).toBe("13 min");
    expect(duration(5400)).toBe("1.5 h");
  });

  it("show each state's own line pattern in the legend, every one different", () => {
    const patterns = CHART_STATES.map((state) => legendSample(state).dasharray);
    expect(new Set(patterns).size).toBe(CHART_STATES.length);
    for (const state of CHART_STATES) {
      const { dash, width } = STATE_STYLES[state];
      const sample = legendSample(state);
      expect(sample.dasharray).toBe(dash.length > 0 ? dash.join(" ") : "none");
      expect(sample.width).toBe(width);
      const line = legendSampleSvg(state).querySelector("line");
      expect(line?.getAttribute("stroke-dasharray")).toBe(sample.dasharray);
      expect(line?.getAttribute("stroke-width")).toBe(String(width));
    }
    expect(legendSample("CREATED").dasharray).toBe("none");
    expect(legendSample("CANCELLED").dasharray).toBe("1 3");
  });
});

describe("deadlines at risk", () => {
  it("say the time left, and how long overdue", () => {
    expect(timeLeft(90 * 60)).toBe("1 h 30 min left");
    expect(timeLeft(50 * 3600)).toBe("2 d 2 h left");
    expect(timeLeft(20)).toBe("20 s left");
    expect(timeLeft(-3 * 60)).toBe("overdue by 3 min");
  });
});

describe("search", () => {
  const form = { field: "payment_id", text: "", state: "", from: "", to: "" };

  it("sends only the filters given, whole days as a half-open range", () => {
    const q = searchQuery({ ...form, text: " pay-1 ", state: "CREATED", from: "2026-12-01", to: "2026-12-01" });
    expect(typeof q).not.toBe("string");
    const params = q as URLSearchParams;
    expect(params.get("payment_id")).toBe("pay-1");
    expect(params.get("state")).toBe("CREATED");
    const from = new Date(params.get("created_from")!);
    const to = new Date(params.get("created_to")!);
    expect(to.getTime() - from.getTime()).toBe(24 * 3600_000);
    expect(searchQuery(form).toString()).toBe("limit=50");
  });

  it("refuses what the gateway would refuse, in words", () => {
    expect(searchQuery({ ...form, text: "a b" })).toMatch(/letters, digits/);
    expect(searchQuery({ ...form, from: "2026-12-02", to: "2026-12-01" })).toMatch(/first day/);
  });
});

describe("route", () => {
  const route: DeliveryRoute = {
    delivery_order_id: "x",
    state: "PICKED_UP",
    points: [{ lat: 51.5, lon: -0.12, at: "2026-12-01T10:00:00.000Z" }],
    current: { lat: 51.5, lon: -0.12, at: "2026-12-01T10:00:00.000Z" },
    destination: { lat: 51.52, lon: -0.12 },
  };

  it("draws every point and keeps the destination in view", () => {
    expect(routeLine(route)).toEqual([[51.5, -0.12]]);
    expect(routeExtent(route)).toEqual([
      [51.5, -0.12],
      [51.52, -0.12],
    ]);
  });

  it("adds a pushed ping once, and never an older one", () => {
    const next = withPing(route, { lat: 51.501, lon: -0.12 }, "2026-12-01T10:00:01.000Z");
    expect(next.points).toHaveLength(2);
    expect(next.current?.lat).toBe(51.501);
    expect(withPing(next, { lat: 1, lon: 1 }, "2026-12-01T10:00:00.500Z")).toBe(next);
    expect(withPing(next, { lat: "x", lon: 1 }, "2026-12-01T10:00:02.000Z")).toBe(next);
    expect(withPing(next, null, "2026-12-01T10:00:02.000Z")).toBe(next);
  });
});
