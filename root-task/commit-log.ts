/**
 * The root task's crash-safe, hash-chained commit log (DESIGN §7): every
 * state change is one record in `DIR/commits.log`, acknowledged only once it
 * is durable. The frame format and the torn-tail rule live in
 * `commit-log-format.ts`; the single-writer lock in `commit-log-lock.ts`;
 * the offline `verifyLog` / `showLog` in `commit-log-tools.ts`.
 *
 * - **Open** verifies the whole log (checksums, HMAC, seq, chain), cuts a
 *   torn tail (truncate + fsync, with an audit line) and refuses any other
 *   damage with a {@link LogCorruptionError} naming record and offset.
 * - **Append** assigns the seq at once and resolves after fdatasync. Group
 *   commit: while one batch is being written and synced, new appends queue
 *   up and go out together as the next batch (one `write`, one fsync), in
 *   seq order. A batch only starts after the previous one's fsync returned,
 *   which is what lets the scanner tell a torn tail from corruption.
 * - **Failure**: if a write or fsync fails, the batch and everything queued
 *   behind it is rejected and the log refuses further appends (the file's
 *   state is unknown after a failed fsync). It heals by itself: a recovery
 *   loop with backoff reopens the file, cuts it back to the end of the last
 *   durable record (the failed batch may have left a torn tail) and syncs;
 *   once that works, appends are accepted again. `onHealth` hears both
 *   edges (a full disk that is freed recovers without a restart).
 *
 * @example
 * ```ts
 * import { CommitLog, replay } from "./commit-log.ts";
 * const log = await CommitLog.open("state", { key: bootLogKey, onAudit: (l) => audit.push(l) });
 * const state = replay(log.recovered, genesis, applyCommit);
 * const rec = await log.append("spawn", { worker: "worker-1", kind: "heartbeat" });
 * await log.close();
 * ```
 * @module
 */
