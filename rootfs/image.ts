/**
 * Image assembly: the appliance's initramfs as archive entries (plain data),
 * written once with `writeCpio`. The image is two concatenated gzip'd
 * archives, which the kernel unpacks in turn:
 *
 * - the *runtime* part — Node (stripped), its libraries at their real paths,
 *   busybox and its applets, the board's kernel modules, `/dev/console` and
 *   `/dev/null` — changes only with the pinned artefacts, so it is cached by
 *   the digest of its inputs and a warm build does not recompress 100 MB;
 * - the *appliance* part — `/init`, busybox init's table, the root task and
 *   worker bundles under `/opt/cohesix`, the config and the queen's key.
 *
 * The output folder holds `initramfs.cpio.gz`, the kernel `Image`, and
 * `manifest.json` with the digest of every file in the image and of the
 * image itself. Building twice from the same inputs gives the same bytes.
 * @module
 */
import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import { copyFile, mkdir, readdir, readFile, realpath, rename, stat, writeFile } from "node:fs/promises";
import { join, relative, sep } from "node:path";
import { InvalidError, NotFoundError } from "../nine-door/index.ts";
import { bundleGuest, stripElf, workerEntries, type BundleFile } from "./bundle.ts";
import { checkSize, compress, type Compression } from "./compress.ts";
import type { CpioEntry } from "./cpio-entry.ts";
import { writeCpio } from "./cpio.ts";
import { LOADER, initScript, inittab, loaderScript, runScript } from "./init.ts";
import { GUEST_FLEET_FILES, fleetImageEntries, type GuestFleetConfig, type ImageFleet } from "./fleet-files.ts";
import { checkNativeVersions, nativeFiles, nativesFor, type NativePinLike } from "./natives.ts";

/** The parts of a board description that image assembly reads (boards/<name>/board.json). */
export interface ImageBoard {
  readonly name: string;
  readonly kernel: { readonly cmdline: string; readonly modules: readonly string[] };
  readonly network: { readonly guest: string; readonly gateway: string; readonly nineDoorPort: number };
  readonly sizeLimitBytes: number;
  readonly sysroot: { readonly triplet: string; readonly loader: string; readonly libraries: readonly string[] };
  readonly artefacts?: { readonly node?: { readonly version?: string }; readonly natives?: readonly NativePinLike[] };
  /** The board's folder, for messages about its pins. */
  readonly dir?: string;
}

/**
 * The worker programs an image carries unless told otherwise: the
 * heartbeat and the GPU worker. The inference worker is opt-in
 * (`workers: [...DEFAULT_IMAGE_WORKERS, "inference"]`, `cohesix build
 * --worker inference`) because sharp and libvips add ~20 MB.
 *
 * @example
 * ```ts
 * await buildImage({ ...options, workers: [...DEFAULT_IMAGE_WORKERS, "inference"] });
 * ```
 */
export const DEFAULT_IMAGE_WORKERS: readonly string[] = ["heartbeat", "gpu"];

/**
 * A worker program of the user's project (cohesix.config.json): its source
 * on the build host, bundled with its npm dependencies to
 * `dist/workers/<name>.mjs`, and what the root task needs to spawn it.
 */
export interface ImageProgram {
  /** Absolute path of the worker's main module. */
  readonly source: string;
  /** The role its tickets name, e.g. `worker-camera`. */
  readonly role: string;
  /** Default budget of its spawns. */
  readonly budget?: { readonly ticks?: number; readonly ops?: number; readonly ttl_s?: number };
  /** Restart it when it exits. */
  readonly restart?: boolean;
  /** Started at boot; a try boot of an A/B update waits for it (see `root-task/slot-health.ts`). */
  readonly required?: boolean;
}

/** A try boot's health check, written to the guest config (`health`). */
export interface ImageHealth {
  readonly windowS?: number;
  readonly deadlineS?: number;
  readonly worker?: string;
}

