// The operations charts' figures as the chart library takes them: one x array and one y array
// per series, every hour or category filled in. Pure, so it is tested without a canvas.
import { stateLabel } from "./labels";
import type { OperationsCharts, State } from "./types";

/** The states in the order the charts list them (the graph's order). */
export const CHART_STATES: State[] = [
  "CREATED",
  "PICKED_UP",
  "DELIVERED",
  "DELIVERY_CONFIRMED",
  "DELIVERY_FAILED",
  "PENDING_BY_OPERATOR",
  "RESHIPPED",
  "CANCELLED",
];

/**
 * Each state's line is told apart by its dash pattern and its marker size as well as by its
 * colour, so the chart reads without colour (the legend repeats the name and the pattern).
 */
export const STATE_STYLES: Record<State, { stroke: string; dash: number[]; width: number; point: number }> = {
  CREATED: { stroke: "#1f5f99", dash: [], width: 2, point: 5 },
  PICKED_UP: { stroke: "#6b3fa0", dash: [10, 4], width: 2, point: 7 },
  DELIVERED: { stroke: "#0b7285", dash: [2, 4], width: 3, point: 5 },
  DELIVERY_CONFIRMED: { stroke: "#2b8a3e", dash: [12, 4, 2, 4], width: 2, point: 8 },
  DELIVERY_FAILED: { stroke: "#c92a2a", dash: [4, 2], width: 3, point: 9 },
  PENDING_BY_OPERATOR: { stroke: "#b35c00", dash: [16, 6], width: 2, point: 6 },
  RESHIPPED: { stroke: "#495057", dash: [6, 3, 6, 9], width: 2, point: 4 },
  CANCELLED: { stroke: "#862e9c", dash: [1, 3], width: 3, point: 6 },
};

/**
 * The legend's sample of a state's line, as SVG draws it: the line's own dash pattern
 * ("none" for a solid line), width and point size. uPlot's own markers are boxes with a CSS
 * border, whose few styles (solid, dashed, dotted) cannot tell eight patterns apart.
 */
export function legendSample(state: State): { stroke: string; dasharray: string; width: number; point: number } {
  const style = STATE_STYLES[state];
  return {
    stroke: style.stroke,
    dasharray: style.dash.length > 0 ? style.dash.join(" ") : "none",
    width: style.width,
    point: style.point,
  };
}

export interface Series {
  label: string;
  values: number[];
}

export interface Figures {
  x: number[];
  labels: string[];
  series: Series[];
}

/** Orders entering each state per hour: x in Unix seconds, one series per state seen. */
export function enteredPerHour(charts: OperationsCharts): Figures & { states: State[] } {
  const index = new Map(charts.hours.map((h, i) => [new Date(h).getTime(), i]));
  const states = CHART_STATES.filter((s) => charts.entered.some((c) => c.state === s));
  const series = states.map((state) => {
    const values = charts.hours.map(() => 0);
    for (const c of charts.entered) {
      const i = index.get(new Date(c.hour).getTime());
      if (c.state === state && i !== undefined) values[i] += c.count;
    }
    return { label: stateLabel(state), values };
  });
  return {
    x: charts.hours.map((h) => new Date(h).getTime() / 1000),
    labels: charts.hours,
    series,
    states,
  };
}

/** Time in each stage: p50 and p95 in minutes, per stage in the graph's order. */
export function stageTimes(charts: OperationsCharts): Figures {
  const stages = CHART_STATES.filter((s) => charts.stage_durations.some((d) => d.stage === s));
  const of = (s: State) => charts.stage_durations.find((d) => d.stage === s);
  return {
    x: stages.map((_, i) => i),
    labels: stages.map(stateLabel),
    series: [
      { label: "median (p50), minutes", values: stages.map((s) => minutes(of(s)?.p50_seconds ?? 0)) },
      { label: "95th percentile (p95), minutes", values: stages.map((s) => minutes(of(s)?.p95_seconds ?? 0)) },
    ],
  };
}

/** Failures by reason, most frequent first. */
export function failuresByReason(charts: OperationsCharts, words: (code: string) => string): Figures {
  return {
    x: charts.failures_by_reason.map((_, i) => i),
    labels: charts.failures_by_reason.map((r) => words(r.reason)),
    series: [{ label: "failures", values: charts.failures_by_reason.map((r) => r.count) }],
  };
}

function minutes(seconds: number): number {
  return Math.round((seconds / 60) * 100) / 100;
}

/** A duration in words for the tables: "45 s", "12 min", "3.5 h". */
export function duration(seconds: number): string {
  if (seconds < 60) return `${Math.round(seconds)} s`;
  if (seconds < 3600) return `${Math.round(seconds / 60)} min`;
  if (seconds < 86_400) return `${Math.round((seconds / 3600) * 10) / 10} h`;
  return `${Math.round((seconds / 86_400) * 10) / 10} d`;
}
