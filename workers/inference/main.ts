/**
 * The built-in inference worker (kind `inference`, role `worker-gpu`,
 * spawned with a lease like `gpu`): takes an image, preprocesses it with
 * sharp into a normalised float32 tensor (resize to
 * `COHESIX_INFERENCE_SIZE`², default 128 so the tensor — 196,608 bytes —
 * fits the bridge's default 256 KiB payload limit; RGB → CHW; ImageNet mean
 * and deviation), submits the tensor as a `classify` job through
 * `/gpu/<gpu-id>/job`, waits for its final status, and appends the result
 * line to its telemetry:
 *
 * ```json
 * {"tick":1,"ts_ms":…,"job":"worker-4.1","state":"OK","input":"sample.png","tensor":{"shape":[1,3,128,128],"dtype":"float32","sha256":"sha256:…","channel_mean":[…]},
 *  "preprocess":{"platform":"linux-arm64","node":"24.22.0","sharp":"0.34.5","vips":"8.17.3","ms":…},"result":{…}}
 * ```
 *
 * then repeats every `COHESIX_INTERVAL_MS`. The image is the sample shipped
 * with the package (`dist/workers/inference/sample.png`, from
 * `workers/inference/sample.png`), or the file named by
 * `COHESIX_INFERENCE_IMAGE` on the appliance's file system. (An image
 * written by the queen into the worker's namespace is not supported yet.)
 *
 * Exits 0 on `closed:` and SIGTERM; other failures exit 1. Bundled to
 * `dist/workers/inference.mjs`; sharp stays an external import resolved
 * from `node_modules` (in the guest, the image builder places sharp and
 * `@img/sharp-linux-arm64` + `@img/sharp-libvips-linux-arm64`).
 *
 * @example
 * ```sh
 * cohesix ctl '{"spawn":"inference","lease":{"gpu_id":"GPU-1","mem_mb":2048,"streams":1,"ttl_s":300,"priority":0}}'
 * ```
 * @module
 */
import { readFile } from "node:fs/promises";
import { basename } from "node:path";
import { fileURLToPath } from "node:url";
import { isClosedError, numberFromEnv, runWorker, type GpuSession, type Worker } from "../index.ts";
import { preprocess, preprocessRuntime } from "./preprocess.ts";

/** The bundled sample beside this module (dist/workers/inference/sample.png), or the source one. */
function samplePath(): string {
  return fileURLToPath(new URL(import.meta.url.endsWith(".ts") ? "./sample.png" : "./inference/sample.png", import.meta.url));
}

function gpuOf(worker: Worker): GpuSession {
  if (!worker.gpu) throw new Error('no GPU lease: spawn this worker with a lease ({"spawn":"inference","lease":{…}})');
  return worker.gpu;
}

await runWorker({
  name: "inference",
  // Preprocess before attaching: a broken image or sharp build fails fast.
  setup: async () => {
    const size = numberFromEnv("COHESIX_INFERENCE_SIZE", 128, 1024);
    const imagePath = process.env.COHESIX_INFERENCE_IMAGE || samplePath();
    const started = performance.now();
    const tensor = await preprocess(await readFile(imagePath), { size });
    const ms = Math.round(performance.now() - started);
    const described = { shape: tensor.shape, dtype: "float32", sha256: tensor.sha256, channel_mean: tensor.channelMean };
    return { tensor, described, input: basename(imagePath), runtime: { ...preprocessRuntime(), ms } };
  },
  start: async (worker) => {
    gpuOf(worker);
  },
  tick: async (worker, tick, { tensor, described, input, runtime }) => {
    const job = `${worker.id}.${tick}`;
    try {
      const [, , h, w] = tensor.shape;
      const s = await gpuOf(worker).run({ job, kernel: "classify", grid: [Math.ceil((h * w) / 256), 1, 1], block: [256, 1, 1], payload: tensor.bytes, timeout_ms: 10_000 });
      return { tick, ts_ms: Date.now(), job, state: s.state, input, tensor: described, preprocess: runtime, ...(s.result ? { result: s.result } : {}), ...(s.reason ? { reason: s.reason } : {}) };
    } catch (err) {
      if (isClosedError(err)) throw err;
      return { tick, ts_ms: Date.now(), job, state: "ERR", input, reason: err instanceof Error ? err.message : String(err) };
    }
  },
});
