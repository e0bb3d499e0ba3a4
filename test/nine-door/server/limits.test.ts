/**
 * Per-session limits (fids, outstanding tags, frame size) and backpressure,
 * against a live server over TCP with small limits.
 */
import net from "node:net";
import type { Duplex } from "node:stream";
import { afterEach, describe, expect, it } from "vitest";
import {
  CtlFile,
  decodeMessage,
  Directory,
  encodeMessage,
  Errno,
  FrameSplitter,
  listen,
  memoryPair,
  NineServer,
  type Dialect,
  type RMessage,
} from "../../../nine-door/index.ts";
import { errorOf, RawConn, sampleTree, startServer, type TestServer } from "../harness.ts";

let srv: TestServer | undefined;
afterEach(async () => {
  await srv?.close();
  srv = undefined;
});

function expectClass(r: RMessage, dialect: Dialect, cls: string, errno: number): void {
  if (dialect === "9P2000") {
    expect(r.type).toBe("Rerror");
    expect(String(errorOf(r))).toMatch(new RegExp(`^${cls}: `));
  } else {
    expect(r.type).toBe("Rlerror");
    expect(errorOf(r)).toBe(errno);
  }
}

function openMsg(dialect: Dialect, fid: number) {
  return dialect === "9P2000" ? { type: "Topen" as const, fid, mode: 0 } : { type: "Tlopen" as const, fid, flags: 0 };
}

describe.each(["9P2000", "9P2000.L"] as const)("%s limits", (dialect) => {
  it("answers busy: when a session would hold more fids than its limit, and frees the slot on clunk", async () => {
    srv = await startServer({ limits: { maxFids: 4 } });
    const c = await RawConn.ready(srv.port, dialect);
    for (const fid of [1, 2, 3]) expect((await c.call({ type: "Twalk", fid: 0, newfid: fid, names: [] })).type).toBe("Rwalk");
    expectClass(await c.call({ type: "Twalk", fid: 0, newfid: 4, names: [] }), dialect, "busy", Errno.EBUSY);
    expectClass(
      await c.call({ type: "Tattach", fid: 5, afid: 0xffffffff, uname: "queen", aname: "ok", ...(dialect === "9P2000.L" ? { nUname: 0 } : {}) }),
      dialect,
      "busy",
      Errno.EBUSY,
    );
    expect((await c.call({ type: "Tclunk", fid: 3 })).type).toBe("Rclunk");
    expect((await c.call({ type: "Twalk", fid: 0, newfid: 4, names: ["hello"] })).type).toBe("Rwalk");
    c.close();
  });

  it("answers busy: to a request beyond the outstanding limit, and serves again once requests finish", async () => {
    srv = await startServer({ limits: { maxOutstanding: 4 } });
    const c = await RawConn.ready(srv.port, dialect);
    await c.call({ type: "Twalk", fid: 0, newfid: 1, names: ["tail"] });
    await c.call(openMsg(dialect, 1));
    const end = srv.tree.tail.stat().length;
    const blocked = [10, 11, 12, 13].map((tag) => c.send({ type: "Tread", fid: 1, offset: end, count: 16 }, tag));
    expectClass(await c.call({ type: "Tclunk", fid: 99 }, 20), dialect, "busy", Errno.EBUSY);
    // A flush is a request too, so make room by letting the reads complete.
    srv.tree.tail.append("data\n");
    for (const tag of blocked) expect((await c.reply(tag)).type).toBe("Rread");
    expectClass(await c.call({ type: "Tclunk", fid: 99 }, 20), dialect, "not found", Errno.EBADF);
    c.close();
  });

  it("answers too big: to a frame above the negotiated msize with its tag, then hangs up", async () => {
    srv = await startServer();
    const c = await RawConn.ready(srv.port, dialect, 8192);
    const frame = encodeMessage({ type: "Twrite", tag: 77, fid: 0, offset: 0, data: Buffer.alloc(8192) });
    c.sendRaw(frame);
    expectClass(await c.reply(77), dialect, "too big", Errno.E2BIG);
    await c.waitClosed();
    // The server lives on.
    (await RawConn.ready(srv.port, dialect)).close();
  });
});

