/**
 * The QEMU command line for a board, as data, and the launcher that runs it
 * through execa — attached (a child of this process) or detached (survives
 * it). Also makes the qcow2 state disk, pre-formatted ext4, that the guest
 * mounts at /var/lib/cohesix and that `savevm` needs.
 * @module
 */
import { execa } from "execa";
import { existsSync } from "node:fs";
import { mkdir, open, readFile, rename, rm } from "node:fs/promises";
import { dirname } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { InvalidError } from "../nine-door/index.ts";

/** The parts of a board description the launcher reads. */
export interface QemuBoard {
  readonly name: string;
  readonly qemu: {
    readonly binary: string;
    readonly machine: string;
    readonly cpu: string;
    readonly memoryMb: number;
    readonly smp?: number;
    readonly nic?: string;
  };
  readonly network: { readonly nineDoorPort: number };
}

/**
 * A flashed disk image booted through firmware, as on a real board: QEMU
 * loads the firmware (`-bios`, e.g. Debian's qemu_arm64 U-Boot), which
 * finds `extlinux/extlinux.conf` on the disk and loads the kernel and
 * initramfs itself. The disk's data partition holds the state.
 */
export interface DiskBoot {
  /** The firmware file, e.g. `/usr/lib/u-boot/qemu_arm64/u-boot.bin`. */
  readonly firmware: string;
  /** The raw disk image. */
  readonly image: string;
  /** QEMU's disk device; default `virtio-blk-device`. */
  readonly device?: string;
  /**
   * Machine options for firmware boots, e.g. `acpi=off`: QEMU's `virt`
   * with firmware and ACPI wires the power button to an ACPI device that a
   * device-tree kernel (booted by U-Boot) never sees; without ACPI it is
   * the GPIO key the guest watches.
   */
  readonly machineOptions?: string;
  /**
   * An A/B image (`cohesix image --ab`): the guest reboots into the
   * firmware instead of ending QEMU (no `-no-reboot`), as a board does for
   * an update, a failed try or a rollback, so the VM and its host forward
   * outlive a guest reboot; and the board gets a hardware watchdog
   * ({@link WATCHDOG_DEVICE}) that the root task feeds.
   */
  readonly ab?: boolean;
}

/** The watchdog QEMU gives an A/B disk boot: Intel 6300ESB on `virt`'s PCI bus (Debian's `i6300esb.ko`). */
export const WATCHDOG_DEVICE = "i6300esb";

/**
 * The guest's real-time clock (QEMU `-rtc`; the PL031 of `virt`). The
 * guest's root task sets its system clock from it after a restore or a
 * resume (see `root-task/guest-clock.ts`), so the default follows the host.
 *
 * @example
 * ```ts
 * const rtc: RtcOptions = { base: "2030-01-01T00:00:00", clock: "vm" }; // a guest that lives in 2030, on VM time
 * ```
 */
export interface RtcOptions {
  /** `utc` (default: the host's time) or the RTC's start, `2030-01-01` or `2030-01-01T12:00:00` (UTC, 1970 to 2106). */
  readonly base?: string;
  /**
   * What drives the RTC: `host` (default) follows the host's clock, also
   * across a pause, a snapshot and a restore (QEMU saves only its offset);
   * `vm` runs only while the VM runs, so a restored guest reads its
   * snapshot's time; `rt` is the host's monotonic clock.
   */
  readonly clock?: "host" | "vm" | "rt";
}

/** The PL031 counts seconds in 32 bits. */
const RTC_MAX_S = 2 ** 32 - 1;

/**
 * The `-rtc` value for `rtc`; refuses a base or clock QEMU would not take
 * with `invalid:`.
 *
 * @example
 * ```ts
 * rtcArg({}); // "base=utc,clock=host"
 * rtcArg({ base: "1970-01-01T00:00:00", clock: "vm" }); // "base=1970-01-01T00:00:00,clock=vm"
 * ```
 */