import { fdatasync, writeSync } from "node:fs";
import { mkdir, open, readFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { ClosedError, InvalidError, NineError } from "../nine-door/index.ts";
import { acquireLogLock, type LogLock } from "./commit-log-lock.ts";
import {
  type CommitKind,
  type CommitRecord,
  type TornTail,
  HASH_BYTES,
  checkKind,
  encodeBody,
  encodeFrame,
  hex,
  scanLog,
} from "./commit-log-format.ts";

/** Log file name inside the state directory. */
export const LOG_FILE = "commits.log";
/** Shortest accepted HMAC key. */
export const MIN_LOG_KEY_BYTES = 16;

/**
 * The file operations the log performs while running, so tests can count
 * fsyncs or inject failures. Node's `FileHandle` fits {@link CommitLogFile};
 * the real layer ({@link nodeCommitLogFs}) writes synchronously and syncs
 * on the thread pool.
 *
 * @example
 * ```ts
 * let syncs = 0;
 * const fs: CommitLogFs = { ...nodeCommitLogFs, openFile: async (p, f) => {
 *   const h = await nodeCommitLogFs.openFile(p, f);
 *   return { ...h, write: h.write.bind(h), close: h.close.bind(h), truncate: h.truncate.bind(h),
 *            datasync: () => { syncs++; return h.datasync(); } };
 * } };
 * ```
 */
export interface CommitLogFs {
  openFile(path: string, flags: "r+" | "wx"): Promise<CommitLogFile>;
  /** fsync a directory so a newly created entry in it survives power loss. */
  syncDir(path: string): Promise<void>;
}

/** An open log file: positional write, fdatasync, truncate, close. */
export interface CommitLogFile {
  write(buffer: Uint8Array, offset: number, length: number, position: number): Promise<{ bytesWritten: number }>;
  datasync(): Promise<void>;
  truncate(length: number): Promise<void>;
  close(): Promise<void>;
}

/**
 * The real file system.
 *
 * @example
 * ```ts
 * await CommitLog.open(dir, { key, fs: nodeCommitLogFs });
 * ```
 */
export const nodeCommitLogFs: CommitLogFs = {
  async openFile(path, flags) {
    const h = await open(path, flags, 0o600);
    return {
      // The write goes to the page cache on this thread (microseconds for
      // a batch) instead of a thread-pool round trip: only the fdatasync,
      // which waits for the disk, takes one. A commit alone in the queue
      // thus costs one hop, as a bare write + fdatasync costs two.
      write(buffer, offset, length, position) {
        try {
          return Promise.resolve({ bytesWritten: writeSync(h.fd, buffer, offset, length, position) });
        } catch (err) {
          return Promise.reject(err);
        }
      },
      datasync: () => new Promise<void>((resolve, reject) => fdatasync(h.fd, (err) => (err ? reject(err) : resolve()))),
      truncate: (length) => h.truncate(length),
      close: () => h.close(),
    };
  },
  async syncDir(path) {
    const h = await open(path, "r");
    try {
      await h.sync();
    } finally {
      await h.close();
    }
  },
};

/** Options of {@link CommitLog.open}. */
export interface CommitLogOptions {
  /** HMAC key (at least 16 bytes); the root task derives it from its boot key. */
  key: Uint8Array;
  /** Receives audit lines, e.g. `commit log: cut torn tail at offset N (M bytes)`. */
  onAudit?: (line: string) => void;
  /** Clock for `ts_ms`; defaults to `Date.now`. */
  clock?: () => number;
  /** File layer; defaults to {@link nodeCommitLogFs}. */
  fs?: CommitLogFs;
  /** Most records written in one batch (default 4096). */
  maxBatchRecords?: number;
  /** Told the failure when appends start failing, and `undefined` once they work again. */
  onHealth?: (failure: string | undefined) => void;
  /** Backoff of the recovery loop after a failure: first and longest wait, ms (default 100 and 5,000). */
  recovery?: { readonly minDelayMs?: number; readonly maxDelayMs?: number };
}

/** Counters of a running log. */
export interface CommitLogStats {
  readonly appends: number;
  readonly batches: number;
  readonly syncs: number;
}

interface Pending {
  seq: number;
  ts_ms: number;
  kind: CommitKind;
  body: unknown;
  bodyBytes: Uint8Array;
  resolve: (r: CommitRecord) => void;
  reject: (e: unknown) => void;
}

/**
 * An open commit log. One writer per directory, across processes.
 *
 * @example
 * ```ts
 * const log = await CommitLog.open("state", { key });
 * for (const r of log.recovered) apply(r);
 * await log.append("kill", { worker: "worker-1" });
 * ```
 */
export class CommitLog {
  readonly #dir: string;
  readonly #key: Uint8Array;
  readonly #clock: () => number;
  readonly #maxBatch: number;
  #file: CommitLogFile;
  readonly #fs: CommitLogFs;
  readonly #onAudit: ((line: string) => void) | undefined;
  readonly #onHealth: ((failure: string | undefined) => void) | undefined;
  readonly #recoveryMs: { min: number; max: number };
  #recoveryTimer: NodeJS.Timeout | undefined;
  #recovering: Promise<void> | undefined;
  #recoveryAttempts = 0;
  readonly #lock: LogLock;
  readonly #recovered: readonly CommitRecord[];
  readonly #tornTail: TornTail | undefined;
  #queue: Pending[] = [];
  #flushing: Promise<void> | undefined;
  #size: number;
  #head: Uint8Array;
  #nextSeq: number;
  #durableSeq: number;
  #closed = false;
  #failed: NineError | undefined;
  #stats = { appends: 0, batches: 0, syncs: 0 };

  private constructor(init: {
    dir: string;
    options: CommitLogOptions;
    file: CommitLogFile;
    lock: LogLock;
    recovered: readonly CommitRecord[];
    tornTail: TornTail | undefined;
    size: number;
  }) {
    this.#dir = init.dir;
    this.#key = init.options.key;
    this.#clock = init.options.clock ?? Date.now;
    this.#maxBatch = Math.max(1, init.options.maxBatchRecords ?? 4096);
    this.#file = init.file;
    this.#fs = init.options.fs ?? nodeCommitLogFs;
    this.#onAudit = init.options.onAudit;
    this.#onHealth = init.options.onHealth;
    this.#recoveryMs = { min: init.options.recovery?.minDelayMs ?? 100, max: init.options.recovery?.maxDelayMs ?? 5000 };
    this.#lock = init.lock;
    this.#recovered = init.recovered;
    this.#tornTail = init.tornTail;
    this.#size = init.size;
    const last = init.recovered.at(-1);
    this.#head = last?.hash ?? new Uint8Array(HASH_BYTES);
    this.#nextSeq = (last?.seq ?? 0) + 1;
    this.#durableSeq = last?.seq ?? 0;
  }

  /**
   * Opens (creating if needed) the log in `dir`: takes the lock, verifies,
   * cuts a torn tail, and returns the log with its recovered records.
   * Throws LogCorruptionError on damage that is not a torn tail, BusyError
   * when another live process holds the directory.
   *
   * @example
   * ```ts
   * const log = await CommitLog.open("state", { key, onAudit: console.log });
   * console.log(`replaying ${log.recovered.length} records`);
   * ```
   */
  static async open(dir: string, options: CommitLogOptions): Promise<CommitLog> {
    checkKey(options.key);
    const fs = options.fs ?? nodeCommitLogFs;
    const abs = resolve(dir);
    await mkdir(abs, { recursive: true });
    const lock = await acquireLogLock(abs, options.onAudit ? { onAudit: options.onAudit } : {});
    try {
      const path = join(abs, LOG_FILE);
      const bytes = await readFile(path).catch((err: NodeJS.ErrnoException) => {
        if (err.code === "ENOENT") return undefined;
        throw err;
      });
      let file: CommitLogFile;
      let size = 0;
      let recovered: CommitRecord[] = [];
      let tornTail: TornTail | undefined;
      if (bytes === undefined) {
        file = await fs.openFile(path, "wx");
        await fs.syncDir(abs);
      } else {
        const scan = scanLog(bytes, { key: options.key });
        if (scan.error) throw scan.error;
        recovered = scan.records;
        size = scan.end;
        tornTail = scan.tornTail;
        file = await fs.openFile(path, "r+");
        if (tornTail) {
          await file.truncate(scan.end);
          await file.datasync();
          options.onAudit?.(`commit log: cut torn tail at offset ${tornTail.offset} (${tornTail.bytes} bytes): ${tornTail.reason}`);
        }
      }
      return new CommitLog({ dir: abs, options, file, lock, recovered, tornTail, size });
    } catch (err) {
      await lock.release();
      throw err;
    }
  }

  /** The records found at open, in order, for replay. Not updated by appends. */
  get recovered(): readonly CommitRecord[] {
    return this.#recovered;
  }

  /** The torn tail cut at open, if there was one. */
  get tornTail(): TornTail | undefined {
    return this.#tornTail;
  }

  /** Absolute path of the state directory. */
  get dir(): string {
    return this.#dir;
  }

  /** Seq of the last durable record (0 for an empty log). */
  get lastSeq(): number {
    return this.#durableSeq;
  }

  /** Hash of the last durable record, hex (zeros for an empty log). */
  get headHash(): string {
    return hex(this.#head);
  }

  /** Why appends fail now (the write that failed), or undefined while they work. */
  get failure(): string | undefined {
    return this.#failed?.message;
  }

  /** Append, batch and fsync counters since open. */
  get stats(): CommitLogStats {
    return { ...this.#stats };
  }

  /** Seq of the last append accepted (durable or not); equals `lastSeq` when nothing is in flight. */
  get assignedSeq(): number {
    return this.#nextSeq - 1;
  }

  /**
   * Appends one record and resolves once it is durable. The seq is assigned
   * now, so records commit in the order `append` was called.
   *
   * @example
   * ```ts
   * const r = await log.append("budget", { ops: 100, ticks: 5 });
   * console.log(`committed ${r.seq}`);
   * ```
   */
  append<B>(kind: CommitKind, body: B): Promise<CommitRecord<B>> {
    if (this.#closed) return Promise.reject(new ClosedError(`commit log: ${this.#dir} is closed`));
    if (this.#failed) return Promise.reject(this.#failed);
    try {
      checkKind(kind);
      const bodyBytes = encodeBody(body);
      const seq = this.#nextSeq++;
      const ts_ms = this.#clock();
      this.#stats.appends += 1;
      return new Promise<CommitRecord<B>>((resolveRecord, reject) => {
        this.#queue.push({ seq, ts_ms, kind, body, bodyBytes, resolve: resolveRecord as (r: CommitRecord) => void, reject });
        this.#flushing ??= this.#flushLoop();
      });
    } catch (err) {
      return Promise.reject(err);
    }
  }

  /**
   * Waits for every queued append to be durable, then closes the file and
   * releases the lock. Later appends fail with `closed:`.
   *
   * @example
   * ```ts
   * await log.close();
   * ```
   */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    clearTimeout(this.#recoveryTimer);
    await this.#flushing;
    await this.#recovering;
    try {
      await this.#file.close();
    } finally {
      await this.#lock.release();
    }
  }

  async #flushLoop(): Promise<void> {
    try {
      while (this.#queue.length > 0) {
        const batch = this.#queue.splice(0, this.#maxBatch);
        await this.#writeBatch(batch);
      }
    } finally {
      this.#flushing = undefined; // no await between the empty check and here
    }
  }

  async #writeBatch(batch: Pending[]): Promise<void> {
    if (this.#failed) {
      for (const p of batch) p.reject(this.#failed);
      return;
    }
    const first = batch[0]!.seq;
    const frames: Uint8Array[] = [];
    const done: CommitRecord[] = [];
    let prev = this.#head;
    let offset = this.#size;
    for (const p of batch) {
      const { frame, hash } = encodeFrame(
        { seq: p.seq, prev, ts_ms: p.ts_ms, kind: p.kind, batch: first, bodyBytes: p.bodyBytes },
        { key: this.#key },
      );
      frames.push(frame);
      done.push({ seq: p.seq, prev, ts_ms: p.ts_ms, kind: p.kind, body: p.body, batch: first, hash, offset });
      prev = hash;
      offset += frame.length;
    }
    const buf = frames.length === 1 ? frames[0]! : Buffer.concat(frames);
    try {
      let written = 0;
      while (written < buf.length) {
        const { bytesWritten } = await this.#file.write(buf, written, buf.length - written, this.#size + written);
        if (bytesWritten <= 0) throw new Error("short write");
        written += bytesWritten;
      }
      await this.#file.datasync();
      this.#stats.syncs += 1;
      this.#stats.batches += 1;
    } catch (err) {
      this.#failed = new NineError("io", `commit log: write of records ${first}..${batch.at(-1)!.seq} failed, log needs reopening: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
      for (const p of batch) p.reject(this.#failed);
      for (const p of this.#queue.splice(0)) p.reject(this.#failed);
      // Rejected records never happened: the next one follows the last durable.
      this.#nextSeq = this.#durableSeq + 1;
      this.#onHealth?.(this.#failed.message);
      this.#scheduleRecovery();
      return;
    }
    this.#size += buf.length;
    this.#head = prev;
    this.#durableSeq = batch.at(-1)!.seq;
    batch.forEach((p, i) => p.resolve(done[i]!));
  }

  #scheduleRecovery(): void {
    if (this.#closed || this.#recoveryTimer) return;
    const delay = backoff(this.#recoveryAttempts, this.#recoveryMs);
    this.#recoveryTimer = setTimeout(() => {
      this.#recoveryTimer = undefined;
      this.#recovering = this.#recover().finally(() => {
        this.#recovering = undefined;
      });
    }, delay);
    this.#recoveryTimer.unref();
  }

  /**
   * One recovery attempt: reopen the file, cut it back to the end of the
   * last durable record (a torn tail of the failed batch), sync. On success
   * appends work again; on failure the next attempt waits longer.
   */
  async #recover(): Promise<void> {
    if (this.#closed || !this.#failed) return;
    this.#recoveryAttempts++;
    let file: CommitLogFile | undefined;
    try {
      file = await this.#fs.openFile(join(this.#dir, LOG_FILE), "r+");
      await file.truncate(this.#size);
      await file.datasync();
    } catch (err) {
      await file?.close().catch(() => undefined);
      void err;
      this.#scheduleRecovery();
      return;
    }
    await this.#file.close().catch(() => undefined);
    this.#file = file;
    const attempts = this.#recoveryAttempts;
    this.#recoveryAttempts = 0;
    this.#failed = undefined;
    this.#onAudit?.(`commit log: recovered after ${attempts} attempt(s): reopened, cut back to offset ${this.#size} (record ${this.#durableSeq})`);
    this.#onHealth?.(undefined);
  }
}

/** Backoff for the next recovery attempt: doubling from min to max. */
function backoff(attempt: number, ms: { min: number; max: number }): number {
  return Math.min(ms.max, ms.min * 2 ** Math.min(attempt, 20));
}

function checkKey(key: Uint8Array): void {
  if (!(key instanceof Uint8Array) || key.length < MIN_LOG_KEY_BYTES) {
    throw new InvalidError(`commit log: key must be at least ${MIN_LOG_KEY_BYTES} bytes`);
  }
}