/** Unpacked native packages for the guest, as `fetchNatives` returns them. */
export type NativeSource = (packages: readonly string[]) => Promise<readonly { readonly pin: { readonly package: string }; readonly dir: string }[]>;

/** The fetched pieces (see `fetchArtefacts`): paths on the build host. */
export interface ImageArtefacts {
  /** The arm64 `node` binary. */
  readonly node: string;
  /** A folder with the arm64 libraries unpacked (`lib/<triplet>`, `usr/lib/<triplet>`). */
  readonly sysroot: string;
  /** The static arm64 busybox binary. */
  readonly busybox: string;
  /** The kernel Image. */
  readonly kernel: string;
  /** The kernel's module folder, `…/lib/modules/<version>`. */
  readonly modules: string;
  /** e.g. `6.1.0-56-arm64`. */
  readonly kernelVersion: string;
}

/** A host file added to the image. */
export interface ExtraFile {
  readonly src: string;
  /** Absolute guest path. */
  readonly dest: string;
  /** Permission bits; default the source's, without group/other write. */
  readonly mode?: number;
}

/** Options of {@link buildImage}. */
export interface BuildImageOptions {
  readonly board: ImageBoard;
  readonly artefacts: ImageArtefacts;
  /** The queen's public key file, baked in as `/etc/cohesix/queen.pub`. */
  readonly queenPub: string;
  /** Output folder: `initramfs.cpio.gz`, `Image`, `manifest.json`. */
  readonly outDir: string;
  /** The cohesix package root (sources for the bundles). */
  readonly root: string;
  /** Cache for the stripped Node and the runtime part; default `<outDir>/../cache`. */
  readonly cacheDir?: string;
  /** Extra files (e.g. a test image's self-test script). */
  readonly extra?: readonly ExtraFile[];
  /**
   * Worker programs to carry, by kind (`workers/<kind>/main.ts` of `root`);
   * default {@link DEFAULT_IMAGE_WORKERS}. An unknown kind is refused.
   */
  readonly workers?: readonly string[];
  /** The project's own worker programs by name, carried besides the built-in ones. */
  readonly programs?: Readonly<Record<string, ImageProgram>>;
  /** How a try boot of an A/B update proves itself (the project's `health`). */
  readonly health?: ImageHealth;
  /**
   * Gets the board's pinned native packages that the bundled workers need
   * (e.g. `(names) => fetchNatives(board, { packages: names })`). Required
   * only when a worker imports a package with pinned natives (sharp).
   */
  readonly natives?: NativeSource;
  /** Access policy of /queen/ctl in the guest; default `open`. */
  readonly policy?: "open" | "signed-ctl";
  /**
   * The project's fleet block: baked in (its files under
   * `/etc/cohesix/fleet/`, the block in the guest config), so the guest
   * runs the link from the image alone.
   */
  readonly fleet?: ImageFleet;
  /** Default `gzip`. */
  readonly compression?: Compression;
  /** The arm64 strip program, or false to keep Node as fetched; default `aarch64-linux-gnu-strip` when installed. */
  readonly strip?: string | false;
  /** Progress lines. */
  readonly say?: (line: string) => void;
}

/** One file recorded in the manifest. */
export interface ManifestFile {
  readonly path: string;
  readonly sha256: string;
  readonly bytes: number;
}

/** `manifest.json` of a built image. */
export interface ImageManifest {
  readonly board: string;
  readonly kernelVersion: string;
  /** `sha256:<hex>` of `initramfs.cpio.gz`, passed to the guest as `cohesix.image=` and shown in /proc/boot. */
  readonly digest: string;
  /** Worker programs in the image, by kind. */
  readonly workers: readonly string[];
  /** Native packages placed in the image, `name@version`. */
  readonly natives: readonly string[];
  readonly image: { readonly file: string; readonly bytes: number; readonly uncompressedBytes: number; readonly runtimeBytes: number };
  readonly kernel: { readonly file: string; readonly sha256: string };
  readonly cmdline: string;
  readonly files: readonly ManifestFile[];
}

