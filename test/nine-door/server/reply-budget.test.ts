/**
 * maxBufferedBytes bounds what the server holds for a connection whose
 * replies are not taken: pipelined 1 MiB reads wait for room instead of all
 * producing their replies, the server stops reading the connection, and
 * everything it held goes when the connection closes. Raw sockets and
 * hand-built frames.
 */
import net from "node:net";
import type { Duplex } from "node:stream";
import { runInNewContext } from "node:vm";
import { setFlagsFromString } from "node:v8";
import { afterEach, describe, expect, it } from "vitest";
import {
  AppendLog,
  decodeMessage,
  Directory,
  encodeMessage,
  FrameSplitter,
  listen,
  NineServer,
  StaticFile,
  type Message,
  type RMessage,
  type ServerLimits,
  type Session,
} from "../../../nine-door/index.ts";

const MiB = 1 << 20;

/** A server whose sessions and server-side streams the test can see. */
async function serverWithConns(limits: Partial<ServerLimits>) {
  const conns: net.Socket[] = [];
  const sessions: Session[] = [];
  const big = new StaticFile("big", Buffer.alloc(3 * MiB, 7));
  const tail = new AppendLog("tail", { writable: true, blockingReads: true });
  const root = new Directory("/", { children: [big, tail] });
  const server = new NineServer({ root, attach: () => ({ caller: { role: "queen", subject: "queen" } }), limits });
  const listener = await listen("tcp!127.0.0.1!0", (conn, peer) => {
    conns.push(conn as net.Socket);
    sessions.push(server.accept(conn as Duplex, peer.remote));
  });
  const port = listener.address.kind === "unix" ? 0 : listener.address.port;
  return {
    server,
    port,
    conns,
    sessions,
    tail,
    async close() {
      server.close();
      await listener.close();
    },
  };
}

/** A raw client: sends frames, counts replies by tag, can stop reading. */
class Client {
  readonly socket: net.Socket;
  readonly replies = new Map<number, RMessage[]>();
  readonly #splitter = new FrameSplitter(16 * MiB);
  #wake: (() => void) | undefined;

  private constructor(socket: net.Socket) {
    this.socket = socket;
    socket.on("error", () => {});
    socket.on("data", (chunk: Buffer) => {
      this.#splitter.push(chunk);
      for (let f = this.#splitter.next(); f; f = this.#splitter.next()) {
        const d = decodeMessage(f);
        if (!d.ok) throw d.error;
        const r = d.message as RMessage;
        // Keep the replies small: a read's data is dropped once counted.
        const kept = r.type === "Rread" ? ({ ...r, data: Buffer.alloc(0), size: r.data.length } as RMessage) : r;
        this.replies.set(r.tag, [...(this.replies.get(r.tag) ?? []), kept]);
      }
      this.#wake?.();
    });
  }

  static async open(port: number): Promise<Client> {
    const socket = net.connect(port, "127.0.0.1");
    await new Promise<void>((resolve, reject) => socket.once("connect", resolve).once("error", reject));
    return new Client(socket);
  }

  send(msg: Message): void {
    this.socket.write(encodeMessage(msg));
  }

