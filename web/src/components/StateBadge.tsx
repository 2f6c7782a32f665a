import { stateLabel } from "../labels";

const ICONS: Record<string, string> = {
  CREATED: "◷",
  PICKED_UP: "➜",
  DELIVERED: "⌂",
  DELIVERY_CONFIRMED: "✓",
  DELIVERY_FAILED: "✖",
  PENDING_BY_OPERATOR: "⚑",
  RESHIPPED: "↻",
  CANCELLED: "⊘",
};

/** A state in words with an icon; the colour only repeats what the words say. */
export function StateBadge({ state }: { state: string }) {
  return (
    <span className={`badge badge-${state.toLowerCase()}`} data-state={state}>
      <span aria-hidden="true">{ICONS[state] ?? "•"} </span>
      {stateLabel(state)}
    </span>
  );
}
