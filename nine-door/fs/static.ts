/**
 * Files whose content is held in memory: fixed bytes or text, optionally
 * writable (a small scratch or config file).
 * @module
 */
import { PermissionError, TooBigError } from "../errors.ts";
import { BaseNode, readAt, toBytes } from "./base.ts";
import type { NodeOptions } from "./base.ts";
import type { OpenFile, OpenFlags, RequestContext } from "./node.ts";

/** Options of `new StaticFile(name, content, options)`. */
export interface StaticFileOptions extends NodeOptions {
  /** Clients may open it for writing (and OTRUNC). Default false. */
  readonly writable?: boolean;
  /** Largest size a client write may grow it to; default 1 MiB. */
  readonly maxBytes?: number;
}

/**
 * A file holding fixed bytes (or UTF-8 text). Read-only unless
 * `options.writable` (perm `0o444`, or `0o664` when writable). Reads take
 * bytes at the offset; a write at an offset past the end fills the gap with
 * zeros; OTRUNC empties it. Every write bumps the version.
 *
 * Concurrency: reads and writes are synchronous, so each sees a whole
 * previous write.
 *
 * @example
 * ```ts
 * const boot = new StaticFile("boot", "cohesix 0.1 board=aarch64-virt\n");
 * const motd = new StaticFile("motd", "", { writable: true });
 * motd.set("maintenance at 02:00\n"); // owner update, bumps the version
 * ```
 */
export class StaticFile extends BaseNode {
  #data: Uint8Array;
  readonly #writable: boolean;
  readonly #maxBytes: number;

  constructor(name: string, content: string | Uint8Array = "", options: StaticFileOptions = {}) {
    const writable = options.writable === true;
    super(name, { ...options, mode: options.perm ?? (writable ? 0o664 : 0o444) });
    this.#data = toBytes(content);
    this.#writable = writable;
    this.#maxBytes = options.maxBytes ?? 1 << 20;
  }

  /** The current content (a view: do not modify). */
  get bytes(): Uint8Array {
    return this.#data;
  }

  /** The current content as UTF-8 text. */
  get text(): string {
    return new TextDecoder().decode(this.#data);
  }

  /**
   * Replaces the content (the owner's update, not subject to `writable` or
   * `maxBytes`) and bumps the version.
   *
   * @example
   * ```ts
   * state.set("ONLINE\n");
   * ```
   */
  set(content: string | Uint8Array): void {
    this.#data = toBytes(content);
    this.markWritten();
  }

  protected override size(): number {
    return this.#data.length;
  }

  override open(flags: OpenFlags, ctx: RequestContext): OpenFile {
    this.checkAccess(flags, { read: true, write: this.#writable });
    if (flags.truncate && this.#data.length > 0) {
      this.#data = new Uint8Array(0);
      this.markWritten(ctx.caller.subject);
    }
    return {
      // A read-only file's bytes change only through set(), which swaps in a
      // new array, so a view stays valid while the reply is sent: no copy
      // (bulk reads, bench/9p.ts). A writable file's bytes change in place.
      read: (offset, count) => {
        const view = readAt(this.#data, offset, count);
        return this.#writable ? view.slice() : view;
      },
      write: (offset, data, wctx) => {
        if (!flags.write) throw new PermissionError(`write: ${this.name} is not open for writing`);
        return this.#write(offset, data, wctx);
      },
    };
  }

  #write(offset: number, data: Uint8Array, ctx: RequestContext): number {
    const end = offset + data.length;
    if (end > this.#maxBytes) {
      throw new TooBigError(`write: ${this.name} would grow to ${end} bytes, limit ${this.#maxBytes}`);
    }
    if (end > this.#data.length) {
      const grown = new Uint8Array(end);
      grown.set(this.#data);
      this.#data = grown;
    }
    this.#data.set(data, offset);
    this.markWritten(ctx.caller.subject);
    return data.length;
  }
}
