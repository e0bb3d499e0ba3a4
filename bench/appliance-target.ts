/**
 * The appliance as a bench target: a child process running the real root
 * task (`serveAppliance`, what `cohesix serve` calls) so that its RSS and CPU
 * are its own while the bench's clients run in the parent.
 *
 * With `--workers N` it also adds `/worker/worker-1 … worker-N`, each with a
 * `telemetry` append log made with the options the worker pool uses for a
 * spawned worker (writable, 256 KiB kept, 4 KiB writes, JSON lines) and a
 * `ctl`, but without worker processes: the scale bench attaches its own
 * in-process sessions with `worker-heartbeat` tickets signed by the boot key
 * (`STATE/boot.key`). These workers are not in the commit log, so the pool
 * neither counts nor revokes them.
 *
 * Prints `READY TCP_DIAL UNIX_DIAL` once serving; exits 0 on SIGTERM/SIGINT
 * (so `node --cpu-prof` writes its profile).
 *
 * @example
 * ```sh
 * node scripts/run-ts.mjs bench/appliance-target.ts --state /tmp/s --queen-pub /tmp/s/queen.pub --workers 1000
 * ```
 * @module
 */
import { monitorEventLoopDelay } from "node:perf_hooks";
import { parseArgs } from "node:util";
import { AppendLog, CtlFile, Directory, GeneratedFile, InvalidError, validateJsonLines } from "../nine-door/index.ts";
import { serveAppliance } from "../root-task/index.ts";

const { values } = parseArgs({
  options: {
    state: { type: "string" },
    "queen-pub": { type: "string" },
    listen: { type: "string", default: "127.0.0.1:0" },
    workers: { type: "string", default: "0" },
  },
});
if (values.state === undefined || values["queen-pub"] === undefined) throw new Error("appliance-target: --state DIR and --queen-pub FILE are required");
const workers = Number(values.workers);
if (!Number.isSafeInteger(workers) || workers < 0) throw new Error(`appliance-target: --workers must be a count, got ${values.workers}`);

const running = await serveAppliance({ board: "host", listen: values.listen!, stateDir: values.state, queenPub: values["queen-pub"] });
for (let i = 1; i <= workers; i++) {
  const telemetry = new AppendLog("telemetry", { writable: true, retainBytes: 256 << 10, maxWrite: 4096, validate: validateJsonLines });
  const ctl = new CtlFile("ctl", () => {
    throw new InvalidError("bench worker: no process to kill");
  });
  running.app.workers.add(new Directory(`worker-${i}`, { children: [telemetry, ctl] }));
}
// `/proc/eventloop`: the appliance's event-loop delay since the previous
// open (each open reads and resets it), so the bench can tell the root
// task's own stalls from the machine's.
const eld = monitorEventLoopDelay({ resolution: 1 });
eld.enable();
const proc = running.app.root.get("proc");
if (!(proc instanceof Directory)) throw new Error("appliance-target: no /proc directory");
proc.add(
  new GeneratedFile(
    "eventloop",
    () => {
      const ms = (ns: number): string => (ns / 1e6).toFixed(3);
      const text = `p50_ms=${ms(eld.percentile(50))} p99_ms=${ms(eld.percentile(99))} max_ms=${ms(eld.max)} count=${eld.count}\n`;
      eld.reset();
      return text;
    },
    { perm: 0o444 },
  ),
);
process.stdout.write(`READY ${running.dialString} unix!${running.app.socketPath}\n`);

const stop = (): void => {
  void running.stop("bench done").finally(() => process.exit(0));
};
process.once("SIGTERM", stop);
process.once("SIGINT", stop);
