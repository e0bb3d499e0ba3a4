/**
 * The built-in GPU worker: spawned with a lease (`{"spawn":"gpu","lease":…}`),
 * it attaches with its worker-gpu ticket, reads its lease from
 * `/gpu/<gpu-id>/lease`, and every `COHESIX_INTERVAL_MS` (default 1000)
 * submits one job with a deterministic payload (tick n → 4 KiB derived from
 * the worker id and n), waits for its final status, and appends
 * `{"tick":n,"ts_ms":…,"job":…,"state":"OK","result":{…}}` (or `"ERR"` with
 * a reason) to its telemetry. The first line, tick 0, reports the lease.
 *
 * Exits 0 when the appliance closes the session (revocation, lease
 * expiry, kill) and on SIGTERM after a graceful stop; a worker without a
 * lease, or any other failure, goes to stderr and exits 1. Bundled to
 * `dist/workers/gpu.mjs`.
 *
 * @example
 * ```sh
 * cohesix ctl '{"spawn":"gpu","lease":{"gpu_id":"GPU-0","mem_mb":1024,"streams":1,"ttl_s":120,"priority":0}}'
 * cohesix cat /worker/worker-1/telemetry
 * ```
 * @module
 */
import { createHash } from "node:crypto";
import { attachWorker, WORKER_ENV, type GpuSession, type Worker } from "../index.ts";

const STOP_GRACE_MS = 1000;
const PAYLOAD_BYTES = 4096;

function intervalFromEnv(): number {
  const text = process.env[WORKER_ENV.intervalMs];
  if (text === undefined || text === "") return 1000;
  const ms = Number(text);
  if (!Number.isSafeInteger(ms) || ms <= 0) throw new Error(`${WORKER_ENV.intervalMs} must be a whole number of milliseconds > 0, got ${JSON.stringify(text)}`);
  return ms;
}

/** Tick n's payload: SHA-256 blocks of `<worker>/<n>/<block>`, PAYLOAD_BYTES long. */
function payloadFor(worker: string, tick: number): Uint8Array {
  const out = Buffer.alloc(PAYLOAD_BYTES);
  for (let at = 0, block = 0; at < PAYLOAD_BYTES; at += 32, block++) {
    createHash("sha256").update(`${worker}/${tick}/${block}`).digest().copy(out, at);
  }
  return out;
}

function fail(err: unknown, who: string): never {
  process.stderr.write(`gpu ${who}: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
}

function isClosed(err: unknown): boolean {
  return err instanceof Error && "errorClass" in err && err.errorClass === "closed";
}

async function main(): Promise<void> {
  const who = process.env[WORKER_ENV.id] ?? "?";
  let intervalMs: number;
  let worker: Worker;
  let gpu: GpuSession;
  try {
    intervalMs = intervalFromEnv();
    worker = await attachWorker();
    if (!worker.gpu) throw new Error("no GPU lease: spawn this worker with a lease ({\"spawn\":\"gpu\",\"lease\":{…}})");
    gpu = worker.gpu;
  } catch (err) {
    fail(err, who);
  }

  let timer: NodeJS.Timeout | undefined;
  let finished = false;
  const finish = async (code: number, line: string): Promise<void> => {
    if (finished) return;
    finished = true;
    if (timer) clearTimeout(timer);
    process.stderr.write(`gpu ${worker.id}: ${line}\n`);
    await worker.stop({ graceMs: STOP_GRACE_MS });
    process.exitCode = code;
    setTimeout(() => process.exit(code), STOP_GRACE_MS).unref();
  };
  worker.onClosed((reason) => void finish(0, `closed: ${reason}`));
  process.once("SIGTERM", () => void finish(0, "stopping on SIGTERM"));

  try {
    const [info, lease] = await Promise.all([gpu.info(), gpu.lease()]);
    if (!lease || lease.state !== "ACTIVE") throw new Error(`no ACTIVE lease for ${worker.id} in ${gpu.path}/lease`);
    await worker.telemetry.append({ tick: 0, ts_ms: Date.now(), gpu: info.id, name: info.name, lease: { mem_mb: lease.mem_mb, streams: lease.streams, priority: lease.priority, ttl_s: lease.ttl_s, state: lease.state } });
  } catch (err) {
    if (isClosed(err) || finished) return;
    fail(err, worker.id);
  }

  const started = Date.now();
  let tick = 0;
  const beat = async (): Promise<void> => {
    if (finished) return;
    tick++;
    const job = `${worker.id}.${tick}`;
    let record: Record<string, unknown>;
    try {
      const s = await gpu.run({ job, kernel: "saxpy", grid: [16, 1, 1], block: [256, 1, 1], payload: payloadFor(worker.id, tick), timeout_ms: 5000 });
      record = { tick, ts_ms: Date.now(), job, state: s.state, ...(s.result ? { result: s.result } : {}), ...(s.reason ? { reason: s.reason } : {}) };
    } catch (err) {
      if (isClosed(err) || finished) return;
      // The bridge away (busy:) or a refusal: report it and keep the beat.
      record = { tick, ts_ms: Date.now(), job, state: "ERR", reason: err instanceof Error ? err.message : String(err) };
    }
    try {
      await worker.telemetry.append(record);
    } catch (err) {
      if (isClosed(err)) return;
      if (!finished) fail(err, worker.id);
      return;
    }
    if (finished) return;
    const now = Date.now();
    const next = started + Math.ceil((now - started + 1) / intervalMs) * intervalMs;
    timer = setTimeout(() => void beat(), next - now);
  };
  await beat();
}

await main();
