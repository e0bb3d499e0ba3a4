/**
 * `npm run bench -- boot`: the aarch64-virt guest's boot against the floor.
 *
 * In one run, on the board's QEMU command line (the same for every boot):
 * - boot → READY of the appliance image (`cohesix build`, run as the CLI)
 *   and of the floor image (`buildFloorImage`: the same kernel and runtime
 *   part, one Node script printing READY), several boots each, median and
 *   ratio; the appliance's first boot on a fresh state disk apart;
 * - boot → serving (a queen attach answered through the host forward);
 * - restore from a snapshot → serving;
 * - initramfs sizes, appliance over floor, compressed and uncompressed;
 * - warm build (`cohesix build` with everything cached).
 *
 * Needs qemu-system-aarch64 and the board's artefacts in the cache
 * (`scripts/setup.sh` or `cohesix fetch`).
 * @module
 */
import { execa, execaSync } from "execa";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { parseArgs } from "node:util";
import { loadBoard, type Board } from "../boards/index.ts";
import { NineClient, type Fid } from "../nine-door/index.ts";
import { ConsoleWatcher, QmpClient, createStateDisk, launchQemu } from "../qemu/index.ts";
import { mintTicket, writeKeyPair } from "../root-task/index.ts";
import { STAGE_PATTERN, buildFloorImage, fetchArtefacts, type ImageManifest } from "../rootfs/index.ts";
import { load, verdict } from "./child.ts";

const HELP = `usage: npm run bench -- boot [OPTIONS]

  --boots N        boots of each image (default 3), after the appliance's first boot
  --restores N     restores from the snapshot (default 3)
  --builds N       warm builds (default 3)
  --board NAME     board (default aarch64-virt)
  --trace          boot with cohesix.trace=1: print where each appliance boot's time went
  --dir DIR        work folder (default a fresh temp folder, removed afterwards)
  --keep           keep the work folder
`;

/** Targets of issue 4. */
const TARGET = { bootRatio: 1.2, restoreS: 0.8, sizeRatio: 1.05, warmBuildS: 5 } as const;

/** What one boot measured, seconds from QEMU's start. */
interface BootRun {
  /** The READY line seen on the console (not for restores). */
  readonly readyS?: number;
  /** A queen attach answered through the host forward. */
  readonly servingS?: number;
  /** Restores: QEMU has loaded the snapshot and runs the guest (QMP status `running`). */
  readonly runningS?: number;
  /** Guest boot stages (`cohesix.trace=1`): name → guest uptime, s. */
  readonly stages: ReadonlyMap<string, number>;
  /** The guest's uptime when it printed READY (trace only): QEMU's start to the guest clock is readyS minus this. */
  readonly readyUptimeS?: number;
  /** `stage.*` lines of /proc/boot (trace only). */
  readonly procStages?: string;
}

interface Image {
  readonly kernel: string;
  readonly initrd: string;
  readonly cmdline: string;
  readonly ready: RegExp;
}

interface Vm {
  readonly board: Board;
  readonly dir: string;
  readonly disk: string;
  /** A queen ticket for the baked key. */
  readonly ticket: string;
}

const median = (xs: readonly number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  if (s.length === 0) return Number.NaN;
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
};
const secs = (x: number | undefined): string => (x === undefined || Number.isNaN(x) ? "-" : `${x.toFixed(2)} s`);
const list = (xs: readonly number[]): string => xs.map((x) => x.toFixed(2)).join(" ");
const mb = (n: number): string => `${(n / 1e6).toFixed(1)} MB`;

async function freePort(): Promise<number> {
  return new Promise((res, rej) => {
    const srv = createServer();
    srv.once("error", rej);
    srv.listen(0, "127.0.0.1", () => {
      const port = (srv.address() as { port: number }).port;
      srv.close(() => res(port));
    });
  });
}

/**
 * Attaches as the queen through the host forward, retrying until
 * `deadline`. Each attempt gets a little longer than the one before (0.5 s
 * up to 3 s): the forward accepts before the guest listens, and a
 * connection it accepted then may hang instead of failing.
 */
async function attach(port: number, ticket: string, deadline: number): Promise<{ client: NineClient; root: Fid }> {
  let last = "";
  for (let limitMs = 500; Date.now() < deadline; limitMs = Math.min(3000, limitMs * 2)) {
    let abandoned = false;
    let client: NineClient | undefined;
    const attempt = (async () => {
      client = await NineClient.dial(`tcp!127.0.0.1!${port}`, { timeoutMs: limitMs, dialect: "9P2000" });
      const root = await client.attach({ uname: "queen", aname: ticket });
      if (abandoned) client.close();
      return { client, root };
    })();
    try {
      const timer = sleep(limitMs, undefined, { ref: false }).then(() => {
        throw new Error(`no answer within ${limitMs} ms`);
      });
      return await Promise.race([attempt, timer]);
    } catch (err) {
      abandoned = true;
      attempt.catch(() => {});
      client?.close();
      last = (err as Error).message;
      await sleep(20);
    }
  }
  throw new Error(`no 9P attach answered through 127.0.0.1:${port}: ${last}`);
}

