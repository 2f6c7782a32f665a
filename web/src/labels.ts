// Words for codes, so nobody has to read an enum.
import type { State } from "./types";

export const STATE_LABELS: Record<State, string> = {
  CREATED: "Waiting for pickup",
  PICKED_UP: "On the way",
  DELIVERED: "Delivered",
  DELIVERY_CONFIRMED: "Received",
  DELIVERY_FAILED: "Delivery failed",
  PENDING_BY_OPERATOR: "With our support team",
  RESHIPPED: "Replaced by a new delivery",
  CANCELLED: "Cancelled",
};

export const STATE_DESCRIPTIONS: Record<State, string> = {
  CREATED: "The order is paid and packed; the delivery partner has not picked it up yet.",
  PICKED_UP: "The driver has the parcel and is on the way.",
  DELIVERED: "The partner reports the parcel delivered. Please confirm that you received it.",
  DELIVERY_CONFIRMED: "The parcel was received. Enjoy your books!",
  DELIVERY_FAILED: "The delivery did not succeed; our support team takes it from here.",
  PENDING_BY_OPERATOR: "Our support team is looking into this delivery and will decide what happens next.",
  RESHIPPED: "This delivery was replaced by a new one.",
  CANCELLED: "This delivery was cancelled.",
};

/** The step names of the progress stepper (the happy path). */
export const STEP_LABELS: Partial<Record<State, string>> = {
  CREATED: "Order placed",
  PICKED_UP: "Picked up",
  DELIVERED: "Delivered",
  DELIVERY_CONFIRMED: "Receipt confirmed",
};

export const FAILURE_REASONS: Record<string, string> = {
  WRONG_ADDRESS: "the address could not be found",
  RECIPIENT_UNAVAILABLE: "nobody was there to receive the parcel",
  REFUSED_BY_RECIPIENT: "the recipient refused the parcel",
  PACKAGE_DAMAGED: "the parcel was damaged",
  PACKAGE_LOST: "the parcel was lost",
  PARTNER_REJECTED: "the delivery partner could not take the parcel",
  PICKUP_TIMEOUT: "the partner did not pick the parcel up in time",
  DELIVERY_TIMEOUT: "the delivery took too long",
  OTHER: "something else went wrong",
};

export const DISPUTE_REASONS: Record<string, string> = {
  NOT_RECEIVED: "the parcel did not arrive",
  DAMAGED: "the parcel arrived damaged",
  INCOMPLETE: "something was missing from the parcel",
};

export function reasonInWords(code: string | undefined | null): string {
  if (!code) return "no reason was given";
  return FAILURE_REASONS[code] ?? DISPUTE_REASONS[code] ?? code.toLowerCase().replace(/_/g, " ");
}

export function stateLabel(state: string): string {
  return STATE_LABELS[state as State] ?? state;
}

export function eventLabel(type: string): string {
  const words: Record<string, string> = {
    PICKED_UP: "picked up",
    DELIVERED: "delivered",
    DELIVERY_FAILED: "delivery failed",
    CONFIRMED: "receipt confirmed",
    DISPUTED: "problem reported",
    CANCEL: "cancelled",
    OPERATOR_RESHIP: "reshipped by an operator",
    OPERATOR_CANCEL: "cancelled by an operator",
    OPERATOR_CONFIRM_DELIVERED: "confirmed delivered by an operator",
    ESCALATE_TO_OPERATOR: "handed to the support team",
    CREATED: "created",
    CREATE: "created",
  };
  return words[type] ?? type.toLowerCase().replace(/_/g, " ");
}

export function formatTime(iso: string | undefined | null): string {
  if (!iso) return "";
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return iso;
  return date.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
}

export function shortId(id: string): string {
  return id.slice(0, 8);
}
