/**
 * `fetchArtefacts`: the pinned pieces of a board's image — the Node
 * runtime from npm, glibc, libstdc++, libgcc, a static busybox and the
 * kernel with its modules from Debian — downloaded once into the per-user
 * cache, verified against their sha256 pins, unpacked, and handed to the
 * image builder as paths. Rebuilds work offline from the cache.
 * @module
 */
import { createHash } from "node:crypto";
import { createReadStream, createWriteStream, existsSync, readdirSync, readFileSync } from "node:fs";
import { copyFile, mkdir, open, rm, symlink } from "node:fs/promises";
import { join, relative } from "node:path";
import { pipeline } from "node:stream/promises";
import { createGunzip } from "node:zlib";
import { InvalidError, NotFoundError, PermissionError } from "../nine-door/index.ts";
import type { Board, DebPin, NativePin } from "../boards/index.ts";
import { ArtefactCache, defaultCacheDir, sha256File } from "./cache.ts";
import { aptDownload, findIn, fileNames, howToGet, npmPack, pinLabel, type Pin } from "./sources.ts";
import { unpackDeb, untar } from "./unpack.ts";

/** A kernel module to load, with its file. */
export interface ModuleFile {
  /** The name as the board lists it, e.g. `virtio-rng`. */
  readonly name: string;
  /** Path relative to {@link Artefacts.modules}, e.g. `kernel/drivers/char/hw_random/virtio-rng.ko`. */
  readonly path: string;
}

/**
 * The unpacked pieces the image builder needs, all inside the cache.
 *
 * @example
 * ```ts
 * const a = await fetchArtefacts(loadBoard("aarch64-virt"));
 * a.node;          // "~/.cache/cohesix/unpacked/548e…/package/bin/node"
 * a.kernelVersion; // "6.1.0-56-arm64"
 * ```
 */
export interface Artefacts {
  /** The guest's `node` binary. */
  readonly node: string;
  /** A folder holding `lib/<loader>` (a symlink) and `lib/<triplet>/` with exactly the loader and the board's libraries. */
  readonly sysroot: string;
  /** The static busybox. */
  readonly busybox: string;
  /** The kernel image QEMU boots with `-kernel` (never gzip-compressed). */
  readonly kernel: string;
  /** The kernel's module tree, `…/lib/modules/<kernelVersion>`. */
  readonly modules: string;
  /** The board's modules in load order, with their files under {@link modules}. */
  readonly moduleFiles: readonly ModuleFile[];
  readonly kernelVersion: string;
  /** The cache folder used. */
  readonly cacheDir: string;
}

/** Options of {@link fetchArtefacts}. */
export interface FetchArtefactsOptions {
  /** The cache folder; default `$XDG_CACHE_HOME/cohesix` or `~/.cache/cohesix`. */
  readonly cacheDir?: string;
  /** Take the `.deb`s and the node tarball from this folder instead of the network. */
  readonly from?: string;
  /** Never use the network: everything must be in the cache (or `from`). */
  readonly offline?: boolean;
  /** Progress lines for long work (the CLI writes them to stderr). */
  readonly onProgress?: (line: string) => void;
  /** Environment for the default cache folder; default `process.env`. */
  readonly env?: NodeJS.ProcessEnv;
}

/**
 * Gets every artefact `board` pins into the cache — from the cache when
 * present and intact, else from `from`, else from npm and apt — verifies
 * each against its sha256 pin, unpacks them and returns their paths.
 *
 * Refusals: a pin mismatch is a `PermissionError` naming the artefact, the
 * expected and the actual sha256; a corrupt cache entry offline is an
 * `InvalidError` that says how to clear it (online it is fetched again);
 * a missing piece is a `NotFoundError` with the commands that get it; a
 * module the board lists but the kernel lacks is a `NotFoundError`.
 *
 * @example
 * ```ts
 * const artefacts = await fetchArtefacts(loadBoard("aarch64-virt"), { onProgress: (l) => console.error(l) });
 * // later, without network:
 * await fetchArtefacts(loadBoard("aarch64-virt"), { offline: true });
 * ```
 */
