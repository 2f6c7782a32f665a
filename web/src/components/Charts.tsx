// Charts of the last 24 hours on the operations dashboard, drawn with uPlot: orders entering
// each state per hour, time spent in each stage (p50, p95) and failures by reason. Each chart
// tells its series apart by line pattern or fill pattern and by name, not by colour alone, and
// its figures are also given as a table. The gateway computes them at most once a minute.
import { memo, useCallback, useEffect, useRef, useState } from "react";
import type uPlot from "uplot";
import "uplot/dist/uPlot.min.css";
import { duration, enteredPerHour, failuresByReason, legendSample, stageTimes, STATE_STYLES, type Figures } from "../charts";
import { useApp } from "../context";
import { useInterval } from "../hooks";
import { formatTime, reasonInWords, stateLabel } from "../labels";
import type { OperationsCharts, State } from "../types";
import { ErrorNotice } from "./ErrorNotice";

type UPlotModule = typeof uPlot;

/** The chart library, loaded with the dashboard only (and not at all where there is no canvas). */
function useChartLibrary(): UPlotModule | null {
  const [lib, setLib] = useState<UPlotModule | null>(null);
  useEffect(() => {
    let live = true;
    import("uplot")
      .then((module) => live && setLib(() => module.default))
      .catch(() => {
        // No canvas here (a test's DOM): the tables below carry the same figures.
      });
    return () => {
      live = false;
    };
  }, []);
  return lib;
}

/** A diagonal hatch, so the p95 bars differ from the p50 ones in more than colour. */
function hatch(ctx: CanvasRenderingContext2D, colour: string): CanvasPattern | string {
  const tile = document.createElement("canvas");
  tile.width = tile.height = 8;
  const t = tile.getContext("2d");
  if (!t) return colour;
  t.strokeStyle = colour;
  t.lineWidth = 2;
  t.beginPath();
  t.moveTo(0, 8);
  t.lineTo(8, 0);
  t.stroke();
  return ctx.createPattern(tile, "repeat") ?? colour;
}

const SVG = "http://www.w3.org/2000/svg";

/** A short stretch of a state's line for the legend, dashed as the chart draws it. */
export function legendSampleSvg(state: State): SVGSVGElement {
  const sample = legendSample(state);
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("width", "40");
  svg.setAttribute("height", "12");
  svg.setAttribute("viewBox", "0 0 40 12");
  svg.setAttribute("aria-hidden", "true");
  const line = document.createElementNS(SVG, "line");
  const attributes: Record<string, string> = {
    x1: "0",
    y1: "6",
    x2: "40",
    y2: "6",
    stroke: sample.stroke,
    "stroke-width": String(sample.width),
    "stroke-dasharray": sample.dasharray,
  };
  for (const [name, value] of Object.entries(attributes)) line.setAttribute(name, value);
  svg.appendChild(line);
  return svg;
}

function Plot({ lib, options, data, testId }: { lib: UPlotModule; options: Omit<uPlot.Options, "width">; data: uPlot.AlignedData; testId: string }) {
  const box = useRef<HTMLDivElement>(null);
  useEffect(() => {
    if (!box.current) return;
    const plot = new lib({ ...options, width: Math.max(box.current.clientWidth, 320) } as uPlot.Options, data, box.current);
    return () => plot.destroy();
  }, [lib, options, data]);
  return <div ref={box} className="chart" data-testid={testId} aria-hidden="true" />;
}

function categoryAxis(labels: string[]): uPlot.Axis {
  return {
    splits: () => labels.map((_, i) => i),
    values: (_u, splits) => splits.map((i) => labels[i] ?? ""),
    // Category names are long: slanted, they do not run into each other.
    rotate: -30,
    size: 110,
  };
}

function EnteredChart({ lib, charts }: { lib: UPlotModule; charts: OperationsCharts }) {
  const figures = enteredPerHour(charts);
  const options: Omit<uPlot.Options, "width"> = {
    title: "Orders entering each state, per hour",
    height: 260,
    scales: { x: { time: true }, y: { range: (_u, _min, max) => [0, Math.max(1, max)] } },
    series: [
      { label: "hour" },
      ...figures.states.map((state) => {
        const style = STATE_STYLES[state];
        return {
          label: stateLabel(state),
          stroke: style.stroke,
          dash: style.dash,
          width: style.width,
          points: { show: true, size: style.point, fill: "#fff" },
          // Names the series' legend row, for its sample below.
          class: `chart-state-${state}`,
        };
      }),
    ],
    // uPlot's markers are bordered boxes, all alike without colour: each becomes a sample of
    // its line instead, drawn once the legend is built.
    legend: { markers: { width: 0 } },
    hooks: {
      init: [
        (u) => {
          for (const state of figures.states) {
            const marker = u.root.querySelector(`.u-legend .chart-state-${state} .u-marker`);
            marker?.classList.add("legend-sample");
            marker?.replaceChildren(legendSampleSvg(state));
          }
        },
      ],
    },
    axes: [{}, { label: "orders" }],
  };
  const data = [figures.x, ...figures.series.map((s) => s.values)] as uPlot.AlignedData;
  return <Plot lib={lib} options={options} data={data} testId="chart-entered" />;
}