export function rtcArg(rtc: RtcOptions = {}): string {
  const base = rtc.base ?? "utc";
  const clock = rtc.clock ?? "host";
  if (base !== "utc") {
    const m = /^(\d{4})-(\d{2})-(\d{2})(?:T(\d{2}):(\d{2}):(\d{2}))?$/.exec(base);
    const [y, mo, d, h, mi, sec] = (m?.slice(1) ?? []).map((v) => Number(v ?? 0));
    const ms = m ? Date.UTC(y!, mo! - 1, d!, h!, mi!, sec!) : Number.NaN;
    const exact = m !== null && new Date(ms).toISOString().slice(0, m[4] === undefined ? 10 : 19) === base;
    if (!exact || ms < 0 || ms / 1000 > RTC_MAX_S) {
      throw new InvalidError(`rtc base ${JSON.stringify(base)}: use utc or a UTC date from 1970 to 2106, as 2030-01-01 or 2030-01-01T12:00:00`);
    }
  }
  if (clock !== "host" && clock !== "vm" && clock !== "rt") throw new InvalidError(`rtc clock ${JSON.stringify(clock)}: use host, vm or rt`);
  return `base=${base},clock=${clock}`;
}

/** Options of {@link qemuArgs}. */
export interface QemuArgsOptions {
  readonly board: QemuBoard;
  /** The kernel Image (`-kernel`); not used with {@link QemuArgsOptions.disk}. */
  readonly kernel?: string;
  /** The initramfs (`-initrd`); not used with `disk`. */
  readonly initrd?: string;
  /** Kernel command line (`-append`); not used with `disk` (extlinux.conf has it). */
  readonly cmdline?: string;
  /** Boot a disk image through firmware instead of `-kernel`/`-initrd`. */
  readonly disk?: DiskBoot;
  /** Host port forwarded (on 127.0.0.1) to the guest's NineDoor port. */
  readonly hostPort: number;
  /** The qcow2 state disk; not used with `disk`. */
  readonly stateDisk?: string;
  /**
   * The console on a pseudo-terminal too (as a board's serial port), still
   * logged to `consoleLog`: QEMU names the pty on its stderr, see {@link consolePty}.
   */
  readonly serialPty?: boolean;
  /** QMP Unix socket path. */
  readonly qmpSocket: string;
  /** The guest console goes to this file. */
  readonly consoleLog: string;
  /** Start from this snapshot (`-loadvm`). */
  readonly restore?: string;
  /**
   * Firmware config items (`-fw_cfg name=…,file=…`): small files the guest
   * reads under `/sys/firmware/qemu_fw_cfg/by_name/` (module `qemu_fw_cfg`).
   * Only the file's path is on QEMU's command line, never its content.
   */
  readonly fwCfg?: readonly { readonly name: string; readonly file: string }[];
  /** The guest's real-time clock; default the host's time ({@link rtcArg}). */
  readonly rtc?: RtcOptions;
}

/**
 * The QEMU arguments (without the binary).
 *
 * @example
 * ```ts
 * const args = qemuArgs({ board, kernel: "Image", initrd: "initramfs.cpio.gz", cmdline: "console=ttyAMA0", hostPort: 5640, stateDisk: "state.qcow2", qmpSocket: "qmp.sock", consoleLog: "console.log" });
 * // ["-M", "virt", "-cpu", "cortex-a57", …]
 * ```
 */
