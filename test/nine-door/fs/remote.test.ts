/**
 * Remote mounts: two real NineServers on 127.0.0.1, the inner one mounted
 * inside the outer one, driven by clients of the outer server in both
 * dialects (and with the mount itself speaking either dialect).
 */
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import {
  AppendLog,
  BaseNode,
  BusyError,
  ClosedError,
  CtlFile,
  Directory,
  NineClient,
  NineError,
  NineServer,
  NotFoundError,
  PermissionError,
  QidType,
  RemoteMount,
  StaticFile,
  dial,
  listen,
  type Dialect,
  type Fid,
  type Listener,
  type OpenFile,
  type OpenFlags,
  type RequestContext,
} from "../../../nine-door/index.ts";
import { READ, bytes, caught, ctx, runProviderConformance, text } from "./conformance.ts";

/** A file whose reads block until the request is cancelled; counts both. */
class SlowFile extends BaseNode {
  started = 0;
  cancelled = 0;
  constructor() {
    super("slow", { mode: 0o444, mtimeMs: 0 });
  }
  override open(flags: OpenFlags): OpenFile {
    this.checkAccess(flags, { read: true, write: false });
    return {
      read: (_offset: number, _count: number, c: RequestContext) =>
        new Promise<Uint8Array>((_resolve, reject) => {
          this.started++;
          c.signal.addEventListener("abort", () => {
            this.cancelled++;
            reject(new ClosedError("read cancelled"));
          }, { once: true });
        }),
      write: () => 0,
    };
  }
}

/** A file whose open answers busy (a fully leased GPU). */
class BusyFile extends BaseNode {
  constructor() {
    super("leased", { mode: 0o666, mtimeMs: 0 });
  }
  override open(): OpenFile {
    throw new BusyError("GPU-0 is fully leased");
  }
}

interface Inner {
  readonly server: NineServer;
  readonly listener: Listener;
  readonly port: number;
  readonly slow: SlowFile;
  readonly status: AppendLog;
  close(): Promise<void>;
}

async function startInner(port = 0): Promise<Inner> {
  const slow = new SlowFile();
  const status = new AppendLog("status", { writable: true, mtimeMs: 0 });
  const root = new Directory("/", {
    mtimeMs: 0,
    children: [
      new Directory("GPU-0", {
        mtimeMs: 0,
        children: [
          new StaticFile("info", '{"id":"GPU-0","memory_mb":8192}\n', { mtimeMs: 0 }),
          new CtlFile("ctl", (cmd) => `ok ${cmd.trim()}`),
          status,
          new StaticFile("notes", "hello\n", { writable: true, mtimeMs: 0 }),
          slow,
          new BusyFile(),
        ],
      }),
      new Directory("GPU-1", {
        mtimeMs: 0,
        children: [
          new StaticFile("info", '{"id":"GPU-1"}\n'),
          // Walks below it take 600 ms to answer (a remote that stalls).
          new Directory("stalled", { entries: () => new Promise((resolve) => setTimeout(() => resolve([]), 600)) }),
        ],
      }),
    ],
  });
  const server = new NineServer({ root, attach: () => ({ caller: { role: "bridge", subject: "bridge" } }) });
  const listener = await listen(`tcp!127.0.0.1!${port}`, (conn, peer) => server.accept(conn, peer.remote));
  const bound = listener.address.kind === "unix" ? 0 : listener.address.port;
  return {
    server,
    listener,
    port: bound,
    slow,
    status,
    async close() {
      server.close();
      await listener.close();
    },
  };
}

function mountOf(
  name: string,
  port: number,
  dialect: Dialect,
  extra: { connectTimeoutMs?: number; maxDelayMs?: number; requestTimeoutMs?: number } = {},
): RemoteMount {
  return new RemoteMount(name, {
    dial: (signal) => dial(`tcp!127.0.0.1!${port}`, { signal, timeoutMs: 1000 }),
    attach: { uname: "bridge", aname: "bridge-ticket" },
    connect: { dialect, msize: 65536 },
    initialDelayMs: 20,
    maxDelayMs: extra.maxDelayMs ?? 100,
    ...(extra.connectTimeoutMs === undefined ? {} : { connectTimeoutMs: extra.connectTimeoutMs }),
    ...(extra.requestTimeoutMs === undefined ? {} : { requestTimeoutMs: extra.requestTimeoutMs }),
    mtimeMs: 0,
  });
}