/** A built image: paths and its manifest. */
export interface BuiltImage {
  readonly initrd: string;
  readonly kernel: string;
  readonly manifestPath: string;
  readonly manifest: ImageManifest;
}

/** Where the guest keeps things. */
export const GUEST = {
  packageDir: "/opt/cohesix",
  stateDir: "/var/lib/cohesix",
  config: "/etc/cohesix/config.json",
  queenPub: "/etc/cohesix/queen.pub",
} as const;

/** busybox applets linked into /bin (all present in Debian's busybox-static). */
export const APPLETS: readonly string[] = [
  "[", "ash", "cat", "chmod", "cp", "cut", "date", "dd", "df", "dmesg", "echo", "env", "false", "find", "free",
  "grep", "halt", "head", "hexdump", "hostname", "id", "init", "insmod", "ip", "kill", "ln", "ls", "lsmod", "mkdir",
  "mknod", "mount", "mv", "poweroff", "printf", "ps", "reboot", "rm", "rmdir", "sed", "sh", "sleep", "sort", "stat",
  "sync", "tail", "test", "touch", "tr", "true", "umount", "uname", "wc", "xargs",
];

const sha256 = (data: Uint8Array): string => createHash("sha256").update(data).digest("hex");
const utf8 = (text: string): Uint8Array => new TextEncoder().encode(text);

/**
 * Finds each module file by name under a kernel's module folder (`-` and
 * `_` are the same in module names), in the order given; refuses a missing
 * one by name. Paths are relative to the module folder.
 *
 * @example
 * ```ts
 * await findModules("/cache/lib/modules/6.1.0-56-arm64", ["virtio_net"], "6.1.0-56-arm64"); // ["kernel/drivers/net/virtio_net.ko"]
 * ```
 */
export async function findModules(modulesDir: string, names: readonly string[], kernelVersion: string): Promise<string[]> {
  const index = new Map<string, string>();
  const walk = async (dir: string): Promise<void> => {
    for (const d of await readdir(dir, { withFileTypes: true })) {
      const p = join(dir, d.name);
      if (d.isDirectory()) await walk(p);
      else if (d.name.endsWith(".ko")) index.set(d.name.slice(0, -3).replace(/-/g, "_"), relative(modulesDir, p).split(sep).join("/"));
    }
  };
  if (!existsSync(join(modulesDir, "kernel"))) throw new NotFoundError(`image: no kernel modules in ${modulesDir}: run \`cohesix fetch\``);
  await walk(join(modulesDir, "kernel"));
  return names.map((name) => {
    const rel = index.get(name.replace(/-/g, "_"));
    if (!rel) throw new NotFoundError(`image: module ${name} is not in kernel ${kernelVersion} (${modulesDir}): fix the board's module list`);
    return rel;
  });
}

/** Finds a library of the sysroot by name and reads it through its symlinks. */
async function sysrootLibrary(sysroot: string, triplet: string, name: string): Promise<Uint8Array> {
  for (const dir of [join(sysroot, "lib", triplet), join(sysroot, "usr", "lib", triplet), join(sysroot, "lib")]) {
    const p = join(dir, name);
    if (existsSync(p)) return readFile(await realpath(p));
  }
  throw new NotFoundError(`image: library ${name} is not in the sysroot ${sysroot}: run \`cohesix fetch\``);
}

/**
 * The runtime part's entries: everything the pinned artefacts provide.
 *
 * @example
 * ```ts
 * const modules = await findModules(artefacts.modules, board.kernel.modules, artefacts.kernelVersion);
 * const entries = await runtimeEntries({ board, artefacts, node: strippedNodePath, modules });
 * ```
 */
