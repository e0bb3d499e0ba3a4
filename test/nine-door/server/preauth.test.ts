/**
 * A connection proves itself (attaches) before it can make the server hold
 * memory: small frames and a deadline until then, and caps on connections
 * per source and in total, where the unattached ones go first. Raw sockets
 * and hand-built frames.
 */
import net from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { encodeMessage, memoryPair, NineServer, resolveLimits, type Message } from "../../../nine-door/index.ts";
import { errorOf, RawConn, sampleTree, startServer, type TestServer } from "../harness.ts";

let srv: TestServer | undefined;
const opened: RawConn[] = [];
afterEach(async () => {
  for (const c of opened.splice(0)) c.close();
  await srv?.close();
  srv = undefined;
});

async function open(port: number): Promise<RawConn> {
  const c = await RawConn.open(port);
  opened.push(c);
  return c;
}

/** Tversion with msize 1 MiB, then the first `sent` bytes of a frame announcing `size` bytes. */
async function versionThenPartial(c: RawConn, size: number, sent: number): Promise<void> {
  expect((await c.call({ type: "Tversion", msize: 1 << 20, version: "9P2000.L" }, 0xffff)).type).toBe("Rversion");
  const head = Buffer.alloc(sent);
  head.writeUInt32LE(size, 0);
  head.writeUInt8(118, 4); // Twrite
  head.writeUInt16LE(9, 5);
  c.sendRaw(head);
}

async function attach(c: RawConn, dialect: "9P2000" | "9P2000.L" = "9P2000.L"): Promise<void> {
  const r = await c.call({ type: "Tattach", fid: 0, afid: 0xffffffff, uname: "queen", aname: "ok", ...(dialect === "9P2000.L" ? { nUname: 0 } : {}) });
  expect(r.type).toBe("Rattach");
}

describe("before attach", () => {
  it("answers too big: to a 1 MiB frame after Tversion, before the frame is sent, and hangs up", async () => {
    srv = await startServer();
    const c = await open(srv.port);
    await versionThenPartial(c, (1 << 20) - 100, 64);
    expect(errorOf(await c.reply(9))).toBe(7); // E2BIG
    await c.waitClosed();
  });

  it("lets go of a refused connection whose client streams the rest of the frame and never closes its side", async () => {
    srv = await startServer();
    const s = net.connect({ port: srv.port, host: "127.0.0.1", allowHalfOpen: true });
    s.on("error", () => {});
    await new Promise<void>((resolve) => s.once("connect", () => resolve()));
    try {
      s.resume();
      const big = Buffer.alloc((1 << 20) - 1, 0x61);
      big.writeUInt32LE(1 << 20, 0);
      big.writeUInt8(118, 4);
      s.write(encodeMessage({ type: "Tversion", tag: 0xffff, msize: 1 << 20, version: "9P2000.L" } as Message));
      s.write(big);
      await expect.poll(() => srv!.server.sessions.length, { timeout: 10_000 }).toBe(0);
    } finally {
      s.destroy();
    }
  });

  it("says in 9P2000 that larger frames come after attach", async () => {
    srv = await startServer();
    const c = await open(srv.port);
    expect((await c.call({ type: "Tversion", msize: 1 << 20, version: "9P2000" }, 0xffff)).type).toBe("Rversion");
    c.sendRaw(encodeMessage({ type: "Twrite", tag: 3, fid: 0, offset: 0, data: Buffer.alloc(9000) } as Message));
    expect(String(errorOf(await c.reply(3)))).toMatch(/^too big: .*before attach: attach first/);
    await c.waitClosed();
  });

  it("drops a connection that sends Tversion and sits on a partial frame past the deadline", async () => {
    srv = await startServer({ limits: { preauthDeadlineMs: 300 } });
    const c = await open(srv.port);
    await versionThenPartial(c, 4000, 100);
    await c.waitClosed(5000);
    expect(srv.server.stats.expired).toBe(1);
    expect(srv.server.sessions).toHaveLength(0);
  });

  it("drops a connection that never sends a byte past the deadline", async () => {
    srv = await startServer({ limits: { preauthDeadlineMs: 300 } });
    const c = await open(srv.port);
    await c.waitClosed(5000);
  });

  it("waits for an attach in flight before reading a large frame pipelined behind it", async () => {
    srv = await startServer();
    const c = await open(srv.port);
    expect((await c.call({ type: "Tversion", msize: 1 << 20, version: "9P2000" }, 0xffff)).type).toBe("Rversion");
    c.sendRaw(
      Buffer.concat([
        encodeMessage({ type: "Tattach", tag: 1, fid: 0, afid: 0xffffffff, uname: "queen", aname: "ok" } as Message),
        encodeMessage({ type: "Twalk", tag: 2, fid: 0, newfid: 1, names: ["notes"] } as Message),
        encodeMessage({ type: "Topen", tag: 3, fid: 1, mode: 1 } as Message),
        encodeMessage({ type: "Twrite", tag: 4, fid: 1, offset: 0, data: Buffer.alloc(64 << 10, 0x41) } as Message),
      ]),
    );
    expect((await c.reply(1)).type).toBe("Rattach");
    expect(await c.reply(4)).toMatchObject({ type: "Rwrite", count: 64 << 10 });
  });

  it("refuses a large frame behind an attach that failed", async () => {
    srv = await startServer();
    const c = await open(srv.port);
    expect((await c.call({ type: "Tversion", msize: 1 << 20, version: "9P2000" }, 0xffff)).type).toBe("Rversion");
    c.sendRaw(
      Buffer.concat([
        encodeMessage({ type: "Tattach", tag: 1, fid: 0, afid: 0xffffffff, uname: "queen", aname: "bad" } as Message),
        encodeMessage({ type: "Twrite", tag: 4, fid: 0, offset: 0, data: Buffer.alloc(64 << 10) } as Message),
      ]),
    );
    expect(String(errorOf(await c.reply(1)))).toMatch(/^permission: /);
    expect(String(errorOf(await c.reply(4)))).toMatch(/^too big: /);
    await c.waitClosed();
  });
});

