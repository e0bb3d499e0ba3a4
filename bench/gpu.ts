/**
 * `npm run bench -- gpu`: the GPU bridge with the simulated backend, over
 * loopback TCP with the NineDoor client (9P2000.L).
 *
 * Figures:
 * - latency: one job at a time, from the start of the Twrite of its
 *   descriptor to `/<gpu>/job` until its `OK` line is read from a tail of
 *   `/<gpu>/status` (p50, p99);
 * - throughput: `--outstanding N` jobs in flight (N job fids, since a ctl
 *   fid runs its commands one at a time), jobs/s;
 * - direct: the same descriptors through `parseJobDescriptor` +
 *   `backend.runJob` in-process, one at a time (p50, p99); the bridge's
 *   overhead per job is the latency p50 minus the direct p50.
 *
 * `--time-scale 0` (the default) makes simulated jobs finish at once, so the
 * figures are the bridge's own cost; `--time-scale 1` waits out the
 * simulated kernel time too.
 *
 * @example
 * ```sh
 * npm run bench -- gpu --jobs 5000 --outstanding 32 --payload 4096
 * ```
 * @module
 */
import { mkdtempSync, rmSync } from "node:fs";
import { cpus, loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { parseArgs } from "node:util";
import { SimBackend, ensureBridgeKey, makeJobDescriptor, mintBridgeTicket, parseJobDescriptor, startBridge } from "../gpu-bridge/index.ts";
import { NineClient, type Fid } from "../nine-door/index.ts";

const USAGE = `usage: npm run bench -- gpu [OPTIONS]

  --jobs N           jobs per figure (default 3000)
  --outstanding N    jobs in flight for the throughput figure (default 32)
  --payload BYTES    payload size (default 4096)
  --time-scale X     simulated kernel time multiplier (default 0: instant)
`;

function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

const ms = (n: number): string => `${n.toFixed(3)} ms`;

/** Runs the benchmark; resolves with the exit code. */
export async function run(argv: readonly string[]): Promise<number> {
  const { values } = parseArgs({
    args: [...argv],
    options: { jobs: { type: "string" }, outstanding: { type: "string" }, payload: { type: "string" }, "time-scale": { type: "string" }, help: { type: "boolean" } },
    strict: true,
  });
  if (values.help) {
    process.stdout.write(USAGE);
    return 0;
  }
  const jobs = Number(values.jobs ?? 3000);
  const outstanding = Number(values.outstanding ?? 32);
  const payloadBytes = Number(values.payload ?? 4096);
  const timeScale = Number(values["time-scale"] ?? 0);
  const payload = new Uint8Array(payloadBytes).map((_, i) => (i * 31) & 0xff);

  console.log(`gpu bench: node ${process.version}, ${cpus().length} cpus (${cpus()[0]?.model ?? "?"}), load ${loadavg().map((l) => l.toFixed(2)).join(" ")}`);
  console.log(`sim backend, time scale ${timeScale}, payload ${payloadBytes} B, ${jobs} jobs per figure, ${outstanding} in flight for jobs/s`);

  const dir = mkdtempSync(join(tmpdir(), "cohesix-gpu-bench-"));
  const keyPath = join(dir, "bridge.key");
  const backend = new SimBackend({ timeScale });
  const bridge = await startBridge({ listen: "127.0.0.1:0", backend, key: keyPath, leaseLimits: { streamsPerGpu: 64 }, jobLimits: { concurrency: 64, maxQueuedPerLease: 1024 } });
  const client = await NineClient.dial(bridge.dialString);
  try {
    const top = await client.attach({ uname: "bridge", aname: mintBridgeTicket((await ensureBridgeKey(keyPath)).privateKey) });
    const ctl = await (await top.walk("GPU-0/ctl")).open("rw");
    await ctl.write(`LEASE worker-1 mem=1024 streams=64 priority=0 ttl=3600`);

    // One tail of status resolves each job's waiter when its OK or ERR arrives.
    const waiters = new Map<string, (state: string) => void>();
    const status = await (await top.walk("GPU-0/status")).open("r");
    let tailing = true;
    void (async () => {
      let offset = 0;
      let rest = "";
      while (tailing) {
        let data: Uint8Array;
        try {
          data = await status.read(offset, 65536);
        } catch {
          return;
        }
        offset += data.length;
        const text = rest + Buffer.from(data).toString("utf8");
        const lines = text.split("\n");
        rest = lines.pop()!;
        for (const line of lines) {
          const { job, state } = JSON.parse(line) as { job: string; state: string };
          if (state === "OK" || state === "ERR") waiters.get(job)?.(state);
        }
      }
    })();

    let seq = 0;
    const texts = (n: number): string[] =>
      Array.from({ length: n }, () => JSON.stringify(makeJobDescriptor({ job: `b${seq++}`, worker: "worker-1", kernel: "saxpy", grid: [64, 1, 1], block: [256, 1, 1], timeout_ms: 10_000 }, payload)));
    const submit = async (fid: Fid, text: string): Promise<number> => {
      const id = (JSON.parse(text) as { job: string }).job;
      const t0 = performance.now();
      const done = new Promise<string>((resolve) => waiters.set(id, resolve));
      await fid.write(text);
      const state = await done;
      waiters.delete(id);
      if (state !== "OK") throw new Error(`job ${id} ended ${state}`);
      return performance.now() - t0;
    };

    const jobFids: Fid[] = [];
    for (let i = 0; i < outstanding; i++) jobFids.push(await (await top.walk("GPU-0/job")).open("rw"));

    // Warm-up.
    for (const text of texts(200)) await submit(jobFids[0]!, text);

    // Latency, one at a time.
    const lat: number[] = [];
    for (const text of texts(jobs)) lat.push(await submit(jobFids[0]!, text));
    lat.sort((a, b) => a - b);

    // Throughput, N in flight.
    const all = texts(jobs);
    let next = 0;
    const t0 = performance.now();
    await Promise.all(
      jobFids.map(async (fid) => {
        while (next < all.length) await submit(fid, all[next++]!);
      }),
    );
    const perS = jobs / ((performance.now() - t0) / 1000);

    // Direct: validation + backend, no 9P, no queue.
    const [gpu] = await backend.listGpus();
    const direct: number[] = [];
    const signal = new AbortController().signal;
    for (const text of texts(jobs)) {
      const d0 = performance.now();
      const parsed = parseJobDescriptor(text);
      await backend.runJob({ gpu: gpu!, descriptor: parsed.descriptor, payload: parsed.payload, signal });
      direct.push(performance.now() - d0);
    }
    direct.sort((a, b) => a - b);

    const p50 = percentile(lat, 50);
    const d50 = percentile(direct, 50);
    console.log(`submit → OK latency: p50 ${ms(p50)}, p99 ${ms(percentile(lat, 99))} (one job at a time)`);
    console.log(`throughput: ${Math.round(perS)} jobs/s with ${outstanding} in flight`);
    console.log(`direct (validate + backend.runJob): p50 ${ms(d50)}, p99 ${ms(percentile(direct, 99))}`);
    console.log(`bridge overhead per job: ${ms(p50 - d50)} (latency p50 − direct p50)`);
    tailing = false;
    return 0;
  } finally {
    client.close();
    await bridge.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}
