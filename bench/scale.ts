/**
 * `npm run bench -- scale`: many worker sessions appending telemetry to one
 * appliance, as `--workers` heartbeat workers would.
 *
 * The appliance (the real root task, `bench/appliance-target.ts`) runs in a
 * child process with `/worker/worker-1 … worker-N` made as the worker pool
 * makes them, but without worker processes. The bench process holds N
 * sessions, each its own connection (Unix socket by default, as workers
 * use), attached with a `worker-heartbeat` ticket for `worker-i` signed by
 * the appliance's boot key, with `/worker/worker-i/telemetry` open for
 * writing. Each session appends one JSON line per second for `--seconds`;
 * session i appends at i/N of each second, so appends are spread evenly
 * across the second instead of arriving all at once.
 *
 * Printed: append round trip (Twrite sent → Rwrite received, in the bench
 * process) p50/p90/p99/max; the appliance's RSS as it reports it in
 * `/proc/mem` (read over 9P by a queen session every 250 ms: the peak during
 * the run) and the kernel's VmHWM of the child (peak over its life); the
 * appliance's CPU share; the load average before and after.
 * Targets: p99 ≤ 5 ms, RSS ≤ 200 MB (10^6 bytes).
 *
 * @example
 * ```sh
 * npm run bench -- scale                          # 1,000 sessions for 60 s
 * npm run bench -- scale --workers 100 --seconds 10
 * ```
 * @module
 */
import { cpus } from "node:os";
import { monitorEventLoopDelay, performance } from "node:perf_hooks";
import { setTimeout as sleep } from "node:timers/promises";
import { parseArgs } from "node:util";
import { IOHDRSZ, NineClient, type Fid } from "../nine-door/index.ts";
import { mintTicket } from "../root-task/index.ts";
import { cpuSeconds, load, peakRssBytes, percentile, startAppliance, verdict, type ApplianceTarget } from "./child.ts";

const USAGE = `usage: npm run bench -- scale [OPTIONS]

  --workers N        worker sessions (default 1000)
  --seconds S        seconds of appends, one line per session per second (default 60)
  --transport T      unix (default, as workers attach) or tcp
  --parallel N       sessions being set up at once (default 50)
  --prefill          first fill every telemetry log to its retention (256 KiB, what
                     ~55 min at 1 line/s leaves), to see the steady-state RSS
  --cpu-prof DIR     run the appliance under node --cpu-prof, profile into DIR
`;

/** Telemetry kept per worker by the appliance (the worker pool's default). */
const TELEMETRY_RETAIN_BYTES = 256 << 10;

const TARGETS = { p99Ms: 5, rssBytes: 200e6 };

/** One worker session: its connection and its open telemetry fid. */
interface Session {
  readonly client: NineClient;
  readonly telemetry: Fid;
}

