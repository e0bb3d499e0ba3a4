/**
 * A board's VM as the CLI sees it: a run folder (pid file, QMP socket,
 * console log, `vm.json`), boot until the guest serves, stop by PID, and
 * QMP controls (pause, resume, snapshot, restore).
 *
 * Files, for base folder `.cohesix` and board `aarch64-virt`:
 * - `.cohesix/run/aarch64-virt/{qemu.pid,vm.json,qmp.sock,console.log,qemu.err}`
 * - `.cohesix/vm/aarch64-virt/state.qcow2`: the state disk; snapshots live in it.
 * @module
 */
import { existsSync } from "node:fs";
import { mkdir, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { connect, createServer, type Socket } from "node:net";
import { connect as connectTls } from "node:tls";
import { join, resolve } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { BusyError, InvalidError, NotFoundError } from "../nine-door/index.ts";
import { ConsoleWatcher } from "./console.ts";
import { consolePty, createStateDisk, launchQemu, type DiskBoot, type QemuBoard, type RtcOptions } from "./launcher.ts";
import { execa } from "execa";
import { QmpClient } from "./qmp.ts";
import { QemuMissingError, packageOf } from "./launcher.ts";

/** Where a board's VM keeps its files. */
export interface VmPaths {
  readonly runDir: string;
  readonly pidFile: string;
  readonly infoFile: string;
  readonly qmpSocket: string;
  readonly consoleLog: string;
  readonly stderrFile: string;
  readonly stateDisk: string;
}

/**
 * The VM's files under a base folder.
 *
 * @example
 * ```ts
 * vmPaths(".cohesix", "aarch64-virt").pidFile; // "/…/.cohesix/run/aarch64-virt/qemu.pid"
 * ```
 */
export function vmPaths(baseDir: string, board: string): VmPaths {
  const runDir = resolve(baseDir, "run", board);
  return {
    runDir,
    pidFile: join(runDir, "qemu.pid"),
    infoFile: join(runDir, "vm.json"),
    qmpSocket: join(runDir, "qmp.sock"),
    consoleLog: join(runDir, "console.log"),
    stderrFile: join(runDir, "qemu.err"),
    stateDisk: resolve(baseDir, "vm", board, "state.qcow2"),
  };
}

/** What `vm.json` records about a running VM. */
export interface VmInfo {
  readonly board: string;
  readonly pid: number;
  readonly port: number;
  readonly dialString: string;
  readonly startedAt: string;
  readonly restoredFrom?: string;
  /** A disk image boot: the image file, and the pty its serial console is on. */
  readonly disk?: string;
  readonly consolePty?: string;
}

/** Options of {@link bootVm}. */
export interface BootVmOptions {
  readonly board: QemuBoard;
  /** Kernel, initramfs and command line of a kernel boot; not used with `disk`. */
  readonly kernel?: string;
  readonly initrd?: string;
  readonly cmdline?: string;
  /**
   * Boot a flashed disk image through firmware instead (see `DiskBoot`):
   * its data partition holds the state, so no qcow2 state disk is made,
   * and the serial console is also on a pty (`info.consolePty`) for
   * `cohesix console`.
   */
  readonly disk?: DiskBoot;
  /** Base folder (default `.cohesix`). */
  readonly baseDir: string;
  /** Host port for NineDoor; default the board's port when free, else any free port. 0: any free port. */
  readonly port?: number;
  /** Boot from this snapshot. */
  readonly restore?: string;
  /** QEMU outlives this process. */
  readonly detached?: boolean;
  /** Give up waiting for the guest after this long, ms; default 180000. */
  readonly timeoutMs?: number;
  /** Each console line. */
  readonly onLine?: (line: string) => void;
  /** Firmware config items handed to the guest (see `QemuArgsOptions.fwCfg`). */
  readonly fwCfg?: readonly { readonly name: string; readonly file: string }[];
  /** The guest's real-time clock; default the host's time (see `RtcOptions`). */
  readonly rtc?: RtcOptions;
}

/** A booted VM. */
export interface RunningVm {
  readonly info: VmInfo;
  readonly paths: VmPaths;
  /** Milliseconds from starting QEMU to serving. */
  readonly readyMs: number;
  readonly console: ConsoleWatcher;
  /** Resolves when QEMU exits (attached boots only). */
  readonly exited: Promise<number | undefined>;
}

/** Whether process `pid` exists. */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as { code?: string }).code === "EPERM";
  }
}