export async function runtimeEntries(options: { board: ImageBoard; artefacts: ImageArtefacts; node: string; modules: readonly string[] }): Promise<CpioEntry<Uint8Array>[]> {
  const { board, artefacts } = options;
  const { triplet, loader, libraries } = board.sysroot;
  const entries: CpioEntry<Uint8Array>[] = [
    { type: "dir", path: "/dev" },
    { type: "char", path: "/dev/console", major: 5, minor: 1, mode: 0o600 },
    { type: "char", path: "/dev/null", major: 1, minor: 3, mode: 0o666 },
    { type: "file", path: "/usr/bin/node", data: await readFile(options.node), mode: 0o755 },
    { type: "file", path: `/lib/${triplet}/${loader}`, data: await sysrootLibrary(artefacts.sysroot, triplet, loader), mode: 0o755 },
    { type: "symlink", path: `/lib/${loader}`, target: `${triplet}/${loader}` },
    { type: "file", path: "/bin/busybox", data: await readFile(artefacts.busybox), mode: 0o755 },
  ];
  for (const lib of libraries) {
    entries.push({ type: "file", path: `/lib/${triplet}/${lib}`, data: await sysrootLibrary(artefacts.sysroot, triplet, lib), mode: 0o644 });
  }
  for (const applet of APPLETS) entries.push({ type: "symlink", path: `/bin/${applet}`, target: "busybox" });
  entries.push({ type: "symlink", path: "/sbin", target: "bin" });
  for (const rel of options.modules) {
    entries.push({ type: "file", path: `/lib/modules/${artefacts.kernelVersion}/${rel}`, data: await readFile(join(artefacts.modules, rel)), mode: 0o644 });
  }
  return entries;
}

/** A project's workers as the guest config lists them (`programs`): entry relative to `/opt/cohesix`. */
type GuestPrograms = Readonly<Record<string, { readonly entry: string; readonly role: string; readonly budget?: ImageProgram["budget"]; readonly restart?: boolean; readonly required?: boolean }>>;

/** The guest config baked in as `/etc/cohesix/config.json`. */
function guestConfig(board: ImageBoard, policy: "open" | "signed-ctl", workers: readonly string[] | undefined, programs: GuestPrograms | undefined, health?: ImageHealth, fleet?: GuestFleetConfig): string {
  const port = board.network.nineDoorPort;
  const ip = board.network.guest.split("/")[0]!;
  const config = {
    board: board.name,
    listen: `0.0.0.0:${port}`,
    stateDir: GUEST.stateDir,
    queenPub: GUEST.queenPub,
    policy,
    readyAddr: `tcp!${ip}!${port}`,
    ...(workers ? { workers } : {}),
    ...(programs && Object.keys(programs).length > 0 ? { programs } : {}),
    ...(health ? { health } : {}),
    ...(fleet ? { fleet } : {}),
  };
  return `${JSON.stringify(config, null, 2)}\n`;
}

/**
 * The appliance part's entries: boot scripts, bundles, config, keys, extras.
 *
 * @example
 * ```ts
 * const entries = await applianceEntries({ board, kernelVersion: "6.1.0-56-arm64", moduleFiles, bundle: bundle.files, queenPub: "…" });
 * ```
 */
