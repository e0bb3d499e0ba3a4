/**
 * The image and VM commands: `build`, `boot`, `up`, `down`, `vm`.
 *
 * Files live under `--dir` (default `.cohesix` in the current folder):
 * `image/<board>/` (initramfs, kernel, manifest), `cache/` (stripped Node,
 * runtime archive part), `run/<board>/` (pid file, QMP socket, console log)
 * and `vm/<board>/state.qcow2` (the state disk and its snapshots). The
 * pinned artefacts come from the per-user cache that `cohesix fetch` fills.
 * @module
 */
import { existsSync, readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { loadBoard, packageRoot, type Board } from "../boards/index.ts";
import { loadDiskSpec, manifestPathOf } from "../flash/index.ts";
import { BusyError, NotFoundError } from "../nine-door/index.ts";
import { bootVm, checkName, listSnapshots, runningBoards, rtcArg, stopVm, vmControl, vmPaths, type DiskBoot, type RtcOptions, type VmOp } from "../qemu/index.ts";
import { DEFAULT_IMAGE_WORKERS, buildImage, fetchArtefacts, fetchNatives, type BuiltImage } from "../rootfs/index.ts";
import { extraFiles, str, UsageError, type Parsed } from "./args.ts";
import { defaultQueenPub, ensureDefaultKey } from "./paths.ts";
import { forgetHost, recordHost, startHostDetached } from "./host-board.ts";
import { serve } from "./local.ts";
import { isNote, progressOf, type Progress } from "./progress.ts";
import { imageInputsOf, projectOf } from "./project.ts";
import { prepareGuestBridge } from "./vm-gpu.ts";
import { guestFleetCmdline } from "./vm-fleet.ts";

type Out = (text: string | Uint8Array) => void;
interface Io {
  readonly out: Out;
  readonly err: (text: string) => void;
  readonly env: NodeJS.ProcessEnv;
  readonly signal?: AbortSignal;
}

function baseDir(p: Parsed): string {
  return resolve(str(p, "dir") ?? join(projectOf(p)?.dir ?? ".", ".cohesix"));
}

/** How `down` is spelled for a board. */
function downCommand(board: string): string {
  return `cohesix down${board === "aarch64-virt" ? "" : ` --board ${board}`}`;
}

/**
 * Refuses, before anything is built or written, when a VM or host board of
 * this folder is running: a second `up` would overwrite the image the
 * running one came from.
 */
async function refuseIfRunning(dir: string): Promise<void> {
  const [first] = await runningBoards(dir);
  if (first) throw new BusyError(`${first.board} is already running here (pid ${first.pid}, ${first.dialString}): stop it with \`${downCommand(first.board)}\` first`);
}

/** `--timeout S`: how long to wait for the appliance to serve. */
function timeoutOf(p: Parsed): number {
  const timeoutS = Number(str(p, "timeout", "180"));
  if (!Number.isFinite(timeoutS) || timeoutS <= 0) throw new UsageError("--timeout must be a positive number of seconds");
  return timeoutS * 1000;
}

/** The default queen public key, made with its private half on first use. */
async function queenPub(p: Parsed, io: Io): Promise<string> {
  const given = str(p, "queen-pub") ?? projectOf(p)?.queenPub;
  if (given !== undefined) return resolve(given);
  return ensureDefaultKey("queen", defaultQueenPub(io.env), io.env, io.err);
}


function policyOf(p: Parsed): "open" | "signed-ctl" | undefined {
  const policy = str(p, "policy");
  if (policy !== undefined && policy !== "open" && policy !== "signed-ctl") throw new UsageError("--policy must be open or signed-ctl");
  return policy ?? projectOf(p)?.nineDoor.policy;
}

/** The image's workers: the defaults (heartbeat, gpu) plus each `--worker KIND` (e.g. inference). */
function workersOf(p: Parsed): string[] {
  const added = (p.values.worker as string[] | undefined) ?? [];
  for (const w of added) if (!/^[a-z0-9][a-z0-9-]*$/.test(w)) throw new UsageError(`--worker takes a worker kind such as inference, got ${JSON.stringify(w)}`);
  return [...new Set([...DEFAULT_IMAGE_WORKERS, ...added])];
}

function boardOf(p: Parsed): Board {
  const name = str(p, "board") ?? projectOf(p)?.board ?? "aarch64-virt";
  if (name === "host") throw new UsageError("board host runs on this machine and has no image: use `cohesix up --board host` (or --board aarch64-virt to build one)");
  return loadBoard(knownBoard(name));
}

/** A board name the user typed: an unknown one is a usage error (exit 2) that lists the known boards. */
function knownBoard(name: string): string {
  if (name === "host") return name;
  try {
    loadBoard(name);
  } catch (err) {
    if (err instanceof NotFoundError) throw new UsageError(err.message.replace(/^not found: /, ""));
    throw err;
  }
  return name;
}

async function buildFor(board: Board, p: Parsed, io: Io): Promise<BuiltImage> {
  // Steps on a terminal's status line only; notes (what the image carries) and the summary always.
  const progress = progressOf(io);
  try {
    return await buildWith(board, p, io, progress);
  } finally {
    progress.end();
  }
}

async function buildWith(board: Board, p: Parsed, io: Io, progress: Progress): Promise<BuiltImage> {
  const started = Date.now();
  const from = str(p, "from");
  const fetchOptions = {
    env: io.env,
    offline: p.values.offline === true,
    onProgress: (line: string) => progress.step(line),
    ...(from === undefined ? {} : { from: resolve(from) }),
  };
  const artefacts = await fetchArtefacts(board, fetchOptions);
  const dir = baseDir(p);
  const policy = policyOf(p);
  const project = projectOf(p);
  const fromProject = project ? imageInputsOf(project) : undefined;
  if (project) progress.note(`build: project ${project.dir}: workers ${project.workers.map((w) => w.name).join(", ") || "none"}`);
  const built = await buildImage({
    board,
    artefacts,
    queenPub: await queenPub(p, io),
    outDir: resolve(str(p, "out", join(dir, "image", board.name))!),
    cacheDir: join(dir, "cache"),
    root: packageRoot(),
    extra: [...(fromProject?.extra ?? []), ...extraFiles(p)],
    workers: workersOf(p),
    ...(fromProject ? { programs: fromProject.programs } : {}),
    natives: (packages) => fetchNatives(board, { ...fetchOptions, packages }),
    ...(policy ? { policy } : {}),
    ...(fromProject?.fleet ? { fleet: fromProject.fleet } : {}),
    say: (line) => (isNote(line) ? progress.note(`build: ${line}`) : progress.step(`build: ${line}`)),
  });
  progress.note(`build: done in ${((Date.now() - started) / 1000).toFixed(1)} s`);
  return built;
}

/**
 * `build [--board B] [--queen-pub FILE] [--out DIR] [--extra SRC:DEST]…`:
 * builds the image; prints the initramfs path and its digest.
 *
 * @example
 * ```ts
 * await main(["build", "--board", "aarch64-virt"], io); // ".cohesix/image/aarch64-virt/initramfs.cpio.gz sha256:…"
 * ```
 */
export async function build(p: Parsed, io: Io): Promise<void> {
  const built = await buildFor(boardOf(p), p, io);
  io.out(`${built.initrd} ${built.manifest.digest}\n`);
}

/**
 * `boot [--board B] [--detach] [--restore NAME] [--port N]` (and build's
 * options): builds if needed, boots the VM, waits for the guest to serve,
 * prints the dial string and a queen command; stays attached until
 * SIGINT/SIGTERM (then stops the VM) or, with `--detach`, returns and
 * leaves the VM running (`cohesix down` stops it). `--disk FILE` boots a
 * flashed disk image (`cohesix image`, then `cohesix flash --target-file`)
 * through the board's firmware instead, as the board would: nothing is
 * built, the guest writes its state to the file's data partition, and the
 * console is also on a pty for `cohesix console`.
 *
 * @example
 * ```ts
 * await main(["boot", "--detach"], io); // prints "tcp!127.0.0.1!5640" then the queen command
 * await main(["boot", "--disk", "card.img", "--detach"], io); // U-Boot → extlinux.conf → READY
 * ```
 */
export async function boot(p: Parsed, io: Io): Promise<void> {
  await bootWith(p, io);
}

/**
 * `up [--board B] [--detach] …`: build, boot and wait; `--board host` serves
 * on this machine without a VM (like `serve --board host`).
 *
 * @example
 * ```ts
 * await main(["up", "--board", "host"], io); // READY tcp!127.0.0.1!5640
 * ```
 */
export async function up(p: Parsed, io: Io): Promise<void> {
  const project = projectOf(p);
  if ((str(p, "board") ?? project?.board) === "host") {
    await upHost(p, io);
    return;
  }
  await bootWith(p, io);
}

/**
 * `up --board host [--detach]`: `serve --board host` with the folder's
 * defaults, recorded in `run/host/` like a VM. Attached it serves until
 * SIGINT/SIGTERM; detached it returns once the child serves.
 */
async function upHost(p: Parsed, io: Io): Promise<void> {
  const project = projectOf(p);
  const dir = baseDir(p);
  const timeoutMs = timeoutOf(p);
  await refuseIfRunning(dir);
  const listen = str(p, "listen") ?? (project ? `${project.nineDoor.host}:${project.nineDoor.port}` : "127.0.0.1:5640");
  const values: Record<string, string> = { board: "host", listen, state: resolve(str(p, "state", join(dir, "state"))!) };
  if (project) values.project = project.dir;
  const pub = str(p, "queen-pub");
  if (pub !== undefined) values["queen-pub"] = resolve(pub);
  const policy = policyOf(p);
  if (policy) values.policy = policy;
  for (const name of ["gpu-bridge", "gpu-bridge-key", "gpu-bridge-pin", "fleet", "fleet-id"]) {
    const value = str(p, name);
    if (value !== undefined) values[name] = value;
  }
  const paths = vmPaths(dir, "host");
  if (p.values.detach === true) {
    const args = Object.entries(values).flatMap(([name, value]) => [`--${name}`, value]);
    const info = await startHostDetached(paths, { args, env: io.env, timeoutMs });
    io.err(`up: host serving (pid ${info.pid}, log ${join(paths.runDir, "serve.log")})\n`);
    io.out(`${info.dialString}\nqueen: COHESIX_ADDR='${info.dialString}' npx cohesix ls /\n`);
    io.err(`up: detached; stop it with \`${downCommand("host")}\`\n`);
    return;
  }
  await serve({ values, positionals: [] }, io, {
    onReady: async (dialString) => void (await recordHost(paths, { pid: process.pid, dialString })),
    onStopped: () => forgetHost(paths, process.pid),
  });
}

async function bootWith(p: Parsed, io: Io): Promise<void> {
  const board = boardOf(p);
  const restore = str(p, "restore");
  if (restore !== undefined) checkName(restore);
  const portText = str(p, "port") ?? (projectOf(p) ? String(projectOf(p)!.nineDoor.port) : undefined);
  const port = portText === undefined ? undefined : Number(portText);
  if (port !== undefined && (!Number.isInteger(port) || port < 0 || port > 65535)) throw new UsageError("--port must be 0 to 65535");
  const timeoutMs = timeoutOf(p);
  const rtc = rtcOf(p);
  const paths = vmPaths(baseDir(p), board.name);
  await refuseIfRunning(baseDir(p));
  const diskFile = str(p, "disk");
  if (diskFile !== undefined && restore !== undefined) throw new UsageError("--restore and --disk exclude each other: snapshots live in a kernel boot's qcow2 state disk");
  const disk = diskFile === undefined ? undefined : diskBoot(board, resolve(diskFile));
  const fleetWords = guestFleetCmdline(p, projectOf(p), board.network.gateway, (line) => io.err(`${line}\n`), { baked: diskFile === undefined });
  const bridge = await prepareGuestBridge({ parsed: p, gateway: board.network.gateway, modules: board.kernel.modules, runDir: paths.runDir, env: io.env, err: io.err });
  const built = disk
    ? undefined
    : await buildFor(board, p, io).catch(async (err: unknown) => {
        await bridge?.remove();
        throw err;
      });
  const append = [...((p.values.append as string[] | undefined) ?? []), ...(fleetWords ? [fleetWords] : [])].join(" ");
  if (disk && append) throw new UsageError("--append does not reach a disk image boot: the command line is in its extlinux.conf (cohesix image --append)");
  io.err(`boot: starting ${board.name}${restore ? ` from snapshot ${restore}` : ""}${bridge ? ` with the gpu bridge at ${bridge.dial}` : ""} (console: ${paths.consoleLog})\n`);
  const vm = await bootVm({
    board,
    ...(built
      ? { kernel: built.kernel, initrd: built.initrd, cmdline: append ? `${built.manifest.cmdline} ${append}` : built.manifest.cmdline }
      : { disk: disk! }),
    baseDir: baseDir(p),
    ...(port !== undefined ? { port } : {}),
    ...(restore ? { restore } : {}),
    detached: p.values.detach === true,
    timeoutMs,
    ...(bridge ? { fwCfg: [bridge.fwCfg] } : {}),
    ...(rtc ? { rtc } : {}),
  }).finally(() => bridge?.remove());
  io.err(`boot: ${board.name} serving after ${(vm.readyMs / 1000).toFixed(2)} s (pid ${vm.info.pid})\n`);
  if (vm.info.consolePty) io.err(`boot: serial console on ${vm.info.consolePty}: cohesix console --port ${vm.info.consolePty}\n`);
  const pub = str(p, "queen-pub");
  const key = pub !== undefined && pub.endsWith(".pub") && existsSync(`${pub.slice(0, -4)}.key`) ? ` --key ${resolve(`${pub.slice(0, -4)}.key`)}` : "";
  io.out(`${vm.info.dialString}\nqueen: COHESIX_ADDR='${vm.info.dialString}' npx cohesix ls /${key}\n`);
  if (p.values.detach === true) {
    vm.console.close();
    io.err(`boot: detached; stop it with \`${downCommand(board.name)}\`\n`);
    return;
  }
  // Attached: stay until a signal (then stop the VM) or until QEMU exits.
  const stop = new AbortController();
  const onSignal = (): void => stop.abort();
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);
  io.signal?.addEventListener("abort", onSignal, { once: true });
  try {
    const ended = await Promise.race([
      vm.exited.then(() => "exited" as const),
      new Promise<"signal">((res) => stop.signal.addEventListener("abort", () => res("signal"), { once: true })),
    ]);
    if (ended === "signal") io.err(`boot: stopping ${board.name}: ${await stopVm(paths)}\n`);
    else {
      await stopVm(paths, { graceMs: 0 });
      io.err(`boot: ${board.name} powered off\n`);
    }
  } finally {
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
    vm.console.close();
  }
}

