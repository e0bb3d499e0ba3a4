/**
 * `--json` on the verbs that print data: ls, cat of key=value and JSON
 * files, ctl, log show and image verify; and the key=value reader itself,
 * on the appliance's own /proc formats.
 */
import { randomBytes } from "node:crypto";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { fileJson, keyValueJson } from "../../cli/records.ts";
import { writeDiskImage } from "../../flash/index.ts";
import { CommitLog, readPrivateKey } from "../../root-task/index.ts";
import { cohesix, makeScratch, serve, type Scratch, type Served } from "./helpers.ts";

describe("keyValueJson()", () => {
  test("reads /proc/boot as one object: a banner, one pair a line, values with spaces", () => {
    expect(keyValueJson("cohesix 0.1.0\nboard=host\nkernel=Linux 6.1.0 x64\nkernel_uptime_at_start_s=2583.7\nimage=none\n")).toEqual({
      cohesix: "0.1.0",
      board: "host",
      kernel: "Linux 6.1.0 x64",
      kernel_uptime_at_start_s: 2583.7,
      image: "none",
    });
  });

  test("reads /proc/mem (one line of pairs) as one object with numbers", () => {
    expect(keyValueJson("rss=63602688 heap_used=8771720 workers=1\n")).toEqual({ rss: 63602688, heap_used: 8771720, workers: 1 });
  });

  test("reads /proc/workers as an array of records; - is null, true/false are booleans", () => {
    expect(keyValueJson("id=worker-1 status=running budget_ops=- restart=false\nid=worker-2 status=exited budget_ops=5 restart=true\n")).toEqual([
      { id: "worker-1", status: "running", budget_ops: null, restart: false },
      { id: "worker-2", status: "exited", budget_ops: 5, restart: true },
    ]);
  });

  test("reads /proc/sessions: the labelled line under its label, the others under records", () => {
    expect(keyValueJson("limits max_conns=1024 msize=1048600\nid=2 peer=unix!/tmp/s fids=2\nid=7 peer=tcp!127.0.0.1!5 fids=1\n")).toEqual({
      limits: { max_conns: 1024, msize: 1048600 },
      records: [
        { id: 2, peer: "unix!/tmp/s", fids: 2 },
        { id: 7, peer: "tcp!127.0.0.1!5", fids: 1 },
      ],
    });
  });

  test("a single row of a table (id=…) is still an array", () => {
    expect(keyValueJson("id=worker-1 status=running\n")).toEqual([{ id: "worker-1", status: "running" }]);
  });

  test("refuses text that is not key=value, saying so", () => {
    expect(() => keyValueJson("2026-12-06T10:00:00Z attach queen from tcp!1!2 dialect=9P2000\n")).toThrow(/^invalid: not key=value lines/);
    expect(() => keyValueJson("2026-12-06T10:00:00Z attach queen\n")).toThrow(/^invalid: not key=value lines/);
    expect(() => fileJson("just words\n")).toThrow(/^invalid: not key=value lines/);
  });

  test("fileJson() passes JSON through and reads JSON lines as an array", () => {
    expect(fileJson('{"seq":3}\n')).toEqual({ seq: 3 });
    expect(fileJson('{"t":1}\n{"t":2}\n')).toEqual([{ t: 1 }, { t: 2 }]);
  });
});

