/**
 * `/update/` over 9P on the host board (`serve --boot-dir DIR
 * --release-pub FILE`): a bundle streamed into `data` and committed through
 * `ctl`, resumed after the client drops, refused to other roles and to
 * writes before a begin, and signed like `/queen/ctl` under `signed-ctl`.
 */
import { existsSync } from "node:fs";
import net from "node:net";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { beforeAll, describe, expect, test } from "vitest";
import { decodeMessage, encodeMessage, type Fid, type Message } from "../../nine-door/index.ts";
import { ACCESS_OPS, isAuthorized, mintTicket, signEnvelope, type RunningAppliance } from "../../root-task/index.ts";
import { readBootStateFiles } from "../../update/index.ts";
import { digestTree, makeBootDir, makeBundle, releaseKeys, type ReleaseKeys } from "../update/ab-fixture.ts";
import { run, useAppliances } from "./fixture.ts";

const appliances = useAppliances({ prefix: "cohesix-update-dir-" });
let keys: ReleaseKeys;
let n = 0;

beforeAll(async () => {
  keys = await releaseKeys(join(appliances.dir, "release"));
});

/** An appliance serving a fresh A/B boot folder. */
async function start(overrides: { policy?: "open" | "signed-ctl" } = {}) {
  const base = join(appliances.dir, `case-${++n}`);
  const bootDir = await makeBootDir(join(base, "boot"), { key: keys.privateKey });
  const { app, stateDir } = await appliances.start({ bootDir, releasePub: keys.publicPath, ...overrides });
  return { app, stateDir, bootDir, base };
}

/** A queen session with `/update/ctl` open read-write on its own fid. */
async function updateCtl(app: RunningAppliance): Promise<{ root: Fid; ctl: Fid }> {
  const root = await appliances.attachQueen(app);
  const ctl = await root.walk("update/ctl");
  await ctl.open("rw");
  return { root, ctl };
}

/** Writes `bytes` from `from` to `to` on an open data fid, one iounit at a time. */
async function stream(data: Fid, bytes: Uint8Array, from = 0, to = bytes.length): Promise<void> {
  for (let at = from; at < to; ) at += await data.write(bytes.subarray(at, Math.min(to, at + 7000)), at);
}

