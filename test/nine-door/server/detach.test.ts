/**
 * An attach lets go of what it holds when it ends: the session calls the
 * attachment's `detach` once when its connection closes and when a
 * Tversion resets it, so per-attach state (the root task's expiry timer)
 * does not outlive the session.
 */
import { afterEach, expect, test } from "vitest";
import { NOFID, type Attachment } from "../../../nine-door/index.ts";
import { RawConn, startServer, type TestServer } from "../harness.ts";

const servers: TestServer[] = [];
afterEach(async () => {
  for (const s of servers.splice(0)) await s.close();
});

async function serverCountingDetaches(): Promise<{ server: TestServer; detached: string[] }> {
  const detached: string[] = [];
  const server = await startServer({
    attach: (aname): Attachment => ({ caller: { role: "queen", subject: aname }, detach: () => detached.push(aname) }),
  });
  servers.push(server);
  return { server, detached };
}

async function waitUntil(what: string, ok: () => boolean): Promise<void> {
  for (let i = 0; i < 200 && !ok(); i++) await new Promise((r) => setTimeout(r, 25));
  if (!ok()) throw new Error(`timed out waiting for ${what}`);
}

test("detach runs once for each attach when the connection closes", async () => {
  const { server, detached } = await serverCountingDetaches();
  const conn = await RawConn.ready(server.port, "9P2000.L");
  expect((await conn.call({ type: "Tattach", fid: 1, afid: NOFID, uname: "q", aname: "one", nUname: 0 })).type).toBe("Rattach");
  expect((await conn.call({ type: "Tattach", fid: 2, afid: NOFID, uname: "q", aname: "two", nUname: 0 })).type).toBe("Rattach");
  expect(detached).toEqual([]);
  conn.close();
  // RawConn.ready attached "ok" first.
  await waitUntil("three detaches", () => detached.length === 3);
  expect(detached.sort()).toEqual(["ok", "one", "two"]);
});

test("a Tversion reset detaches the connection's attaches, and a later close does not detach them again", async () => {
  const { server, detached } = await serverCountingDetaches();
  const conn = await RawConn.ready(server.port, "9P2000.L");
  expect((await conn.call({ type: "Tattach", fid: 1, afid: NOFID, uname: "q", aname: "first", nUname: 0 })).type).toBe("Rattach");
  expect((await conn.call({ type: "Tversion", msize: 65536, version: "9P2000.L" }, 0xffff)).type).toBe("Rversion");
  expect(detached.sort()).toEqual(["first", "ok"]);
  expect((await conn.call({ type: "Tattach", fid: 1, afid: NOFID, uname: "q", aname: "second", nUname: 0 })).type).toBe("Rattach");
  conn.close();
  await waitUntil("the second detach", () => detached.length === 3);
  expect(detached.slice(2)).toEqual(["second"]);
});
