// Search the delivery orders (operators): by one reference (payment, partner order number,
// ordering, customer), a state and a creation-date range; newest first, a page at a time.
import { useState, type FormEvent } from "react";
import { useApp } from "../context";
import { STATE_LABELS, formatTime, shortId } from "../labels";
import { Link } from "../router";
import type { DeliveryOrder, DeliveryOrderPage, State } from "../types";
import { ErrorNotice } from "./ErrorNotice";
import { StateBadge } from "./StateBadge";

export const SEARCH_FIELDS: { value: string; label: string }[] = [
  { value: "payment_id", label: "Payment id" },
  { value: "partner_order_number", label: "Partner order number" },
  { value: "ordering_id", label: "Ordering id" },
  { value: "customer_id", label: "Customer id" },
];

export interface SearchForm {
  field: string;
  text: string;
  state: string;
  from: string;
  to: string;
}

/** The query of a search, or why it cannot be sent (the gateway would refuse it too). */
export function searchQuery(form: SearchForm): URLSearchParams | string {
  const query = new URLSearchParams({ limit: "50" });
  const text = form.text.trim();
  if (text) {
    if (!/^[A-Za-z0-9._:-]{1,128}$/.test(text)) return "a reference is 1-128 letters, digits and . _ : -";
    query.set(form.field, text);
  }
  if (form.state) query.set("state", form.state);
  // Dates are whole days in the browser's time zone: from the start of `from` to the end of `to`.
  const from = form.from ? new Date(`${form.from}T00:00:00`) : null;
  const to = form.to ? new Date(`${form.to}T00:00:00`) : null;
  if (to) to.setDate(to.getDate() + 1);
  if (from && to && from >= to) return "the first day must not be after the last";
  if (from) query.set("created_from", from.toISOString());
  if (to) query.set("created_to", to.toISOString());
  return query;
}

export function Search() {
  const { api } = useApp();
  const [form, setForm] = useState<SearchForm>({ field: "payment_id", text: "", state: "", from: "", to: "" });
  const [results, setResults] = useState<DeliveryOrder[] | null>(null);
  const [next, setNext] = useState<string | null>(null);
  const [query, setQuery] = useState<URLSearchParams | null>(null);
  const [invalid, setInvalid] = useState<string | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);

  const fetchPage = async (q: URLSearchParams, cursor: string | null) => {
    setBusy(true);
    try {
      const params = new URLSearchParams(q);
      if (cursor) params.set("cursor", cursor);
      const page = await api.get<DeliveryOrderPage>(`/api/v1/delivery-orders?${params}`);
      setResults((current) => (cursor && current ? [...current, ...page.items] : page.items));
      setNext(page.next_cursor ?? null);
      setError(null);
    } catch (e) {
      setError(e);
      // A new search that fails has no rows: the ones shown answered the previous query, and
      // its cursor too. A failed next page keeps the rows and the cursor of the current query,
      // so More results retries it.
      if (!cursor) {
        setResults(null);
        setNext(null);
      }
    } finally {
      setBusy(false);
    }
  };
  const submit = (event: FormEvent) => {
    event.preventDefault();
    const q = searchQuery(form);
    if (typeof q === "string") {
      setInvalid(q);
      return;
    }
    setInvalid(null);
    setQuery(q);
    // The previous search's cursor belongs to its filters: never page the new one with it.
    setNext(null);
    void fetchPage(q, null);
  };
  const set = (key: keyof SearchForm) => (e: { target: { value: string } }) => {
    setForm({ ...form, [key]: e.target.value });
    setInvalid(null);
  };

  return (
    <section aria-labelledby="search" className="card search" data-testid="search">
      <h2 id="search">Find delivery orders</h2>
      <form onSubmit={submit} className="search-form" role="search" aria-label="Find delivery orders">
        <label>
          Search by
          <select value={form.field} onChange={set("field")}>
            {SEARCH_FIELDS.map((f) => (
              <option key={f.value} value={f.value}>
                {f.label}
              </option>
            ))}
          </select>
        </label>
        <label>
          Reference
          <input type="search" value={form.text} onChange={set("text")} aria-invalid={!!invalid} placeholder="pay-1001" />
        </label>
        <label>
          State
          <select value={form.state} onChange={set("state")}>
            <option value="">Any state</option>
            {(Object.keys(STATE_LABELS) as State[]).map((s) => (
              <option key={s} value={s}>
                {STATE_LABELS[s]}
              </option>
            ))}
          </select>
        </label>
        <label>
          Created from
          <input type="date" value={form.from} onChange={set("from")} />
        </label>
        <label>
          Created to
          <input type="date" value={form.to} onChange={set("to")} />
        </label>
        <button type="submit" disabled={busy}>
          Search
        </button>
      </form>
      {invalid && (
        <p className="field-error" role="alert">
          {invalid}
        </p>
      )}
      <ErrorNotice error={error} />
      {results?.length === 0 && <p className="muted">No delivery order matches.</p>}
      {results && results.length > 0 && (
        <table data-testid="search-results">
          <thead>
            <tr>
              <th scope="col">Order</th>
              <th scope="col">Created</th>
              <th scope="col">Customer</th>
              <th scope="col">Payment</th>
              <th scope="col">Partner order</th>
              <th scope="col">State</th>
            </tr>
          </thead>
          <tbody>
            {results.map((o) => (
              <tr key={o.delivery_order_id}>
                <td>
                  <Link to={`/track/${o.delivery_order_id}`} title={o.delivery_order_id}>
                    {shortId(o.delivery_order_id)}
                  </Link>
                </td>
                <td>
                  <time dateTime={o.created_at}>{formatTime(o.created_at)}</time>
                </td>
                <td>{o.customer_id}</td>
                <td>{o.payment_id ?? "—"}</td>
                <td>{o.partner_order_number ?? "—"}</td>
                <td>
                  <StateBadge state={o.state} />
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      {next && query && (
        <button type="button" className="secondary" disabled={busy} onClick={() => void fetchPage(query, next)}>
          More results
        </button>
      )}
    </section>
  );
}
