// Customer tracking: the stages with their times, driver, location and ETA, live over the
// order's WebSocket; confirm receipt or report a problem once delivered.
import { useCallback, useEffect, useRef, useState, type FormEvent } from "react";
import { ApiProblem } from "../api";
import { ConnectionBanner } from "../components/ConnectionBanner";
import { RouteMap } from "../components/RouteMap";
import { ErrorNotice } from "../components/ErrorNotice";
import { StateBadge } from "../components/StateBadge";
import { Stepper } from "../components/Stepper";
import { useApp, workflowUrl } from "../context";
import { useLiveSocket } from "../hooks";
import {
  DISPUTE_REASONS,
  STATE_DESCRIPTIONS,
  eventLabel,
  formatTime,
  reasonInWords,
} from "../labels";
import { decide } from "../live";
import { Link } from "../router";
import { isCustomer, isOperator } from "../session";
import type { AuditEvent, AuditTrail, DeliveryOrder, DeliveryRoute, EventApplied, ProgressStep, SocketMessage, Tracking } from "../types";

/** Before pickup there is no tracking yet: the stages come from the order itself. */
function stepsBeforePickup(order: DeliveryOrder): ProgressStep[] {
  return [
    { state: "CREATED", reached_at: order.created_at, current: true },
    { state: "PICKED_UP", current: false },
    { state: "DELIVERED", current: false },
    { state: "DELIVERY_CONFIRMED", current: false },
  ];
}

const OFF_PATH = new Set(["DELIVERY_FAILED", "PENDING_BY_OPERATOR", "RESHIPPED", "CANCELLED"]);
/** States with a route to show: on the way, and just delivered. */
const ON_THE_ROAD = new Set(["PICKED_UP", "DELIVERED"]);

/** A pushed ping on the route (a repeated or older one changes nothing). */
export function withPing(route: DeliveryRoute, location: unknown, at: string): DeliveryRoute {
  if (typeof location !== "object" || location === null) return route;
  const { lat: latText, lon: lonText } = location as { lat?: unknown; lon?: unknown };
  const lat = Number(latText);
  const lon = Number(lonText);
  if (!Number.isFinite(lat) || !Number.isFinite(lon)) return route;
  const last = route.points[route.points.length - 1];
  if (last && new Date(last.at).getTime() >= new Date(at).getTime()) return route;
  const point = { lat, lon, at };
  return { ...route, points: [...route.points, point], current: point };
}