describe("/update/ over 9P", () => {
  test("a queen streams a bundle into data and commits it: slot b is written and trying, and the queen log says so", async () => {
    const { app, bootDir, base } = await start();
    const bundle = await makeBundle(join(base, "u.bundle"), { key: keys.privateKey, version: "1.1.0" });
    const { root, ctl } = await updateCtl(app);
    expect(await run(ctl, JSON.stringify({ begin: { size: bundle.bytes.length, sha256: bundle.sha256 } }))).toBe("ok offset=0");
    const data = await root.walk("update/data");
    await data.open("w");
    await stream(data, bundle.bytes);
    await data.clunk();
    expect(await root.readText("update/status")).toContain(`transfer=staged\nreceived=${bundle.bytes.length}\nsize=${bundle.bytes.length}\n`);
    expect(await run(ctl, '{"commit":{"tries":3,"allowDowngrade":false}}')).toBe("ok slot=b version=1.1.0 tries=3");
    expect(await readFile(join(bootDir, "b", "Image"))).toEqual(bundle.kernel);
    expect((await readBootStateFiles(bootDir)).state).toMatchObject({ active: "a", try: "b", tries: 3, slots: { a: "good", b: "trying" } });
    const status = await root.readText("update/status");
    expect(status).toMatch(/^slot=a\nstate=good\ntries_left=0\nversion=1\.0\.0\na_state=good\na_version=1\.0\.0\nb_state=trying\nb_version=1\.1\.0\ntransfer=idle\nreceived=0\nsize=0\n$/);
    const log = await root.readText("log/queen.log");
    expect(log).toMatch(/update begin from queen/);
    expect(log).toMatch(/update commit from queen: slot b version 1\.1\.0 written, trying with 3 tries/);
  });

  test("a client that drops mid-stream resumes: begin again answers the verified offset and the transfer completes", async () => {
    const { app, base } = await start();
    const bundle = await makeBundle(join(base, "u.bundle"), { key: keys.privateKey, kernelBytes: 120_000 });
    const begin = JSON.stringify({ begin: { size: bundle.bytes.length, sha256: bundle.sha256 } });
    const first = await updateCtl(app);
    expect(await run(first.ctl, begin)).toBe("ok offset=0");
    const data = await first.root.walk("update/data");
    await data.open("w");
    await stream(data, bundle.bytes, 0, 100_000);
    first.root.client.close();
    const second = await updateCtl(app);
    // The dropped session's data fid is released when the server sees the disconnect.
    let reply = "";
    await expect.poll(async () => (reply = await run(second.ctl, begin)), { timeout: 10_000 }).toMatch(/^ok offset=\d+$/);
    const offset = Number(reply.replace("ok offset=", ""));
    expect(offset).toBeGreaterThan(0);
    expect(offset).toBeLessThanOrEqual(100_000);
    const again = await second.root.walk("update/data");
    await expect.poll(async () => again.open("w").then(() => "open", (err: Error) => err.message), { timeout: 10_000 }).toBe("open");
    await stream(again, bundle.bytes, offset);
    expect(await run(second.ctl, '{"commit":{}}')).toBe("ok slot=b version=1.1.0 tries=3");
  });

  test("data is write-only, open for writing by one fid at a time", async () => {
    const { app, base } = await start();
    const bundle = await makeBundle(join(base, "u.bundle"), { key: keys.privateKey });
    const { root, ctl } = await updateCtl(app);
    await run(ctl, JSON.stringify({ begin: { size: bundle.bytes.length, sha256: bundle.sha256 } }));
    const one = await root.walk("update/data");
    await one.open("w");
    const two = await root.walk("update/data");
    await expect(two.open("w")).rejects.toThrow(/^busy: \/update\/data is open by queen: one transfer at a time/);
    // Another bundle cannot replace the one being written.
    expect(await run(ctl, JSON.stringify({ begin: { size: 5000, sha256: "e".repeat(64) } }))).toMatch(/^Error: busy: a transfer of another bundle is under way/);
    expect(await run(ctl, JSON.stringify({ begin: { size: bundle.bytes.length, sha256: bundle.sha256 } }))).toBe("ok offset=0");
    expect(await root.readText("log/queen.log")).toMatch(/update from queen refused: busy: a transfer of another bundle is under way/);
    const reader = await root.walk("update/data");
    await expect(reader.open("r")).rejects.toThrow(/^permission: open for reading: data is write-only/);
  });

  test("writes to data before a begin, at hostile offsets, or without a session change nothing", async () => {
    const { app, bootDir, stateDir } = await start();
    const before = await digestTree(bootDir);
    const { root } = await updateCtl(app);
    const data = await root.walk("update/data");
    await data.open("w");
    await expect(data.write(Buffer.from("COHESIX-BUNDLE1\n\xff\xff\xff\xff"), 0)).rejects.toThrow(/^invalid: no transfer begun/);
    await expect(data.write(Buffer.alloc(4000, 0x41), 2 ** 52)).rejects.toThrow(/^invalid: no transfer begun/);
    // A peer that never attached: its writes name no fid the server knows.
    const raw = await appliances.dial(app);
    await expect(raw.rpc({ type: "Twrite", fid: 7, offset: 0, data: Buffer.alloc(100, 1) })).rejects.toThrow();
    expect(existsSync(join(stateDir, "update", "staging.bundle"))).toBe(false);
    expect(await digestTree(bootDir)).toBe(before);
    expect(await root.readText("update/status")).toContain("transfer=idle\nreceived=0\nsize=0\n");
  });

  test("raw 9P frames writing to data before a begin are each refused and the session lives on", async () => {
    const { app, bootDir, stateDir } = await start();
    const before = await digestTree(bootDir);
    const port = Number(app.dialString.split("!")[2]);
    const sock = net.connect({ host: "127.0.0.1", port });
    const replies = new Map<number, Message>();
    const waiters = new Map<number, (m: Message) => void>();
    let buf = Buffer.alloc(0);
    sock.on("data", (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      while (buf.length >= 4 && buf.length >= buf.readUInt32LE(0)) {
        const size = buf.readUInt32LE(0);
        const decoded = decodeMessage(buf.subarray(0, size));
        buf = buf.subarray(size);
        if (!decoded.ok) continue;
        const m = decoded.message;
        replies.set(m.tag, m);
        waiters.get(m.tag)?.(m);
      }
    });
    await new Promise<void>((resolve, reject) => sock.once("connect", resolve).once("error", reject));
    const ask = (msg: Message): Promise<Message> =>
      new Promise((resolve) => {
        waiters.set(msg.tag, resolve);
        sock.write(encodeMessage(msg));
      });
    try {
      expect((await ask({ type: "Tversion", tag: 0xffff, msize: 65_536, version: "9P2000" })).type).toBe("Rversion");
      const aname = mintTicket({ role: "queen", sub: "queen" }, appliances.queenKey);
      expect((await ask({ type: "Tattach", tag: 1, fid: 0, afid: 0xffffffff, uname: "queen", aname })).type).toBe("Rattach");
      expect((await ask({ type: "Twalk", tag: 2, fid: 0, newfid: 1, names: ["update", "data"] })).type).toBe("Rwalk");
      expect((await ask({ type: "Topen", tag: 3, fid: 1, mode: 1 })).type).toBe("Ropen");
      // Pipelined, at hostile offsets: each answered on its own.
      const writes = [
        { type: "Twrite", tag: 10, fid: 1, offset: 0, data: Buffer.from("COHESIX-BUNDLE1\n\u0000\u0000\u0010\u0000{}") },
        { type: "Twrite", tag: 11, fid: 1, offset: 2 ** 40, data: Buffer.alloc(100, 7) },
        { type: "Twrite", tag: 12, fid: 1, offset: 0, data: Buffer.alloc(60_000, 0xff) },
      ] as const;
      const answers = await Promise.all(writes.map((w) => ask(w as unknown as Message)));
      for (const a of answers) expect(a).toMatchObject({ type: "Rerror", ename: expect.stringMatching(/^invalid: no transfer begun/) });
      expect((await ask({ type: "Twalk", tag: 20, fid: 0, newfid: 2, names: ["update", "status"] })).type).toBe("Rwalk");
      expect((await ask({ type: "Topen", tag: 21, fid: 2, mode: 0 })).type).toBe("Ropen");
      const status = (await ask({ type: "Tread", tag: 22, fid: 2, offset: 0, count: 4096 })) as Extract<Message, { type: "Rread" }>;
      expect(Buffer.from(status.data).toString("utf8")).toContain("transfer=idle\nreceived=0\nsize=0\n");
    } finally {
      sock.destroy();
    }
    expect(existsSync(join(stateDir, "update", "staging.bundle"))).toBe(false);
    expect(await digestTree(bootDir)).toBe(before);
  });

  test("other roles see no /update/ and may not reach its files", async () => {
    const { app } = await start();
    const client = await appliances.dial(app);
    const worker = await client.attach({ uname: "worker-heartbeat:worker-1", aname: mintTicket({ role: "worker-heartbeat", sub: "worker-1" }, app.app.bootKey) });
    expect((await worker.readdir()).map((e) => e.name)).not.toContain("update");
    for (const path of ["update", "update/ctl", "update/data", "update/status"]) {
      await expect(worker.walk(path), path).rejects.toThrow(/^permission: /);
    }
  });
});