export function qemuArgs(options: QemuArgsOptions): string[] {
  const { board } = options;
  const q = board.qemu;
  const nic = q.nic ?? "virtio-net-pci";
  return [
    "-M", options.disk?.machineOptions ? `${q.machine},${options.disk.machineOptions}` : q.machine,
    "-cpu", q.cpu,
    "-m", String(q.memoryMb),
    "-smp", String(q.smp ?? 1),
    "-display", "none",
    "-monitor", "none",
    // A kernel or initramfs boot ends QEMU when the guest panics or reboots;
    // an A/B disk boot reboots into U-Boot, which counts the try.
    ...(options.disk?.ab ? [] : ["-no-reboot"]),
    "-rtc", rtcArg(options.rtc),
    ...bootArgs(options),
    "-netdev", `user,id=n0,hostfwd=tcp:127.0.0.1:${options.hostPort}-:${board.network.nineDoorPort}`,
    // romfile= : QEMU installed without recommends lacks efi-virtio.rom; -kernel boots need no option ROM.
    "-device", `${nic},netdev=n0,romfile=`,
    "-device", "virtio-rng-pci",
    ...diskArgs(options),
    "-qmp", `unix:${options.qmpSocket},server=on,wait=off`,
    ...(options.serialPty
      ? ["-chardev", `pty,id=serial0,logfile=${options.consoleLog},logappend=on`, "-serial", "chardev:serial0"]
      : ["-serial", `file:${options.consoleLog}`]),
    ...(options.fwCfg ?? []).flatMap((item) => ["-fw_cfg", `name=${item.name},file=${item.file.replaceAll(",", ",,")}`]),
    ...(options.restore ? ["-loadvm", options.restore] : []),
  ];
}

/** `-kernel`/`-initrd`/`-append`, or `-bios` for a disk boot. */
function bootArgs(options: QemuArgsOptions): string[] {
  if (options.disk) return ["-bios", options.disk.firmware];
  if (options.kernel === undefined || options.initrd === undefined || options.cmdline === undefined) {
    throw new Error("qemu: a kernel, an initramfs and a command line are needed unless a disk image is booted");
  }
  return ["-kernel", options.kernel, "-initrd", options.initrd, "-append", options.cmdline];
}

/** The flashed disk image (raw), or the qcow2 state disk. */
function diskArgs(options: QemuArgsOptions): string[] {
  if (options.disk) {
    return [
      "-drive", `if=none,id=disk,file=${options.disk.image},format=raw`,
      "-device", `${options.disk.device ?? "virtio-blk-device"},drive=disk`,
      ...(options.disk.ab ? ["-device", WATCHDOG_DEVICE] : []),
    ];
  }
  if (options.stateDisk === undefined) return [];
  return ["-drive", `if=none,id=state,file=${options.stateDisk},format=qcow2`, "-device", "virtio-blk-pci,drive=state"];
}

/**
 * The pseudo-terminal QEMU put the console on (`serialPty`), read from
 * QEMU's stderr file ("char device redirected to /dev/pts/N").
 *
 * @example
 * ```ts
 * await consolePty("run/qemu.err", { timeoutMs: 10_000 }); // "/dev/pts/3"
 * ```
 */
export async function consolePty(stderrFile: string, options: { timeoutMs: number }): Promise<string> {
  const deadline = Date.now() + options.timeoutMs;
  for (;;) {
    const text = await readFile(stderrFile, "utf8").catch(() => "");
    const m = /char device redirected to (\/dev\/pts\/\d+) \(label serial0\)/.exec(text);
    if (m) return m[1]!;
    if (Date.now() > deadline) throw new Error(`qemu: no console pty named in ${stderrFile} after ${Math.round(options.timeoutMs / 1000)} s${text.trim() ? `: ${text.trim()}` : ""}`);
    await sleep(50);
  }
}

/** QEMU (or a helper) is not installed: the message names the Debian package. */
export class QemuMissingError extends Error {
  constructor(binary: string, pkg: string) {
    super(`${binary} is not installed: install the ${pkg} package (Debian: apt-get install -y --no-install-recommends ${pkg})`);
    this.name = "QemuMissingError";
  }
}

const PACKAGE_OF: Record<string, string> = {
  "qemu-system-aarch64": "qemu-system-arm",
  "qemu-system-arm": "qemu-system-arm",
  "qemu-system-x86_64": "qemu-system-x86",
  "qemu-img": "qemu-utils",
  "mkfs.ext4": "e2fsprogs",
};

/** The Debian package that provides `binary`. */
export function packageOf(binary: string): string {
  return PACKAGE_OF[binary] ?? binary;
}

