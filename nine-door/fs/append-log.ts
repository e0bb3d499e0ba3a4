/**
 * Append-only files: `/log/queen.log`, `/worker/<id>/telemetry`, GPU
 * `lease`/`status`. Writes land at the end whatever their offset; offsets are
 * absolute byte positions in everything ever appended, so a reader's offset
 * keeps meaning the same byte while old lines are dropped for retention.
 * @module
 */
import { DirMode } from "../wire/types.ts";
import { ClosedError, InvalidError, NineError, PermissionError, TooBigError } from "../errors.ts";
import { BaseNode, isPromiseLike, toBytes } from "./base.ts";
import type { NodeOptions } from "./base.ts";
import type { MaybePromise, OpenFile, OpenFlags, RequestContext } from "./node.ts";

const NEWLINE = 0x0a;

/** What `onAppend` listeners receive for each append. */
export interface AppendEvent {
  /** Absolute offset of the first appended byte. */
  readonly offset: number;
  /** The appended bytes (a copy the listener may keep). */
  readonly data: Uint8Array;
  /** The caller's subject for client writes; the owner for `append()`. */
  readonly by: string;
}

/** Checks one client write before it is appended; throw to refuse it. */
export type AppendValidator = (data: Uint8Array, ctx: RequestContext) => MaybePromise<void>;

/** Options of `new AppendLog(name, options)`. */
export interface AppendLogOptions extends NodeOptions {
  /** Clients may open it for writing. Default false: only the owner appends. */
  readonly writable?: boolean;
  /**
   * Bytes kept in memory; beyond it the oldest whole lines are dropped.
   * Default 1 MiB. The newest line is always kept whole, even if longer.
   */
  readonly retainBytes?: number;
  /** Largest single client write; larger ones answer `too big:`. Default: no limit. */
  readonly maxWrite?: number;
  /**
   * A read at or past the end waits for new data instead of returning empty
   * (a tail). It gives up when `ctx.signal` aborts or the log is closed.
   * Default false.
   */
  readonly blockingReads?: boolean;
  /** Runs on every client write (not on `append()`); throw to refuse it. */
  readonly validate?: AppendValidator;
}

/**
 * An append-only file: mode `DirMode.APPEND | perm` (perm `0o444`, or `0o664`
 * when writable), so its qid type is `QidType.APPEND`. Client writes ignore
 * their offset and OTRUNC never truncates. The owner adds data with
 * `append()` and watches with `onAppend()`.
 *
 * Offsets are absolute: `base` is the offset of the oldest byte kept and
 * `end` the offset after the newest; `stat().length` is `end`, so a reader
 * that seeks to the length tails correctly. Retention drops whole lines from
 * the front and advances `base`. A read below `base` (its bytes were dropped)
 * returns data from `base`, and that open file remembers the gap: its later
 * offsets are shifted by the same amount, so a sequential reader (`cat`, a
 * tail that started at 0) sees every retained byte once rather than the
 * same block again and again. An open file that never falls below `base`
 * reads exact absolute offsets.
 *
 * Concurrency: appends are atomic and keep the order in which they were
 * accepted; with an asynchronous `validate`, client writes are validated one
 * at a time and appended in arrival order.
 *
 * @example
 * ```ts
 * const telemetry = new AppendLog("telemetry", {
 *   writable: true, blockingReads: true, retainBytes: 64 * 1024, maxWrite: 4096,
 *   validate: validateJsonLines,
 * });
 * const log = new AppendLog("queen.log");
 * log.append("spawned worker-1 role=heartbeat\n");
 * const stop = log.onAppend(({ offset, data }) => mirror.write(data));
 * ```
 */
export class AppendLog extends BaseNode {
  #buf = new Uint8Array(0);
  #head = 0;
  #tail = 0;
  #base = 0;
  #closed: ClosedError | undefined;
  #pending: Promise<void> | undefined;
  readonly #waiters = new Set<() => void>();
  readonly #listeners = new Set<(event: AppendEvent) => void>();
  readonly #writable: boolean;
  readonly #retain: number;
  readonly #maxWrite: number;
  readonly #blocking: boolean;
  readonly #validate: AppendValidator | undefined;

  constructor(name: string, options: AppendLogOptions = {}) {
    const writable = options.writable === true;
    super(name, { ...options, mode: DirMode.APPEND | (options.perm ?? (writable ? 0o664 : 0o444)) });
    this.#writable = writable;
    this.#retain = positive("retainBytes", options.retainBytes ?? 1 << 20);
    this.#maxWrite = positive("maxWrite", options.maxWrite ?? Number.POSITIVE_INFINITY);
    this.#blocking = options.blockingReads === true;
    this.#validate = options.validate;
  }

  /** Absolute offset of the oldest byte still kept. */
  get base(): number {
    return this.#base;
  }

