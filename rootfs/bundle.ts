/**
 * Guest bundles: esbuild turns the guest's main program and the chosen
 * worker programs into self-contained ES modules for the board's Node (npm
 * dependencies included, since the image has no node_modules), minified,
 * with linked source maps. The result is data — paths relative to the
 * package folder in the image (`/opt/cohesix`) and their bytes — which
 * image assembly lays out; nothing is written here.
 *
 * Native addons cannot be bundled: the packages named in
 * {@link NATIVE_PACKAGES} (sharp's linux-arm64 binaries) stay external. The
 * bundle reports which npm packages went into it (`packages`), so the image
 * builder can add the board's pinned native packages those need
 * (`natives.ts`), never the host's own builds.
 * @module
 */
import { build, type BuildOptions, type Plugin } from "esbuild";
import { execa } from "execa";
import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdir, readdir, readFile, rename, writeFile } from "node:fs/promises";
import { builtinModules } from "node:module";
import { join, relative, sep } from "node:path";
import { packageOfInput } from "./natives.ts";

/** One file of the guest package, relative to its folder in the image. */
export interface BundleFile {
  /** Path relative to the package folder, with `/` separators, e.g. `dist/guest.mjs`. */
  readonly path: string;
  readonly data: Uint8Array;
  /** Permission bits; default 0o644. */
  readonly mode?: number;
}

/**
 * Native addon packages kept out of the bundles (external imports); the
 * board's pinned builds of them are placed in the image's `node_modules`.
 *
 * @example
 * ```ts
 * NATIVE_PACKAGES.includes("@img/sharp-linux-arm64"); // true
 * ```
 */
export const NATIVE_PACKAGES: readonly string[] = ["@img/sharp-linux-arm64", "@img/sharp-libvips-linux-arm64"];

/**
 * Packages never bundled: native accelerators with a pure-JS fallback,
 * which the guest does without.
 */
const OPTIONAL_NATIVE: readonly string[] = ["msgpackr-extract"];

/** Options of {@link bundleGuest}. */
export interface BundleGuestOptions {
  /** The cohesix package root (sources and node_modules). */
  readonly root: string;
  /** Node major version of the guest runtime; esbuild targets it. Default 22. */
  readonly nodeMajor?: number;
  /** The guest's main program; default `root-task/guest-main.ts`. */
  readonly guestEntry?: string;
  /**
   * Worker programs, kind → entry; default every `workers/<kind>/main.ts`.
   * Files beside an entry that are not TypeScript (the inference sample
   * image) are assets, copied to `dist/workers/<kind>/`.
   */
  readonly workers?: Readonly<Record<string, string>>;
  /** Native packages left external; default {@link NATIVE_PACKAGES}. */
  readonly nativePackages?: readonly string[];
}

/** The guest package: `package.json`, `dist/guest.mjs`, `dist/workers/<kind>.mjs`, maps, worker assets. */
export interface GuestBundle {
  readonly files: readonly BundleFile[];
  /** Worker kinds bundled. */
  readonly workers: readonly string[];
  /** npm packages bundled into any output (e.g. `sharp`, `detect-libc`), sorted: what decides the native packages needed. */
  readonly packages: readonly string[];
}

/**
 * An esbuild plugin: the bundles get Node's built-in modules through
 * `require()`, not through ES `import`s. For each built-in an ES module
 * imports, Node builds a facade that reads every export, which runs the
 * built-in's lazy getters — `node:fs` loads its streams, `node:crypto`
 * WebCrypto — and cost the guest root task ~2 s of its emulated boot.
 * Through require() a built-in loads only what is used.
 */
const builtinsViaRequire: Plugin = {
  name: "builtins-via-require",
  setup(b) {
    const names = new Set(builtinModules.flatMap((n) => [n, `node:${n}`]));
    b.onResolve({ filter: /^[a-z:_/0-9]+$/ }, (args) =>
      args.kind === "import-statement" && names.has(args.path) ? { path: args.path, namespace: "builtin-via-require" } : undefined,
    );
    b.onLoad({ filter: /.*/, namespace: "builtin-via-require" }, (args) => ({ contents: `module.exports = require(${JSON.stringify(args.path)});`, loader: "js" }));
  },
};

/** The worker programs of a package root: kind → `workers/<kind>/main.ts`. */
export async function workerEntries(root: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  const dir = join(root, "workers");
  if (!existsSync(dir)) return out;
  for (const d of (await readdir(dir, { withFileTypes: true })).sort((a, b) => (a.name < b.name ? -1 : 1))) {
    const main = join(dir, d.name, "main.ts");
    if (d.isDirectory() && existsSync(main)) out[d.name] = main;
  }
  return out;
}

