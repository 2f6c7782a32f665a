// The gateway's REST and WebSocket shapes, generated from its OpenAPI document and its socket
// messages (`make web-types`, which runs `delivery-api typescript`). Do not edit: change the API
// and regenerate; a test fails when this file is stale.

/** An actor: who sent an event. */
export interface Actor {
  id?: string;
  kind: string;
}

/** A postal address. */
export interface Address {
  city: string;
  /** ISO 3166-1 alpha-2, upper case. */
  country: string;
  line1: string;
  line2?: string;
  name: string;
  phone?: string;
  postal_code: string;
}

/** An order whose deadline is near. */
export interface AtRiskEntry {
  deadline: Deadline;
  delivery_order: DeliveryOrder;
  /**
   * Whole seconds until the deadline; negative once it passed while its timer has not fired
   * yet (a batch holding the order, a worker catching up).
   */
  seconds_left: number;
}

export interface AtRiskList {
  /** Soonest deadline first, at most `limit` of them. */
  entries: AtRiskEntry[];
  /**
   * How many orders have a deadline within the window in all (more than `entries` holds when
   * the list was cut at `limit`).
   */
  total: number;
  /** The window asked for, in seconds. */
  within_seconds: number;
}

/**
 * What an audit entry records: the order's creation (`CREATE`, always the first entry, seq 0)
 * or an event of the graph.
 */
export type AuditEntryType = "CREATE" | "PICKED_UP" | "DELIVERED" | "DELIVERY_FAILED" | "CONFIRMED" | "DISPUTED" | "CANCEL" | "OPERATOR_RESHIP" | "OPERATOR_CANCEL" | "OPERATOR_CONFIRM_DELIVERED" | "ESCALATE_TO_OPERATOR";

/**
 * One entry of a delivery order's audit trail. The first (seq 0, type `CREATE`) says who
 * created the order and from which payment (`data.payment_id`); it has no `from_state`.
 */
export interface AuditEvent {
  actor: Actor;
  correlation_id?: string;
  data: unknown;
  event_id: string;
  from_state?: State;
  occurred_at: string;
  seq: number;
  to_state: State;
  type: AuditEntryType;
}

export interface AuditTrail {
  delivery_order_id: string;
  events: AuditEvent[];
}

export interface BatchApplied {
  batch_id: string;
  correlation_id: string;
  /** Each delivery order of the batch after it, in order of first appearance. */
  results: BatchOrderResult[];
}

export interface BatchEvent {
  data?: unknown;
  delivery_order_id: string;
  event_id?: string;
  /**
   * The role the event is sent as, when the token holds several that may send it (default:
   * the first of them), as on `POST /delivery-orders/{id}/events`.
   */
  sent_as?: Role;
  type: EventType;
}

export interface BatchOrderResult {
  delivery_order_id: string;
  state: State;
  version: number;
}

export type CallbackType = "PICKED_UP" | "DELIVERED" | "DELIVERY_FAILED" | "LOCATION";

export interface CreateDelivery {
  /** `{budget, notes}` (an object, or a JSON string of one as the original clients sent it). */
  data: unknown;
  /** `CREATE_DELIVERY`. */
  type: string;
}

/** The deadline an order's workflow has armed in its current state. */
export interface Deadline {
  /** When the timer fires unless an event comes first. */
  due_at: string;
  /** `pickup_deadline` (CREATED), `delivery_deadline` (PICKED_UP) or `auto_confirm` (DELIVERED). */
  timer: string;
}

export interface DeliveryEvent {
  data?: unknown;
  delivery_id: string;
  /**
   * `START_DELIVERY`, `PICKUP_PRODUCTS {purchase_price, quantity}`,
   * `DELIVER_PRODUCTS {sell_price, quantity}`, `INCREASE_BUDGET {budget}`.
   */
  type: string;
}

