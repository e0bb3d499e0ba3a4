/**
 * The worker API: what a worker program (built-in or a user's) needs from
 * Cohesix. Attach with the ticket the root task handed over, append
 * telemetry, read the worker's own ctl and namespace, learn when the
 * appliance closes the session, and stop gracefully.
 * @module
 */
import {
  ClosedError,
  InvalidError,
  NineClient,
  NineError,
  TooBigError,
  dialWithRetry,
  typedError as typedNineError,
  type Dialect,
  type Fid,
} from "../nine-door/index.ts";
import { GpuSession } from "./gpu-session.ts";
import { readWorkerIdentity, type WorkerEnv, type WorkerIdentity } from "./identity.ts";

/**
 * Options of {@link attachWorker}.
 *
 * @example
 * ```ts
 * const worker = await attachWorker({ dialAttempts: 10 });
 * ```
 */
export interface AttachWorkerOptions {
  /** Where the identity is read from; default `process.env` (the ticket variables are deleted from it). */
  readonly env?: WorkerEnv;
  /** An identity to use instead of reading `env` (tests, embedding). */
  readonly identity?: WorkerIdentity;
  /**
   * Default `9P2000`, whose errors carry their text, so a revoked session's
   * `closed: <reason>` arrives whole (9P2000.L would only carry an errno).
   */
  readonly dialect?: Dialect;
  /** How many times to dial before giving up; default 5. */
  readonly dialAttempts?: number;
  /** Cancels dialling and attaching. */
  readonly signal?: AbortSignal;
}

/**
 * Options of {@link Worker.stop}.
 *
 * @example
 * ```ts
 * await worker.stop({ graceMs: 500 });
 * ```
 */
export interface StopOptions {
  /** How long to wait for appends in flight and for clunks; default 1000. */
  readonly graceMs?: number;
}

/**
 * Attaches this process to NineDoor as the worker the root task started:
 * reads `COHESIX_ADDR`, `COHESIX_WORKER_ID`, `COHESIX_WORKER_ROLE` and the
 * ticket (`COHESIX_TICKET_FD`, else `COHESIX_TICKET`), dials, and attaches
 * with uname `<role>:<id>` and the ticket as aname. Failures are NineErrors:
 * `invalid:` for a missing variable, `permission:` for a refused ticket,
 * `closed:`/`not found:`… for the dial.
 *
 * @example
 * ```ts
 * import { attachWorker } from "cohesix/worker";
 * const worker = await attachWorker();
 * worker.onClosed((reason) => { console.error(`closed: ${reason}`); process.exit(0); });
 * await worker.telemetry.append({ frame: 1 });
 * process.on("SIGTERM", () => void worker.stop({ graceMs: 500 }));
 * ```
 */
export async function attachWorker(options: AttachWorkerOptions = {}): Promise<Worker> {
  const identity = options.identity ?? readWorkerIdentity(options.env);
  const what = `worker ${identity.id}`;
  let client: NineClient | undefined;
  try {
    const conn = await dialWithRetry(identity.addr, {
      attempts: options.dialAttempts ?? 5,
      ...(options.signal ? { signal: options.signal } : {}),
    });
    client = await NineClient.connect(conn, {
      dialect: options.dialect ?? "9P2000",
      ...(options.signal ? { signal: options.signal } : {}),
    });
    const root = await client.attach({ uname: `${identity.role}:${identity.id}`, aname: identity.ticket });
    return new Worker(identity, root);
  } catch (err) {
    client?.close();
    throw typedError(err, `${what}: attach to ${identity.addr} failed`);
  }
}

/**
 * A worker attached to NineDoor. Created by {@link attachWorker}.
 *
 * @example
 * ```ts
 * const worker = await attachWorker();
 * await worker.telemetry.append({ tick: 1, ts_ms: Date.now() });
 * console.log(await worker.readCtl());
 * console.log(await worker.root.readText("proc/boot"));
 * await worker.stop({ graceMs: 1000 });
 * ```
 */
