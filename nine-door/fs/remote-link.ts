/**
 * The connection side of a remote mount: one `ReconnectingClient` kept
 * dialling in the background, a bound on every connection attempt, and the
 * `connected`/`down` state the appliance shows (`DEGRADED
 * reason=gpu-bridge-down`). The tree side lives in `remote.ts`.
 * @module
 */
import type { Duplex } from "node:stream";
import {
  BusyError,
  ClosedError,
  NineError,
  typedError,
} from "../errors.ts";
import { ReconnectingClient, type ReconnectOptions } from "../client/reconnect.ts";
import type { Fid } from "../client/client.ts";
import type { RequestContext } from "./node.ts";

/** The connection state a mount reports. */
export type RemoteState = "connecting" | "connected" | "down";

/** Stops a listener registered with `onState`. */
export type Unsubscribe = () => void;

/** Told of every change between `connected` and `down`, with the reason. */
export type StateListener = (state: "connected" | "down", detail: string) => void;

/** Options of `new RemoteLink(name, options)`: the client's, plus a bound. */
export interface RemoteLinkOptions extends Omit<ReconnectOptions, "onState"> {
  /**
   * How long one connection attempt (dial, version, attach) may take, and how
   * long a request waits for the first connection. Default 3000 ms.
   */
  readonly connectTimeoutMs?: number;
}

const DEFAULT_CONNECT_TIMEOUT_MS = 3000;
const DEFAULT_MAX_DELAY_MS = 5000;

/** `busy: <mount> unavailable: <reason>`: the remote cannot be reached now. */
export class UnavailableError extends BusyError {
  constructor(mount: string, reason: string) {
    super(`${mount} unavailable: ${reason}`);
    this.name = "UnavailableError";
  }
}

/**
 * A reconnecting connection to the server behind a mount. It starts dialling
 * when made, redials with backoff whenever the connection drops (whether or
 * not anyone is asking), and bounds each attempt by `connectTimeoutMs`, so a
 * peer that accepts and never answers cannot stall recovery. The remote
 * speaks 9P2000 unless `connect.dialect` says otherwise.
 *
 * @example
 * ```ts
 * const link = new RemoteLink("gpu", { dial: (signal) => dial(addr, { signal }), attach: { aname: ticket } });
 * link.onState((state, why) => console.log(`gpu ${state}: ${why}`));
 * const root = await link.root(ctx);  // or busy: gpu unavailable: …
 * ```
 */
export class RemoteLink {
  readonly name: string;
  readonly #client: ReconnectingClient;
  readonly #connectTimeoutMs: number;
  readonly #maxDelayMs: number;
  readonly #listeners = new Set<StateListener>();
  /** Requests waiting for the first connection; told when an attempt fails. */
  readonly #downWaiters = new Set<(reason: string) => void>();
  #state: RemoteState = "connecting";
  #reason = "connecting";
  #closed = false;
  #retry: NodeJS.Timeout | undefined;
  /** The attempt in progress: its deadline and the stream it dialled. */
  #attempt: { timer: NodeJS.Timeout; conn?: Duplex } | undefined;