  async reply(tag: number, timeoutMs = 10_000): Promise<RMessage> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const got = this.replies.get(tag);
      if (got?.length) {
        this.replies.delete(tag);
        return got[0]!;
      }
      if (Date.now() > deadline) throw new Error(`no reply to tag ${tag}`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, 50);
        this.#wake = () => {
          clearTimeout(t);
          resolve();
        };
      });
    }
  }

  async call(msg: Message): Promise<RMessage> {
    this.send(msg);
    return this.reply(msg.tag);
  }

  /** Tversion (1 MiB msize), Tattach fid 0, walk fid 1 to `name` and open it for reading. */
  async openFile(name: string): Promise<void> {
    expect((await this.call({ type: "Tversion", tag: 0xffff, msize: MiB + 24, version: "9P2000.L" } as Message)).type).toBe("Rversion");
    expect((await this.call({ type: "Tattach", tag: 1, fid: 0, afid: 0xffffffff, uname: "queen", aname: "ok", nUname: 0 } as Message)).type).toBe("Rattach");
    expect((await this.call({ type: "Twalk", tag: 1, fid: 0, newfid: 1, names: [name] } as Message)).type).toBe("Rwalk");
    expect((await this.call({ type: "Tlopen", tag: 1, fid: 1, flags: 0 } as Message)).type).toBe("Rlopen");
  }

  /** `n` Tread frames of `count` bytes on fid 1, tags from `first`. */
  static reads(n: number, count: number, first = 2): Buffer {
    return Buffer.concat(Array.from({ length: n }, (_, i) => encodeMessage({ type: "Tread", tag: first + i, fid: 1, offset: (i % 3) * MiB, count } as Message)));
  }
}

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** Samples `probe` every 10 ms for `ms`, returning the largest value seen. */
async function peak(ms: number, probe: () => number): Promise<number> {
  let max = 0;
  const end = Date.now() + ms;
  while (Date.now() < end) {
    max = Math.max(max, probe());
    await new Promise((r) => setTimeout(r, 10));
  }
  return max;
}

describe("the reply budget (maxBufferedBytes)", () => {
  it("holds about maxBufferedBytes of replies for a client pipelining 10,000 reads of 1 MiB that it never reads, and stops reading it", async () => {
    const limit = 4 * MiB;
    const s = await serverWithConns({ maxBufferedBytes: limit });
    cleanups.push(() => s.close());
    const c = await Client.open(s.port);
    cleanups.push(() => c.socket.destroy());
    await c.openFile("big");
    c.socket.pause();
    const requests = Client.reads(10_000, MiB);
    c.socket.write(requests);
    const conn = s.conns[0]!;
    const held = await peak(1500, () => conn.writableLength);
    // One reply may cross the limit; never the hundreds the tag table allows.
    expect(held).toBeGreaterThan(0);
    expect(held).toBeLessThanOrEqual(limit + MiB + 64);
    const before = conn.bytesRead;
    await new Promise((r) => setTimeout(r, 200));
    expect(conn.bytesRead).toBe(before);
    expect(conn.bytesRead).toBeLessThan(requests.length);
  }, 30_000);

  it("answers every one of the reads exactly once when the client reads again", async () => {
    const s = await serverWithConns({ maxBufferedBytes: 2 * MiB, maxOutstanding: 64 });
    cleanups.push(() => s.close());
    const c = await Client.open(s.port);
    cleanups.push(() => c.socket.destroy());
    await c.openFile("big");
    c.socket.pause();
    const N = 300;
    c.socket.write(Client.reads(N, MiB));
    await new Promise((r) => setTimeout(r, 300));
    c.socket.resume();
    await expect.poll(() => c.replies.size, { timeout: 30_000, interval: 50 }).toBe(N);
    const all = [...c.replies.values()];
    expect(all.every((r) => r.length === 1)).toBe(true);
    // Reads over the outstanding limit are answered busy; the others in full.
    const reads = all.map((r) => r[0]!).filter((r) => r.type === "Rread") as Array<RMessage & { size: number }>;
    expect(reads.length).toBeGreaterThanOrEqual(64);
    expect(reads.every((r) => r.size === MiB)).toBe(true);
  }, 60_000);

  it("keeps eight connections that never read within eight budgets", async () => {
    const limit = 2 * MiB;
    const s = await serverWithConns({ maxBufferedBytes: limit });
    cleanups.push(() => s.close());
    const clients: Client[] = [];
    for (let i = 0; i < 8; i++) {
      const c = await Client.open(s.port);
      cleanups.push(() => c.socket.destroy());
      await c.openFile("big");
      c.socket.pause();
      c.socket.write(Client.reads(2000, MiB));
      clients.push(c);
    }
    const held = await peak(1500, () => s.conns.reduce((n, conn) => n + conn.writableLength, 0));
    expect(held).toBeLessThanOrEqual(8 * (limit + MiB + 64));
  }, 60_000);

  it("answers a flush of a read waiting for room with Rflush alone, and never the read", async () => {
    const s = await serverWithConns({ maxBufferedBytes: MiB });
    cleanups.push(() => s.close());
    const c = await Client.open(s.port);
    cleanups.push(() => c.socket.destroy());
    await c.openFile("tail");
    // A read blocked at the end holds the budget; the next one waits for room.
    c.send({ type: "Tread", tag: 10, fid: 1, offset: 0, count: MiB } as Message);
    c.send({ type: "Tread", tag: 11, fid: 1, offset: 0, count: MiB } as Message);
    expect((await c.call({ type: "Tflush", tag: 20, oldtag: 11 } as Message)).type).toBe("Rflush");
    s.tail.append("after\n");
    expect((await c.reply(10)).type).toBe("Rread");
    await new Promise((r) => setTimeout(r, 200));
    expect(c.replies.has(11)).toBe(false);
  });

  it("does not let blocked reads stop a flush from being read", async () => {
    const s = await serverWithConns({ maxBufferedBytes: MiB });
    cleanups.push(() => s.close());
    const c = await Client.open(s.port);
    cleanups.push(() => c.socket.destroy());
    await c.openFile("tail");
    // Two blocked 1 MiB reads at the end: the second waits for room.
    c.send({ type: "Tread", tag: 10, fid: 1, offset: 0, count: MiB } as Message);
    c.send({ type: "Tread", tag: 11, fid: 1, offset: 0, count: MiB } as Message);
    expect((await c.call({ type: "Tflush", tag: 20, oldtag: 11 } as Message)).type).toBe("Rflush");
    expect((await c.call({ type: "Tflush", tag: 21, oldtag: 10 } as Message)).type).toBe("Rflush");
    s.tail.append("after\n");
    expect((await c.call({ type: "Tread", tag: 12, fid: 1, offset: 0, count: MiB } as Message)).type).toBe("Rread");
  });
});

