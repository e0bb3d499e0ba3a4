/**
 * Drives fuzz batches against a live NineDoor server over TCP, checking
 * that every frame the server owes an answer gets one, that refused size
 * fields end in a clean hang-up, and that a control session keeps being
 * served. Shared by the CI fuzz test and `npm run fuzz`.
 * @module
 */
import net from "node:net";
import {
  decodeMessage,
  encodeMessage,
  FrameSplitter,
  type Dialect,
  type RMessage,
  type TMessage,
} from "../../../nine-door/index.ts";
import { errorClassOf, FrameGenerator, type Batch } from "./frames.ts";

type Untagged<T> = T extends unknown ? Omit<T, "tag"> : never;

/** A client connection that counts replies by tag. */
export class FuzzConn {
  readonly socket: net.Socket;
  readonly #splitter = new FrameSplitter(1 << 24);
  readonly #got = new Map<number, RMessage[]>();
  #wake: (() => void) | undefined;
  closed = false;
  /** Replies the codec could not decode: the server wrote a bad frame. */
  badReplies = 0;
  readonly onReply: (r: RMessage) => void;

  private constructor(socket: net.Socket, onReply: (r: RMessage) => void) {
    this.socket = socket;
    this.onReply = onReply;
    socket.on("data", (chunk: Buffer) => {
      this.#splitter.push(chunk);
      try {
        for (let f = this.#splitter.next(); f; f = this.#splitter.next()) {
          const d = decodeMessage(f);
          if (!d.ok || d.message.type[0] !== "R") {
            this.badReplies++;
            continue;
          }
          const r = d.message as RMessage;
          this.onReply(r);
          const list = this.#got.get(r.tag);
          if (list) list.push(r);
          else this.#got.set(r.tag, [r]);
        }
      } catch {
        this.badReplies++;
        socket.destroy();
      }
      this.#wake?.();
    });
    socket.on("close", () => {
      this.closed = true;
      this.#wake?.();
    });
    socket.on("error", () => {});
  }

  static async open(port: number, onReply: (r: RMessage) => void = () => {}): Promise<FuzzConn> {
    const socket = net.connect(port, "127.0.0.1");
    socket.setNoDelay(true);
    await new Promise<void>((resolve, reject) => socket.once("connect", resolve).once("error", reject));
    return new FuzzConn(socket, onReply);
  }

