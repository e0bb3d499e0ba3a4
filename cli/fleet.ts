/**
 * `cohesix fleet ls` and `cohesix fleet tail`: the host's view of the
 * appliances on a broker (docs/fleet.md, "Host commands"). Both read only
 * what the broker says: the retained birth and death records, and the
 * stream records as they arrive, decoded strictly.
 * @module
 */
import { type ApplianceView, type FleetHost, type FleetRecord, FleetView, checkName, parseSelectors } from "../fleet/index.ts";
import { type Parsed, UsageError, str } from "./args.ts";
import { connectBroker } from "./fleet-broker.ts";
import type { Io } from "./verb.ts";

/** The appliance filter of `--id ID` and `--select K=V`. */
export function applianceFilter(p: Parsed): (a: ApplianceView) => boolean {
  const id = str(p, "id");
  if (id !== undefined) checkName(id, "appliance id");
  const selectors = (p.values.select as string[] | undefined) ?? [];
  const match = parseSelectors(selectors);
  return (a) => (id === undefined || a.id === id) && match(a);
}

/** The view of `--prefix` and `--max-appliances`. */
export function viewFor(p: Parsed, prefix: string): FleetView {
  return new FleetView({ prefix, maxAppliances: Number(str(p, "max-appliances", "100000")) });
}

/** Seconds from an option, as ms. */
export function secondsOption(p: Parsed, name: string, fallback: number): number {
  const v = str(p, name);
  if (v === undefined) return fallback * 1000;
  const n = Number(v);
  if (!Number.isFinite(n) || n < 0) throw new UsageError(`--${name} must be a number of seconds ≥ 0, got ${JSON.stringify(v)}`);
  return n * 1000;
}

/** How long `ls` waits with nothing new arriving before it takes the retained records as complete. */
const QUIET_MS = 400;

/**
 * Fills `view` with the retained births and deaths under `prefix`: MQTT
 * has no end-of-retained marker, so it waits until nothing new came for
 * a moment (0.4 s), or `waitMs`.
 *
 * @example
 * ```ts
 * const view = await readFleet(host, new FleetView(), { prefix: "cohesix", waitMs: 5000 });
 * ```
 */
export async function readFleet(host: FleetHost, view: FleetView, options: { prefix: string; waitMs: number }): Promise<FleetView> {
  let last = Date.now();
  const off = host.onMessage((topic, payload, retained) => {
    view.add(topic, payload, { retained });
    last = Date.now();
  });
  try {
    await host.subscribe([`${options.prefix}/+/birth`, `${options.prefix}/+/death`]);
    last = Date.now();
    const started = Date.now();
    while (Date.now() - last < QUIET_MS && Date.now() - started < options.waitMs) await new Promise((r) => setTimeout(r, 50));
  } finally {
    off();
  }
  return view;
}

/**
 * `cohesix fleet ls`: every appliance with a retained birth or death.
 *
 * @example
 * ```ts
 * await fleetLs(parseVerb(["--broker", "mqtt://127.0.0.1:1883"], verb), io);
 * ```
 */
export async function fleetLs(p: Parsed, io: Io): Promise<void> {
  const filter = applianceFilter(p);
  const waitMs = secondsOption(p, "wait", 5);
  const { host, prefix } = await connectBroker(p, io.env);
  let view: FleetView;
  try {
    view = await readFleet(host, viewFor(p, prefix), { prefix, waitMs });
  } finally {
    await host.close();
  }
  const rows = view.list().filter(filter);
  if (p.values.json) {
    io.out(JSON.stringify(rows.map((a) => ({ ...a, lastSeen: new Date(a.lastSeenMs).toISOString() })), null, 2) + "\n");
    return;
  }
  const table = [["ID", "STATE", "VERSION", "LIFECYCLE", "LAST SEEN", "BACKLOG"]];
  for (const a of rows) {
    table.push([a.id, a.live ? "live" : "dead", a.version ?? "-", a.lifecycle ?? "-", new Date(a.lastSeenMs).toISOString().replace(/\.\d+Z$/, "Z"), a.backlog === undefined ? "-" : String(a.backlog)]);
  }
  const widths = table[0]!.map((_, i) => Math.max(...table.map((r) => r[i]!.length)));
  io.out(table.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join("  ")).join("\n") + "\n");
  const dead = rows.filter((a) => !a.live).length;
  io.err(`${rows.length} appliance${rows.length === 1 ? "" : "s"}, ${rows.length - dead} live, ${dead} dead\n`);
}

/** One record as a line of `fleet tail`. */
export function recordLine(r: FleetRecord, options: { retained?: boolean } = {}): string {
  const when = new Date(r.ts_ms).toISOString();
  let detail: string;
  switch (r.kind) {
    case "birth":
      detail = `session ${r.session} version ${r.version} ${r.lifecycle} backlog ${r.backlog}`;
      break;
    case "death":
      detail = `session ${r.session} ${r.reason}`;
      break;
    case "lifecycle":
      detail = `${r.state} ${r.reason}`;
      break;
    case "telemetry":
      detail = `${r.worker} ${JSON.stringify(r.data)}`;
      break;
    case "audit":
      detail = r.line;
      break;
    case "dropped":
      detail = `${r.count} records (${r.bytes} bytes) between seq ${r.first_seq} and ${r.last_seq}`;
      break;
  }
  const marks = [r.historical ? "[historical]" : "", options.retained ? "[retained]" : ""].filter(Boolean).join(" ");
  return `${when} ${r.id} ${r.seq} ${r.kind} ${detail}${marks ? ` ${marks}` : ""}`;
}

/**
 * `cohesix fleet tail`: records as they arrive, duplicates removed by
 * `(id, seq)`, historical ones marked; until interrupted or `--count N`.
 *
 * @example
 * ```ts
 * await fleetTail(parseVerb(["--id", "app-1", "--count", "10"], verb), io);
 * ```
 */
export async function fleetTail(p: Parsed, io: Io): Promise<void> {
  const filter = applianceFilter(p);
  const id = str(p, "id");
  const countText = str(p, "count");
  const count = countText === undefined ? Infinity : Number(countText);
  if (!(count === Infinity || (Number.isSafeInteger(count) && count > 0))) throw new UsageError(`--count must be a positive integer, got ${JSON.stringify(countText)}`);
  const { host, prefix } = await connectBroker(p, io.env, { reconnect: true });
  const view = viewFor(p, prefix);
  const stop = new AbortController();
  const onSignal = () => stop.abort();
  process.once("SIGTERM", onSignal);
  process.once("SIGINT", onSignal);
  io.signal?.addEventListener("abort", onSignal, { once: true });
  let printed = 0;
  try {
    host.onMessage((topic, payload, retained) => {
      if (stop.signal.aborted) return;
      const added = view.add(topic, payload, { retained });
      if (added.kind !== "record" || added.duplicate) return;
      const appliance = view.get(added.record.id);
      if (!appliance || !filter(appliance)) return;
      io.out(p.values.json ? `${JSON.stringify(added.record)}\n` : `${recordLine(added.record, { retained })}\n`);
      printed += 1;
      if (printed >= count) stop.abort();
    });
    await host.subscribe([id !== undefined ? `${prefix}/${id}/#` : `${prefix}/+/#`]);
    if (!stop.signal.aborted) await new Promise((r) => stop.signal.addEventListener("abort", r, { once: true }));
  } finally {
    process.off("SIGTERM", onSignal);
    process.off("SIGINT", onSignal);
    io.signal?.removeEventListener("abort", onSignal);
    await host.close();
  }
}