/**
 * A delivery order as the read model holds it: the API's form of the status document
 * (`ProjectedOrder` in `delivery-workflows`, with the latest location), built by
 * `read::delivery_order`, which adds the events a caller may send, masks the driver's phone for
 * those who may not see it and shows every time one way. Kept apart from `ProjectedOrder` on
 * purpose: this one carries the OpenAPI schema and the API's enums, which the workflows crate
 * does not depend on.
 */
export interface DeliveryOrder {
  /** Events that may be sent now. */
  allowed_events: EventType[];
  budget?: number;
  created_at: string;
  customer_id: string;
  delivery_order_id: string;
  driver?: unknown;
  eta?: string;
  failure_detail?: string;
  failure_reason?: FailureReason;
  graph_version: number;
  items: Item[];
  /** Last location reported by the partner. */
  location?: unknown;
  location_at?: string;
  /**
   * The deadline the order's workflow has armed in its state (pickup, delivery or
   * auto-confirm); absent in the other states.
   */
  next_deadline?: Deadline;
  notes?: string;
  ordering_id: string;
  partner_order_number?: string;
  payment_id?: string;
  /** The delivery order that replaced this one. */
  replaced_by_id?: string;
  /** The delivery order this one replaces (after a failed delivery). */
  replaces_id?: string;
  shipping_address: Address;
  state: State;
  updated_at: string;
  version: number;
}

/** What creation answers (the same body for a repeated `payment_id`). */
export interface DeliveryOrderCreated {
  customer_id: string;
  delivery_order_id: string;
  /** Where to read the delivery order. */
  href: string;
  ordering_id: string;
  payment_id?: string;
  /** `CREATED`: every delivery order starts there. */
  state: State;
  /** 0 at creation; read with `?min_version=0` to wait until the read model holds it. */
  version: number;
  /** The Temporal workflow id (search it in Temporal Web UI). */
  workflow_id: string;
}

/** One page of a list. */
export interface DeliveryOrderPage {
  items: DeliveryOrder[];
  /** Pass as `cursor` for the next page; absent on the last page. */
  next_cursor?: string;
}

/**
 * Where the parcel went: the partner's location pings in time order (the latest is the
 * current position), and the destination as the partner geocoded it.
 */
export interface DeliveryRoute {
  /** The latest ping, if any. */
  current?: RoutePoint;
  delivery_order_id: string;
  /** Absent until the partner sends it with a ping. */
  destination?: GeoPoint;
  /** Oldest first; at most the latest 900 pings, none once the order ended. */
  points: RoutePoint[];
  state: State;
}

/**
 * The original app's error body. A 503 also names what the request may already have done, so
 * its retry converges on it instead of doing it twice.
 */
export interface Detail {
  detail: string;
  /** The event id (the `Idempotency-Key`) an event that timed out was sent under. */
  event_id?: string;
  /** The delivery a creation that timed out may have created. */
  id?: string;
}

/** The driver, with the phone number masked. */
export interface Driver {
  name?: string;
  /** Only the last three digits are shown. */
  phone?: string;
  vehicle?: string;
}

export interface DriverAssignment {
  delivery_order_ids: string[];
  driver: string;
}

/** What an applied (or already applied) event answers. */
export interface EventApplied {
  allowed_events: EventType[];
  /**
   * True when this event id moved the order. A retry with the same content gets the original
   * answer: while Temporal still holds it, that very answer; later `applied: false` with the
   * state and version the event produced. Either way nothing is applied twice.
   */
  applied: boolean;
  delivery_order_id: string;
  event_id: string;
  state: State;
  version: number;
}

export interface EventBatch {
  /**
   * Carried into every audit row of the batch (and `BatchRolledBack`); default: the
   * `X-Correlation-Id` header, else the batch id.
   */
  correlation_id?: string;
  events: BatchEvent[];
}

/** An event for one delivery order. */
export interface EventCommand {
  /** The event's fields, as the state graph defines them (`resources/delivery-order.v1.yaml`). */
  data?: unknown;
  /**
   * Makes retries idempotent; the `Idempotency-Key` header does the same. Ids starting with
   * `wf:` are reserved for events the delivery order raises itself.
   */
  event_id?: string;
  /**
   * The role the event is sent as, when the token holds several that may send it (default:
   * the first of them). A customer event is only accepted on the customer's own orders.
   */
  sent_as?: Role;
  type: EventType;
}

