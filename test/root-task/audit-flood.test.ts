/**
 * An audit flood from peers without a ticket (issue #11 item 3), replayed
 * with raw sockets against a served appliance whose state directory is a
 * 3 MiB tmpfs: 30,000 hand-built Tattach frames with forged tickets, from
 * 127.0.0.1 and from 40 other loopback addresses. Afterwards the refusals
 * are a bounded number of aggregated lines, the authenticated history (the
 * spawn line) is still in /log/queen.log and on disk, the state volume
 * still has room, and queen ctl still commits.
 */
import { execFileSync } from "node:child_process";
import { mkdtemp, mkdir, readFile, rm, stat } from "node:fs/promises";
import { statfsSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { NineClient, type Fid } from "../../nine-door/index.ts";
import { mintTicket, serveAppliance, showLog, writeKeyPair, type RunningAppliance } from "../../root-task/index.ts";
import { waitFor } from "../cli/appliance-helpers.ts";

const FLOOD = 30_000;
/** Aggregation in this test: 2 s windows, 4 sources tracked, bursts of 4 a source and 8 in /log/queen.log, one more line a second. */
const WINDOW_MS = 2000;
const SOURCES = 4;
const EXTRA_ADDRESSES = 40;

let dir: string;
let vol: string;
let mounted = false;
let app: RunningAppliance | undefined;
let client: NineClient | undefined;
let root: Fid;
let forged: string;

/** A 9P string: length[2] then UTF-8 bytes. */
function str9(s: string): Buffer {
  const b = Buffer.from(s, "utf8");
  const len = Buffer.alloc(2);
  len.writeUInt16LE(b.length);
  return Buffer.concat([len, b]);
}

/** size[4] type[1] tag[2] body. */
function frame(type: number, tag: number, body: Buffer): Buffer {
  const head = Buffer.alloc(7);
  head.writeUInt32LE(7 + body.length, 0);
  head.writeUInt8(type, 4);
  head.writeUInt16LE(tag, 5);
  return Buffer.concat([head, body]);
}

function tversion(): Buffer {
  const msize = Buffer.alloc(4);
  msize.writeUInt32LE(8192);
  return frame(100, 0xffff, Buffer.concat([msize, str9("9P2000")]));
}

function tattach(tag: number, fid: number, aname: string): Buffer {
  const ids = Buffer.alloc(8);
  ids.writeUInt32LE(fid, 0);
  ids.writeUInt32LE(0xffffffff, 4);
  return frame(104, tag, Buffer.concat([ids, str9("queen"), str9(aname)]));
}

/**
 * `count` refused attaches from `localAddress`, on as many connections as
 * it takes (the server drops a connection that has not attached within its
 * pre-auth deadline); resolves with how many were answered Rerror.
 */
async function flood(port: number, localAddress: string, count: number, aname: string): Promise<number> {
  let refused = 0;
  for (let tries = 0; refused < count && tries < 100; tries++) refused += await floodOnce(port, localAddress, count - refused, aname);
  return refused;
}

/**
 * One connection from `localAddress`: Tversion, then up to `count` Tattach
 * frames in pipelined rounds of 128; resolves with how many were answered
 * Rerror before it ended.
 */
function floodOnce(port: number, localAddress: string, count: number, aname: string): Promise<number> {
  return new Promise((resolve) => {
    const sock = net.connect({ host: "127.0.0.1", port, localAddress });
    let buf = Buffer.alloc(0);
    let refused = 0;
    let sent = 0;
    let answered = 0;
    let inRound = 0;
    const round = () => {
      const n = Math.min(128, count - sent);
      if (n <= 0) return sock.end();
      const frames: Buffer[] = [];
      for (let i = 0; i < n; i++) frames.push(tattach(i, 1000 + i, aname));
      sent += n;
      inRound = n;
      sock.write(Buffer.concat(frames));
    };
    sock.on("connect", () => sock.write(tversion()));
    sock.on("data", (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      while (buf.length >= 4 && buf.length >= buf.readUInt32LE(0)) {
        const size = buf.readUInt32LE(0);
        const type = buf.readUInt8(4);
        buf = buf.subarray(size);
        if (type === 101) {
          round();
          continue;
        }
        if (type === 107) refused++;
        answered++;
        if (--inRound === 0) round();
      }
      void answered;
    });
    sock.on("error", () => resolve(refused));
    sock.on("close", () => resolve(refused));
  });
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "cohesix-audit-flood-"));
  vol = join(dir, "state");
  await mkdir(vol);
  execFileSync("mount", ["-t", "tmpfs", "-o", "size=3m", "tmpfs", vol]);
  mounted = true;
  const keys = await writeKeyPair(join(dir, "keys"), { name: "queen" });
  const other = await writeKeyPair(join(dir, "other"), { name: "queen" });
  forged = mintTicket({ role: "queen", sub: "queen" }, other.privateKey);
  app = await serveAppliance({ board: "host", listen: "127.0.0.1:0", stateDir: vol, queenPub: keys.publicPath, audit: { windowMs: WINDOW_MS, maxSources: SOURCES, burst: 4, refillMs: 1000, viewBurst: 8, viewRefillMs: 1000 } });
  client = await NineClient.dial(app.dialString, { dialect: "9P2000" });
  root = await client.attach({ uname: "queen", aname: mintTicket({ role: "queen", sub: "queen" }, keys.privateKey) });
}, 60_000);

