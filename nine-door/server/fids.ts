/**
 * The fid table of one session. A fid names a place in the namespace (node
 * and absolute path), optionally opened. Walks that bind a new fid reserve it
 * first, so requests pipelined behind the walk wait for it instead of failing
 * with "fid not in use" (the client may not have seen Rwalk yet).
 * @module
 */
import { BusyError, InvalidError, NotFoundError } from "../errors.ts";
import type { Node, OpenFile, OpenFlags } from "../fs/node.ts";
import type { Attachment } from "./types.ts";

/** What a bound fid refers to. */
export interface Fid {
  readonly id: number;
  node: Node;
  /** Absolute, normalised path of `node` in the session's namespace. */
  path: string;
  /** The attach this fid descends from: identity, policy, budget. */
  readonly attachment: Attachment;
  open?: OpenFile;
  openFlags?: OpenFlags;
  /** Directory read state: a snapshot taken at offset 0 (stable offsets). */
  dir?: DirCursor;
}

/** A snapshot of a directory listing and how far a reader has got. */
export interface DirCursor {
  entries: readonly Node[];
  /** 9P2000 reads: byte offset reached and the entry index at that offset. */
  byteOffset: number;
  index: number;
}

type Slot = Fid | Promise<Fid | undefined>;

/** The fids of one session, with a limit on how many may exist. */
export class FidTable {
  readonly #slots = new Map<number, Slot>();
  /** The fid behind each pending `hold`, once known. */
  readonly #holds = new WeakMap<Promise<Fid | undefined>, Fid>();
  readonly #max: number;

  constructor(max: number) {
    this.#max = max;
  }

  get size(): number {
    return this.#slots.size;
  }

  /** The fid, waiting for a pending walk to settle. Throws when not in use. */
  async get(id: number): Promise<Fid> {
    const slot = this.#slots.get(id);
    const fid = slot instanceof Promise ? await slot : slot;
    if (fid === undefined) throw new NotFoundError(`fid ${id} not in use`, { errno: 9 });
    return fid;
  }

  /** The fid if bound now (no waiting); for synchronous fast paths. */
  peek(id: number): Fid | undefined {
    const slot = this.#slots.get(id);
    return slot instanceof Promise ? undefined : slot;
  }

  /** Whether `id` still names `fid`, bound now or held by a pending request. */
  bound(id: number, fid: Fid): boolean {
    const slot = this.#slots.get(id);
    return slot === fid || (slot instanceof Promise && this.#holds.get(slot) === fid);
  }

  has(id: number): boolean {
    return this.#slots.has(id);
  }

  /** Refuses an id in use and enforces the table limit. */
  checkFree(id: number): void {
    if (this.#slots.has(id)) throw new InvalidError(`fid ${id} already in use`);
    if (this.#slots.size >= this.#max) throw new BusyError(`too many fids (limit ${this.#max})`);
  }

  /** Binds `fid` now. */
  set(fid: Fid): void {
    this.#slots.set(fid.id, fid);
  }

  /**
   * Reserves `id` until `work` settles: bound to its result, or freed when it
   * yields undefined or throws.
   */
  reserve(id: number, work: Promise<Fid | undefined>): void {
    const settled = work.then(
      (fid) => {
        if (this.#slots.get(id) === settled) {
          if (fid) this.#slots.set(id, fid);
          else this.#slots.delete(id);
        }
        return fid;
      },
      () => {
        if (this.#slots.get(id) === settled) this.#slots.delete(id);
        return undefined;
      },
    );
    this.#slots.set(id, settled);
  }

  /**
   * Makes requests on `id` wait until `work` settles (a walk of a fid onto
   * itself); the fid stays bound, whether `work` succeeds or not. Does
   * nothing when `id` is not in use.
   */
  hold(id: number, work: Promise<unknown>): void {
    const prev = this.#slots.get(id);
    if (prev === undefined) return;
    const settled: Promise<Fid | undefined> = Promise.resolve(prev).then((fid) => {
      if (fid) this.#holds.set(settled, fid);
      return work.then(
        () => fid,
        () => fid,
      );
    });
    void settled.then((fid) => {
      if (this.#slots.get(id) !== settled) return;
      if (fid) this.#slots.set(id, fid);
      else this.#slots.delete(id);
    });
    this.#slots.set(id, settled);
  }

  /** Unbinds and closes the fid's open file, if any. */
  delete(id: number): Fid | undefined {
    const slot = this.#slots.get(id);
    this.#slots.delete(id);
    if (slot === undefined || slot instanceof Promise) return undefined;
    closeFid(slot);
    return slot;
  }

  /** Closes every fid (disconnect, Tversion reset). */
  clear(): void {
    for (const slot of this.#slots.values()) {
      if (slot instanceof Promise) void slot.then((fid) => fid && closeFid(fid));
      else closeFid(slot);
    }
    this.#slots.clear();
  }
}

function closeFid(fid: Fid): void {
  const open = fid.open;
  fid.open = undefined;
  fid.dir = undefined;
  try {
    open?.close?.();
  } catch {
    // A provider's close failing must not keep other fids open.
  }
}
