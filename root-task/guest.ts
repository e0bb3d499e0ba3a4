/**
 * The guest's main program: what the appliance image runs under Node once
 * busybox has mounted the file systems, loaded the modules, brought up eth0
 * and mounted the state disk (see `rootfs/init.ts`). It reads the config
 * baked into the image, serves the appliance, prints `READY tcp!…` on the
 * console, and stops cleanly on SIGTERM/SIGINT or when the power key is
 * pressed (QEMU's `system_powerdown`, sent by `cohesix down`). Powering off
 * is left to the init script that started it, so the commit log is closed
 * before the machine goes down.
 *
 * Process tree in the guest: busybox `init` is PID 1 (it reaps orphans),
 * `/etc/cohesix/run` is its only job, and it runs this program, whose
 * children are the workers.
 * @module
 */
import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { open, readdir, readFile, mkdir, writeFile } from "node:fs/promises";
import module from "node:module";
import { join } from "node:path";
import { parseLimits, type ServerLimits } from "../nine-door/index.ts";
import { BUILTIN_WORKERS } from "./programs.ts";
import { NO_VERSION, checkBootManifest } from "./boot-manifest.ts";
import { readPublicKey } from "./keys.ts";
import { GuestSlot } from "./guest-slot.ts";
import { checkSlotManifest, slotBootOf } from "./slot.ts";
import { Watchdog } from "./watchdog.ts";
import { guestGpuBridge } from "./guest-bridge.ts";
import { GuestClock, HWCLOCK_PID_ENV, signalStep } from "./guest-clock.ts";
import { serveAppliance } from "./serve.ts";
import { parseTlsSetting, type TlsSetting } from "./tls-mode.ts";
import type { Budget } from "./queen-command.ts";
import { guestFleetSettings } from "./guest-fleet.ts";
import type { FleetSettings } from "./fleet-link.ts";

/** The config baked into the image at `/etc/cohesix/config.json`. */
export interface GuestConfig {
  /** Board name, e.g. `aarch64-virt`. */
  readonly board: string;
  /** Where NineDoor listens, e.g. `0.0.0.0:5640`. */
  readonly listen: string;
  /** State directory on the state disk, e.g. `/var/lib/cohesix`. */
  readonly stateDir: string;
  /** Path of the queen's public key in the image. */
  readonly queenPub: string;
  /** Access policy of /queen/ctl. */
  readonly policy: "open" | "signed-ctl";
  /** The address printed in the READY line (the guest's own), e.g. `tcp!10.0.2.15!5640`. */
  readonly readyAddr: string;
  /** The worker programs in the image (`heartbeat`, `gpu`, opt-in `inference`); the queen can spawn only these. Default: all built-in ones. */
  readonly workers?: readonly string[];
  /**
   * The project's own workers (cohesix.config.json): entry relative to the
   * package folder, ticket role, default budget and restart policy.
   */
  readonly programs?: Readonly<Record<string, { readonly entry: string; readonly role: string; readonly budget?: Budget; readonly restart?: boolean; readonly required?: boolean }>>;
  /**
   * How a try boot of an A/B slot proves itself (docs/updates.md, "Confirm
   * and roll back"): workers marked `required` must run `windowS` seconds
   * (default 10; `cohesix.health_window=` on the kernel command line wins),
   * the `worker` (a program name) must exit 0, all within `deadlineS`
   * (default 120; `cohesix.health_deadline=`).
   */
  readonly health?: { readonly windowS?: number; readonly deadlineS?: number; readonly worker?: string };
  /**
   * NineDoor's TLS (`auto|on|off`, default `auto`: TLS unless loopback or
   * QEMU user networking). The kernel command line's `cohesix.tls=` wins.
   */
  readonly tls?: TlsSetting;
  /**
   * NineDoor limits as `NAME=N` (`max_conns_per_peer=64`, see
   * docs/security.md); `cohesix.limits=NAME=N,NAME=N` on the kernel command
   * line adds to them and wins.
   */
  readonly limits?: readonly string[];
  /**
   * The project's fleet block, baked in at build: `ca`, `cert`, `key` and
   * `passwordFile` are files under `/etc/cohesix/fleet/` (docs/fleet.md).
   */
  readonly fleet?: FleetSettings;
}

/**
 * The NineDoor limits a guest serves with: the config's, then the kernel
 * command line's `cohesix.limits=` (comma-separated `NAME=N`). A bad
 * setting is reported through `say` and the rest are kept, so a typo on the
 * command line cannot stop the appliance from booting.
 *
 * @example
 * ```ts
 * guestLimits(["max_conns=256"], "preauth_deadline_ms=5000", console.log);
 * // { maxConnections: 256, preauthDeadlineMs: 5000 }
 * ```
 */