describe("after attach", () => {
  it("keeps a connection that attached past the deadline and takes full-size frames", async () => {
    srv = await startServer({ limits: { preauthDeadlineMs: 200 } });
    const c = await open(srv.port);
    expect((await c.call({ type: "Tversion", msize: 1 << 20, version: "9P2000.L" }, 0xffff)).type).toBe("Rversion");
    await attach(c);
    await new Promise((r) => setTimeout(r, 600));
    expect(c.closed).toBe(false);
    await c.call({ type: "Twalk", fid: 0, newfid: 1, names: ["notes"] });
    await c.call({ type: "Tlopen", fid: 1, flags: 1 });
    expect(await c.call({ type: "Twrite", fid: 1, offset: 0, data: Buffer.alloc(512 << 10, 0x42) })).toMatchObject({ type: "Rwrite", count: 512 << 10 });
    expect(srv.server.stats.expired).toBe(0);
  });

  it("is back to small frames and a deadline after a new Tversion", async () => {
    srv = await startServer({ limits: { preauthDeadlineMs: 300 } });
    const c = await open(srv.port);
    expect((await c.call({ type: "Tversion", msize: 1 << 20, version: "9P2000.L" }, 0xffff)).type).toBe("Rversion");
    await attach(c);
    expect((await c.call({ type: "Tversion", msize: 1 << 20, version: "9P2000.L" }, 0xffff)).type).toBe("Rversion");
    await c.waitClosed(5000);
  });
});

describe("a Tversion reset", () => {
  it("does not count an attach it reset as proof: the connection is unattached again", async () => {
    srv = await startServer({ limits: { preauthDeadlineMs: 300 } });
    const c = await open(srv.port);
    expect((await c.call({ type: "Tversion", msize: 8192, version: "9P2000" }, 0xffff)).type).toBe("Rversion");
    await attach(c, "9P2000");
    c.sendRaw(
      Buffer.concat([
        encodeMessage({ type: "Tattach", tag: 5, fid: 5, afid: 0xffffffff, uname: "queen", aname: "ok" } as Message),
        encodeMessage({ type: "Tversion", tag: 0xffff, msize: 8192, version: "9P2000" } as Message),
      ]),
    );
    expect((await c.reply(0xffff)).type).toBe("Rversion");
    const session = srv.server.sessions[0]!;
    await new Promise((r) => setTimeout(r, 50));
    expect(session.authenticated).toBe(false);
    expect(session.callers).toHaveLength(0);
    await c.waitClosed(5000);
  });
});