  /** Waits until `test` holds, the connection closes, or `timeoutMs` passes. */
  async #until(test: () => boolean, timeoutMs: number): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    while (!test()) {
      if (this.closed) return test();
      const left = deadline - Date.now();
      if (left <= 0) return false;
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, Math.min(left, 100));
        this.#wake = () => {
          clearTimeout(t);
          resolve();
        };
      });
      this.#wake = undefined;
    }
    return true;
  }

  /** Waits for the owed replies; returns the tags still owed (empty when all came). */
  async settle(expect: ReadonlyMap<number, number>, timeoutMs: number): Promise<number[]> {
    const missing = () => [...expect].filter(([tag, n]) => (this.#got.get(tag)?.length ?? 0) < n).map(([tag]) => tag);
    await this.#until(() => missing().length === 0, timeoutMs);
    const left = missing();
    this.#got.clear();
    return left;
  }

  /** Sends one request with `tag` and returns its reply. */
  async call(msg: Untagged<TMessage>, tag: number, timeoutMs = 5000): Promise<RMessage> {
    this.socket.write(encodeMessage({ ...msg, tag } as TMessage));
    const ok = await this.#until(() => (this.#got.get(tag)?.length ?? 0) > 0, timeoutMs);
    if (!ok) throw new Error(this.closed ? `connection closed before the reply to ${msg.type}` : `no reply to ${msg.type} within ${timeoutMs} ms`);
    const list = this.#got.get(tag)!;
    const r = list.shift()!;
    if (list.length === 0) this.#got.delete(tag);
    return r;
  }

  /** Tversion + Tattach of fid 0; returns the negotiated msize. */
  async negotiate(dialect: Dialect, msize: number, aname: string): Promise<number> {
    this.#got.clear();
    const v = await this.call({ type: "Tversion", msize, version: dialect }, 0xffff);
    if (v.type !== "Rversion" || v.version !== dialect) throw new Error(`version refused: ${JSON.stringify(v)}`);
    const a = await this.call(
      { type: "Tattach", fid: 0, afid: 0xffffffff, uname: "queen", aname, ...(dialect === "9P2000.L" ? { nUname: 0 } : {}) },
      1,
    );
    if (a.type !== "Rattach") throw new Error(`attach refused: ${JSON.stringify(a)}`);
    return v.msize;
  }

  /** Resolves true once the peer has closed the connection. */
  async waitClosed(timeoutMs: number): Promise<boolean> {
    return this.#until(() => this.closed, timeoutMs);
  }

  close(): void {
    this.socket.destroy();
  }
}

/** Options of `fuzzServer`. */
export interface FuzzOptions {
  readonly port: number;
  /** A valid ticket (or whatever the server's attach accepts). */
  readonly aname: string;
  readonly frames: number;
  readonly seed: number;
  /** Concurrent fuzzing connections (default 8). */
  readonly connections?: number;
  /** How long an owed reply may take before it counts as a hang (default 5 s). */
  readonly replyTimeoutMs?: number;
  /** Batches per connection before a clean reconnect (default 40). */
  readonly batchesPerConnection?: number;
}

/** What a fuzz run saw. */
export interface FuzzStats {
  frames: number;
  batches: number;
  connections: number;
  /** Connections the server hung up after a refused size field. */
  refusedHangups: number;
  replies: number;
  /** Error replies by class (`invalid`, `not found`, ...); `ok` counts successes. */
  readonly replyClasses: Map<string, number>;
  /** Frames sent by kind (`flip`, `walk17`, ...). */
  readonly kinds: Map<string, number>;
  /** Every broken promise: a missing reply, a hang, a bad reply frame. */
  readonly failures: string[];
}

function bump(m: Map<string, number>, k: string, n = 1): void {
  m.set(k, (m.get(k) ?? 0) + n);
}

/**
 * Sends at least `frames` fuzz frames over many connections and checks the
 * server's answers. Never throws on server misbehaviour: it is recorded in
 * `failures`.
 *
 * @example
 * ```ts
 * const stats = await fuzzServer({ port, aname: ticket, frames: 100_000, seed: 1 });
 * expect(stats.failures).toEqual([]);
 * ```
 */
export async function fuzzServer(options: FuzzOptions): Promise<FuzzStats> {
  const stats: FuzzStats = {
    frames: 0,
    batches: 0,
    connections: 0,
    refusedHangups: 0,
    replies: 0,
    replyClasses: new Map(),
    kinds: new Map(),
    failures: [],
  };
  const timeout = options.replyTimeoutMs ?? 5000;
  const perConn = options.batchesPerConnection ?? 40;
  const onReply = (r: RMessage) => {
    stats.replies++;
    bump(stats.replyClasses, errorClassOf(r) ?? "ok");
  };
  const fail = (what: string) => {
    if (stats.failures.length < 50) stats.failures.push(what);
  };

  const worker = async (w: number) => {
    const gen = new FrameGenerator({ seed: (options.seed * 7919 + w) >>> 0, aname: options.aname });
    while (stats.frames < options.frames && stats.failures.length === 0) {
      const conn = await FuzzConn.open(options.port, onReply);
      stats.connections++;
      try {
        let dialect: Dialect = gen.chance(0.5) ? "9P2000.L" : "9P2000";
        let msize = await conn.negotiate(dialect, gen.chance(0.5) ? 8192 : 65536, options.aname);
        for (let b = 0; b < perConn && stats.frames < options.frames; b++) {
          const batch: Batch = gen.batch({ msize, dialect });
          stats.batches++;
          stats.frames += batch.frames.length;
          for (const [k, n] of batch.kinds) bump(stats.kinds, k, n);
          conn.socket.write(Buffer.concat(batch.frames));
          const missing = await conn.settle(batch.expect, timeout);
          if (conn.badReplies > 0) fail(`seed ${options.seed} worker ${w}: the server sent an undecodable reply`);
          if (missing.length > 0 && batch.end !== "fatal") {
            fail(`seed ${options.seed} worker ${w} batch ${b}: no reply to tags ${missing.slice(0, 8).join(",")} (kinds ${[...batch.kinds.keys()].join(",")})`);
            break;
          }
          if (conn.closed && batch.end !== "fatal") {
            fail(`seed ${options.seed} worker ${w} batch ${b}: the server hung up on a batch ending ${batch.end}`);
            break;
          }
          if (batch.end === "fatal") {
            if (await conn.waitClosed(timeout)) stats.refusedHangups++;
            else fail(`seed ${options.seed} worker ${w}: no hang-up after a refused size field`);
            break;
          }
          if (batch.end === "desync") break;
          if (batch.end === "version") {
            dialect = gen.chance(0.5) ? "9P2000.L" : "9P2000";
            msize = await conn.negotiate(dialect, gen.chance(0.5) ? 8192 : 65536, options.aname);
          }
        }
      } catch (err) {
        fail(`seed ${options.seed} worker ${w}: ${(err as Error).message}`);
      } finally {
        conn.close();
      }
    }
  };
  await Promise.all(Array.from({ length: options.connections ?? 8 }, (_, w) => worker(w)));
  return stats;
}

/** What the control session saw while the server was being fuzzed. */
export interface ControlStats {
  rounds: number;
  maxLatencyMs: number;
  readonly failures: string[];
}

/**
 * A well-behaved session doing walk / open / read / clunk round trips on
 * `path` until `stop` is aborted.
 *
 * @example
 * ```ts
 * const stop = new AbortController();
 * const control = controlSession({ port, aname, path: ["proc", "boot"], stop: stop.signal });
 * ```
 */
export async function controlSession(options: {
  port: number;
  aname: string;
  path: readonly string[];
  stop: AbortSignal;
  /** A round slower than this is a failure (default 2000 ms). */
  maxLatencyMs?: number;
}): Promise<ControlStats> {
  const stats: ControlStats = { rounds: 0, maxLatencyMs: 0, failures: [] };
  const limit = options.maxLatencyMs ?? 2000;
  const conn = await FuzzConn.open(options.port);
  try {
    await conn.negotiate("9P2000.L", 65536, options.aname);
    while (!options.stop.aborted) {
      const t0 = performance.now();
      const w = await conn.call({ type: "Twalk", fid: 0, newfid: 1, names: [...options.path] }, 2);
      const o = await conn.call({ type: "Tlopen", fid: 1, flags: 0 }, 3);
      const r = await conn.call({ type: "Tread", fid: 1, offset: 0, count: 4096 }, 4);
      const c = await conn.call({ type: "Tclunk", fid: 1 }, 5);
      const ms = performance.now() - t0;
      stats.rounds++;
      stats.maxLatencyMs = Math.max(stats.maxLatencyMs, ms);
      if (w.type !== "Rwalk" || o.type !== "Rlopen" || r.type !== "Rread" || r.data.length === 0 || c.type !== "Rclunk") {
        stats.failures.push(`round ${stats.rounds}: ${[w, o, r, c].map((x) => x.type).join(" ")}`);
        break;
      }
      if (ms > limit) stats.failures.push(`round ${stats.rounds} took ${ms.toFixed(0)} ms`);
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
  } catch (err) {
    stats.failures.push((err as Error).message);
  } finally {
    conn.close();
  }
  return stats;
}