describe("limits before Tversion", () => {
  it("answers too big: to a first frame larger than any Tversion", async () => {
    srv = await startServer();
    const c = await RawConn.open(srv.port);
    const big = Buffer.alloc(20000);
    big.writeUInt32LE(big.length, 0);
    big.writeUInt8(100, 4);
    big.writeUInt16LE(0xffff, 5);
    c.sendRaw(big);
    const r = await c.reply(0xffff);
    expect(r.type).toBe("Rerror");
    expect(String(errorOf(r))).toMatch(/^too big: /);
    await c.waitClosed();
  });
});

describe("Tversion", () => {
  it("sends nothing for a request it reset, even when that request later succeeds", async () => {
    let release = () => {};
    const slow = new CtlFile("slow", () => new Promise<string>((resolve) => (release = () => resolve("done"))));
    srv = await startServer({ attach: () => ({ caller: { role: "queen", subject: "queen" }, root: new Directory("/", { children: [slow] }) }) });
    const c = await RawConn.ready(srv.port, "9P2000");
    await c.call({ type: "Twalk", fid: 0, newfid: 1, names: ["slow"] });
    await c.call({ type: "Topen", fid: 1, mode: 2 });
    c.send({ type: "Twrite", fid: 1, offset: 0, data: Buffer.from("go") }, 5);
    c.send({ type: "Tflush", oldtag: 5 }, 6);
    expect((await c.call({ type: "Tversion", msize: 8192, version: "9P2000" }, 0xffff)).type).toBe("Rversion");
    release();
    await new Promise((r) => setTimeout(r, 100));
    // Neither the write's reply nor the pending Rflush may follow Rversion.
    expect(c.replies.map((r) => r.tag)).toEqual([]);
    c.close();
  });
});

/** A server on the sample tree that hands its connections to the test. */
async function serverWithConns(limits: { msize: number; maxOutstanding: number; maxBufferedBytes: number }) {
  const conns: Duplex[] = [];
  const server = new NineServer({ root: sampleTree().root, attach: () => ({ caller: { role: "queen", subject: "queen" } }), limits });
  const listener = await listen("tcp!127.0.0.1!0", (conn, peer) => {
    conns.push(conn);
    server.accept(conn, peer.remote);
  });
  const port = listener.address.kind === "unix" ? 0 : listener.address.port;
  return {
    port,
    conns,
    async close() {
      server.close();
      await listener.close();
    },
  };
}

