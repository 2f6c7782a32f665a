import { cleanup, render, waitFor } from "@testing-library/react";
import { afterEach, describe, expect, it, vi } from "vitest";
import type { DeliveryRoute } from "../types";
import { RouteMap } from "./RouteMap";

// A stand-in for Leaflet, which needs a real browser: each map keeps the layers added to it and
// what they were last set to.
const leaflet = vi.hoisted(() => {
  class Layer {
    map: FakeMap | null = null;
    at: unknown = null;
    constructor(readonly kind: string) {}
    addTo(map: FakeMap) {
      this.map = map;
      map.layers.add(this);
      return this;
    }
    remove() {
      this.map?.layers.delete(this);
      this.map = null;
      return this;
    }
    setLatLngs(at: unknown) {
      this.at = at;
      return this;
    }
    setLatLng(at: unknown) {
      this.at = at;
      return this;
    }
    bindTooltip() {
      return this;
    }
  }
  class FakeMap {
    layers = new Set<Layer>();
    removed = false;
    remove() {
      this.removed = true;
    }
    setView() {
      return this;
    }
    fitBounds() {
      return this;
    }
    layer(kind: string) {
      return [...this.layers].find((l) => l.kind === kind);
    }
  }
  const maps: FakeMap[] = [];
  const lib = {
    map: () => {
      const map = new FakeMap();
      maps.push(map);
      return map;
    },
    tileLayer: () => new Layer("tiles"),
    control: { scale: () => new Layer("scale") },
    polyline: () => new Layer("line"),
    circleMarker: () => new Layer("current"),
    marker: () => new Layer("destination"),
    divIcon: () => ({}),
    latLngBounds: (extent: unknown) => extent,
  };
  return { maps, lib };
});
vi.mock("leaflet", () => ({ default: leaflet.lib }));

const route: DeliveryRoute = {
  delivery_order_id: "x",
  state: "PICKED_UP",
  points: [
    { lat: 38.71, lon: -9.14, at: "2026-12-01T10:00:00.000Z" },
    { lat: 38.72, lon: -9.14, at: "2026-12-01T10:01:00.000Z" },
  ],
  current: { lat: 38.72, lon: -9.14, at: "2026-12-01T10:01:00.000Z" },
  destination: { lat: 38.73, lon: -9.14 },
};

afterEach(cleanup);

describe("RouteMap", () => {
  it("draws the route again on the map built anew when the tile URL comes after the route", async () => {
    const { rerender } = render(<RouteMap route={route} tileUrl={null} />);
    await waitFor(() => expect(leaflet.maps.at(-1)?.layer("line")?.at).toEqual([[38.71, -9.14], [38.72, -9.14]]));
    const blank = leaflet.maps.at(-1);

    rerender(<RouteMap route={route} tileUrl="https://tiles.example/{z}/{x}/{y}.png" />);
    await waitFor(() => expect(leaflet.maps.at(-1)).not.toBe(blank));
    const map = leaflet.maps.at(-1)!;
    expect(blank?.removed).toBe(true);
    expect(map.layer("tiles")).toBeDefined();
    await waitFor(() => expect(map.layer("line")?.at).toEqual([[38.71, -9.14], [38.72, -9.14]]));
    expect(map.layer("current")?.at).toEqual([38.72, -9.14]);
    expect(map.layer("destination")?.at).toEqual([38.73, -9.14]);
  });
});
