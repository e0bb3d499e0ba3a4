/**
 * Remote mounts: a subtree served by another 9P server, reached through the
 * client library and grafted into the local namespace (the host GPU bridge
 * mounted at `/gpu`).
 *
 * Decisions (see also docs/decisions.md, "Remote mounts"):
 * - **No remote fid per node.** The `Node` contract has no "forget" call, so
 *   a node handed to the server may be dropped at any time without notice.
 *   Each node therefore remembers only its remote path; `walk`, `list` and
 *   `stat` walk a fresh fid from the mount's attach root, ask, and clunk it.
 *   Only an `OpenFile` owns a remote fid, and its `close()` clunks it.
 * - **`stat()` is a snapshot.** The contract's `stat()` is synchronous, so a
 *   node carries the remote metadata fetched when it was walked or listed
 *   (Tstat / Tgetattr); every walk fetches it afresh, and a write through an
 *   open file refreshes it (so `qid.version` follows the remote's).
 * - **Qids live in a space of their own:** bit 63 set, a per-mount number in
 *   bits 48–62, the remote `qid.path` in bits 0–46 (larger remote paths are
 *   folded through a per-mount table, marked by bit 47). Local qid paths come
 *   from a counter and never reach bit 63. `qid.type` and `qid.version` pass
 *   through.
 * - **Unreachable remote = `busy: <mount> unavailable: <reason>`** (EBUSY in
 *   9P2000.L) for walk, list and open: the condition is transient and worth
 *   retrying, unlike `closed:`, which workers read as revocation. The first
 *   connection gets `connectTimeoutMs` to come up; once an attempt has failed,
 *   requests answer at once instead of waiting. An open file whose connection
 *   was lost answers `closed: <mount>: remote file lost: …` (its remote fid is
 *   gone for good: walk and open again).
 * - **Remote errors keep their class**: `busy:` from the remote reaches the
 *   local client as `busy:` (typed as `BusyError` and so on).
 * @module
 */
import { DirMode, GETATTR_BASIC, QidType, unpackStats, type Qid } from "../wire/index.ts";
import { ClosedError, Errno, InvalidError, NotFoundError } from "../errors.ts";
import type { Fid, OpenAccess } from "../client/client.ts";
import { BaseNode, DEFAULT_OWNER, checkName } from "./base.ts";
import type { NodeOptions } from "./base.ts";
import type { MaybePromise, Node, NodeStat, OpenFile, OpenFlags, RequestContext } from "./node.ts";
import {
  RemoteLink,
  UnavailableError,
  abortReason,
  messageOf,
  retype,
  withDeadline,
  type RemoteLinkOptions,
  type RemoteState,
  type StateListener,
  type Unsubscribe,
} from "./remote-link.ts";

export type { RemoteState, Unsubscribe } from "./remote-link.ts";

/** Options of `new RemoteMount(name, options)`. */
export interface RemoteMountOptions extends NodeOptions, RemoteLinkOptions {
  /** How long walk, list and open wait for the remote's answer. Default 10 000 ms. */
  readonly requestTimeoutMs?: number;
}

/** Remote metadata of one file, dialect-neutral. */
interface RemoteInfo {
  readonly qid: Qid;
  /** 9P2000 mode bits: permissions plus DirMode.DIR / APPEND, matching the qid type. */
  readonly mode: number;
  readonly stat: NodeStat;
}

const DEFAULT_REQUEST_TIMEOUT_MS = 10_000;
/** Walks done at once when a 9P2000.L listing fetches each entry's attributes. */
const LIST_CONCURRENCY = 16;

const REMOTE_BIT = 1n << 63n;
const FOLDED_BIT = 1n << 47n;
const DIRECT_MAX = FOLDED_BIT;
const MOUNT_BITS = 15n;
let mountCounter = 0;

/** A fresh mount number, 1…32767 (wraps after that many mounts in one process). */
function nextMountNumber(): bigint {
  mountCounter = (mountCounter % Number((1n << MOUNT_BITS) - 1n)) + 1;
  return BigInt(mountCounter);
}

/**
 * A directory whose contents are served by another 9P server. Walks, lists
 * and opens below it are forwarded through a `ReconnectingClient`, which
 * redials with backoff when the remote goes away; the mount starts dialling
 * when it is made and comes back by itself when the remote returns.
 *
 * The mount point itself is local: its qid, mode (`DIR | 0o555` unless
 * `perm`) and stat stay valid while the remote is down. Below it, see the
 * module notes for qids, errors and fids.
 *
 * Concurrency: every method may run concurrently; each request uses its own
 * remote fid, and the attach root is only walked from.
 *
 * @example
 * ```ts
 * const gpu = new RemoteMount("gpu", {
 *   dial: (signal) => dial("tcp!10.0.2.2!5641", { signal }),
 *   attach: { uname: "bridge", aname: ticket },
 * });
 * gpu.onState((state, detail) => lifecycle.degraded(state !== "connected" ? `gpu-bridge-down` : undefined, detail));
 * root.add(gpu);                      // /gpu/GPU-0/info now reads from the bridge
 * // later, on shutdown:
 * gpu.close();
 * ```
 */