/** The recorded VM of a board, when its QEMU is still running. */
export async function runningVm(paths: VmPaths): Promise<VmInfo | undefined> {
  if (!existsSync(paths.infoFile)) return undefined;
  const info = JSON.parse(await readFile(paths.infoFile, "utf8")) as VmInfo;
  return alive(info.pid) ? info : undefined;
}

/**
 * Every board of a base folder whose recorded process still runs: the VMs
 * and the host board (`run/host/`, recorded the same way), by board name.
 * An unreadable record counts as not running.
 *
 * @example
 * ```ts
 * (await runningBoards(".cohesix")).map((vm) => vm.board); // ["aarch64-virt"]
 * ```
 */
export async function runningBoards(baseDir: string): Promise<VmInfo[]> {
  const runRoot = resolve(baseDir, "run");
  if (!existsSync(runRoot)) return [];
  const out: VmInfo[] = [];
  for (const d of (await readdir(runRoot, { withFileTypes: true })).sort((a, b) => a.name.localeCompare(b.name))) {
    if (!d.isDirectory()) continue;
    const info = await runningVm(vmPaths(baseDir, d.name)).catch(() => undefined);
    if (info) out.push(info);
  }
  return out;
}

async function freePort(preferred: number | undefined): Promise<number> {
  const tryPort = (port: number): Promise<number | undefined> =>
    new Promise((res) => {
      const srv = createServer();
      srv.once("error", () => res(undefined));
      srv.listen(port, "127.0.0.1", () => {
        const got = (srv.address() as { port: number }).port;
        srv.close(() => res(got));
      });
    });
  if (preferred) {
    const p = await tryPort(preferred);
    if (p) return p;
  }
  const any = await tryPort(0);
  if (!any) throw new BusyError("no free TCP port on 127.0.0.1");
  return any;
}

/**
 * Resolves once NineDoor answers a Tversion on `127.0.0.1:port` (the host
 * forward accepts, or accepts then closes, before the guest listens). With
 * `tls` (a guest that said `READY tls!…`), over TLS: a readiness probe, it
 * trusts nothing it reads; the CLI pins the certificate when it connects.
 *
 * @example
 * ```ts
 * await waitNineDoor(5640, { timeoutMs: 30_000 });
 * ```
 */
export async function waitNineDoor(port: number, options: { timeoutMs: number; exited?: Promise<unknown>; tls?: boolean }): Promise<void> {
  const deadline = Date.now() + options.timeoutMs;
  let exited = false;
  void options.exited?.then(() => (exited = true));
  const version = "9P2000";
  const frame = Buffer.alloc(4 + 1 + 2 + 4 + 2 + version.length);
  frame.writeUInt32LE(frame.length, 0);
  frame.writeUInt8(100, 4); // Tversion
  frame.writeUInt16LE(0xffff, 5);
  frame.writeUInt32LE(8192, 7);
  frame.writeUInt16LE(version.length, 11);
  frame.write(version, 13, "utf8");
  while (Date.now() < deadline && !exited) {
    const ok = await new Promise<boolean>((res) => {
      const s: Socket = options.tls === true ? connectTls({ port, host: "127.0.0.1", rejectUnauthorized: false }) : connect(port, "127.0.0.1");
      const timer = setTimeout(() => done(false), 2000);
      let got = Buffer.alloc(0);
      const done = (v: boolean): void => {
        clearTimeout(timer);
        s.destroy();
        res(v);
      };
      s.on(options.tls === true ? "secureConnect" : "connect", () => s.write(frame));
      s.on("data", (d: Buffer) => {
        got = Buffer.concat([got, d]);
        if (got.length >= 5) done(got[4] === 101);
      });
      s.on("error", () => done(false));
      s.on("close", () => done(false));
    });
    if (ok) return;
    await sleep(200);
  }
  throw new Error(exited ? "guest: QEMU exited before NineDoor answered" : `guest: NineDoor did not answer on 127.0.0.1:${port} within ${Math.round(options.timeoutMs / 1000)} s`);
}

/**
 * Boots the board's VM and waits until the guest serves: the `READY` line
 * on the console, then a 9P answer through the host forward (a restored
 * snapshot prints no READY: only the 9P answer is awaited). Creates the
 * state disk when missing. Refuses when the board's VM is already running.
 *
 * @example
 * ```ts
 * const vm = await bootVm({ board, kernel, initrd, cmdline, baseDir: ".cohesix" });
 * console.log(vm.info.dialString); // tcp!127.0.0.1!5640
 * ```
 */