/** Fids the inner server holds, summed over its sessions. */
function innerFids(inner: Inner): number {
  return inner.server.sessionInfo().reduce((n, s) => n + s.fids, 0);
}

let inner: Inner;
let outer: { server: NineServer; listener: Listener; port: number; local: StaticFile };
const mounts: RemoteMount[] = [];
const clients: NineClient[] = [];

beforeAll(async () => {
  inner = await startInner();
  const local = new StaticFile("boot", "cohesix\n", { mtimeMs: 0 });
  // "gpu" speaks 9P2000 to the inner server (the default), "gpu-l" 9P2000.L.
  const gpu = new RemoteMount("gpu", {
    dial: (signal) => dial(`tcp!127.0.0.1!${inner.port}`, { signal }),
    attach: { aname: "bridge-ticket" },
    mtimeMs: 0,
  });
  const gpuL = mountOf("gpu-l", inner.port, "9P2000.L");
  mounts.push(gpu, gpuL);
  const root = new Directory("/", { mtimeMs: 0, children: [new Directory("proc", { children: [local] }), gpu, gpuL] });
  const server = new NineServer({ root, attach: () => ({ caller: { role: "queen", subject: "queen" } }) });
  const listener = await listen("tcp!127.0.0.1!0", (conn, peer) => server.accept(conn, peer.remote));
  outer = { server, listener, port: listener.address.kind === "unix" ? 0 : listener.address.port, local };
  await gpu.ready(5000);
  await gpuL.ready(5000);
});

afterAll(async () => {
  for (const c of clients) c.close();
  for (const m of mounts) m.close();
  outer.server.close();
  await outer.listener.close();
  await inner.close();
});

async function outerRoot(dialect: Dialect): Promise<Fid> {
  const client = await NineClient.connect(await dial(`tcp!127.0.0.1!${outer.port}`), { dialect, msize: 65536 });
  clients.push(client);
  return client.attach({ uname: "queen", aname: "ok" });
}

const cases: Array<[Dialect, string]> = [
  ["9P2000", "gpu"],
  ["9P2000", "gpu-l"],
  ["9P2000.L", "gpu"],
  ["9P2000.L", "gpu-l"],
];