/**
 * Boots `image` once and measures it. `then` says what ends the VM: the
 * power key (the appliance shuts down cleanly, its state disk stays
 * consistent), the guest's own power-off (floor), or a snapshot and quit.
 */
async function bootOnce(vm: Vm, image: Image, options: { serve: boolean; trace: boolean; restore?: string; then: "power key" | "exit" | "snapshot" | "quit" }): Promise<BootRun> {
  const run = await mkdtemp(join(vm.dir, "run-"));
  const consoleLog = join(run, "console.log");
  const qmpSocket = join(run, "qmp.sock");
  const port = await freePort();
  const stages = new Map<string, number>();
  let readyUptimeS: number | undefined;
  const started = performance.now();
  const qemu = await launchQemu({
    board: vm.board,
    kernel: image.kernel,
    initrd: image.initrd,
    cmdline: options.trace ? `${image.cmdline} cohesix.trace=1` : image.cmdline,
    hostPort: port,
    stateDisk: vm.disk,
    qmpSocket,
    consoleLog,
    stderrFile: join(run, "qemu.err"),
    ...(options.restore ? { restore: options.restore } : {}),
  });
  const watcher = new ConsoleWatcher(consoleLog, {
    pollMs: 10,
    onLine: (line) => {
      const m = STAGE_PATTERN.exec(line);
      if (m) stages.set(m[1]!, Number(m[2]));
      if (m?.[1] === "serving") readyUptimeS = Number(m[2]);
    },
  });
  const elapsed = (): number => (performance.now() - started) / 1000;
  try {
    let readyS: number | undefined;
    if (!options.restore) {
      await watcher.waitFor(image.ready, { timeoutMs: 180_000, exited: qemu.exited, what: "READY" });
      readyS = elapsed();
    }
    let servingS: number | undefined;
    let procStages: string | undefined;
    let runningS: number | undefined;
    if (options.restore) {
      // QMP answers once -loadvm is done; probe the guest only then (a connection
      // the forward accepts while the guest is still paused waits for TCP retransmits).
      const qmp = await QmpClient.connect(qmpSocket, { timeoutMs: 120_000 });
      while ((await qmp.status()) !== "running") await sleep(10);
      runningS = elapsed();
      qmp.close();
    }
    if (options.serve) {
      const { client, root } = await attach(port, vm.ticket, Date.now() + 120_000);
      servingS = elapsed();
      if (options.trace) procStages = await procBootStages(root).catch((err: Error) => `unreadable: ${err.message}`);
      client.close();
    }
    await end(qemu, qmpSocket, options.then);
    return {
      ...(readyS !== undefined ? { readyS } : {}),
      ...(servingS !== undefined ? { servingS } : {}),
      ...(runningS !== undefined ? { runningS } : {}),
      stages,
      ...(readyUptimeS !== undefined ? { readyUptimeS } : {}),
      ...(procStages !== undefined ? { procStages } : {}),
    };
  } catch (err) {
    try {
      process.kill(qemu.pid, "SIGKILL");
    } catch {
      // already gone
    }
    (err as Error).message += `\n--- console (${consoleLog}) ---\n${watcher.tail(20)}`;
    throw err;
  } finally {
    watcher.close();
  }
}

/** The `stage.*` lines of /proc/boot: the root task's own boot stages. */
async function procBootStages(root: Fid): Promise<string> {
  const text = await root.readText("proc/boot");
  return text
    .split("\n")
    .filter((l) => l.startsWith("stage."))
    .map((l) => l.replace(/^stage\./, "").replace(/_ms=/, " "))
    .join(", ");
}

/** Ends a VM the way `how` says and waits for QEMU to exit. */
async function end(qemu: { pid: number; exited: Promise<unknown> }, qmpSocket: string, how: "power key" | "exit" | "snapshot" | "quit"): Promise<void> {
  const gone = (ms: number): Promise<boolean> => Promise.race([qemu.exited.then(() => true), sleep(ms, false, { ref: false })]);
  if (how !== "exit") {
    const qmp = await QmpClient.connect(qmpSocket, { timeoutMs: 5000 });
    try {
      if (how === "power key") await qmp.powerdown();
      if (how === "snapshot") {
        await qmp.stop();
        await qmp.savevm("bench");
      }
      if (how !== "power key") await qmp.quit().catch(() => {});
    } finally {
      qmp.close();
    }
  }
  if (await gone(60_000)) return;
  process.kill(qemu.pid, "SIGKILL");
  await gone(10_000);
}