/**
 * Weak references to `objects`, made outside the async test so that no
 * register of its suspended frame keeps one of them alive.
 */
function watch(objects: object[]): Array<WeakRef<object>> {
  return objects.splice(0).map((o) => new WeakRef(o));
}

describe("memory after close", () => {
  it("lets go of the sessions, their streams and their replies once the connections close", async () => {
    setFlagsFromString("--expose-gc");
    const gc = runInNewContext("gc") as () => void;
    const s = await serverWithConns({ maxBufferedBytes: 2 * MiB, preauthDeadlineMs: 60_000 });
    cleanups.push(() => s.close());
    const refs: Array<WeakRef<object>> = [];
    {
      const c = await Client.open(s.port);
      await c.openFile("tail");
      s.tail.append("x".repeat(1000) + "\n");
      c.socket.pause();
      // Queued replies, reads waiting for room, a read blocked at the end of
      // the log, and a partial frame.
      c.socket.write(Client.reads(50, MiB));
      c.send({ type: "Tread", tag: 900, fid: 1, offset: 5000, count: MiB } as Message);
      c.socket.write(Buffer.from([0, 0, 1, 0, 118, 1, 0]));
      // An unattached connection with a partial frame.
      const raw = await Client.open(s.port);
      raw.socket.write(Buffer.from([100, 0, 0, 0]));
      await expect.poll(() => s.sessions.length).toBe(2);
      await new Promise((r) => setTimeout(r, 300));
      refs.push(...watch([...s.sessions.slice(0, 2), ...s.conns.slice(0, 2)]));
      c.socket.destroy();
      raw.socket.destroy();
    }
    s.sessions.length = 0;
    s.conns.length = 0;
    await expect.poll(() => s.server.sessions.length, { timeout: 5000 }).toBe(0);
    for (let i = 0; i < 20 && refs.some((r) => r.deref() !== undefined); i++) {
      await new Promise((r) => setTimeout(r, 50));
      gc();
    }
    expect(refs.map((r) => r.deref() === undefined)).toEqual([true, true, true, true]);
  });
});