export class Worker {
  /** The worker's id, e.g. `worker-3`. */
  readonly id: string;
  /** The worker's role, e.g. `worker-heartbeat`. */
  readonly role: string;
  /** The attach root: the worker's whole view of the namespace. */
  readonly root: Fid;
  /** The worker's `/worker/<id>/telemetry`. */
  readonly telemetry: Telemetry;
  /**
   * The leased GPU (`/gpu/<gpu-id>`) when the root task spawned this worker
   * with a lease; undefined otherwise.
   */
  readonly gpu: GpuSession | undefined;
  #closedReason: string | undefined;
  #stopping = false;
  readonly #listeners = new Set<(reason: string) => void>();

  /** @internal Use {@link attachWorker}. */
  constructor(identity: WorkerIdentity, root: Fid) {
    this.id = identity.id;
    this.role = identity.role;
    this.root = root;
    this.telemetry = new Telemetry(root, `worker/${identity.id}/telemetry`, (err) => this.#observe(err), (accepted) => this.#unusable(accepted));
    this.gpu = identity.gpu === undefined ? undefined : new GpuSession(root, identity.id, identity.gpu, { observe: (err) => this.#observe(err), unusable: () => this.#unusable() });
    root.client.onClose((err) => this.#observe(err));
  }

  /** The reason the appliance closed the session, once it has. */
  get closedReason(): string | undefined {
    return this.#closedReason;
  }

  /**
   * Reads the worker's own `/worker/<id>/ctl`.
   *
   * @example
   * ```ts
   * const text = await worker.readCtl();
   * ```
   */
  async readCtl(signal?: AbortSignal): Promise<string> {
    const gone = this.#unusable();
    if (gone) throw gone;
    try {
      return await this.root.readText(`worker/${this.id}/ctl`, signal);
    } catch (err) {
      throw this.#observe(err);
    }
  }

  /**
   * Calls `listener` once, with the reason, when a request is answered
   * `closed: <reason>` (a revoked session: budget exhausted, killed by the
   * queen) or the connection drops. Not called after {@link stop}. Returns
   * a function that removes the listener.
   *
   * @example
   * ```ts
   * worker.onClosed((reason) => console.error(`closed: ${reason}`));
   * ```
   */
  onClosed(listener: (reason: string) => void): () => void {
    if (this.#closedReason !== undefined) {
      queueMicrotask(() => listener(this.#closedReason!));
      return () => {};
    }
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /**
   * Stops gracefully: waits up to `graceMs` for appends in flight, clunks
   * the open fids, and closes the connection. Safe to call twice.
   *
   * @example
   * ```ts
   * process.on("SIGTERM", () => void worker.stop({ graceMs: 500 }).then(() => process.exit(0)));
   * ```
   */
  async stop(options: StopOptions = {}): Promise<void> {
    if (this.#stopping) return;
    this.#stopping = true;
    const graceMs = options.graceMs ?? 1000;
    const deadline = Date.now() + graceMs;
    const client = this.root.client;
    if (!client.closed) {
      await within(this.telemetry.settled(), graceMs);
      await within(
        Promise.allSettled([this.telemetry.release(), this.gpu?.close(), this.root.clunk()]),
        Math.max(0, deadline - Date.now()),
      );
    }
    client.close();
  }

  /** Why a new request (or, with `accepted`, one accepted before a stop) cannot be sent. */
  #unusable(accepted = false): ClosedError | undefined {
    if (this.#stopping && !accepted) return new ClosedError(`worker ${this.id} stopped`);
    if (this.#closedReason !== undefined) return new ClosedError(this.#closedReason);
    return undefined;
  }

  /** Types `err`, and reports `closed:` to the listeners once. */
  #observe(err: unknown): NineError {
    const e = typedError(err);
    if (e.errorClass === "closed" && !this.#stopping && this.#closedReason === undefined) {
      this.#closedReason = e.detail;
      const listeners = [...this.#listeners];
      this.#listeners.clear();
      for (const l of listeners) l(e.detail);
    }
    return e;
  }
}

/**
 * The worker's telemetry file, kept open on one fid. Each
 * {@link Telemetry.append} writes one JSON line; appends keep their order.
 *
 * @example
 * ```ts
 * await worker.telemetry.append({ tick: 1, ts_ms: Date.now(), load1: 0.2, rss_kb: 41000 });
 * ```
 */
export class Telemetry {
  /** Path of the file below the attach root. */
  readonly path: string;
  readonly #root: Fid;
  readonly #observe: (err: unknown) => NineError;
  readonly #unusable: (accepted: boolean) => NineError | undefined;
  #fid: Promise<Fid> | undefined;
  #queue: Promise<unknown> = Promise.resolve();
  #offset = 0;

  /** @internal Created by the Worker. */
  constructor(root: Fid, path: string, observe: (err: unknown) => NineError, unusable: (accepted: boolean) => NineError | undefined) {
    this.#root = root;
    this.path = path;
    this.#observe = observe;
    this.#unusable = unusable;
  }

  /**
   * Appends `record` as one JSON line (one Twrite). Refuses, without
   * sending, a record that is not a plain JSON object (`invalid:`) or whose
   * line does not fit in one message (`too big:`).
   *
   * @example
   * ```ts
   * await worker.telemetry.append({ frame: 7 });
   * ```
   */
  append(record: object): Promise<void> {
    let line: Buffer;
    try {
      line = encodeRecord(record, this.#root.client.iounit);
    } catch (err) {
      return Promise.reject(err);
    }
    const refused = this.#unusable(false);
    if (refused) return Promise.reject(refused);
    // Appends accepted before a stop still go out; a closed session refuses them.
    const run = this.#queue.then(async () => {
      const gone = this.#unusable(true);
      if (gone) throw gone;
      try {
        const fid = await this.#open();
        await fid.write(line, this.#offset);
        this.#offset += line.length;
      } catch (err) {
        throw this.#observe(err);
      }
    });
    this.#queue = run.catch(() => {});
    return run;
  }

  /** @internal Resolves when every append so far has finished. */
  settled(): Promise<void> {
    return this.#queue.then(() => {});
  }

  /** @internal Clunks the open fid, if any. */
  async release(): Promise<void> {
    const fid = this.#fid;
    this.#fid = undefined;
    if (fid) await (await fid).clunk();
  }

  #open(): Promise<Fid> {
    if (!this.#fid) {
      const opening = this.#root.walk(this.path).then(async (f) => {
        try {
          return await f.open("w");
        } catch (err) {
          await f.clunk().catch(() => {});
          throw err;
        }
      });
      this.#fid = opening;
      opening.catch(() => {
        if (this.#fid === opening) this.#fid = undefined;
      });
    }
    return this.#fid;
  }
}

function encodeRecord(record: object, iounit: number): Buffer {
  if (typeof record !== "object" || record === null || Array.isArray(record)) {
    throw new InvalidError("telemetry record must be a JSON object");
  }
  let text: string | undefined;
  try {
    text = JSON.stringify(record);
  } catch (err) {
    throw new InvalidError(`telemetry record cannot be serialised: ${(err as Error).message}`);
  }
  if (text === undefined || !text.startsWith("{")) throw new InvalidError("telemetry record must be a JSON object");
  const line = Buffer.from(`${text}\n`);
  if (line.length > iounit) throw new TooBigError(`telemetry line is ${line.length} bytes, one message holds ${iounit}`);
  return line;
}

/**
 * Any error as the NineError subclass of its class, so `instanceof
 * ClosedError` works. With `context`, a non-NineError becomes
 * `io: <context>: <message>`.
 */
function typedError(err: unknown, context?: string): NineError {
  if (err instanceof NineError) return typedNineError(err);
  const message = err instanceof Error ? err.message : String(err);
  return new NineError("io", context ? `${context}: ${message}` : message, { cause: err });
}

function within(p: Promise<unknown>, ms: number): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    p.then(
      () => {
        clearTimeout(timer);
        resolve();
      },
      () => {
        clearTimeout(timer);
        resolve();
      },
    );
  });
}
