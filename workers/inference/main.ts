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
 * {"tick":1,"ts_ms":…,"job":"worker-4.1","state":"OK","input":"sample.png","tensor":{"shape":[1,3,128,128],"dtype":"float32","sha256":"sha256:…","channel_mean":[…]},"result":{…}}
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
import { attachWorker, WORKER_ENV, type GpuSession, type Worker } from "../index.ts";
import { preprocess, type Tensor } from "./preprocess.ts";

const STOP_GRACE_MS = 1000;

function numberFromEnv(name: string, fallback: number, max = Number.MAX_SAFE_INTEGER): number {
  const text = process.env[name];
  if (text === undefined || text === "") return fallback;
  const n = Number(text);
  if (!Number.isSafeInteger(n) || n <= 0 || n > max) throw new Error(`${name} must be a whole number from 1 to ${max}, got ${JSON.stringify(text)}`);
  return n;
}

function fail(err: unknown, who: string): never {
  process.stderr.write(`inference ${who}: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
}

function isClosed(err: unknown): boolean {
  return err instanceof Error && "errorClass" in err && err.errorClass === "closed";
}

/** The bundled sample beside this module (dist/workers/inference/sample.png), or the source one. */
function samplePath(): string {
  return fileURLToPath(new URL(import.meta.url.endsWith(".ts") ? "./sample.png" : "./inference/sample.png", import.meta.url));
}

async function main(): Promise<void> {
  const who = process.env[WORKER_ENV.id] ?? "?";
  let intervalMs: number;
  let worker: Worker;
  let gpu: GpuSession;
  let tensor: Tensor;
  let input: string;
  try {
    intervalMs = numberFromEnv(WORKER_ENV.intervalMs, 1000);
    const size = numberFromEnv("COHESIX_INFERENCE_SIZE", 128, 1024);
    const imagePath = process.env.COHESIX_INFERENCE_IMAGE || samplePath();
    input = basename(imagePath);
    // Preprocess before attaching: a broken image or sharp build fails fast.
    tensor = await preprocess(await readFile(imagePath), { size });
    worker = await attachWorker();
    if (!worker.gpu) throw new Error("no GPU lease: spawn this worker with a lease ({\"spawn\":\"inference\",\"lease\":{…}})");
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
    process.stderr.write(`inference ${worker.id}: ${line}\n`);
    await worker.stop({ graceMs: STOP_GRACE_MS });
    process.exitCode = code;
    setTimeout(() => process.exit(code), STOP_GRACE_MS).unref();
  };
  worker.onClosed((reason) => void finish(0, `closed: ${reason}`));
  process.once("SIGTERM", () => void finish(0, "stopping on SIGTERM"));

  const described = { shape: tensor.shape, dtype: "float32", sha256: tensor.sha256, channel_mean: tensor.channelMean };
  const started = Date.now();
  let tick = 0;
  const beat = async (): Promise<void> => {
    if (finished) return;
    tick++;
    const job = `${worker.id}.${tick}`;
    let record: Record<string, unknown>;
    try {
      const [, , h, w] = tensor.shape;
      const s = await gpu.run({ job, kernel: "classify", grid: [Math.ceil((h * w) / 256), 1, 1], block: [256, 1, 1], payload: tensor.bytes, timeout_ms: 10_000 });
      record = { tick, ts_ms: Date.now(), job, state: s.state, input, tensor: described, ...(s.result ? { result: s.result } : {}), ...(s.reason ? { reason: s.reason } : {}) };
    } catch (err) {
      if (isClosed(err) || finished) return;
      record = { tick, ts_ms: Date.now(), job, state: "ERR", input, reason: err instanceof Error ? err.message : String(err) };
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
