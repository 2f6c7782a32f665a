// Orders whose deadline is near (pickup, delivery, auto-confirm), soonest first, with the time
// left: read again soon after every pushed change (`pulse`, counted by the page's live socket)
// and every 30 s, the time left counted down between. The time left is the gateway's, counted
// down by the time passed since it answered: the browser's clock may be set wrong.
import { useCallback, useEffect, useState } from "react";
import { useApp } from "../context";
import { useDebounced, useInterval } from "../hooks";
import { formatTime, shortId } from "../labels";
import { Link } from "../router";
import type { AtRiskEntry, AtRiskList } from "../types";
import { ErrorNotice } from "./ErrorNotice";
import { StateBadge } from "./StateBadge";

export const WINDOWS: { value: string; label: string }[] = [
  { value: "2h", label: "2 hours" },
  { value: "12h", label: "12 hours" },
  { value: "1d", label: "1 day" },
  { value: "3d", label: "3 days" },
  { value: "7d", label: "7 days" },
];

export const TIMER_LABELS: Record<string, string> = {
  pickup_deadline: "Pickup deadline",
  delivery_deadline: "Delivery deadline",
  auto_confirm: "Automatic confirmation",
};

/**
 * Seconds left until an entry's deadline at `now`: the gateway's `seconds_left` as of
 * `receivedAt`, less the time passed since. Both are `performance.now()` readings, a local
 * duration that the browser's clock being off (or being set) does not change.
 */
export function secondsLeft(entry: AtRiskEntry, receivedAt: number, now: number): number {
  return entry.seconds_left - (now - receivedAt) / 1000;
}

/** Time left in words: "1 h 5 min left", "overdue by 3 min". */
export function timeLeft(secondsLeft: number): string {
  const seconds = Math.round(secondsLeft);
  const abs = Math.abs(seconds);
  const days = Math.floor(abs / 86_400);
  const hours = Math.floor((abs % 86_400) / 3600);
  const minutes = Math.floor((abs % 3600) / 60);
  const parts =
    days > 0 ? [`${days} d`, `${hours} h`] : hours > 0 ? [`${hours} h`, `${minutes} min`] : minutes > 0 ? [`${minutes} min`] : [`${abs} s`];
  return seconds < 0 ? `overdue by ${parts.join(" ")}` : `${parts.join(" ")} left`;
}

export function AtRisk({ pulse }: { pulse: number }) {
  const { api } = useApp();
  const [within, setWithin] = useState("2h");
  const [entries, setEntries] = useState<AtRiskEntry[] | null>(null);
  const [total, setTotal] = useState(0);
  const [error, setError] = useState<unknown>(null);
  const [receivedAt, setReceivedAt] = useState(() => performance.now());
  const [now, setNow] = useState(() => performance.now());

  const refresh = useCallback(async () => {
    try {
      const list = await api.get<AtRiskList>(`/api/v1/operator/at-risk?within=${encodeURIComponent(within)}`);
      const at = performance.now();
      setEntries(list.entries);
      setTotal(list.total);
      setReceivedAt(at);
      setNow(at);
      setError(null);
    } catch (e) {
      setError(e);
    }
  }, [api, within]);
  useEffect(() => void refresh(), [refresh]);
  useInterval(() => void refresh(), 30_000);
  useInterval(() => setNow(performance.now()), 1000);
  const refreshSoon = useDebounced(() => void refresh(), 500);
  // A change of state moves, sets or clears an order's deadline.
  useEffect(() => {
    if (pulse > 0) refreshSoon();
  }, [pulse, refreshSoon]);

  return (
    <section aria-labelledby="at-risk" data-testid="at-risk">
      <h2 id="at-risk">Deadlines at risk</h2>
      <label className="inline-label">
        Deadlines within
        <select value={within} onChange={(e) => setWithin(e.target.value)}>
          {WINDOWS.map((w) => (
            <option key={w.value} value={w.value}>
              {w.label}
            </option>
          ))}
        </select>
      </label>
      <ErrorNotice error={error} />
      {entries?.length === 0 && <p className="muted">No deadline falls within this window.</p>}
      {entries && total > entries.length && (
        <p className="muted" data-testid="at-risk-count">
          Showing the {entries.length} soonest of {total} orders with a deadline in this window.
        </p>
      )}
      {entries && entries.length > 0 && (
        <table>
          <thead>
            <tr>
              <th scope="col">Order</th>
              <th scope="col">State</th>
              <th scope="col">Deadline</th>
              <th scope="col">Due</th>
              <th scope="col">Time left</th>
            </tr>
          </thead>
          <tbody>
            {entries.map((entry) => {
              const id = entry.delivery_order.delivery_order_id;
              const left = secondsLeft(entry, receivedAt, now);
              const overdue = left <= 0;
              return (
                <tr key={id} data-testid={`at-risk-${id}`} className={overdue ? "overdue" : undefined}>
                  <td>
                    <Link to={`/track/${id}`} title={id}>
                      {shortId(id)}
                    </Link>
                  </td>
                  <td>
                    <StateBadge state={entry.delivery_order.state} />
                  </td>
                  <td>{TIMER_LABELS[entry.deadline.timer] ?? entry.deadline.timer}</td>
                  <td>
                    <time dateTime={entry.deadline.due_at}>{formatTime(entry.deadline.due_at)}</time>
                  </td>
                  <td className="num" data-testid="time-left">
                    {overdue && <span aria-hidden="true">⚠ </span>}
                    {timeLeft(left)}
                  </td>
                </tr>
              );
            })}
          </tbody>
        </table>
      )}
    </section>
  );
}
