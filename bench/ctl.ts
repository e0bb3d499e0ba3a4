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
 * commit), but only if the appliance lets commands overlap; it runs queen
 * commands one at a time, each acknowledged after its own fsync, so the
 * gain at C > 1 is the overlap of one session's 9P round trip with
 * another's commit (see docs/benchmarks.md).
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
import { cpus } from "node:os";
import { performance } from "node:perf_hooks";
import { parseArgs } from "node:util";
import { IOHDRSZ, NineClient, type Fid } from "../nine-door/index.ts";
import { cpuSeconds, load, percentile, startAppliance, verdict } from "./child.ts";

const USAGE = `usage: npm run bench -- ctl [OPTIONS]

  --concurrency LIST   queen sessions at once, one command each in flight (default "1,4,16")
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
}

/** Runs the benchmark; resolves with the exit code. */
export async function run(argv: readonly string[]): Promise<number> {
  const { values } = parseArgs({
    args: [...argv],
    options: {
      concurrency: { type: "string", default: "1,4,16" },
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
  try {
    console.log(`appliance pid ${target.pid} on ${target.tcp}, state ${target.stateDir}`);
    const next = { n: 1 };
    for (const c of levels) {
      const r = await level(target.tcp, target.queenTicket, target.pid, c, durationS, next);
      results.push(r);
      console.log(
        `concurrency ${String(c).padStart(3)}: ${r.perS.toFixed(0).padStart(6)} commands/s  p50 ${r.p50Ms.toFixed(3)} ms  p99 ${r.p99Ms.toFixed(3)} ms  max ${r.maxMs.toFixed(3)} ms` +
          `  (n=${r.commands}${r.serverCpu === undefined ? "" : `, appliance ${(r.serverCpu * 100).toFixed(0)}% cpu`}, load ${r.load})`,
      );
    }
  } finally {
    await target.stop();
  }
  const one = results.find((r) => r.concurrency === 1);
  const best = results.reduce<CtlResult | undefined>((a, r) => (a === undefined || r.perS > a.perS ? r : a), undefined);
  console.log("\n== summary ==");
  if (one) console.log(`${verdict(one.p99Ms <= 0.5)}  ctl p99 ≤ 0.5 ms at concurrency 1 (the 9p bench's target): ${one.p99Ms.toFixed(3)} ms`);
  // Whether the gain is group commit (several records per fsync) cannot be
  // seen from here: `strace -c -f -e trace=fdatasync,pwrite64 -p PID` on the
  // appliance counts records (pwrite64) and fsyncs.
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
  try {
    for (let i = 0; i < c; i++) {
      const client = await NineClient.dial(addr, { msize: 8192 + IOHDRSZ });
      const root = await client.attach({ aname: ticket, uname: "queen" });
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
    const cpuBefore = cpuSeconds(pid);
    const start = performance.now();
    deadline = start + durationS * 1000;
    await Promise.all(sessions.map(lane));
    const seconds = (performance.now() - start) / 1000;
    const cpuAfter = cpuSeconds(pid);
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
    };
  } finally {
    for (const s of sessions) s.client.close();
  }
}