/**
 * `--rtc-base DATE|utc` and `--rtc-clock host|vm|rt`: the guest's RTC, checked
 * before anything is built. Default: the host's time.
 */
function rtcOf(p: Parsed): RtcOptions | undefined {
  const base = str(p, "rtc-base");
  const clock = str(p, "rtc-clock");
  if (base === undefined && clock === undefined) return undefined;
  const rtc = { ...(base !== undefined ? { base } : {}), ...(clock !== undefined ? { clock: clock as RtcOptions["clock"] } : {}) };
  rtcArg(rtc);
  return rtc;
}

/** How the board boots a flashed disk image (its `disk.json`), refusing a missing firmware or file. */
function diskBoot(board: Board, image: string): DiskBoot {
  const spec = loadDiskSpec(board);
  if (!spec.firmware) throw new NotFoundError(`board ${board.name}: its disk.json names no firmware to boot a disk image with`);
  if (!existsSync(spec.firmware.path)) {
    throw new NotFoundError(`${spec.firmware.path} is not installed: install the ${spec.firmware.package} package (Debian: apt-get install -y --no-install-recommends ${spec.firmware.package})`);
  }
  if (!existsSync(image)) throw new NotFoundError(`disk image ${image} does not exist: make one with \`cohesix image\` (and \`cohesix flash IMAGE --target-file FILE --yes\`)`);
  return {
    firmware: spec.firmware.path,
    image,
    ...(spec.qemuDevice ? { device: spec.qemuDevice } : {}),
    ...(spec.qemuMachineOptions ? { machineOptions: spec.qemuMachineOptions } : {}),
    ...(isAbImage(image) ? { ab: true } : {}),
  };
}