export function guestLimits(configured: readonly string[] | undefined, cmdline: string | undefined, say: (line: string) => void): Partial<ServerLimits> {
  const settings = [...(configured ?? []), ...(cmdline ? cmdline.split(",").filter(Boolean) : [])];
  let out: Partial<ServerLimits> = {};
  for (const setting of settings) {
    try {
      out = { ...out, ...parseLimits([setting]) };
    } catch (err) {
      say(`cohesix: ignoring NineDoor limit ${JSON.stringify(setting)}: ${(err as Error).message}`);
    }
  }
  return out;
}

/** Options of {@link runGuest}. */
export interface RunGuestOptions {
  /** Config file; default `/etc/cohesix/config.json`. */
  readonly configPath?: string;
  /** Kernel command line; default `/proc/cmdline`. */
  readonly cmdlinePath?: string;
  /** Folder of input event devices watched for the power key; default `/dev/input`. */
  readonly inputDir?: string;
  /** A file created once serving (for boot-time scripts); default `/run/cohesix/ready`. */
  readonly readyFile?: string;
  /** Where `/init` mounted the boot partition of a flashed disk; default `/boot`. */
  readonly bootDir?: string;
  /** The release public key baked into the image; default `/etc/cohesix/release.pub`. */
  readonly releasePub?: string;
  /** The hardware watchdog the root task feeds; default `/dev/watchdog` (none: not fed). */
  readonly watchdogDevice?: string;
  /** Console writer; default stdout. */
  readonly say?: (line: string) => void;
  /** Where the kernel shows QEMU's firmware config items (the GPU bridge, see `guest-bridge.ts`); default `/sys/firmware/qemu_fw_cfg/by_name`. */
  readonly fwCfgDir?: string;
  /** The RTC's seconds since the epoch, which the system clock follows (see `guest-clock.ts`); default `/sys/class/rtc/rtc0/since_epoch`. */
  readonly rtcFile?: string;
  /**
   * Present only under QEMU (its firmware config device): the guest then
   * sits behind user networking, reachable through the host forward;
   * default `/sys/firmware/qemu_fw_cfg`.
   */
  readonly qemuDir?: string;
}

/**
 * Reads `cohesix.image=sha256:…` (and any other `cohesix.*` key) from a
 * kernel command line.
 *
 * @example
 * ```ts
 * cmdlineParams("console=ttyAMA0 cohesix.image=sha256:ab12"); // { image: "sha256:ab12" }
 * ```
 */
export function cmdlineParams(cmdline: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const word of cmdline.trim().split(/\s+/)) {
    const m = /^cohesix\.([a-z0-9_-]+)=(.*)$/.exec(word);
    if (m) out[m[1]!] = m[2]!;
  }
  return out;
}

/** Runs a busybox applet (mount, sync, reboot): Node cannot do these itself. */
function busybox(args: readonly string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile("/bin/busybox", args, { timeout: 30_000 }, (err, _stdout, stderr) => (err ? reject(new Error(`busybox ${args.join(" ")}: ${stderr.trim() || err.message}`)) : resolve()));
  });
}

/** Linux input event: on 64-bit, timeval (16 bytes), type u16, code u16, value s32. */
const EVENT_BYTES = 24;
const EV_KEY = 1;
const KEY_POWER = 116;

/**
 * Resolves when any input device under `dir` reports KEY_POWER pressed, or
 * never if there is none. Aborting stops watching.
 */
async function powerKey(dir: string, signal: AbortSignal): Promise<void> {
  let names: string[];
  try {
    names = (await readdir(dir)).filter((n) => n.startsWith("event"));
  } catch {
    return new Promise(() => {});
  }
  return new Promise((resolve) => {
    for (const name of names) {
      void (async () => {
        const fh = await open(join(dir, name), "r").catch(() => undefined);
        if (!fh) return;
        signal.addEventListener("abort", () => void fh.close().catch(() => {}), { once: true });
        const buf = Buffer.alloc(EVENT_BYTES * 16);
        while (!signal.aborted) {
          const { bytesRead } = await fh.read(buf, 0, buf.length, null).catch(() => ({ bytesRead: 0 }));
          if (bytesRead <= 0) return;
          for (let off = 0; off + EVENT_BYTES <= bytesRead; off += EVENT_BYTES) {
            if (buf.readUInt16LE(off + 16) === EV_KEY && buf.readUInt16LE(off + 18) === KEY_POWER && buf.readInt32LE(off + 20) === 1) resolve();
          }
        }
      })();
    }
  });
}

/**
 * Serves the appliance from the baked config until SIGTERM, SIGINT or the
 * power key; resolves with the reason once the root task has shut down.
 *
 * @example
 * ```ts
 * const reason = await runGuest();
 * console.log(`cohesix: stopped (${reason})`);
 * ```
 */
