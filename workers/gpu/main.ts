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
import { isClosedError, runWorker, type GpuSession, type Worker } from "../index.ts";

const PAYLOAD_BYTES = 4096;

/** Tick n's payload: SHA-256 blocks of `<worker>/<n>/<block>`, PAYLOAD_BYTES long. */
function payloadFor(worker: string, tick: number): Uint8Array {
  const out = Buffer.alloc(PAYLOAD_BYTES);
  for (let at = 0, block = 0; at < PAYLOAD_BYTES; at += 32, block++) {
    createHash("sha256").update(`${worker}/${tick}/${block}`).digest().copy(out, at);
  }
  return out;
}

function gpuOf(worker: Worker): GpuSession {
  if (!worker.gpu) throw new Error('no GPU lease: spawn this worker with a lease ({"spawn":"gpu","lease":{…}})');
  return worker.gpu;
}

await runWorker({
  name: "gpu",
  start: async (worker) => {
    const gpu = gpuOf(worker);
    const [info, lease] = await Promise.all([gpu.info(), gpu.lease()]);
    if (!lease || lease.state !== "ACTIVE") throw new Error(`no ACTIVE lease for ${worker.id} in ${gpu.path}/lease`);
    await worker.telemetry.append({ tick: 0, ts_ms: Date.now(), gpu: info.id, name: info.name, lease: { mem_mb: lease.mem_mb, streams: lease.streams, priority: lease.priority, ttl_s: lease.ttl_s, state: lease.state } });
  },
  tick: async (worker, tick) => {
    const job = `${worker.id}.${tick}`;
    try {
      const s = await gpuOf(worker).run({ job, kernel: "saxpy", grid: [16, 1, 1], block: [256, 1, 1], payload: payloadFor(worker.id, tick), timeout_ms: 5000 });
      return { tick, ts_ms: Date.now(), job, state: s.state, ...(s.result ? { result: s.result } : {}), ...(s.reason ? { reason: s.reason } : {}) };
    } catch (err) {
      if (isClosedError(err)) throw err;
      // The bridge away (busy:) or a refusal: report it and keep the beat.
      return { tick, ts_ms: Date.now(), job, state: "ERR", reason: err instanceof Error ? err.message : String(err) };
    }
  },
});
