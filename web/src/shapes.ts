// What the gateway sends that its OpenAPI document leaves open: `/api/state` (free-form JSON
// there) and the WebSocket messages (not HTTP operations). Everything else is in types.ts,
// generated from the document.

import type { DeliveryOrder, State } from "./types";

export interface LatestEvent {
  delivery_order_id: string;
  seq: number;
  type: string;
  to_state: State;
  actor_kind: string;
  occurred_at: string;
}

export interface ServiceHealth {
  ok: boolean;
  workers_polling?: boolean;
  task_queue?: string;
  queues?: Record<string, { pollers?: number; backlog?: number | null; error?: string }>;
}

export interface SystemState {
  generated_at: string;
  by_state: Record<State, number>;
  totals: {
    delivery_orders: number;
    active: number;
    confirmed_today: number;
    failed_today: number;
    waiting_for_operator: number;
  };
  active_drivers: { driver: string; delivery_order_ids: string[] }[];
  latest_events: LatestEvent[];
  health: Record<string, ServiceHealth>;
}

/** What the WebSocket endpoints send; `type` says which (the gateway's `SocketMessage`). */
export type LiveMessage =
  | { type: "snapshot"; delivery_order: DeliveryOrder }
  | { type: "update"; delivery_order: DeliveryOrder }
  | {
      type: "tracking";
      delivery_order_id: string;
      customer_id: string;
      version: number;
      location: Record<string, unknown>;
      location_at: string;
    }
  | { type: "resync"; reason?: string; missed?: number };