/** Runs the benchmark; resolves with the exit code. */
export async function run(argv: readonly string[]): Promise<number> {
  const { values } = parseArgs({
    args: [...argv],
    options: {
      workers: { type: "string", default: "1000" },
      seconds: { type: "string", default: "60" },
      transport: { type: "string", default: "unix" },
      parallel: { type: "string", default: "50" },
      prefill: { type: "boolean", default: false },
      "cpu-prof": { type: "string" },
      help: { type: "boolean", short: "h", default: false },
    },
  });
  if (values.help) {
    process.stdout.write(USAGE);
    return 0;
  }
  const workers = count("--workers", values.workers!);
  const seconds = count("--seconds", values.seconds!);
  const parallel = count("--parallel", values.parallel!);
  if (values.transport !== "unix" && values.transport !== "tcp") throw new Error(`--transport must be unix or tcp, got ${JSON.stringify(values.transport)}`);

  console.log(`scale bench: node ${process.version}, ${cpus().length} cpus, ${workers} worker sessions over ${values.transport}, ${seconds} s, load average ${load()}`);
  const target = await startAppliance({ workers, ...(values["cpu-prof"] ? { cpuProfDir: values["cpu-prof"] } : {}) });
  const sessions: Session[] = [];
  let monitor: NineClient | undefined;
  try {
    const addr = values.transport === "unix" ? target.unix : target.tcp;
    console.log(`appliance pid ${target.pid} on ${target.tcp} and ${target.unix}`);

    monitor = await NineClient.dial(target.tcp, { msize: 8192 + IOHDRSZ });
    const queen = await monitor.attach({ aname: target.queenTicket, uname: "queen" });
    // A generated file is a snapshot per open: each sample opens it anew.
    const readRss = async (): Promise<number> => {
      const text = await queen.readText("proc/mem");
      const m = text.match(/\brss=(\d+)/);
      if (!m) throw new Error(`/proc/mem has no rss=: ${text}`);
      return Number(m[1]);
    };
    const rssAtBoot = await readRss();

    const t0 = performance.now();
    await connectAll(target, addr, workers, parallel, seconds, sessions);
    const rssConnected = await readRss();
    console.log(`connected ${workers} sessions in ${((performance.now() - t0) / 1000).toFixed(1)} s; appliance rss at boot ${mb(rssAtBoot)}, with ${workers} sessions ${mb(rssConnected)}`);

    let peakRss = rssConnected;
    if (values.prefill) {
      const t1 = performance.now();
      await prefill(sessions, parallel);
      peakRss = Math.max(peakRss, await readRss());
      console.log(`prefilled ${workers} telemetry logs to ${TELEMETRY_RETAIN_BYTES >> 10} KiB in ${((performance.now() - t1) / 1000).toFixed(1)} s; appliance rss ${mb(peakRss)}`);
    }
    // Sample /proc/mem while the appends run; keep the peak.
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        peakRss = Math.max(peakRss, await readRss());
        await sleep(250);
      }
    })();

    const cpuBefore = cpuSeconds(target.pid);
    const loadBefore = load();
    await queen.readText("proc/eventloop");
    const benchLoop = monitorEventLoopDelay({ resolution: 1 });
    benchLoop.enable();
    const benchCpu = process.cpuUsage();
    const r = await appendAll(sessions, seconds);
    const cpuAfter = cpuSeconds(target.pid);
    const clientCpu = process.cpuUsage(benchCpu);
    benchLoop.disable();
    const applianceLoop = (await queen.readText("proc/eventloop")).trim();
    sampling = false;
    await sampler;
    peakRss = Math.max(peakRss, await readRss());
    const hwm = peakRssBytes(target.pid);

    const lat = r.latencies.sort((a, b) => a - b);
    const late = r.lateness.sort((a, b) => a - b);
    const serverCpu = cpuBefore !== undefined && cpuAfter !== undefined ? ((cpuAfter - cpuBefore) / r.seconds) * 100 : undefined;
    console.log(`\nappends    ${lat.length} in ${r.seconds.toFixed(1)} s (${(lat.length / r.seconds).toFixed(0)}/s), ${r.errors} errors${r.firstError ? ` (first: ${r.firstError})` : ""}`);
    console.log(`round trip p50 ${ms(percentile(lat, 50))}  p90 ${ms(percentile(lat, 90))}  p99 ${ms(percentile(lat, 99))}  max ${ms(lat.at(-1) ?? Number.NaN)}`);
    const slowSeconds = r.slow.map((n, s) => (n > 0 ? `${s}:${n}` : "")).filter((x) => x !== "");
    console.log(`appends over ${TARGETS.p99Ms} ms by second of the run (second:count): ${slowSeconds.join(" ") || "none"}`);
    console.log(`timer lateness in the bench (due → sent) p50 ${ms(percentile(late, 50))}  p99 ${ms(percentile(late, 99))}`);
    console.log(`appliance  rss peak ${mb(peakRss)} (sampled /proc/mem), VmHWM ${hwm === undefined ? "?" : mb(hwm)}${serverCpu === undefined ? "" : `, cpu ${serverCpu.toFixed(0)}% of a core`}`);
    console.log(`event-loop delay: appliance ${applianceLoop}; bench p50_ms=${(benchLoop.percentile(50) / 1e6).toFixed(3)} p99_ms=${(benchLoop.percentile(99) / 1e6).toFixed(3)} max_ms=${(benchLoop.max / 1e6).toFixed(3)}, bench cpu ${(((clientCpu.user + clientCpu.system) / 1e6 / r.seconds) * 100).toFixed(0)}% of a core`);
    console.log(`load average before ${loadBefore}, after ${load()}`);
    console.log("\n== summary ==");
    console.log(`${verdict(percentile(lat, 99) <= TARGETS.p99Ms && r.errors === 0)}  append p99 ≤ ${TARGETS.p99Ms} ms: ${ms(percentile(lat, 99))}${r.errors ? ` (${r.errors} errors)` : ""}`);
    console.log(`${verdict(peakRss <= TARGETS.rssBytes)}  root task RSS ≤ 200 MB: ${mb(peakRss)}`);
    return r.errors === 0 ? 0 : 1;
  } finally {
    for (const s of sessions) s.client.close();
    monitor?.close();
    await target.stop();
  }
}

