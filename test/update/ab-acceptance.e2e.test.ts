/**
 * The acceptance of field updates (#14), on real image bytes under
 * Debian's qemu_arm64 U-Boot, no mocks: `cohesix image --ab --version
 * 1.0.0` flashed with `cohesix flash --target-file`, bundles made with
 * `cohesix bundle` (and re-signed from its payloads for the hostile ones),
 * sent with `cohesix update` over 9P through QEMU's host forward. One
 * QEMU process per card: a guest reboot (an update, a panic, a failed try)
 * goes back through U-Boot, which counts the tries.
 *
 * One appliance runs the cases in order, each from the state the last
 * one left: (1) a good update to v2 is confirmed and keeps v1's workers
 * and commit log; (5) bundles signed by another key, built for another
 * board, or with a flipped byte are refused and change nothing; (6) an
 * update while a slot is trying is refused with what to do; (2) a v3 with
 * a truncated initramfs panics until its tries run out and U-Boot goes
 * back to v2 on its own; (3) a v4 whose required worker exits at once is
 * never confirmed, reboots and rolls back to v2. The power cuts (4) are
 * test/update/ab-power-cuts.e2e.test.ts, on a card of their own.
 *
 * Run it alone: `npm run build --silent && npx vitest run test/update/ab-acceptance.e2e.test.ts`.
 * Needs qemu-system-aarch64, u-boot-qemu, u-boot-tools, mtools, dosfstools,
 * fdisk and the board's artefacts (scripts/setup.sh).
 */
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { E2e } from "../qemu/harness.ts";
import { AbVm, BOOT_MS, BUILD_MS, deriveBundle, flipByte, payloadStart } from "./ab-vm.ts";

/** The health window of every slot (seconds), on the kernel command line: short, to keep the suite short. */
const HEALTH = ["cohesix.health_window=3"];
/** A case that boots a few times on the loaded 2-core machine. */
const CASE_MS = 3 * BOOT_MS;

let e2e!: E2e;
let image = "";
const bundles = { v2: "", v3: "", v4: "" };

/** The slots' files and both state copies, hashed: what "changes nothing" compares. */
async function bootPartition(vm: AbVm): Promise<string> {
  const files = [await vm.bootFile("/state.env"), await vm.bootFile("/state.bak")];
  return JSON.stringify({ state: files.map((f) => f.toString("hex")), a: await vm.slotDigests("a"), b: await vm.slotDigests("b") });
}

const boots = (log: string): string[] => [...log.matchAll(/cohesix: booting slot (\w) \((\w+)\)/g)].map((m) => `${m[1]}:${m[2]}`);
const count = (text: string, needle: string): number => text.split(needle).length - 1;

/** An appliance project whose one required worker exits at once: it starts, but is never healthy. */
async function dyingProject(dir: string): Promise<string> {
  await mkdir(join(dir, "workers"), { recursive: true });
  await writeFile(join(dir, "workers", "dies.ts"), 'process.stderr.write("dies: exiting at once\\n");\nprocess.exit(3);\n');
  const config = { board: "aarch64-virt", workers: [{ name: "dies", entry: "workers/dies.ts", role: "worker", required: true }], nineDoor: { port: 5640, policy: "open" } };
  await writeFile(join(dir, "cohesix.config.json"), `${JSON.stringify(config, null, 2)}\n`);
  await writeFile(join(dir, "package.json"), `${JSON.stringify({ name: "dies", version: "4.0.0", private: true, type: "module" }, null, 2)}\n`);
  return dir;
}

beforeAll(async () => {
  e2e = await E2e.create("cohesix-ab-accept-");
  const started = Date.now();
  image = await AbVm.buildImage(e2e, { version: "1.0.0", append: HEALTH });
  bundles.v2 = await AbVm.bundle(e2e, "2.0.0");
  // v3: v2's kernel and a truncated initramfs, properly signed: the kernel panics.
  bundles.v3 = await deriveBundle(bundles.v2, join(e2e.dir, "v3.0.0.bundle"), { key: join(e2e.keys, "release.key"), version: "3.0.0", truncateInitrd: 4096 });
  bundles.v4 = await AbVm.bundle(e2e, "4.0.0", { project: await dyingProject(join(e2e.dir, "dies")) });
  process.stderr.write(`e2e: image v1 and bundles v2, v3, v4 in ${((Date.now() - started) / 1000).toFixed(1)} s\n`);
}, 4 * BUILD_MS);

afterAll(async () => {
  if (e2e) await e2e.teardown();
}, 60_000);

