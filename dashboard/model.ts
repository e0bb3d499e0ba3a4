/**
 * What the dashboard's server tells its pages: plain data, no functions,
 * shared by the server and the page's bundle (this file imports nothing).
 * One event stream per page carries {@link DashEvent}s as Server-Sent Events
 * (`event: <type>`, `data: <json>`).
 * @module
 */

/** A worker as the appliance page shows it, from one `/proc/workers` record. */
export interface WorkerView {
  readonly id: string;
  readonly kind: string;
  readonly role: string;
  readonly status: string;
  readonly restarts: number;
  /** What is left of its budget, e.g. `ticks 940/1000 · ttl 120 s`, or `unbounded`. */
  readonly budgetLeft: string;
  /** Every field of its record, as the appliance wrote it. */
  readonly fields: Readonly<Record<string, string>>;
}

/** One GPU of `/gpu`: its info and the last line of its lease and job status. */
export interface GpuView {
  readonly id: string;
  readonly name: string;
  readonly lease: string;
  readonly status: string;
}

/** Where an appliance's row comes from: a 9P session the server holds, or the fleet's MQTT records. */
export type ApplianceSourceKind = "9p" | "fleet";

/** `live`, or why not. */
export type Liveness = "connecting" | "live" | "unreachable" | "dead";

/** One appliance: what the fleet list and the appliance page show. */
export interface ApplianceView {
  /** The id in URLs and in `POST /api/ctl`: the dial string, or the fleet id. */
  readonly id: string;
  readonly source: ApplianceSourceKind;
  readonly dial?: string;
  readonly live: Liveness;
  /** Why it is not live, one line. */
  readonly error?: string;
  readonly version?: string;
  /** `/proc/boot`, as text. */
  readonly bootText?: string;
  /** `/proc/boot` as key=value pairs. */
  readonly boot: Readonly<Record<string, string>>;
  /** The A/B slot that runs and its update state, when the appliance says. */
  readonly slot?: string;
  readonly update?: string;
  readonly lifecycle?: string;
  readonly lifecycleReason?: string;
  readonly lifecycleSince?: string;
  /** `/proc/mem` as key=value pairs (rss, heap, workers …). */
  readonly mem: Readonly<Record<string, string>>;
  /** CPU use of the root task, percent of one core, when known. */
  readonly cpu?: string;
  /** `/proc/sessions`, one line each. */
  readonly sessions: readonly string[];
  readonly workers: readonly WorkerView[];
  /** How many workers run, for rows that carry no worker records (fleet). */
  readonly workerCount: number;
  /** Programs the appliance carries: the spawn form's choices. */
  readonly programs: readonly string[];
  readonly gpus: readonly GpuView[];
  /** The kill switch, for a VM that `cohesix boot`/`up` runs: its QMP status (`running`, `paused`). */
  readonly vm?: { readonly status: string; readonly snapshots: readonly string[] };
  /** For a 9P appliance with a fleet link: the id it publishes under (its fleet row is this row). */
  readonly fleetId?: string;
  /** When the server last heard from it, ms since the epoch. */
  readonly lastSeenMs?: number;
}

/** One telemetry point of a worker: its line's origin time and the line as an object. */
export interface TelemetryPoint {
  /** When the server read it, ms since the epoch. */
  readonly at: number;
  readonly data: Readonly<Record<string, unknown>>;
}

/** One line of the dashboard's own audit: an action from a page and its result. */
export interface AuditEntry {
  readonly ts: string;
  readonly appliance: string;
  /** The command as posted. */
  readonly command: string;
  readonly ok: boolean;
  /** The appliance's reply, or the error (`class: what failed: detail`). */
  readonly result: string;
}

/** What the server pushes to a page. */
export type DashEvent =
  | {
      readonly type: "hello";
      readonly appliances: readonly ApplianceView[];
      readonly logs: Readonly<Record<string, readonly string[]>>;
      readonly telemetry: Readonly<Record<string, Readonly<Record<string, readonly TelemetryPoint[]>>>>;
      readonly audit: readonly AuditEntry[];
    }
  | { readonly type: "appliance"; readonly appliance: ApplianceView }
  | { readonly type: "telemetry"; readonly app: string; readonly worker: string; readonly points: readonly TelemetryPoint[] }
  | { readonly type: "log"; readonly app: string; readonly lines: readonly string[] }
  | { readonly type: "audit"; readonly entry: AuditEntry };

/** The body of `POST /api/ctl`. */
export interface CtlRequest {
  readonly appliance: string;
  /** A queen command of DESIGN §6 (`{"spawn":…}`, `{"kill":…}`), `{"lifecycle":"cordon"}`, or a kill switch `{"vm":"pause"}` / `{"vm":"snapshot","name":…}`. */
  readonly command: Readonly<Record<string, unknown>>;
}

/** The answer of `POST /api/ctl`: the appliance's reply, or one error line. */
export type CtlResponse = { readonly ok: true; readonly result: string } | { readonly ok: false; readonly error: string };
