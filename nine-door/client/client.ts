/**
 * The NineDoor client: a promise API over one connection, pipelined (many
 * requests outstanding, replies matched by tag), speaking either dialect.
 * Used by the CLI, the workers, remote mounts and the benchmarks.
 * @module
 */
import type { Duplex } from "node:stream";
import {
  ClosedError,
  InvalidError,
  NineError,
  fromLerror,
  fromRerror,
} from "../errors.ts";
import { decodeDirents, decodeMessage, encodeMessageChunks, FrameSplitter, unpackStats } from "../wire/index.ts";
import { dial, parseDialString, type DialOptions } from "../transport/index.ts";
import { NoAnswerError, checkTimeout } from "./timeout.ts";
import {
  IOHDRSZ,
  MAXWELEM,
  NOFID,
  NOTAG,
  QidType,
  GETATTR_BASIC,
  type Dialect,
  type MessageOf,
  type Qid,
  type RMessage,
  type TMessage,
} from "../wire/index.ts";

/** A request without its tag; the client assigns one. */
type Untagged<T> = T extends unknown ? Omit<T, "tag"> : never;
type Request = Untagged<TMessage>;
type ReplyFor<T extends Request["type"]> = MessageOf<`R${T extends `T${infer R}` ? R : never}` & RMessage["type"]>;

/** File metadata in a dialect-neutral shape. */
export interface FileInfo {
  readonly name: string;
  readonly qid: Qid;
  /** 9P2000 mode bits (DMDIR, DMAPPEND, permissions). */
  readonly mode: number;
  readonly length: number;
  /** Seconds since the epoch. */
  readonly mtime: number;
  readonly isDir: boolean;
  readonly isAppend: boolean;
}

/** Options of `NineClient.connect`. */
export interface ConnectOptions {
  /** Largest message the client wants; default 1 MiB + IOHDRSZ. */
  readonly msize?: number;
  /** Default "9P2000.L". */
  readonly dialect?: Dialect;
  readonly signal?: AbortSignal;
  /**
   * Gives up on version negotiation, and on each request made without a
   * signal of its own, after this long (ms), rejecting with
   * {@link NoAnswerError} (class `io`); an unanswered request is flushed.
   * A request given a signal is governed by that signal alone, so blocking
   * reads that wait for appends are not cut short. 0 waits forever; default 0.
   * Change it later with {@link NineClient.timeoutMs}.
   */
  readonly timeoutMs?: number;
}

/** Options of `NineClient.rpc`. */
export interface RpcOptions {
  /**
   * Memory (at least `msize` bytes) to receive the reply in when it spans
   * socket chunks, as large Rreads do: the reply's `data` is then a view of
   * it, valid until the buffer is used again. Reusing one buffer per lane of
   * reads spares an allocation (and its garbage) per reply. After an abort
   * the buffer may be written until the flushed reply has arrived.
   */
  readonly receiveBuffer?: Uint8Array;
}

/** Default msize: 1 MiB reads fit. */
const DEFAULT_MSIZE = (1 << 20) + IOHDRSZ;

/**
 * For sockets dialled with `onread`: bytes are already in the splitter when
 * the read callback runs, which then calls the function given to `ready`.
 */
interface InPlace {
  ready(fn: () => void): void;
}

/** How a file is opened. */
export type OpenAccess = "r" | "w" | "rw";

interface Pending {
  resolve(reply: RMessage): void;
  reject(err: Error): void;
}

const O_RDONLY = 0;
const O_WRONLY = 1;
const O_RDWR = 2;

/**
 * A connected 9P client.
 *
 * @example
 * ```ts
 * const client = await NineClient.connect(await dial("tcp!127.0.0.1!5640"));
 * const root = await client.attach({ uname: "queen", aname: ticket });
 * console.log(await root.readText("proc/boot"));
 * ```
 */
export class NineClient {
  readonly dialect: Dialect;
  readonly msize: number;
  readonly #conn: Duplex;
  readonly #splitter: FrameSplitter;
  readonly #pending = new Map<number, Pending>();
  /** Caller-supplied reply memory by tag (`RpcOptions.receiveBuffer`). */
  readonly #receive = new Map<number, Uint8Array>();
  readonly #freeTags: number[] = [];
  #nextTag = 0;
  readonly #freeFids: number[] = [];
  #nextFid = 0;
  #closed: Error | undefined;
  #timeoutMs: number;
  readonly #closeListeners = new Set<(err: Error) => void>();

