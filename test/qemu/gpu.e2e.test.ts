/**
 * End to end: the GPU bridge on the host and the appliance in the QEMU
 * guest (issue 5's guest acceptance). The real CLI starts `cohesix
 * gpu-bridge --backend sim` on an ephemeral 127.0.0.1 port (QEMU user
 * networking shows it to the guest as 10.0.2.2:PORT), builds the image with
 * the inference worker and boots it with `--gpu-bridge tcp!10.0.2.2!PORT`
 * (the two pair through the default key folder, no other flag). From the
 * host, the queen sees /gpu, runs a GPU worker's jobs to OK through the
 * bridge, and runs the inference worker, whose sharp preprocessing happens
 * inside the guest (its result line says linux-arm64 and which sharp and
 * libvips). One boot for all of it; `cohesix down` leaves no QEMU behind.
 *
 * Needs qemu-system-aarch64 and the board's artefacts (scripts/setup.sh).
 */
import { execa, type ResultPromise } from "execa";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadBoard } from "../../boards/index.ts";
import { preprocess } from "../../workers/inference/preprocess.ts";
import { BIN, ROOT } from "../cli/helpers.ts";
import { E2e, alive } from "./harness.ts";

const BOOT_MS = 300_000;

/** The suite's harness, made in beforeAll. */
let e2e!: E2e;
let bridgePort = 0;
let bridge: ResultPromise | undefined;
let bridgeErr = "";

/** Reads a file through the queen until `done` holds for it (or the time is up); returns the last text. */
async function waitFor(path: string, done: (text: string) => boolean, ms = 120_000): Promise<string> {
  const deadline = Date.now() + ms;
  let text = await e2e.queen(["cat", path]);
  while (!done(text) && Date.now() < deadline) {
    await sleep(1000);
    text = await e2e.queen(["cat", path]);
  }
  return text;
}

const records = (text: string): Record<string, unknown>[] =>
  text
    .split("\n")
    .filter((l) => l.trim().startsWith("{"))
    .map((l) => JSON.parse(l) as Record<string, unknown>);

/** Starts the simulated bridge on an ephemeral port; resolves with the port from its READY line. */
async function startBridge(): Promise<number> {
  bridge = execa("node", [BIN, "gpu-bridge", "--listen", "127.0.0.1:0", "--backend", "sim"], { cwd: e2e.dir, env: e2e.env, reject: false, buffer: false });
  bridge.stderr?.on("data", (d: Buffer) => (bridgeErr += d.toString()));
  return new Promise((resolve, reject) => {
    let out = "";
    const timer = setTimeout(() => reject(new Error(`gpu-bridge printed no READY line in 30 s: ${bridgeErr}`)), 30_000);
    bridge!.stdout?.on("data", (d: Buffer) => {
      out += d.toString();
      const m = /^READY tcp!127\.0\.0\.1!(\d+)$/m.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve(Number(m[1]));
      }
    });
    void bridge!.then((r) => {
      clearTimeout(timer);
      reject(new Error(`gpu-bridge exited (${r.exitCode}): ${bridgeErr}`));
    });
  });
}

