/**
 * `npm run bench -- ctl`: `/queen/ctl` round trips against the real
 * appliance, where every accepted command is a durable commit (a
 * hash-chained record, `fdatasync`ed before the reply; DESIGN §7).
 *
 * The appliance (`bench/appliance-target.ts`, the root task as `cohesix
 * serve` runs it) is a child process with a fresh state dir. For each
 * `--concurrency C`, the bench opens C queen sessions (each its own TCP
 * connection, attached with a queen ticket) with `/queen/ctl` open rw once;
 * each session writes `{"budget":{"ops":N}}` (N counting up, so every
 * command is a new state change) and reads the reply on the same fid, one
 * command at a time, for `--duration` seconds after a 1 s warm-up.
 * Printed per level: p50/p99/max round trip (write sent → reply read),
 * commands/s, the appliance's CPU share, the load average. With C > 1 the
 * commit log could write several sessions' records in one batch (group
 * commit): the control pipeline orders and applies each command, moves
 * on to the next before the fsync, and acknowledges each once its record
 * is durable. Per level the bench also prints the log's own counters
 * (`/proc/state` `log`: appends and fsyncs, so records per fsync), and
 * once, on a file in the same state directory, the p99 of a bare
 * 64-byte write + `fdatasync` — the floor a durable command cannot beat.
 *
 * For the commit log alone, without 9P and the appliance, see
 * `npm run bench -- ctl-log`.
 *
 * @example
 * ```sh
 * npm run bench -- ctl                                # concurrency 1, 4, 16; 5 s each
 * npm run bench -- ctl --concurrency 1,8 --duration 10 --state-parent /var/tmp
 * ```
 * @module
 */
import { open, rm } from "node:fs/promises";
import { cpus } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { parseArgs } from "node:util";
import { IOHDRSZ, NineClient, type Fid } from "../nine-door/index.ts";
import { cpuSeconds, load, percentile, startAppliance, verdict } from "./child.ts";

const USAGE = `usage: npm run bench -- ctl [OPTIONS]

  --concurrency LIST   queen sessions at once, one command each in flight (default "1,4,16,64")
  --duration S         seconds measured per level, after a 1 s warm-up (default 5)
  --state-parent DIR   where the appliance's temp state dir goes (default the system temp dir)
  --cpu-prof DIR       run the appliance under node --cpu-prof, profile into DIR
`;

/** Figures of one concurrency level. */
export interface CtlResult {
  readonly concurrency: number;
  readonly commands: number;
  readonly perS: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly maxMs: number;
  /** Share of one core the appliance used (1 = one core busy). */
  readonly serverCpu: number | undefined;
  readonly load: string;
  /** Records the commit log wrote per fsync during the level (its own counters). */
  readonly recordsPerFsync: number;
}

/** p50/p99 of a 64-byte write + fdatasync on a file in `dir` (removed after). */
async function bareFdatasync(dir: string, n: number): Promise<{ p50Ms: number; p99Ms: number }> {
  const path = join(dir, "bench-fdatasync.tmp");
  const h = await open(path, "w");
  const buf = Buffer.alloc(64, 0x61);
  const samples: number[] = [];
  try {
    for (let i = 0; i < n; i++) {
      const t0 = performance.now();
      await h.write(buf, 0, buf.length, i * buf.length);
      await h.datasync();
      samples.push(performance.now() - t0);
    }
  } finally {
    await h.close();
    await rm(path, { force: true });
  }
  samples.sort((a, b) => a - b);
  return { p50Ms: percentile(samples, 50), p99Ms: percentile(samples, 99) };
}

/** The commit log's appends and fsyncs so far, from `/proc/state`. */
async function logCounters(root: Fid): Promise<{ appends: number; fsyncs: number }> {
  const s = JSON.parse(await root.readText("proc/state")) as { log: { appends: number; fsyncs: number } };
  return { appends: s.log.appends, fsyncs: s.log.fsyncs };
}

