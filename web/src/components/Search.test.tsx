import { cleanup, fireEvent, render, screen, waitFor, within } from "@testing-library/react";
import { afterEach, describe, expect, it, vi } from "vitest";
import { createApi } from "../api";
import { AppContext } from "../context";
import { stubFetch, type Answer } from "../test/fakes";
import type { DeliveryOrder, DeliveryOrderPage } from "../types";
import { Search } from "./Search";

const LIST = "/api/v1/delivery-orders";

function order(id: string, customer: string): DeliveryOrder {
  return {
    delivery_order_id: id,
    ordering_id: "ord:42.a_b-c",
    customer_id: customer,
    state: "PICKED_UP",
    version: 1,
    allowed_events: [],
    shipping_address: { name: "Ada", line1: "1 Main St", city: "Lisbon", postal_code: "1000", country: "PT" },
    items: [],
    graph_version: 1,
    created_at: "2026-11-02T09:00:00Z",
    updated_at: "2026-11-02T09:00:00Z",
  };
}

// Distinct in their first 8 characters, which is what a row shows.
const A = order("0196a3b0-aaaa-7cc0-9d1e-2f3a4b5c6d7e", "cust-a");
const B = order("0196a3b1-bbbb-7cc0-9d1e-2f3a4b5c6d7e", "cust-b");
const C = order("0196a3b2-cccc-7cc0-9d1e-2f3a4b5c6d7e", "cust-c");

/** Stubs the API; the tests compare the paths asked for exactly (stubFetch matches by prefix). */
function stubList(pages: Record<string, Answer>) {
  const calls = stubFetch(pages);
  return { calls, paths: () => calls.map((c) => c.path) };
}

function renderSearch() {
  const api = createApi(() => "tok", () => {});
  render(
    <AppContext.Provider value={{ session: null, api, config: {}, signOut: () => {} }}>
      <Search />
    </AppContext.Provider>,
  );
}

function fill(label: string, value: string) {
  fireEvent.change(screen.getByLabelText(label), { target: { value } });
}

function submit() {
  fireEvent.click(screen.getByRole("button", { name: "Search" }));
}

/** The delivery order ids of the rows shown, top to bottom. */
function rowIds(): string[] {
  const table = screen.getByTestId("search-results");
  return within(table)
    .getAllByRole("link")
    .map((a) => a.getAttribute("title") ?? "");
}

/** An ISO instant of a local midnight, as the form sends whole days in the browser's zone. */
function localMidnight(year: number, month: number, day: number): string {
  return new Date(year, month - 1, day).toISOString();
}

afterEach(() => {
  cleanup();
  vi.unstubAllGlobals();
});

