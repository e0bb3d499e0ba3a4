/**
 * End to end through real firmware, as on a board: the real CLI builds the
 * aarch64-virt disk image and its signed manifest (`cohesix image`), checks
 * it (`cohesix image verify`), flashes it to a plain file (`cohesix flash
 * --target-file --yes`), and QEMU boots that file with Debian's qemu_arm64
 * U-Boot as `-bios` and the disk on virtio-blk. U-Boot finds
 * extlinux/extlinux.conf and loads the kernel and initramfs; `cohesix
 * console` reads the serial console from QEMU's `-serial pty` through
 * serialport until READY; then the queen drives the guest over 9P through
 * the host forward: /proc/boot shows the image and boot manifest digests
 * (the boot-time check passed), a heartbeat worker is spawned and its
 * telemetry read; the power key shuts it down and the commit log is on the
 * card's ext4 data partition; `cohesix boot --disk` boots the same card
 * again with its state.
 *
 * Needs qemu-system-aarch64, u-boot-qemu, mtools, dosfstools, fdisk and the
 * board's artefacts (scripts/setup.sh). QEMU is stopped by PID.
 */
import { execa, type ResultPromise } from "execa";
import { existsSync } from "node:fs";
import { open, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadBoard } from "../../boards/index.ts";
import { loadDiskSpec, type ImageManifest } from "../../flash/index.ts";
import { QmpClient, consolePty, launchQemu, type LaunchedQemu } from "../../qemu/index.ts";
import { LOG_FILE } from "../../root-task/index.ts";
import { E2e, alive, freePort } from "../qemu/harness.ts";

const BUILD_MS = 600_000;
const BOOT_S = 300;

/** The suite's harness, made in beforeAll. */
let e2e!: E2e;
let dir = "";
let keys = "";
let qemu: LaunchedQemu | undefined;
let manifest: ImageManifest;
let consoleRun: ResultPromise | undefined;

function cohesix(args: readonly string[], timeoutMs = 120_000) {
  return e2e.cohesix(args, { timeoutMs });
}

/** Retries a queen command: the host forward accepts before the guest serves. */
function queen(args: readonly string[]): Promise<string> {
  return e2e.queen(args, 20);
}

/** /proc/boot once the boot manifest check is done (it runs beside the boot). */
async function bootChecked(): Promise<string> {
  let boot = await queen(["cat", "/proc/boot"]);
  for (let i = 0; i < 120 && /manifest_check=pending/.test(boot); i++) {
    await sleep(1000);
    boot = await queen(["cat", "/proc/boot"]);
  }
  return boot;
}

async function consoleLog(): Promise<string> {
  return readFile(join(dir, "run", "console.log"), "utf8").catch(() => "");
}