describe("GPU bridge from the aarch64-virt guest (QEMU)", () => {
  beforeAll(async () => {
    e2e = await E2e.create("cohesix-gpu-e2e-");
    bridgePort = await startBridge();
    const started = Date.now();
    const r = await e2e.cohesix(
      ["boot", "--detach", "--port", "0", "--queen-pub", e2e.queenPub, "--worker", "inference", "--gpu-bridge", `tcp!10.0.2.2!${bridgePort}`],
      { timeoutMs: BOOT_MS },
    );
    if (r.exitCode !== 0) throw new Error(`cohesix boot failed (${r.exitCode}):\n${r.stderr}`);
    e2e.dial = r.stdout.split("\n")[0]!;
    expect(e2e.dial).toMatch(/^tcp!127\.0\.0\.1!\d+$/);
    expect(r.stderr).toContain(`with the gpu bridge at tcp!10.0.2.2!${bridgePort}`);
    expect(r.stderr).toMatch(/native packages: @img\/sharp-linux-arm64@[\d.]+, @img\/sharp-libvips-linux-arm64@[\d.]+/);
    // The ticket file QEMU read is gone once the guest serves; the ticket was never on QEMU's command line.
    expect(existsSync(join(e2e.runDir, "gpu-bridge.json"))).toBe(false);
    const pid = await e2e.pidOf();
    expect(pid).toBeDefined();
    const argv = readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0");
    expect(argv.some((a) => a.startsWith("name=opt/cohesix/gpu-bridge,file="))).toBe(true);
    expect(argv.join(" ")).not.toMatch(/ticket/);
    process.stderr.write(`gpu e2e: build + boot to serving in ${((Date.now() - started) / 1000).toFixed(1)} s\n`);
  }, BOOT_MS + 60_000);

  afterAll(async () => {
    // The guest goes before the bridge it is a client of.
    if (e2e) await e2e.teardown();
    if (bridge?.pid !== undefined && alive(bridge.pid)) {
      process.kill(bridge.pid, "SIGTERM");
      await Promise.race([bridge, sleep(5000)]);
      if (alive(bridge.pid)) process.kill(bridge.pid, "SIGKILL");
    }
  }, 120_000);

  it("the guest mounts the host's bridge at /gpu: ls shows GPU-0 and GPU-1, info is JSON, the lifecycle is ONLINE", async () => {
    const log = await waitFor("/log/queen.log", (t) => t.includes(`gpu bridge tcp!10.0.2.2!${bridgePort} connected`), 60_000);
    expect(log).toContain(`gpu bridge tcp!10.0.2.2!${bridgePort} connected`);
    const ls = await e2e.queen(["ls", "/gpu"]);
    expect(ls.split("\n").map((l) => l.trim().replace(/\/$/, ""))).toEqual(expect.arrayContaining(["GPU-0", "GPU-1"]));
    const info = JSON.parse(await e2e.queen(["cat", "/gpu/GPU-0/info"])) as { id: string; memory_mb: number };
    expect(info.id).toBe("GPU-0");
    expect(info.memory_mb).toBeGreaterThan(0);
    expect((await e2e.queen(["cat", "/proc/lifecycle/state"])).trim()).toBe("ONLINE");
  }, 120_000);

  it("a GPU worker in the guest gets a lease and its jobs reach OK through the bridge", async () => {
    const reply = await e2e.queen(["ctl", '{"spawn":"gpu","lease":{"gpu_id":"GPU-0","mem_mb":1024,"streams":1,"ttl_s":300,"priority":0}}']);
    const id = /worker-\d+/.exec(reply)?.[0];
    expect(id, reply).toBeDefined();
    const telemetry = await waitFor(`/worker/${id}/telemetry`, (t) => records(t).some((r) => r.state === "OK"));
    const lines = records(telemetry);
    expect(lines[0]).toMatchObject({ tick: 0, gpu: "GPU-0", lease: { state: "ACTIVE", mem_mb: 1024 } });
    const ok = lines.find((r) => r.state === "OK");
    expect(ok, telemetry).toMatchObject({ job: expect.stringMatching(new RegExp(`^${id}\\.\\d+$`)), result: { kernel: "saxpy" } });
    // the bridge holds the lease the root task asked for
    const lease = await e2e.queen(["cat", "/gpu/GPU-0/lease"]);
    expect(records(lease).some((r) => r.worker === id && r.state === "ACTIVE")).toBe(true);
  }, 180_000);

  it("the inference worker preprocesses with sharp inside the arm64 guest and its job's result line is OK", async () => {
    const reply = await e2e.queen(["ctl", '{"spawn":"inference","lease":{"gpu_id":"GPU-1","mem_mb":2048,"streams":1,"ttl_s":300,"priority":0}}']);
    const id = /worker-\d+/.exec(reply)?.[0];
    expect(id, reply).toBeDefined();
    const telemetry = await waitFor(`/worker/${id}/telemetry`, (t) => records(t).some((r) => r.state === "OK" || r.state === "ERR"), 180_000);
    const line = records(telemetry).find((r) => r.state === "OK");
    if (!line) {
      const stderr = await e2e.queen(["cat", `/log/${id}.log`]).catch((e: Error) => e.message);
      throw new Error(`no OK result line from ${id}:\n${telemetry}\nstderr:\n${stderr}`);
    }
    const sharp = JSON.parse(readFileSync(join(ROOT, "node_modules", "sharp", "package.json"), "utf8")) as { version: string };
    expect(line).toMatchObject({
      input: "sample.png",
      tensor: { shape: [1, 3, 128, 128], dtype: "float32", sha256: expect.stringMatching(/^sha256:[0-9a-f]{64}$/) },
      preprocess: { platform: "linux-arm64", sharp: sharp.version, vips: expect.stringMatching(/^\d+\.\d+/) },
      result: { kernel: "classify" },
    });
    // the guest's Node, not the host's
    const pre = line.preprocess as { node: string; ms: number };
    expect(pre.node).toBe(loadBoard("aarch64-virt").artefacts.node.version);
    process.stderr.write(`gpu e2e: sharp preprocessing of the sample in the guest took ${pre.ms} ms\n`);
    // the same pinned sharp and libvips give the guest's arm64 tensor byte for byte as the host's
    const host = await preprocess(readFileSync(join(ROOT, "workers", "inference", "sample.png")), { size: 128 });
    expect((line.tensor as { sha256: string }).sha256).toBe(host.sha256);
  }, 240_000);

  it("cohesix down stops the guest and leaves no QEMU behind", async () => {
    const pid = await e2e.pidOf();
    expect(pid).toBeDefined();
    const r = await e2e.cohesix(["down"]);
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/stopped \((power key|qmp quit|SIGTERM|SIGKILL)\)/);
    expect(alive(pid!)).toBe(false);
    expect(existsSync(join(e2e.runDir, "qemu.pid"))).toBe(false);
    // the bridge outlived its client
    expect(bridge?.pid !== undefined && alive(bridge.pid)).toBe(true);
  }, 120_000);
});