describe("Search", () => {
  it("searches by ordering id with every filter of the form, under the API's parameter names", async () => {
    const from = encodeURIComponent(localMidnight(2026, 11, 1));
    // The last day is included: the range ends at the start of the day after it.
    const to = encodeURIComponent(localMidnight(2026, 11, 3));
    const expected = `${LIST}?limit=50&ordering_id=ord%3A42.a_b-c&state=PICKED_UP&created_from=${from}&created_to=${to}`;
    const { calls } = stubList({ [expected]: { body: { items: [A] } satisfies DeliveryOrderPage } });
    renderSearch();
    fill("Search by", "ordering_id");
    fill("Reference", "  ord:42.a_b-c ");
    fill("State", "PICKED_UP");
    fill("Created from", "2026-11-01");
    fill("Created to", "2026-11-02");
    submit();
    await waitFor(() => expect(rowIds()).toEqual([A.delivery_order_id]));
    expect(calls.map((c) => c.path)).toEqual([expected]);
    expect(calls[0].init?.method).toBe("GET");
    expect((calls[0].init?.headers as Record<string, string>).Authorization).toBe("Bearer tok");
    // A single page: nothing more to offer.
    expect(screen.queryByRole("button", { name: "More results" })).toBeNull();
  });

  it("searches by customer id alone", async () => {
    const expected = `${LIST}?limit=50&customer_id=cust-b`;
    const { paths } = stubList({ [expected]: { body: { items: [B] } satisfies DeliveryOrderPage } });
    renderSearch();
    fill("Search by", "customer_id");
    fill("Reference", "cust-b");
    submit();
    await waitFor(() => expect(rowIds()).toEqual([B.delivery_order_id]));
    expect(within(screen.getByTestId("search-results")).getByText("cust-b")).toBeTruthy();
    expect(paths()).toEqual([expected]);
  });

  it("says so when nothing matches", async () => {
    const expected = `${LIST}?limit=50&customer_id=nobody`;
    stubList({ [expected]: { body: { items: [] } satisfies DeliveryOrderPage } });
    renderSearch();
    fill("Search by", "customer_id");
    fill("Reference", "nobody");
    submit();
    expect(await screen.findByText("No delivery order matches.")).toBeTruthy();
    expect(screen.queryByTestId("search-results")).toBeNull();
  });

  it("pages with More results: the cursor and the same filters, rows appended in order, until the last page", async () => {
    const first = `${LIST}?limit=50&customer_id=cust-1&state=PICKED_UP`;
    const second = `${first}&cursor=c%2F1%3D`;
    const { paths } = stubList({
      [first]: { body: { items: [A, B], next_cursor: "c/1=" } satisfies DeliveryOrderPage },
      [second]: { body: { items: [C] } satisfies DeliveryOrderPage },
    });
    renderSearch();
    fill("Search by", "customer_id");
    fill("Reference", "cust-1");
    fill("State", "PICKED_UP");
    submit();
    const more = await screen.findByRole("button", { name: "More results" });
    expect(rowIds()).toEqual([A.delivery_order_id, B.delivery_order_id]);
    expect(paths()).toEqual([first]);

    // Editing the form afterwards does not change the query the next page belongs to.
    fill("Reference", "someone-else");
    fill("State", "");
    fireEvent.click(more);
    await waitFor(() => expect(rowIds()).toEqual([A.delivery_order_id, B.delivery_order_id, C.delivery_order_id]));
    expect(paths()).toEqual([first, second]);
    const params = new URLSearchParams(paths()[1].split("?")[1]);
    expect(params.get("cursor")).toBe("c/1=");
    expect(params.get("customer_id")).toBe("cust-1");
    expect(params.get("state")).toBe("PICKED_UP");
    // The second page had no cursor: it was the last.
    expect(screen.queryByRole("button", { name: "More results" })).toBeNull();
  });

  it("keeps the rows and the cursor when a next page fails, so More results retries it", async () => {
    const first = `${LIST}?limit=50&ordering_id=ord-1`;
    const second = `${first}&cursor=c1`;
    let secondFails = true;
    const { paths } = stubList({
      [second]: () =>
        secondFails ? { status: 503, body: { title: "Unavailable", detail: "try again" } } : { body: { items: [B] } },
      [first]: { body: { items: [A], next_cursor: "c1" } satisfies DeliveryOrderPage },
    });
    renderSearch();
    fill("Search by", "ordering_id");
    fill("Reference", "ord-1");
    submit();
    fireEvent.click(await screen.findByRole("button", { name: "More results" }));
    expect((await screen.findByRole("alert")).textContent).toContain("try again");
    expect(rowIds()).toEqual([A.delivery_order_id]);

    secondFails = false;
    const more = screen.getByRole("button", { name: "More results" });
    await waitFor(() => expect((more as HTMLButtonElement).disabled).toBe(false));
    fireEvent.click(more);
    await waitFor(() => expect(rowIds()).toEqual([A.delivery_order_id, B.delivery_order_id]));
    expect(screen.queryByRole("alert")).toBeNull();
    expect(paths()).toEqual([first, second, second]);
    expect(screen.queryByRole("button", { name: "More results" })).toBeNull();
  });

  it("starts over with a new search instead of appending to the last one", async () => {
    const first = `${LIST}?limit=50&customer_id=cust-1`;
    const other = `${LIST}?limit=50&ordering_id=ord-9`;
    const { paths } = stubList({
      [first]: { body: { items: [A, B], next_cursor: "c1" } satisfies DeliveryOrderPage },
      [other]: { body: { items: [C] } satisfies DeliveryOrderPage },
    });
    renderSearch();
    fill("Search by", "customer_id");
    fill("Reference", "cust-1");
    submit();
    await screen.findByRole("button", { name: "More results" });
    fill("Search by", "ordering_id");
    fill("Reference", "ord-9");
    submit();
    await waitFor(() => expect(rowIds()).toEqual([C.delivery_order_id]));
    expect(paths()).toEqual([first, other]);
    expect(screen.queryByRole("button", { name: "More results" })).toBeNull();
  });

  it("does not offer the previous search's next page after a new search fails", async () => {
    const first = `${LIST}?limit=50&customer_id=cust-1`;
    const failing = `${LIST}?limit=50&customer_id=cust-2`;
    const { paths } = stubList({
      [first]: { body: { items: [A], next_cursor: "c1" } satisfies DeliveryOrderPage },
      [failing]: { status: 503, body: { title: "Unavailable", detail: "the read model is down" } },
    });
    renderSearch();
    fill("Search by", "customer_id");
    fill("Reference", "cust-1");
    submit();
    await screen.findByRole("button", { name: "More results" });
    fill("Reference", "cust-2");
    submit();
    expect((await screen.findByRole("alert")).textContent).toContain("the read model is down");
    // The old cursor belongs to the old filters: pairing it with the new ones would be wrong.
    expect(screen.queryByRole("button", { name: "More results" })).toBeNull();
    expect(paths()).toEqual([first, failing]);
  });

  it("shows no rows of the previous search after a new search fails", async () => {
    const first = `${LIST}?limit=50&customer_id=cust-1`;
    const failing = `${LIST}?limit=50&ordering_id=ord-9`;
    const { paths } = stubList({
      [first]: { body: { items: [A, B] } satisfies DeliveryOrderPage },
      [failing]: { status: 503, body: { title: "Unavailable", detail: "the read model is down" } },
    });
    renderSearch();
    fill("Search by", "customer_id");
    fill("Reference", "cust-1");
    submit();
    await waitFor(() => expect(rowIds()).toEqual([A.delivery_order_id, B.delivery_order_id]));

    fill("Search by", "ordering_id");
    fill("Reference", "ord-9");
    submit();
    expect((await screen.findByRole("alert")).textContent).toContain("the read model is down");
    // The rows answered the earlier query: under the new one's error they would mislead.
    expect(screen.queryByTestId("search-results")).toBeNull();
    expect(screen.queryByText("cust-a")).toBeNull();
    // Nor does the failure claim that nothing matches: the new query got no answer at all.
    expect(screen.queryByText("No delivery order matches.")).toBeNull();
    expect(paths()).toEqual([first, failing]);
  });

  it("refuses an id that breaks the reference rule, says why, and sends nothing", async () => {
    const { calls } = stubList({});
    renderSearch();
    fill("Search by", "ordering_id");
    fill("Reference", "ord 42/x");
    submit();
    expect((await screen.findByRole("alert")).textContent).toBe("a reference is 1-128 letters, digits and . _ : -");
    expect(screen.getByLabelText("Reference").getAttribute("aria-invalid")).toBe("true");

    fill("Search by", "customer_id");
    fill("Reference", "c".repeat(129));
    submit();
    expect(screen.getByRole("alert").textContent).toBe("a reference is 1-128 letters, digits and . _ : -");
    // Give a request that should not exist the chance to start.
    await new Promise((resolve) => setTimeout(resolve, 0));
    expect(calls).toEqual([]);

    // Editing the field clears the complaint.
    fill("Reference", "c".repeat(128));
    expect(screen.queryByRole("alert")).toBeNull();
    expect(screen.getByLabelText("Reference").getAttribute("aria-invalid")).toBe("false");
  });

  it("refuses a creation range whose first day is after its last, and sends nothing", async () => {
    const { calls } = stubList({});
    renderSearch();
    fill("Created from", "2026-11-05");
    fill("Created to", "2026-11-04");
    submit();
    expect((await screen.findByRole("alert")).textContent).toBe("the first day must not be after the last");
    await new Promise((resolve) => setTimeout(resolve, 0));
    expect(calls).toEqual([]);
  });
});