export async function fetchArtefacts(board: Board, options: FetchArtefactsOptions = {}): Promise<Artefacts> {
  const cache = new ArtefactCache(options.cacheDir ?? defaultCacheDir(options.env));
  const say = options.onProgress ?? (() => {});
  const pins: Pin[] = [{ kind: "node", ...board.artefacts.node }, ...board.artefacts.debs.map((d): Pin => ({ kind: "deb", ...d }))];
  const blobs = await obtain(pins, cache, board, options, say);

  const unpack = (pin: Pin): Promise<string> =>
    cache.derive(cache.unpackedPath(pin.sha256), "unpack", async (tmp) => {
      say(`fetch: unpacking ${pinLabel(pin)}`);
      const blob = blobs.get(pin.sha256)!;
      if (pin.kind === "node") return untar(blob, tmp, ["package/bin/node"]);
      const scratch = await cache.tempDir("scratch");
      await unpackDeb(blob, tmp, { scratch }).finally(() => rm(scratch, { recursive: true, force: true }));
    });
  const trees = new Map<string, string>();
  for (const pin of pins) trees.set(pin.sha256, await unpack(pin));
  const tree = (d: DebPin): string => trees.get(d.sha256)!;

  const node = join(trees.get(board.artefacts.node.sha256)!, "package", "bin", "node");
  if (!existsSync(node)) throw new InvalidError(`${pinLabel(pins[0]!)}: the tarball holds no package/bin/node`);

  const debs = board.artefacts.debs;
  const busyboxDeb = debs.find((d) => d.role === "busybox")!;
  const busybox = ["bin/busybox", "usr/bin/busybox"].map((p) => join(tree(busyboxDeb), p)).find((p) => existsSync(p));
  if (busybox === undefined) throw new InvalidError(`${busyboxDeb.name}: the package holds no bin/busybox`);

  const kernelDeb = debs.find((d) => d.role === "kernel")!;
  const kernel = await kernelPieces(tree(kernelDeb), kernelDeb, cache);
  const moduleFiles = findModules(kernel.modules, board, kernelDeb);

  const sysrootDebs = debs.filter((d) => d.role === "sysroot");
  const sysroot = await buildSysroot(board, sysrootDebs.map(tree), cache, say);
  return { node, sysroot, busybox, kernel: kernel.image, modules: kernel.modules, moduleFiles, kernelVersion: kernel.version, cacheDir: cache.dir };
}

/** A native addon package unpacked in the cache. */
export interface FetchedNative {
  /** The board's pin. */
  readonly pin: NativePin;
  /** The unpacked npm package folder (its `package.json`, `lib/`…). */
  readonly dir: string;
}

/**
 * Gets the board's pinned native addon packages named in `packages` (all
 * of them when omitted) into the cache — from the cache, `from`, or `npm
 * pack` — verified against their sha256 and integrity pins, and unpacked.
 * Same refusals as {@link fetchArtefacts}; a name the board does not pin is
 * a `NotFoundError` listing the pinned ones.
 *
 * @example
 * ```ts
 * const [addon] = await fetchNatives(loadBoard("aarch64-virt"), { packages: ["@img/sharp-linux-arm64"] });
 * addon.dir; // "~/.cache/cohesix/unpacked/a1b6…/package"
 * ```
 */
export async function fetchNatives(board: Board, options: FetchArtefactsOptions & { readonly packages?: readonly string[] } = {}): Promise<FetchedNative[]> {
  const all = board.artefacts.natives;
  const wanted = options.packages ?? all.map((n) => n.package);
  const pins = wanted.map((name) => {
    const pin = all.find((n) => n.package === name);
    if (!pin) {
      throw new NotFoundError(`board ${board.name} pins no native package ${name} (pinned: ${all.map((n) => n.package).join(", ") || "none"}): add it to artefacts.natives in ${join(board.dir, "board.json")}`);
    }
    return pin;
  });
  if (pins.length === 0) return [];
  const cache = new ArtefactCache(options.cacheDir ?? defaultCacheDir(options.env));
  const say = options.onProgress ?? (() => {});
  const blobs = await obtain(pins.map((p): Pin => ({ kind: "npm", ...p })), cache, board, options, say);
  const out: FetchedNative[] = [];
  for (const pin of pins) {
    const tree = await cache.derive(cache.unpackedPath(pin.sha256), "unpack", async (tmp) => {
      say(`fetch: unpacking ${pin.package}@${pin.version}`);
      await untar(blobs.get(pin.sha256)!, tmp, []);
    });
    const dir = join(tree, "package");
    if (!existsSync(join(dir, "package.json"))) throw new InvalidError(`${pin.package}@${pin.version}: the tarball holds no package/package.json`);
    out.push({ pin, dir });
  }
  return out;
}

