// The route of a delivery on a map (Leaflet): the partner's pings as a line, the current
// position and the destination. Tiles come from the gateway's MAP_TILE_URL; without it the route
// is drawn on a blank background, with a scale, so distances still read.
import { useEffect, useRef, useState } from "react";
import type * as Leaflet from "leaflet";
import "leaflet/dist/leaflet.css";
import { formatTime } from "../labels";
import type { DeliveryRoute } from "../types";

type LeafletModule = typeof Leaflet;

/** The points of the line, oldest first, as [lat, lon]. */
export function routeLine(route: DeliveryRoute): [number, number][] {
  return route.points.map((p) => [p.lat, p.lon]);
}

/** Everything the map should show at once: the route and the destination. */
export function routeExtent(route: DeliveryRoute): [number, number][] {
  const all = routeLine(route);
  if (route.destination) all.push([route.destination.lat, route.destination.lon]);
  return all;
}

interface Layers {
  map: Leaflet.Map;
  line: Leaflet.Polyline;
  current: Leaflet.CircleMarker;
  destination: Leaflet.Marker;
}

export function RouteMap({ route, tileUrl }: { route: DeliveryRoute; tileUrl?: string | null }) {
  const box = useRef<HTMLDivElement>(null);
  const [lib, setLib] = useState<LeafletModule | null>(null);
  // State, not a ref: a map built anew (the tile URL arriving after the route) is drawn on at once.
  const [layers, setLayers] = useState<Layers | null>(null);

  useEffect(() => {
    let live = true;
    import("leaflet")
      .then((module) => live && setLib(() => (module.default ?? module) as LeafletModule))
      .catch(() => {
        // No map library here (a test's DOM): the words below the map say the same.
      });
    return () => {
      live = false;
    };
  }, []);

  // The map and its layers, once.
  useEffect(() => {
    if (!lib || !box.current) return;
    const map = lib.map(box.current, { attributionControl: !!tileUrl, zoomSnap: 0.25 });
    if (tileUrl) lib.tileLayer(tileUrl, { maxZoom: 19 }).addTo(map);
    lib.control.scale({ imperial: false }).addTo(map);
    // No simplification and no clipping: the line goes through every reported position.
    const line = lib.polyline([], { smoothFactor: 0, noClip: true, weight: 4, className: "route-line" }).addTo(map);
    const current = lib.circleMarker([0, 0], { radius: 8, weight: 3, className: "route-current" }).bindTooltip("The parcel now");
    const destination = lib
      .marker([0, 0], {
        title: "Destination",
        alt: "Destination",
        icon: lib.divIcon({ className: "route-destination", html: "⚑", iconSize: [24, 24], iconAnchor: [4, 22] }),
      })
      .bindTooltip("Destination");
    setLayers({ map, line, current, destination });
    return () => {
      map.remove();
      setLayers(null);
    };
  }, [lib, tileUrl]);

  // Every change of the route, and every new map: the line, the markers and the view.
  useEffect(() => {
    const l = layers;
    if (!lib || !l) return;
    const points = routeLine(route);
    l.line.setLatLngs(points);
    if (points.length > 0) l.current.setLatLng(points[points.length - 1]).addTo(l.map);
    else l.current.remove();
    if (route.destination) l.destination.setLatLng([route.destination.lat, route.destination.lon]).addTo(l.map);
    else l.destination.remove();
    const extent = routeExtent(route);
    if (extent.length === 1) l.map.setView(extent[0], 16);
    else if (extent.length > 1) l.map.fitBounds(lib.latLngBounds(extent), { padding: [24, 24], maxZoom: 17 });
  }, [lib, layers, route]);

  const last = route.current;
  return (
    <figure className="route">
      <div
        ref={box}
        className={`route-map${tileUrl ? "" : " route-map-blank"}`}
        data-testid="route-map"
        data-points={route.points.length}
        role="img"
        aria-label="Map of the delivery route: the line is the way the parcel came, the dot where it is now, the flag where it goes"
      />
      <figcaption className="muted">
        {route.points.length === 0
          ? "No position reported yet."
          : `${route.points.length} position${route.points.length === 1 ? "" : "s"} reported; the latest ${formatTime(last?.at)}.`}{" "}
        {route.destination ? "The flag marks the destination." : "The partner has not said where the destination is."}
        {!tileUrl && " No map background is configured: the route is drawn to scale on a blank background."}
      </figcaption>
    </figure>
  );
}
