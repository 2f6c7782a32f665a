// Live updates over the gateway's WebSockets: reconnects with exponential backoff (and jitter,
// so a restarted gateway is not hit by every browser at once), reports whether it is live, and
// decides for one delivery order whether a message applies, is old, or reveals a gap.

import type { DeliveryOrder, SocketMessage } from "./types";

export type Connection =
  | { status: "connecting"; attempt: number }
  | { status: "live" }
  | { status: "offline"; retryInMs: number; attempt: number };

export interface LiveSocketOptions {
  url: () => string;
  onMessage: (message: SocketMessage) => void;
  onConnection: (connection: Connection) => void;
  /** First retry delay; doubled per failed attempt up to `maxDelayMs`. */
  minDelayMs?: number;
  maxDelayMs?: number;
  random?: () => number;
  socketFactory?: (url: string) => WebSocket;
}

export function backoffDelay(attempt: number, minMs: number, maxMs: number, random: () => number): number {
  const ceiling = Math.min(maxMs, minMs * 2 ** Math.max(0, attempt - 1));
  // Between half and the whole of the ceiling.
  return Math.round(ceiling / 2 + (ceiling / 2) * random());
}

export class LiveSocket {
  private socket: WebSocket | null = null;
  private timer: ReturnType<typeof setTimeout> | null = null;
  /** Connections that closed since the last one that opened. */
  private failures = 0;
  private stopped = false;
  private readonly options: Required<LiveSocketOptions>;

  constructor(options: LiveSocketOptions) {
    this.options = {
      minDelayMs: 500,
      maxDelayMs: 15_000,
      random: Math.random,
      socketFactory: (url) => new WebSocket(url),
      ...options,
    };
  }

  start() {
    this.stopped = false;
    this.connect();
  }

  stop() {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    const socket = this.socket;
    this.socket = null;
    socket?.close();
  }

  /** Reconnects now instead of waiting for the next attempt (for example when back online). */
  retryNow() {
    if (this.stopped || this.socket) return;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.connect();
  }

  private connect() {
    this.options.onConnection({ status: "connecting", attempt: this.failures + 1 });
    const socket = this.options.socketFactory(this.options.url());
    this.socket = socket;
    socket.onopen = () => {
      if (this.socket !== socket) return;
      this.failures = 0;
      this.options.onConnection({ status: "live" });
    };
    socket.onmessage = (event: MessageEvent) => {
      if (this.socket !== socket) return;
      try {
        this.options.onMessage(JSON.parse(String(event.data)) as SocketMessage);
      } catch {
        // A message that is not JSON is not ours to show.
      }
    };
    socket.onclose = () => {
      if (this.socket !== socket) return;
      this.socket = null;
      if (this.stopped) return;
      this.failures += 1;
      const retryInMs = backoffDelay(
        this.failures,
        this.options.minDelayMs,
        this.options.maxDelayMs,
        this.options.random,
      );
      this.options.onConnection({ status: "offline", retryInMs, attempt: this.failures });
      this.timer = setTimeout(() => {
        this.timer = null;
        if (!this.stopped) this.connect();
      }, retryInMs);
    };
    // An error is always followed by close, which schedules the retry.
    socket.onerror = () => {};
  }
}

export type Decision =
  | { action: "apply"; order: DeliveryOrder }
  | { action: "ignore" }
  | { action: "resync"; reason: string };

/**
 * What a message means for the delivery order shown at `version`: a snapshot or the next
 * version applies; an older or repeated one is ignored; a version further ahead means changes
 * were missed, and the page reads the order again.
 */
export function decide(version: number | null, message: SocketMessage): Decision {
  switch (message.type) {
    case "snapshot":
      return version !== null && message.delivery_order.version < version
        ? { action: "ignore" }
        : { action: "apply", order: message.delivery_order };
    case "update": {
      const next = message.delivery_order.version;
      if (version === null || next === version + 1) return { action: "apply", order: message.delivery_order };
      if (next <= version) return { action: "ignore" };
      return { action: "resync", reason: `missed versions ${version + 1}–${next - 1}` };
    }
    case "resync":
      return { action: "resync", reason: message.reason ?? "the server asked to resync" };
    case "tracking":
      return { action: "ignore" };
  }
}