function BarChart({ lib, figures, title, unit, testId }: { lib: UPlotModule; figures: Figures; title: string; unit: string; testId: string }) {
  const colours = ["#1f5f99", "#b35c00"];
  const options: Omit<uPlot.Options, "width"> = {
    title,
    height: 240,
    scales: { x: { time: false, range: [-0.5, figures.x.length - 0.5] }, y: { range: (_u, _min, max) => [0, Math.max(1, max)] } },
    series: [
      { label: "category" },
      ...figures.series.map((s, i) => ({
        label: s.label,
        stroke: colours[i % colours.length],
        width: 1,
        // The first series solid, the second hatched: told apart without colour.
        fill: i === 0 ? colours[0] : (u: uPlot) => hatch(u.ctx, colours[i % colours.length]),
        paths: lib.paths.bars?.({ size: [figures.series.length > 1 ? 0.35 : 0.6, 80], align: figures.series.length > 1 ? (i === 0 ? -1 : 1) : 0 }),
        points: { show: false },
      })),
    ],
    axes: [categoryAxis(figures.labels), { label: unit }],
  };
  const data = [figures.x, ...figures.series.map((s) => s.values)] as uPlot.AlignedData;
  return <Plot lib={lib} options={options} data={data} testId={testId} />;
}

/** Without props, so the dashboard's 5-second refreshes leave the charts as they are. */
export const Charts = memo(function Charts() {
  const { api } = useApp();
  const lib = useChartLibrary();
  const [charts, setCharts] = useState<OperationsCharts | null>(null);
  const [error, setError] = useState<unknown>(null);
  const refresh = useCallback(async () => {
    try {
      setCharts(await api.get<OperationsCharts>("/api/v1/operator/charts"));
      setError(null);
    } catch (e) {
      setError(e);
    }
  }, [api]);
  useEffect(() => void refresh(), [refresh]);
  // The gateway shares the figures for a minute; asking more often shows nothing new.
  useInterval(() => void refresh(), 60_000);

  return (
    <section aria-labelledby="charts" className="charts">
      <h2 id="charts">The last 24 hours</h2>
      <ErrorNotice error={error} />
      {charts && (
        <>
          <p className="muted">As of {formatTime(charts.generated_at)}</p>
          <div className="chart-grid">
            <figure>
              {lib && <EnteredChart lib={lib} charts={charts} />}
              <EnteredTable charts={charts} />
            </figure>
            <figure>
              {lib && <BarChart lib={lib} figures={stageTimes(charts)} title="Time in each stage" unit="minutes" testId="chart-stages" />}
              <table data-testid="table-stages">
                <caption>Time in each stage (stays that ended in the last 24 h)</caption>
                <thead>
                  <tr>
                    <th scope="col">Stage</th>
                    <th scope="col" className="num">Stays</th>
                    <th scope="col" className="num">Median (p50)</th>
                    <th scope="col" className="num">p95</th>
                  </tr>
                </thead>
                <tbody>
                  {charts.stage_durations.map((d) => (
                    <tr key={d.stage}>
                      <td>{stateLabel(d.stage)}</td>
                      <td className="num">{d.count}</td>
                      <td className="num">{duration(d.p50_seconds)}</td>
                      <td className="num">{duration(d.p95_seconds)}</td>
                    </tr>
                  ))}
                </tbody>
              </table>
            </figure>
            <figure>
              {lib && charts.failures_by_reason.length > 0 && (
                <BarChart lib={lib} figures={failuresByReason(charts, reasonInWords)} title="Failures by reason" unit="failures" testId="chart-failures" />
              )}
              <table data-testid="table-failures">
                <caption>Failures by reason (last 24 h)</caption>
                <thead>
                  <tr>
                    <th scope="col">Reason</th>
                    <th scope="col" className="num">Failures</th>
                  </tr>
                </thead>
                <tbody>
                  {charts.failures_by_reason.length === 0 && (
                    <tr>
                      <td colSpan={2}>No delivery failed.</td>
                    </tr>
                  )}
                  {charts.failures_by_reason.map((r) => (
                    <tr key={r.reason} data-testid={`failures-${r.reason}`}>
                      <td>{reasonInWords(r.reason)}</td>
                      <td className="num">{r.count}</td>
                    </tr>
                  ))}
                </tbody>
              </table>
            </figure>
          </div>
        </>
      )}
    </section>
  );
});

/** Orders entering each state in the whole window, and in the current hour. */
function EnteredTable({ charts }: { charts: OperationsCharts }) {
  const figures = enteredPerHour(charts);
  return (
    <table data-testid="table-entered">
      <caption>Orders entering each state</caption>
      <thead>
        <tr>
          <th scope="col">State</th>
          <th scope="col" className="num">This hour</th>
          <th scope="col" className="num">Last 24 h</th>
        </tr>
      </thead>
      <tbody>
        {figures.states.map((state, i) => {
          const values = figures.series[i].values;
          return (
            <tr key={state} data-testid={`entered-${state}`}>
              <td>{stateLabel(state)}</td>
              <td className="num">{values[values.length - 1]}</td>
              <td className="num">{values.reduce((a, b) => a + b, 0)}</td>
            </tr>
          );
        })}
      </tbody>
    </table>
  );
}