export async function bootVm(options: BootVmOptions): Promise<RunningVm> {
  const paths = vmPaths(options.baseDir, options.board.name);
  const running = await runningVm(paths);
  if (running) throw new BusyError(`${options.board.name} is already running (pid ${running.pid}, ${running.dialString}): stop it with \`cohesix down\``);
  await mkdir(paths.runDir, { recursive: true });
  await rm(paths.qmpSocket, { force: true });
  await rm(paths.consoleLog, { force: true });
  if (options.disk && options.restore) throw new InvalidError("a disk image boot cannot restore a snapshot: snapshots live in the qcow2 state disk of a kernel boot");
  if (!options.disk) await createStateDisk(paths.stateDisk);
  const port = await freePort(options.port === 0 ? undefined : (options.port ?? options.board.network.nineDoorPort));
  const started = Date.now();
  const qemu = await launchQemu({
    board: options.board,
    kernel: options.kernel,
    initrd: options.initrd,
    cmdline: options.cmdline,
    hostPort: port,
    ...(options.disk ? { disk: options.disk, serialPty: true } : { stateDisk: paths.stateDisk }),
    qmpSocket: paths.qmpSocket,
    consoleLog: paths.consoleLog,
    stderrFile: paths.stderrFile,
    ...(options.restore ? { restore: options.restore } : {}),
    ...(options.fwCfg ? { fwCfg: options.fwCfg } : {}),
    ...(options.rtc ? { rtc: options.rtc } : {}),
    detached: options.detached === true,
  });
  // A disk boot's console is on a pty too: QEMU names it on stderr at once.
  const pty = options.disk ? await consolePty(paths.stderrFile, { timeoutMs: 10_000 }).catch(() => undefined) : undefined;
  let info: VmInfo = {
    board: options.board.name,
    pid: qemu.pid,
    port,
    dialString: `tcp!127.0.0.1!${port}`,
    startedAt: new Date(started).toISOString(),
    ...(options.restore ? { restoredFrom: options.restore } : {}),
    ...(options.disk ? { disk: options.disk.image } : {}),
    ...(pty ? { consolePty: pty } : {}),
  };
  await writeFile(paths.pidFile, `${qemu.pid}\n`);
  await writeFile(paths.infoFile, `${JSON.stringify(info, null, 2)}\n`);
  const watcher = new ConsoleWatcher(paths.consoleLog, options.onLine ? { onLine: options.onLine } : {});
  const timeoutMs = options.timeoutMs ?? 180_000;
  // A detached QEMU is not our child: notice its exit by PID.
  const exited = options.detached
    ? (async () => {
        while (alive(qemu.pid)) await sleep(250, undefined, { ref: false });
        return undefined;
      })()
    : qemu.exited;
  try {
    // A guest serving TLS (cohesix.tls=on) says so in its READY line.
    const tls = options.restore ? false : (await watcher.waitFor(/^READY (\S+)/, { timeoutMs, exited, what: "READY" }))[1]!.startsWith("tls!");
    if (tls) {
      info = { ...info, dialString: `tls!127.0.0.1!${port}` };
      await writeFile(paths.infoFile, `${JSON.stringify(info, null, 2)}\n`);
    }
    await waitNineDoor(port, { timeoutMs: Math.max(10_000, timeoutMs - (Date.now() - started)), exited, tls });
  } catch (err) {
    const stderr = await readFile(paths.stderrFile, "utf8").catch(() => "");
    await stopVm(paths, { graceMs: 0 }).catch(() => {});
    watcher.close();
    if (stderr.trim()) (err as Error).message += `\n--- qemu ---\n${stderr.trim()}`;
    throw err;
  }
  return { info, paths, readyMs: Date.now() - started, console: watcher, exited };
}

/** Options of {@link stopVm}. */
export interface StopVmOptions {
  /** Time the guest gets to shut down after the power key, ms; default 20000. 0 skips the power key. */
  readonly graceMs?: number;
  /** Whether a QMP socket may exist; false (the host board, a plain process) goes straight to SIGTERM. Default true. */
  readonly qmp?: boolean;
}

/** How {@link stopVm} ended the VM. */
export type StopHow = "not running" | "power key" | "qmp quit" | "SIGTERM" | "SIGKILL";

async function waitGone(pid: number, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (!alive(pid)) return true;
    await sleep(100);
  }
  return !alive(pid);
}

/**
 * Stops the board's VM: the power key (the guest flushes its commit log
 * and powers off), then QMP `quit`, then SIGTERM and SIGKILL to the PID in
 * the pid file — whatever works first. A paused VM (after a snapshot) is
 * quit without resuming it. Removes the pid file and `vm.json`.
 *
 * @example
 * ```ts
 * await stopVm(vmPaths(".cohesix", "aarch64-virt")); // "power key"
 * ```
 */
