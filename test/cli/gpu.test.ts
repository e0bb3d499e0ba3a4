/**
 * Host-board acceptance of the GPU bridge on the appliance side (issue 5):
 * `cohesix gpu-bridge --backend sim` and `cohesix serve --gpu-bridge DIAL`
 * as child processes paired through the default key directory (one
 * XDG_CONFIG_HOME), the queen's `cohesix` commands, worker processes and
 * the bridge checked and killed by PID. Every wait polls with a deadline.
 */
import { execa, type ResultPromise } from "execa";
import { createHash } from "node:crypto";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { NineClient, type Fid } from "../../nine-door/index.ts";
import { mintTicket, readPrivateKey } from "../../root-task/index.ts";
import { Queen, pidAlive, signalPid, stopServed, useServedSuite, waitFor } from "./appliance-helpers.ts";
import { BIN, ROOT, makeScratch, serve, type Scratch, type Served } from "./helpers.ts";

/** A `cohesix gpu-bridge` child process. */
interface BridgeProcess {
  readonly child: ResultPromise;
  readonly pid: number;
  readonly addr: string;
  readonly port: number;
}

/** Starts `cohesix gpu-bridge --listen 127.0.0.1:PORT --backend sim` and waits for READY. */
async function startBridgeProcess(scratch: Scratch, port = 0): Promise<BridgeProcess> {
  const base = { ...process.env };
  delete base.COHESIX_ADDR;
  delete base.COHESIX_KEY;
  const child = execa("node", [BIN, "gpu-bridge", "--listen", `127.0.0.1:${port}`, "--backend", "sim"], {
    cwd: ROOT,
    env: { ...base, ...scratch.env },
    extendEnv: false,
    reject: false,
  });
  const pid = child.pid;
  if (pid === undefined) throw new Error("cohesix gpu-bridge did not start");
  const addr = await new Promise<string>((resolve, reject) => {
    const rl = createInterface({ input: child.stdout! });
    rl.on("line", (line) => {
      if (line.startsWith("READY ")) resolve(line.slice("READY ".length));
    });
    void child.then((r) => reject(new Error(`cohesix gpu-bridge exited ${r.exitCode} before READY: ${r.stderr}`)));
    setTimeout(() => reject(new Error("cohesix gpu-bridge printed no READY line within 15 s")), 15_000).unref();
  }).catch((err: unknown) => {
    signalPid(pid, "SIGKILL");
    throw err;
  });
  return { child, pid, addr, port: Number(addr.split("!")[2]) };
}

async function stopBridge(b: BridgeProcess | undefined): Promise<void> {
  if (!b) return;
  if (pidAlive(b.pid)) signalPid(b.pid, "SIGTERM");
  await b.child;
}

const seenPids = new Set<number>();
afterAll(() => {
  for (const pid of seenPids) if (pidAlive(pid)) signalPid(pid, "SIGKILL");
});

