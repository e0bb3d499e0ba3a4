/**
 * Reading the appliance's `/proc` files into the page's views: `key=value`
 * records, worker budgets, `/proc/boot`'s banner.
 * @module
 */
import type { WorkerView } from "./model.ts";

/**
 * One `key=value …` record; a value may be a JSON string in quotes.
 *
 * @example
 * ```ts
 * parseRecord('id=worker-1 status=running reason="tick budget exhausted"'); // { id: "worker-1", status: "running", reason: "tick budget exhausted" }
 * ```
 */
export function parseRecord(line: string): Record<string, string> {
  const rec: Record<string, string> = {};
  for (const m of line.matchAll(/([\w.]+)=("(?:[^"\\]|\\.)*"|\S*)/g)) {
    const raw = m[2]!;
    let value = raw;
    if (raw.startsWith('"')) {
      try {
        value = JSON.parse(raw) as string;
      } catch {
        value = raw;
      }
    }
    rec[m[1]!] = value;
  }
  return rec;
}

/**
 * Every `key=value` pair of a file, one or many per line (`/proc/boot`, `/proc/mem`).
 *
 * @example
 * ```ts
 * parsePairs("cohesix 0.1.0\nboard=host\n"); // { board: "host" }
 * ```
 */
export function parsePairs(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of text.split("\n")) Object.assign(out, parseRecord(line));
  return out;
}

function left(used: string | undefined, budget: string | undefined): string | undefined {
  const b = Number(budget);
  if (budget === undefined || budget === "-" || !Number.isFinite(b)) return undefined;
  const u = Number(used ?? 0);
  return `${Math.max(0, b - (Number.isFinite(u) ? u : 0))}/${b}`;
}

/**
 * What is left of a worker's budget, from its `/proc/workers` record.
 *
 * @example
 * ```ts
 * budgetLeft({ ticks: "3", budget_ticks: "1000", budget_ops: "-", ttl_s: "-" }); // "ticks 997/1000"
 * ```
 */
export function budgetLeft(rec: Readonly<Record<string, string>>): string {
  const parts: string[] = [];
  const ticks = left(rec.ticks, rec.budget_ticks);
  if (ticks) parts.push(`ticks ${ticks}`);
  const ops = left(rec.ops, rec.budget_ops);
  if (ops) parts.push(`ops ${ops}`);
  if (rec.ttl_s !== undefined && rec.ttl_s !== "-") parts.push(`ttl ${rec.ttl_s} s`);
  return parts.length > 0 ? parts.join(" · ") : "unbounded";
}

/**
 * The workers of `/proc/workers`, in order.
 *
 * @example
 * ```ts
 * parseWorkers("id=worker-1 kind=heartbeat role=worker-heartbeat status=running restarts=0\n")[0]?.kind; // "heartbeat"
 * ```
 */
export function parseWorkers(text: string): WorkerView[] {
  const out: WorkerView[] = [];
  for (const line of text.split("\n")) {
    if (!line.trim()) continue;
    const fields = parseRecord(line);
    if (!fields.id) continue;
    out.push({
      id: fields.id,
      kind: fields.kind ?? "?",
      role: fields.role ?? "?",
      status: fields.status ?? "?",
      restarts: Number(fields.restarts ?? 0) || 0,
      budgetLeft: budgetLeft(fields),
      fields,
    });
  }
  return out;
}

/**
 * The programs an appliance carries, from `/proc/boot`'s `workers=` line.
 *
 * @example
 * ```ts
 * programsOf({ workers: "gpu,heartbeat" }); // ["gpu", "heartbeat"]
 * ```
 */
export function programsOf(boot: Readonly<Record<string, string>>): string[] {
  return (boot.workers ?? "").split(",").filter((w) => /^[a-z][a-z0-9-]{0,31}$/.test(w));
}

/**
 * `/proc/boot`'s facts: one `key=value` per line, the value running to the
 * end of the line (`kernel=Linux 6.1.0 aarch64`).
 *
 * @example
 * ```ts
 * bootPairs("cohesix 0.1.0\nkernel=Linux 6.1 aarch64\n"); // { kernel: "Linux 6.1 aarch64" }
 * ```
 */
export function bootPairs(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of text.split("\n")) {
    const m = /^([\w.]+)=(.*)$/.exec(line);
    if (m) out[m[1]!] = m[2]!;
  }
  return out;
}

/** The version in `/proc/boot`'s banner (`cohesix 0.1.0`). */
export function versionOf(bootText: string): string | undefined {
  return /^cohesix (\S+)/m.exec(bootText)?.[1];
}

/**
 * The fleet id an appliance publishes under, from `/proc/boot`'s `fleet=` line.
 *
 * @example
 * ```ts
 * fleetIdOf({ fleet: "mqtt://10.0.2.2:1883 id=app-1" }); // "app-1"
 * ```
 */
export function fleetIdOf(boot: Readonly<Record<string, string>>): string | undefined {
  return /(?:^|\s)id=([A-Za-z0-9._-]{1,64})(?:\s|$)/.exec(boot.fleet ?? "")?.[1];
}