  private constructor(conn: Duplex, splitter: FrameSplitter, dialect: Dialect, msize: number, inPlace: InPlace | undefined, timeoutMs: number) {
    this.#conn = conn;
    this.#timeoutMs = timeoutMs;
    this.#splitter = splitter;
    this.dialect = dialect;
    this.msize = msize;
    splitter.setAllocator((size, tag) => (this.#receive.size === 0 ? undefined : this.#receive.get(tag)));
    if (inPlace) inPlace.ready(() => this.#drain());
    else conn.on("data", (chunk: Buffer) => this.#onData(chunk));
    conn.on("close", () => this.#fail(new ClosedError("connection closed by server")));
    conn.on("error", (err) => this.#fail(new ClosedError(`connection error: ${err.message}`)));
  }

  /** Negotiates a version on `conn` and returns the client. */
  static connect(conn: Duplex, options: ConnectOptions = {}): Promise<NineClient> {
    return NineClient.#negotiate(conn, new FrameSplitter(options.msize ?? DEFAULT_MSIZE), options, undefined);
  }

  /**
   * Dials `addr` and negotiates a version. On `tcp!` and `unix!` addresses
   * the socket reads straight into the client's frame splitter (`onread`),
   * so a large reply goes from the kernel to its frame — or to the
   * `receiveBuffer` of its rpc — without a fresh 64 KiB chunk per read;
   * `tls!` addresses are dialled as `connect(await dial(addr))`.
   *
   * @example
   * ```ts
   * const client = await NineClient.dial("tcp!127.0.0.1!5640", { msize: (1 << 20) + 24 });
   * ```
   */
  static async dial(addr: string, options: ConnectOptions & DialOptions = {}): Promise<NineClient> {
    if (parseDialString(addr).kind === "tls") return NineClient.connect(await dial(addr, options), options);
    const splitter = new FrameSplitter(options.msize ?? DEFAULT_MSIZE);
    let sink = (): void => {};
    const conn = await dial(addr, {
      ...options,
      onread: {
        buffer: () => splitter.readTarget(),
        callback: (n: number): boolean => {
          splitter.commit(n);
          sink();
          return true;
        },
      },
    });
    return NineClient.#negotiate(conn, splitter, options, { ready: (fn) => (sink = fn) });
  }

  static async #negotiate(conn: Duplex, splitter: FrameSplitter, options: ConnectOptions, inPlace: InPlace | undefined): Promise<NineClient> {
    const want = splitter.maxFrame;
    const dialect = options.dialect ?? "9P2000.L";
    const timeoutMs = checkTimeout(options.timeoutMs);
    const reply = await new Promise<RMessage>((resolve, reject) => {
      const onData = (chunk?: Buffer) => {
        if (chunk) splitter.push(chunk);
        let frame: Uint8Array | undefined;
        try {
          frame = splitter.next();
        } catch (err) {
          return done(err as Error);
        }
        if (!frame) return;
        const res = decodeMessage(frame);
        if (!res.ok) return done(res.error);
        done(undefined, res.message as RMessage);
      };
      const onClose = () => done(new ClosedError("connection closed during version negotiation"));
      const onAbort = () => {
        conn.destroy();
        done(new ClosedError("version negotiation cancelled"));
      };
      const timer =
        timeoutMs > 0
          ? setTimeout(() => {
              conn.destroy();
              done(new NoAnswerError("Tversion", timeoutMs));
            }, timeoutMs)
          : undefined;
      const done = (err?: Error, msg?: RMessage) => {
        clearTimeout(timer);
        if (inPlace) inPlace.ready(() => {});
        else conn.off("data", onData);
        conn.off("close", onClose);
        conn.off("error", onClose);
        options.signal?.removeEventListener("abort", onAbort);
        if (err) reject(err);
        else resolve(msg!);
      };
      if (inPlace) inPlace.ready(() => onData());
      else conn.on("data", onData);
      conn.on("close", onClose);
      conn.on("error", onClose);
      options.signal?.addEventListener("abort", onAbort, { once: true });
      for (const c of encodeMessageChunks({ type: "Tversion", tag: NOTAG, msize: want, version: dialect })) conn.write(c);
    });
    if (reply.type === "Rerror") {
      conn.destroy();
      throw fromRerror(reply.ename);
    }
    if (reply.type !== "Rversion") {
      conn.destroy();
      throw new InvalidError(`server answered Tversion with ${reply.type}`);
    }
    if (reply.version !== dialect) {
      conn.destroy();
      throw new InvalidError(`server does not speak ${dialect} (answered ${JSON.stringify(reply.version)})`);
    }
    splitter.setMaxFrame(reply.msize);
    const client = new NineClient(conn, splitter, dialect, reply.msize, inPlace, timeoutMs);
    // Frames that arrived with Rversion (none expected) would be lost; none can, nothing else was sent.
    return client;
  }

  /** Largest payload of one read or write. */
  get iounit(): number {
    return this.msize - IOHDRSZ;
  }

  /**
   * How long a request without its own signal may go unanswered, ms (0:
   * forever); see `ConnectOptions.timeoutMs`.
   *
   * @example
   * ```ts
   * client.timeoutMs = 2000; // a quick probe
   * ```
   */
  get timeoutMs(): number {
    return this.#timeoutMs;
  }

  set timeoutMs(ms: number) {
    this.#timeoutMs = checkTimeout(ms);
  }

  get closed(): boolean {
    return this.#closed !== undefined;
  }

  /** Calls `listener` once when the connection is lost. */
  onClose(listener: (err: Error) => void): () => void {
    if (this.#closed) {
      listener(this.#closed);
      return () => {};
    }
    this.#closeListeners.add(listener);
    return () => this.#closeListeners.delete(listener);
  }

  /**
   * Sends one request and resolves with its reply; error replies reject with
   * a NineError. Aborting `signal` sends Tflush and rejects once the server
   * has answered the flush, so the tag is never reused early.
   */
  rpc<T extends Request>(request: T, signal?: AbortSignal, options?: RpcOptions): Promise<ReplyFor<T["type"]>> {
    if (this.#closed) return Promise.reject(this.#closed);
    if (signal?.aborted) return Promise.reject(abortError(signal));
    if (signal === undefined && this.#timeoutMs > 0 && request.type !== "Tflush") {
      // No signal of its own: the client's timeout aborts it (and flushes it).
      const ms = this.#timeoutMs;
      const expiry = new AbortController();
      const timer = setTimeout(() => expiry.abort(new NoAnswerError(request.type, ms)), ms);
      return this.rpc(request, expiry.signal, options).finally(() => clearTimeout(timer));
    }
    const tag = this.#allocTag();
    if (options?.receiveBuffer !== undefined) this.#receive.set(tag, options.receiveBuffer);
    return new Promise<ReplyFor<T["type"]>>((resolve, reject) => {
      let flushed = false;
      const onAbort = () => {
        if (flushed) return;
        flushed = true;
        this.#receive.delete(tag);
        // The original tag stays reserved until Rflush (flush(5)).
        this.#pending.set(tag, {
          resolve: () => {},
          reject: () => {},
        });
        this.rpc({ type: "Tflush", oldtag: tag } as Request).then(
          () => this.#releaseTag(tag),
          () => this.#releaseTag(tag),
        );
        reject(abortError(signal!));
      };
      this.#pending.set(tag, {
        resolve: (reply) => {
          signal?.removeEventListener("abort", onAbort);
          this.#releaseTag(tag);
          if (reply.type === "Rerror") reject(fromRerror(reply.ename));
          else if (reply.type === "Rlerror") reject(fromLerror(reply.ecode));
          else resolve(reply as ReplyFor<T["type"]>);
        },
        reject: (err) => {
          signal?.removeEventListener("abort", onAbort);
          this.#receive.delete(tag);
          reject(err);
        },
      });
      signal?.addEventListener("abort", onAbort, { once: true });
      this.#write({ ...request, tag } as TMessage);
    });
  }

  /** Attaches to the server's tree; the ticket goes in `aname`. */
  async attach(options: { uname?: string; aname: string; nUname?: number }): Promise<Fid> {
    const fid = this.allocFid();
    try {
      const r = await this.rpc({
        type: "Tattach",
        fid,
        afid: NOFID,
        uname: options.uname ?? "",
        aname: options.aname,
        ...(this.dialect === "9P2000.L" ? { nUname: options.nUname ?? NOFID } : {}),
      });
      return new Fid(this, fid, r.qid, "/");
    } catch (err) {
      this.releaseFid(fid);
      throw err;
    }
  }

  /** Closes the connection; pending requests reject with `closed:`. */
  close(): void {
    this.#conn.destroy();
    this.#fail(new ClosedError("client closed"));
  }

  /** @internal Fid numbers are recycled after clunk. */
  allocFid(): number {
    return this.#freeFids.pop() ?? this.#nextFid++;
  }

  /** @internal */
  releaseFid(fid: number): void {
    this.#freeFids.push(fid);
  }

  #allocTag(): number {
    const tag = this.#freeTags.pop();
    if (tag !== undefined) return tag;
    if (this.#nextTag >= NOTAG) throw new InvalidError("too many requests outstanding (65535 tags)");
    return this.#nextTag++;
  }

  #releaseTag(tag: number): void {
    this.#pending.delete(tag);
    this.#receive.delete(tag);
    this.#freeTags.push(tag);
  }

  #write(msg: TMessage): void {
    // Requests issued in one tick (pipelined lanes resuming after a batch of
    // replies) are corked and leave in one writev instead of a syscall each.
    if (!this.#corked) {
      this.#corked = true;
      this.#conn.cork();
      process.nextTick(this.#uncork);
    }
    for (const c of encodeMessageChunks(msg)) this.#conn.write(c);
  }

  #corked = false;
  readonly #uncork = (): void => {
    this.#corked = false;
    this.#conn.uncork();
  };

  #onData(chunk: Buffer): void {
    this.#splitter.push(chunk);
    this.#drain();
  }