describe("connection caps", () => {
  it("drops the oldest unattached connection of a source when its cap is reached", async () => {
    srv = await startServer({ limits: { maxConnectionsPerPeer: 3 } });
    const first = await open(srv.port);
    await versionThenPartial(first, 4000, 100);
    const queen = await open(srv.port);
    expect((await queen.call({ type: "Tversion", msize: 8192, version: "9P2000.L" }, 0xffff)).type).toBe("Rversion");
    await attach(queen);
    const second = await open(srv.port);
    await versionThenPartial(second, 4000, 100);
    const fourth = await open(srv.port);
    await first.waitClosed();
    expect(second.closed).toBe(false);
    expect((await fourth.call({ type: "Tversion", msize: 8192, version: "9P2000.L" }, 0xffff)).type).toBe("Rversion");
    // The attached connection is never the one dropped.
    const fifth = await open(srv.port);
    await second.waitClosed();
    expect((await queen.call({ type: "Tgetattr", fid: 0, requestMask: 0x7ff })).type).toBe("Rgetattr");
    expect(fifth.closed).toBe(false);
    expect(srv.server.stats.evicted).toBe(2);
  });

  it("closes a new connection at once when every connection of its source has attached", async () => {
    srv = await startServer({ limits: { maxConnectionsPerPeer: 2 } });
    const a = await open(srv.port);
    const b = await open(srv.port);
    for (const c of [a, b]) {
      expect((await c.call({ type: "Tversion", msize: 8192, version: "9P2000.L" }, 0xffff)).type).toBe("Rversion");
      await attach(c);
    }
    const late = await open(srv.port);
    await late.waitClosed();
    expect(srv.server.stats.refused).toBe(1);
    for (const c of [a, b]) expect((await c.call({ type: "Tgetattr", fid: 0, requestMask: 0x7ff })).type).toBe("Rgetattr");
  });

  it("caps connections in total across sources, unattached ones first", () => {
    const server = new NineServer({ root: sampleTree().root, attach: () => ({ caller: { role: "queen", subject: "queen" } }), limits: { maxConnections: 2 } });
    const ends = [0, 1, 2].map(() => memoryPair());
    const s1 = server.accept(ends[0]![1], "tcp!10.0.0.1!1000");
    const s2 = server.accept(ends[1]![1], "tcp!10.0.0.2!1000");
    const s3 = server.accept(ends[2]![1], "tcp!10.0.0.3!1000");
    expect(s1.closed).toBe(true);
    expect(s2.closed).toBe(false);
    expect(s3.closed).toBe(false);
    expect(server.sessions).toEqual([s2, s3]);
    server.close();
  });

  it("counts TCP peers by host, not by port", async () => {
    srv = await startServer({ limits: { maxConnectionsPerPeer: 1 } });
    const a = await open(srv.port);
    const b = await open(srv.port);
    await a.waitClosed();
    expect(b.closed).toBe(false);
  });
});

describe("limits", () => {
  it("refuses a limit that is not a positive integer, naming it", () => {
    expect(() => resolveLimits({ preauthDeadlineMs: 0 })).toThrow(/^invalid: server limits: preauthDeadlineMs must be an integer of at least 1/);
    expect(() => resolveLimits({ preauthMaxFrame: 100 })).toThrow(/preauthMaxFrame must be an integer of at least 512/);
    expect(() => resolveLimits({ maxConnections: 1.5 })).toThrow(/maxConnections/);
  });

  it("shows the limits in force and the counters on one line", async () => {
    srv = await startServer({ limits: { maxConnectionsPerPeer: 7, preauthDeadlineMs: 1234 } });
    const line = srv.server.limitsLine();
    expect(line).toMatch(/^limits max_conns=1024 max_conns_per_peer=7 preauth_max_frame=8192 preauth_deadline_ms=1234 max_buffered_bytes=8388608 .*refused=0 evicted=0 expired=0\n$/);
  });
});

describe("sockets", () => {
  it("keeps the server reachable while a client holds a socket it never writes to", async () => {
    srv = await startServer({ limits: { preauthDeadlineMs: 200 } });
    const idle = net.connect(srv.port, "127.0.0.1");
    idle.on("error", () => {});
    const closed = new Promise<void>((resolve) => idle.once("close", () => resolve()));
    await closed;
    const c = await open(srv.port);
    expect((await c.call({ type: "Tversion", msize: 8192, version: "9P2000.L" }, 0xffff)).type).toBe("Rversion");
    await attach(c);
  });
});