export function Track({ id }: { id: string }) {
  const { api, session, config } = useApp();
  const [order, setOrder] = useState<DeliveryOrder | null>(null);
  const [tracking, setTracking] = useState<Tracking | null>(null);
  const [trail, setTrail] = useState<AuditEvent[]>([]);
  const [route, setRoute] = useState<DeliveryRoute | null>(null);
  const [error, setError] = useState<unknown>(null);
  const version = useRef<number | null>(null);
  // The version of the tracking document shown: the order read can be ahead of it (a read that
  // waited for `min_version` and fell back to PostgreSQL while the cache was still a step
  // behind), and the update that then arrives carries the order's version, already shown.
  const trackingVersion = useRef<number | null>(null);

  const loadDetails = useCallback(
    async (current: DeliveryOrder) => {
      try {
        if (current.state !== "CREATED") {
          let next = await api.get<Tracking>(`/api/v1/tracking/${id}`);
          // The cache may still be publishing the version just read: a few short tries.
          for (let tries = 0; tries < 3 && next.version < current.version; tries++) {
            await new Promise((resolve) => setTimeout(resolve, 300));
            next = await api.get<Tracking>(`/api/v1/tracking/${id}`);
          }
          trackingVersion.current = next.version;
          setTracking(next);
        } else {
          trackingVersion.current = null;
          setTracking(null);
        }
        if (ON_THE_ROAD.has(current.state)) {
          setRoute(await api.get<DeliveryRoute>(`/api/v1/tracking/${id}/route`));
        } else {
          setRoute(null);
        }
        if (OFF_PATH.has(current.state)) {
          const audit = await api.get<AuditTrail>(`/api/v1/delivery-orders/${id}/events`);
          setTrail(audit.events);
        }
        setError(null);
      } catch (e) {
        // "not dispatched yet" just means no tracking yet.
        if (!(e instanceof ApiProblem && e.status === 400)) setError(e);
      }
    },
    [api, id],
  );

  const show = useCallback(
    (next: DeliveryOrder) => {
      // Answers can cross: a read sent before a pushed update may arrive after it.
      if (version.current !== null && next.version < version.current) return;
      version.current = next.version;
      setOrder(next);
      void loadDetails(next);
    },
    [loadDetails],
  );

  /** Reads the order again; after our own command, at least the version it produced. */
  const reload = useCallback(async (minVersion?: number) => {
    const wait = minVersion === undefined ? "" : `?min_version=${minVersion}`;
    try {
      show(await api.get<DeliveryOrder>(`/api/v1/delivery-orders/${id}${wait}`));
    } catch (e) {
      setError(e);
    }
  }, [api, id, show]);

  useEffect(() => {
    version.current = null;
    trackingVersion.current = null;
    setOrder(null);
    setTracking(null);
    setTrail([]);
    setRoute(null);
    void reload();
  }, [reload]);

  const onMessage = useCallback(
    (message: SocketMessage) => {
      if (message.type === "tracking") {
        setTracking((t) => (t ? { ...t, location: message.location, location_at: message.location_at } : t));
        setRoute((r) => (r ? withPing(r, message.location, message.location_at) : r));
        return;
      }
      const decision = decide(version.current, message);
      if (decision.action === "apply") {
        if (decision.order.version !== version.current) show(decision.order);
        // The order is current but its tracking was read from a cache a step behind.
        else if (trackingVersion.current !== null && trackingVersion.current < decision.order.version)
          void loadDetails(decision.order);
      } else if (decision.action === "resync") void reload();
    },
    [loadDetails, reload, show],
  );
  const connection = useLiveSocket(`/api/v1/ws/delivery-orders/${encodeURIComponent(id)}`, onMessage);

  if (!order) {
    return (
      <section aria-busy={!error}>
        <h1>Delivery {id}</h1>
        {error ? <ErrorNotice error={error} /> : <p>Loading…</p>}
        {error instanceof ApiProblem && error.status === 404 && (
          <p>Check the delivery number in your confirmation e-mail, or <Link to="/">track another delivery</Link>.</p>
        )}
      </section>
    );
  }

  const steps = tracking?.steps ?? stepsBeforePickup(order);
  const eta = tracking?.eta ?? order.eta;
  const workflow = isOperator(session) ? workflowUrl(config, order.delivery_order_id) : null;
  return (
    <section className="track" data-version={order.version}>
      <header className="page-header">
        <div>
          <h1>Your delivery</h1>
          <p className="muted">
            Delivery <code>{order.delivery_order_id}</code>
            {order.partner_order_number && <> · partner reference <code>{order.partner_order_number}</code></>}
          </p>
        </div>
        <ConnectionBanner connection={connection} />
      </header>
      <ErrorNotice error={error} />
      <p className="status-line">
        <StateBadge state={order.state} /> <span data-testid="state-description">{STATE_DESCRIPTIONS[order.state]}</span>
      </p>
      <Explanation order={order} trail={trail} />
      <Stepper steps={steps} />
      <div className="cards">
        {eta && !OFF_PATH.has(order.state) && order.state !== "DELIVERY_CONFIRMED" && (
          <div className="card" data-testid="eta">
            <h2>Expected arrival</h2>
            <p className="big">
              <time dateTime={eta}>{formatTime(eta)}</time>
            </p>
          </div>
        )}
        {tracking?.driver && (
          <div className="card" data-testid="driver">
            <h2>Your driver</h2>
            <p>{tracking.driver.name ?? "Name not shared"}</p>
            {tracking.driver.phone && <p>Phone {tracking.driver.phone}</p>}
            {tracking.driver.vehicle && <p>Vehicle {tracking.driver.vehicle}</p>}
          </div>
        )}
        {tracking?.location != null && (
          <div className="card" data-testid="location">
            <h2>Last location</h2>
            <p>{describeLocation(tracking.location)}</p>
            {tracking.location_at && <p className="muted">as of {formatTime(tracking.location_at)}</p>}
          </div>
        )}
        <div className="card">
          <h2>What is coming</h2>
          <ul className="plain">
            {order.items.map((item) => (
              <li key={item.sku}>
                {item.quantity} × {item.title}
              </li>
            ))}
          </ul>
          <p className="muted">
            To {order.shipping_address.name}, {order.shipping_address.city}
          </p>
        </div>
      </div>
      {route && ON_THE_ROAD.has(order.state) && (
        <section aria-labelledby="route-heading">
          <h2 id="route-heading">Route</h2>
          <RouteMap route={route} tileUrl={config.map_tile_url} />
        </section>
      )}
      {order.state === "DELIVERED" && isCustomer(session) && (
        <ReceiptActions id={order.delivery_order_id} onDone={(applied) => void reload(applied)} />
      )}
      {workflow && (
        <p>
          <a href={workflow} target="_blank" rel="noreferrer">
            Open this delivery's workflow in Temporal Web UI
          </a>
        </p>
      )}
    </section>
  );
}

