/**
 * The run loop every worker program shares: read the interval, attach,
 * produce one telemetry record per interval, and stop cleanly — exit 0 on
 * `closed:` (the reason goes to stderr) and on SIGTERM, exit 1 on any
 * other failure.
 * @module
 */
import { attachWorker, type Worker } from "./api.ts";
import { WORKER_ENV } from "./identity.ts";

const STOP_GRACE_MS = 1000;

/** What a worker program plugs into `runWorker`. */
export interface WorkerProgramSpec<S> {
  /** Prefix of stderr lines, e.g. `heartbeat`. */
  readonly name: string;
  /** Work before attaching (fails fast without a session), e.g. preprocessing. */
  setup?(): Promise<S> | S;
  /** After attaching, before the first tick; throw to fail. */
  start?(worker: Worker, setup: S): Promise<void>;
  /** Tick `n` (from 1): the telemetry record to append. Throw to fail (except `closed:`). */
  tick(worker: Worker, n: number, setup: S): Promise<Record<string, unknown>>;
}

/** Whether `err` is a `closed:` error (revocation, shutdown). */
export function isClosedError(err: unknown): boolean {
  return err instanceof Error && "errorClass" in err && err.errorClass === "closed";
}

/**
 * A whole number of milliseconds (or other count) from the environment.
 *
 * @example
 * ```ts
 * const size = numberFromEnv("COHESIX_INFERENCE_SIZE", 128, 1024);
 * ```
 */
export function numberFromEnv(name: string, fallback: number, max = Number.MAX_SAFE_INTEGER): number {
  const text = process.env[name];
  if (text === undefined || text === "") return fallback;
  const n = Number(text);
  if (!Number.isSafeInteger(n) || n <= 0 || n > max) throw new Error(`${name} must be a whole number from 1 to ${max}, got ${JSON.stringify(text)}`);
  return n;
}

/**
 * Runs a worker program to its end. Ticks keep the cadence of the start
 * time and skip beats they are late for; the first comes right after
 * `start`.
 *
 * @example
 * ```ts
 * await runWorker({ name: "camera", tick: async (_w, n) => ({ frame: n }) });
 * ```
 */
export async function runWorker<S = undefined>(spec: WorkerProgramSpec<S>): Promise<void> {
  const fail = (err: unknown, who: string): never => {
    process.stderr.write(`${spec.name} ${who}: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  };
  let intervalMs: number;
  let worker: Worker;
  let setup: S;
  try {
    intervalMs = numberFromEnv(WORKER_ENV.intervalMs, 1000);
    setup = (await spec.setup?.()) as S;
    worker = await attachWorker();
  } catch (err) {
    return fail(err, process.env[WORKER_ENV.id] ?? "?");
  }

  let timer: NodeJS.Timeout | undefined;
  let finished = false;
  const finish = async (code: number, line: string): Promise<void> => {
    if (finished) return;
    finished = true;
    if (timer) clearTimeout(timer);
    process.stderr.write(`${spec.name} ${worker.id}: ${line}\n`);
    await worker.stop({ graceMs: STOP_GRACE_MS });
    process.exitCode = code;
    // Nothing should hold the event loop now; if something does, leave anyway.
    setTimeout(() => process.exit(code), STOP_GRACE_MS).unref();
  };
  worker.onClosed((reason) => void finish(0, `closed: ${reason}`));
  process.once("SIGTERM", () => void finish(0, "stopping on SIGTERM"));

  try {
    await spec.start?.(worker, setup);
  } catch (err) {
    // `closed:` is reported through onClosed; anything else is a failure.
    if (isClosedError(err) || finished) return;
    fail(err, worker.id);
  }

  const started = Date.now();
  let n = 0;
  const beat = async (): Promise<void> => {
    if (finished) return;
    n++;
    try {
      const record = await spec.tick(worker, n, setup);
      if (finished) return;
      await worker.telemetry.append(record);
    } catch (err) {
      if (isClosedError(err) || finished) return;
      fail(err, worker.id);
    }
    if (finished) return;
    const now = Date.now();
    const next = started + Math.ceil((now - started + 1) / intervalMs) * intervalMs;
    timer = setTimeout(() => void beat(), next - now);
  };
  await beat();
}