export class RemoteMount extends BaseNode {
  readonly #remote: RemoteTree;
  readonly #link: RemoteLink;

  constructor(name: string, options: RemoteMountOptions) {
    super(name, { ...options, mode: DirMode.DIR | (options.perm ?? 0o555) });
    checkName(name);
    this.#link = new RemoteLink(name, options);
    this.#remote = new RemoteTree(this.#link, options);
  }

  /** True while an attached connection to the remote is up. */
  get connected(): boolean {
    return this.#link.state === "connected";
  }

  /** `connecting` (before the first attempt ends), `connected` or `down`. */
  get state(): RemoteState {
    return this.#link.state;
  }

  /** Why the mount is not connected (the last failure), or `"attached"`. */
  get reason(): string {
    return this.#link.reason;
  }

  /**
   * Calls `listener` on every change between `connected` and `down` (not for
   * repeated failures while down), with the reason. Returns an unsubscribe.
   *
   * @example
   * ```ts
   * const stop = gpu.onState((state, detail) => console.log(`gpu ${state}: ${detail}`));
   * ```
   */
  onState(listener: StateListener): Unsubscribe {
    return this.#link.onState(listener);
  }

  /**
   * Resolves once connected; rejects with `busy:` after `timeoutMs` (default:
   * wait as long as it takes) or `closed:` once the mount is closed.
   *
   * @example
   * ```ts
   * await gpu.ready(5000);
   * ```
   */
  ready(timeoutMs?: number): Promise<void> {
    return this.#link.ready(timeoutMs);
  }

  /**
   * Stops redialling and drops the connection; later requests answer
   * `closed: <mount> unmounted`. Open files fail the same way.
   *
   * @example
   * ```ts
   * root.remove("gpu");
   * gpu.close();
   * ```
   */
  close(): void {
    this.#link.close();
  }

  override walk(name: string, ctx: RequestContext): Promise<Node> {
    return this.#remote.lookup([name], ctx);
  }

  override list(ctx: RequestContext): Promise<readonly Node[]> {
    return this.#remote.list([], ctx);
  }
}

/** A node below a mount: its remote path and the metadata last fetched. */
class RemoteNode implements Node {
  readonly name: string;
  readonly names: readonly string[];
  readonly #remote: RemoteTree;
  #info: RemoteInfo;

  constructor(remote: RemoteTree, names: readonly string[], info: RemoteInfo) {
    this.#remote = remote;
    this.names = names;
    this.name = names[names.length - 1]!;
    this.#info = info;
  }

  get mode(): number {
    return this.#info.mode;
  }

  get qid(): Qid {
    return this.#info.qid;
  }

  get isDirectory(): boolean {
    return (this.#info.mode & DirMode.DIR) !== 0;
  }

  stat(): NodeStat {
    return this.#info.stat;
  }

  /** Replaces the snapshot (after a write through an open file). */
  update(info: RemoteInfo): void {
    this.#info = info;
  }

  walk(name: string, ctx: RequestContext): MaybePromise<Node> {
    if (!this.isDirectory) throw new InvalidError(`not a directory: ${this.name}`, { errno: Errno.ENOTDIR });
    return this.#remote.lookup([...this.names, name], ctx);
  }

  list(ctx: RequestContext): MaybePromise<readonly Node[]> {
    if (!this.isDirectory) throw new InvalidError(`not a directory: ${this.name}`, { errno: Errno.ENOTDIR });
    return this.#remote.list(this.names, ctx);
  }

  open(flags: OpenFlags, ctx: RequestContext): MaybePromise<OpenFile> {
    if (this.isDirectory) throw new InvalidError(`is a directory: ${this.name}`, { errno: Errno.EISDIR });
    return this.#remote.open(this, flags, ctx);
  }
}

/** One open remote file: owns a walked and opened remote fid until close(). */
class RemoteFile implements OpenFile {
  readonly iounit: number;
  readonly #remote: RemoteTree;
  readonly #node: RemoteNode;
  readonly #fid: Fid;
  #closed = false;

  constructor(remote: RemoteTree, node: RemoteNode, fid: Fid) {
    this.#remote = remote;
    this.#node = node;
    this.#fid = fid;
    this.iounit = fid.client.iounit;
  }