describe.each(cases)("a %s client of the outer server, through /%s", (dialect, mount) => {
  let root: Fid;
  beforeAll(async () => {
    root = await outerRoot(dialect);
  });

  it("lists the remote root and a remote directory", async () => {
    expect((await root.list(mount)).map((e) => e.name)).toEqual(["GPU-0", "GPU-1"]);
    const entries = await root.list(`${mount}/GPU-0`);
    expect(entries.map((e) => e.name)).toEqual(["info", "ctl", "status", "notes", "slow", "leased"]);
    const status = entries.find((e) => e.name === "status")!;
    expect(status.isAppend).toBe(true);
    expect(entries.find((e) => e.name === "info")!.isDir).toBe(false);
    expect((await root.list(mount)).every((e) => e.isDir)).toBe(true);
  });

  it("reads a remote file", async () => {
    expect(await root.readText(`${mount}/GPU-0/info`)).toBe('{"id":"GPU-0","memory_mb":8192}\n');
    expect(await root.readText(`${mount}/GPU-1/info`)).toBe('{"id":"GPU-1"}\n');
  });

  it("writes a ctl command and reads the reply on the same fid", async () => {
    await root.with(`${mount}/GPU-0/ctl`, async (f) => {
      await f.open("rw");
      expect(await f.write("LEASE worker-1 mem=1024 streams=1 priority=1\n")).toBe(45);
      expect((await f.readAll()).toString()).toBe("ok LEASE worker-1 mem=1024 streams=1 priority=1\n");
    });
  });

  it("appends to a remote append-only file and sees the version bump in stat", async () => {
    const before = await root.statPath(`${mount}/GPU-0/status`);
    await root.writeFile(`${mount}/GPU-0/status`, `QUEUED ${dialect} ${mount}\n`);
    const after = await root.statPath(`${mount}/GPU-0/status`);
    expect(after.qid.path).toBe(before.qid.path);
    expect(after.qid.version).toBe(before.qid.version + 1);
    expect(after.length).toBe(inner.status.stat().length);
    expect(after.isAppend).toBe(true);
    expect((await root.readText(`${mount}/GPU-0/status`)).endsWith(`QUEUED ${dialect} ${mount}\n`)).toBe(true);
  });

  it("stats remote files with their size, permissions and kind", async () => {
    const info = await root.statPath(`${mount}/GPU-0/info`);
    expect(info.name).toBe("info");
    expect(info.length).toBe(32);
    expect(info.mode & 0o777).toBe(0o444);
    expect(info.isDir).toBe(false);
    const dir = await root.statPath(`${mount}/GPU-0`);
    expect(dir.isDir).toBe(true);
    expect(dir.qid.type & QidType.DIR).toBe(QidType.DIR);
    expect(dir.mode & 0o777).toBe(0o555);
  });

  it("answers not found for a missing remote name, and walks back up with ..", async () => {
    const err = await caught(() => root.statPath(`${mount}/GPU-9`));
    expect(err).toBeInstanceOf(NineError);
    expect((err as NineError).errorClass).toBe("not found");
    expect(await root.readText(`${mount}/GPU-0/../GPU-1/info`)).toBe('{"id":"GPU-1"}\n');
  });

  it("passes a remote busy: through as busy:", async () => {
    const err = await caught(() => root.writeFile(`${mount}/GPU-0/leased`, "x"));
    expect((err as NineError).errorClass).toBe("busy");
    if (dialect === "9P2000" && mount === "gpu") expect((err as Error).message).toBe("busy: GPU-0 is fully leased");
  });

  it("keeps remote qids stable and apart from local ones", async () => {
    const a = await root.statPath(`${mount}/GPU-0/info`);
    const b = await root.statPath(`${mount}/GPU-0/info`);
    expect(b.qid.path).toBe(a.qid.path);
    const listed = (await root.list(`${mount}/GPU-0`)).find((e) => e.name === "info")!;
    expect(listed.qid.path).toBe(a.qid.path);
    const local = await root.statPath("proc/boot");
    const mountPoint = await root.statPath(mount);
    const remote = [...(await root.list(mount)), ...(await root.list(`${mount}/GPU-0`))].map((e) => e.qid.path);
    expect(new Set(remote).size).toBe(remote.length);
    for (const p of remote) {
      expect(p).not.toBe(local.qid.path);
      expect(p).not.toBe(mountPoint.qid.path);
      expect(p >> 63n).toBe(1n);
    }
    expect(local.qid.path >> 63n).toBe(0n);
  });

  it("cancels a blocked remote read when the outer client flushes it", async () => {
    const started = inner.slow.started;
    const cancelled = inner.slow.cancelled;
    const f = await root.walk(`${mount}/GPU-0/slow`);
    try {
      await f.open("r");
      const ac = new AbortController();
      const read = f.read(0, 100, ac.signal).catch((e: unknown) => e);
      await vi.waitFor(() => expect(inner.slow.started).toBe(started + 1));
      ac.abort(new ClosedError("flushed by test"));
      expect(await read).toBeInstanceOf(ClosedError);
      // The remote read got its own Tflush and was cancelled on the inner server.
      await vi.waitFor(() => expect(inner.slow.cancelled).toBe(cancelled + 1));
      await vi.waitFor(() => expect(inner.server.sessionInfo().every((s) => s.outstanding === 0)).toBe(true));
      // The outer session is not stuck either.
      expect(await root.readText(`${mount}/GPU-1/info`)).toBe('{"id":"GPU-1"}\n');
    } finally {
      await f.clunk();
    }
  });
});

describe("remote fids", () => {
  it("do not leak on the inner server after many operations, failures and flushes", async () => {
    const baseline = inner.server.sessionInfo().length; // one attach root per mount connection
    for (const dialect of ["9P2000", "9P2000.L"] as const) {
      const root = await outerRoot(dialect);
      for (let i = 0; i < 20; i++) {
        for (const mount of ["gpu", "gpu-l"]) {
          await root.list(mount);
          await root.list(`${mount}/GPU-0`);
          await root.readText(`${mount}/GPU-0/info`);
          await root.statPath(`${mount}/GPU-0/notes`);
          await root.writeFile(`${mount}/GPU-0/notes`, `n${i}\n`);
          await root.writeFile(`${mount}/GPU-0/ctl`, "RELEASE worker-1 done\n");
          await caught(() => root.statPath(`${mount}/GPU-0/nope`));
          await caught(() => root.writeFile(`${mount}/GPU-0/leased`, "x"));
          await caught(() => root.writeFile(`${mount}/GPU-0/info`, "x"));
        }
      }
      // Flushed reads, and fids clunked while a read is blocked.
      const f = await root.walk("gpu/GPU-0/slow");
      await f.open("r");
      const ac = new AbortController();
      const r = f.read(0, 10, ac.signal).catch(() => {});
      await vi.waitFor(() => expect(inner.slow.started).toBeGreaterThan(0));
      ac.abort();
      await r;
      const g = await root.walk("gpu-l/GPU-0/slow");
      await g.open("r");
      const blocked = g.read(0, 10).catch(() => {});
      await new Promise((res) => setTimeout(res, 20));
      await f.clunk();
      await g.clunk();
      await blocked;
    }
    await vi.waitFor(() => {
      expect(inner.server.sessionInfo().length).toBe(baseline);
      expect(innerFids(inner)).toBe(baseline);
    });
  });
});

