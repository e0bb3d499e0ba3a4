/**
 * A worker's identity as the root task hands it over: the address to dial,
 * the worker's id and role from the environment, and the ticket from an
 * inherited file descriptor (or, failing that, the environment). Never from
 * the command line, where any user of the machine could read it.
 * @module
 */
import { closeSync, readFileSync, readSync } from "node:fs";
import { InvalidError } from "../nine-door/index.ts";

/**
 * The environment variables a worker reads, by name.
 *
 * @example
 * ```ts
 * const intervalMs = Number(process.env[WORKER_ENV.intervalMs] ?? 1000);
 * ```
 */
export const WORKER_ENV = {
  /** Dial string of NineDoor, e.g. `unix!/run/cohesix/nine-door.sock`. */
  addr: "COHESIX_ADDR",
  /** The worker's id, e.g. `worker-3`. */
  id: "COHESIX_WORKER_ID",
  /** The worker's role, e.g. `worker-heartbeat`. */
  role: "COHESIX_WORKER_ROLE",
  /** Number of an inherited file descriptor holding the ticket (read to EOF, then closed). */
  ticketFd: "COHESIX_TICKET_FD",
  /** The ticket itself, when no descriptor is used. */
  ticket: "COHESIX_TICKET",
  /** The heartbeat interval in milliseconds (the built-in heartbeat worker). */
  intervalMs: "COHESIX_INTERVAL_MS",
  /** The leased GPU's path, e.g. `/gpu/GPU-0` (workers spawned with a lease). */
  gpu: "COHESIX_GPU",
  /**
   * Where the appliance's file system starts for this worker: unset in the
   * image (`/`); on the host board the folder where `cohesix.config.json`'s
   * `files` are placed (see {@link appPath}).
   */
  root: "COHESIX_ROOT",
} as const;

/**
 * A path on the appliance's file system as this worker reaches it: in the
 * image it is `path` itself; on the host board, where the project's
 * `files` (`/etc/app/settings.json`…) are placed under a folder of the
 * project, it is that folder joined with `path`. Read project files through
 * it and the same worker runs in both.
 *
 * @example
 * ```ts
 * import { readFile } from "node:fs/promises";
 * const settings = JSON.parse(await readFile(appPath("/etc/app/settings.json"), "utf8"));
 * ```
 */
export function appPath(path: string, env: WorkerEnv = process.env): string {
  if (!path.startsWith("/")) throw new InvalidError(`appPath: ${JSON.stringify(path)} must be an absolute guest path, e.g. /etc/app/settings.json`);
  const root = env[WORKER_ENV.root];
  if (root === undefined || root === "" || root === "/") return path;
  return `${root.replace(/\/+$/, "")}${path}`;
}

/**
 * The environment as a worker reads it (`process.env` by default).
 *
 * @example
 * ```ts
 * const env: WorkerEnv = { COHESIX_ADDR: "unix!/run/nd.sock", COHESIX_WORKER_ID: "worker-1", COHESIX_WORKER_ROLE: "worker-heartbeat", COHESIX_TICKET: ticket };
 * ```
 */
export type WorkerEnv = Record<string, string | undefined>;

/**
 * Who a worker is and where it reports.
 *
 * @example
 * ```ts
 * const me: WorkerIdentity = { addr: "unix!/run/nd.sock", id: "worker-3", role: "worker-heartbeat", ticket };
 * ```
 */
export interface WorkerIdentity {
  readonly addr: string;
  readonly id: string;
  readonly role: string;
  readonly ticket: string;
  /** The leased GPU's path (`/gpu/GPU-0`), for workers spawned with a lease. */
  readonly gpu?: string;
}

const ID = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;
const ROLE = /^worker-[a-z0-9][a-z0-9-]*$/;

/**
 * Reads the worker's identity from `env`. The ticket comes from the
 * descriptor named by `COHESIX_TICKET_FD` (read to end of file, then closed)
 * or else from `COHESIX_TICKET`; afterwards both variables are deleted from
 * `env`, so child processes do not inherit them. Missing or malformed values
 * throw InvalidError naming the variable.
 *
 * @example
 * ```ts
 * const { addr, id, role, ticket } = readWorkerIdentity(); // from process.env
 * ```
 */
export function readWorkerIdentity(env: WorkerEnv = process.env): WorkerIdentity {
  const addr = required(env, WORKER_ENV.addr);
  const id = required(env, WORKER_ENV.id);
  if (!ID.test(id)) throw new InvalidError(`worker identity: ${WORKER_ENV.id} is not a valid id: ${JSON.stringify(id)}`);
  const role = required(env, WORKER_ENV.role);
  if (!ROLE.test(role)) {
    throw new InvalidError(`worker identity: ${WORKER_ENV.role} must look like worker-<name>, got ${JSON.stringify(role)}`);
  }
  const ticket = readTicket(env);
  const gpu = env[WORKER_ENV.gpu];
  if (gpu !== undefined && gpu !== "" && !/^\/gpu\/[A-Za-z0-9._-]+$/.test(gpu)) {
    throw new InvalidError(`worker identity: ${WORKER_ENV.gpu} must look like /gpu/<gpu-id>, got ${JSON.stringify(gpu)}`);
  }
  return { addr, id, role, ticket, ...(gpu ? { gpu } : {}) };
}

function required(env: WorkerEnv, name: string): string {
  const value = env[name];
  if (value === undefined || value === "") {
    throw new InvalidError(`worker identity: ${name} is not set (a worker is started by the root task, which sets it)`);
  }
  return value;
}

function readTicket(env: WorkerEnv): string {
  const fdText = env[WORKER_ENV.ticketFd];
  const inline = env[WORKER_ENV.ticket];
  delete env[WORKER_ENV.ticket];
  delete env[WORKER_ENV.ticketFd];
  let ticket: string;
  if (fdText !== undefined && fdText !== "") {
    const fd = Number(fdText);
    if (!Number.isSafeInteger(fd) || fd < 0) {
      throw new InvalidError(`worker identity: ${WORKER_ENV.ticketFd} must be a descriptor number, got ${JSON.stringify(fdText)}`);
    }
    ticket = readDescriptor(fd).toString("utf8");
  } else if (inline !== undefined && inline !== "") {
    ticket = inline;
  } else {
    throw new InvalidError(`worker identity: neither ${WORKER_ENV.ticketFd} nor ${WORKER_ENV.ticket} is set`);
  }
  ticket = ticket.trim();
  if (ticket === "") throw new InvalidError("worker identity: the ticket is empty");
  return ticket;
}

/** Reads `fd` to end of file and closes it; waits out EAGAIN on a non-blocking pipe. */
function readDescriptor(fd: number): Buffer {
  try {
    try {
      return readFileSync(fd);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EAGAIN") throw err;
    }
    const parts: Buffer[] = [];
    const deadline = Date.now() + 5000;
    const chunk = Buffer.alloc(4096);
    const pause = new Int32Array(new SharedArrayBuffer(4));
    for (;;) {
      let n: number;
      try {
        n = readSync(fd, chunk);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== "EAGAIN" || Date.now() > deadline) throw err;
        Atomics.wait(pause, 0, 0, 5);
        continue;
      }
      if (n === 0) return Buffer.concat(parts);
      parts.push(Buffer.from(chunk.subarray(0, n)));
    }
  } catch (err) {
    throw new InvalidError(`worker identity: cannot read the ticket from descriptor ${fd}: ${(err as Error).message}`);
  } finally {
    try {
      closeSync(fd);
    } catch {
      // already closed: nothing to release
    }
  }
}