export async function stopVm(paths: VmPaths, options: StopVmOptions = {}): Promise<StopHow> {
  const pidText = await readFile(paths.pidFile, "utf8").catch(() => "");
  const pid = Number(pidText.trim());
  let how: StopHow = "not running";
  if (Number.isSafeInteger(pid) && pid > 0 && alive(pid)) {
    const graceMs = options.graceMs ?? 20_000;
    const qmp = options.qmp === false ? undefined : await QmpClient.connect(paths.qmpSocket, { timeoutMs: 3000 }).catch(() => undefined);
    if (qmp && graceMs > 0 && (await qmp.status().catch(() => "unknown")) === "running") {
      await qmp.powerdown().catch(() => {});
      if (await waitGone(pid, graceMs)) how = "power key";
    }
    if (how === "not running" && qmp && !qmp.closed) {
      await qmp.quit().catch(() => {});
      if (await waitGone(pid, 5000)) how = "qmp quit";
    }
    qmp?.close();
    if (how === "not running") {
      process.kill(pid, "SIGTERM");
      how = (await waitGone(pid, 5000)) ? "SIGTERM" : "SIGKILL";
      if (how === "SIGKILL") {
        process.kill(pid, "SIGKILL");
        await waitGone(pid, 5000);
      }
    }
  }
  await rm(paths.pidFile, { force: true });
  await rm(paths.infoFile, { force: true });
  await rm(paths.qmpSocket, { force: true });
  return how;
}

/** A `cohesix vm` operation. */
export type VmOp = { op: "pause" } | { op: "resume" } | { op: "snapshot"; name: string } | { op: "restore"; name: string };

/**
 * Runs a VM control through QMP: `pause` and `resume` stop and continue the
 * CPUs; `snapshot NAME` saves the VM into the state disk and leaves it
 * paused (the kill switch); `restore NAME` loads a snapshot and runs it.
 * Resolves with the VM's status afterwards.
 *
 * @example
 * ```ts
 * await vmControl(vmPaths(".cohesix", "aarch64-virt"), { op: "snapshot", name: "incident-42" }); // "paused"
 * ```
 */
export async function vmControl(paths: VmPaths, op: VmOp): Promise<string> {
  const info = await runningVm(paths);
  if (!info) throw new NotFoundError(`no running VM in ${paths.runDir}: boot one with \`cohesix boot\``);
  // Check the name before pausing the VM: a missing snapshot leaves it running.
  if (op.op === "restore") {
    const names = await listSnapshots(paths);
    if (!names.includes(op.name)) throw new NotFoundError(`snapshot ${op.name}; snapshots: ${names.join(", ") || "none"}`);
  }
  const qmp = await QmpClient.connect(paths.qmpSocket, { timeoutMs: 5000 });
  try {
    switch (op.op) {
      case "pause":
        await qmp.stop();
        break;
      case "resume":
        await qmp.cont();
        break;
      case "snapshot":
        await qmp.stop();
        await qmp.savevm(op.name);
        break;
      case "restore":
        await qmp.stop();
        await qmp.loadvm(op.name);
        await qmp.cont();
        break;
    }
    return await qmp.status();
  } finally {
    qmp.close();
  }
}

/**
 * The snapshots saved in the board's state disk, by name, oldest first
 * (`qemu-img snapshot -l`, with shared access so a running VM is fine). A
 * board without a state disk has none.
 *
 * @example
 * ```ts
 * await listSnapshots(vmPaths(".cohesix", "aarch64-virt")); // ["before-update", "incident-42"]
 * ```
 */
export async function listSnapshots(paths: VmPaths): Promise<string[]> {
  if (!existsSync(paths.stateDisk)) return [];
  const r = await execa("qemu-img", ["snapshot", "-l", "-U", paths.stateDisk]).catch((e: unknown) => {
    if ((e as { code?: string }).code === "ENOENT") throw new QemuMissingError("qemu-img", packageOf("qemu-img"));
    throw new Error(`qemu-img snapshot -l ${paths.stateDisk}: ${((e as { stderr?: string }).stderr ?? (e as Error).message).trim()}`);
  });
  // "Snapshot list:", a header, then "ID TAG VM-SIZE … " rows.
  return r.stdout
    .split("\n")
    .slice(2)
    .map((line) => line.trim().split(/\s+/)[1])
    .filter((tag): tag is string => tag !== undefined && tag !== "");
}