  /** Absolute offset just past the newest byte (total bytes ever appended). */
  get end(): number {
    return this.#base + (this.#tail - this.#head);
  }

  /** True once `close()` was called. */
  get closed(): boolean {
    return this.#closed !== undefined;
  }

  /**
   * Appends for the owner (no `writable`, `maxWrite` or `validate` checks);
   * returns the absolute offset where the data starts. Throws `closed:` after
   * `close()`.
   *
   * @example
   * ```ts
   * log.append(`revoked ${id}: tick budget exhausted\n`);
   * ```
   */
  append(data: string | Uint8Array): number {
    if (this.#closed !== undefined) throw this.#closed;
    return this.#commit(toBytes(data), undefined);
  }

  /**
   * Calls `listener` after every append (client or owner), synchronously,
   * once the data is readable. Returns the unsubscribe function. A listener
   * that throws is ignored (it cannot fail the writer).
   *
   * @example
   * ```ts
   * const stop = telemetry.onAppend(({ data }) => budget.tick(data));
   * stop();
   * ```
   */
  onAppend(listener: (event: AppendEvent) => void): () => void {
    this.#listeners.add(listener);
    return () => {
      this.#listeners.delete(listener);
    };
  }

  /**
   * Ends the log: blocked and later tail reads at the end fail with
   * `closed: <detail>`, writes and appends too; retained data stays readable.
   *
   * @example
   * ```ts
   * telemetry.close("worker-3 killed");
   * ```
   */
  close(detail = `${this.name} closed`): void {
    if (this.#closed !== undefined) return;
    this.#closed = new ClosedError(detail);
    for (const wake of [...this.#waiters]) wake();
  }

  /**
   * The retained content split into lines (without their newlines); a final
   * unterminated line is included. Meant for tests and diagnostics.
   *
   * @example
   * ```ts
   * log.lines(); // ["spawned worker-1 role=heartbeat"]
   * ```
   */
  lines(): string[] {
    const text = new TextDecoder().decode(this.#buf.subarray(this.#head, this.#tail));
    if (text === "") return [];
    const lines = text.split("\n");
    if (lines[lines.length - 1] === "") lines.pop();
    return lines;
  }

  protected override size(): number {
    return this.end;
  }

  override open(flags: OpenFlags, _ctx: RequestContext): OpenFile {
    this.checkAccess(flags, { read: true, write: this.#writable, ignoreTruncate: true });
    let skew = 0;
    const map = (offset: number): number => {
      let at = offset + skew;
      if (at < this.#base) {
        skew += this.#base - at;
        at = this.#base;
      }
      return at;
    };
    const read = (offset: number, count: number, ctx: RequestContext): MaybePromise<Uint8Array> => {
      const at = map(offset);
      if (at < this.end || count <= 0 || !this.#blocking) return this.#readAt(at, count);
      if (this.#closed !== undefined) throw this.#closed;
      return this.#waitPast(at, ctx.signal).then(() => read(offset, count, ctx));
    };
    return {
      read,
      write: (_offset, data, ctx) => {
        if (!flags.write) throw new PermissionError(`write: ${this.name} is not open for writing`);
        return this.#write(data, ctx);
      },
    };
  }

  #write(data: Uint8Array, ctx: RequestContext): MaybePromise<number> {
    if (this.#closed !== undefined) throw this.#closed;
    if (data.length > this.#maxWrite) {
      throw new TooBigError(`write: ${data.length} bytes to ${this.name}, limit ${this.#maxWrite}`);
    }
    const by = ctx.caller.subject;
    const validate = this.#validate;
    if (validate === undefined) return this.#commit(data, by), data.length;
    if (this.#pending === undefined) {
      const checked = validate(data, ctx);
      if (!isPromiseLike(checked)) return this.#commit(data, by), data.length;
      const copy = data.slice();
      return this.#serial(checked.then(() => this.#commitChecked(copy, by)));
    }
    const copy = data.slice();
    return this.#serial(this.#pending.then(() => validate(copy, ctx)).then(() => this.#commitChecked(copy, by)));
  }

  #commitChecked(data: Uint8Array, by: string): number {
    if (this.#closed !== undefined) throw this.#closed;
    this.#commit(data, by);
    return data.length;
  }

  /** Queues `work` behind earlier asynchronous writes so appends keep arrival order. */
  #serial(work: Promise<number>): Promise<number> {
    const settled = work.then(
      () => undefined,
      () => undefined,
    );
    this.#pending = settled;
    void settled.then(() => {
      if (this.#pending === settled) this.#pending = undefined;
    });
    return work;
  }

  #commit(data: Uint8Array, by: string | undefined): number {
    const offset = this.end;
    if (data.length === 0) return offset;
    this.#reserve(data.length);
    this.#buf.set(data, this.#tail);
    this.#tail += data.length;
    this.#trim();
    this.markWritten(by);
    for (const wake of [...this.#waiters]) wake();
    if (this.#listeners.size > 0) {
      const event: AppendEvent = { offset, data: data.slice(), by: by ?? this.stat().uid };
      for (const listener of [...this.#listeners]) {
        try {
          listener(event);
        } catch {
          // A listener's failure must not fail the append that already happened.
        }
      }
    }
    return offset;
  }

  /**
   * Makes room for `n` more bytes at the tail. A full log holds about
   * `retainBytes`, so its buffer is sized from that rather than doubled past
   * it: below half the retention it doubles; beyond, it grows to 1.25x what
   * is needed, and compacts (moves the kept bytes to the front) while at
   * least 1/8 of it would be free. Doubling past the retention used to leave
   * every full log with up to 2x its retention (1,000 workers' 256 KiB
   * telemetry logs took ~490 MB instead of ~330 MB). Compaction copies
   * at most 8 bytes per byte appended, amortised.
   */
  #reserve(n: number): void {
    if (this.#tail + n <= this.#buf.length) return;
    const used = this.#tail - this.#head;
    const need = used + n;
    const capacity = this.#buf.length;
    if (need <= capacity - (capacity >> 3)) {
      this.#buf.copyWithin(0, this.#head, this.#tail);
    } else {
      const target = capacity * 2 <= this.#retain ? capacity * 2 : need + (need >> 2);
      const grown = new Uint8Array(Math.max(256, target, need));
      grown.set(this.#buf.subarray(this.#head, this.#tail));
      this.#buf = grown;
    }
    this.#head = 0;
    this.#tail = used;
  }

  /**
   * Drops the fewest whole lines from the front that bring the size within
   * `retainBytes`, but never the newest line (complete or not).
   */
  #trim(): void {
    if (this.#tail - this.#head <= this.#retain) return;
    // The newest line starts after the last newline before the final byte.
    const newest = this.#buf.subarray(0, this.#tail - 1).lastIndexOf(NEWLINE) + 1;
    // Cutting after a newline at index p keeps tail - p - 1 bytes: the first
    // newline at or after tail - retain - 1 is the smallest sufficient cut.
    const p = this.#buf.indexOf(NEWLINE, Math.max(this.#head, this.#tail - this.#retain - 1));
    const cut = p >= 0 && p < this.#tail ? Math.min(p + 1, newest) : newest;
    if (cut <= this.#head) return;
    this.#base += cut - this.#head;
    this.#head = cut;
  }

  #readAt(at: number, count: number): Uint8Array {
    const available = this.end - at;
    if (available <= 0 || count <= 0) return new Uint8Array(0);
    const start = this.#head + (at - this.#base);
    return this.#buf.slice(start, start + Math.min(count, available));
  }

  /** Resolves once data exists past `at`; rejects on abort or close. */
  #waitPast(at: number, signal: AbortSignal): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      if (signal.aborted) {
        reject(abortReason(signal));
        return;
      }
      const cleanup = (): void => {
        this.#waiters.delete(wake);
        signal.removeEventListener("abort", onAbort);
      };
      const wake = (): void => {
        if (this.#closed !== undefined) {
          cleanup();
          reject(this.#closed);
        } else if (this.end > at) {
          cleanup();
          resolve();
        }
      };
      const onAbort = (): void => {
        cleanup();
        reject(abortReason(signal));
      };
      this.#waiters.add(wake);
      signal.addEventListener("abort", onAbort, { once: true });
    });
  }
}

/**
 * A ready-made `validate` for telemetry: every write must be one or more
 * complete lines (ending in `\n`), each a JSON object. Refusals are
 * `invalid: …` naming the line.
 *
 * @example
 * ```ts
 * new AppendLog("telemetry", { writable: true, validate: validateJsonLines });
 * // write `{"tick":1}\n` → ok;  write `tick=1\n` → "invalid: telemetry line 1 is not a JSON object"
 * ```
 */
export function validateJsonLines(data: Uint8Array): void {
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(data);
  } catch {
    throw new InvalidError("telemetry is not UTF-8");
  }
  if (!text.endsWith("\n")) throw new InvalidError("telemetry must end with a newline");
  const lines = text.slice(0, -1).split("\n");
  lines.forEach((line, i) => {
    let value: unknown;
    try {
      value = JSON.parse(line);
    } catch {
      value = undefined;
    }
    if (typeof value !== "object" || value === null || Array.isArray(value)) {
      throw new InvalidError(`telemetry line ${i + 1} is not a JSON object`);
    }
  });
}

function positive(option: string, value: number): number {
  if (!(value > 0)) throw new InvalidError(`${option} must be positive, got ${value}`);
  return value;
}

/** The error a cancelled read throws: the abort reason if it is a NineError, else `closed:`. */
function abortReason(signal: AbortSignal): NineError {
  const reason: unknown = signal.reason;
  return reason instanceof NineError ? reason : new ClosedError("read cancelled");
}
