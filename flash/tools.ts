/**
 * The host tools the disk image is made with — sfdisk (fdisk), mkfs.vfat
 * (dosfstools), mtools, mkfs.ext4 (e2fsprogs) — run through execa, with a
 * missing tool named by its Debian package.
 * @module
 */
import { execa } from "execa";
import { NotFoundError } from "../nine-door/index.ts";

const PACKAGE_OF: Record<string, string> = {
  sfdisk: "fdisk",
  "mkfs.vfat": "dosfstools",
  "mkfs.ext4": "e2fsprogs",
  mmd: "mtools",
  mcopy: "mtools",
  mdir: "mtools",
  mtype: "mtools",
};

/** Where Debian keeps the tools root normally has on PATH. */
const SBIN = "/usr/sbin:/sbin";

/** Options of {@link runTool}. */
export interface RunToolOptions {
  /** Standard input. */
  readonly input?: string;
  /** Extra environment (SOURCE_DATE_EPOCH, E2FSPROGS_FAKE_TIME…). */
  readonly env?: Record<string, string>;
}

/**
 * Runs a tool to completion; resolves with its stdout. A missing tool is a
 * `not found:` naming the package to install; a failing one is an error
 * with the tool's stderr.
 *
 * @example
 * ```ts
 * await runTool("mmd", ["-i", "boot.fat", "::/extlinux"]);
 * ```
 */
export async function runTool(tool: string, args: readonly string[], options: RunToolOptions = {}): Promise<string> {
  return Buffer.from(await run(tool, args, options)).toString("utf8");
}

/**
 * Like {@link runTool}, with stdout as bytes.
 *
 * @example
 * ```ts
 * const data = await runToolBytes("mcopy", ["-n", "-i", "disk.img@@1048576", "::/Image", "-"]);
 * ```
 */
export async function runToolBytes(tool: string, args: readonly string[], options: RunToolOptions = {}): Promise<Uint8Array> {
  return run(tool, args, options);
}

async function run(tool: string, args: readonly string[], options: RunToolOptions): Promise<Uint8Array> {
  const r = await execa(tool, [...args], {
    reject: false,
    encoding: "buffer",
    stripFinalNewline: false,
    ...(options.input !== undefined ? { input: options.input } : { stdin: "ignore" as const }),
    env: { PATH: `${process.env.PATH ?? ""}:${SBIN}`, ...options.env },
  });
  if ((r as { code?: string }).code === "ENOENT") {
    const pkg = PACKAGE_OF[tool] ?? tool;
    throw new NotFoundError(`${tool} is not installed: install the ${pkg} package (Debian: apt-get install -y --no-install-recommends ${pkg})`);
  }
  if (r.exitCode !== 0) {
    const stderr = Buffer.from(r.stderr).toString("utf8");
    throw new Error(`${tool} ${args.join(" ")} failed (exit ${r.exitCode}): ${stderr.trim()}`);
  }
  return r.stdout;
}