/** The bench snapshot's VM SIZE as `qemu-img snapshot -l` shows it. */
function snapshotSize(disk: string): string {
  const r = execaSync("qemu-img", ["snapshot", "-l", disk], { reject: false });
  const line = String(r.stdout ?? "").split("\n").find((l) => /\sbench\s/.test(l));
  return line?.trim().split(/\s+/).slice(2, 4).join(" ") ?? "?";
}

/** Runs the CLI (`bin/cohesix.js`, the built dist/) and returns its wall time, s. */
async function cli(args: readonly string[]): Promise<number> {
  const started = performance.now();
  const r = await execa(process.execPath, [resolve("bin", "cohesix.js"), ...args], { reject: false });
  if (r.exitCode !== 0) throw new Error(`cohesix ${args.join(" ")} failed (${r.exitCode}):\n${r.stderr}`);
  return (performance.now() - started) / 1000;
}

/** Prints where the appliance's boots went (medians over boots), from the trace stages. */
function printTrace(runs: readonly BootRun[], say: (line: string) => void): void {
  const names = [...new Set(runs.flatMap((r) => [...r.stages.keys()]))];
  if (names.length === 0) return;
  say("  where an appliance boot goes (guest uptime at each stage, median; + time since the previous):");
  let prev = 0;
  for (const name of names) {
    const at = median(runs.flatMap((r) => (r.stages.has(name) ? [r.stages.get(name)!] : [])));
    say(`    ${name.padEnd(12)} ${at.toFixed(2).padStart(6)} s  +${(at - prev).toFixed(2)} s`);
    prev = at;
  }
  const offsets = runs.flatMap((r) => (r.readyS !== undefined && r.readyUptimeS !== undefined ? [r.readyS - r.readyUptimeS] : []));
  if (offsets.length > 0) say(`    QEMU start → guest clock and console: ${secs(median(offsets))} (READY seen on the host minus the guest's uptime then)`);
  for (const r of runs) if (r.procStages) say(`    root task (/proc/boot, ms): ${r.procStages}`);
}