/**
 * Whether `image` is an A/B image (`cohesix image --ab`): its manifest
 * beside it lists `/boot.scr`. Such a guest reboots into U-Boot (an
 * update, a failed try, a rollback) and keeps its VM and host port; an
 * image without its manifest boots as a plain one (QEMU ends on a reboot).
 *
 * @example
 * ```ts
 * isAbImage("card.img"); // true when card.img.manifest.json lists /boot.scr
 * ```
 */
export function isAbImage(image: string): boolean {
  try {
    const manifest = JSON.parse(readFileSync(manifestPathOf(image), "utf8")) as { artefacts?: { path?: unknown }[] };
    return (manifest.artefacts ?? []).some((a) => a.path === "/boot.scr");
  } catch {
    return false;
  }
}

/**
 * `down [--board B]`: stops the board's VM (power key, then QMP quit, then
 * SIGTERM/SIGKILL by PID) and prints how; `--board host` stops the host
 * board that `up --board host` recorded, by PID (SIGTERM, then SIGKILL).
 *
 * @example
 * ```ts
 * await main(["down"], io); // "aarch64-virt: stopped (power key)"
 * ```
 */
export async function down(p: Parsed, io: Io): Promise<void> {
  const name = knownBoard(str(p, "board", "aarch64-virt")!);
  const how = await stopVm(vmPaths(baseDir(p), name), name === "host" ? { qmp: false } : {});
  if (how !== "not running") {
    io.out(`${name}: stopped (${how})\n`);
    return;
  }
  // Name what does run here, so the next command is obvious.
  const others = (await runningBoards(baseDir(p))).map((vm) => `\`${downCommand(vm.board)}\` stops ${vm.board}`);
  io.out(`${name}: not running${others.length > 0 ? ` (${others.join(", ")})` : ""}\n`);
}