  async read(offset: number, count: number, ctx: RequestContext): Promise<Uint8Array> {
    this.#check();
    try {
      // ctx.signal: a local Tflush becomes a Tflush of the remote read.
      return await this.#fid.read(offset, count, ctx.signal);
    } catch (err) {
      throw this.#remote.fileError(err, this.#fid, ctx);
    }
  }

  async write(offset: number, data: Uint8Array, ctx: RequestContext): Promise<number> {
    this.#check();
    const client = this.#fid.client;
    let count: number;
    try {
      // One Twrite, at most one remote iounit: a ctl command is never split.
      const r = await client.rpc({ type: "Twrite", fid: this.#fid.fid, offset, data: data.subarray(0, client.iounit) }, ctx.signal);
      count = r.count;
    } catch (err) {
      throw this.#remote.fileError(err, this.#fid, ctx);
    }
    try {
      this.#node.update(await this.#remote.info(this.#fid));
    } catch {
      // The write happened; only the snapshot is stale. Bump it locally.
      this.#node.update(bumped(this.#node));
    }
    return count;
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    void this.#fid.clunk().catch(() => {});
  }

  #check(): void {
    if (this.#closed) throw new ClosedError(`${this.#remote.name}: file closed`);
    if (this.#remote.link.closed) throw this.#remote.link.unmounted();
  }
}

function bumped(node: RemoteNode): RemoteInfo {
  const st = node.stat();
  const now = Date.now();
  return {
    qid: { ...node.qid, version: (node.qid.version + 1) >>> 0 },
    mode: node.mode,
    stat: { ...st, mtimeMs: now, atimeMs: now },
  };
}

/** The tree side of a mount: walks, lists, opens and qids over a link. */
class RemoteTree {
  readonly name: string;
  readonly link: RemoteLink;
  readonly #owner: string;
  readonly #requestTimeoutMs: number;
  readonly #mountBits: bigint;
  readonly #folded = new Map<bigint, bigint>();

  constructor(link: RemoteLink, options: RemoteMountOptions) {
    this.name = link.name;
    this.link = link;
    this.#owner = options.uid ?? DEFAULT_OWNER;
    this.#requestTimeoutMs = options.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS;
    this.#mountBits = REMOTE_BIT | (nextMountNumber() << 48n);
  }

  /** Walks `names` from the mount root and returns a node with fresh metadata. */
  async lookup(names: readonly string[], ctx: RequestContext): Promise<Node> {
    for (const n of names) checkName(n);
    const root = await this.link.root(ctx);
    const work = (async () => {
      const fid = await root.walk(names);
      try {
        return new RemoteNode(this, names, await this.info(fid));
      } finally {
        void fid.clunk().catch(() => {});
      }
    })();
    try {
      return await this.#wait(work, ctx);
    } catch (err) {
      throw this.#requestError(err, root, ctx, names);
    }
  }

  /** The entries of the remote directory at `names`, each with its metadata. */
  async list(names: readonly string[], ctx: RequestContext): Promise<readonly Node[]> {
    const root = await this.link.root(ctx);
    const work = (async () => {
      const fid = await root.walk(names);
      try {
        return await this.#entries(root, fid, names);
      } finally {
        void fid.clunk().catch(() => {});
      }
    })();
    try {
      return await this.#wait(work, ctx);
    } catch (err) {
      throw this.#requestError(err, root, ctx, names);
    }
  }

  /** Walks a fresh fid to `node` and opens it; the OpenFile owns the fid. */
  async open(node: RemoteNode, flags: OpenFlags, ctx: RequestContext): Promise<OpenFile> {
    const root = await this.link.root(ctx);
    const access: OpenAccess = flags.write ? (flags.read ? "rw" : "w") : "r";
    const work = (async () => {
      const fid = await root.walk(node.names);
      try {
        await fid.open(access, { truncate: flags.truncate });
      } catch (err) {
        void fid.clunk().catch(() => {});
        throw err;
      }
      return fid;
    })();
    let fid: Fid;
    try {
      // Given up on (flush, timeout): the fid is clunked when the open ends.
      fid = await this.#wait(work, ctx, (late) => void late.clunk().catch(() => {}));
    } catch (err) {
      throw this.#requestError(err, root, ctx, node.names);
    }
    if (this.link.closed) {
      void fid.clunk().catch(() => {});
      throw this.link.unmounted();
    }
    return new RemoteFile(this, node, fid);
  }

  /** Tstat (9P2000) or Tgetattr (9P2000.L) of a fid, in local terms. */
  async info(fid: Fid): Promise<RemoteInfo> {
    const client = fid.client;
    if (client.dialect === "9P2000") {
      const { stat: st } = await client.rpc({ type: "Tstat", fid: fid.fid });
      return this.#fromStat(st);
    }
    const { attr: a } = await client.rpc({ type: "Tgetattr", fid: fid.fid, requestMask: GETATTR_BASIC });
    return {
      qid: this.#mapQid(a.qid),
      mode: modeOf(a.qid, a.mode),
      stat: {
        length: a.size,
        mtimeMs: a.mtimeSec * 1000 + Math.floor(a.mtimeNsec / 1e6),
        atimeMs: a.atimeSec * 1000 + Math.floor(a.atimeNsec / 1e6),
        uid: this.#owner,
        gid: this.#owner,
        muid: this.#owner,
      },
    };
  }

  /** The error an open file's read or write answers. */
  fileError(err: unknown, fid: Fid, ctx: RequestContext): Error {
    if (ctx.signal.aborted) return abortReason(ctx.signal);
    if (this.link.closed) return this.link.unmounted();
    if (fid.client.closed) return new ClosedError(`${this.name}: remote file lost: ${messageOf(err)}`);
    return retype(err);
  }

  async #entries(root: Fid, dir: Fid, names: readonly string[]): Promise<RemoteNode[]> {
    const client = dir.client;
    await dir.open("r");
    if (client.dialect === "9P2000") {
      const out: RemoteNode[] = [];
      for (let offset = 0; ; ) {
        const data = await dir.read(offset, client.iounit);
        if (data.length === 0) break;
        for (const st of unpackStats(data)) out.push(new RemoteNode(this, [...names, st.name], this.#fromStat(st)));
        offset += data.length;
      }
      return out;
    }
    // 9P2000.L dirents carry only names and qids: fetch each entry's attributes.
    const entries = (await dir.readdir()).filter((e) => e.name !== "." && e.name !== "..");
    return mapLimit(entries, LIST_CONCURRENCY, async (e) => {
      const path = [...names, e.name];
      const fid = await root.walk(path);
      try {
        return new RemoteNode(this, path, await this.info(fid));
      } finally {
        void fid.clunk().catch(() => {});
      }
    });
  }

  #fromStat(st: { qid: Qid; mode: number; length: number; atime: number; mtime: number; uid: string; gid: string; muid: string }): RemoteInfo {
    return {
      qid: this.#mapQid(st.qid),
      mode: modeOf(st.qid, st.mode),
      stat: {
        length: st.length,
        mtimeMs: st.mtime * 1000,
        atimeMs: st.atime * 1000,
        uid: st.uid || this.#owner,
        gid: st.gid || this.#owner,
        muid: st.muid || st.uid || this.#owner,
      },
    };
  }

  #mapQid(q: Qid): Qid {
    let low = q.path;
    if (low >= DIRECT_MAX) {
      let f = this.#folded.get(q.path);
      if (f === undefined) {
        f = FOLDED_BIT | BigInt(this.#folded.size);
        this.#folded.set(q.path, f);
      }
      low = f;
    }
    return { type: q.type, version: q.version, path: this.#mountBits | low };
  }

  /** Waits for `work` within the request timeout and the request's signal. */
  #wait<T>(work: Promise<T>, ctx: RequestContext, abandoned?: (late: T) => void): Promise<T> {
    return withDeadline(work, {
      signal: ctx.signal,
      timeoutMs: this.#requestTimeoutMs,
      onTimeout: () => this.link.unavailable(`no answer within ${this.#requestTimeoutMs} ms`),
      ...(abandoned === undefined ? {} : { abandoned }),
    });
  }

  #requestError(err: unknown, root: Fid, ctx: RequestContext, names: readonly string[]): Error {
    if (ctx.signal.aborted) return abortReason(ctx.signal);
    if (this.link.closed) return this.link.unmounted();
    if (err instanceof UnavailableError) return err;
    if (root.client.closed) return this.link.unavailable(messageOf(err));
    const e = retype(err);
    // A 9P2000.L remote says only "ENOENT": name the path instead.
    if (e instanceof NotFoundError && /^E[A-Z]+$/.test(e.detail)) return new NotFoundError(names.join("/"));
    return e;
  }
}

/** 9P2000 mode bits from a qid and permission bits (either dialect's mode). */
function modeOf(qid: Qid, mode: number): number {
  let m = mode & 0o777;
  if (qid.type & QidType.DIR) m |= DirMode.DIR;
  if (qid.type & QidType.APPEND) m |= DirMode.APPEND;
  if (qid.type & QidType.EXCL) m |= DirMode.EXCL;
  return m >>> 0;
}

/** `fn` over `items` with at most `limit` calls running, results in order. */
async function mapLimit<T, R>(items: readonly T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]!);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}
