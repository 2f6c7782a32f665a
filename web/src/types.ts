// Shapes of the gateway's REST and WebSocket answers (see /openapi.json).

export type State =
  | "CREATED"
  | "PICKED_UP"
  | "DELIVERED"
  | "DELIVERY_CONFIRMED"
  | "DELIVERY_FAILED"
  | "PENDING_BY_OPERATOR"
  | "RESHIPPED"
  | "CANCELLED";

export interface Address {
  name: string;
  line1: string;
  line2?: string;
  city: string;
  postal_code: string;
  country: string;
  phone?: string;
}

export interface Item {
  sku: string;
  title: string;
  format: "PHYSICAL" | "EBOOK";
  quantity: number;
}

export interface DeliveryOrder {
  delivery_order_id: string;
  ordering_id: string;
  customer_id: string;
  state: State;
  version: number;
  allowed_events: string[];
  partner_order_number?: string;
  failure_reason?: string;
  failure_detail?: string;
  replaces_id?: string;
  replaced_by_id?: string;
  shipping_address: Address;
  items: Item[];
  notes?: string;
  driver?: Record<string, unknown>;
  location?: Record<string, unknown>;
  location_at?: string;
  eta?: string;
  created_at: string;
  updated_at: string;
}

export interface ProgressStep {
  state: State;
  reached_at?: string;
  current: boolean;
}

export interface Driver {
  name?: string;
  phone?: string;
  vehicle?: string;
}

export interface Tracking {
  delivery_order_id: string;
  state: State;
  version: number;
  steps: ProgressStep[];
  partner_order_number?: string;
  driver?: Driver;
  location?: Record<string, unknown>;
  location_at?: string;
  eta?: string;
  failure_reason?: string;
  ordering_id: string;
  items: Item[];
  recipient: string;
  city: string;
  replaces_id?: string;
  replaced_by_id?: string;
}

export interface AuditEvent {
  seq: number;
  event_id: string;
  type: string;
  /** Absent on the first entry, the creation (type CREATE). */
  from_state?: State;
  to_state: State;
  data: Record<string, unknown>;
  actor: { kind: string; id?: string };
  correlation_id?: string;
  occurred_at: string;
}

export interface AuditTrail {
  delivery_order_id: string;
  events: AuditEvent[];
}

export interface QueueEntry {
  delivery_order: DeliveryOrder;
  reason: { kind: string; code?: string; detail?: string };
  waiting_since: string;
}

export interface EventApplied {
  delivery_order_id: string;
  state: State;
  version: number;
}

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

export interface UiConfig {
  /** A link to one delivery order's workflow, with `{delivery_order_id}` to fill in. */
  workflow_url_template?: string;
}

/** What the WebSocket endpoints send. */
export type LiveMessage =
  | { type: "snapshot"; delivery_order: DeliveryOrder }
  | { type: "update"; delivery_order: DeliveryOrder }
  | {
      type: "tracking";
      delivery_order_id: string;
      version: number;
      location?: Record<string, unknown>;
      location_at?: string;
    }
  | { type: "resync"; reason?: string; missed?: number };
