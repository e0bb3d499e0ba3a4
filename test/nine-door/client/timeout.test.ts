/**
 * The client's timeouts against peers that accept and then say nothing: a
 * raw TCP server that never answers (a paused VM behind QEMU's host
 * forward looks like this), and one that answers Tversion but never Tattach.
 */
import { createServer, type Server, type Socket } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { FrameSplitter, NineClient, NoAnswerError, decodeMessage, dial, encodeMessageChunks } from "../../../nine-door/index.ts";

const servers: Server[] = [];
const sockets: Socket[] = [];
afterEach(async () => {
  for (const s of sockets.splice(0)) s.destroy();
  await Promise.all(servers.splice(0).map((s) => new Promise((r) => s.close(r))));
});

/** A TCP server on an ephemeral 127.0.0.1 port; `onFrame` sees each 9P frame and may answer. */
async function rawServer(onFrame?: (sock: Socket, type: string, tag: number) => void): Promise<string> {
  const server = createServer((sock) => {
    sockets.push(sock);
    const splitter = new FrameSplitter(1 << 20);
    sock.on("data", (chunk) => {
      splitter.push(chunk);
      for (let frame = splitter.next(); frame; frame = splitter.next()) {
        const res = decodeMessage(frame);
        if (res.ok) onFrame?.(sock, res.message.type, res.message.tag);
      }
    });
    sock.on("error", () => {});
  });
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const { port } = server.address() as { port: number };
  return `tcp!127.0.0.1!${port}`;
}

/** Answers Tversion as a 9P2000 server would, and nothing else. */
function versionOnly(sock: Socket, type: string, tag: number): void {
  if (type !== "Tversion") return;
  for (const c of encodeMessageChunks({ type: "Rversion", tag, msize: 8192, version: "9P2000" })) sock.write(c);
}

describe("NineClient timeouts", () => {
  it("gives up on a server that accepts and never answers Tversion, naming the request", async () => {
    const addr = await rawServer();
    const conn = await dial(addr);
    const err = await NineClient.connect(conn, { dialect: "9P2000", timeoutMs: 300 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(NoAnswerError);
    expect((err as NoAnswerError).request).toBe("Tversion");
    expect((err as Error).message).toBe("io: no answer to Tversion in 0.3 s");
    // The socket is given up, so nothing holds the process open.
    expect(conn.destroyed).toBe(true);
  });

  it("gives up on an attach the server never answers, after Tversion went through", async () => {
    const addr = await rawServer(versionOnly);
    const client = await NineClient.connect(await dial(addr), { dialect: "9P2000", timeoutMs: 300 });
    const err = await client.attach({ aname: "ticket" }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(NoAnswerError);
    expect((err as NoAnswerError).request).toBe("Tattach");
    expect((err as NoAnswerError).errorClass).toBe("io");
    client.close();
  });

  it("waits forever by default and when the timeout is 0", async () => {
    const addr = await rawServer(versionOnly);
    const client = await NineClient.connect(await dial(addr), { dialect: "9P2000" });
    expect(client.timeoutMs).toBe(0);
    const attaching = client.attach({ aname: "ticket" });
    const outcome = await Promise.race([attaching.then(() => "answered", () => "failed"), new Promise((r) => setTimeout(() => r("still waiting"), 500))]);
    expect(outcome).toBe("still waiting");
    client.close();
    await expect(attaching).rejects.toThrow(/^closed: /);
  });

  it("takes a changed timeout for later requests, and leaves requests with their own signal alone", async () => {
    const addr = await rawServer(versionOnly);
    const client = await NineClient.connect(await dial(addr), { dialect: "9P2000" });
    client.timeoutMs = 200;
    await expect(client.attach({ aname: "t" })).rejects.toBeInstanceOf(NoAnswerError);
    const own = new AbortController();
    const reading = client.rpc({ type: "Tstat", fid: 0 }, own.signal);
    const outcome = await Promise.race([reading.then(() => "answered", () => "failed"), new Promise((r) => setTimeout(() => r("still waiting"), 500))]);
    expect(outcome).toBe("still waiting");
    own.abort();
    await expect(reading).rejects.toThrow();
    client.close();
  });

  it("refuses a negative timeout as invalid", async () => {
    const addr = await rawServer(versionOnly);
    const client = await NineClient.connect(await dial(addr), { dialect: "9P2000" });
    expect(() => (client.timeoutMs = -1)).toThrow(/^invalid: timeoutMs must be a number ≥ 0/);
    client.close();
  });
});
