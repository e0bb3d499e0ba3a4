/**
 * The provider contract: how a file system plugs into NineDoor. The server
 * core knows only these interfaces; providers know nothing about the wire.
 *
 * A provider is a tree of `Node`s. Directories answer `walk` and `list`;
 * files answer `open`, which returns an `OpenFile` bound to one fid. Any
 * method may return a value or a promise (synchronous providers stay fast).
 * Methods throw `NineError`s (see `../errors.ts`); anything else is answered
 * as an `io:` error and logged.
 *
 * Concurrency: the server may call any method of any node concurrently from
 * several sessions. Calls on one `OpenFile` may overlap too (clients pipeline
 * reads and writes); an implementation that needs ordering must serialise
 * itself. Blocking reads must give up promptly when `ctx.signal` aborts
 * (Tflush, disconnect, revocation) by throwing or returning.
 * @module
 */
import type { Qid } from "../wire/types.ts";

/** A value or a promise of it. */
export type MaybePromise<T> = T | Promise<T>;

/** Who is asking: the identity a ticket established at attach. */
export interface Caller {
  /** `queen`, `worker-heartbeat`, `worker-gpu`, `bridge`… */
  readonly role: string;
  /** `queen`, `worker-3`… */
  readonly subject: string;
}

/** What every provider call receives. */
export interface RequestContext {
  readonly caller: Caller;
  /** Aborts when the request is flushed, the session ends or is revoked. */
  readonly signal: AbortSignal;
}

/** How a file is being opened, decoded from either dialect's mode bits. */
export interface OpenFlags {
  readonly read: boolean;
  readonly write: boolean;
  /** OTRUNC / O_TRUNC. Append-only files ignore it. */
  readonly truncate: boolean;
}

/** Metadata a node reports for stat/getattr. */
export interface NodeStat {
  /** Size in bytes; 0 for directories and generated files of unknown size. */
  readonly length: number;
  /** Milliseconds since the epoch. */
  readonly mtimeMs: number;
  readonly atimeMs: number;
  readonly uid: string;
  readonly gid: string;
  /** Who modified it last. */
  readonly muid: string;
}

/** One open instance of a file, bound to a fid until clunk. */
export interface OpenFile {
  /** Read up to `count` bytes at `offset`. An empty result means end of file. */
  read(offset: number, count: number, ctx: RequestContext): MaybePromise<Uint8Array>;
  /** Write `data` at `offset` (ignored by append-only files); returns bytes taken. */
  write(offset: number, data: Uint8Array, ctx: RequestContext): MaybePromise<number>;
  /** Release per-open state. Called exactly once, on clunk or disconnect. */
  close?(): void;
  /** The iounit to advertise; 0 lets the server use msize − IOHDRSZ. */
  readonly iounit?: number;
}

/**
 * A file or directory. `qid.path` is stable for the node's life;
 * `qid.version` bumps on every write.
 */
export interface Node {
  readonly name: string;
  /** Permission bits plus `DirMode.DIR` / `DirMode.APPEND`. */
  readonly mode: number;
  readonly qid: Qid;
  stat(): NodeStat;
  /** Directories: the child called `name` (never `.` or `..`). */
  walk(name: string, ctx: RequestContext): MaybePromise<Node>;
  /** Directories: the children, in a stable order. */
  list(ctx: RequestContext): MaybePromise<readonly Node[]>;
  /** Files: open for reading and/or writing. Directories may be opened for reading only by the server. */
  open(flags: OpenFlags, ctx: RequestContext): MaybePromise<OpenFile>;
}