describe("field updates under Debian's U-Boot: one appliance, case after case", () => {
  let vm!: AbVm;
  let worker = "";
  let logHead = 0;

  beforeAll(async () => {
    vm = await AbVm.flash(e2e, image, "card.img");
  }, BUILD_MS);

  afterAll(async () => {
    await vm?.stop();
  }, 60_000);

  it("(1) a good update: v1 flashed and booted through U-Boot takes v2 over 9P, reboots, confirms v2, and keeps v1's workers and commit log", async () => {
    await vm.boot("field");
    await vm.waitConsole(/READY/);
    const v1 = await vm.procBoot();
    expect(v1).toMatchObject({ slot: "a", slot_version: "1.0.0", slot_state: "good", manifest_check: "ok" });
    const reply = await e2e.queen(["ctl", '{"spawn":"heartbeat","ticks":100000,"budget":{"ttl_s":86400,"ops":1000000}}'], 20);
    worker = /worker-\d+/.exec(reply)?.[0] ?? "";
    expect(worker, reply).not.toBe("");
    logHead = Number((await vm.procBoot()).log_head);
    expect(logHead).toBeGreaterThan(0);

    const mark = await vm.mark();
    const started = Date.now();
    const up = await vm.update([bundles.v2]);
    expect(up.exitCode, `${up.stdout}\n${up.stderr}`).toBe(0);
    expect(up.stdout).toContain("slot b: version 2.0.0 written, trying with 3 tries");
    expect(up.stdout).toContain("rebooting");
    const log = await vm.waitConsole(/cohesix: booting slot b \(try\)[^]*READY/, { since: mark });
    expect(boots(log)).toEqual(["b:try"]);
    const v2 = await vm.confirmed();
    process.stderr.write(`e2e: cohesix update → v2 confirmed in ${((Date.now() - started) / 1000).toFixed(1)} s\n`);
    expect(v2).toMatchObject({ slot: "b", slot_version: "2.0.0", slot_state: "good", manifest_check: "ok" });
    expect(await vm.bootState()).toMatchObject({ active: "b", try: null, slots: { a: "good", b: "good" } });
    const status = await vm.updateStatus();
    expect(status).toMatchObject({ slot: "b", state: "good", version: "2.0.0", a_state: "good", a_version: "1.0.0", b_state: "good", b_version: "2.0.0", transfer: "idle" });
    // v1's worker and commit log came through the update.
    expect(await vm.read("/proc/workers")).toMatch(new RegExp(`^id=${worker} kind=heartbeat .*status=running`, "m"));
    expect(Number(v2.log_head)).toBeGreaterThanOrEqual(logHead);
    expect(await vm.read("/log/queen.log")).toContain(`spawned ${worker}`);
  }, CASE_MS);

  it("(5) a bundle signed by another key, one built for another board and one with a flipped byte are refused, and the boot partition is unchanged", async () => {
    const other = join(e2e.dir, "other-keys");
    const k = await e2e.cohesix(["keygen", "--release", "--out", other]);
    expect(k.exitCode, k.stderr).toBe(0);
    const key = join(e2e.keys, "release.key");
    const foreign = await deriveBundle(bundles.v2, join(e2e.dir, "foreign.bundle"), { key: join(other, "release.key"), version: "5.0.0" });
    const board = await deriveBundle(bundles.v2, join(e2e.dir, "board.bundle"), { key, version: "5.0.0", board: "raspberry-pi-4" });
    const good5 = await deriveBundle(bundles.v2, join(e2e.dir, "v5.bundle"), { key, version: "5.0.0" });
    const flipped = await flipByte(good5, join(e2e.dir, "flipped.bundle"), (await payloadStart(good5)) + 1500 * 1024);
    const before = await bootPartition(vm);
    const cases: Array<[string, RegExp]> = [
      [foreign, /permission: bundle signed by key \w+, this appliance trusts \w+/],
      [board, /invalid: bundle built for board raspberry-pi-4, this appliance is aarch64-virt/],
      [flipped, /invalid: chunk 1 .*does not match/],
    ];
    for (const [file, refusal] of cases) {
      const r = await vm.update([file, "--no-reboot"]);
      expect(r.exitCode, `${file}: ${r.stdout}\n${r.stderr}`).toBe(1);
      expect(r.stderr).toMatch(refusal);
      expect(await bootPartition(vm), file).toBe(before);
      expect(await vm.updateStatus()).toMatchObject({ slot: "b", state: "good", version: "2.0.0", b_state: "good", a_state: "good", a_version: "1.0.0" });
    }
    expect(await vm.procBoot()).toMatchObject({ slot: "b", slot_version: "2.0.0", slot_state: "good" });
    expect(await vm.updateCtl({ abort: true })).toBe("ok aborted");
  }, CASE_MS);

  it("(6) an update while a slot is trying is refused with what to do, and changes nothing", async () => {
    const up = await vm.update([bundles.v3, "--no-reboot", "--tries", "2"]);
    expect(up.exitCode, `${up.stdout}\n${up.stderr}`).toBe(0);
    expect(up.stdout).toContain("slot a: version 3.0.0 written, trying with 2 tries");
    expect(await vm.bootState()).toMatchObject({ active: "b", try: "a", tries: 2, slots: { a: "trying", b: "good" } });
    const before = await bootPartition(vm);
    const again = await vm.update([bundles.v4, "--no-reboot"]);
    expect(again.exitCode, `${again.stdout}\n${again.stderr}`).toBe(1);
    expect(again.stderr).toContain("busy: slot a is trying (2 tries left); wait until it is confirmed or rolled back, or run cohesix update --rollback");
    expect(await bootPartition(vm)).toBe(before);
    expect(await vm.updateStatus()).toMatchObject({ slot: "b", state: "good", a_state: "trying", a_version: "3.0.0", transfer: "idle" });
  }, CASE_MS);

  it("(2) v3's truncated initramfs panics on both tries, and U-Boot goes back to v2 with no help; /proc/boot reports the rollback", async () => {
    const mark = await vm.mark();
    const started = Date.now();
    expect(await vm.updateCtl({ reboot: true })).toBe("ok rebooting");
    const log = await vm.waitConsole(/cohesix: booting slot b \(rollback\)[^]*READY/, { since: mark, timeoutMs: CASE_MS - 60_000 });
    process.stderr.write(`e2e: broken v3 → serving on v2 in ${((Date.now() - started) / 1000).toFixed(1)} s\n`);
    expect(boots(log)).toEqual(["a:try", "a:try", "b:rollback"]);
    expect(count(log, "Kernel panic - not syncing")).toBe(2);
    expect(log).toContain("cohesix: slot a has no tries left: rolled back to slot b");
    const boot = await vm.procBoot();
    expect(boot).toMatchObject({ slot: "b", slot_version: "2.0.0", slot_state: "good" });
    expect(await vm.read("/proc/boot")).toMatch(/^rolled_back from=a reason=\S/m);
    expect(await vm.updateStatus()).toMatchObject({ slot: "b", state: "good", a_state: "rolled_back", a_version: "3.0.0", rolled_back: "a reason=tries_ran_out" });
    expect(await vm.bootState()).toMatchObject({ active: "b", try: null, tries: 0, slots: { a: "rolled_back", b: "good" } });
    expect(await vm.read("/proc/workers")).toMatch(new RegExp(`^id=${worker} kind=heartbeat .*status=running`, "m"));
  }, CASE_MS);

  it("(3) v4 boots but its required worker exits at once: it is never confirmed, the appliance reboots, and U-Boot rolls back to v2", async () => {
    const mark = await vm.mark();
    const up = await vm.update([bundles.v4, "--tries", "1"]);
    expect(up.exitCode, `${up.stdout}\n${up.stderr}`).toBe(0);
    expect(up.stdout).toContain("slot a: version 4.0.0 written, trying with 1 try");
    const log = await vm.waitConsole(/cohesix: booting slot b \(rollback\)[^]*READY/, { since: mark, timeoutMs: CASE_MS - 60_000 });
    expect(boots(log)).toEqual(["a:try", "b:rollback"]);
    // v4 itself came up (READY) before its verdict: it starts, but is never healthy.
    expect(log).toMatch(/cohesix: booting slot a \(try\)[^]*READY[^]*cohesix: slot a not confirmed: required worker dies \(worker-\d+\) exited[^\n]*; rebooting[^]*booting slot b \(rollback\)/);
    expect(log).not.toContain("Kernel panic");
    const boot = await vm.procBoot();
    expect(boot).toMatchObject({ slot: "b", slot_version: "2.0.0", slot_state: "good" });
    expect(await vm.read("/proc/boot")).toMatch(/^rolled_back from=a reason=required worker dies \(worker-\d+\) exited/m);
    expect(await vm.updateStatus()).toMatchObject({ slot: "b", state: "good", a_state: "rolled_back", a_version: "4.0.0" });
    expect(await vm.bootState()).toMatchObject({ active: "b", try: null, slots: { a: "rolled_back", b: "good" } });
  }, CASE_MS);
});