/**
 * `vm pause|resume|snapshot NAME|restore NAME [--board B]`: QMP controls
 * (`restore` refuses a name the state disk does not hold, listing those it
 * does, before it pauses the VM).
 * `snapshot` saves the VM into its state disk and leaves it paused (the
 * kill switch); `restore` loads a snapshot into the running VM.
 *
 * @example
 * ```ts
 * await main(["vm", "snapshot", "incident-42"], io); // "aarch64-virt: paused"
 * ```
 */
export async function vm(verb: VmOp["op"], p: Parsed, io: Io): Promise<void> {
  const name = p.positionals[0];
  let op: VmOp;
  if (verb === "pause" || verb === "resume") op = { op: verb };
  else if (name !== undefined) op = { op: verb, name: checkName(name) };
  else throw new UsageError(`missing NAME`);
  const board = knownBoard(str(p, "board", "aarch64-virt")!);
  const started = Date.now();
  const status = await vmControl(vmPaths(baseDir(p), board), op);
  io.out(`${board}: ${status} (${verb} took ${((Date.now() - started) / 1000).toFixed(2)} s)\n`);
}

/**
 * `vm snapshots [--board B]`: the snapshots in the board's state disk, one
 * name per line (what `vm restore NAME` and `boot --restore NAME` take).
 *
 * @example
 * ```ts
 * await main(["vm", "snapshots"], io); // "before-update\nincident-42\n"
 * ```
 */
export async function vmSnapshots(p: Parsed, io: Io): Promise<void> {
  const board = knownBoard(str(p, "board", "aarch64-virt")!);
  for (const snapshot of await listSnapshots(vmPaths(baseDir(p), board))) io.out(`${snapshot}\n`);
}