/**
 * Bundles the guest program and the workers for the board's Node.
 *
 * @example
 * ```ts
 * const bundle = await bundleGuest({ root: packageRoot(), nodeMajor: 22 });
 * bundle.files.map((f) => f.path); // ["dist/guest.mjs", "dist/guest.mjs.map", "dist/workers/heartbeat.mjs", …, "package.json"]
 * ```
 */
export async function bundleGuest(options: BundleGuestOptions): Promise<GuestBundle> {
  const root = options.root;
  const workers = options.workers ?? (await workerEntries(root));
  const entryPoints: Record<string, string> = { guest: options.guestEntry ?? join(root, "root-task", "guest-main.ts") };
  for (const [kind, entry] of Object.entries(workers)) entryPoints[`workers/${kind}`] = entry;
  const esbuildOptions: BuildOptions = {
    absWorkingDir: root,
    entryPoints,
    outdir: join(root, "dist", "guest-image", "dist"),
    outExtension: { ".js": ".mjs" },
    bundle: true,
    platform: "node",
    target: `node${options.nodeMajor ?? 22}`,
    format: "esm",
    minify: true,
    sourcemap: "linked",
    legalComments: "none",
    write: false,
    metafile: true,
    external: [...OPTIONAL_NATIVE, ...(options.nativePackages ?? NATIVE_PACKAGES)],
    // CommonJS dependencies call require(); give ES modules one.
    banner: { js: 'import{createRequire as __cxReq}from"node:module";const require=__cxReq(import.meta.url);' },
    plugins: [builtinsViaRequire],
    logLevel: "silent",
  };
  const result = await build(esbuildOptions).catch((err: Error) => {
    throw new Error(`bundle: esbuild failed: ${err.message}`);
  });
  const base = join(root, "dist", "guest-image");
  const files: BundleFile[] = (result.outputFiles ?? []).map((f) => ({ path: relative(base, f.path).split(sep).join("/"), data: f.contents }));
  // The package marker that boards/package-root.ts packageRoot() looks for.
  const manifest = { name: "cohesix", private: true, type: "module" };
  files.push({ path: "package.json", data: new TextEncoder().encode(`${JSON.stringify(manifest, null, 2)}\n`) });
  // Assets of the package's own workers (workers/<kind>/*, not TypeScript, top level only).
  for (const [kind, entry] of Object.entries(workers)) {
    const folder = join(root, "workers", kind);
    if (entry !== join(folder, "main.ts")) continue;
    for (const d of (await readdir(folder, { withFileTypes: true })).sort((a, b) => (a.name < b.name ? -1 : 1))) {
      if (!d.isFile() || /\.(ts|md)$/.test(d.name)) continue;
      files.push({ path: `dist/workers/${kind}/${d.name}`, data: await readFile(join(folder, d.name)), mode: 0o644 });
    }
  }
  files.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  const packages = new Set<string>();
  for (const input of Object.keys(result.metafile?.inputs ?? {})) {
    const pkg = packageOfInput(input);
    if (pkg !== undefined) packages.add(pkg);
  }
  return { files, workers: Object.keys(workers).sort(), packages: [...packages].sort() };
}

/** Options of {@link stripElf}. */
export interface StripOptions {
  /** Folder for stripped copies, keyed by the input's digest. */
  readonly cacheDir: string;
  /** The strip program; default `aarch64-linux-gnu-strip` (binutils-aarch64-linux-gnu). */
  readonly strip?: string;
}

/**
 * A stripped copy of an arm64 ELF (the Node binary), cached by the input's
 * sha256; the input itself when no aarch64 strip is installed.
 *
 * @example
 * ```ts
 * const { path, stripped } = await stripElf("/cache/node-22/bin/node", { cacheDir: "/cache/stripped" });
 * ```
 */
export async function stripElf(path: string, options: StripOptions): Promise<{ path: string; stripped: boolean }> {
  const data = await readFile(path);
  const digest = createHash("sha256").update(data).digest("hex");
  const out = join(options.cacheDir, `${digest}.stripped`);
  if (existsSync(out)) return { path: out, stripped: true };
  const strip = options.strip ?? "aarch64-linux-gnu-strip";
  await mkdir(options.cacheDir, { recursive: true });
  const tmp = `${out}.${process.pid}.tmp`;
  try {
    await execa(strip, ["-o", tmp, path]);
  } catch (err) {
    if ((err as { code?: string }).code === "ENOENT") return { path, stripped: false };
    throw new Error(`strip ${path}: ${(err as Error).message}`);
  }
  await rename(tmp, out);
  return { path: out, stripped: true };
}

/** Copies a file, creating its folder (used by tests and tools that lay bundles out on disk). */
export async function writeBundleFile(dir: string, file: BundleFile): Promise<void> {
  const dest = join(dir, ...file.path.split("/"));
  await mkdir(join(dest, ".."), { recursive: true });
  await writeFile(dest, file.data, { mode: file.mode ?? 0o644 });
}
