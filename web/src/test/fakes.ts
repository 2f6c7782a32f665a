// Test doubles for the browser's network: a WebSocket the test drives, and fetch answering
// from a table of paths. (The real gateway is exercised by the Playwright tests.)
import { vi } from "vitest";

export class FakeSocket {
  static all: FakeSocket[] = [];
  onopen: (() => void) | null = null;
  onmessage: ((event: { data: string }) => void) | null = null;
  onclose: (() => void) | null = null;
  onerror: (() => void) | null = null;
  closed = false;

  constructor(readonly url: string) {
    FakeSocket.all.push(this);
  }

  open() {
    this.onopen?.();
  }

  receive(message: unknown) {
    this.onmessage?.({ data: JSON.stringify(message) });
  }

  drop() {
    this.closed = true;
    this.onclose?.();
  }

  close() {
    this.drop();
  }

  static latest(): FakeSocket {
    const socket = FakeSocket.all.at(-1);
    if (!socket) throw new Error("no socket was opened");
    return socket;
  }
}

export function token(sub: string, roles: string[], expiresInSeconds = 3600): string {
  const encode = (value: unknown) =>
    btoa(JSON.stringify(value)).replace(/=+$/, "").replace(/\+/g, "-").replace(/\//g, "_");
  const exp = Math.floor(Date.now() / 1000) + expiresInSeconds;
  return `${encode({ alg: "HS256", typ: "JWT" })}.${encode({ sub, roles, exp })}.signature`;
}

export type Answer = { status?: number; body: unknown } | ((init?: RequestInit) => { status?: number; body: unknown });

/** Stubs `fetch`: each call is answered by the first entry whose key the path starts with. */
export function stubFetch(answers: Record<string, Answer>) {
  const calls: { path: string; init?: RequestInit }[] = [];
  const fetch = vi.fn(async (input: RequestInfo | URL, init?: RequestInit) => {
    const path = String(input);
    calls.push({ path, init });
    const key = Object.keys(answers)
      .sort((a, b) => b.length - a.length)
      .find((k) => path.startsWith(k));
    if (!key) return new Response(JSON.stringify({ detail: `no answer for ${path}` }), { status: 404 });
    const entry = answers[key];
    const answer = typeof entry === "function" ? entry(init) : entry;
    return new Response(JSON.stringify(answer.body), {
      status: answer.status ?? 200,
      headers: { "Content-Type": answer.status && answer.status >= 400 ? "application/problem+json" : "application/json" },
    });
  });
  vi.stubGlobal("fetch", fetch);
  return calls;
}
