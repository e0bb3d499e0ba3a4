import { once } from "node:events";
import { readFile, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { Duplex } from "node:stream";
import { execa } from "execa";
import { afterEach, describe, expect, it } from "vitest";
import { BusyError, ClosedError, InvalidError, NineError, NotFoundError } from "../../../nine-door/errors.ts";
import { dial, listen, type Listener, type PeerInfo } from "../../../nine-door/transport/index.ts";
import { Cleanup, echo, readAll, rejection } from "./helpers.ts";

const cleanup = new Cleanup();
afterEach(() => cleanup.run());

async function listening(
  addr: string,
  onConnection: (conn: Duplex, peer: PeerInfo) => void,
  options?: Parameters<typeof listen>[2],
): Promise<Listener> {
  const listener = await listen(addr, onConnection, options);
  cleanup.add(() => listener.close());
  return listener;
}

describe("listen on TCP", () => {
  it("listen() on 127.0.0.1 port 0 reports the real port and echoes a round trip", async () => {
    const peers: PeerInfo[] = [];
    const listener = await listening("127.0.0.1:0", (conn, peer) => {
      peers.push(peer);
      echo(conn);
    });
    expect(listener.address.kind).toBe("tcp");
    const port = listener.address.kind === "tcp" ? listener.address.port : 0;
    expect(port).toBeGreaterThan(0);
    expect(listener.dialString).toBe(`tcp!127.0.0.1!${port}`);

    const conn = cleanup.stream(await dial(listener.dialString));
    conn.end("hello, ninedoor");
    expect(await readAll(conn)).toBe("hello, ninedoor");
    expect(peers).toHaveLength(1);
    expect(peers[0]?.transport).toBe("tcp");
    expect(peers[0]?.remote).toMatch(/^tcp!127\.0\.0\.1!\d+$/);
  });

  it("close() destroys open connections and stops accepting", async () => {
    const accepted: Duplex[] = [];
    const listener = await listening("tcp!127.0.0.1!0", (conn) => accepted.push(conn));
    const conn = cleanup.stream(await dial(listener.dialString));
    conn.on("error", () => {});
    while (accepted.length === 0) await new Promise((r) => setTimeout(r, 5));
    expect(listener.connections).toBe(1);

    const closed = once(conn, "close");
    await listener.close();
    await closed;
    expect(accepted[0]?.destroyed).toBe(true);
    expect(listener.connections).toBe(0);
    const err = await rejection(dial(listener.dialString));
    expect(err).toBeInstanceOf(ClosedError);
    expect((err as Error).message).toMatch(/^closed: dial tcp!127\.0\.0\.1!\d+: connection refused/);
    await listener.close(); // twice is harmless
  });

  it("listen() refuses an address in use with BusyError", async () => {
    const first = await listening("127.0.0.1:0", echo);
    const err = await rejection(listen(first.dialString, echo));
    expect(err).toBeInstanceOf(BusyError);
    expect((err as Error).message).toBe(`busy: listen ${first.dialString}: address already in use (EADDRINUSE)`);
  });

  it("listen() refuses TLS options for a plain TCP address, and a tls! address without them", async () => {
    await expect(listen("127.0.0.1:0", echo, { tls: { key: "k", cert: "c" } })).rejects.toThrow(
      /^invalid: listen tcp!127\.0\.0\.1!0: options\.tls given for a tcp! address/,
    );
    await expect(listen("tls!127.0.0.1!0", echo)).rejects.toThrow(InvalidError);
  });

  it("an onConnection that throws loses only that stream, is reported, and the listener keeps serving", async () => {
    const reported: NineError[] = [];
    let calls = 0;
    const listener = await listening(
      "127.0.0.1:0",
      (conn) => {
        calls++;
        if (calls === 1) throw new Error("handler bug");
        echo(conn);
      },
      { onError: (err) => reported.push(err) },
    );
    const first = cleanup.stream(await dial(listener.dialString));
    first.on("error", () => {});
    first.resume();
    await once(first, "close");
    expect(reported[0]?.message).toMatch(/^io: listen tcp!127\.0\.0\.1!\d+: connection handler threw for tcp!127\.0\.0\.1!\d+: handler bug$/);

    const second = cleanup.stream(await dial(listener.dialString));
    second.end("still here");
    expect(await readAll(second)).toBe("still here");
  });

  it("dial() refuses port 0 and a pin on a plain TCP address", async () => {
    await expect(dial("127.0.0.1:0")).rejects.toThrow(/^invalid: dial tcp!127\.0\.0\.1!0: port 0 cannot be dialled/);
    await expect(dial("127.0.0.1:1", { pin: "00".repeat(32) })).rejects.toThrow(/pin and ca apply only to tls!/);
  });

  it("dial() rejects with the signal's reason when aborted", async () => {
    const controller = new AbortController();
    controller.abort(new Error("user gave up"));
    await expect(dial("127.0.0.1:1", { signal: controller.signal })).rejects.toThrow("user gave up");
  });
});

describe("listen on a Unix socket", () => {
  it("listen() on unix! makes an owner-only socket, round-trips bytes and removes the file on close", async () => {
    const path = join(await cleanup.tempDir(), "nd.sock");
    const peers: PeerInfo[] = [];
    const listener = await listening(`unix!${path}`, (conn, peer) => {
      peers.push(peer);
      echo(conn);
    });
    expect(listener.address).toEqual({ kind: "unix", path });
    expect(listener.dialString).toBe(`unix!${path}`);
    const info = await stat(path);
    expect(info.isSocket()).toBe(true);
    expect(info.mode & 0o777).toBe(0o600);

    const conn = cleanup.stream(await dial(listener.dialString));
    conn.end("over a unix socket");
    expect(await readAll(conn)).toBe("over a unix socket");
    expect(peers).toEqual([{ transport: "unix", remote: `unix!${path}` }]);

    await listener.close();
    await expect(stat(path)).rejects.toThrow(/ENOENT/);
  });

  it("listen() honours a mode option", async () => {
    const path = join(await cleanup.tempDir(), "group.sock");
    await listening(`unix!${path}`, echo, { mode: 0o660 });
    expect((await stat(path)).mode & 0o777).toBe(0o660);
  });

  it("listen() removes a stale socket file left by a killed server", async () => {
    const path = join(await cleanup.tempDir(), "stale.sock");
    // A server killed with SIGKILL leaves its socket file behind.
    await execa(
      process.execPath,
      ["-e", "require('net').createServer().listen(process.argv[1], () => process.kill(process.pid, 'SIGKILL'))", path],
      { reject: false },
    );
    expect((await stat(path)).isSocket()).toBe(true);

    const listener = await listening(`unix!${path}`, echo);
    const conn = cleanup.stream(await dial(listener.dialString));
    conn.end("fresh");
    expect(await readAll(conn)).toBe("fresh");
  });

  it("listen() refuses to remove a regular file in the way", async () => {
    const path = join(await cleanup.tempDir(), "important.txt");
    await writeFile(path, "keep me");
    const err = await rejection(listen(`unix!${path}`, echo));
    expect(err).toBeInstanceOf(BusyError);
    expect((err as Error).message).toBe(
      `busy: listen unix!${path}: ${path} exists and is not a socket; refusing to delete it, choose another path or remove it yourself`,
    );
    expect(await readFile(path, "utf8")).toBe("keep me");
  });

  it("listen() refuses to take over a socket another server answers on", async () => {
    const path = join(await cleanup.tempDir(), "live.sock");
    const first = await listening(`unix!${path}`, echo);
    await expect(listen(`unix!${path}`, echo)).rejects.toThrow(
      new BusyError(`listen unix!${path}: another server is listening on ${path}`),
    );
    const conn = cleanup.stream(await dial(first.dialString));
    conn.end("first still serves");
    expect(await readAll(conn)).toBe("first still serves");
  });

  it("dial() of a missing socket file is NotFoundError", async () => {
    const path = join(await cleanup.tempDir(), "absent.sock");
    const err = await rejection(dial(`unix!${path}`));
    expect(err).toBeInstanceOf(NotFoundError);
    expect((err as Error).message).toBe(`not found: dial unix!${path}: no such file or directory (ENOENT)`);
  });
});