export async function applianceEntries(options: {
  board: ImageBoard;
  modulePaths: readonly string[];
  bundle: readonly BundleFile[];
  queenPub: Uint8Array;
  extra?: readonly ExtraFile[];
  policy?: "open" | "signed-ctl";
  /** Worker kinds in the image, written to the guest config (the guest spawns only these). */
  workers?: readonly string[];
  /** The project's workers: entry relative to the package folder, role, defaults. */
  programs?: GuestPrograms;
  health?: ImageHealth;
  /** The project's fleet block, baked in (rootfs/fleet-files.ts). */
  fleet?: ImageFleet;
}): Promise<CpioEntry<Uint8Array>[]> {
  const { board } = options;
  const fleet = options.fleet ? await fleetImageEntries(options.fleet) : undefined;
  const init = { modules: options.modulePaths, address: board.network.guest, gateway: board.network.gateway, stateDir: GUEST.stateDir };
  const entries: CpioEntry<Uint8Array>[] = [
    { type: "file", path: "/init", data: utf8(initScript(init)), mode: 0o755 },
    { type: "file", path: "/etc/inittab", data: utf8(inittab()), mode: 0o644 },
    { type: "file", path: "/etc/cohesix/run", data: utf8(runScript(init)), mode: 0o755 },
    { type: "file", path: LOADER, data: utf8(loaderScript(init)), mode: 0o644 },
    { type: "file", path: GUEST.config, data: utf8(guestConfig(board, options.policy ?? "open", options.workers, options.programs, options.health, fleet?.config)), mode: 0o644 },
    { type: "file", path: GUEST.queenPub, data: options.queenPub, mode: 0o644 },
    { type: "file", path: "/etc/passwd", data: utf8("root:x:0:0:root:/root:/bin/sh\n"), mode: 0o644 },
    { type: "file", path: "/etc/group", data: utf8("root:x:0:\n"), mode: 0o644 },
    { type: "file", path: "/etc/hosts", data: utf8("127.0.0.1 localhost\n"), mode: 0o644 },
    { type: "dir", path: "/proc" },
    { type: "dir", path: "/sys" },
    { type: "dir", path: "/tmp", mode: 0o1777 },
    { type: "dir", path: "/run" },
    { type: "dir", path: "/mnt" },
    { type: "dir", path: "/root", mode: 0o700 },
    { type: "dir", path: GUEST.stateDir, mode: 0o700 },
  ];
  if (fleet) entries.push(...fleet.entries);
  for (const f of options.bundle) entries.push({ type: "file", path: `${GUEST.packageDir}/${f.path}`, data: f.data, mode: f.mode ?? 0o644 });
  for (const x of options.extra ?? []) {
    const data = await readFile(x.src).catch((err: Error) => {
      throw new NotFoundError(`image: extra file ${x.src}: ${err.message}`);
    });
    const mode = x.mode ?? (await stat(x.src)).mode & 0o755;
    if (!x.dest.startsWith("/")) throw new InvalidError(`image: extra file destination must be absolute: ${x.dest}`);
    entries.push({ type: "file", path: x.dest, data, mode });
  }
  return entries;
}

/** The manifest lists every file but the fleet secrets (a password's sha256 is not for a file beside the image). */
function manifestFiles(entries: readonly CpioEntry<Uint8Array>[]): ManifestFile[] {
  const secret = (e: CpioEntry<Uint8Array>): boolean => e.type === "file" && e.path.startsWith(`${GUEST_FLEET_FILES.dir}/`) && ((e.mode ?? 0o644) & 0o044) === 0;
  return entries.flatMap((e) => (e.type === "file" && !secret(e) ? [{ path: `/${e.path.replace(/^\/+/, "")}`, sha256: sha256(e.data), bytes: e.data.byteLength }] : []));
}

async function writeAtomic(path: string, data: Uint8Array | string): Promise<void> {
  const tmp = `${path}.${process.pid}.tmp`;
  await writeFile(tmp, data);
  await rename(tmp, path);
}

/** Options of {@link runtimePart}. */
export interface RuntimePartOptions {
  readonly board: ImageBoard;
  readonly artefacts: ImageArtefacts;
  /** Folder for the stripped Node (`stripped/`) and the cached part. */
  readonly cacheDir: string;
  /** Default `gzip`. */
  readonly compression?: Compression;
  /** The arm64 strip program, or false to keep Node as fetched; default `aarch64-linux-gnu-strip` when installed. */
  readonly strip?: string | false;
  /** Progress lines. */
  readonly say?: (line: string) => void;
}

/** The runtime part of an image, compressed, and what assembly needs to know of it. */
export interface RuntimePart {
  /** The compressed archive (a whole newc archive, trailer included). */
  readonly data: Uint8Array;
  /** Its size uncompressed. */
  readonly rawBytes: number;
  /** Its files, for the manifest. */
  readonly files: readonly ManifestFile[];
  /** The board's module files, relative to the kernel's module folder, in load order. */
  readonly modules: readonly string[];
}

