// Operator console: search, the deadlines at risk, then the delivery orders waiting for a
// decision, the longest waiting first, each with why it waits and its audit trail; reship,
// cancel or confirm delivered with a note.
import { useCallback, useEffect, useState, type FormEvent } from "react";
import { AtRisk } from "../components/AtRisk";
import { ConnectionBanner } from "../components/ConnectionBanner";
import { Search } from "../components/Search";
import { ErrorNotice } from "../components/ErrorNotice";
import { StateBadge } from "../components/StateBadge";
import { useApp, workflowUrl } from "../context";
import { useDebounced, useInterval, useLiveSocket } from "../hooks";
import { eventLabel, formatTime, reasonInWords, shortId } from "../labels";
import { Link } from "../router";
import type { AuditTrail, DeliveryOrder, EventApplied, QueueEntry, SocketMessage } from "../types";

type Resolution = "OPERATOR_RESHIP" | "OPERATOR_CANCEL" | "OPERATOR_CONFIRM_DELIVERED";

const RESOLUTIONS: { type: Resolution; label: string }[] = [
  { type: "OPERATOR_RESHIP", label: "Reship" },
  { type: "OPERATOR_CANCEL", label: "Cancel and refund" },
  { type: "OPERATOR_CONFIRM_DELIVERED", label: "Confirm delivered" },
];

interface Resolved {
  id: string;
  type: Resolution;
  note: string;
  replacedBy?: string;
}

export function OperatorQueue() {
  const { api } = useApp();
  const [entries, setEntries] = useState<QueueEntry[] | null>(null);
  const [resolved, setResolved] = useState<Resolved[]>([]);
  const [error, setError] = useState<unknown>(null);
  const [pulse, setPulse] = useState(0);

  const refresh = useCallback(async () => {
    try {
      const queue = await api.get<{ entries: QueueEntry[] }>("/api/v1/operator/queue");
      setEntries(queue.entries);
      setError(null);
    } catch (e) {
      setError(e);
    }
  }, [api]);
  useEffect(() => void refresh(), [refresh]);
  useInterval(() => void refresh(), 10_000);
  const refreshSoon = useDebounced(() => void refresh(), 500);
  const onMessage = useCallback(
    (message: SocketMessage) => {
      if (message.type === "update" || message.type === "resync") {
        refreshSoon();
        setPulse((p) => p + 1);
      }
    },
    [refreshSoon],
  );
  const connection = useLiveSocket("/api/v1/ws/events", onMessage);

  const onResolved = (done: Resolved) => {
    setResolved((list) => [done, ...list.filter((r) => r.id !== done.id)]);
    setEntries((list) => list?.filter((e) => e.delivery_order.delivery_order_id !== done.id) ?? null);
  };

  return (
    <section className="queue">
      <header className="page-header">
        <div>
          <h1>Operator queue</h1>
          <p className="muted">Deliveries waiting for a decision, the longest waiting first.</p>
        </div>
        <ConnectionBanner connection={connection} />
      </header>
      <Search />
      <AtRisk pulse={pulse} />
      <h2>Waiting for a decision</h2>
      <ErrorNotice error={error} />
      {resolved.length > 0 && (
        <section aria-labelledby="resolved" className="card">
          <h2 id="resolved">Resolved just now</h2>
          <ul className="plain" data-testid="resolved">
            {resolved.map((r) => (
              <li key={r.id}>
                <Link to={`/track/${r.id}`}>{shortId(r.id)}</Link>: {eventLabel(r.type)} — “{r.note}”
                {r.type === "OPERATOR_RESHIP" &&
                  (r.replacedBy ? (
                    <>
                      {" "}
                      → new delivery order{" "}
                      <Link to={`/track/${r.replacedBy}`} data-testid="replacement-link">
                        {r.replacedBy}
                      </Link>
                    </>
                  ) : (
                    <span className="muted"> (creating the new delivery order…)</span>
                  ))}
              </li>
            ))}
          </ul>
        </section>
      )}
      {entries === null && !error && <p>Loading…</p>}
      {entries?.length === 0 && <p data-testid="queue-empty">Nothing is waiting. Well done.</p>}
      <ol className="plain queue-list">
        {entries?.map((entry) => (
          <QueueItem key={entry.delivery_order.delivery_order_id} entry={entry} onResolved={onResolved} />
        ))}
      </ol>
    </section>
  );
}

