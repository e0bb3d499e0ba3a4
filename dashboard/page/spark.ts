/**
 * A worker's sparkline: one uPlot chart of one numeric telemetry field.
 * @module
 */
import { h } from "preact";
import { useEffect, useRef } from "preact/hooks";
import uPlot from "uplot";
import type { TelemetryPoint } from "../model.ts";

/** Props of {@link Sparkline}. */
export interface SparkProps {
  readonly points: readonly TelemetryPoint[];
  readonly field: string;
}

function series(points: readonly TelemetryPoint[], field: string): uPlot.AlignedData {
  const xs: number[] = [];
  const ys: (number | null)[] = [];
  points.forEach((p, i) => {
    xs.push(i);
    const v = p.data[field];
    ys.push(typeof v === "number" && Number.isFinite(v) ? v : null);
  });
  return [xs, ys];
}

/** A 160×36 line of the field's recent values. */
export function Sparkline({ points, field }: SparkProps) {
  const box = useRef<HTMLDivElement>(null);
  const plot = useRef<uPlot | null>(null);
  useEffect(() => {
    if (!box.current) return;
    plot.current = new uPlot(
      {
        width: 160,
        height: 36,
        legend: { show: false },
        cursor: { show: false },
        scales: { x: { time: false } },
        axes: [{ show: false }, { show: false }],
        series: [{}, { stroke: "#2b7bb9", width: 1.5, points: { show: false } }],
      },
      series(points, field),
      box.current,
    );
    return () => {
      plot.current?.destroy();
      plot.current = null;
    };
  }, []);
  useEffect(() => {
    plot.current?.setData(series(points, field));
  }, [points, field]);
  return h("div", { class: "spark", ref: box, "data-field": field, "data-points": points.length });
}