/** Events of the delivery-order graph. */
export type EventType = "PICKED_UP" | "DELIVERED" | "DELIVERY_FAILED" | "CONFIRMED" | "DISPUTED" | "CANCEL" | "OPERATOR_RESHIP" | "OPERATOR_CANCEL" | "OPERATOR_CONFIRM_DELIVERED" | "ESCALATE_TO_OPERATOR";

export interface FailingProjection {
  attempts: number;
  delivery_order_id: string;
  error: string;
  last_failed_at: string;
  since: string;
  version: number;
}

export type FailureReason = "WRONG_ADDRESS" | "RECIPIENT_UNAVAILABLE" | "REFUSED_BY_RECIPIENT" | "PACKAGE_DAMAGED" | "PACKAGE_LOST" | "PARTNER_REJECTED" | "PICKUP_TIMEOUT" | "DELIVERY_TIMEOUT" | "OTHER";

/** A point on the map, in degrees. */
export interface GeoPoint {
  lat: number;
  lon: number;
}

export interface Health {
  status: string;
}

/** How many orders entered one state in one hour. */
export interface HourCount {
  count: number;
  /** The start of the hour. */
  hour: string;
  state: State;
}

/** One line of an order. */
export interface Item {
  format: ItemFormat;
  quantity: number;
  sku: string;
  title: string;
}

/** `PHYSICAL` items are delivered; `EBOOK` items are not. */
export type ItemFormat = "PHYSICAL" | "EBOOK";

export interface LatestEvent {
  actor_kind: string;
  delivery_order_id: string;
  occurred_at: string;
  seq: number;
  to_state: string;
  type: string;
}

/**
 * A delivery order created by hand (operators, order management): the payment fields less
 * `event_id`. (Spelled out again rather than flattened: poem-openapi cannot flatten into an
 * object that refuses unknown fields.) `payment_id` is optional; when given, creation is idempotent on it.
 */
export interface ManualDeliveryOrder {
  budget?: number;
  customer_id: string;
  items: Item[];
  notes?: string;
  ordering_id: string;
  payment_id?: string;
  shipping_address: Address;
}

/** A payment without physical items: nothing to deliver. */
export interface NoDeliveryRequired {
  delivery_required: boolean;
  ordering_id: string;
  payment_id: string;
}

/** The operations charts of the last 24 hours, from the read model and its audit trail. */
export interface OperationsCharts {
  /** Orders entering each state, per hour (hours and states without any are left out). */
  entered: HourCount[];
  /** Most frequent first. */
  failures_by_reason: ReasonCount[];
  /** When these figures were computed (they are shared by the gateways for 60 s). */
  generated_at: string;
  /** The 24 hours covered, oldest first (starts of the hours; the current hour last). */
  hours: string[];
  stage_durations: StageDuration[];
}

export interface OperatorQueue {
  /** Oldest first. */
  entries: QueueEntry[];
}

export interface OrderingDeliveries {
  /** Oldest first. */
  delivery_orders: DeliveryOrder[];
  ordering_id: string;
}

/** A partner callback. */
export interface PartnerCallback {
  /**
   * The event's fields (`PICKED_UP`: partner_order_number, driver, eta; `DELIVERED`: proof;
   * `DELIVERY_FAILED`: reason, detail; `LOCATION`: lat, lon, accuracy_m?, destination? {lat, lon}).
   */
  data?: unknown;
  delivery_order_id: string;
  event_id: string;
  occurred_at?: string;
  partner_order_number?: string;
  /**
   * The pickup the partner accepted (`POST /v1/pickups` answered it): required on every
   * callback (422 `missing-pickup-id` without it), checked against the order's pickup.
   */
  pickup_id?: string;
  type: CallbackType;
}