  /** Answers every whole frame the splitter holds. */
  #drain(): void {
    for (;;) {
      let frame: Uint8Array | undefined;
      try {
        frame = this.#splitter.next();
      } catch (err) {
        this.#fail(new InvalidError(`bad frame from server: ${(err as Error).message}`));
        this.#conn.destroy();
        return;
      }
      if (!frame) return;
      const res = decodeMessage(frame);
      if (!res.ok) {
        // A reply we cannot read still answers its tag.
        if (res.tag !== undefined) this.#pending.get(res.tag)?.reject(res.error);
        continue;
      }
      const reply = res.message as RMessage;
      this.#pending.get(reply.tag)?.resolve(reply);
    }
  }

  #fail(err: Error): void {
    if (this.#closed) return;
    this.#closed = err;
    for (const p of this.#pending.values()) p.reject(err);
    this.#pending.clear();
    this.#receive.clear();
    for (const l of this.#closeListeners) l(err);
    this.#closeListeners.clear();
  }
}

function abortError(signal: AbortSignal): Error {
  const reason: unknown = signal.reason;
  if (reason instanceof Error) return reason;
  return new ClosedError("request cancelled");
}

function splitPath(path: string): string[] {
  return path.split("/").filter((p) => p !== "" && p !== ".");
}

/**
 * A fid on the server: a place in the tree, optionally open. Methods that
 * take a path walk a fresh fid and clunk it afterwards.
 */
export class Fid {
  readonly client: NineClient;
  readonly fid: number;
  qid: Qid;
  /** The path this fid was walked to, relative to the attach root. */
  readonly path: string;
  #open: OpenAccess | undefined;
  #clunked = false;

  /** @internal */
  constructor(client: NineClient, fid: number, qid: Qid, path: string) {
    this.client = client;
    this.fid = fid;
    this.qid = qid;
    this.path = path;
  }

  get isDir(): boolean {
    return (this.qid.type & QidType.DIR) !== 0;
  }

  /**
   * Walks to `path` (relative; `..` allowed) and returns a new fid. Paths of
   * more than 16 names are walked in steps. A walk that stops short rejects
   * with `not found:`.
   */
  async walk(path: string | readonly string[] = [], signal?: AbortSignal): Promise<Fid> {
    const names = typeof path === "string" ? splitPath(path) : [...path];
    const newfid = this.client.allocFid();
    let from = this.fid;
    let qid = this.qid;
    let done = 0;
    let clunked = false;
    try {
      do {
        const step = names.slice(done, done + MAXWELEM);
        const r = await this.client.rpc({ type: "Twalk", fid: from, newfid, names: step }, signal);
        if (r.qids.length < step.length) {
          if (from === newfid) await this.client.rpc({ type: "Tclunk", fid: newfid }).catch(() => {});
          clunked = true;
          throw new NineError("not found", `${[...names.slice(0, done + r.qids.length + 1)].join("/")}`);
        }
        if (r.qids.length > 0) qid = r.qids[r.qids.length - 1]!;
        done += step.length;
        from = newfid;
      } while (done < names.length);
    } catch (err) {
      // newfid is bound on the server after an earlier step, or perhaps by
      // a walk that completed before its flush: clunk it before reusing it.
      if (!clunked && (from === newfid || signal?.aborted)) {
        await this.client.rpc({ type: "Tclunk", fid: newfid }).catch(() => {});
      }
      this.client.releaseFid(newfid);
      throw err;
    }
    const joined = [this.path === "/" ? "" : this.path, ...names].join("/") || "/";
    return new Fid(this.client, newfid, qid, joined.startsWith("/") ? joined : `/${joined}`);
  }

  /** Opens this fid. */
  async open(access: OpenAccess = "r", options: { truncate?: boolean; signal?: AbortSignal } = {}): Promise<this> {
    if (this.client.dialect === "9P2000.L") {
      const flags = (access === "r" ? O_RDONLY : access === "w" ? O_WRONLY : O_RDWR) | (options.truncate ? 0o1000 : 0);
      const r = await this.client.rpc({ type: "Tlopen", fid: this.fid, flags }, options.signal);
      this.qid = r.qid;
    } else {
      const mode = (access === "r" ? 0 : access === "w" ? 1 : 2) | (options.truncate ? 0x10 : 0);
      const r = await this.client.rpc({ type: "Topen", fid: this.fid, mode }, options.signal);
      this.qid = r.qid;
    }
    this.#open = access;
    return this;
  }

  /** One Tread: at most `count` bytes (capped at the iounit) at `offset`. */
  async read(offset: number, count = this.client.iounit, signal?: AbortSignal): Promise<Uint8Array> {
    const r = await this.client.rpc({ type: "Tread", fid: this.fid, offset, count: Math.min(count, this.client.iounit) }, signal);
    return r.data;
  }

  /** Reads from `offset` to end of file. */
  async readAll(offset = 0, signal?: AbortSignal): Promise<Buffer> {
    const parts: Uint8Array[] = [];
    for (;;) {
      const data = await this.read(offset, this.client.iounit, signal);
      if (data.length === 0) break;
      parts.push(data);
      offset += data.length;
    }
    return Buffer.concat(parts);
  }

  /** One Twrite (data longer than the iounit is written in several). */
  async write(data: Uint8Array | string, offset = 0, signal?: AbortSignal): Promise<number> {
    const bytes = typeof data === "string" ? Buffer.from(data) : data;
    const unit = this.client.iounit;
    if (bytes.length <= unit) {
      const r = await this.client.rpc({ type: "Twrite", fid: this.fid, offset, data: bytes }, signal);
      return r.count;
    }
    let total = 0;
    while (total < bytes.length) {
      const r = await this.client.rpc(
        { type: "Twrite", fid: this.fid, offset: offset + total, data: bytes.subarray(total, total + unit) },
        signal,
      );
      if (r.count === 0) break;
      total += r.count;
    }
    return total;
  }

  /** Metadata of this fid. */
  async stat(signal?: AbortSignal): Promise<FileInfo> {
    if (this.client.dialect === "9P2000.L") {
      const r = await this.client.rpc({ type: "Tgetattr", fid: this.fid, requestMask: GETATTR_BASIC }, signal);
      const a = r.attr;
      const isDir = (a.qid.type & QidType.DIR) !== 0;
      const isAppend = (a.qid.type & QidType.APPEND) !== 0;
      const name = this.path === "/" ? "/" : this.path.slice(this.path.lastIndexOf("/") + 1);
      return {
        name,
        qid: a.qid,
        mode: (a.mode & 0o777) | (isDir ? 0x80000000 : 0) | (isAppend ? 0x40000000 : 0),
        length: a.size,
        mtime: a.mtimeSec,
        isDir,
        isAppend,
      };
    }
    const r = await this.client.rpc({ type: "Tstat", fid: this.fid }, signal);
    return statInfo(r.stat);
  }

  /** Entries of this directory (the fid must not be open yet; it is opened). */
  async readdir(signal?: AbortSignal): Promise<FileInfo[]> {
    if (!this.#open) await this.open("r", signal ? { signal } : {});
    const out: FileInfo[] = [];
    if (this.client.dialect === "9P2000.L") {
      let offset = 0;
      for (;;) {
        const r = await this.client.rpc({ type: "Treaddir", fid: this.fid, offset, count: this.client.iounit - 4 }, signal);
        const ents = decodeDirents(r.data);
        if (ents.length === 0) break;
        for (const e of ents) {
          const isDir = (e.qid.type & QidType.DIR) !== 0;
          const isAppend = (e.qid.type & QidType.APPEND) !== 0;
          out.push({ name: e.name, qid: e.qid, mode: (isDir ? 0x80000000 : 0) | (isAppend ? 0x40000000 : 0), length: 0, mtime: 0, isDir, isAppend });
        }
        offset = ents[ents.length - 1]!.offset;
      }
      return out;
    }
    let offset = 0;
    for (;;) {
      const data = await this.read(offset, this.client.iounit, signal);
      if (data.length === 0) break;
      for (const st of unpackStats(data)) out.push(statInfo(st));
      offset += data.length;
    }
    return out;
  }

  /** Releases the fid on the server. Safe to call twice. */
  async clunk(): Promise<void> {
    if (this.#clunked) return;
    this.#clunked = true;
    try {
      await this.client.rpc({ type: "Tclunk", fid: this.fid });
    } finally {
      this.client.releaseFid(this.fid);
    }
  }

  /** Walks to `path`, runs `fn` on the new fid, and clunks it. */
  async with<T>(path: string, fn: (f: Fid) => Promise<T>, signal?: AbortSignal): Promise<T> {
    const f = await this.walk(path, signal);
    try {
      return await fn(f);
    } finally {
      await f.clunk().catch(() => {});
    }
  }

  /** The whole content of the file at `path`. */
  readFile(path: string, signal?: AbortSignal): Promise<Buffer> {
    return this.with(path, async (f) => (await f.open("r", signal ? { signal } : {})).readAll(0, signal), signal);
  }

  /** The content of the file at `path` as UTF-8. */
  async readText(path: string, signal?: AbortSignal): Promise<string> {
    return (await this.readFile(path, signal)).toString("utf8");
  }

  /** Opens `path` for writing and writes `data` once (one command for ctl files). */
  writeFile(path: string, data: Uint8Array | string, signal?: AbortSignal): Promise<number> {
    return this.with(path, async (f) => (await f.open("w", signal ? { signal } : {})).write(data, 0, signal), signal);
  }

  /** Entries of the directory at `path`. */
  list(path: string, signal?: AbortSignal): Promise<FileInfo[]> {
    return this.with(path, (f) => f.readdir(signal), signal);
  }

  /** Metadata of `path`. */
  statPath(path: string, signal?: AbortSignal): Promise<FileInfo> {
    return this.with(path, (f) => f.stat(signal), signal);
  }
}

function statInfo(st: { name: string; qid: Qid; mode: number; length: number; mtime: number }): FileInfo {
  return {
    name: st.name,
    qid: st.qid,
    mode: st.mode,
    length: st.length,
    mtime: st.mtime,
    isDir: (st.mode & 0x80000000) !== 0,
    isAppend: (st.mode & 0x40000000) !== 0,
  };
}