/**
 * The runtime part — Node (stripped), its libraries, busybox, the board's
 * modules and the device nodes: everything the pinned artefacts provide and
 * nothing of the appliance. Written and compressed once per set of inputs
 * and cached in `cacheDir` by their digest; the appliance image
 * ({@link buildImage}) and the floor image (`buildFloorImage`) share it.
 *
 * @example
 * ```ts
 * const part = await runtimePart({ board, artefacts, cacheDir: ".cohesix/cache" });
 * part.rawBytes; // ~113 MB
 * ```
 */
export async function runtimePart(options: RuntimePartOptions): Promise<RuntimePart> {
  const { board, artefacts, cacheDir } = options;
  const say = options.say ?? (() => {});
  const compression = options.compression ?? "gzip";
  await mkdir(cacheDir, { recursive: true });
  const node =
    options.strip === false
      ? { path: artefacts.node, stripped: false }
      : await stripElf(artefacts.node, { cacheDir: join(cacheDir, "stripped"), ...(options.strip ? { strip: options.strip } : {}) });
  say(node.stripped ? "node: stripped" : "node: not stripped (install binutils-aarch64-linux-gnu to strip it)");
  const modules = await findModules(artefacts.modules, board.kernel.modules, artefacts.kernelVersion);
  const runtime = await runtimeEntries({ board, artefacts, node: node.path, modules });
  const files = manifestFiles(runtime);
  let i = 0; // files holds each file entry's digest, in order: hash ~113 MB once, not twice
  const key = sha256(utf8(JSON.stringify({ v: 1, compression, entries: runtime.map((e) => (e.type === "file" ? { ...e, data: files[i++]!.sha256 } : e)) })));
  const cache = join(cacheDir, `runtime-${key}.cpio${compression === "gzip" ? ".gz" : ""}`);
  if (existsSync(cache) && existsSync(`${cache}.size`)) {
    say("runtime part: cached");
    return { data: await readFile(cache), rawBytes: Number(await readFile(`${cache}.size`, "utf8")), files, modules };
  }
  say("runtime part: writing and compressing (once per set of artefacts)");
  const raw = writeCpio(runtime);
  const data = compress(raw, compression);
  await writeAtomic(cache, data);
  await writeAtomic(`${cache}.size`, String(raw.byteLength));
  return { data, rawBytes: raw.byteLength, files, modules };
}

/**
 * Builds the image: bundles, the runtime part (from the cache when its
 * inputs have not changed), the appliance part, the size guard, then writes
 * `initramfs.cpio.gz`, `Image` and `manifest.json` into `outDir`.
 *
 * @example
 * ```ts
 * const built = await buildImage({ board, artefacts, queenPub: "~/.config/cohesix/queen.pub", outDir: ".cohesix/image/aarch64-virt", root });
 * built.manifest.digest; // "sha256:…"
 * ```
 */
