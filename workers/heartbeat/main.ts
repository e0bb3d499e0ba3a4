/**
 * The built-in heartbeat worker: attaches with the ticket the root task
 * handed over, then every `COHESIX_INTERVAL_MS` (default 1000) appends
 * `{"tick":n,"ts_ms":…,"load1":…,"rss_kb":…}` to its telemetry, the first
 * right after attaching.
 *
 * Exits 0 when the appliance closes the session (the reason goes to
 * stderr) and on SIGTERM after a graceful stop; any other failure goes to
 * stderr and exits 1. Bundled to `dist/workers/heartbeat.mjs`.
 *
 * @example
 * ```sh
 * COHESIX_ADDR=unix!/run/nd.sock COHESIX_WORKER_ID=worker-1 COHESIX_WORKER_ROLE=worker-heartbeat \
 *   COHESIX_TICKET_FD=3 node dist/workers/heartbeat.mjs 3<ticket
 * ```
 * @module
 */
import os from "node:os";
import { attachWorker, WORKER_ENV, type Worker } from "../index.ts";

const STOP_GRACE_MS = 1000;

function intervalFromEnv(): number {
  const text = process.env[WORKER_ENV.intervalMs];
  if (text === undefined || text === "") return 1000;
  const ms = Number(text);
  if (!Number.isSafeInteger(ms) || ms <= 0) {
    throw new Error(`${WORKER_ENV.intervalMs} must be a whole number of milliseconds > 0, got ${JSON.stringify(text)}`);
  }
  return ms;
}

function fail(err: unknown, who: string): never {
  process.stderr.write(`heartbeat ${who}: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
}

async function main(): Promise<void> {
  const who = process.env[WORKER_ENV.id] ?? "?";
  let intervalMs: number;
  let worker: Worker;
  try {
    intervalMs = intervalFromEnv();
    worker = await attachWorker();
  } catch (err) {
    fail(err, who);
  }

  let timer: NodeJS.Timeout | undefined;
  let finished = false;
  const finish = async (code: number, line: string): Promise<void> => {
    if (finished) return;
    finished = true;
    if (timer) clearTimeout(timer);
    process.stderr.write(`heartbeat ${worker.id}: ${line}\n`);
    await worker.stop({ graceMs: STOP_GRACE_MS });
    process.exitCode = code;
    // Nothing should hold the event loop now; if something does, leave anyway.
    setTimeout(() => process.exit(code), STOP_GRACE_MS).unref();
  };

  worker.onClosed((reason) => void finish(0, `closed: ${reason}`));
  process.once("SIGTERM", () => void finish(0, "stopping on SIGTERM"));

  const started = Date.now();
  let tick = 0;
  const beat = async (): Promise<void> => {
    if (finished) return;
    tick++;
    try {
      await worker.telemetry.append({
        tick,
        ts_ms: Date.now(),
        load1: os.loadavg()[0] ?? 0,
        rss_kb: Math.round(process.memoryUsage().rss / 1024),
      });
    } catch (err) {
      // `closed:` is reported through onClosed; anything else is a failure.
      if (err instanceof Error && "errorClass" in err && err.errorClass === "closed") return;
      if (!finished) fail(err, worker.id);
      return;
    }
    if (finished) return;
    // Keep the cadence of the start time; skip beats we are late for.
    const now = Date.now();
    const next = started + Math.ceil((now - started + 1) / intervalMs) * intervalMs;
    timer = setTimeout(() => void beat(), next - now);
  };
  await beat();
}

await main();
