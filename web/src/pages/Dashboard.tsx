// Operations dashboard: deadlines at risk, counts by state, drivers on the road, charts of the
// last 24 hours, a live feed of changes and the health of what the service runs on. Refreshes
// every 5 s (the gateway caches the state as long) and soon after any pushed change.
import { useCallback, useEffect, useState } from "react";
import { AtRisk } from "../components/AtRisk";
import { Charts } from "../components/Charts";
import { ConnectionBanner } from "../components/ConnectionBanner";
import { ErrorNotice } from "../components/ErrorNotice";
import { StateBadge } from "../components/StateBadge";
import { useApp, workflowUrl } from "../context";
import { useDebounced, useInterval, useLiveSocket } from "../hooks";
import { STATE_LABELS, eventLabel, formatTime, shortId, stateLabel } from "../labels";
import { Link } from "../router";
import type { QueueHealth, SocketMessage, State, SystemState, TemporalHealth } from "../types";

interface FeedEntry {
  key: string;
  deliveryOrderId: string;
  text: string;
  state?: string;
  at: string;
}

const FEED_LENGTH = 30;

export function Dashboard() {
  const { api, config } = useApp();
  const [state, setState] = useState<SystemState | null>(null);
  const [feed, setFeed] = useState<FeedEntry[]>([]);
  const [error, setError] = useState<unknown>(null);
  const [pulse, setPulse] = useState(0);

  const refresh = useCallback(async () => {
    try {
      const next = await api.get<SystemState>("/api/state");
      setState(next);
      setError(null);
      // Until something is pushed, the feed shows the latest events the state knows of.
      setFeed((current) =>
        current.length > 0
          ? current
          : next.latest_events.map((e) => ({
              key: `${e.delivery_order_id}:${e.seq}`,
              deliveryOrderId: e.delivery_order_id,
              text: eventLabel(e.type),
              state: e.to_state,
              at: e.occurred_at,
            })),
      );
    } catch (e) {
      setError(e);
    }
  }, [api]);
  useEffect(() => void refresh(), [refresh]);
  useInterval(() => void refresh(), 5000);
  const refreshSoon = useDebounced(() => void refresh(), 1000);

  const onMessage = useCallback(
    (message: SocketMessage) => {
      if (message.type === "resync") {
        refreshSoon();
        setPulse((p) => p + 1);
        return;
      }
      if (message.type === "snapshot") return;
      const entry: FeedEntry =
        message.type === "update"
          ? {
              key: `${message.delivery_order.delivery_order_id}:v${message.delivery_order.version}`,
              deliveryOrderId: message.delivery_order.delivery_order_id,
              text: `now ${stateLabel(message.delivery_order.state).toLowerCase()} (version ${message.delivery_order.version})`,
              state: message.delivery_order.state,
              at: message.delivery_order.updated_at,
            }
          : {
              key: `${message.delivery_order_id}:loc:${message.location_at}`,
              deliveryOrderId: message.delivery_order_id,
              text: "location update",
              at: message.location_at ?? new Date().toISOString(),
            };
      setFeed((current) => [entry, ...current.filter((e) => e.key !== entry.key)].slice(0, FEED_LENGTH));
      if (message.type === "update") {
        refreshSoon();
        setPulse((p) => p + 1);
      }
    },
    [refreshSoon],
  );
  const connection = useLiveSocket("/api/v1/ws/events", onMessage);

  return (
    <section className="dashboard">
      <header className="page-header">
        <div>
          <h1>Operations</h1>
          {state && <p className="muted">State as of {formatTime(state.generated_at)}</p>}
        </div>
        <ConnectionBanner connection={connection} />
      </header>
      <ErrorNotice error={error} />
      <AtRisk pulse={pulse} />
      {state && (
        <>
          <div className="cards totals" aria-label="Totals">
            <Figure label="Delivery orders" value={state.totals.delivery_orders} id="total" />
            <Figure label="Active deliveries" value={state.totals.active} id="active" />
            <Figure label="Confirmed today" value={state.totals.confirmed_today} id="confirmed-today" />
            <Figure label="Failed today" value={state.totals.failed_today} id="failed-today" />
            <Figure label="Waiting for an operator" value={state.totals.waiting_for_operator} id="waiting">
              <Link to="/ops/queue">Open the queue</Link>
            </Figure>
          </div>
          <div className="columns">
            <section aria-labelledby="by-state">
              <h2 id="by-state">By state</h2>
              <table>
                <thead>
                  <tr>
                    <th scope="col">State</th>
                    <th scope="col" className="num">
                      Orders
                    </th>
                  </tr>
                </thead>
                <tbody>
                  {(Object.keys(STATE_LABELS) as State[]).map((s) => (
                    <tr key={s} data-testid={`count-${s}`}>
                      <td>
                        <StateBadge state={s} />
                      </td>
                      <td className="num">{state.by_state[s] ?? 0}</td>
                    </tr>
                  ))}
                </tbody>
              </table>
            </section>
            <section aria-labelledby="health">
              <h2 id="health">Health</h2>
              <ul className="health plain">
                <Health name="Temporal" health={state.health.temporal} />
                <Health name="Workers" health={workersHealth(state.health.temporal)} />
                <Health name="PostgreSQL" health={state.health.postgres} />
                <Health name="Redis" health={state.health.redis} />
                <Health name="Projection" health={state.health.projection} />
              </ul>
            </section>
          </div>
          <section aria-labelledby="drivers">
            <h2 id="drivers">Active deliveries</h2>
            {state.active_drivers.length === 0 ? (
              <p className="muted">No parcel is on the road right now.</p>
            ) : (
              <ul className="plain drivers">
                {state.active_drivers.map((d) => (
                  <li key={d.driver}>
                    <strong>{d.driver}</strong>
                    <ul className="inline">
                      {d.delivery_order_ids.map((id) => (
                        <li key={id}>
                          <OrderLinks id={id} workflow={workflowUrl(config, id)} />
                        </li>
                      ))}
                    </ul>
                  </li>
                ))}
              </ul>
            )}
          </section>
        </>
      )}
      <Charts />
      <section aria-labelledby="feed">
        <h2 id="feed">Recent events</h2>
        <ol className="feed plain" aria-live="polite" data-testid="feed">
          {feed.map((entry) => (
            <li key={entry.key}>
              <time dateTime={entry.at}>{formatTime(entry.at)}</time>{" "}
              <OrderLinks id={entry.deliveryOrderId} workflow={workflowUrl(config, entry.deliveryOrderId)} /> {entry.text}
              {entry.state && (
                <>
                  {" "}
                  <StateBadge state={entry.state} />
                </>
              )}
            </li>
          ))}
        </ol>
      </section>
    </section>
  );
}

