/**
 * Embeddable defaults for providers, in the manner of hugelgupf/p9's
 * `templatefs`: extend `BaseNode`, override what the node supports, and the
 * rest answers the standard refusal ("not a directory", "is a directory").
 * @module
 */
import type { Qid } from "../wire/types.ts";
import { DirMode } from "../wire/types.ts";
import { Errno, InvalidError, NotFoundError, NotSupportedError, PermissionError } from "../errors.ts";
import type { MaybePromise, Node, NodeStat, OpenFile, OpenFlags, RequestContext } from "./node.ts";
import { nextQidPath, qidTypeOf } from "./qid.ts";

/**
 * The owner every node reports unless told otherwise (uid, gid and muid).
 *
 * @example
 * ```ts
 * new StaticFile("boot", "").stat().uid === DEFAULT_OWNER; // true
 * ```
 */
export const DEFAULT_OWNER = "cohesix";

/** Options every provider accepts. */
export interface NodeOptions {
  /** Permission bits (e.g. `0o444`); each provider has its own default. */
  readonly perm?: number;
  /** Defaults to `"cohesix"`. */
  readonly uid?: string;
  /** Defaults to `"cohesix"`. */
  readonly gid?: string;
  /**
   * The mtime (and atime) reported until the first write. Defaults to the
   * creation time; pass a fixed value where output must be reproducible.
   */
  readonly mtimeMs?: number;
}

/** What `BaseNode`'s constructor takes: the common options plus the full mode. */
export interface BaseNodeInit extends NodeOptions {
  /** Permission bits plus `DirMode.DIR` / `DirMode.APPEND`; wins over `perm`. */
  readonly mode: number;
}

/**
 * Throws unless `name` can be one element of a path: not empty, no `/`, not
 * `.` or `..`. The root may be called `/`.
 *
 * @example
 * ```ts
 * checkName("telemetry"); // ok
 * checkName("a/b");       // throws InvalidError "invalid: bad name: \"a/b\""
 * ```
 */
export function checkName(name: string, options?: { allowRoot?: boolean }): void {
  if (options?.allowRoot === true && name === "/") return;
  if (name === "" || name === "." || name === ".." || name.includes("/") || name.includes("\0")) {
    throw new InvalidError(`bad name: ${JSON.stringify(name)}`);
  }
}

/**
 * UTF-8 encodes a string; passes bytes through unchanged.
 *
 * @example
 * ```ts
 * toBytes("hi\n"); // Uint8Array [104, 105, 10]
 * ```
 */
export function toBytes(content: string | Uint8Array): Uint8Array {
  return typeof content === "string" ? new TextEncoder().encode(content) : content;
}

/**
 * Up to `count` bytes of `bytes` starting at `offset`: empty past the end.
 * The result is a view; copy it if `bytes` may change before it is sent.
 *
 * @example
 * ```ts
 * readAt(toBytes("hello"), 3, 10); // "lo"
 * readAt(toBytes("hello"), 9, 10); // empty
 * ```
 */
export function readAt(bytes: Uint8Array, offset: number, count: number): Uint8Array {
  if (offset >= bytes.length || count <= 0) return new Uint8Array(0);
  return bytes.subarray(offset, Math.min(bytes.length, offset + count));
}

/**
 * True for anything with a `then` method (a promise from a handler), so
 * synchronous providers can stay on a synchronous path.
 *
 * @example
 * ```ts
 * const r = handler(cmd, ctx);
 * return isPromiseLike(r) ? r.then(finish) : finish(r);
 * ```
 */
export function isPromiseLike<T>(value: MaybePromise<T>): value is Promise<T> {
  return typeof (value as { then?: unknown } | null)?.then === "function";
}