function jsonLines(text: string): Array<Record<string, unknown>> {
  return text
    .split("\n")
    .filter(Boolean)
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

const lease = (gpu: string, extra: Record<string, number> = {}) =>
  JSON.stringify({ spawn: "gpu", lease: { gpu_id: gpu, mem_mb: 1024, streams: 1, ttl_s: 300, priority: 0, ...extra } });

describe("GPU bridge mounted at /gpu (simulated bridge, host board)", () => {
  let scratch: Scratch;
  let bridge: BridgeProcess | undefined;
  let served: Served;
  let queen: Queen;

  beforeAll(async () => {
    scratch = await makeScratch();
    // The bridge makes ~/.config/cohesix/bridge.key; serve finds it there.
    bridge = await startBridgeProcess(scratch);
    served = await serve(scratch, ["--gpu-bridge", bridge.addr]);
    queen = new Queen(scratch, served);
  }, 60_000);
  afterAll(async () => {
    await stopServed(served);
    await stopBridge(bridge);
    await scratch?.remove();
  });

  const ctl = async (json: string) => queen.run(["ctl", json]);

  test("ls /gpu shows GPU-0 and GPU-1; cat /gpu/GPU-0/info is JSON; the appliance is ONLINE", async () => {
    const ls = await waitFor("both GPUs in ls /gpu", async () => {
      const r = await queen.run(["ls", "/gpu"]);
      return r.exitCode === 0 && r.stdout.includes("GPU-1") ? r.stdout : undefined;
    });
    expect(ls.split("\n").filter(Boolean)).toEqual(["GPU-0/", "GPU-1/"]);
    const info = JSON.parse(await queen.cat("/gpu/GPU-0/info")) as Record<string, unknown>;
    expect(info).toMatchObject({ id: "GPU-0", memory_mb: 16384, sm_count: 48 });
    expect(typeof info.uuid).toBe("string");
    expect(typeof info.driver_version).toBe("string");
    expect((await queen.cat("/proc/lifecycle/state")).trim()).toBe("ONLINE");
    // The mount command remounts the configured bridge and is committed.
    const m = await ctl('{"mount":{"service":"gpu","at":"/gpu"}}');
    expect(m.exitCode, m.stderr).toBe(0);
    await waitFor("/gpu back after the remount", async () => (await queen.run(["ls", "/gpu"])).stdout.includes("GPU-0"));
  });

  test("a GPU spawn gets a lease (ACTIVE in the lease file) and its jobs reach OK in status and telemetry", { timeout: 60_000 }, async () => {
    const r = await ctl(lease("GPU-0"));
    expect(r.stderr).toBe("");
    expect(r.stdout).toBe("worker-1");
    seenPids.add(await queen.pid("worker-1"));

    const leases = jsonLines(await queen.cat("/gpu/GPU-0/lease"));
    expect(leases).toContainEqual(expect.objectContaining({ schema: "gpu-lease/v1", gpu_id: "GPU-0", worker: "worker-1", mem_mb: 1024, streams: 1, state: "ACTIVE" }));
    expect(await queen.cat("/log/queen.log")).toMatch(/gpu lease GPU-0 for worker-1: mem=1024/);

    const ok = await waitFor("two OK jobs in worker-1's telemetry", async () => {
      const t = await queen.telemetry("worker-1");
      return t.filter((l) => l.state === "OK").length >= 2 ? t : undefined;
    });
    expect(ok[0]).toMatchObject({ tick: 0, gpu: "GPU-0", lease: { state: "ACTIVE", mem_mb: 1024 } });
    const first = ok.find((l) => l.state === "OK")!;
    expect(first).toMatchObject({ tick: 1, job: "worker-1.1", result: { kernel: "saxpy" } });
    const status = jsonLines(await queen.cat("/gpu/GPU-0/status")).filter((s) => s.job === "worker-1.1");
    expect(status.map((s) => s.state)).toEqual(["QUEUED", "RUNNING", "OK"]);
  });

  test("a lease the bridge refuses reaches the queen as busy: and commits nothing", async () => {
    const before = await queen.cat("/proc/state");
    const r = await ctl(lease("GPU-0", { mem_mb: 999_999 }));
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toMatch(/^busy: GPU-0 is fully leased/);
    const unknown = await ctl(lease("GPU-7"));
    expect(unknown.exitCode).toBe(1);
    expect(unknown.stderr).toMatch(/^not found: unknown GPU GPU-7/);
    const after = await queen.cat("/proc/state");
    expect(JSON.parse(after).seq).toBe(JSON.parse(before).seq);
    expect(JSON.parse(after).state.nextWorker).toBe(2);
  });

  test("a job descriptor naming another worker is refused with permission:, and so is a LEASE from a worker", async () => {
    const bootKey = await readPrivateKey(join(scratch.dir, "state", "boot.key"));
    const ticket = mintTicket({ role: "worker-gpu", sub: "worker-1", mounts: ["/gpu/GPU-0"] }, bootKey, { ttlS: 600 });
    const client = await NineClient.dial(served.addr, { dialect: "9P2000" });
    try {
      const top: Fid = await client.attach({ uname: "worker-gpu:worker-1", aname: ticket });
      const payload = Buffer.from("hello");
      const descriptor = (worker: string, job: string) =>
        JSON.stringify({
          job,
          worker,
          kernel: "saxpy",
          grid: [1, 1, 1],
          block: [1, 1, 1],
          bytes_hash: `sha256:${createHash("sha256").update(payload).digest("hex")}`,
          payload_b64: payload.toString("base64"),
          timeout_ms: 1000,
        });
      await expect(top.writeFile("gpu/GPU-0/job", descriptor("worker-2", "forged-1"))).rejects.toThrow(/^permission: job descriptor names worker "worker-2"/);
      await expect(top.writeFile("gpu/GPU-0/ctl", "LEASE worker-1 mem=1 streams=1")).rejects.toThrow(/^permission: worker-1 may only RELEASE its own lease/);
      // Its own id passes the guard and reaches the bridge.
      expect(await top.writeFile("gpu/GPU-0/job", descriptor("worker-1", "own-1"))).toBeGreaterThan(0);
      // The other GPU is not in its ticket (the walk stops short of it).
      await expect(top.walk("gpu/GPU-1")).rejects.toThrow(/^(permission|not found):/);
    } finally {
      client.close();
    }
    expect(await queen.cat("/log/queen.log")).toMatch(/refused worker-gpu worker-1 write .*job descriptor names worker "worker-2"/);
  });

  test("lease expiry revokes the worker: revoked worker-N in queen.log and its pid gone", { timeout: 60_000 }, async () => {
    const r = await ctl(lease("GPU-1", { ttl_s: 3 }));
    expect(r.stderr).toBe("");
    const id = r.stdout;
    const pid = await queen.pid(id);
    seenPids.add(pid);
    await waitFor(`${id}'s revocation`, async () => (await queen.cat("/log/queen.log")).includes(`revoked ${id}: lease ttl expired`));
    await waitFor(`${id}'s pid ${pid} to exit`, () => !pidAlive(pid));
    expect((await queen.workers()).get(id)).toMatchObject({ status: "revoked", reason: "lease ttl expired" });
    const leases = jsonLines(await queen.cat("/gpu/GPU-1/lease")).filter((l) => l.worker === id);
    expect(leases.at(-1)).toMatchObject({ state: "RELEASED", reason: "ttl expired" });
  });

  test("the inference worker preprocesses the sample with sharp and writes its result line", { timeout: 60_000 }, async () => {
    const r = await ctl(JSON.stringify({ spawn: "inference", lease: { gpu_id: "GPU-1", mem_mb: 2048, streams: 1, ttl_s: 300, priority: 0 } }));
    expect(r.stderr).toBe("");
    const id = r.stdout;
    seenPids.add(await queen.pid(id));
    const line = await waitFor(`${id}'s result line`, async () => (await queen.telemetry(id)).find((l) => l.state === "OK"), { timeoutMs: 30_000 });
    expect(line).toMatchObject({
      tick: 1,
      job: `${id}.1`,
      state: "OK",
      input: "sample.png",
      tensor: { shape: [1, 3, 128, 128], dtype: "float32" },
      result: { kernel: "classify" },
    });
    expect((line.tensor as { sha256: string }).sha256).toMatch(/^sha256:[0-9a-f]{64}$/);
    // Killing it releases its lease on the bridge.
    const k = await ctl(`{"kill":"${id}"}`);
    expect(k.exitCode, k.stderr).toBe(0);
    await waitFor(`${id}'s lease RELEASED`, async () => jsonLines(await queen.cat("/gpu/GPU-1/lease")).filter((l) => l.worker === id).at(-1)?.state === "RELEASED");
  });

  test("killing the bridge: DEGRADED gpu-bridge-down and GPU spawns busy:; restarted on the same port: ONLINE again without restarting the appliance", { timeout: 90_000 }, async () => {
    const old = bridge!;
    signalPid(old.pid, "SIGKILL");
    await old.child;
    bridge = undefined;
    await waitFor("DEGRADED", async () => (await queen.cat("/proc/lifecycle/state")).trim() === "DEGRADED");
    expect((await queen.cat("/proc/lifecycle/reason")).trim()).toBe("gpu-bridge-down");
    const refused = await ctl(lease("GPU-0"));
    expect(refused.exitCode).toBe(1);
    expect(refused.stderr).toMatch(/^busy: gpu bridge unavailable/);
    const ls = await queen.run(["ls", "/gpu"]);
    expect(ls.stderr).toMatch(/^busy: gpu unavailable/);

    bridge = await startBridgeProcess(scratch, old.port);
    await waitFor("ONLINE again", async () => (await queen.cat("/proc/lifecycle/state")).trim() === "ONLINE", { timeoutMs: 30_000 });
    expect(pidAlive(served.pid)).toBe(true);
    // The restarted bridge forgot worker-1's lease: the root task asked for it again.
    await waitFor("worker-1's lease granted again", async () =>
      jsonLines(await queen.cat("/gpu/GPU-0/lease")).some((l) => l.worker === "worker-1" && l.state === "ACTIVE"),
    );
    const before = (await queen.telemetry("worker-1")).length;
    await waitFor("worker-1's jobs OK on the restarted bridge", async () => (await queen.telemetry("worker-1")).slice(before).some((l) => l.state === "OK"), { timeoutMs: 30_000 });
    const again = await ctl(lease("GPU-0"));
    expect(again.stderr).toBe("");
    expect(again.stdout).toMatch(/^worker-\d+$/);
    seenPids.add(await queen.pid(again.stdout));
    expect(await queen.cat("/log/queen.log")).toMatch(/lifecycle DEGRADED reason=gpu-bridge-down[\s\S]*lifecycle ONLINE reason=recovered/);
  });
});

describe("without --gpu-bridge", () => {
  const suite = useServedSuite();

  test("spawn gpu answers busy: no gpu bridge mounted, and the mount command says none is configured", async () => {
    const r = await suite.queen.run(["ctl", lease("GPU-0")]);
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toMatch(/^busy: no gpu bridge mounted/);
    const m = await suite.queen.run(["ctl", '{"mount":{"service":"gpu","at":"/gpu"}}']);
    expect(m.exitCode).toBe(1);
    expect(m.stderr).toMatch(/^invalid: no gpu bridge configured: start the appliance with --gpu-bridge DIAL/);
  });
});