describe("backpressure", () => {
  it("stops reading from a client that stops reading, keeps its buffer bounded, and finishes once it reads again", async () => {
    const limits = { msize: 65536 + 24, maxOutstanding: 16, maxBufferedBytes: 128 << 10 };
    const s = await serverWithConns(limits);
    const socket = net.connect(s.port, "127.0.0.1");
    try {
      await new Promise<void>((resolve, reject) => socket.once("connect", resolve).once("error", reject));
      const splitter = new FrameSplitter(1 << 20);
      const replies = new Map<number, number>();
      let rread = 0;
      let wrong = 0;
      let waiting: (() => void) | undefined;
      socket.on("data", (chunk: Buffer) => {
        splitter.push(chunk);
        for (let f = splitter.next(); f; f = splitter.next()) {
          const d = decodeMessage(f);
          if (!d.ok) throw d.error;
          const r = d.message as RMessage;
          replies.set(r.tag, (replies.get(r.tag) ?? 0) + 1);
          if (r.type === "Rread") {
            rread++;
            if (r.data.length !== 65536) wrong++;
          }
        }
        waiting?.();
      });
      const call = async (msg: Parameters<typeof encodeMessage>[0]) => {
        socket.write(encodeMessage(msg));
        while (!replies.has(msg.tag)) await new Promise<void>((r) => (waiting = r));
        replies.delete(msg.tag);
      };
      await call({ type: "Tversion", tag: 0xffff, msize: 1 << 20, version: "9P2000.L" });
      await call({ type: "Tattach", tag: 1, fid: 0, afid: 0xffffffff, uname: "queen", aname: "ok", nUname: 0 });
      await call({ type: "Twalk", tag: 1, fid: 0, newfid: 1, names: ["big"] });
      await call({ type: "Tlopen", tag: 1, fid: 1, flags: 0 });

      // Stop reading, then pipeline many 64 KiB reads.
      socket.pause();
      const N = 20_000;
      const requests = Buffer.concat(
        Array.from({ length: N }, (_, i) => encodeMessage({ type: "Tread", tag: i + 2, fid: 1, offset: (i % 40) * 65536, count: 65536 })),
      );
      socket.write(requests);
      const conn = s.conns[0] as net.Socket;
      let maxBuffered = 0;
      let lastRead = -1;
      for (let i = 0; i < 100; i++) {
        await new Promise((r) => setTimeout(r, 10));
        maxBuffered = Math.max(maxBuffered, conn.writableLength);
        lastRead = conn.bytesRead;
      }
      // The server holds at most its buffer limit plus the replies of the
      // requests it had accepted, and has stopped reading the requests.
      const bound = limits.maxBufferedBytes + (limits.maxOutstanding + 1) * limits.msize;
      expect(maxBuffered).toBeGreaterThan(0);
      expect(maxBuffered).toBeLessThanOrEqual(bound);
      await new Promise((r) => setTimeout(r, 100));
      expect(conn.bytesRead).toBe(lastRead);
      expect(conn.bytesRead).toBeLessThan(requests.length);

      // Read again: every request is answered exactly once.
      socket.resume();
      const deadline = Date.now() + 30_000;
      while (replies.size < N && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      expect(replies.size).toBe(N);
      expect([...replies.values()].every((n) => n === 1)).toBe(true);
      expect(rread).toBeGreaterThan(0);
      expect(wrong).toBe(0);
    } finally {
      socket.destroy();
      await s.close();
    }
  }, 60_000);
});

describe("backpressure below the stream's own buffer", () => {
  it("stops handling queued requests once its reply buffer is over the limit, and answers them all once the client reads", async () => {
    const limits = { maxBufferedBytes: 1024 };
    const [client, serverEnd] = memoryPair();
    const server = new NineServer({ root: sampleTree().root, attach: () => ({ caller: { role: "queen", subject: "queen" } }), limits });
    server.accept(serverEnd, "memory");
    const tick = () => new Promise((r) => setImmediate(r));
    try {
      client.write(encodeMessage({ type: "Tversion", tag: 0xffff, msize: 8192, version: "9P2000" }));
      client.write(encodeMessage({ type: "Tattach", tag: 1, fid: 0, afid: 0xffffffff, uname: "queen", aname: "ok" }));
      for (let i = 0; i < 5; i++) await tick();
      const splitter = new FrameSplitter(1 << 20);
      const take = (chunk: Buffer | null) => {
        const tags: number[] = [];
        if (chunk) splitter.push(chunk);
        for (let f = splitter.next(); f; f = splitter.next()) tags.push((f[5]! | (f[6]! << 8)));
        return tags;
      };
      expect(take(client.read() as Buffer | null)).toEqual([0xffff, 1]);

      // The client stops reading; each request's error reply is small.
      const N = 2000;
      client.write(Buffer.concat(Array.from({ length: N }, (_, i) => encodeMessage({ type: "Tclunk", tag: i + 2, fid: 99 }))));
      for (let i = 0; i < 20; i++) await tick();
      // One reply may cross the limit; the rest of the chunk waits unread.
      expect(serverEnd.writableLength).toBeLessThanOrEqual(limits.maxBufferedBytes + 100);

      let answered = 0;
      client.on("data", (chunk: Buffer) => (answered += take(chunk).length));
      await expect.poll(() => answered, { timeout: 3000 }).toBe(N);
    } finally {
      client.destroy();
      server.close();
    }
  });
});
