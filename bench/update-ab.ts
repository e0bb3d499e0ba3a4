/**
 * `npm run bench -- update-ab`: a field update of the aarch64-virt board
 * under QEMU and Debian's U-Boot, on real image bytes (the harness of
 * test/update/ab-acceptance.e2e.test.ts). In one run:
 *
 * - the bundle's size against the flashed image's and the slot's files;
 * - the floor: the bundle's bytes sent raw through QEMU's user network
 *   into the same guest (a second host forward of the same `-netdev` to a
 *   busybox `nc -l` writing to /dev/null), until the guest closes;
 * - the transfer into the guest over 9P (`cohesix update`: begin, the
 *   bytes into /update/data one iounit per write, each chunk checked and
 *   synced in the guest), from the command's start until /update/status
 *   says `staged`, in MB/s against the floor;
 * - `cohesix update` → v2 confirmed: the transfer, the commit (the slot
 *   written and synced, the state), the reboot through U-Boot, the try
 *   boot and the health window, against the transfer plus two boots
 *   (one measured here: QEMU start → READY through U-Boot) plus the
 *   health window;
 * - a v3 with a truncated initramfs: from its reboot to serving again on
 *   v2 (two panicking tries, U-Boot's rollback, a boot).
 *
 * Needs qemu-system-aarch64, u-boot-qemu, mtools, dosfstools, fdisk and the
 * board's artefacts (scripts/setup.sh).
 *
 * @example
 * ```sh
 * npm run bench -- update-ab --floors 3
 * ```
 * @module
 */
import { readFile, stat, writeFile } from "node:fs/promises";
import { connect } from "node:net";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { parseArgs } from "node:util";
import { E2e } from "../test/qemu/harness.ts";
import { AbVm, deriveBundle } from "../test/update/ab-vm.ts";
import { load, verdict } from "./child.ts";

const USAGE = `usage: npm run bench -- update-ab [OPTIONS]

  --floors N    raw sends of the bundle for the floor (default 3, the best counts)
  --floor-only  boot v1 and measure the floor, no update
  --keep        keep the work folder
`;

/** The targets of the issue: transfer against the raw floor; update → confirmed against its parts. */
const TARGET = { transferRatio: 0.8 } as const;
/** The guest port of the raw sink. */
const SINK_PORT = 5641;
/** The health window every slot runs with (seconds, kernel command line). */
const HEALTH_S = 3;

/** The guest side of the floor: a busybox nc that reads each connection to the end into /dev/null. */
const SINK_SCRIPT = `#!/bin/sh
# Bench image only: a raw TCP sink for the transfer floor.
echo "update-ab sink on ${SINK_PORT}"
while true; do nc -l -p ${SINK_PORT} </dev/null >/dev/null; done
`;

const mb = (bytes: number, s: number): number => bytes / 1e6 / s;
const secs = (ms: number): string => (ms / 1000).toFixed(1);

/** Sends `bytes` to 127.0.0.1:port and resolves with the seconds until the peer has read them all and closed. */
async function rawSend(port: number, bytes: Buffer): Promise<number> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await new Promise<number>((resolve, reject) => {
        const started = performance.now();
        let wrote = false;
        const socket = connect({ port, host: "127.0.0.1", allowHalfOpen: true }, () => {
          socket.end(bytes, () => (wrote = true));
        });
        socket.on("error", reject);
        socket.on("close", () => (wrote ? resolve((performance.now() - started) / 1000) : reject(new Error("the sink closed before the bytes were sent"))));
      });
    } catch (err) {
      // The forward accepts and closes until the guest's nc listens.
      if (attempt >= 40) throw err;
      await sleep(500);
    }
  }
}

/** Polls /update/status until `transfer=staged`; resolves with the time it was first seen. */
async function whenStaged(vm: AbVm, done: () => boolean): Promise<number> {
  while (!done()) {
    const status = await vm.updateStatus().catch(() => undefined);
    if (status?.transfer === "staged") return performance.now();
    await sleep(100);
  }
  return performance.now();
}

/** Waits until /proc/boot names `slot` confirmed (`slot_state=good`). */
async function confirmedOn(vm: AbVm, slot: string, timeoutMs = 300_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const boot = await vm.procBoot().catch(() => ({}) as Record<string, string>);
    if (boot.slot === slot && boot.slot_state === "good") return;
    if (Date.now() > deadline) throw new Error(`slot ${slot} not confirmed in ${timeoutMs / 1000} s: ${JSON.stringify(boot)}`);
    await sleep(250);
  }
}