function isMissing(err: unknown): boolean {
  return (err as { code?: string }).code === "ENOENT";
}

/** Options of {@link launchQemu}. */
export interface LaunchOptions extends QemuArgsOptions {
  /** Detach: QEMU outlives this process (for `boot --detach`). */
  readonly detached?: boolean;
  /** QEMU's own stdout/stderr go here. */
  readonly stderrFile: string;
}

/** A started QEMU. */
export interface LaunchedQemu {
  readonly pid: number;
  /** Resolves with the exit code once QEMU exits (attached only; detached: never resolves). */
  readonly exited: Promise<number | undefined>;
  readonly args: readonly string[];
}

/**
 * Starts QEMU for the board. Refuses with {@link QemuMissingError} when the
 * binary is not installed.
 *
 * @example
 * ```ts
 * const qemu = await launchQemu({ ...argsOptions, stderrFile: "run/qemu.err" });
 * ```
 */
export async function launchQemu(options: LaunchOptions): Promise<LaunchedQemu> {
  const binary = options.board.qemu.binary;
  const args = qemuArgs(options);
  await mkdir(dirname(options.consoleLog), { recursive: true });
  const err = await open(options.stderrFile, "w");
  // execa's types name descriptors 0–9 only; any open descriptor is passed to spawn as is.
  const fd = err.fd as 3;
  const child = execa(binary, args, {
    stdin: "ignore",
    stdout: fd,
    stderr: fd,
    detached: options.detached === true,
    cleanup: options.detached !== true,
    reject: false,
  });
  const started = new Promise<number>((resolve, reject) => {
    child.once("spawn", () => resolve(child.pid!));
    child.once("error", (e) => reject(e));
  });
  started.catch(() => {}); // awaited below, after the descriptor is closed
  // The child holds its own copy of the descriptor.
  await err.close();
  const spawned = await started.catch((e: unknown) => {
    if (isMissing(e)) throw new QemuMissingError(binary, packageOf(binary));
    throw e;
  });
  const exited = child.then((r) => (typeof r.exitCode === "number" ? r.exitCode : undefined));
  if (options.detached) child.unref();
  return { pid: spawned, exited, args };
}

/** Options of {@link createStateDisk}. */
export interface StateDiskOptions {
  /** Size in MiB; default 256. */
  readonly sizeMb?: number;
}

/**
 * Creates the qcow2 state disk, formatted ext4 (label `cohesix-state`),
 * unless it exists. Needs `mkfs.ext4` (e2fsprogs) and `qemu-img` (qemu-utils).
 *
 * @example
 * ```ts
 * await createStateDisk(".cohesix/vm/aarch64-virt/state.qcow2");
 * ```
 */
export async function createStateDisk(path: string, options: StateDiskOptions = {}): Promise<boolean> {
  if (existsSync(path)) return false;
  await mkdir(dirname(path), { recursive: true });
  const raw = `${path}.${process.pid}.raw`;
  const tmp = `${path}.${process.pid}.tmp`;
  try {
    await execa("qemu-img", ["create", "-q", "-f", "raw", raw, `${options.sizeMb ?? 256}M`]).catch((e: unknown) => {
      throw isMissing(e) ? new QemuMissingError("qemu-img", packageOf("qemu-img")) : e;
    });
    await execa("mkfs.ext4", ["-q", "-F", "-L", "cohesix-state", raw], { env: { PATH: `${process.env.PATH ?? ""}:/usr/sbin:/sbin` } }).catch((e: unknown) => {
      throw isMissing(e) ? new QemuMissingError("mkfs.ext4", packageOf("mkfs.ext4")) : e;
    });
    await execa("qemu-img", ["convert", "-q", "-f", "raw", "-O", "qcow2", raw, tmp]);
    await rename(tmp, path);
  } finally {
    await rm(raw, { force: true });
    await rm(tmp, { force: true });
  }
  return true;
}
