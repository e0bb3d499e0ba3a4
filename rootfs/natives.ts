/**
 * Native addons in the guest image. A bundle can carry any pure-JavaScript
 * npm package, but not a compiled addon: that must be the build for the
 * guest's architecture (sharp's `@img/sharp-linux-arm64` and
 * `@img/sharp-libvips-linux-arm64`, not the host's x64 ones). The board pins
 * those packages (`artefacts.natives` in its board.json, each naming the
 * JavaScript package that loads it in `for`); this module decides which a
 * bundle needs, checks they are the versions the installed JavaScript
 * package expects, and lays them out under the image's `node_modules`.
 *
 * The flow, used by `buildImage` for the built-in workers and meant for any
 * bundle (users' workers with their own npm dependencies):
 *
 * ```ts
 * const bundle = await bundleGuest({ root, workers });       // bundle.packages: npm packages inside
 * const pins = nativesFor(board.artefacts.natives, bundle.packages); // e.g. the two @img pins for "sharp"
 * checkNativeVersions(pins, { root });                        // the host's sharp wants these versions
 * const fetched = await fetchNatives(board, { packages: pins.map((p) => p.package) });
 * const files = nativeFiles(fetched);                         // node_modules/@img/sharp-linux-arm64/…
 * ```
 * @module
 */
import { existsSync, readFileSync } from "node:fs";
import { readdir, readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import { InvalidError } from "../nine-door/index.ts";
import type { BundleFile } from "./bundle.ts";

/** The parts of a board's native pin this module reads (see `NativePin` in boards/). */
export interface NativePinLike {
  /** npm package, e.g. `@img/sharp-linux-arm64`. */
  readonly package: string;
  readonly version: string;
  /** The JavaScript package that loads it, e.g. `sharp`. */
  readonly for: string;
}

/**
 * The npm package a bundled input file belongs to, from its path (the part
 * after the last `node_modules/`), or undefined for the project's own files.
 *
 * @example
 * ```ts
 * packageOfInput("node_modules/sharp/lib/index.js");                // "sharp"
 * packageOfInput("node_modules/@img/colour/index.cjs");             // "@img/colour"
 * packageOfInput("workers/inference/main.ts");                      // undefined
 * ```
 */
export function packageOfInput(path: string): string | undefined {
  const p = path.replaceAll("\\", "/");
  const at = p.lastIndexOf("node_modules/");
  if (at < 0) return undefined;
  const parts = p.slice(at + "node_modules/".length).split("/");
  if (parts[0]?.startsWith("@")) return parts.length > 2 ? `${parts[0]}/${parts[1]}` : undefined;
  return parts.length > 1 ? parts[0] : undefined;
}

/**
 * The pins a bundle needs: those whose `for` package is among the bundle's
 * npm packages, in pin order.
 *
 * @example
 * ```ts
 * nativesFor(board.artefacts.natives, ["sharp", "detect-libc"]).map((p) => p.package);
 * // ["@img/sharp-linux-arm64", "@img/sharp-libvips-linux-arm64"]
 * nativesFor(board.artefacts.natives, ["msgpackr"]); // []
 * ```
 */
export function nativesFor<P extends NativePinLike>(pins: readonly P[], packages: Iterable<string>): P[] {
  const present = new Set(packages);
  return pins.filter((p) => present.has(p.for));
}

/**
 * Refuses pins whose version differs from what the installed JavaScript
 * package asks for in its `optionalDependencies` (or `dependencies`): a
 * native addon built for another release of its loader may not load, or
 * worse, misbehave. A loader that does not name the addon is not checked.
 *
 * @example
 * ```ts
 * checkNativeVersions(pins, { root: packageRoot() });
 * // invalid: board pins @img/sharp-linux-arm64@0.34.4 but the installed sharp 0.34.5 wants 0.34.5: …
 * ```
 */
export function checkNativeVersions(pins: readonly NativePinLike[], options: { root: string; boardFile?: string }): void {
  for (const pin of pins) {
    const manifestPath = join(options.root, "node_modules", pin.for, "package.json");
    if (!existsSync(manifestPath)) continue;
    const manifest = JSON.parse(readFileSync(manifestPath, "utf8")) as {
      version?: string;
      optionalDependencies?: Record<string, string>;
      dependencies?: Record<string, string>;
    };
    const wanted = manifest.optionalDependencies?.[pin.package] ?? manifest.dependencies?.[pin.package];
    if (wanted !== undefined && wanted !== pin.version) {
      throw new InvalidError(
        `board pins ${pin.package}@${pin.version} but the installed ${pin.for} ${manifest.version ?? "?"} wants ${wanted}: ` +
          `update the pin in ${options.boardFile ?? "the board's board.json"} (version, integrity from \`npm view ${pin.package}@${wanted} dist.integrity\`, sha256 of \`npm pack ${pin.package}@${wanted}\`)`,
      );
    }
  }
}

/**
 * The files of unpacked native packages, placed at
 * `node_modules/<package>/…` of the guest package (where a bundle in
 * `dist/` resolves them), sorted, with fixed modes.
 *
 * @example
 * ```ts
 * const files = await nativeFiles([{ pin: { package: "@img/sharp-linux-arm64" }, dir: "/cache/unpacked/a1b6…/package" }]);
 * files.map((f) => f.path); // ["node_modules/@img/sharp-linux-arm64/LICENSE", …, "node_modules/@img/sharp-linux-arm64/lib/sharp-linux-arm64.node", …]
 * ```
 */
export async function nativeFiles(packages: readonly { readonly pin: { readonly package: string }; readonly dir: string }[]): Promise<BundleFile[]> {
  const files: BundleFile[] = [];
  for (const { pin, dir } of packages) {
    for (const f of await walkFiles(dir)) {
      // Shared objects and addons keep their execute bits; everything else is 0644.
      const mode = /\.(node|so)(\.\d+)*$/.test(f.rel) ? 0o755 : 0o644;
      files.push({ path: `node_modules/${pin.package}/${f.rel}`, data: await readFile(f.abs), mode });
    }
  }
  return files.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
}

async function walkFiles(dir: string, prefix = ""): Promise<{ abs: string; rel: string }[]> {
  const out: { abs: string; rel: string }[] = [];
  for (const d of (await readdir(dir, { withFileTypes: true })).sort((a, b) => (a.name < b.name ? -1 : 1))) {
    const abs = join(dir, d.name);
    const rel = prefix ? `${prefix}/${d.name}` : d.name;
    if (d.isDirectory()) out.push(...(await walkFiles(abs, rel)));
    else if (d.isFile() || (d.isSymbolicLink() && (await stat(abs)).isFile())) out.push({ abs, rel });
  }
  return out;
}
