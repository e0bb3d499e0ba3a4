/**
 * The sensor worker: the root task starts it when the queen writes
 * `{"spawn":"sensor"}` to /queen/ctl. It attaches with the ticket it was
 * handed and appends one reading per interval to its telemetry
 * (`/worker/<id>/telemetry`). runWorker handles the rest: `closed:` from
 * the appliance (revoked, killed, budget spent) and SIGTERM end it cleanly.
 */
import { runWorker } from "cohesix/worker";
import { reading } from "./sensor-reading.ts";

await runWorker({
  name: "sensor",
  tick: async (_worker, n) => ({ ...reading(n, Date.now()) }),
});
