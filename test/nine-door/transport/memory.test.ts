import { once } from "node:events";
import type { Duplex } from "node:stream";
import { afterEach, describe, expect, it } from "vitest";
import { ClosedError, InvalidError } from "../../../nine-door/errors.ts";
import { memoryPair } from "../../../nine-door/transport/index.ts";
import { Cleanup, echo, readAll } from "./helpers.ts";

const cleanup = new Cleanup();
afterEach(() => cleanup.run());

function pair(highWaterMark?: number): [Duplex, Duplex] {
  const [a, b] = memoryPair(highWaterMark === undefined ? {} : { highWaterMark });
  cleanup.stream(a);
  cleanup.stream(b);
  return [a, b];
}

const tick = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

describe("memoryPair", () => {
  it("carries bytes in order both ways, like a socket", async () => {
    const [client, server] = pair();
    echo(server);
    client.end("round trip");
    expect(await readAll(client)).toBe("round trip");
  });

  it("write() returns false while the peer is not reading, and 'drain' fires once it reads", async () => {
    const [a, b] = pair(1024);
    const chunk = Buffer.alloc(256, 7);
    let written = 0;
    while (a.write(chunk)) {
      written += chunk.length;
      expect(written).toBeLessThan(64 * 1024); // backpressure must come
    }
    written += chunk.length;
    // The peer's readable buffer and our writable buffer each hold about a high-water mark.
    expect(written).toBeGreaterThanOrEqual(1024);
    expect(written).toBeLessThanOrEqual(2 * 1024 + chunk.length);

    let drained = false;
    a.once("drain", () => {
      drained = true;
    });
    await tick();
    await tick();
    expect(drained).toBe(false);

    let received = 0;
    b.on("data", (data: Buffer) => {
      received += data.length;
    });
    await once(a, "drain");
    expect(drained).toBe(true);
    await tick();
    expect(received).toBe(written);
  });

  it("end() on one side gives the other 'end' after the data, then both close", async () => {
    const [a, b] = pair();
    const closes = [once(a, "close"), once(b, "close")];
    a.end("last words");
    expect(await readAll(b)).toBe("last words");
    a.resume();
    await Promise.all(closes);
    expect(a.destroyed && b.destroyed).toBe(true);
  });

  it("destroy() on one side gives the other 'end' then 'close'", async () => {
    const [a, b] = pair();
    a.write("in flight");
    await tick();
    a.destroy();
    const events: string[] = [];
    b.on("end", () => events.push("end"));
    const closed = once(b, "close").then(() => events.push("close"));
    expect(await readAll(b)).toBe("in flight");
    await closed;
    expect(events).toEqual(["end", "close"]);
  });

  it("a write waiting for a peer that is destroyed fails with ClosedError", async () => {
    const [a, b] = pair(64);
    while (a.write(Buffer.alloc(64))) {
      // fill until backpressure
    }
    const failed = once(a, "error");
    b.destroy();
    const [err] = await failed;
    expect(err).toBeInstanceOf(ClosedError);
    expect((err as Error).message).toBe("closed: memory pair: write after the peer was destroyed");
    await tick();
    expect(a.destroyed).toBe(true);
  });

  it("a write after the peer was destroyed fails with ClosedError", async () => {
    const [a, b] = pair();
    b.destroy();
    await tick();
    const failed = once(a, "error");
    a.write("anyone there?");
    const [err] = await failed;
    expect(err).toBeInstanceOf(ClosedError);
  });

  it("destroy() with writes still queued drops them quietly, as a socket does", async () => {
    const [a, b] = pair(64);
    const errors: unknown[] = [];
    a.on("error", (e) => errors.push(e));
    let callbacks = 0;
    while (a.write(Buffer.alloc(64), () => callbacks++)) {
      // fill until backpressure
    }
    const closed = once(a, "close");
    a.destroy();
    await closed;
    await tick();
    expect(errors).toEqual([]);
    b.resume();
    await once(b, "end");
  });

  it("refuses a high-water mark below one byte", () => {
    expect(() => memoryPair({ highWaterMark: 0 })).toThrow(InvalidError);
  });
});
