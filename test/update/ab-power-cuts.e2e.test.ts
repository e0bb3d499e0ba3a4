/**
 * Power cuts during a field update (#14, acceptance 4), on real image
 * bytes under Debian's qemu_arm64 U-Boot: `cohesix image --ab --version
 * 1.0.0` flashed with `cohesix flash --target-file`, v2 made with `cohesix
 * bundle` and sent with `cohesix update`. Ten times QEMU is killed with
 * SIGKILL by PID — eight at random verified offsets of the transfer
 * (watched through `/update/status`), two during the commit's writes (the
 * moment the boot state on the card changes, and a random moment while
 * slot B's files are written) — and the card boots again. Each time it
 * boots a good slot with a whole boot state, and `begin` answers an offset
 * at least the last verified one; then the update completes and v2 is
 * confirmed. The cut points come from COHESIX_CUT_SEED (printed).
 *
 * Run it alone: `npm run build --silent && npx vitest run test/update/ab-power-cuts.e2e.test.ts`.
 */
import { readFile } from "node:fs/promises";
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { formatBootState } from "../../update/index.ts";
import { E2e } from "../qemu/harness.ts";
import { AbVm, BOOT_MS, BUILD_MS, sha256Of } from "./ab-vm.ts";

/** The health window of every slot (seconds), on the kernel command line. */
const HEALTH = ["cohesix.health_window=3"];
/** A step that boots a few times on the loaded 2-core machine. */
const CASE_MS = 3 * BOOT_MS;

let e2e!: E2e;
let image = "";
let v2 = "";

beforeAll(async () => {
  e2e = await E2e.create("cohesix-ab-cuts-");
  image = await AbVm.buildImage(e2e, { version: "1.0.0", append: HEALTH });
  v2 = await AbVm.bundle(e2e, "2.0.0");
}, 2 * BUILD_MS);

afterAll(async () => {
  if (e2e) await e2e.teardown();
}, 60_000);