/** `npm run bench -- boot [OPTIONS]`. */
export async function run(argv: readonly string[]): Promise<number> {
  const { values } = parseArgs({
    args: [...argv],
    options: {
      boots: { type: "string", default: "3" },
      restores: { type: "string", default: "3" },
      builds: { type: "string", default: "3" },
      board: { type: "string", default: "aarch64-virt" },
      trace: { type: "boolean", default: false },
      dir: { type: "string" },
      keep: { type: "boolean", default: false },
      help: { type: "boolean", default: false },
    },
  });
  if (values.help) {
    process.stdout.write(HELP);
    return 0;
  }
  const count = (name: string, text: string): number => {
    const n = Number(text);
    if (!Number.isInteger(n) || n < 1) throw new Error(`--${name} must be a whole number ≥ 1, got ${JSON.stringify(text)}`);
    return n;
  };
  const boots = count("boots", values.boots);
  const restores = count("restores", values.restores);
  const builds = count("builds", values.builds);
  const trace = values.trace;
  const say = (line: string): void => void process.stdout.write(`${line}\n`);
  const board = loadBoard(values.board);
  const dir = values.dir ? resolve(values.dir) : await mkdtemp(join(tmpdir(), "cohesix-bench-boot-"));
  const loadBefore = load();
  try {
    // dist/ is what bin/cohesix.js runs: build it from these sources first.
    await execa(process.execPath, [resolve("scripts", "build.mjs")]);
    const keys = await writeKeyPair(join(dir, "keys"), { name: "queen" });
    const ticket = mintTicket({ role: "queen", sub: "queen" }, keys.privateKey, { ttlS: 3600 });
    const buildArgs = ["build", "--board", board.name, "--dir", dir, "--queen-pub", keys.publicPath, "--offline"];
    const coldS = await cli(buildArgs);
    const warm: number[] = [];
    for (let i = 0; i < builds; i++) warm.push(await cli(buildArgs));
    const manifest = JSON.parse(await readFile(join(dir, "image", board.name, "manifest.json"), "utf8")) as ImageManifest;
    const full: Image = {
      kernel: join(dir, "image", board.name, manifest.kernel.file),
      initrd: join(dir, "image", board.name, manifest.image.file),
      cmdline: manifest.cmdline,
      ready: /^READY tcp!/,
    };
    const artefacts = await fetchArtefacts(board, { offline: true });
    const floorBuilt = await buildFloorImage({ board, artefacts, outDir: join(dir, "floor", board.name), cacheDir: join(dir, "cache") });
    const floor: Image = { kernel: floorBuilt.kernel, initrd: floorBuilt.initrd, cmdline: floorBuilt.cmdline, ready: new RegExp(`^${floorBuilt.ready}$`) };

    const vm: Vm = { board, dir, disk: join(dir, "vm", "state.qcow2"), ticket };
    await createStateDisk(vm.disk);
    say(`boot bench: ${board.name}, -cpu ${board.qemu.cpu}, ${board.qemu.smp ?? 1} vCPU, ${board.qemu.memoryMb} MiB; load before ${loadBefore}`);
    const first = await bootOnce(vm, full, { serve: true, trace, then: "power key" });
    const floorRuns: BootRun[] = [];
    const fullRuns: BootRun[] = [];
    // Alternate the two images so that a change in the machine's load falls on both.
    for (let i = 0; i < boots; i++) {
      floorRuns.push(await bootOnce(vm, floor, { serve: false, trace, then: "exit" }));
      fullRuns.push(await bootOnce(vm, full, { serve: true, trace, then: i === boots - 1 ? "snapshot" : "power key" }));
    }
    const restoreRuns: BootRun[] = [];
    for (let i = 0; i < restores; i++) restoreRuns.push(await bootOnce(vm, full, { serve: true, trace: false, restore: "bench", then: "quit" }));
    const loadAfter = load();

    const floorReady = floorRuns.map((r) => r.readyS!);
    const fullReady = fullRuns.map((r) => r.readyS!);
    const fullServing = fullRuns.map((r) => r.servingS!);
    const restored = restoreRuns.map((r) => r.servingS!);
    const bootRatio = median(fullReady) / median(floorReady);
    const gzRatio = manifest.image.bytes / floorBuilt.bytes;
    const rawRatio = manifest.image.uncompressedBytes / floorBuilt.uncompressedBytes;
    const warmS = median(warm);
    const compressed = manifest.image.file.endsWith(".gz") ? "gzip" : "none";
    say(`  floor boot → READY          ${secs(median(floorReady)).padStart(8)}   (${list(floorReady)})`);
    say(`  appliance boot → READY      ${secs(median(fullReady)).padStart(8)}   (${list(fullReady)}); first boot, fresh state disk: ${secs(first.readyS)}`);
    say(`  appliance boot → serving    ${secs(median(fullServing)).padStart(8)}   (${list(fullServing)}); first boot: ${secs(first.servingS)}`);
    say(`  boot appliance / floor      ${bootRatio.toFixed(2)}x      target ≤ ${TARGET.bootRatio}x   ${verdict(bootRatio <= TARGET.bootRatio)}`);
    say(`  restore → serving           ${secs(median(restored)).padStart(8)}   (${list(restored)})   target ≤ ${TARGET.restoreS} s   ${verdict(median(restored) <= TARGET.restoreS)}`);
    say(`    of which QEMU loading it   ${secs(median(restoreRuns.map((r) => r.runningS!))).padStart(8)}   (${list(restoreRuns.map((r) => r.runningS!))}); snapshot ${snapshotSize(vm.disk)}`);
    say(`  initramfs (${compressed})${" ".repeat(Math.max(1, 16 - compressed.length))}${mb(manifest.image.bytes)} vs floor ${mb(floorBuilt.bytes)}: ${gzRatio.toFixed(3)}x   target ≤ ${TARGET.sizeRatio}x   ${verdict(gzRatio <= TARGET.sizeRatio)}`);
    say(`  initramfs uncompressed      ${mb(manifest.image.uncompressedBytes)} vs floor ${mb(floorBuilt.uncompressedBytes)}: ${rawRatio.toFixed(3)}x   target ≤ ${TARGET.sizeRatio}x   ${verdict(rawRatio <= TARGET.sizeRatio)}`);
    say(`  warm build (cohesix build)  ${secs(warmS).padStart(8)}   (${list(warm)}); first build in a fresh folder: ${secs(coldS)}   target ≤ ${TARGET.warmBuildS} s   ${verdict(warmS <= TARGET.warmBuildS)}`);
    if (trace) printTrace([first, ...fullRuns], say);
    say(`  load after ${loadAfter}`);
    return 0;
  } finally {
    if (values.keep || values.dir) say(`  work folder kept: ${dir}`);
    else await rm(dir, { recursive: true, force: true });
  }
}
