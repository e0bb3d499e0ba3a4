/**
 * Try, confirm and roll back, in the appliance, under Debian's real
 * qemu_arm64 U-Boot with real image bytes (`cohesix image --ab`), booted
 * the way `cohesix boot --disk` boots an A/B image: without `-no-reboot`
 * and with the i6300esb watchdog, so a guest reboot goes back to U-Boot
 * in the same QEMU.
 *
 * (a) Slot B set to `trying` (state written with mtools) holding a good
 *     build: U-Boot takes a try, `/proc/boot` says `slot=b
 *     slot_state=trying` while the health window runs, then the root task
 *     confirms it — `good` in `/proc/boot`, and on the disk exactly the
 *     record `ab_active=b ab_b=good ab_try=none`. The watchdog is armed.
 * (b) Slot B holding a build whose required worker (a project worker
 *     with `"required": true`) exits at once: the root task does not
 *     confirm it, records why and reboots by itself; after the two tries
 *     U-Boot boots A, whose `/proc/boot` and queen log say `rolled_back
 *     from=b reason=required worker crash … exited with code 1`.
 * (c) Through those guest reboots the QEMU process and its host forward
 *     stay: the same PID runs, and the 9P client reaches the rolled-back
 *     appliance on the same port.
 * (d) Slot B holding a build whose root task hangs (its self-test stops
 *     it with SIGSTOP): nothing feeds the watchdog, which resets the
 *     machine after each try; U-Boot rolls back to A, which says the tries
 *     ran out without a verdict (the failure recorded for the crashing
 *     build of (b) is not this build's, so it is not shown).
 *
 * The second build's slot files are copied into the first image's `/b`
 * with mtools (both signed with one release key). Needs qemu-system-aarch64,
 * u-boot-qemu, u-boot-tools, mtools, dosfstools, fdisk and the board's
 * artefacts (scripts/setup.sh). QEMU is stopped by PID.
 */
import { execa, type ResultPromise } from "execa";
import { existsSync } from "node:fs";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadBoard } from "../../boards/index.ts";
import { loadDiskSpec, type ImageManifest } from "../../flash/index.ts";
import { qemuArgs } from "../../qemu/index.ts";
import { formatBootState, type BootState } from "../../update/index.ts";
import { E2e, alive, freePort } from "../qemu/harness.ts";

const BUILD_MS = 600_000;
/** Generous: one U-Boot boot to READY takes 7–10 s on an idle machine, near a minute on a busy one. */
const BOOT_MS = 420_000;
/** The health window the image's command line asks for: long enough to read `/proc/boot` while it runs. */
const WINDOW_S = 25;

let e2e!: E2e;
let dir = "";
let image = "";
let bootOffset = 0;
let crashBoot = 0;
let crashImage = "";
let hangBoot = 0;
let hangImage = "";
let qemu: ResultPromise | undefined;
let log = "";
const board = loadBoard("aarch64-virt");
const disk = loadDiskSpec(board);
const mtools = { MTOOLS_SKIP_CHECK: "1" };

async function readFat(img: string, offset: number, path: string): Promise<Buffer> {
  const r = await execa("mcopy", ["-n", "-i", `${img}@@${offset}`, `::${path}`, "-"], { env: mtools, encoding: "buffer" });
  return Buffer.from(r.stdout);
}

async function putFile(src: string, path: string): Promise<void> {
  await execa("mcopy", ["-o", "-i", `${image}@@${bootOffset}`, src, `::${path}`], { env: mtools });
}

async function putState(name: string, state: BootState): Promise<void> {
  const file = join(dir, name);
  await writeFile(file, formatBootState(state));
  await putFile(file, "/state.env");
  await putFile(file, "/state.bak");
}

async function stop(): Promise<void> {
  const pid = qemu?.pid;
  if (pid === undefined || !alive(pid)) return;
  process.kill(pid, "SIGTERM");
  for (let i = 0; i < 100 && alive(pid); i++) await sleep(100);
  if (alive(pid)) process.kill(pid, "SIGKILL");
  await qemu!.catch(() => {});
}

/** Starts QEMU on the A/B image as `cohesix boot --disk` does; the suite's dial string follows its port. */
async function start(name: string): Promise<void> {
  log = join(dir, `${name}.console.log`);
  const hostPort = await freePort();
  e2e.dial = `tcp!127.0.0.1!${hostPort}`;
  const args = qemuArgs({
    board,
    disk: { firmware: disk.firmware!.path, image, ab: true, ...(disk.qemuDevice ? { device: disk.qemuDevice } : {}), ...(disk.qemuMachineOptions ? { machineOptions: disk.qemuMachineOptions } : {}) },
    hostPort,
    qmpSocket: join(dir, `${name}.qmp`),
    consoleLog: log,
  });
  expect(args).not.toContain("-no-reboot");
  expect(args).toContain("i6300esb");
  qemu = execa(board.qemu.binary, args, { stdin: "ignore", reject: false, cleanup: true });
}