function describeLocation(location: unknown): string {
  const at = (key: string) => field(location, key);
  const lat = Number(at("lat") ?? at("latitude"));
  const lon = Number(at("lon") ?? at("lng") ?? at("longitude"));
  if (Number.isFinite(lat) && Number.isFinite(lon)) return `${lat.toFixed(4)}, ${lon.toFixed(4)}`;
  return JSON.stringify(location);
}

/** `data[key]` when `data` is an object (the API types event data as any JSON value). */
function field(data: unknown, key: string): unknown {
  return typeof data === "object" && data !== null ? (data as Record<string, unknown>)[key] : undefined;
}

/** Why a delivery left the happy path, and where it went. */
function Explanation({ order, trail }: { order: DeliveryOrder; trail: AuditEvent[] }) {
  const failure = [...trail].reverse().find((e) => e.type === "DELIVERY_FAILED");
  const dispute = [...trail].reverse().find((e) => e.type === "DISPUTED");
  const resolution = [...trail].reverse().find((e) => e.type.startsWith("OPERATOR_") || e.type === "CANCEL");
  const lines: string[] = [];
  if (order.failure_reason || failure) {
    const code = order.failure_reason ?? String(field(failure?.data, "reason") ?? "");
    const detail = order.failure_detail ?? (field(failure?.data, "detail") as string | undefined);
    lines.push(`The delivery failed: ${reasonInWords(code)}${detail ? ` (${detail})` : ""}.`);
  }
  if (dispute) {
    const detail = field(dispute.data, "detail") as string | undefined;
    lines.push(`You reported a problem: ${reasonInWords(String(field(dispute.data, "reason")))}${detail ? ` (“${detail}”)` : ""}.`);
  }
  if (resolution) {
    const note = field(resolution.data, "note") ?? field(resolution.data, "reason");
    lines.push(`Decision: ${eventLabel(resolution.type)}${note ? ` — “${String(note)}”` : ""}.`);
  }
  if (lines.length === 0 && !order.replaced_by_id && !order.replaces_id) return null;
  return (
    <div className="explanation" data-testid="explanation">
      {lines.map((line) => (
        <p key={line}>{line}</p>
      ))}
      {order.replaced_by_id && (
        <p>
          A new delivery was sent: <Link to={`/track/${order.replaced_by_id}`}>track the new delivery</Link>.
        </p>
      )}
      {order.replaces_id && (
        <p>
          This delivery replaces an earlier one (<Link to={`/track/${order.replaces_id}`}>see it</Link>).
        </p>
      )}
    </div>
  );
}

function ReceiptActions({ id, onDone }: { id: string; onDone: (appliedVersion: number) => void }) {
  const { api } = useApp();
  const [reporting, setReporting] = useState(false);
  const [reason, setReason] = useState("NOT_RECEIVED");
  const [detail, setDetail] = useState("");
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>(null);

  const send = async (type: string, data: Record<string, unknown>) => {
    setBusy(true);
    setError(null);
    try {
      const applied = await api.post<EventApplied>(`/api/v1/delivery-orders/${id}/events`, { type, data });
      onDone(applied.version);
    } catch (e) {
      setError(e);
    } finally {
      setBusy(false);
    }
  };
  const report = (event: FormEvent) => {
    event.preventDefault();
    void send("DISPUTED", detail.trim() ? { reason, detail: detail.trim() } : { reason });
  };

  return (
    <div className="card actions" aria-label="Your receipt">
      <h2>Did it arrive?</h2>
      <ErrorNotice error={error} />
      <div className="button-row">
        <button type="button" disabled={busy} onClick={() => void send("CONFIRMED", {})}>
          Confirm receipt
        </button>
        <button type="button" className="secondary" disabled={busy} aria-expanded={reporting} onClick={() => setReporting(!reporting)}>
          Report a problem
        </button>
      </div>
      {reporting && (
        <form onSubmit={report} className="stack">
          <label>
            What went wrong?
            <select value={reason} onChange={(e) => setReason(e.target.value)}>
              {Object.entries(DISPUTE_REASONS).map(([code, words]) => (
                <option key={code} value={code}>
                  {words[0].toUpperCase() + words.slice(1)}
                </option>
              ))}
            </select>
          </label>
          <label>
            Details (optional)
            <textarea value={detail} onChange={(e) => setDetail(e.target.value)} rows={3} maxLength={1000} />
          </label>
          <button type="submit" disabled={busy}>
            Send the report
          </button>
        </form>
      )}
    </div>
  );
}
