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
import { runWorker } from "../index.ts";

await runWorker({
  name: "heartbeat",
  tick: async (_worker, tick) => ({
    tick,
    ts_ms: Date.now(),
    load1: os.loadavg()[0] ?? 0,
    rss_kb: Math.round(process.memoryUsage().rss / 1024),
  }),
});