describe("a remote that goes away", () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it("answers busy: <mount> unavailable while down, reports the state, and recovers when it returns", async () => {
    let bridge = await startInner();
    const port = bridge.port;
    const mount = mountOf("gpu", port, "9P2000", { connectTimeoutMs: 500 });
    mounts.push(mount);
    const states: string[] = [];
    mount.onState((state, detail) => states.push(`${state}${state === "down" ? `:${detail.length > 0}` : ""}`));
    await mount.ready(5000);
    expect(mount.connected).toBe(true);
    const before = await mount.walk("GPU-0", ctx());
    const info = await before.walk("info", ctx());
    const file = await info.open(READ, ctx());
    expect(text(await file.read(0, 100, ctx()))).toContain("GPU-0");

    await bridge.close();
    await vi.waitFor(() => expect(mount.state).toBe("down"));
    expect(states).toEqual(["connected", "down:true"]);
    for (const op of [() => mount.list(ctx()), () => mount.walk("GPU-0", ctx()), () => before.walk("info", ctx()), () => info.open(READ, ctx())]) {
      const started = Date.now();
      const err = await caught(op);
      expect(err).toBeInstanceOf(BusyError);
      expect((err as Error).message).toMatch(/^busy: gpu unavailable: /);
      expect(Date.now() - started).toBeLessThan(1000);
    }
    // The open file's remote fid died with the connection: closed, not busy.
    const lost = await caught(() => file.read(0, 100, ctx()));
    expect(lost).toBeInstanceOf(ClosedError);
    expect((lost as Error).message).toMatch(/^closed: gpu: remote file lost/);
    file.close?.();

    bridge = await startInner(port);
    try {
      await vi.waitFor(() => expect(mount.connected).toBe(true), { timeout: 5000 });
      expect(states).toEqual(["connected", "down:true", "connected"]);
      // Nodes handed out before the restart walk again by path (the new
      // server's qids are its own: it made new files).
      const again = await before.walk("info", ctx());
      expect(again.qid.path >> 63n).toBe(1n);
      const f = await again.open(READ, ctx());
      expect(text(await f.read(0, 100, ctx()))).toContain("GPU-0");
      f.close?.();
      expect((await mount.list(ctx())).map((n) => n.name)).toEqual(["GPU-0", "GPU-1"]);
      await vi.waitFor(() => expect(innerFids(bridge)).toBe(1));
    } finally {
      mount.close();
      await bridge.close();
    }
  });

  it("gives up on a remote that never answers within the connect timeout", async () => {
    // A listener that accepts and never speaks 9P.
    const mute = await listen("tcp!127.0.0.1!0", () => {});
    const port = mute.address.kind === "unix" ? 0 : mute.address.port;
    const mount = mountOf("gpu", port, "9P2000", { connectTimeoutMs: 300 });
    mounts.push(mount);
    try {
      const started = Date.now();
      const err = await caught(() => mount.list(ctx()));
      expect(err).toBeInstanceOf(BusyError);
      expect((err as Error).message).toMatch(/^busy: gpu unavailable: /);
      expect(Date.now() - started).toBeLessThan(1500);
      expect(mount.connected).toBe(false);
    } finally {
      mount.close();
      await mute.close();
    }
  });

  it("answers a refused attach with busy: … permission, without redialling in a tight loop", async () => {
    let accepted = 0;
    const refusing = new NineServer({
      root: new Directory("/"),
      attach: () => {
        throw new PermissionError("bad bridge ticket");
      },
    });
    const l = await listen("tcp!127.0.0.1!0", (conn, peer) => {
      accepted++;
      refusing.accept(conn, peer.remote);
    });
    const mount = mountOf("gpu", l.address.kind === "unix" ? 0 : l.address.port, "9P2000", { maxDelayMs: 1000 });
    mounts.push(mount);
    try {
      await vi.waitFor(() => expect(mount.state).toBe("down"));
      const err = await caught(() => mount.list(ctx()));
      expect(err).toBeInstanceOf(BusyError);
      expect((err as Error).message).toBe("busy: gpu unavailable: permission: bad bridge ticket");
      await new Promise((r) => setTimeout(r, 300));
      expect(accepted).toBeLessThanOrEqual(2);
    } finally {
      mount.close();
      refusing.close();
      await l.close();
    }
  });

  it("gives up on a remote walk that stalls past the request timeout, or when the request is flushed", async () => {
    const mount = mountOf("gpu", inner.port, "9P2000", { requestTimeoutMs: 150 });
    mounts.push(mount);
    await mount.ready(5000);
    const stalled = await (await mount.walk("GPU-1", ctx())).walk("stalled", ctx());
    let started = Date.now();
    const err = await caught(() => stalled.walk("x", ctx()));
    expect((err as Error).message).toBe("busy: gpu unavailable: no answer within 150 ms");
    expect(Date.now() - started).toBeLessThan(500);
    const ac = new AbortController();
    started = Date.now();
    setTimeout(() => ac.abort(new ClosedError("request Twalk flushed")), 30);
    const flushed = await caught(() => stalled.walk("x", ctx({ signal: ac.signal })));
    expect((flushed as Error).message).toBe("closed: request Twalk flushed");
    expect(Date.now() - started).toBeLessThan(500);
    // The abandoned walks finish on the remote and leave no fid behind.
    await vi.waitFor(() => expect(innerFids(inner)).toBe(inner.server.sessionInfo().length), { timeout: 3000 });
    mount.close();
  });

  it("answers closed: once unmounted", async () => {
    const mount = mountOf("gpu", inner.port, "9P2000");
    await mount.ready(5000);
    mount.close();
    const err = await caught(() => mount.list(ctx()));
    expect(err).toBeInstanceOf(ClosedError);
    expect((err as Error).message).toBe("closed: gpu unmounted");
  });

  it("cancels a blocked remote read when the request aborts (provider level)", async () => {
    const node = await (await mounts[0]!.walk("GPU-0", ctx())).walk("slow", ctx());
    const file = await node.open(READ, ctx());
    const ac = new AbortController();
    const started = Date.now();
    const read = caught(() => file.read(0, 10, ctx({ signal: ac.signal })));
    setTimeout(() => ac.abort(new ClosedError("flushed")), 20);
    const err = await read;
    expect(err).toBeInstanceOf(ClosedError);
    expect(Date.now() - started).toBeLessThan(500);
    file.close?.();
  });

  it("refuses a walk of a missing name with not found: naming the path (9P2000.L remote)", async () => {
    const err = await caught(() => mounts[1]!.walk("GPU-7", ctx()));
    expect(err).toBeInstanceOf(NotFoundError);
    expect((err as Error).message).toBe("not found: GPU-7");
  });
});

// The provider contract, on the mount point and on nodes below it. Each
// makeNode uses a fresh mount so qid paths differ between the two nodes a
// test makes (the same remote file through one mount keeps its qid).
function fresh(): RemoteMount {
  const m = mountOf("gpu", inner.port, "9P2000");
  mounts.push(m);
  return m;
}
runProviderConformance("RemoteMount (mount point)", async () => {
  const m = fresh();
  await m.ready(5000);
  return m;
});
runProviderConformance("RemoteMount: remote directory", async () => fresh().walk("GPU-0", ctx()));
runProviderConformance("RemoteMount: remote read-only file", async () => (await fresh().walk("GPU-0", ctx())).walk("info", ctx()));
runProviderConformance("RemoteMount: remote writable file", async () => (await fresh().walk("GPU-0", ctx())).walk("notes", ctx()), {
  sample: bytes("x\n"),
});
runProviderConformance("RemoteMount: remote tail", async () => (await fresh().walk("GPU-0", ctx())).walk("slow", ctx()), {
  blockingReads: true,
});