/** A small seeded generator (mulberry32), so a failing run's cut points can be replayed with COHESIX_CUT_SEED. */
function random(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

describe("power cuts: kill -9 of QEMU during the transfer and during the commit's writes", () => {
  const seed = Number(process.env.COHESIX_CUT_SEED ?? Date.now() % 1_000_000);
  const next = random(seed);
  let vm!: AbVm;
  let size = 0;
  let sha256 = "";

  beforeAll(async () => {
    process.stderr.write(`e2e: power cuts with COHESIX_CUT_SEED=${seed}\n`);
    vm = await AbVm.flash(e2e, image, "cut.img");
    size = (await readFile(v2)).length;
    sha256 = await sha256Of(v2);
  }, BUILD_MS);

  afterAll(async () => {
    await vm?.stop();
  }, 60_000);

  /** Boots after a cut: READY on a good slot, a whole boot state naming it; returns /proc/boot. */
  async function bootAfterCut(name: string): Promise<Record<string, string>> {
    await vm.boot(name);
    await vm.waitConsole(/READY/);
    const boot = await vm.confirmed();
    const state = await vm.bootState();
    expect(state, "a whole boot state copy").not.toBeNull();
    expect(state!.slots[boot.slot as "a" | "b"]).toBe("good");
    return boot;
  }

  /** `begin` of the v2 bundle: the offset the appliance has verified. */
  async function begin(): Promise<number> {
    const reply = await vm.updateCtl({ begin: { size, sha256 } });
    const m = /^ok offset=(\d+)$/.exec(reply);
    expect(m, reply).not.toBeNull();
    return Number(m![1]);
  }

  it("eight cuts at random bytes of the transfer: each boot is of a good slot, and begin answers at least the last verified offset", async () => {
    await vm.boot("cut-0");
    await vm.waitConsole(/READY/);
    expect(await vm.procBoot()).toMatchObject({ slot: "a", slot_version: "1.0.0", slot_state: "good" });
    const targets = Array.from({ length: 8 }, () => Math.floor(next() * size)).sort((x, y) => x - y);
    let verified = 0;
    for (const [i, target] of targets.entries()) {
      const sending = vm.update([v2, "--no-reboot"]);
      // Watch the verified offset through /update/status; cut the power once it passes the target.
      let seen = verified;
      while (seen < target && sending.exitCode == null) {
        const status = await vm.updateStatus().catch(() => undefined);
        if (status && (status.transfer === "receiving" || status.transfer === "staged")) seen = Math.max(seen, Number(status.received));
        else await sleep(100);
      }
      await vm.kill9();
      if (sending.pid !== undefined && sending.exitCode == null) process.kill(sending.pid, "SIGKILL");
      await sending.catch(() => {});
      process.stderr.write(`e2e: cut ${i + 1} at verified ${seen} of ${size} (target ${target})\n`);
      const boot = await bootAfterCut(`cut-${i + 1}`);
      expect(boot).toMatchObject({ slot: "a", slot_version: "1.0.0" });
      const resumed = await begin();
      expect(resumed).toBeGreaterThanOrEqual(seen);
      expect(resumed).toBeLessThanOrEqual(size);
      verified = resumed;
    }
  }, 10 * CASE_MS);

  it("two cuts during the commit's writes (the slot, the boot state): each boot is of slot a, good; the staged bundle survives, and the update then completes", async () => {
    // The rest of the transfer, staged but not committed: stream it from the verified offset.
    const bytes = await readFile(v2);
    const root = await vm.attachQueen();
    const data = await root.walk("update/data");
    await data.open("w");
    for (let at = await begin(); at < size; ) at += await data.write(bytes.subarray(at, Math.min(size, at + 60_000)), at);
    await data.clunk();
    root.client.close();
    expect(await vm.updateStatus()).toMatchObject({ transfer: "staged", received: String(size) });
    // Cut 9: the moment the boot state on the card changes (slot b marked empty, before its files).
    // Cut 10: a random moment up to 3 s after that, while slot b's files are written.
    for (const [i, when] of (["state", "slot"] as const).entries()) {
      const untouched = (await vm.bootFile("/state.env")).toString("latin1");
      const committing = vm.updateCtl({ commit: { tries: 3, allowDowngrade: false } });
      const deadline = Date.now() + 120_000;
      while (Date.now() < deadline && (await vm.bootFile("/state.env")).toString("latin1") === untouched) await sleep(20);
      if (when === "slot") await sleep(Math.floor(next() * 3000));
      await vm.kill9();
      await committing;
      const state = await vm.bootState();
      process.stderr.write(`e2e: cut ${9 + i} during the commit (${when}): b=${state?.slots.b} try=${state?.try}\n`);
      expect(state?.active).toBe("a");
      const boot = await bootAfterCut(`commit-cut-${i + 1}`);
      if (boot.slot === "a") {
        expect(boot).toMatchObject({ slot_version: "1.0.0", slot_state: "good" });
        expect(await begin()).toBe(size);
      }
    }
    // Whatever the cuts left, the update completes: commit (unless a cut came after it), reboot, v2 confirmed.
    const boot = await vm.procBoot();
    if (boot.slot === "a") {
      expect(await vm.updateCtl({ commit: { tries: 3, allowDowngrade: false } })).toBe("ok slot=b version=2.0.0 tries=3");
      const mark = await vm.mark();
      expect(await vm.updateCtl({ reboot: true })).toBe("ok rebooting");
      await vm.waitConsole(/cohesix: booting slot b \(try\)[^]*READY/, { since: mark });
    }
    expect(await vm.confirmed()).toMatchObject({ slot: "b", slot_version: "2.0.0", slot_state: "good" });
    expect(formatBootState((await vm.bootState())!).length).toBe(512);
  }, 4 * CASE_MS);
});