test("policy: only the queen may do anything under /update; every other role nothing", () => {
  const others = [
    { role: "worker-heartbeat", subject: "worker-1" },
    { role: "worker-gpu", subject: "worker-2", mounts: ["/gpu/GPU-0"] },
    { role: "worker-camera", subject: "worker-3" },
    { role: "fleet", subject: "fleet" },
    { role: "bridge", subject: "bridge" },
  ];
  for (const path of ["/update", "/update/ctl", "/update/data", "/update/status"]) {
    for (const op of ACCESS_OPS) {
      for (const caller of others) expect(isAuthorized(caller, path, op), `${caller.role} ${op} ${path}`).toBe(false);
    }
    for (const op of ["walk", "read", "write", "stat"] as const) expect(isAuthorized({ role: "queen", subject: "queen" }, path, op), `queen ${op} ${path}`).toBe(true);
  }
});

describe("/update/ctl under --policy signed-ctl", () => {
  test("a plain command is refused; an envelope signed with the queen key runs and takes its counter", async () => {
    const { app } = await start({ policy: "signed-ctl" });
    const { root, ctl } = await updateCtl(app);
    expect(await run(ctl, '{"abort":true}')).toMatch(/^Error: invalid: policy signed-ctl: wrap the command/);
    const ctr = Number((await root.readText("queen/ctr")).trim()) + 1;
    expect(await run(ctl, signEnvelope('{"abort":true}', appliances.queenKey, { ctr }))).toBe("ok aborted");
    expect(Number((await root.readText("queen/ctr")).trim())).toBe(ctr);
    expect(await run(ctl, signEnvelope('{"abort":true}', appliances.queenKey, { ctr }))).toMatch(/^Error: permission: replay/);
  });
});