export async function buildImage(options: BuildImageOptions): Promise<BuiltImage> {
  const { board, artefacts, outDir } = options;
  const say = options.say ?? (() => {});
  const compression = options.compression ?? "gzip";
  const cacheDir = options.cacheDir ?? join(outDir, "..", "cache");
  await mkdir(outDir, { recursive: true });
  await mkdir(cacheDir, { recursive: true });

  const nodeMajor = Number((board.artefacts?.node?.version ?? "22").split(".")[0]) || 22;
  const available = await workerEntries(options.root);
  const kinds = [...new Set(options.workers ?? DEFAULT_IMAGE_WORKERS)].sort();
  const workers: Record<string, string> = {};
  for (const kind of kinds) {
    const entry = available[kind];
    if (entry === undefined) throw new NotFoundError(`image: no worker program ${JSON.stringify(kind)} (available: ${Object.keys(available).join(", ") || "none"})`);
    workers[kind] = entry;
  }
  const programs: Record<string, GuestPrograms[string]> = {};
  for (const [name, p] of Object.entries(options.programs ?? {})) {
    if (Object.hasOwn(workers, name) || Object.hasOwn(available, name)) throw new InvalidError(`image: project worker ${JSON.stringify(name)} has the name of a built-in worker`);
    workers[name] = p.source;
    programs[name] = { entry: `dist/workers/${name}.mjs`, role: p.role, ...(p.budget ? { budget: p.budget } : {}), ...(p.restart !== undefined ? { restart: p.restart } : {}), ...(p.required ? { required: true } : {}) };
  }
  const carried = [...kinds, ...Object.keys(programs)].sort();
  say(`bundling the root task and workers (${carried.join(", ")}) for node${nodeMajor}`);
  const bundle = await bundleGuest({ root: options.root, nodeMajor, workers });
  const natives = nativesFor(board.artefacts?.natives ?? [], bundle.packages);
  let nativeBundle: BundleFile[] = [];
  if (natives.length > 0) {
    checkNativeVersions(natives, { root: options.root, ...(board.dir ? { boardFile: join(board.dir, "board.json") } : {}) });
    if (!options.natives) throw new NotFoundError(`image: the workers need ${natives.map((n) => `${n.package}@${n.version}`).join(", ")} but no native package source was given`);
    say(`native packages: ${natives.map((n) => `${n.package}@${n.version}`).join(", ")} (for ${[...new Set(natives.map((n) => n.for))].join(", ")})`);
    nativeBundle = await nativeFiles(await options.natives(natives.map((n) => n.package)));
  }

  const runtime = await runtimePart({ board, artefacts, cacheDir, compression, ...(options.strip !== undefined ? { strip: options.strip } : {}), say });
  const { modules, rawBytes: runtimeBytes } = runtime;

  const app = await applianceEntries({
    board,
    // insmod in the board's order
    modulePaths: modules.map((rel) => `/lib/modules/${artefacts.kernelVersion}/${rel}`),
    bundle: [...bundle.files, ...nativeBundle],
    workers: carried,
    programs,
    ...(options.health ? { health: options.health } : {}),
    queenPub: await readFile(options.queenPub).catch((err: Error) => {
      throw new NotFoundError(`image: queen public key ${options.queenPub}: ${err.message} (make one with \`cohesix keygen\`)`);
    }),
    ...(options.extra ? { extra: options.extra } : {}),
    ...(options.policy ? { policy: options.policy } : {}),
    ...(options.fleet ? { fleet: options.fleet } : {}),
  });
  const appRaw = writeCpio(app);
  const image = Buffer.concat([runtime.data, compress(appRaw, compression)]);
  checkSize(image, { limit: board.sizeLimitBytes, what: `${board.name} initramfs` });

  const digest = `sha256:${sha256(image)}`;
  const initrd = join(outDir, compression === "gzip" ? "initramfs.cpio.gz" : "initramfs.cpio");
  await writeAtomic(initrd, image);
  const kernelData = await readFile(artefacts.kernel);
  const kernel = join(outDir, "Image");
  const kernelSha = sha256(kernelData);
  if (!existsSync(kernel) || sha256(await readFile(kernel)) !== kernelSha) await copyFile(artefacts.kernel, kernel);
  const files = [...runtime.files, ...manifestFiles(app)].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  const manifest: ImageManifest = {
    board: board.name,
    kernelVersion: artefacts.kernelVersion,
    digest,
    workers: carried,
    natives: natives.map((n) => `${n.package}@${n.version}`),
    image: { file: initrd.split(sep).pop()!, bytes: image.byteLength, uncompressedBytes: runtimeBytes + appRaw.byteLength, runtimeBytes },
    kernel: { file: "Image", sha256: kernelSha },
    cmdline: `${board.kernel.cmdline} cohesix.image=${digest}`,
    files,
  };
  const manifestPath = join(outDir, "manifest.json");
  await writeAtomic(manifestPath, `${JSON.stringify(manifest, null, 2)}\n`);
  say(`image ${initrd}: ${(image.byteLength / 1048576).toFixed(1)} MiB, ${digest}`);
  return { initrd, kernel, manifestPath, manifest };
}
