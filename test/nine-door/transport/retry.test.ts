import { join } from "node:path";
import net from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { ClosedError, InvalidError, PermissionError } from "../../../nine-door/errors.ts";
import {
  dialWithRetry,
  listen,
  makeSelfSignedCert,
  type Listener,
} from "../../../nine-door/transport/index.ts";
import { Cleanup, echo, readAll, rejection } from "./helpers.ts";

const cleanup = new Cleanup();
afterEach(() => cleanup.run());

/** A port on 127.0.0.1 that nothing listens on (just released). */
async function freePort(): Promise<number> {
  const l = await listen("127.0.0.1:0", () => {});
  await l.close();
  return l.address.kind === "tcp" ? l.address.port : 0;
}

function later(ms: number, fn: () => Promise<Listener>): void {
  const timer = setTimeout(() => {
    void fn().then((l) => cleanup.add(() => l.close()));
  }, ms);
  cleanup.add(() => clearTimeout(timer));
}

describe("dialWithRetry", () => {
  it("dialWithRetry() succeeds when the listener appears after a delay", async () => {
    const port = await freePort();
    later(150, () => listen(`127.0.0.1:${port}`, echo));
    const conn = cleanup.stream(
      await dialWithRetry(`tcp!127.0.0.1!${port}`, { attempts: 40, delayMs: 10, maxDelayMs: 40 }),
    );
    conn.end("worth the wait");
    expect(await readAll(conn)).toBe("worth the wait");
  });

  it("dialWithRetry() waits for a Unix socket file to appear", async () => {
    const path = join(await cleanup.tempDir(), "late.sock");
    later(100, () => listen(`unix!${path}`, echo));
    const conn = cleanup.stream(await dialWithRetry(`unix!${path}`, { attempts: 40, delayMs: 10, maxDelayMs: 40 }));
    conn.end("here now");
    expect(await readAll(conn)).toBe("here now");
  });

  it("dialWithRetry() redials a host forward that accepts and then closes until the guest listens", async () => {
    // What QEMU's hostfwd does before the guest listens: accept, then close.
    let accepted = 0;
    const forward = net.createServer((sock) => {
      accepted++;
      if (accepted <= 3) sock.destroy();
      else echo(sock);
    });
    await new Promise<void>((resolve) => forward.listen(0, "127.0.0.1", resolve));
    cleanup.add(() => new Promise((resolve) => forward.close(resolve)));
    const { port } = forward.address() as net.AddressInfo;

    const conn = cleanup.stream(await dialWithRetry(`127.0.0.1:${port}`, { attempts: 10, delayMs: 5, settleMs: 50 }));
    conn.end("through the forward");
    expect(await readAll(conn)).toBe("through the forward");
    expect(accepted).toBe(4);
  });

  it("dialWithRetry() gives up after the attempts with a clear error", async () => {
    const port = await freePort();
    const err = await rejection(dialWithRetry(`127.0.0.1:${port}`, { attempts: 3, delayMs: 10 }));
    expect(err).toBeInstanceOf(ClosedError);
    expect((err as Error).message).toMatch(
      new RegExp(`^closed: dial tcp!127\\.0\\.0\\.1!${port}: gave up after 3 attempts in \\d+ ms: connection refused \\(ECONNREFUSED\\)`),
    );
    expect((err as Error).cause).toBeInstanceOf(ClosedError);
  });

  it("dialWithRetry() gives up on a forward that always closes, saying so", async () => {
    const forward = net.createServer((sock) => sock.destroy());
    await new Promise<void>((resolve) => forward.listen(0, "127.0.0.1", resolve));
    cleanup.add(() => new Promise((resolve) => forward.close(resolve)));
    const { port } = forward.address() as net.AddressInfo;
    await expect(dialWithRetry(`127.0.0.1:${port}`, { attempts: 2, delayMs: 5, settleMs: 50 })).rejects.toThrow(
      /gave up after 2 attempts in \d+ ms: connection closed right after it was accepted/,
    );
  });

  it("dialWithRetry() does not retry a refusal that waiting cannot fix", async () => {
    const { key, cert } = await makeSelfSignedCert({ commonName: "retry-test", days: 1 });
    let handshakes = 0;
    const listener = await listen("tls!127.0.0.1!0", (conn) => {
      handshakes++;
      echo(conn);
    }, { tls: { key, cert } });
    cleanup.add(() => listener.close());
    const started = Date.now();
    const err = await rejection(dialWithRetry(listener.dialString, { attempts: 5, delayMs: 200, pin: "00".repeat(32) }));
    expect(err).toBeInstanceOf(PermissionError);
    expect(Date.now() - started).toBeLessThan(200);
    expect(handshakes).toBeLessThanOrEqual(1);
  });

  it("dialWithRetry() stops waiting when aborted", async () => {
    const port = await freePort();
    const controller = new AbortController();
    setTimeout(() => controller.abort(new Error("shutting down")), 30);
    await expect(
      dialWithRetry(`127.0.0.1:${port}`, { attempts: 100, delayMs: 1000, signal: controller.signal }),
    ).rejects.toThrow("shutting down");
  });

  it("dialWithRetry() refuses a nonsensical attempt count", async () => {
    await expect(dialWithRetry("127.0.0.1:1", { attempts: 0 })).rejects.toThrow(InvalidError);
  });
});
