/**
 * The A/B boot script under Debian's real qemu_arm64 U-Boot, with the real
 * board image (`cohesix image --ab`): QEMU boots the disk with U-Boot as
 * `-bios`, and the launcher leaves out `-no-reboot` for an A/B disk, so a
 * kernel panic (`panic=-1` on the command line) reboots into U-Boot again,
 * as a board's would.
 *
 * (a) A normal boot of slot A reaches READY, the appliance's boot-time
 *     manifest check passes, and both state copies are byte-identical
 *     after it: a normal boot never touches the counter.
 * (b) Slot B is set to try with 2 tries and its initramfs is truncated, so
 *     its kernel panics: the console shows B tried twice (the try taken
 *     before the kernel starts), then A booted to READY, and the state
 *     says B rolled_back — exactly the record formatBootState writes.
 * (c) The next boot is a normal boot of A; B is not tried again, and the
 *     state is not touched.
 * (d) A power cut while state.env was written (new bytes in front, old
 *     behind): U-Boot refuses it and uses state.bak.
 * (e) Neither copy whole (empty files): U-Boot boots slot A anyway and
 *     writes nothing.
 *
 * The state is read back from the image with mtools (`mcopy -i img@@offset`).
 * Needs qemu-system-aarch64, u-boot-qemu, u-boot-tools, mtools, dosfstools,
 * fdisk and the board's artefacts (scripts/setup.sh). QEMU is stopped by PID.
 */
import { execa, type ResultPromise } from "execa";
import { existsSync } from "node:fs";
import { readFile, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadBoard } from "../../boards/index.ts";
import { loadDiskSpec, type ImageManifest } from "../../flash/index.ts";
import { qemuArgs } from "../../qemu/index.ts";
import { formatBootState, type BootState } from "../../update/index.ts";
import { E2e, alive, freePort } from "../qemu/harness.ts";

const BUILD_MS = 600_000;
/** Generous: one U-Boot boot to READY takes 7–10 s on an idle machine. */
const BOOT_MS = 300_000;

let e2e!: E2e;
let dir = "";
let image = "";
let bootOffset = 0;
let qemu: ResultPromise | undefined;
const board = loadBoard("aarch64-virt");
const disk = loadDiskSpec(board);
const mtools = { MTOOLS_SKIP_CHECK: "1" };

async function readState(name: string): Promise<Buffer> {
  const r = await execa("mcopy", ["-n", "-i", `${image}@@${bootOffset}`, `::/${name}`, "-"], { env: mtools, encoding: "buffer" });
  return Buffer.from(r.stdout);
}

async function putFile(src: string, path: string): Promise<void> {
  await execa("mcopy", ["-o", "-i", `${image}@@${bootOffset}`, src, `::${path}`], { env: mtools });
}

async function stop(): Promise<void> {
  const pid = qemu?.pid;
  if (pid === undefined || !alive(pid)) return;
  process.kill(pid, "SIGTERM");
  for (let i = 0; i < 100 && alive(pid); i++) await sleep(100);
  if (alive(pid)) process.kill(pid, "SIGKILL");
  await qemu!.catch(() => {});
}

/**
 * Boots the image (rebooting on panic) until the console log matches
 * `until`, runs `during` while the guest still runs, stops QEMU by PID;
 * returns the log.
 */
async function bootUntil(name: string, until: RegExp, during?: () => Promise<void>): Promise<string> {
  const log = join(dir, `${name}.console.log`);
  await rm(log, { force: true });
  const hostPort = await freePort();
  e2e.dial = `tcp!127.0.0.1!${hostPort}`;
  const args = qemuArgs({
    board,
    disk: { firmware: disk.firmware!.path, image, ab: true, ...(disk.qemuDevice ? { device: disk.qemuDevice } : {}), ...(disk.qemuMachineOptions ? { machineOptions: disk.qemuMachineOptions } : {}) },
    hostPort,
    qmpSocket: join(dir, `${name}.qmp`),
    consoleLog: log,
  });
  qemu = execa(board.qemu.binary, args, { stdin: "ignore", reject: false, cleanup: true });
  const deadline = Date.now() + BOOT_MS;
  let text = "";
  try {
    while (Date.now() < deadline) {
      text = await readFile(log, "latin1").catch(() => "");
      if (until.test(text)) {
        await during?.();
        return text;
      }
      if (qemu.exitCode !== null && qemu.exitCode !== undefined) break;
      await sleep(500);
    }
    throw new Error(`${name}: ${until} not seen on the console\n--- console (last lines) ---\n${text.slice(-4000)}`);
  } finally {
    await stop();
  }
}

