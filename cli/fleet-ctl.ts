/**
 * `cohesix fleet ctl`: one command to many appliances over the broker,
 * each envelope signed with the queen key for that appliance (its id, its
 * counter from its birth, a reply name), at most `--rate N/s`, every
 * answer awaited until `--deadline S`. One line per appliance, then a
 * summary; exit 1 when any was not ok.
 * @module
 */
import { type FanOutResult, type FanOutTarget, fanOut } from "../fleet/index.ts";
import { signFleetCommand } from "../root-task/index.ts";
import { type Parsed, UsageError, str } from "./args.ts";
import { readFleet, secondsOption, viewFor, applianceFilter } from "./fleet.ts";
import { connectBroker } from "./fleet-broker.ts";
import { readQueenKey } from "./hints.ts";
import { defaultQueenKey } from "./paths.ts";
import type { Io } from "./verb.ts";

/** `--rate 50/s` or `--rate 50`: commands per second. */
export function rateOption(p: Parsed): number | undefined {
  const v = str(p, "rate");
  if (v === undefined) return undefined;
  const m = /^(\d+(?:\.\d+)?)(?:\/s)?$/.exec(v);
  const n = m ? Number(m[1]) : NaN;
  if (!(n > 0)) throw new UsageError(`--rate must be commands per second above 0, e.g. 50/s, got ${JSON.stringify(v)}`);
  return n;
}

/**
 * The line printed for one appliance.
 *
 * @example
 * ```ts
 * resultLine({ id: "app-1", status: "ok", ctr: 4, ms: 12, result: { ok: true } }); // 'app-1 ok {"ok":true}'
 * ```
 */
export function resultLine(r: FanOutResult): string {
  if (r.status === "ok") return `${r.id} ok ${JSON.stringify(r.result ?? {})}`;
  return `${r.id} ${r.status} ${r.error ?? ""}`.trimEnd();
}

/**
 * `cohesix fleet ctl (--all|--id ID|--select K=V) JSON`.
 *
 * @example
 * ```ts
 * const code = await fleetCtl(parseVerb(["--all", '{"spawn":"heartbeat"}'], verb), io);
 * ```
 */
export async function fleetCtl(p: Parsed, io: Io): Promise<number> {
  const command = p.positionals[0]!;
  let parsed: unknown;
  try {
    parsed = JSON.parse(command);
  } catch (err) {
    throw new UsageError(`JSON is not JSON: ${(err as Error).message}`);
  }
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) throw new UsageError('JSON must be a command object, e.g. {"spawn":"heartbeat"}');
  const all = p.values.all === true;
  const id = str(p, "id");
  const selects = (p.values.select as string[] | undefined) ?? [];
  if (!all && id === undefined && selects.length === 0) throw new UsageError("say which appliances: --all, --id ID or --select K=V");
  if (all && (id !== undefined || selects.length > 0)) throw new UsageError("--all goes alone, without --id or --select");
  const ratePerS = rateOption(p);
  const deadlineMs = secondsOption(p, "deadline", 10);
  const waitMs = secondsOption(p, "wait", 5);
  const filter = applianceFilter(p);
  const keyPath = str(p, "key", io.env.COHESIX_KEY || defaultQueenKey(io.env))!;
  const key = await readQueenKey(keyPath);

  const { host, prefix } = await connectBroker(p, io.env);
  let results: FanOutResult[];
  const started = performance.now();
  let skipped = 0;
  try {
    const view = await readFleet(host, viewFor(p, prefix), { prefix, waitMs });
    let targets: FanOutTarget[];
    if (id !== undefined && selects.length === 0) {
      // One named appliance: sent even when the broker holds no birth of it (it then times out).
      targets = [{ id, ctr: view.get(id)?.ctr }];
    } else {
      const chosen = view.list().filter(filter);
      skipped = chosen.filter((a) => !a.live).length;
      targets = chosen.filter((a) => a.live).map((a) => ({ id: a.id, ctr: a.ctr }));
    }
    results = await fanOut(host, targets, {
      prefix,
      command,
      sign: (text, address) => signFleetCommand(text, key, address),
      ...(ratePerS !== undefined ? { ratePerS } : {}),
      deadlineMs,
      ...(p.values.json ? {} : { onResult: (r: FanOutResult) => io.out(`${resultLine(r)}\n`) }),
    });
  } finally {
    await host.close();
  }
  const count = (s: FanOutResult["status"]) => results.filter((r) => r.status === s).length;
  const summary = { appliances: results.length, ok: count("ok"), refused: count("refused"), timed_out: count("timed out"), dead_skipped: skipped, seconds: Math.round(performance.now() - started) / 1000 };
  if (p.values.json) {
    io.out(JSON.stringify({ results, summary }, null, 2) + "\n");
  } else {
    const dead = skipped > 0 ? ` (${skipped} dead appliance${skipped === 1 ? "" : "s"} not addressed)` : "";
    io.out(`${summary.appliances} appliance${summary.appliances === 1 ? "" : "s"}: ${summary.ok} ok, ${summary.refused} refused, ${summary.timed_out} timed out in ${summary.seconds.toFixed(2)} s${dead}\n`);
  }
  if (results.length === 0) io.err("fleet ctl: no live appliance matched\n");
  return results.length > 0 && summary.ok === results.length ? 0 : 1;
}
