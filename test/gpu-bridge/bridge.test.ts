/**
 * The bridge over 9P with a real client: the tree, leases, jobs, bad
 * descriptors, and who may attach.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { generateKeyPair, mintTicket } from "../../root-task/index.ts";
import { NineClient, certificateFingerprint, makeSelfSignedCert, type Fid } from "../../nine-door/index.ts";
import { SimBackend, makeJobDescriptor, mintBridgeTicket } from "../../gpu-bridge/index.ts";
import { command, descriptor, readUntil, startTestBridge, type TestBridge } from "./helpers.ts";

const stateOf = (lines: Record<string, unknown>[], job: string): unknown[] => lines.filter((l) => l.job === job).map((l) => l.state);
const ended = (job: string) => (lines: Record<string, unknown>[]) => lines.some((l) => l.job === job && (l.state === "OK" || l.state === "ERR"));

describe("the bridge over 9P", () => {
  let t: TestBridge;
  let top: Fid;

  beforeAll(async () => {
    t = await startTestBridge({ leaseLimits: { streamsPerGpu: 4 } });
    ({ top } = await t.connect());
  });
  afterAll(async () => {
    await t.close();
  });

  it("lists GPU-0 and GPU-1 at the root, each with info, ctl, lease, job, status", async () => {
    expect((await top.list("")).map((f) => f.name)).toEqual(["GPU-0", "GPU-1"]);
    const files = await top.list("GPU-0");
    expect(files.map((f) => f.name)).toEqual(["info", "ctl", "lease", "job", "status"]);
    expect(files.filter((f) => f.isAppend).map((f) => f.name)).toEqual(["ctl", "lease", "job", "status"]);
  });

  it("serves info as one JSON object with exactly the contract's fields", async () => {
    const text = await top.readText("GPU-1/info");
    expect(text.endsWith("}\n")).toBe(true);
    const info = JSON.parse(text) as Record<string, unknown>;
    expect(Object.keys(info)).toEqual(["id", "name", "uuid", "memory_mb", "sm_count", "driver_version"]);
    expect(info).toMatchObject({ id: "GPU-1", memory_mb: 24576, sm_count: 72, driver_version: "sim-1.0" });
  });

  it("grants a LEASE, refuses a second one on the fully leased GPU with busy:, and RELEASEs", async () => {
    const reply = JSON.parse(await command(top, "GPU-0/ctl", "LEASE worker-1 mem=16384 streams=2 priority=1 ttl=60")) as { ok: boolean; lease: Record<string, unknown> };
    expect(reply.ok).toBe(true);
    expect(reply.lease).toMatchObject({ schema: "gpu-lease/v1", gpu_id: "GPU-0", worker: "worker-1", mem_mb: 16384, streams: 2, priority: 1, ttl_s: 60, state: "ACTIVE" });
    await expect(command(top, "GPU-0/ctl", "LEASE worker-2 mem=1024 streams=1 priority=0 ttl=60")).rejects.toThrow(/^busy: GPU-0 is fully leased \(/);
    await expect(command(top, "GPU-0/ctl", "LEASE worker-2 mem=lots streams=1")).rejects.toThrow(/^invalid: mem=lots/);
    expect(await command(top, "GPU-0/ctl", "RELEASE worker-1 finished")).toBe('{"ok":true}\n');
    await expect(command(top, "GPU-0/ctl", "RELEASE worker-1 again")).rejects.toThrow(/^not found: worker-1 holds no lease on GPU-0/);
    const lines = await readUntil(top, "GPU-0/lease", (l) => l.length >= 2);
    expect(lines.map((l) => [l.worker, l.state, l.reason])).toEqual([
      ["worker-1", "ACTIVE", undefined],
      ["worker-1", "RELEASED", "finished"],
    ]);
    expect(typeof lines[0]!.ts_ms).toBe("number");
  });

  it("appends RELEASED with reason 'ttl expired' when a lease's ttl runs out", async () => {
    await command(top, "GPU-1/ctl", "LEASE worker-9 mem=1024 streams=1 priority=0 ttl=1");
    const lines = await readUntil(top, "GPU-1/lease", (l) => l.some((r) => r.worker === "worker-9" && r.state === "RELEASED"), 5000);
    expect(lines.find((r) => r.worker === "worker-9" && r.state === "RELEASED")).toMatchObject({ reason: "ttl expired", ttl_s: 1 });
    expect(t.bridge.leases.get("GPU-1", "worker-9")).toBeUndefined();
  });

  it("runs a job QUEUED → RUNNING → OK with a deterministic result", async () => {
    await command(top, "GPU-1/ctl", "LEASE worker-2 mem=2048 streams=2 priority=0 ttl=60");
    const d = descriptor({ job: "ok-1", worker: "worker-2" });
    const reply = await command(top, "GPU-1/job", JSON.stringify(d));
    expect(JSON.parse(reply)).toEqual({ ok: true, job: "ok-1", state: "QUEUED" });
    const lines = await readUntil(top, "GPU-1/status", ended("ok-1"));
    expect(stateOf(lines, "ok-1")).toEqual(["QUEUED", "RUNNING", "OK"]);
    const ok = lines.find((l) => l.job === "ok-1" && l.state === "OK")!;
    expect(ok.result).toMatchObject({ kernel: "saxpy", threads: 16384, checksum: "sha256:9f64a747e1b97f13" });
    expect(ok.worker).toBe("worker-2");
  });

  it("ends a job that runs past timeout_ms with ERR timeout", async () => {
    const d = descriptor({ job: "slow-1", worker: "worker-2", grid: [65535, 1000, 1], block: [1024, 1, 1], timeout_ms: 50 });
    await command(top, "GPU-1/job", JSON.stringify(d));
    const lines = await readUntil(top, "GPU-1/status", ended("slow-1"));
    const err = lines.find((l) => l.job === "slow-1" && l.state === "ERR")!;
    expect(err.reason).toMatch(/^timeout: /);
  });

  it("refuses bad descriptors with invalid: or permission: and keeps serving", async () => {
    const good = descriptor({ job: "bad-x", worker: "worker-2" });
    await expect(command(top, "GPU-1/job", JSON.stringify({ ...good, bytes_hash: `sha256:${"0".repeat(64)}` }))).rejects.toThrow(/^invalid: bytes_hash does not match/);
    await expect(command(top, "GPU-1/job", JSON.stringify(makeJobDescriptor({ ...good }, new Uint8Array(300 * 1024))))).rejects.toThrow(/^invalid: payload is 307200 bytes/);
    await expect(command(top, "GPU-1/job", JSON.stringify({ ...good, colour: "red" }))).rejects.toThrow(/^invalid: job descriptor field "colour" is unknown/);
    await expect(command(top, "GPU-1/job", JSON.stringify(descriptor({ job: "bad-y", worker: "worker-3" })))).rejects.toThrow(/^permission: worker-3 holds no lease on GPU-1/);
    await expect(command(top, "GPU-0/job", JSON.stringify(good))).rejects.toThrow(/^permission: worker-2 holds no lease on GPU-0/);
    await expect(command(top, "GPU-7/job", JSON.stringify(good))).rejects.toThrow(/^not found: unknown GPU GPU-7: this bridge serves GPU-0, GPU-1/);
    // Still serving: the same worker's next good job runs.
    await command(top, "GPU-1/job", JSON.stringify(descriptor({ job: "after-bad", worker: "worker-2" })));
    expect(stateOf(await readUntil(top, "GPU-1/status", ended("after-bad")), "after-bad")).toEqual(["QUEUED", "RUNNING", "OK"]);
    expect(await top.readText("GPU-0/info")).toContain('"id":"GPU-0"');
  });

  it("runs at most `streams` jobs of a lease at once; the rest wait in the queue", async () => {
    await command(top, "GPU-0/ctl", "LEASE worker-4 mem=1024 streams=1 priority=0 ttl=60");
    for (const job of ["s-1", "s-2", "s-3"]) {
      await command(top, "GPU-0/job", JSON.stringify(descriptor({ job, worker: "worker-4", grid: [65535, 2, 1], block: [1024, 1, 1] })));
    }
    const lines = await readUntil(top, "GPU-0/status", ended("s-3"));
    const order = lines.filter((l) => l.worker === "worker-4" && l.state !== "QUEUED").map((l) => `${l.job} ${l.state}`);
    expect(order).toEqual(["s-1 RUNNING", "s-1 OK", "s-2 RUNNING", "s-2 OK", "s-3 RUNNING", "s-3 OK"]);
  });

  it("ends a worker's queued and running jobs with ERR when its lease is released", async () => {
    await command(top, "GPU-0/ctl", "LEASE worker-5 mem=1024 streams=1 priority=0 ttl=60");
    for (const job of ["r-1", "r-2"]) {
      await command(top, "GPU-0/job", JSON.stringify(descriptor({ job, worker: "worker-5", grid: [65535, 1000, 1], block: [1024, 1, 1], timeout_ms: 30_000 })));
    }
    await command(top, "GPU-0/ctl", "RELEASE worker-5 revoked by the queen");
    const lines = await readUntil(top, "GPU-0/status", (l) => ended("r-1")(l) && ended("r-2")(l));
    for (const job of ["r-1", "r-2"]) {
      expect(lines.find((l) => l.job === job && l.state === "ERR")!.reason).toBe("lease released: revoked by the queen");
    }
  });
});

describe("priority", () => {
  it("orders the GPU's queue: a higher-priority lease's job starts before earlier low-priority ones", async () => {
    const t = await startTestBridge({ jobLimits: { concurrency: 1 } });
    try {
      const { top } = await t.connect();
      await command(top, "GPU-0/ctl", "LEASE worker-1 mem=1024 streams=4 priority=0 ttl=60");
      await command(top, "GPU-0/ctl", "LEASE worker-2 mem=1024 streams=4 priority=5 ttl=60");
      const slow = { grid: [65535, 20, 1] as [number, number, number], block: [1024, 1, 1] as [number, number, number] };
      for (const job of ["low-1", "low-2", "low-3"]) await command(top, "GPU-0/job", JSON.stringify(descriptor({ job, worker: "worker-1", ...slow })));
      await command(top, "GPU-0/job", JSON.stringify(descriptor({ job: "high-1", worker: "worker-2", ...slow })));
      const lines = await readUntil(top, "GPU-0/status", (l) => ["low-3", "high-1"].every((j) => ended(j)(l)));
      expect(lines.filter((l) => l.state === "RUNNING").map((l) => l.job)).toEqual(["low-1", "high-1", "low-2", "low-3"]);
    } finally {
      await t.close();
    }
  });
});

describe("attach", () => {
  let t: TestBridge;
  beforeAll(async () => {
    t = await startTestBridge();
  });
  afterAll(async () => {
    await t.close();
  });

  it("refuses an attach without a ticket", async () => {
    const client = await NineClient.dial(t.bridge.dialString, { dialect: "9P2000" });
    await expect(client.attach({ aname: "" })).rejects.toThrow(/^permission: attach needs a bridge ticket/);
    client.close();
  });

  it("refuses a ticket signed by another key, a non-bridge role, and garbage", async () => {
    const other = await generateKeyPair();
    const client = await NineClient.dial(t.bridge.dialString, { dialect: "9P2000" });
    await expect(client.attach({ aname: mintBridgeTicket(other.privateKey) })).rejects.toThrow(/^permission: ticket signature does not verify/);
    await expect(client.attach({ aname: mintTicket({ role: "queen", sub: "queen" }, t.privateKey) })).rejects.toThrow(/^permission: no trusted key for role queen/);
    await expect(client.attach({ aname: "not-a-ticket" })).rejects.toThrow(/^permission: malformed ticket/);
    const top = await client.attach({ aname: mintBridgeTicket(t.privateKey) });
    expect((await top.list("")).length).toBe(2);
    client.close();
  });
});

describe("TLS", () => {
  it("serves tls! with the bridge certificate; a pinned client with a ticket attaches, a wrong pin is refused", async () => {
    const { key, cert } = await makeSelfSignedCert({ commonName: "gpu-bridge" });
    const t = await startTestBridge({ tls: { key, cert }, backend: new SimBackend() });
    try {
      expect(t.bridge.dialString).toMatch(/^tls!127\.0\.0\.1!\d+$/);
      expect(t.bridge.fingerprint).toBe(certificateFingerprint(cert));
      const client = await NineClient.dial(t.bridge.dialString, { pin: t.bridge.fingerprint!, dialect: "9P2000" });
      await expect(client.attach({ aname: "" })).rejects.toThrow(/^permission: /);
      const top = await client.attach({ aname: mintBridgeTicket(t.privateKey) });
      expect(JSON.parse(await top.readText("GPU-0/info")).id).toBe("GPU-0");
      client.close();
      await expect(NineClient.dial(t.bridge.dialString, { pin: "00".repeat(32) })).rejects.toThrow();
    } finally {
      await t.close();
    }
  });
});