/** Runs the benchmark; resolves with the exit code. */
export async function run(argv: readonly string[]): Promise<number> {
  const { values } = parseArgs({ args: [...argv], options: { floors: { type: "string" }, "floor-only": { type: "boolean" }, keep: { type: "boolean" }, help: { type: "boolean" } } });
  if (values.help) {
    process.stdout.write(USAGE);
    return 0;
  }
  const floors = Number(values.floors ?? "3");
  if (!Number.isSafeInteger(floors) || floors < 1 || floors > 20) {
    process.stderr.write(USAGE);
    return 2;
  }
  const e2e = await E2e.create("cohesix-bench-update-ab-");
  let vm: AbVm | undefined;
  try {
    process.stdout.write(`update-ab: load before: ${load()}\n`);
    const sink = join(e2e.dir, "sink.sh");
    await writeFile(sink, SINK_SCRIPT, { mode: 0o755 });
    const image = await AbVm.buildImage(e2e, { version: "1.0.0", append: [`cohesix.health_window=${HEALTH_S}`, "cohesix.selftest=1"], extra: [`${sink}:/etc/cohesix/selftest.sh`] });
    const v2 = await AbVm.bundle(e2e, "2.0.0");
    const v3 = await deriveBundle(v2, join(e2e.dir, "v3.0.0.bundle"), { key: join(e2e.keys, "release.key"), version: "3.0.0", truncateInitrd: 4096 });
    vm = await AbVm.flash(e2e, image, "card.img");
    const bundle = await readFile(v2);
    const imageBytes = (await stat(image)).size;
    const slotBytes = Object.values(await slotSizes(vm, "a")).reduce((x, y) => x + y, 0);
    process.stdout.write(`bundle: ${(bundle.length / 1e6).toFixed(1)} MB; slot files ${(slotBytes / 1e6).toFixed(1)} MB (${(bundle.length / slotBytes).toFixed(3)}x); disk image ${(imageBytes / 1e6).toFixed(1)} MB (bundle ${((100 * bundle.length) / imageBytes).toFixed(1)}% of it)\n`);

    const bootStart = performance.now();
    await vm.boot("bench", { forward: SINK_PORT });
    await vm.waitConsole(/READY/);
    const bootMs = performance.now() - bootStart;
    await vm.procBoot();
    const servingMs = performance.now() - bootStart;
    process.stdout.write(`boot v1: QEMU start → READY through U-Boot ${secs(bootMs)} s, → serving 9P ${secs(servingMs)} s\n`);

    await vm.waitConsole(/update-ab sink on/);
    const raw: number[] = [];
    for (let i = 0; i < floors; i++) raw.push(await rawSend(vm.forwardPort, bundle));
    const floorS = Math.min(...raw);
    process.stdout.write(`floor: raw TCP through the same user network into the guest: ${raw.map((s) => mb(bundle.length, s).toFixed(1)).join(", ")} MB/s (best ${mb(bundle.length, floorS).toFixed(1)})\n`);
    if (values["floor-only"]) return 0;

    const mark = await vm.mark();
    const started = performance.now();
    const up = vm.update([v2]);
    const stagedAt = await whenStaged(vm, () => up.exitCode != null);
    const r = await up;
    if (r.exitCode !== 0) throw new Error(`cohesix update: ${r.stderr}`);
    const updatedAt = performance.now();
    await vm.waitConsole(/cohesix: booting slot b \(try\)[^]*READY/, { since: mark, timeoutMs: 300_000 });
    await confirmedOn(vm, "b");
    const confirmedAt = performance.now();
    const transferS = (stagedAt - started) / 1000;
    const ratio = mb(bundle.length, transferS) / mb(bundle.length, floorS);
    process.stdout.write(`transfer over 9P (cohesix update → staged): ${transferS.toFixed(1)} s, ${mb(bundle.length, transferS).toFixed(1)} MB/s = ${ratio.toFixed(2)}x the floor (target ≥ ${TARGET.transferRatio}x) ${verdict(ratio >= TARGET.transferRatio)}\n`);
    process.stdout.write(`commit + reply (slot written and synced, state): ${secs(updatedAt - stagedAt)} s\n`);
    const budgetS = transferS + (2 * bootMs) / 1000 + HEALTH_S;
    const totalS = (confirmedAt - started) / 1000;
    process.stdout.write(`cohesix update → v2 confirmed: ${totalS.toFixed(1)} s (target ≤ transfer + two boots + health window = ${budgetS.toFixed(1)} s) ${verdict(totalS <= budgetS)}\n`);

    const mark3 = await vm.mark();
    const up3 = await vm.update([v3, "--tries", "2"]);
    if (up3.exitCode !== 0) throw new Error(`cohesix update v3: ${up3.stderr}`);
    const broken = performance.now();
    await vm.waitConsole(/cohesix: booting slot b \(rollback\)[^]*READY/, { since: mark3, timeoutMs: 600_000 });
    await confirmedOn(vm, "b");
    process.stdout.write(`broken v3 (2 tries, kernel panics) → serving on v2 again: ${secs(performance.now() - broken)} s from its reboot\n`);
    process.stdout.write(`update-ab: load after: ${load()}\n`);
    return 0;
  } finally {
    await vm?.stop();
    if (values.keep) process.stdout.write(`kept ${e2e.dir}\n`);
    else await e2e.teardown();
  }
}

/** The sizes of a slot's files on the card. */
async function slotSizes(vm: AbVm, slot: "a" | "b"): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const name of ["Image", "initrd.gz", "manifest.json"]) out[name] = (await vm.bootFile(`/${slot}/${name}`)).length;
  return out;
}
