/**
 * The worker API (DESIGN §11): what a worker program needs from Cohesix,
 * and nothing of its internals. The built-in `heartbeat` worker is written
 * against it, and so are users' own workers.
 *
 * - `api.ts` — {@link attachWorker} and the {@link Worker} it returns:
 *   `telemetry.append(record)`, `readCtl()`, `root` (the worker's view of
 *   the namespace), `onClosed(reason)`, `stop({ graceMs })`.
 * - `gpu-session.ts` — {@link GpuSession}, `worker.gpu` for workers spawned
 *   with a lease: `info()`, `lease()`, `submit(job)`, `waitStatus(job)`, `run(job)`.
 * - `identity.ts` — {@link readWorkerIdentity}: address, id and role from
 *   the environment, the ticket from an inherited descriptor (never argv);
 *   {@link appPath}: a guest path (a project's `files`) as this worker
 *   reaches it, in the image and on the host board alike.
 *
 * Errors are NineDoor's typed errors (`ClosedError`, `PermissionError`…).
 *
 * @example
 * ```ts
 * import { attachWorker } from "cohesix/worker";
 *
 * const worker = await attachWorker();
 * worker.onClosed((reason) => {
 *   console.error(`closed: ${reason}`);
 *   process.exit(0);
 * });
 * let frame = 0;
 * const timer = setInterval(() => void worker.telemetry.append({ frame: ++frame }), 1000);
 * process.on("SIGTERM", async () => {
 *   clearInterval(timer);
 *   await worker.stop({ graceMs: 500 });
 * });
 * ```
 * @module
 */
export { attachWorker, Telemetry, Worker, type AttachWorkerOptions, type StopOptions } from "./api.ts";
export { isClosedError, numberFromEnv, runWorker, type WorkerProgramSpec } from "./run.ts";
export {
  GpuSession,
  type GpuInfoRecord,
  type GpuJob,
  type GpuLeaseRecord,
  type GpuStatusRecord,
  type WaitStatusOptions,
} from "./gpu-session.ts";
export { appPath, readWorkerIdentity, WORKER_ENV, type WorkerEnv, type WorkerIdentity } from "./identity.ts";
export {
  BusyError,
  ClosedError,
  InvalidError,
  NineError,
  NotFoundError,
  PermissionError,
  TooBigError,
  type ErrorClass,
  type Fid,
  type FileInfo,
} from "../nine-door/index.ts";