/** Makes sure every pin's blob is in the cache and intact; returns sha256 → blob path. */
async function obtain(pins: readonly Pin[], cache: ArtefactCache, board: Board, options: FetchArtefactsOptions, say: (line: string) => void): Promise<Map<string, string>> {
  const found = new Map<string, string>();
  const missing: Pin[] = [];
  for (const pin of pins) {
    const state = await cache.check(pin.sha256);
    if (state.state === "ok") {
      found.set(pin.sha256, state.path);
      continue;
    }
    if (state.state === "corrupt") {
      const message =
        `corrupt cache entry for ${pinLabel(pin)}: ${state.path} has sha256 ${state.actual}, expected ${pin.sha256}; ` +
        `remove it with \`rm ${state.path}\` (or clear the cache with \`rm -rf ${cache.dir}\`) and run \`cohesix fetch --board ${board.name}\``;
      if (options.offline) throw new InvalidError(message);
      say(`fetch: ${message}; fetching it again`);
      await cache.removeBlob(pin.sha256);
    }
    missing.push(pin);
  }
  if (missing.length === 0) return found;

  const work = await cache.tempDir("fetch");
  try {
    await obtainMissing(missing, found, work, cache, board, options, say);
  } finally {
    await rm(work, { recursive: true, force: true });
  }
  return found;
}

/** Gets `missing` from `options.from` or the network into the cache, verified; adds them to `found`. */
async function obtainMissing(
  missing: readonly Pin[],
  found: Map<string, string>,
  work: string,
  cache: ArtefactCache,
  board: Board,
  options: FetchArtefactsOptions,
  say: (line: string) => void,
): Promise<void> {
  const boardFile = join(board.dir, "board.json");
  const accept = async (pin: Pin, file: string, how: "copy" | "move"): Promise<void> => {
    const actual = await sha256File(file);
    if (actual !== pin.sha256) {
      throw new PermissionError(`artefact ${pinLabel(pin)} (${file}) does not match its pin in ${boardFile}: expected sha256 ${pin.sha256}, actual ${actual}; refusing it`);
    }
    if (pin.kind !== "deb") {
      const integrity = `sha512-${await hashFile(file, "sha512", "base64")}`;
      if (integrity !== pin.integrity) {
        throw new PermissionError(`artefact ${pinLabel(pin)} (${file}) does not match its pin in ${boardFile}: expected integrity ${pin.integrity}, actual ${integrity}; refusing it`);
      }
    }
    let source = file;
    if (how === "copy") {
      source = join(work, `copy-${pin.sha256}`);
      await copyFile(file, source);
    }
    found.set(pin.sha256, await cache.putBlob(pin.sha256, source));
  };

  if (options.from !== undefined) {
    const absent = missing.filter((pin) => findIn(options.from!, pin) === undefined);
    if (absent.length > 0) {
      throw new NotFoundError(
        `${absent.map(pinLabel).join(", ")} not in ${options.from} (looked for ${absent.map((p) => fileNames(p).join(" or ")).join("; ")}); to get them: ${howToGet(absent, board.name)}`,
      );
    }
    for (const pin of missing) {
      say(`fetch: ${pinLabel(pin)} from ${options.from}`);
      await accept(pin, findIn(options.from, pin)!, "copy");
    }
    return;
  }
  if (options.offline) {
    throw new NotFoundError(
      `${missing.map(pinLabel).join(", ")} not in the cache ${cache.dir} and --offline forbids downloading; run \`cohesix fetch --board ${board.name}\` online, or get them by hand: ${howToGet(missing, board.name)}`,
    );
  }

  const started = Date.now();
  for (const pin of missing) {
    if (pin.kind === "deb") continue;
    say(`fetch: npm pack ${pinLabel(pin)}`);
    await accept(pin, await npmPack(pin, work, board.name), "move");
  }
  const debs = missing.filter((p): p is Pin & { kind: "deb" } => p.kind === "deb");
  if (debs.length > 0) {
    const files = await aptDownload(debs, work, { board: board.name, say });
    for (let i = 0; i < debs.length; i++) await accept(debs[i]!, files[i]!, "move");
  }
  say(`fetch: downloaded ${missing.length} artefact(s) in ${((Date.now() - started) / 1000).toFixed(1)} s`);
}