describe("--json against a served appliance", () => {
  let scratch: Scratch;
  let served: Served;
  const remote = (args: readonly string[]) => cohesix([...args, "--addr", served.addr, "--key", scratch.queenKey], { env: scratch.env });
  beforeAll(async () => {
    scratch = await makeScratch();
    served = await serve(scratch);
  });
  afterAll(async () => {
    await served?.stop();
    await scratch?.remove();
  });

  test("ls --json lists entries with type, mode, length and time", async () => {
    const r = await remote(["ls", "--json", "/"]);
    expect(r.exitCode, r.stderr).toBe(0);
    const entries = JSON.parse(r.stdout) as { name: string; type: string; mode: string; length: number; mtime: string }[];
    expect(entries.map((e) => e.name)).toEqual(["gpu", "log", "proc", "queen", "worker"]);
    for (const e of entries) {
      expect(e.type).toBe("dir");
      expect(e.mode).toMatch(/^d[rwx-]{9}$/);
      expect(Number.isNaN(Date.parse(e.mtime))).toBe(false);
    }
    const file = JSON.parse((await remote(["ls", "--json", "/proc/boot"])).stdout) as { name: string; type: string }[];
    expect(file).toEqual([expect.objectContaining({ name: "/proc/boot", type: "file" })]);
  });

  test("ctl --json prints the reply, and cat --json reads /proc/boot, /proc/workers, /proc/mem and /proc/sessions", async () => {
    const ctl = await remote(["ctl", "--json", '{"spawn":"heartbeat","ticks":1000}']);
    expect(ctl.exitCode, ctl.stderr).toBe(0);
    const reply = JSON.parse(ctl.stdout) as { ok: boolean; worker: string };
    expect(reply.ok).toBe(true);
    expect(reply.worker).toMatch(/^worker-\d+$/);

    const boot = JSON.parse((await remote(["cat", "--json", "/proc/boot"])).stdout) as Record<string, unknown>;
    expect(boot.board).toBe("host");
    expect(boot.cohesix).toMatch(/^\d+\.\d+\.\d+$/);
    const workers = JSON.parse((await remote(["cat", "--json", "/proc/workers"])).stdout) as { id: string; kind: string }[];
    expect(workers).toEqual(expect.arrayContaining([expect.objectContaining({ id: reply.worker, kind: "heartbeat" })]));
    const mem = JSON.parse((await remote(["cat", "--json", "/proc/mem"])).stdout) as Record<string, unknown>;
    expect(typeof mem.rss).toBe("number");
    const sessions = JSON.parse((await remote(["cat", "--json", "/proc/sessions"])).stdout) as { records: { peer: string }[] };
    expect(sessions.records.length).toBeGreaterThan(0);
    const both = JSON.parse((await remote(["cat", "--json", "/proc/boot", "/proc/mem"])).stdout) as Record<string, unknown>;
    expect(Object.keys(both)).toEqual(["/proc/boot", "/proc/mem"]);
    await remote(["kill", reply.worker]);
  });

  test("cat --json of a file that is not key=value exits 1 with one invalid: line", async () => {
    const r = await remote(["cat", "--json", "/log/queen.log"]);
    expect(r.exitCode).toBe(1);
    expect(r.stderr.trimEnd().split("\n")).toHaveLength(1);
    expect(r.stderr).toMatch(/^invalid: not key=value lines/);
  });
});

describe("--json offline", () => {
  let scratch: Scratch;
  beforeAll(async () => {
    scratch = await makeScratch();
  });
  afterAll(async () => {
    await scratch?.remove();
  });

  test("log show --json prints an array of the records", async () => {
    const dir = join(scratch.dir, "state");
    const log = await CommitLog.open(dir, { key: new Uint8Array(randomBytes(32)) });
    await log.append("spawn", { worker: "worker-1" });
    await log.append("kill", { worker: "worker-1" });
    await log.close();
    const r = await cohesix(["log", "show", dir, "--json"], { env: scratch.env });
    expect(r.exitCode, r.stderr).toBe(0);
    const records = JSON.parse(r.stdout) as { seq: number; kind: string; body: unknown; hash: string; ts: string }[];
    expect(records.map((x) => [x.seq, x.kind])).toEqual([
      [1, "spawn"],
      [2, "kill"],
    ]);
    expect(records[0]!.body).toEqual({ worker: "worker-1" });
    expect(records[0]!.hash).toMatch(/^[0-9a-f]{64}$/);
  });

  test("image verify --json prints the verified summary", async () => {
    await cohesix(["keygen", "--release"], { env: scratch.env });
    const key = await readPrivateKey(join(scratch.env.XDG_CONFIG_HOME!, "cohesix", "release.key"));
    const src = join(scratch.dir, "Image");
    await writeFile(src, Buffer.alloc(50_000, 7));
    const img = join(scratch.dir, "small.img");
    await writeDiskImage(img, { board: "test", bootFiles: [{ path: "/Image", src }], releaseKey: key, initramfsDigest: `sha256:${"ab".repeat(32)}`, dataBytes: 8 << 20 });
    const r = await cohesix(["image", "verify", img, "--json"], { env: scratch.env, timeoutMs: 60_000 });
    expect(r.exitCode, r.stderr).toBe(0);
    const v = JSON.parse(r.stdout) as { ok: boolean; file: string; board: string; sha256: string; artefacts: { path: string }[] };
    expect(v).toMatchObject({ ok: true, file: img, board: "test" });
    expect(v.sha256).toMatch(/^[0-9a-f]{64}$/);
    expect(v.artefacts.map((a) => a.path)).toContain("/Image");
  });
});