function count(name: string, text: string): number {
  const n = Number(text);
  if (!Number.isSafeInteger(n) || n < 1) throw new Error(`${name} must be a positive integer, got ${JSON.stringify(text)}`);
  return n;
}

function ms(v: number): string {
  return `${v.toFixed(3)} ms`;
}

function mb(bytes: number): string {
  return `${(bytes / 1e6).toFixed(1)} MB`;
}

/** Dials, attaches and opens telemetry for worker-1 … worker-N, `parallel` at a time. */
async function connectAll(target: ApplianceTarget, addr: string, workers: number, parallel: number, seconds: number, out: Session[]): Promise<void> {
  let next = 1;
  const lane = async (): Promise<void> => {
    while (next <= workers) {
      const id = `worker-${next++}`;
      const ticket = mintTicket({ role: "worker-heartbeat", sub: id }, target.bootKey, { ttlS: seconds + 600 });
      const client = await NineClient.dial(addr, { msize: 8192 + IOHDRSZ });
      try {
        const root = await client.attach({ aname: ticket, uname: `worker-heartbeat:${id}` });
        const telemetry = await root.walk(`worker/${id}/telemetry`);
        await telemetry.open("w");
        out.push({ client, telemetry });
      } catch (err) {
        client.close();
        throw new Error(`session of ${id}: ${(err as Error).message}`);
      }
    }
  };
  await Promise.all(Array.from({ length: parallel }, lane));
}

/**
 * Appends heartbeat-sized JSON lines in writes of up to 4,000 bytes until
 * each session has written a little more than the retention, so every
 * telemetry log holds what a long-running worker's would.
 */
async function prefill(sessions: readonly Session[], parallel: number): Promise<void> {
  const line = `${JSON.stringify({ tick: 0, ts_ms: Date.now(), load1: 0.52, rss_kb: 48_000 })}\n`;
  const batch = line.repeat(Math.floor(4000 / line.length));
  const writes = Math.ceil((TELEMETRY_RETAIN_BYTES * 1.1) / batch.length);
  let next = 0;
  const lane = async (): Promise<void> => {
    while (next < sessions.length) {
      const s = sessions[next++]!;
      for (let i = 0; i < writes; i++) await s.telemetry.write(batch);
    }
  };
  await Promise.all(Array.from({ length: parallel }, lane));
}

/**
 * Session i appends at start + k s + i/N s for k = 0 … seconds−1. Returns
 * each append's round trip and how late its timer fired.
 */
async function appendAll(sessions: readonly Session[], seconds: number): Promise<{ latencies: number[]; lateness: number[]; slow: number[]; errors: number; firstError?: string; seconds: number }> {
  const latencies: number[] = [];
  const lateness: number[] = [];
  /** Appends slower than the p99 target, by second of the run. */
  const slow = new Array<number>(seconds + 1).fill(0);
  let errors = 0;
  let firstError: string | undefined;
  const start = performance.now() + 100;
  const n = sessions.length;
  const one = async (s: Session, i: number): Promise<void> => {
    const phase = (i * 1000) / n;
    for (let k = 0; k < seconds; k++) {
      const due = start + k * 1000 + phase;
      const wait = due - performance.now();
      if (wait > 0) await sleep(wait);
      const line = `${JSON.stringify({ tick: k + 1, ts_ms: Date.now(), load1: 0, rss_kb: 0 })}\n`;
      const t0 = performance.now();
      lateness.push(t0 - due);
      try {
        await s.telemetry.write(line);
        const rtt = performance.now() - t0;
        latencies.push(rtt);
        if (rtt > TARGETS.p99Ms) slow[Math.min(seconds, Math.floor((t0 - start) / 1000))]!++;
      } catch (err) {
        errors++;
        firstError ??= (err as Error).message;
      }
    }
  };
  await Promise.all(sessions.map(one));
  return { latencies, lateness, slow, errors, ...(firstError ? { firstError } : {}), seconds: (performance.now() - start) / 1000 };
}