const count = (text: string, needle: string): number => text.split(needle).length - 1;

describe("A/B boot state under Debian's U-Boot (QEMU, real image)", () => {
  beforeAll(async () => {
    e2e = await E2e.create("cohesix-uboot-ab-");
    dir = e2e.dir;
    expect(existsSync(disk.firmware!.path), `install ${disk.firmware!.package}`).toBe(true);
    const release = await e2e.cohesix(["keygen", "--release", "--out", e2e.keys]);
    expect(release.exitCode, release.stderr).toBe(0);
    image = join(dir, "ab.img");
    const started = Date.now();
    const r = await e2e.cohesix(["image", "--ab", "--board", "aarch64-virt", "--out", image, "--key", join(e2e.keys, "release.key"), "--queen-pub", e2e.queenPub, "--dir", join(dir, ".cohesix")], { timeoutMs: BUILD_MS });
    expect(r.exitCode, r.stderr).toBe(0);
    process.stderr.write(`e2e: cohesix image --ab in ${((Date.now() - started) / 1000).toFixed(1)} s\n`);
    const manifest = JSON.parse(await readFile(`${image}.manifest.json`, "utf8")) as ImageManifest;
    bootOffset = manifest.partitions.find((p) => p.role === "boot")!.start;
  }, BUILD_MS + 60_000);

  afterAll(async () => {
    await stop();
    if (e2e) await e2e.teardown();
  }, 60_000);

  it("(a) a normal boot of slot A reaches READY, passes the boot manifest check, and leaves both state copies byte-identical", async () => {
    const env = await readState("state.env");
    const bak = await readState("state.bak");
    const started = Date.now();
    let boot = "";
    const log = await bootUntil("normal", /READY/, async () => {
      // The boot-time check runs beside the boot: wait until it is done.
      boot = await e2e.queen(["cat", "/proc/boot"], 20);
      for (let i = 0; i < 120 && /manifest_check=pending/.test(boot); i++) {
        await sleep(1000);
        boot = await e2e.queen(["cat", "/proc/boot"], 20);
      }
    });
    process.stderr.write(`e2e: QEMU start → READY through boot.scr in ${((Date.now() - started) / 1000).toFixed(1)} s\n`);
    expect(log).toContain("cohesix: boot state from state.env");
    expect(log).toContain("cohesix: booting slot a (normal)");
    expect(log).toMatch(/cohesix: kernel command line: .*cohesix\.boot=\/dev\/vda1 cohesix\.state=\/dev\/vda2 cohesix\.slot=a cohesix\.slot_boot=normal /);
    expect(log).not.toContain("Found /extlinux/extlinux.conf");
    // The appliance checked the image's boot manifest (both slots, boot.scr) and it passed.
    expect(boot).toMatch(/^manifest_check=ok$/m);
    expect(Buffer.compare(await readState("state.env"), env)).toBe(0);
    expect(Buffer.compare(await readState("state.bak"), bak)).toBe(0);
  }, BOOT_MS + 30_000);

  it("(b) B set to try with 2 tries and a truncated initramfs panics twice, then U-Boot boots A and the state says B rolled_back", async () => {
    const initrd = Buffer.from((await execa("mcopy", ["-n", "-i", `${image}@@${bootOffset}`, "::/b/initrd.gz", "-"], { env: mtools, encoding: "buffer" })).stdout);
    const truncated = join(dir, "truncated.gz");
    await writeFile(truncated, initrd.subarray(0, 4096));
    await putFile(truncated, "/b/initrd.gz");
    const trying: BootState = { seq: 2, active: "a", try: "b", tries: 2, slots: { a: "good", b: "trying" } };
    const state = join(dir, "state-trying");
    await writeFile(state, formatBootState(trying));
    await putFile(state, "/state.env");
    await putFile(state, "/state.bak");

    const log = await bootUntil("try", /cohesix: booting slot a \(rollback\)[^]*READY/);
    expect(count(log, "cohesix: booting slot b (try)")).toBe(2);
    expect(log).toContain("cohesix: trying slot b, 1 tries left after this one");
    expect(log).toContain("cohesix: trying slot b, 0 tries left after this one");
    expect(log).toMatch(/cohesix: kernel command line: .* cohesix\.slot=b cohesix\.slot_boot=try cohesix\.tries_left=1\r?\n/);
    expect(log).toMatch(/cohesix: kernel command line: .* cohesix\.slot=b cohesix\.slot_boot=try cohesix\.tries_left=0\r?\n/);
    expect(count(log, "Kernel panic - not syncing")).toBe(2);
    expect(log).toContain("cohesix: slot b has no tries left: rolled back to slot a");
    // The order: two tries of B, then A.
    const tries = [...log.matchAll(/cohesix: booting slot (\w) \((\w+)\)/g)].map((m) => `${m[1]}:${m[2]}`);
    expect(tries).toEqual(["b:try", "b:try", "a:rollback"]);
    const rolledBack = formatBootState({ seq: 5, active: "a", try: null, tries: 0, slots: { a: "good", b: "rolled_back" } });
    expect(Buffer.compare(await readState("state.env"), rolledBack)).toBe(0);
    expect(Buffer.compare(await readState("state.bak"), rolledBack)).toBe(0);
  }, BOOT_MS + 30_000);

  it("(c) the rolled-back B is not tried again: the next boot is a normal boot of A, and the state is untouched", async () => {
    const before = await readState("state.env");
    const log = await bootUntil("after", /READY/);
    const boots = [...log.matchAll(/cohesix: booting slot (\w) \((\w+)\)/g)].map((m) => `${m[1]}:${m[2]}`);
    expect(boots).toEqual(["a:normal"]);
    expect(log).not.toContain("trying slot b");
    expect(Buffer.compare(await readState("state.env"), before)).toBe(0);
  }, BOOT_MS + 30_000);

  it("(d) a state.env torn mid-write is refused and state.bak is used", async () => {
    const old = formatBootState({ seq: 5, active: "a", try: null, tries: 0, slots: { a: "good", b: "rolled_back" } });
    const next = formatBootState({ seq: 6, active: "a", try: "b", tries: 3, slots: { a: "good", b: "trying" } });
    const torn = Buffer.concat([next.subarray(0, 40), old.subarray(40)]);
    const file = join(dir, "state-torn");
    await writeFile(file, torn);
    await putFile(file, "/state.env");
    const log = await bootUntil("torn", /READY/);
    expect(log).toContain("cohesix: state.env is missing or torn");
    expect(log).toContain("cohesix: boot state from state.bak");
    expect([...log.matchAll(/cohesix: booting slot (\w) \((\w+)\)/g)].map((m) => `${m[1]}:${m[2]}`)).toEqual(["a:normal"]);
    expect(Buffer.compare(await readState("state.env"), torn)).toBe(0);
    expect(Buffer.compare(await readState("state.bak"), old)).toBe(0);
  }, BOOT_MS + 30_000);

  it("(e) with neither copy whole, U-Boot boots slot A and writes nothing", async () => {
    const file = join(dir, "state-empty");
    await writeFile(file, Buffer.alloc(512));
    await putFile(file, "/state.env");
    await putFile(file, "/state.bak");
    const log = await bootUntil("empty", /READY/);
    expect(log).toContain("cohesix: no whole boot state: booting slot a");
    expect(log).toMatch(/cohesix: kernel command line: .* cohesix\.slot=a cohesix\.slot_boot=fallback /);
    expect(Buffer.compare(await readState("state.env"), Buffer.alloc(512))).toBe(0);
    expect(Buffer.compare(await readState("state.bak"), Buffer.alloc(512))).toBe(0);
  }, BOOT_MS + 30_000);
});