/** Waits until the console matches `until` while QEMU runs; returns the console text. */
async function consoleUntil(until: RegExp): Promise<string> {
  const deadline = Date.now() + BOOT_MS;
  let text = "";
  while (Date.now() < deadline) {
    text = await readFile(log, "latin1").catch(() => "");
    if (until.test(text)) return text;
    if (qemu?.exitCode !== null && qemu?.exitCode !== undefined) break;
    await sleep(500);
  }
  throw new Error(`${until} not seen on the console${qemu?.exitCode != null ? ` (QEMU exited ${qemu.exitCode})` : ""}\n--- console (last lines) ---\n${text.slice(-4000)}`);
}

const boots = (text: string): string[] => [...text.matchAll(/cohesix: booting slot (\w) \((\w+)\)/g)].map((m) => `${m[1]}:${m[2]}`);

describe("try, confirm and roll back in the appliance (QEMU, Debian's U-Boot, real image)", () => {
  beforeAll(async () => {
    e2e = await E2e.create("cohesix-confirm-");
    dir = e2e.dir;
    expect(existsSync(disk.firmware!.path), `install ${disk.firmware!.package}`).toBe(true);
    const release = await e2e.cohesix(["keygen", "--release", "--out", e2e.keys]);
    expect(release.exitCode, release.stderr).toBe(0);
    const key = join(e2e.keys, "release.key");
    // The self-test runs only in a build that carries one: the hanging build of (d).
    const append = `cohesix.health_window=${WINDOW_S} cohesix.health_deadline=240 cohesix.selftest=1`;
    image = join(dir, "ab.img");
    let r = await e2e.cohesix(["image", "--ab", "--board", "aarch64-virt", "--out", image, "--key", key, "--queen-pub", e2e.queenPub, "--dir", join(dir, ".cohesix"), "--append", append], { timeoutMs: BUILD_MS });
    expect(r.exitCode, r.stderr).toBe(0);
    bootOffset = (JSON.parse(await readFile(`${image}.manifest.json`, "utf8")) as ImageManifest).partitions.find((p) => p.role === "boot")!.start;

    // A project whose required worker exits at once: its build goes into slot B for (b).
    const project = join(dir, "crash-project");
    await mkdir(join(project, "workers"), { recursive: true });
    await writeFile(join(project, "workers", "crash.mjs"), 'process.stderr.write("crash: exiting at once\\n");\nprocess.exit(1);\n');
    await writeFile(join(project, "cohesix.config.json"), `${JSON.stringify({ board: "aarch64-virt", workers: [{ name: "crash", entry: "workers/crash.mjs", required: true }] }, null, 2)}\n`);
    crashImage = join(dir, "crash.img");
    r = await e2e.cohesix(["image", "--ab", "--project", project, "--board", "aarch64-virt", "--out", crashImage, "--key", key, "--queen-pub", e2e.queenPub, "--dir", join(dir, ".cohesix"), "--data-mb", "16"], { timeoutMs: BUILD_MS });
    expect(r.exitCode, r.stderr).toBe(0);
    crashBoot = (JSON.parse(await readFile(`${crashImage}.manifest.json`, "utf8")) as ImageManifest).partitions.find((p) => p.role === "boot")!.start;

    // A build whose root task hangs once serving: its self-test stops it.
    const hang = join(dir, "hang-selftest.sh");
    await writeFile(hang, '#!/bin/sh\nfor d in /proc/[0-9]*; do\n  if grep -q boot.mjs "$d/cmdline" 2>/dev/null; then kill -STOP "${d#/proc/}" && echo "selftest: root task ${d#/proc/} stopped"; fi\ndone\n', { mode: 0o755 });
    hangImage = join(dir, "hang.img");
    r = await e2e.cohesix(["image", "--ab", "--board", "aarch64-virt", "--out", hangImage, "--key", key, "--queen-pub", e2e.queenPub, "--dir", join(dir, ".cohesix"), "--data-mb", "16", "--extra", `${hang}:/etc/cohesix/selftest.sh`], { timeoutMs: BUILD_MS });
    expect(r.exitCode, r.stderr).toBe(0);
    hangBoot = (JSON.parse(await readFile(`${hangImage}.manifest.json`, "utf8")) as ImageManifest).partitions.find((p) => p.role === "boot")!.start;
  }, 3 * BUILD_MS);

  afterAll(async () => {
    await stop();
    if (e2e) await e2e.teardown();
  }, 60_000);

  it("(a) a good build in a trying slot B is confirmed by the root task once healthy: trying, then good, and the state written", async () => {
    await putState("state-trying", { seq: 2, active: "a", try: "b", tries: 3, slots: { a: "good", b: "trying" } });
    await start("confirm");
    try {
      await consoleUntil(/READY/);
      const before = await e2e.queen(["cat", "/proc/boot"], 40);
      expect(before).toMatch(/^slot=b$/m);
      expect(before).toMatch(/^slot_state=trying$/m);
      expect(before).toMatch(/^tries_left=2$/m);
      expect(before).toMatch(/^slot_version=0\.0\.0$/m);
      expect(before).toMatch(/^manifest_check=(pending|ok)$/m);
      const text = await consoleUntil(/cohesix: slot b confirmed good/);
      expect(boots(text)).toEqual(["b:try"]);
      const after = await e2e.queen(["cat", "/proc/boot"], 40);
      expect(after).toMatch(/^slot_state=good$/m);
      expect(after).toMatch(/^manifest_check=ok$/m);
      const audit = await e2e.queen(["cat", "/log/queen.log"], 40);
      expect(audit).toContain("watchdog armed");
      expect(audit).toContain("slot b confirmed good");
    } finally {
      await stop();
    }
    const confirmed = formatBootState({ seq: 4, active: "b", try: null, tries: 0, slots: { a: "good", b: "good" } });
    expect(Buffer.compare(await readFat(image, bootOffset, "/state.env"), confirmed)).toBe(0);
    expect(Buffer.compare(await readFat(image, bootOffset, "/state.bak"), confirmed)).toBe(0);
  }, BOOT_MS + 120_000);

  it("(b, c) a B whose required worker exits is not confirmed: the guest reboots itself twice, U-Boot rolls back to A, which says why — all in one QEMU on one port", async () => {
    for (const name of ["Image", "initrd.gz", "manifest.json"]) {
      const file = join(dir, `crash-${name}`);
      await writeFile(file, await readFat(crashImage, crashBoot, `/b/${name}`));
      await putFile(file, `/b/${name}`);
    }
    await putState("state-crash", { seq: 10, active: "a", try: "b", tries: 2, slots: { a: "good", b: "trying" } });
    await start("rollback");
    const pid = qemu!.pid!;
    const dial = e2e.dial;
    try {
      const text = await consoleUntil(/cohesix: booting slot a \(rollback\)[^]*READY/);
      expect(boots(text)).toEqual(["b:try", "b:try", "a:rollback"]);
      expect(text.match(/cohesix: slot b not confirmed: required worker crash \(worker-\d+\) exited: exited with code 1; rebooting/g)?.length).toBe(2);
      // (c) the same QEMU, the same host forward.
      expect(alive(pid)).toBe(true);
      expect(qemu!.pid).toBe(pid);
      expect(e2e.dial).toBe(dial);
      const boot = await e2e.queen(["cat", "/proc/boot"], 40);
      expect(boot).toMatch(/^slot=a$/m);
      expect(boot).toMatch(/^slot_state=good$/m);
      expect(boot).toMatch(/^rolled_back from=b reason=required worker crash \(worker-\d+\) exited: exited with code 1$/m);
      const audit = await e2e.queen(["cat", "/log/queen.log"], 40);
      expect(audit).toMatch(/rolled_back from=b reason=required worker crash \(worker-\d+\) exited: exited with code 1/);
    } finally {
      await stop();
    }
    const rolledBack = formatBootState({ seq: 13, active: "a", try: null, tries: 0, slots: { a: "good", b: "rolled_back" } });
    expect(Buffer.compare(await readFat(image, bootOffset, "/state.env"), rolledBack)).toBe(0);
  }, 2 * BOOT_MS);

  it("(d) a B whose root task hangs is reset by the watchdog after each try, and U-Boot rolls back to A, which says no verdict was recorded", async () => {
    for (const name of ["Image", "initrd.gz", "manifest.json"]) {
      const file = join(dir, `hang-${name}`);
      await writeFile(file, await readFat(hangImage, hangBoot, `/b/${name}`));
      await putFile(file, `/b/${name}`);
    }
    await putState("state-hang", { seq: 20, active: "a", try: "b", tries: 2, slots: { a: "good", b: "trying" } });
    await start("watchdog");
    const pid = qemu!.pid!;
    try {
      const text = await consoleUntil(/cohesix: booting slot a \(rollback\)[^]*READY/);
      expect(boots(text)).toEqual(["b:try", "b:try", "a:rollback"]);
      expect(text.match(/selftest: root task \d+ stopped/g)?.length).toBe(2);
      expect(text).not.toContain("not confirmed");
      expect(alive(pid)).toBe(true);
      const boot = await e2e.queen(["cat", "/proc/boot"], 40);
      expect(boot).toMatch(/^slot=a$/m);
      expect(boot).toMatch(/^rolled_back from=b reason=its tries ran out before it was confirmed \(no verdict recorded: /m);
    } finally {
      await stop();
    }
  }, 2 * BOOT_MS);
});