function Figure({ label, value, id, children }: { label: string; value: number; id: string; children?: React.ReactNode }) {
  return (
    <div className="card figure" data-testid={`total-${id}`}>
      <p className="big">{value}</p>
      <p>{label}</p>
      {children}
    </div>
  );
}

/** What one line of the health list shows: whether it is up, and for workers their queues. */
interface Shown {
  ok: boolean;
  queues?: Record<string, QueueHealth>;
}

function workersHealth(temporal: TemporalHealth): Shown {
  return { ok: temporal.workers_polling, queues: temporal.queues };
}

function Health({ name, health }: { name: string; health: Shown }) {
  const ok = health.ok;
  const backlog = health.queues
    ? Object.entries(health.queues)
        .map(([queue, q]) => `${queue.replace("_", " ")}: ${q.pollers ?? 0} pollers, backlog ${q.backlog ?? "unknown"}`)
        .join("; ")
    : null;
  return (
    <li className={ok ? "health-ok" : "health-down"} data-testid={`health-${name.toLowerCase()}`}>
      <span aria-hidden="true">{ok ? "✓" : "✖"} </span>
      <strong>{name}</strong> {ok ? "OK" : "DOWN"}
      {name === "Workers" && backlog && <span className="muted"> ({backlog})</span>}
    </li>
  );
}

function OrderLinks({ id, workflow }: { id: string; workflow: string | null }) {
  return (
    <>
      <Link to={`/track/${id}`} title={id}>
        {shortId(id)}
      </Link>
      {workflow && (
        <>
          {" "}
          <a href={workflow} target="_blank" rel="noreferrer" className="small" aria-label={`workflow of ${id} in Temporal Web UI`}>
            [workflow]
          </a>
        </>
      )}
    </>
  );
}