/** The kernel image (gunzipped if needed), module tree and version of an unpacked kernel package. */
async function kernelPieces(tree: string, deb: DebPin, cache: ArtefactCache): Promise<{ image: string; modules: string; version: string }> {
  const boot = join(tree, "boot");
  const images = existsSync(boot) ? readdirSync(boot).filter((f) => /^(vmlinuz|vmlinux|Image)-/.test(f)) : [];
  if (images.length !== 1) throw new InvalidError(`${deb.name}: expected one boot/vmlinuz-<version>, found ${images.length ? images.join(", ") : "none"}`);
  const file = images[0]!;
  const version = file.slice(file.indexOf("-") + 1);
  const modules = ["lib/modules", "usr/lib/modules"].map((p) => join(tree, p, version)).find((p) => existsSync(p));
  if (modules === undefined) throw new InvalidError(`${deb.name}: no lib/modules/${version}`);
  let image = join(boot, file);
  const head = Buffer.alloc(2);
  const fh = await open(image, "r");
  await fh.read(head, 0, 2, 0).finally(() => fh.close());
  if (head[0] === 0x1f && head[1] === 0x8b) {
    // QEMU takes a gzipped arm64 Image, but U-Boot's booti does not: hand out the plain Image.
    const dir = await cache.derive(cache.derivedPath(`kernel-${deb.sha256}`), "kernel", async (tmp) => {
      await pipeline(createReadStream(image), createGunzip(), createWriteStream(join(tmp, `Image-${version}`)));
    });
    image = join(dir, `Image-${version}`);
  }
  return { image, modules, version };
}

/** Each board module's file, in load order; a module the kernel lacks is refused. */
function findModules(modulesDir: string, board: Board, deb: DebPin): ModuleFile[] {
  const byName = new Map<string, string>();
  const walk = (dir: string): void => {
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      const path = join(dir, e.name);
      if (e.isDirectory()) walk(path);
      else if (/\.ko(\.(xz|zst|gz))?$/.test(e.name)) byName.set(e.name.replace(/\.ko(\..*)?$/, "").replaceAll("-", "_"), relative(modulesDir, path));
    }
  };
  walk(join(modulesDir, "kernel"));
  const builtinFile = join(modulesDir, "modules.builtin");
  const builtin = existsSync(builtinFile) ? readFileSync(builtinFile, "utf8") : "";
  return board.kernel.modules.map((name) => {
    const path = byName.get(name.replaceAll("-", "_"));
    if (path === undefined) {
      const isBuiltin = builtin.split("\n").some((l) => l.replace(/^.*\//, "").replace(/\.ko$/, "").replaceAll("-", "_") === name.replaceAll("-", "_"));
      throw new NotFoundError(
        `board ${board.name}: module ${name} is not in ${deb.name} ${deb.version} (${modulesDir})${isBuiltin ? "; it is built into the kernel, so remove it" : ""} — fix kernel.modules in ${join(board.dir, "board.json")}`,
      );
    }
    return { name, path };
  });
}

/** lib/<loader> → <triplet>/<loader>, and lib/<triplet>/ with the loader and the board's libraries, copied (symlinks resolved). */
async function buildSysroot(board: Board, trees: readonly string[], cache: ArtefactCache, say: (line: string) => void): Promise<string> {
  const { triplet, loader, libraries } = board.sysroot;
  const key = createHash("sha256")
    .update(JSON.stringify([board.artefacts.debs.filter((d) => d.role === "sysroot").map((d) => d.sha256), triplet, loader, libraries]))
    .digest("hex")
    .slice(0, 32);
  return cache.derive(cache.derivedPath(`sysroot-${key}`), "sysroot", async (tmp) => {
    say("fetch: assembling the sysroot");
    const dest = join(tmp, "lib", triplet);
    await mkdir(dest, { recursive: true });
    for (const name of [loader, ...libraries]) {
      const candidates = trees.flatMap((t) => [join(t, "lib", triplet, name), join(t, "usr", "lib", triplet, name), join(t, "lib", name), join(t, "usr", "lib", name)]);
      const source = candidates.find((c) => existsSync(c));
      if (source === undefined) {
        throw new NotFoundError(`board ${board.name}: ${name} is in none of the sysroot packages (${board.artefacts.debs.filter((d) => d.role === "sysroot").map((d) => d.name).join(", ")})`);
      }
      await copyFile(source, join(dest, name)); // follows symlinks; keeps the mode
    }
    await symlink(`${triplet}/${loader}`, join(tmp, "lib", loader));
  });
}

async function hashFile(path: string, algorithm: string, encoding: "hex" | "base64"): Promise<string> {
  if (algorithm === "sha256" && encoding === "hex") return sha256File(path);
  const hash = createHash(algorithm);
  await pipeline(createReadStream(path, { highWaterMark: 1 << 20 }), hash);
  return hash.digest(encoding);
}