/** Runs the benchmark; resolves with the exit code. */
export async function run(argv: readonly string[]): Promise<number> {
  const { values } = parseArgs({
    args: [...argv],
    options: {
      concurrency: { type: "string", default: "1,4,16,64" },
      duration: { type: "string", default: "5" },
      "state-parent": { type: "string" },
      "cpu-prof": { type: "string" },
      help: { type: "boolean", short: "h", default: false },
    },
  });
  if (values.help) {
    process.stdout.write(USAGE);
    return 0;
  }
  const levels = values.concurrency!.split(",").map((c) => count("--concurrency", c));
  const durationS = Number(values.duration);
  if (!(durationS > 0)) throw new Error(`--duration must be a positive number of seconds, got ${JSON.stringify(values.duration)}`);

  console.log(`ctl bench: node ${process.version}, ${cpus().length} cpus, ${durationS} s per level, load average ${load()}`);
  const target = await startAppliance({
    ...(values["cpu-prof"] ? { cpuProfDir: values["cpu-prof"] } : {}),
    ...(values["state-parent"] ? { stateParent: values["state-parent"] } : {}),
  });
  const results: CtlResult[] = [];
  let bare: { p50Ms: number; p99Ms: number } | undefined;
  try {
    console.log(`appliance pid ${target.pid} on ${target.tcp}, state ${target.stateDir}`);
    bare = await bareFdatasync(target.stateDir, 500);
    console.log(`bare fdatasync on the state dir: p50 ${bare.p50Ms.toFixed(3)} ms  p99 ${bare.p99Ms.toFixed(3)} ms (n=500, 64-byte write + fdatasync)`);
    const next = { n: 1 };
    for (const c of levels) {
      const r = await level(target.tcp, target.queenTicket, target.pid, c, durationS, next);
      results.push(r);
      console.log(
        `concurrency ${String(c).padStart(3)}: ${r.perS.toFixed(0).padStart(6)} commands/s  p50 ${r.p50Ms.toFixed(3)} ms  p99 ${r.p99Ms.toFixed(3)} ms  max ${r.maxMs.toFixed(3)} ms` +
          `  (n=${r.commands}, ${r.recordsPerFsync.toFixed(1)} records/fsync${r.serverCpu === undefined ? "" : `, appliance ${(r.serverCpu * 100).toFixed(0)}% cpu`}, load ${r.load})`,
      );
    }
  } finally {
    await target.stop();
  }
  const one = results.find((r) => r.concurrency === 1);
  const best = results.reduce<CtlResult | undefined>((a, r) => (a === undefined || r.perS > a.perS ? r : a), undefined);
  console.log("\n== summary ==");
  if (one && bare) console.log(`${verdict(one.p99Ms <= bare.p99Ms + 0.5)}  ctl p99 ≤ bare fdatasync p99 + 0.5 ms at concurrency 1: ${one.p99Ms.toFixed(3)} ms vs ${(bare.p99Ms + 0.5).toFixed(3)} ms`);
  const wide = results.find((r) => r.concurrency === 64);
  if (wide) {
    console.log(`${verdict(wide.perS >= 15_000)}  ≥ 15,000 durable commands/s at concurrency 64: ${wide.perS.toFixed(0)}`);
    console.log(`${verdict(wide.recordsPerFsync >= 10)}  ≥ 10 records per fsync at concurrency 64: ${wide.recordsPerFsync.toFixed(1)}`);
  }
  if (one && best && best !== one) console.log(`concurrency ${best.concurrency}: ${(best.perS / one.perS).toFixed(2)}x the commands/s of one session`);
  return 0;
}

function count(name: string, text: string): number {
  const n = Number(text);
  if (!Number.isSafeInteger(n) || n < 1) throw new Error(`${name} must be a positive integer, got ${JSON.stringify(text)}`);
  return n;
}

/** One concurrency level: C queen sessions, each one command in flight. */
async function level(addr: string, ticket: string, pid: number, c: number, durationS: number, next: { n: number }): Promise<CtlResult> {
  const sessions: Array<{ client: NineClient; ctl: Fid }> = [];
  let first: Fid | undefined;
  try {
    for (let i = 0; i < c; i++) {
      const client = await NineClient.dial(addr, { msize: 8192 + IOHDRSZ });
      const root = await client.attach({ aname: ticket, uname: "queen" });
      first ??= root;
      const ctl = await root.walk("queen/ctl");
      await ctl.open("rw");
      sessions.push({ client, ctl });
    }
    const samples: number[] = [];
    let recording = false;
    let deadline = performance.now() + 1000;
    const lane = async ({ client, ctl }: { client: NineClient; ctl: Fid }): Promise<void> => {
      while (performance.now() < deadline) {
        const command = Buffer.from(`{"budget":{"ops":${next.n++}}}`);
        const t0 = performance.now();
        await client.rpc({ type: "Twrite", fid: ctl.fid, offset: 0, data: command });
        const r = await client.rpc({ type: "Tread", fid: ctl.fid, offset: 0, count: 4096 });
        const t1 = performance.now();
        if (!Buffer.from(r.data).toString().startsWith('{"ok":true')) throw new Error(`ctl reply is not ok: ${Buffer.from(r.data).toString()}`);
        if (recording) samples.push(t1 - t0);
      }
    };
    await Promise.all(sessions.map(lane));
    recording = true;
    const logBefore = await logCounters(first!);
    const cpuBefore = cpuSeconds(pid);
    const start = performance.now();
    deadline = start + durationS * 1000;
    await Promise.all(sessions.map(lane));
    const seconds = (performance.now() - start) / 1000;
    const cpuAfter = cpuSeconds(pid);
    const logAfter = await logCounters(first!);
    const fsyncs = logAfter.fsyncs - logBefore.fsyncs;
    samples.sort((a, b) => a - b);
    return {
      concurrency: c,
      commands: samples.length,
      perS: samples.length / seconds,
      p50Ms: percentile(samples, 50),
      p99Ms: percentile(samples, 99),
      maxMs: samples.at(-1) ?? Number.NaN,
      serverCpu: cpuBefore !== undefined && cpuAfter !== undefined ? (cpuAfter - cpuBefore) / seconds : undefined,
      load: load(),
      recordsPerFsync: fsyncs > 0 ? (logAfter.appends - logBefore.appends) / fsyncs : 0,
    };
  } finally {
    for (const s of sessions) s.client.close();
  }
}
