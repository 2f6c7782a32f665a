// A customer's own deliveries, newest first, a page at a time: what they reach for instead of a
// delivery number.
import { useCallback, useEffect, useState } from "react";
import { useApp } from "../context";
import { formatTime } from "../labels";
import { Link } from "../router";
import type { DeliveryOrder, DeliveryOrderPage } from "../types";
import { ErrorNotice } from "./ErrorNotice";
import { StateBadge } from "./StateBadge";

const PAGE = 20;

export function MyDeliveries() {
  const { api } = useApp();
  const [orders, setOrders] = useState<DeliveryOrder[] | null>(null);
  const [next, setNext] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>(null);

  const load = useCallback(
    async (cursor: string | null) => {
      setBusy(true);
      try {
        const query = new URLSearchParams({ limit: String(PAGE) });
        if (cursor) query.set("cursor", cursor);
        const page = await api.get<DeliveryOrderPage>(`/api/v1/me/delivery-orders?${query}`);
        setOrders((current) => (cursor && current ? [...current, ...page.items] : page.items));
        setNext(page.next_cursor ?? null);
        setError(null);
      } catch (e) {
        setError(e);
      } finally {
        setBusy(false);
      }
    },
    [api],
  );
  useEffect(() => void load(null), [load]);

  return (
    <section aria-labelledby="my-deliveries" data-testid="my-deliveries">
      <h2 id="my-deliveries">Your deliveries</h2>
      <ErrorNotice error={error} />
      {orders === null && !error && <p aria-busy="true">Loading…</p>}
      {orders?.length === 0 && <p className="muted">You have no deliveries yet.</p>}
      {orders && orders.length > 0 && (
        <table>
          <thead>
            <tr>
              <th scope="col">Ordered</th>
              <th scope="col">What</th>
              <th scope="col">State</th>
            </tr>
          </thead>
          <tbody>
            {orders.map((order) => (
              <tr key={order.delivery_order_id} data-testid={`mine-${order.delivery_order_id}`}>
                <td>
                  <Link to={`/track/${order.delivery_order_id}`} aria-label={`Track the delivery ordered ${formatTime(order.created_at)}`}>
                    <time dateTime={order.created_at}>{formatTime(order.created_at)}</time>
                  </Link>
                </td>
                <td>{order.items.map((item) => `${item.quantity} × ${item.title}`).join(", ")}</td>
                <td>
                  <StateBadge state={order.state} />
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      {next && (
        <button type="button" className="secondary" disabled={busy} onClick={() => void load(next)}>
          Show older deliveries
        </button>
      )}
    </section>
  );
}
