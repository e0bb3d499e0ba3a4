/**
 * End to end on the aarch64-virt board: the real CLI builds a test image
 * (the product image plus a self-test script and a ticket helper, through
 * `--extra`), boots it in QEMU, and the queen drives it over 9P through the
 * host forward; inside the guest the kernel's v9fs mounts NineDoor in both
 * dialects (the self-test, enabled by `cohesix.selftest=1`). Then snapshot,
 * down, boot --restore, and down leaves no QEMU behind.
 *
 * Needs qemu-system-aarch64 and the board's artefacts (scripts/setup.sh).
 */
import { existsSync } from "node:fs";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { mintTicket, readPrivateKey } from "../../root-task/index.ts";
import { SELFTEST_BEGIN, SELFTEST_END } from "../../rootfs/index.ts";
import { ROOT } from "../cli/helpers.ts";
import { E2e, alive, buildGuestMint } from "./harness.ts";

const BOOT_MS = 300_000;

/** The suite's harness, made in beforeAll. */
let e2e!: E2e;
let bootArgs: string[] = [];

describe("aarch64-virt guest (QEMU)", () => {
  beforeAll(async () => {
    e2e = await E2e.create("cohesix-e2e-");
    const { dir } = e2e;
    // The ticket helper of the test image, bundled like the guest programs.
    await buildGuestMint(join(dir, "mint.mjs"));
    const ticket = mintTicket({ role: "queen", sub: "queen" }, await readPrivateKey(e2e.queenKey), { ttlS: 3600 });
    bootArgs = [
      "--detach",
      "--port", "0",
      "--queen-pub", e2e.queenPub,
      "--extra", `${join(ROOT, "test", "qemu", "guest-selftest.sh")}:/etc/cohesix/selftest.sh`,
      "--extra", `${join(dir, "mint.mjs")}:/etc/cohesix/mint.mjs`,
      "--append", "cohesix.selftest=1",
      "--append", `cohesix.ticket=${ticket}`,
    ];
    const started = Date.now();
    const r = await e2e.cohesix(["boot", ...bootArgs], { timeoutMs: BOOT_MS });
    if (r.exitCode !== 0) throw new Error(`cohesix boot failed (${r.exitCode}):\n${r.stderr}`);
    e2e.dial = r.stdout.split("\n")[0]!;
    expect(e2e.dial).toMatch(/^tcp!127\.0\.0\.1!\d+$/);
    expect(r.stdout).toContain(`COHESIX_ADDR='${e2e.dial}' npx cohesix ls /`);
    process.stderr.write(`e2e: build + boot to serving in ${((Date.now() - started) / 1000).toFixed(1)} s\n`);
  }, BOOT_MS + 60_000);

  afterAll(async () => {
    if (e2e) await e2e.teardown();
  }, 120_000);

  it("the guest kernel's v9fs mounts NineDoor in 9P2000.L and 9P2000 and does ls, cat, stat and an append", async () => {
    const deadline = Date.now() + 180_000;
    let text = await e2e.consoleText();
    while (!text.includes(SELFTEST_END) && Date.now() < deadline) {
      await sleep(500);
      text = await e2e.consoleText();
    }
    const framed = text.slice(text.indexOf(SELFTEST_BEGIN), text.indexOf(SELFTEST_END) + 200);
    expect(text, `console:\n${text.slice(-4000)}`).toContain(SELFTEST_END);
    const checks = new Map([...framed.matchAll(/^CHECK (\S+) (ok|FAIL)\s*$/gm)].map((m) => [m[1]!, m[2]!]));
    const expected = [
      "mount-9p2000.L", "mount-9p2000", "ls-L", "ls-U", "cat-L", "cat-U", "stat-L", "stat-U",
      "telemetry-L", "telemetry-U", "mount-worker-L", "mount-worker-U", "append-L", "append-U", "readback-L", "readback-U",
    ];
    for (const name of expected) expect(`${name} ${checks.get(name) ?? "missing"}`, framed).toBe(`${name} ok`);
  }, 240_000);

  it("the queen spawns a heartbeat worker over 9P, reads its telemetry and sees the revocation in /log/queen.log", async () => {
    const reply = await e2e.queen(["ctl", '{"spawn":"heartbeat","ticks":3}']);
    const id = /worker-\d+/.exec(reply)?.[0];
    expect(id, reply).toBeDefined();
    let telemetry = "";
    for (let i = 0; i < 60 && telemetry.split("\n").filter((l) => l.includes('"tick"')).length < 3; i++) {
      await sleep(1000);
      telemetry = await e2e.queen(["cat", `/worker/${id}/telemetry`]);
    }
    const ticks = telemetry.split("\n").filter((l) => l.includes('"tick"'));
    expect(ticks.length, telemetry).toBeGreaterThanOrEqual(3);
    for (const line of ticks) expect(() => JSON.parse(line)).not.toThrow();
    let log = "";
    for (let i = 0; i < 60 && !log.includes(`revoked ${id}`); i++) {
      await sleep(1000);
      log = await e2e.queen(["cat", "/log/queen.log"]);
    }
    expect(log).toContain(`spawned ${id}`);
    expect(log).toMatch(new RegExp(`revoked ${id}: tick budget`));
  }, 180_000);

  it("vm snapshot then boot --restore brings back a serving guest, and down leaves no QEMU behind", async () => {
    const snap = await e2e.cohesix(["vm", "snapshot", "e2e"]);
    expect(snap.exitCode, snap.stderr).toBe(0);
    expect(snap.stdout).toContain("paused");
    // The state disk lists it; a name it does not hold is refused, naming those it does.
    const listed = await e2e.cohesix(["vm", "snapshots"]);
    expect(listed.exitCode, listed.stderr).toBe(0);
    expect(listed.stdout.split("\n")).toContain("e2e");
    const missing = await e2e.cohesix(["vm", "restore", "nosuch"]);
    expect(missing.exitCode).toBe(1);
    expect(missing.stderr.trim()).toMatch(/^not found: snapshot nosuch; snapshots: (\S+, )*e2e(, \S+)*$/);
    const first = await e2e.pidOf();
    const d1 = await e2e.cohesix(["down"]);
    expect(d1.exitCode, d1.stderr).toBe(0);
    expect(first !== undefined && alive(first)).toBe(false);

    const started = Date.now();
    const r = await e2e.cohesix(["boot", ...bootArgs, "--restore", "e2e"], { timeoutMs: BOOT_MS });
    expect(r.exitCode, r.stderr).toBe(0);
    e2e.dial = r.stdout.split("\n")[0]!;
    process.stderr.write(`e2e: boot --restore to serving in ${((Date.now() - started) / 1000).toFixed(1)} s\n`);
    const boot = await e2e.queen(["cat", "/proc/boot"]);
    expect(boot).toContain("board=aarch64-virt");
    expect(await e2e.queen(["cat", "/log/queen.log"])).toContain("spawned");

    const second = await e2e.pidOf();
    expect(second).toBeDefined();
    const d2 = await e2e.cohesix(["down"]);
    expect(d2.exitCode, d2.stderr).toBe(0);
    expect(d2.stdout).toMatch(/stopped \((power key|qmp quit|SIGTERM|SIGKILL)\)/);
    expect(alive(second!)).toBe(false);
    expect(existsSync(join(e2e.runDir, "qemu.pid"))).toBe(false);
  }, BOOT_MS + 120_000);
});
