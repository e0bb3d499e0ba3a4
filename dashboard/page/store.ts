/**
 * The page's state: what the server's event stream said, folded into one
 * object that the views render. No polling: the stream pushes every change.
 * @module
 */
import type { ApplianceView, AuditEntry, DashEvent, TelemetryPoint } from "../model.ts";

/** Points kept per worker for its sparkline. */
export const POINTS = 120;
/** Log lines kept per appliance. */
export const LOG_LINES = 200;

/** Everything the page shows. */
export interface PageState {
  readonly stream: "connecting" | "open" | "lost";
  readonly appliances: ReadonlyMap<string, ApplianceView>;
  readonly logs: ReadonlyMap<string, readonly string[]>;
  /** app → worker → points */
  readonly telemetry: ReadonlyMap<string, ReadonlyMap<string, readonly TelemetryPoint[]>>;
  readonly audit: readonly AuditEntry[];
}

/** The state before the stream opens. */
export const EMPTY: PageState = { stream: "connecting", appliances: new Map(), logs: new Map(), telemetry: new Map(), audit: [] };

function capped<T>(list: readonly T[], more: readonly T[], max: number): T[] {
  const out = [...list, ...more];
  return out.length > max ? out.slice(out.length - max) : out;
}

/** The state after one event. */
export function fold(state: PageState, event: DashEvent): PageState {
  switch (event.type) {
    case "hello":
      return {
        stream: "open",
        appliances: new Map(event.appliances.map((a) => [a.id, a])),
        logs: new Map(Object.entries(event.logs)),
        telemetry: new Map(Object.entries(event.telemetry).map(([app, ws]) => [app, new Map(Object.entries(ws))])),
        audit: event.audit,
      };
    case "appliance": {
      const appliances = new Map(state.appliances);
      appliances.set(event.appliance.id, event.appliance);
      return { ...state, appliances };
    }
    case "telemetry": {
      const telemetry = new Map(state.telemetry);
      const workers = new Map(telemetry.get(event.app) ?? []);
      workers.set(event.worker, capped(workers.get(event.worker) ?? [], event.points, POINTS));
      telemetry.set(event.app, workers);
      return { ...state, telemetry };
    }
    case "log": {
      const logs = new Map(state.logs);
      logs.set(event.app, capped(logs.get(event.app) ?? [], event.lines, LOG_LINES));
      return { ...state, logs };
    }
    case "audit":
      return { ...state, audit: capped(state.audit, [event.entry], LOG_LINES) };
  }
}

/** The numeric fields of a worker's telemetry, for the sparkline's field picker. */
export function numericFields(points: readonly TelemetryPoint[]): string[] {
  const names = new Set<string>();
  for (const p of points.slice(-10)) for (const [k, v] of Object.entries(p.data)) if (typeof v === "number" && Number.isFinite(v)) names.add(k);
  return [...names].sort();
}

/** "12 s ago" */
export function ago(ms: number | undefined, now: number): string {
  if (ms === undefined) return "never";
  const s = Math.max(0, Math.round((now - ms) / 1000));
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  return `${Math.round(s / 3600)} h ago`;
}