  constructor(name: string, options: RemoteLinkOptions) {
    this.name = name;
    this.#connectTimeoutMs = options.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS;
    this.#maxDelayMs = options.maxDelayMs ?? DEFAULT_MAX_DELAY_MS;
    this.#client = new ReconnectingClient({
      dial: (signal) => this.#dial(options.dial, signal),
      attach: options.attach,
      // 9P2000 by default: Rerror carries the remote's error text, and one
      // directory read carries every entry's full stat.
      connect: { ...options.connect, dialect: options.connect?.dialect ?? "9P2000" },
      ...(options.initialDelayMs === undefined ? {} : { initialDelayMs: options.initialDelayMs }),
      maxDelayMs: this.#maxDelayMs,
      onState: (state, detail) => this.#onClientState(state, detail),
    });
    this.#kick();
  }

  /** `connecting` (until the first attempt ends), `connected` or `down`. */
  get state(): RemoteState {
    return this.#state;
  }

  /** The last failure while not connected; `attached` while connected. */
  get reason(): string {
    return this.#reason;
  }

  /** True once `close()` was called. */
  get closed(): boolean {
    return this.#closed;
  }

  /**
   * Calls `listener` on every change between `connected` and `down`.
   *
   * @example
   * ```ts
   * const stop = link.onState((state) => console.log(state));
   * ```
   */
  onState(listener: StateListener): Unsubscribe {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /**
   * Resolves once connected; rejects with `busy:` after `timeoutMs` (default:
   * no limit), or `closed:` once closed.
   *
   * @example
   * ```ts
   * await link.ready(5000);
   * ```
   */
  async ready(timeoutMs?: number): Promise<void> {
    if (this.#closed) throw this.unmounted();
    await withDeadline(this.#client.root(), {
      ...(timeoutMs === undefined ? {} : { timeoutMs }),
      onTimeout: () => this.unavailable(`not connected within ${timeoutMs} ms`),
    });
  }

  /**
   * Stops redialling and drops the connection.
   *
   * @example
   * ```ts
   * link.close();
   * ```
   */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    clearTimeout(this.#retry);
    this.#endAttempt();
    this.#client.close();
    this.#listeners.clear();
  }

  /**
   * The attach root of a live connection. While the remote is known to be
   * down this answers `busy: <name> unavailable: <reason>` at once; while
   * connecting it waits up to `connectTimeoutMs`, giving up as soon as an
   * attempt fails or `ctx.signal` aborts.
   *
   * @example
   * ```ts
   * const root = await link.root(ctx);
   * const fid = await root.walk(["GPU-0", "info"]);
   * ```
   */
  async root(ctx: RequestContext): Promise<Fid> {
    if (this.#closed) throw this.unmounted();
    if (ctx.signal.aborted) throw abortReason(ctx.signal);
    // Known to be away: answer now; the redial goes on in the background.
    if (this.#state === "down") throw this.unavailable(this.#reason);
    const root = this.#client.root();
    root.catch(() => {});
    // Connecting: wait, but give up as soon as an attempt fails.
    const down = new AbortController();
    const onDown = (reason: string) => down.abort(this.unavailable(reason));
    this.#downWaiters.add(onDown);
    const stop = () => down.abort(abortReason(ctx.signal));
    ctx.signal.addEventListener("abort", stop, { once: true });
    try {
      return await withDeadline(root, {
        signal: down.signal,
        timeoutMs: this.#connectTimeoutMs,
        onTimeout: () => this.unavailable(`no connection within ${this.#connectTimeoutMs} ms`),
      });
    } catch (err) {
      if (err instanceof UnavailableError) throw err;
      if (ctx.signal.aborted) throw abortReason(ctx.signal);
      if (this.#closed) throw this.unmounted();
      throw this.unavailable(messageOf(err));
    } finally {
      this.#downWaiters.delete(onDown);
      ctx.signal.removeEventListener("abort", stop);
    }
  }

  /**
   * `busy: <name> unavailable: <reason>`.
   *
   * @example
   * ```ts
   * throw link.unavailable("no answer within 10000 ms");
   * ```
   */
  unavailable(reason: string): UnavailableError {
    return new UnavailableError(this.name, reason);
  }

  /**
   * `closed: <name> unmounted`, what everything answers after `close()`.
   *
   * @example
   * ```ts
   * if (link.closed) throw link.unmounted();
   * ```
   */
  unmounted(): ClosedError {
    return new ClosedError(`${this.name} unmounted`);
  }

  /** Starts (or joins) a connection attempt in the background. */
  #kick(): void {
    if (this.#closed) return;
    this.#client.root().catch(() => {});
  }

  async #dial(dial: ReconnectOptions["dial"], stop: AbortSignal): Promise<Duplex> {
    this.#endAttempt();
    const ac = new AbortController();
    const onStop = () => ac.abort(stop.reason);
    stop.addEventListener("abort", onStop, { once: true });
    const attempt: { timer: NodeJS.Timeout; conn?: Duplex } = {
      timer: setTimeout(() => {
        const err = new BusyError(`${this.name}: connection attempt took over ${this.#connectTimeoutMs} ms`);
        ac.abort(err);
        attempt.conn?.destroy(err);
      }, this.#connectTimeoutMs),
    };
    attempt.timer.unref();
    this.#attempt = attempt;
    try {
      const conn = await withDeadline(dial(ac.signal), { signal: ac.signal, abandoned: (late) => late.destroy() });
      if (ac.signal.aborted) {
        conn.destroy();
        throw abortReason(ac.signal);
      }
      attempt.conn = conn;
      return conn;
    } finally {
      stop.removeEventListener("abort", onStop);
    }
  }

  #endAttempt(): void {
    if (this.#attempt) clearTimeout(this.#attempt.timer);
    this.#attempt = undefined;
  }

  #onClientState(state: "connected" | "disconnected", detail: string): void {
    if (this.#closed) return;
    if (state === "connected") {
      this.#endAttempt();
      this.#set("connected", detail);
      return;
    }
    this.#set("down", detail);
    for (const w of this.#downWaiters) w(detail);
    // The connection dropped (or an attempt failed): keep redialling even if
    // nobody asks, so the state flips back as soon as the remote returns.
    // During a redial loop this joins it; after a refusal (the loop gave up:
    // a bad ticket does not heal by retrying) try again only after the
    // longest backoff, never in a tight loop.
    if (detail.startsWith("permission")) {
      clearTimeout(this.#retry);
      this.#retry = setTimeout(() => this.#kick(), this.#maxDelayMs);
      this.#retry.unref();
    } else {
      setImmediate(() => this.#kick());
    }
  }

  #set(state: "connected" | "down", detail: string): void {
    this.#reason = detail;
    if (this.#state === state) return;
    this.#state = state;
    for (const l of this.#listeners) {
      try {
        l(state, detail);
      } catch {
        // A listener's failure must not stop the others or the redial.
      }
    }
  }
}

/**
 * A remote error as the typed class of its error class, errno kept (the
 * client rebuilds Rerror/Rlerror as plain `NineError`s); anything else that
 * is not an Error becomes `io:`.
 *
 * @example
 * ```ts
 * retype(new NineError("busy", "GPU-0 is fully leased")) instanceof BusyError; // true
 * ```
 */
export function retype(err: unknown): Error {
  if (!(err instanceof NineError)) return err instanceof Error ? err : new NineError("io", String(err));
  return typedError(err);
}

/**
 * The message of anything thrown.
 *
 * @example
 * ```ts
 * messageOf(new Error("boom")); // "boom"
 * ```
 */
export function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/**
 * Why a request was cancelled, as a NineError: the signal's reason when it
 * is one (the server aborts with `closed: request … flushed`), else
 * `closed: request cancelled`.
 *
 * @example
 * ```ts
 * if (ctx.signal.aborted) throw abortReason(ctx.signal);
 * ```
 */
export function abortReason(signal: AbortSignal): Error {
  const reason: unknown = signal.reason;
  return reason instanceof NineError ? reason : new ClosedError("request cancelled");
}

/** Options of `withDeadline`. */
export interface DeadlineOptions<T> {
  /** Stop waiting when it aborts; rejects with `abortReason(signal)`. */
  readonly signal?: AbortSignal;
  /** Stop waiting after this long (none when undefined or 0)… */
  readonly timeoutMs?: number;
  /** …and reject with this error. */
  readonly onTimeout?: () => Error;
  /** Receives a result that arrives after giving up, to release it. */
  readonly abandoned?: (late: T) => void;
}

/**
 * `work`, unless the signal aborts or the time runs out first. The work goes
 * on; a late result goes to `abandoned`.
 *
 * @example
 * ```ts
 * const fid = await withDeadline(openRemote(), { signal: ctx.signal, abandoned: (f) => void f.clunk() });
 * ```
 */
export function withDeadline<T>(work: Promise<T>, options: DeadlineOptions<T>): Promise<T> {
  const { signal, timeoutMs, onTimeout, abandoned } = options;
  return new Promise<T>((resolve, reject) => {
    let done = false;
    let timer: NodeJS.Timeout | undefined;
    const giveUp = (err: Error) => {
      if (done) return;
      done = true;
      cleanup();
      reject(err);
    };
    const onAbort = () => giveUp(abortReason(signal!));
    const cleanup = () => {
      if (timer !== undefined) clearTimeout(timer);
      signal?.removeEventListener("abort", onAbort);
    };
    if (signal?.aborted) return onAbort();
    signal?.addEventListener("abort", onAbort, { once: true });
    if (timeoutMs !== undefined && timeoutMs > 0) timer = setTimeout(() => giveUp(onTimeout?.() ?? new BusyError(`no answer within ${timeoutMs} ms`)), timeoutMs);
    work.then(
      (value) => {
        if (done) return abandoned?.(value);
        done = true;
        cleanup();
        resolve(value);
      },
      (err: unknown) => {
        if (done) return;
        done = true;
        cleanup();
        reject(err instanceof Error ? err : new Error(String(err)));
      },
    );
  });
}