export async function runGuest(options: RunGuestOptions = {}): Promise<string> {
  const say = options.say ?? ((line: string) => void process.stdout.write(`${line}\n`));
  const config = JSON.parse(await readFile(options.configPath ?? "/etc/cohesix/config.json", "utf8")) as GuestConfig;
  const params = cmdlineParams(await readFile(options.cmdlinePath ?? "/proc/cmdline", "utf8").catch(() => ""));
  // Boot stage timing (`cohesix.trace=1`), in the format of rootfs/init.ts's `stage`.
  const stage = async (name: string): Promise<void> => {
    if (params.trace !== "1") return;
    const up = (await readFile("/proc/uptime", "utf8").catch(() => "")).split(" ")[0];
    if (up) say(`cohesix: stage ${name} at ${up} s`);
  };
  await stage("main");
  const stop = new AbortController();
  let reason = "";
  const onSignal = (name: string) => () => {
    reason ||= name;
    stop.abort();
  };
  // Handle signals before READY: the host may stop the guest at any moment.
  process.once("SIGTERM", onSignal("SIGTERM"));
  process.once("SIGINT", onSignal("SIGINT"));
  void powerKey(options.inputDir ?? "/dev/input", stop.signal).then(onSignal("power key"));
  const gpuBridge = guestGpuBridge(options.fwCfgDir !== undefined ? { fwCfgDir: options.fwCfgDir } : {});
  // A restored snapshot or a paused VM resumes with an old system clock; the
  // RTC reads the host's time. Checked at every ticket and control command, and every second.
  let audit: ((line: string) => void) | undefined;
  // The run script sets the clock on SIGUSR1 (see guest-clock.ts); workers need not know.
  const stepper = Number(process.env[HWCLOCK_PID_ENV] ?? "");
  delete process.env[HWCLOCK_PID_ENV];
  const clock = GuestClock.detect({
    ...(Number.isSafeInteger(stepper) && stepper > 1 ? { step: signalStep(stepper) } : {}),
    ...(options.rtcFile !== undefined ? { rtcFile: options.rtcFile } : {}),
    onStep: (s) => {
      const line = `clock stepped forward ${s.behindS} s to the RTC's ${new Date(s.rtcS * 1000).toISOString()} (a restored snapshot or a resumed VM; took ${s.tookMs} ms)`;
      say(`cohesix: ${line}`);
      audit?.(line);
    },
    onError: (message) => {
      say(`cohesix: clock: ${message}`);
      audit?.(`clock: ${message}`);
    },
  });
  const builtins = config.workers ? Object.fromEntries(Object.entries(BUILTIN_WORKERS).filter(([kind]) => config.workers!.includes(kind))) : undefined;
  const programs = builtins || config.programs ? { ...(builtins ?? BUILTIN_WORKERS), ...config.programs } : undefined;
  // A flashed disk (`cohesix.boot=` on the command line): the boot manifest
  // is checked beside the boot, so hashing the kernel and initramfs does not
  // delay READY; /proc/boot shows `pending` until it is done.
  let manifest = { digest: "pending", status: "pending" };
  const checkStarted = Date.now();
  // An A/B image (`cohesix.slot=` from its boot script) checks the running
  // slot's manifest and files: an update rewrites a slot, so the image-wide
  // manifest no longer matches.
  const bootDir = options.bootDir ?? "/boot";
  const releasePub = options.releasePub ?? "/etc/cohesix/release.pub";
  const slotBoot = params.boot === undefined ? undefined : slotBootOf(params);
  const manifestCheck =
    params.boot === undefined
      ? undefined
      : slotBoot
        ? checkSlotManifest({ bootDir, releasePub, slot: slotBoot.slot })
        : checkBootManifest({ bootDir, releasePub });
  const slot = slotBoot ? await GuestSlot.open({ boot: slotBoot, bootDir, stateDir: config.stateDir }) : undefined;
  // Fed from this event loop: a hung root task or kernel reboots the machine.
  const watchdog = await Watchdog.open({ ...(options.watchdogDevice !== undefined ? { device: options.watchdogDevice } : {}), onError: say });
  // cohesix.tls= on the kernel command line wins over the baked config.
  const tlsMode = params.tls !== undefined ? parseTlsSetting(params.tls, { source: "cohesix.tls" }) : (config.tls ?? "auto");
  // Sync, then reboot into U-Boot (a failed try, or /update/ctl's reboot);
  // if that fails, stop feeding the watchdog and let it reboot the machine.
  const reboot = async (): Promise<void> => {
    await busybox(["sync"]).catch(() => undefined);
    await busybox(["reboot", "-f"]).catch((err: unknown) => {
      say(`cohesix: reboot failed (${(err as Error).message}); waiting for the watchdog`);
      watchdog?.abandon();
    });
  };
  const remount = (mode: "rw" | "ro"): Promise<void> => busybox(["mount", "-o", `remount,${mode}`, bootDir]);
  // The /update/ service, on an A/B image whose release key is baked in.
  const releaseKey = slot ? await readPublicKey(releasePub).catch(() => undefined) : undefined;
  if (slot && !releaseKey) say(`cohesix: no release key at ${releasePub}: /update/ is not published`);
  const fleet = guestFleetSettings(config.fleet, params);
  const running = await serveAppliance({
    ...(slot && releaseKey
      ? {
          update: {
            bootDir,
            runningSlot: slot.boot.slot,
            releasePub: releaseKey,
            runningVersion: /^\d/.test(slot.report.version) ? slot.report.version : NO_VERSION,
            remount,
            reboot,
            // /update/status names why a slot was rolled back: the try failure the root task recorded.
            rollbackReason: async (rolled: "a" | "b") => slot.rollbackReason(rolled),
          },
        }
      : {}),
    tlsMode,
    qemuUserNet: existsSync(options.qemuDir ?? "/sys/firmware/qemu_fw_cfg"),
    ...(manifestCheck ? { bootManifest: () => manifest } : {}),
    ...(slot ? { bootSlot: () => slot.lines() } : {}),
    ...(gpuBridge ? { gpuBridge } : {}),
    ...(programs ? { programs } : {}),
    ...(clock ? { clock } : {}),
    board: config.board,
    listen: config.listen,
    stateDir: config.stateDir,
    queenPub: config.queenPub,
    policy: config.policy,
    imageDigest: params.image ?? "unknown",
    // The baked fleet block; `cohesix boot --fleet URL --fleet-id ID` puts url and id on the command line.
    ...(fleet ? { fleet } : {}),
    limits: guestLimits(config.limits, params.limits, say),
  });
  audit = (line) => running.app.audit(line);
  clock?.watch({ signal: stop.signal });
  const readyFile = options.readyFile ?? "/run/cohesix/ready";
  await mkdir(join(readyFile, ".."), { recursive: true }).catch(() => {});
  await writeFile(readyFile, `${running.dialString}\n`).catch(() => {});
  await stage("serving");
  const device = running.app.deviceCert;
  const network = running.app.options.network;
  say(device ? `cohesix: nine-door tls=on certificate ${device.fingerprint}` : `cohesix: nine-door tls=off (${network?.reason ?? "not configured"})`);
  say(`READY ${device ? config.readyAddr.replace(/^tcp!/, "tls!") : config.readyAddr}`);
  // The loader (rootfs/init.ts) turned on Node's compile cache: write what
  // this boot compiled now, not at exit, so a power cut does not lose it.
  (module as { flushCompileCache?: () => void }).flushCompileCache?.();
  void manifestCheck?.then((check) => {
    manifest = check;
    say(`cohesix: boot manifest ${check.digest} ${check.status} (checked in ${((Date.now() - checkStarted) / 1000).toFixed(1)} s)`);
    running.app.audit(`boot manifest ${check.digest} ${check.status}`);
  });
  if (watchdog) running.app.audit("watchdog armed: /dev/watchdog fed by the root task");
  // Workers the project marks required run from boot on (unless the commit log already runs one).
  const required = Object.entries(config.programs ?? {}).filter(([, p]) => p.required === true).map(([kind]) => kind);
  if (!slot && required.length > 0) {
    void (async () => {
      for (const kind of required) {
        if (Object.values(running.app.state.workers).some((w) => w.kind === kind && w.status === "running")) continue;
        await running.app.spawnWorker(kind).catch((err: unknown) => running.app.audit(`required worker ${kind} not started: ${(err as Error).message}`));
      }
    })();
  }
  if (slot) {
    const health = config.health ?? {};
    const seconds = (cmdline: string | undefined, configured: number | undefined): number | undefined => {
      const n = cmdline !== undefined && /^\d{1,5}$/.test(cmdline) ? Number(cmdline) : configured;
      return n === undefined ? undefined : n * 1000;
    };
    const windowMs = seconds(params.health_window, health.windowS);
    const deadlineMs = seconds(params.health_deadline, health.deadlineS);
    void slot.settle({
      app: running.app,
      required,
      ...(health.worker !== undefined ? { healthWorker: health.worker } : {}),
      ...(windowMs !== undefined ? { windowMs } : {}),
      ...(deadlineMs !== undefined ? { deadlineMs } : {}),
      remount,
      reboot,
      say,
      signal: stop.signal,
    });
  }
  if (!stop.signal.aborted) await new Promise((resolve) => stop.signal.addEventListener("abort", resolve, { once: true }));
  say(`cohesix: stopping (${reason})`);
  await running.stop(reason);
  await watchdog?.close();
  return reason;
}