/** `PaymentSucceeded`, as the payment service sends it. */
export interface PaymentSucceeded {
  /** Delivery budget in minor currency units (cents). */
  budget?: number;
  customer_id: string;
  event_id: string;
  items: Item[];
  notes?: string;
  ordering_id: string;
  payment_id: string;
  shipping_address: Address;
}

/** An RFC 9457 problem document. */
export interface Problem {
  allowed_events?: string[];
  /** Who may send the refused event. */
  allowed_senders?: string[];
  batch_id?: string;
  /** For readiness: which dependency is down and why. */
  checks?: unknown;
  current_state?: string;
  current_version?: number;
  delivery_order_id?: string;
  /** What was wrong with this request, in words. */
  detail?: string;
  /**
   * The event id the gateway sent to the delivery order (the caller's, or the one it made
   * up): a retry under this id is answered with the event's outcome, never applied twice.
   */
  event_id?: string;
  /** The position of the event a batch failed on (0-based). */
  failed_event_index?: number;
  min_version?: number;
  /** The request this answers (also in the `X-Request-Id` header and the gateway's logs). */
  request_id?: string;
  retry_after_seconds?: number;
  status: number;
  title: string;
  /** A URI naming the kind of problem; stable, safe to switch on. */
  type: string;
}

/** One stage of the delivery. */
export interface ProgressStep {
  /** True for the stage the delivery is in now. */
  current: boolean;
  /** When the delivery reached this stage; absent while it has not. */
  reached_at?: string;
  state: State;
}

export interface ProjectionHealth {
  /** Anomalies the projection applied in the last day (see `read_model_anomalies`). */
  anomalies_last_day?: number;
  error?: string;
  /** The first orders whose projection fails with an error retrying cannot fix. */
  failing?: FailingProjection[];
  failing_orders?: number;
  /** No order's projection is failing (false too when the read model did not answer). */
  ok: boolean;
}

export interface QueueEntry {
  delivery_order: DeliveryOrder;
  reason: QueueReason;
  /** When the order entered the queue. */
  waiting_since: string;
}

export interface QueueHealth {
  /** Tasks waiting for a worker (absent when Temporal did not report it). */
  backlog?: number;
  /** Why the rest is missing. */
  error?: string;
  pollers?: number;
}

/** Why an order waits for an operator. */
export interface QueueReason {
  /** The failure or dispute reason code. */
  code?: string;
  detail?: string;
  /** `DELIVERY_FAILED` or `DISPUTED`. */
  kind: string;
}

export interface Reachable {
  /** It answered within 2 s. */
  ok: boolean;
}

export interface Readiness {
  checks: unknown;
  /** What does not work while a dependency is down, one line each. */
  impaired: string[];
  /**
   * `ready`, or `degraded` while Temporal, PostgreSQL or Redis is down (`impaired` says what
   * answers 503 meanwhile; the gateway stays in the load balancer).
   */
  status: string;
}

/** How many deliveries failed for one reason in the last 24 h. */
export interface ReasonCount {
  count: number;
  reason: string;
}

/** Changes may have been missed: reread what is shown. */
export interface ResyncMessage {
  /** How many changes this socket missed, when known. */
  missed?: number;
  reason?: string;
}

/** Roles a token may carry (the `roles` claim). */
export type Role = "customer" | "partner" | "operator" | "payment_service" | "order_management" | "admin";

/** One location ping of the route. */
export interface RoutePoint {
  accuracy_m?: number;
  at: string;
  lat: number;
  lon: number;
}

/** The order as `GET` shows it, when the socket opens or after a resync. */
export interface SnapshotMessage {
  delivery_order: DeliveryOrder;
}

/** What the WebSocket endpoints send; `type` says which. */
export type SocketMessage = SocketMessage_SnapshotMessage | SocketMessage_UpdateMessage | SocketMessage_TrackingMessage | SocketMessage_ResyncMessage;

/** What the WebSocket endpoints send; `type` says which. */
export type SocketMessage_ResyncMessage = { type: "resync"; } & ResyncMessage;

/** What the WebSocket endpoints send; `type` says which. */
export type SocketMessage_SnapshotMessage = { type: "snapshot"; } & SnapshotMessage;