function QueueItem({ entry, onResolved }: { entry: QueueEntry; onResolved: (r: Resolved) => void }) {
  const { api, config } = useApp();
  const order = entry.delivery_order;
  const id = order.delivery_order_id;
  const [trail, setTrail] = useState<AuditTrail | null>(null);
  const [note, setNote] = useState("");
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>(null);
  const [noteMissing, setNoteMissing] = useState(false);

  useEffect(() => {
    api.get<AuditTrail>(`/api/v1/delivery-orders/${id}/events`).then(setTrail, setError);
  }, [api, id]);

  const resolve = async (type: Resolution, event?: FormEvent) => {
    event?.preventDefault();
    const text = note.trim();
    if (!text) {
      setNoteMissing(true);
      return;
    }
    setBusy(true);
    setError(null);
    try {
      const applied = await api.post<EventApplied>(`/api/v1/delivery-orders/${id}/events`, {
        type,
        data: { note: text },
      });
      const done: Resolved = { id, type, note: text };
      onResolved(done);
      if (type === "OPERATOR_RESHIP") void followReplacement(applied.version, done);
    } catch (e) {
      setError(e);
      setBusy(false);
    }
  };

  // The new delivery order is created by the workflow after the reship: read until it shows.
  const followReplacement = async (version: number, done: Resolved) => {
    for (let attempt = 0; attempt < 20; attempt++) {
      try {
        const current = await api.get<DeliveryOrder>(`/api/v1/delivery-orders/${id}?min_version=${version}`);
        if (current.replaced_by_id) {
          onResolved({ ...done, replacedBy: current.replaced_by_id });
          return;
        }
        version = current.version + 1;
      } catch {
        // Not there yet (projection behind): wait and ask again.
      }
      await new Promise((r) => setTimeout(r, 500));
    }
  };

  const reason = entry.reason;
  const workflow = workflowUrl(config, id);
  return (
    <li className="card queue-item" data-testid={`queue-item-${id}`}>
      <header>
        <h2>
          <Link to={`/track/${id}`}>Delivery {shortId(id)}</Link> <StateBadge state={order.state} />
        </h2>
        <p className="muted">
          Waiting since {formatTime(entry.waiting_since)} · {order.shipping_address.name}, {order.shipping_address.city}
          {workflow && (
            <>
              {" · "}
              <a href={workflow} target="_blank" rel="noreferrer">
                workflow in Temporal Web UI
              </a>
            </>
          )}
        </p>
      </header>
      <p className="reason" data-testid="reason">
        <strong>{reason.kind === "DISPUTED" ? "Customer reported a problem" : "Delivery failed"}:</strong>{" "}
        {reasonInWords(reason.code)}
        {reason.detail && <> — “{reason.detail}”</>}
      </p>
      <details>
        <summary>Audit trail ({trail ? trail.events.length : "…"} events)</summary>
        <ol className="trail">
          {trail?.events.map((e) => (
            <li key={e.seq}>
              <time dateTime={e.occurred_at}>{formatTime(e.occurred_at)}</time> {eventLabel(e.type)} by {e.actor.kind}
              {e.actor.id ? ` (${e.actor.id})` : ""}: {e.from_state ? `${e.from_state} → ${e.to_state}` : e.to_state}
              {e.correlation_id && <span className="muted"> · correlation {e.correlation_id}</span>}
            </li>
          ))}
        </ol>
      </details>
      <form className="stack" onSubmit={(e) => void resolve("OPERATOR_RESHIP", e)}>
        <label>
          Note for the record (required)
          <textarea
            value={note}
            rows={2}
            maxLength={1000}
            aria-invalid={noteMissing}
            aria-describedby={noteMissing ? `note-missing-${id}` : undefined}
            onChange={(e) => {
              setNote(e.target.value);
              setNoteMissing(false);
            }}
          />
        </label>
        {noteMissing && (
          <p id={`note-missing-${id}`} className="field-error" role="alert">
            Write a note: every resolution is recorded with why.
          </p>
        )}
        <ErrorNotice error={error} />
        <div className="button-row">
          {RESOLUTIONS.map((r) => (
            <button key={r.type} type="button" disabled={busy} className={r.type === "OPERATOR_CANCEL" ? "danger" : undefined} onClick={() => void resolve(r.type)}>
              {r.label}
            </button>
          ))}
        </div>
      </form>
    </li>
  );
}