afterAll(async () => {
  client?.close();
  // Unmount even when stopping fails, so no tmpfs is left behind.
  await app?.stop("test done").catch(() => undefined);
  if (mounted) execFileSync("umount", ["-l", vol]);
  await rm(dir, { recursive: true, force: true });
});

async function ctl(command: string): Promise<string> {
  return root.with("queen/ctl", async (f) => {
    await f.open("rw");
    await f.write(command);
    return (await f.readAll(0)).toString("utf8").trim();
  });
}

describe("a flood of refused attaches on a 3 MiB state volume", () => {
  test("leaves the authenticated history, room on the volume, and a working queen ctl", { timeout: 180_000 }, async () => {
    const port = Number(app!.dialString.split("!")[2]);
    expect(JSON.parse(await ctl('{"spawn":"heartbeat","ticks":100000}'))).toMatchObject({ ok: true, worker: "worker-1" });
    expect(await root.readText("log/queen.log")).toMatch(/spawned worker-1 role=heartbeat/);

    // Half from 127.0.0.1 on a few connections, half from 40 other addresses.
    const started = Date.now();
    const jobs: Promise<number>[] = [];
    for (let i = 0; i < 5; i++) jobs.push(flood(port, "127.0.0.1", FLOOD / 10, forged));
    for (let i = 0; i < EXTRA_ADDRESSES; i++) jobs.push(flood(port, `127.0.0.${i + 2}`, FLOOD / 2 / EXTRA_ADDRESSES, forged));
    const refused = (await Promise.all(jobs)).reduce((a, b) => a + b, 0);
    expect(refused).toBe(FLOOD);

    // Authenticated history is still in the view and on disk.
    expect(await root.readText("log/queen.log")).toMatch(/spawned worker-1 role=heartbeat/);
    expect(await readFile(join(vol, "queen.log"), "utf8")).toMatch(/spawned worker-1 role=heartbeat/);
    // Refusals live on disk in their own, small file.
    expect((await stat(join(vol, "refused.log"))).size).toBeLessThanOrEqual(128 << 10);
    const fs = statfsSync(vol);
    expect(fs.bavail * fs.bsize).toBeGreaterThan(1 << 20);

    // Queen ctl still commits.
    expect(JSON.parse(await ctl('{"spawn":"heartbeat","ticks":100000}'))).toMatchObject({ ok: true, worker: "worker-2" });
    expect(JSON.parse(await ctl('{"budget":{"ops":77}}'))).toMatchObject({ ok: true });
    const { records } = await showLog(vol);
    expect(records.filter((r) => r.kind === "spawn")).toHaveLength(2);

    // The window closes: the counts go to /log/refused.log, a total to /log/queen.log.
    const counts = await waitFor("the aggregated refusal lines", async () => {
      const text = await root.readText("log/refused.log");
      return /refused \d+ more attaches from tcp!127\.0\.0\.\d+ in 2 s: permission: ticket signature does not verify/.test(text) && /refused \d+ requests from \d+ other peers in 2 s/.test(text) ? text : undefined;
    });
    const elapsedS = (Date.now() - started) / 1000;
    const windows = Math.ceil(elapsedS / (WINDOW_MS / 1000)) + 1;
    // Per window at most: per tracked source a burst, one line a second and a count; one "other peers" line; one total.
    expect(counts.split("\n").filter(Boolean).length).toBeLessThanOrEqual(windows * (SOURCES * (4 + WINDOW_MS / 1000 + 1) + 2));
    const log = await root.readText("log/queen.log");
    expect(log).toMatch(/refused \d+ more requests without a ticket from \d+ peer\(s\)( and \d+ other\(s\))? in 2 s: counts in \/log\/refused\.log/);
    // The view of authenticated history: 8 full lines, one more a second, one total a window.
    const refusalLines = log.split("\n").filter((l) => / refused /.test(l));
    expect(refusalLines.length).toBeLessThanOrEqual(8 + Math.ceil(elapsedS) + windows);
    // The first refusal from a peer is still there in full.
    expect(log).toMatch(/refused peer tcp!127\.0\.0\.\d+!\d+ Tattach: permission: ticket signature does not verify/);
  });
});