/** What the WebSocket endpoints send; `type` says which. */
export type SocketMessage_TrackingMessage = { type: "tracking"; } & TrackingMessage;

/** What the WebSocket endpoints send; `type` says which. */
export type SocketMessage_UpdateMessage = { type: "update"; } & UpdateMessage;

/** How long orders stayed in one stage (over the stays that ended in the last 24 h). */
export interface StageDuration {
  count: number;
  p50_seconds: number;
  p95_seconds: number;
  stage: State;
}

/** States of the delivery-order graph. */
export type State = "CREATED" | "PICKED_UP" | "DELIVERED" | "DELIVERY_CONFIRMED" | "DELIVERY_FAILED" | "PENDING_BY_OPERATOR" | "RESHIPPED" | "CANCELLED";

/** What the service runs on, each with `ok`. */
export interface SystemHealth {
  postgres: Reachable;
  /** The read-model projection: orders it cannot apply. */
  projection: ProjectionHealth;
  redis: Reachable;
  /** Temporal, with the workers polling the task queue and its backlog. */
  temporal: TemporalHealth;
}

export interface SystemState {
  /** Drivers with a parcel on board, and which. */
  active_drivers: DriverAssignment[];
  /** Delivery orders per state (every state of the graph, zeros included). */
  by_state: Record<string, number>;
  /** When this state was computed (it is served for up to 5 s). */
  generated_at: string;
  health: SystemHealth;
  /** The 20 most recent events, newest first. */
  latest_events: LatestEvent[];
  totals: Totals;
}

export interface TemporalHealth {
  /** Temporal answered for both task queues. */
  ok: boolean;
  /** `workflow_tasks` and `activity_tasks`. */
  queues: Record<string, QueueHealth>;
  task_queue: string;
  /** At least one worker polls for workflow tasks. */
  workers_polling: boolean;
}

export interface Totals {
  /** Created, picked up or delivered and not yet confirmed. */
  active: number;
  confirmed_today: number;
  delivery_orders: number;
  failed_today: number;
  waiting_for_operator: number;
}

export interface Tracking {
  city: string;
  delivery_order_id: string;
  driver?: Driver;
  eta?: string;
  /** Why the delivery failed, if it did. */
  failure_reason?: string;
  items: Item[];
  location?: unknown;
  location_at?: string;
  ordering_id: string;
  partner_order_number?: string;
  /** Where it goes: recipient name and city (the full address stays on the delivery order). */
  recipient: string;
  replaced_by_id?: string;
  replaces_id?: string;
  state: State;
  /**
   * The happy path (created, picked up, delivered, confirmed) with the time each stage was
   * reached, then the state the delivery left it for, if it did.
   */
  steps: ProgressStep[];
  version: number;
}

/** A location ping of the partner carrying the order. */
export interface TrackingMessage {
  customer_id: string;
  delivery_order_id: string;
  /** `lat`, `lon`, and `accuracy_m` or `destination` when the partner sent them. */
  location: unknown;
  /** RFC 3339. */
  location_at: string;
  partner_id?: string;
  /** The order's version when the ping arrived. */
  version: number;
}

/** What the web UI needs to know about this deployment. */
export interface UiConfig {
  /**
   * The route map's raster tiles (`{z}`, `{x}`, `{y}` to fill in); absent when the gateway
   * has none (`MAP_TILE_URL`), and the map is drawn on a blank background.
   */
  map_tile_url?: string;
  /**
   * A link to one delivery order's workflow in Temporal Web UI, with `{delivery_order_id}`
   * to fill in; absent when the gateway was not told where that UI is.
   */
  workflow_url_template?: string;
}

/** A new version of the order, as `GET` shows it. */
export interface UpdateMessage {
  delivery_order: DeliveryOrder;
}

/** What a partner webhook answers. */
export interface WebhookAccepted {
  delivery_order_id: string;
  /** `applied`, `duplicate` or `tracking_updated`. */
  outcome: string;
  state?: State;
  version?: number;
}