describe("aarch64-virt disk image booted by U-Boot (QEMU)", () => {
  beforeAll(async () => {
    e2e = await E2e.create("cohesix-uboot-");
    ({ dir, keys } = e2e);
    const release = await cohesix(["keygen", "--release", "--out", keys]);
    expect(release.exitCode, release.stderr).toBe(0);
    expect(release.stdout).toContain(join(keys, "release.key"));
  }, 60_000);

  afterAll(async () => {
    if (consoleRun?.pid !== undefined && consoleRun.exitCode === null) process.kill(consoleRun.pid, "SIGTERM");
    if (qemu && alive(qemu.pid)) {
      process.kill(qemu.pid, "SIGTERM");
      for (let i = 0; i < 50 && alive(qemu.pid); i++) await sleep(100);
      if (alive(qemu.pid)) process.kill(qemu.pid, "SIGKILL");
    }
    // The second boot (cohesix boot --disk --detach) records its QEMU's pid.
    if (e2e) await e2e.teardown();
  }, 120_000);

  it("cohesix image builds the disk image and its signed manifest, and image verify accepts it", async () => {
    const started = Date.now();
    const image = join(dir, "cohesix.img");
    const r = await cohesix(["image", "--board", "aarch64-virt", "--out", image, "--key", join(keys, "release.key"), "--queen-pub", join(keys, "queen.pub"), "--dir", join(dir, ".cohesix")], BUILD_MS);
    expect(r.exitCode, r.stderr).toBe(0);
    process.stderr.write(`e2e: cohesix image in ${((Date.now() - started) / 1000).toFixed(1)} s\n`);
    expect(r.stdout.split("\n")[0]).toBe(image);
    manifest = JSON.parse(await readFile(`${image}.manifest.json`, "utf8")) as ImageManifest;
    expect(manifest.artefacts.map((a) => a.path)).toEqual(["/Image", "/cohesix/manifest.json", "/extlinux/extlinux.conf", "/initrd.gz"]);
    const v = await cohesix(["image", "verify", image, "--pub", join(keys, "release.pub")], 120_000);
    expect(v.exitCode, v.stderr).toBe(0);
    expect(v.stdout).toContain(`sha256 ${manifest.image.sha256}`);
    expect(v.stdout).toContain(`boot manifest ${manifest.bootManifest}`);
  }, BUILD_MS + 60_000);

  it("cohesix flash --target-file writes it, U-Boot boots it, and cohesix console sees READY on the serial pty", async () => {
    const image = join(dir, "cohesix.img");
    const target = join(dir, "flashed.img");
    const f = await cohesix(["flash", image, "--target-file", target, "--yes", "--pub", join(keys, "release.pub")], 300_000);
    expect(f.exitCode, `${f.stdout}\n${f.stderr}`).toBe(0);
    expect(existsSync(target)).toBe(true);

    const board = loadBoard("aarch64-virt");
    const disk = loadDiskSpec(board);
    expect(disk.firmware).toBeDefined();
    expect(existsSync(disk.firmware!.path), `install ${disk.firmware!.package}`).toBe(true);
    const port = await freePort();
    e2e.dial = `tcp!127.0.0.1!${port}`;
    const run = join(dir, "run");
    const started = Date.now();
    qemu = await launchQemu({
      board,
      disk: {
        firmware: disk.firmware!.path,
        image: target,
        ...(disk.qemuDevice ? { device: disk.qemuDevice } : {}),
        ...(disk.qemuMachineOptions ? { machineOptions: disk.qemuMachineOptions } : {}),
      },
      hostPort: port,
      qmpSocket: join(run, "qmp.sock"),
      consoleLog: join(run, "console.log"),
      stderrFile: join(dir, "qemu.err"),
      serialPty: true,
    });
    const pty = await consolePty(join(dir, "qemu.err"), { timeoutMs: 30_000 });
    expect(pty).toMatch(/^\/dev\/pts\/\d+$/);
    consoleRun = cohesix(["console", "--port", pty, "--expect", "READY", "--timeout", String(BOOT_S), "--log", join(dir, "serial.log")], (BOOT_S + 30) * 1000);
    const c = await consoleRun;
    const log = await consoleLog();
    expect(c.exitCode, `console: ${c.stderr}\n--- console.log ---\n${log.slice(-4000)}`).toBe(0);
    process.stderr.write(`e2e: QEMU start → READY through U-Boot in ${((Date.now() - started) / 1000).toFixed(1)} s\n`);
    expect(c.stderr).toContain(`found "READY" on ${pty}`);
    expect(String(c.stdout)).toContain("Starting kernel");
    expect(String(c.stdout)).toContain("READY");
    expect(log).toContain("Found /extlinux/extlinux.conf");
    expect(log).toContain("cohesix.boot=/dev/vda1 cohesix.state=/dev/vda2");
    expect(log).not.toMatch(/did not mount|no state disk/);
  }, 600_000);

  it("the queen reads /proc/boot over 9P: the image and boot manifest digests, and the boot-time check passed", async () => {
    const boot = await bootChecked();
    expect(boot).toContain("board=aarch64-virt");
    expect(boot).toContain(`image=${manifest.initramfs}`);
    expect(boot).toContain(`manifest=${manifest.bootManifest}`);
    expect(boot).toMatch(/^manifest_check=ok$/m);
    expect(await queen(["cat", "/log/queen.log"])).toContain(`boot manifest ${manifest.bootManifest} ok`);
  }, 240_000);

  it("the queen spawns a heartbeat worker and reads its telemetry", async () => {
    const reply = await queen(["ctl", '{"spawn":"heartbeat","ticks":3}']);
    const id = /worker-\d+/.exec(reply)?.[0];
    expect(id, reply).toBeDefined();
    let ticks: string[] = [];
    for (let i = 0; i < 90 && ticks.length < 3; i++) {
      await sleep(1000);
      ticks = (await queen(["cat", `/worker/${id}/telemetry`])).split("\n").filter((l) => l.includes('"tick"'));
    }
    expect(ticks.length).toBeGreaterThanOrEqual(3);
    for (const line of ticks) expect(() => JSON.parse(line)).not.toThrow();
    const state = JSON.parse(await queen(["cat", "/proc/state"])) as { seq: number };
    expect(state.seq).toBeGreaterThanOrEqual(1);
  }, 180_000);

  it("the power key shuts the guest down cleanly, and the commit log is on the flashed disk's ext4 data partition", async () => {
    const qmp = await QmpClient.connect(join(dir, "run", "qmp.sock"), { timeoutMs: 10_000 });
    await qmp.powerdown();
    qmp.close();
    const code = await Promise.race([qemu!.exited, sleep(90_000).then(() => "timeout" as const)]);
    expect(code, (await consoleLog()).slice(-3000)).not.toBe("timeout");
    expect(await consoleLog()).toContain("cohesix: stopping (power key)");
    const data = manifest.partitions.find((p) => p.role === "data")!;
    const fh = await open(join(dir, "flashed.img"), "r");
    const buf = Buffer.alloc(data.size);
    await fh.read(buf, 0, data.size, data.start);
    await fh.close();
    const part = join(dir, "data.ext4");
    await writeFile(part, buf);
    const sbin = { PATH: `${process.env.PATH}:/usr/sbin:/sbin` };
    const ls = await execa("debugfs", ["-R", "ls -l /", part], { env: sbin, reject: false });
    const entry = ls.stdout.split("\n").find((l) => l.trim().endsWith(` ${LOG_FILE}`));
    expect(entry, ls.stdout).toBeDefined();
    expect(Number(entry!.trim().split(/\s+/).at(-4))).toBeGreaterThan(0);
  }, 180_000);

  it("cohesix boot --disk boots the same card again: the state on its data partition survived, and down uses the power key", async () => {
    const r = await cohesix(["boot", "--disk", join(dir, "flashed.img"), "--detach", "--port", "0", "--dir", join(dir, ".cohesix")], BOOT_S * 1000);
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/boot: serial console on \/dev\/pts\/\d+: cohesix console --port \/dev\/pts\/\d+/);
    e2e.dial = r.stdout.split("\n")[0]!;
    expect(e2e.dial).toMatch(/^tcp!127\.0\.0\.1!\d+$/);
    const boot = await bootChecked();
    expect(boot).toContain(`manifest=${manifest.bootManifest}`);
    expect(boot).toMatch(/^manifest_check=ok$/m);
    expect(boot).toMatch(/^log_head=([1-9]\d*)$/m);
    expect(await queen(["cat", "/log/queen.log"])).toMatch(/spawned worker-1/);
    const down = await cohesix(["down", "--dir", join(dir, ".cohesix")], 120_000);
    expect(down.exitCode, down.stderr).toBe(0);
    expect(down.stdout).toContain("stopped (power key)");
  }, (BOOT_S + 120) * 1000);
});
