/**
 * `cohesix dashboard`: the operator web app (dashboard/). This file wires
 * the dashboard to the CLI's own paths: each appliance's queen session is
 * `connectQueen` (the ticket from `--key`), commands go through `sendCtl`
 * (signed like `cohesix ctl`), and the kill switch of a VM that this folder
 * runs is `vmControl` (like `cohesix vm`).
 * @module
 */
import { once } from "node:events";
import { appendFile, readFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { packageRoot } from "../boards/index.ts";
import { limitsOf, mqttFleetFeed, startDashboard, type ApplianceSource, type AuditEntry } from "../dashboard/index.ts";
import { listSnapshots, vmControl, vmPaths } from "../qemu/index.ts";
import { runningAppliances } from "./address.ts";
import { str, UsageError, type Parsed } from "./args.ts";
import { connectQueen, SESSION_TICKET_TTL_S, sendCtl } from "./remote.ts";
import type { Io } from "./verb.ts";

/**
 * The appliances to dial: every `--addr`, else COHESIX_ADDR, else (without
 * `--broker`) those this folder runs.
 */
function sourcesOf(p: Parsed, io: Io, dir: string): ApplianceSource[] {
  const given = (p.values.addr as string[] | undefined) ?? [];
  const running = runningAppliances(dir);
  const addrs = given.length > 0 ? given : io.env.COHESIX_ADDR ? [io.env.COHESIX_ADDR] : str(p, "broker") === undefined ? running.map((r) => r.dialString) : [];
  return [...new Set(addrs)].map((dial) => {
    const vm = running.find((r) => r.dialString === dial && r.kind === "vm");
    const parsed: Parsed = { values: { ...p.values, addr: dial }, positionals: [] };
    const paths = vm ? vmPaths(dir, vm.board) : undefined;
    return {
      dial,
      connect: async () => {
        const session = await connectQueen(parsed, io.env, { ttlS: SESSION_TICKET_TTL_S });
        return {
          root: session.root,
          ctl: (command, options = {}) => sendCtl(session.root, session.key, command, options),
          close: () => session.client.close(),
        };
      },
      ...(paths ? { killSwitch: { control: (op) => vmControl(paths, op), snapshots: () => listSnapshots(paths) } } : {}),
    } satisfies ApplianceSource;
  });
}

/** One audit line of an action from a page. */
function auditLine(e: AuditEntry): string {
  return `${e.ts} dashboard ${e.ok ? "ok" : "refused"} ${e.appliance} ${e.command} → ${e.result}\n`;
}

/**
 * `dashboard [--addr DIAL]... [--broker URL] [--listen HOST:PORT]`: serves
 * the operator web app; prints `READY http://HOST:PORT/`, then the one-time
 * login URL, and serves until SIGTERM/SIGINT.
 *
 * @example
 * ```ts
 * await main(["dashboard", "--addr", "tcp!127.0.0.1!5640", "--listen", "127.0.0.1:0"], io); // READY http://127.0.0.1:41234/
 * ```
 */
export async function dashboard(p: Parsed, io: Io): Promise<void> {
  const dir = resolve(str(p, "dir") ?? ".cohesix");
  const broker = str(p, "broker");
  const appliances = sourcesOf(p, io, dir);
  if (appliances.length === 0 && broker === undefined) {
    throw new UsageError("no appliance to show: give --addr DIAL (repeatable) or --broker URL, or run one here with `cohesix up`");
  }
  const tlsKey = str(p, "tls-key");
  const tlsCert = str(p, "tls-cert");
  if ((tlsKey === undefined) !== (tlsCert === undefined)) throw new UsageError("--tls-key and --tls-cert go together");
  const tokenFile = str(p, "token-file");
  const token = tokenFile === undefined ? undefined : (await readFile(tokenFile, "utf8")).trim();
  const auditFile = str(p, "audit");
  let limits;
  try {
    limits = limitsOf((p.values.limit as string[] | undefined) ?? []);
  } catch (err) {
    throw new UsageError(`--limit ${(err as Error).message.replace(/^invalid: /, "")}`);
  }
  const dash = await startDashboard({
    listen: str(p, "listen", "127.0.0.1:8080")!,
    appliances,
    ...(broker !== undefined ? { fleet: mqttFleetFeed(broker, { prefix: str(p, "prefix", "cohesix")! }) } : {}),
    assetsDir: join(packageRoot(), "dist", "dashboard"),
    limits,
    ...(tlsKey !== undefined && tlsCert !== undefined ? { tls: { key: await readFile(tlsKey), cert: await readFile(tlsCert) } } : {}),
    ...(token !== undefined ? { token } : {}),
    onAudit: (e) => {
      const line = auditLine(e);
      io.err(line);
      if (auditFile !== undefined) void appendFile(auditFile, line).catch(() => {});
    },
  });
  const stop = new AbortController();
  const onSignal = (): void => stop.abort();
  process.once("SIGTERM", onSignal);
  process.once("SIGINT", onSignal);
  io.signal?.addEventListener("abort", onSignal, { once: true });
  try {
    io.out(`READY ${dash.url}\n${dash.loginUrl}\n`);
    io.err(`dashboard: ${appliances.length} appliance${appliances.length === 1 ? "" : "s"} over 9P${broker ? `, the fleet from ${broker}` : ""}; open the login URL once, it works one time\n`);
    if (!stop.signal.aborted) await once(stop.signal, "abort");
  } finally {
    process.off("SIGTERM", onSignal);
    process.off("SIGINT", onSignal);
    await dash.close();
  }
}