/**
 * The defaults every provider extends. A node gets a unique, stable
 * `qid.path` at construction and a `version` that `markWritten()` bumps;
 * `qid.version` is `version >>> 0`. `walk`/`list` on a file answer
 * `invalid: not a directory` (ENOTDIR); `open` on a directory answers
 * `invalid: is a directory` (EISDIR) — the server reads directories itself
 * through `list`. `stat()` reports uid/gid/muid `cohesix` and an mtime that
 * only a write changes.
 *
 * Concurrency: these defaults keep no state besides version and times; a
 * subclass that needs ordering must serialise itself.
 *
 * @example
 * ```ts
 * class Uptime extends BaseNode {
 *   constructor() { super("uptime", { mode: 0o444 }); }
 *   override open(): OpenFile {
 *     const text = toBytes(`${process.uptime()}\n`);
 *     return { read: (offset, count) => readAt(text, offset, count), write: () => { throw new PermissionError("uptime is read-only"); } };
 *   }
 * }
 * ```
 */
export abstract class BaseNode implements Node {
  readonly name: string;
  readonly mode: number;
  readonly #path: bigint;
  #version = 0;
  #mtimeMs: number;
  readonly #uid: string;
  readonly #gid: string;
  #muid: string;

  constructor(name: string, init: BaseNodeInit) {
    checkName(name, { allowRoot: true });
    this.name = name;
    this.mode = init.mode >>> 0;
    this.#path = nextQidPath();
    this.#mtimeMs = init.mtimeMs ?? Date.now();
    this.#uid = init.uid ?? DEFAULT_OWNER;
    this.#gid = init.gid ?? DEFAULT_OWNER;
    this.#muid = this.#uid;
  }

  /** Bumped by every write; `qid.version` is this value `>>> 0`. */
  get version(): number {
    return this.#version;
  }

  /** True when the mode carries `DirMode.DIR`. */
  get isDirectory(): boolean {
    return (this.mode & DirMode.DIR) !== 0;
  }

  get qid(): Qid {
    return { type: qidTypeOf(this.mode), version: this.#version >>> 0, path: this.#path };
  }

  stat(): NodeStat {
    return {
      length: this.size(),
      mtimeMs: this.#mtimeMs,
      atimeMs: this.#mtimeMs,
      uid: this.#uid,
      gid: this.#gid,
      muid: this.#muid,
    };
  }

  walk(name: string, _ctx: RequestContext): MaybePromise<Node> {
    if (this.isDirectory) throw new NotFoundError(name);
    throw new InvalidError(`not a directory: ${this.name}`, { errno: Errno.ENOTDIR });
  }

  list(_ctx: RequestContext): MaybePromise<readonly Node[]> {
    if (this.isDirectory) return [];
    throw new InvalidError(`not a directory: ${this.name}`, { errno: Errno.ENOTDIR });
  }

  open(_flags: OpenFlags, _ctx: RequestContext): MaybePromise<OpenFile> {
    if (this.isDirectory) throw new InvalidError(`is a directory: ${this.name}`, { errno: Errno.EISDIR });
    throw new NotSupportedError(`open: ${this.name}`);
  }

  /** The length `stat()` reports; 0 unless a subclass knows better. */
  protected size(): number {
    return 0;
  }

  /**
   * Records a write: bumps `version`, sets mtime to now and muid to `by`
   * (usually `ctx.caller.subject`; the owner when omitted).
   */
  protected markWritten(by?: string): void {
    this.#version += 1;
    this.#mtimeMs = Date.now();
    this.#muid = by ?? this.#uid;
  }

  /**
   * Throws `PermissionError` when `flags` ask for more than the node allows.
   * OTRUNC counts as writing unless `ignoreTruncate` (append-only files).
   */
  protected checkAccess(flags: OpenFlags, allowed: { read: boolean; write: boolean; ignoreTruncate?: boolean }): void {
    if (flags.read && !allowed.read) throw new PermissionError(`open for reading: ${this.name} is write-only`);
    const writes = flags.write || (flags.truncate && allowed.ignoreTruncate !== true);
    if (writes && !allowed.write) throw new PermissionError(`open for writing: ${this.name} is read-only`);
  }
}
