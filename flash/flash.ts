/**
 * `cohesix flash` as a function: verify the image's signed manifest, pick
 * the disk by the rules, ask, unmount if told to, write, read back, and
 * have the kernel re-read the partition table.
 *
 * Order matters: the manifest is checked before any disk is looked at, and
 * the disk is chosen and confirmed before its first byte is written.
 *
 * @example
 * ```ts
 * await flashImage("appliance.img", {
 *   pubKeyFile: "release.pub",
 *   device: "/dev/sdb",
 *   yes: true,
 *   log: (t) => process.stderr.write(t),
 * });
 * ```
 * @module
 */
import { constants } from "node:fs";
import { access, stat } from "node:fs/promises";
import { resolve } from "node:path";
import { execa } from "execa";
import { BusyError, NineError } from "../nine-door/index.ts";
import { deviceName, formatBytes, listDisks, systemView, type Disk, type SystemView } from "./devices.ts";
import { verifyImage } from "./manifest.ts";
import type { ProgressBar } from "./progress.ts";
import { assessDisks, chooseDisk, formatCandidates, RefusedError, refusalsOf } from "./rules.ts";
import { WriteError, writeImage, type WriteResult } from "./writer.ts";

/** Runs a system command (`umount`, `blockdev`, `partx`) without throwing on failure. */
export type Runner = (file: string, args: readonly string[]) => Promise<{ exitCode: number; stderr: string }>;

/** The real runner: execa, with a missing binary reported as exit 127. */
export const runCommand: Runner = async (file, args) => {
  const r = await execa(file, [...args], { reject: false });
  if ((r as { code?: string }).code === "ENOENT") return { exitCode: 127, stderr: `${file} is not installed (Debian: apt-get install util-linux mount)` };
  return { exitCode: r.exitCode ?? 1, stderr: String(r.stderr ?? "").trim() };
};

/** Options of {@link flashImage}. */
export interface FlashOptions {
  /** The release public key the image's manifest must be signed with; checked before anything else. */
  readonly pubKeyFile: string;
  /** `--device`: a path (`/dev/sdb`, `/dev/disk/by-id/…`) or kernel name. */
  readonly device?: string;
  /** `--target-file`: write a plain file instead of a disk. */
  readonly targetFile?: string;
  /** `--yes`: do not ask. */
  readonly yes?: boolean;
  /** `--unmount`: unmount the disk's partitions instead of refusing it. */
  readonly unmount?: boolean;
  /** `--max-size` in bytes. */
  readonly maxBytes?: number;
  /** The system to look at; default the running one. */
  readonly view?: SystemView;
  readonly run?: Runner;
  /** Asks a yes/no question on the terminal; absent when stdin is not one. */
  readonly confirm?: (question: string) => Promise<boolean>;
  /** Messages for the user (stderr). */
  readonly log: (text: string) => void;
  readonly progress?: ProgressBar;
  readonly signal?: AbortSignal;
}

/** What was flashed. */
export interface Flashed extends WriteResult {
  /** The device or file written. */
  readonly target: string;
  /** False when the kernel could not re-read the partition table (files: always false). */
  readonly partitionsReread: boolean;
}

async function confirmOrRefuse(options: FlashOptions, question: string, what: string): Promise<void> {
  if (options.yes) return;
  if (options.confirm === undefined) {
    throw new RefusedError(`stdin is not a terminal, so nobody can confirm: pass --yes to write ${what} without asking`);
  }
  if (!(await options.confirm(question))) throw new RefusedError(`not confirmed: nothing was written to ${what}`);
}

async function unmountAll(disk: Disk, run: Runner, log: (t: string) => void): Promise<void> {
  // Deepest mount point first, so nested mounts come off before their parents.
  const mounts = [...disk.mounts].sort((a, b) => b.target.length - a.target.length);
  for (const m of mounts) {
    log(`unmounting ${m.source} from ${m.target}\n`);
    const r = await run("umount", [m.target]);
    if (r.exitCode !== 0) {
      throw new BusyError(`umount ${m.target} failed: ${r.stderr || `exit ${r.exitCode}`}; close the programs using it (fuser -vm ${m.target}) and try again`);
    }
  }
}

async function rereadPartitions(path: string, run: Runner, log: (t: string) => void): Promise<boolean> {
  const first = await run("blockdev", ["--rereadpt", path]);
  if (first.exitCode === 0) return true;
  const second = await run("partx", ["-u", path]);
  if (second.exitCode === 0) return true;
  log(`warning: the kernel did not re-read ${path}'s partition table (blockdev: ${first.stderr || first.exitCode}; partx: ${second.stderr || second.exitCode}); unplug and replug the card before mounting it\n`);
  return false;
}

/** An aborted write says what it leaves behind. */
async function interruptible<T>(target: string, write: () => Promise<T>): Promise<T> {
  try {
    return await write();
  } catch (err) {
    if ((err as Error).name === "AbortError") throw new WriteError(`interrupted: ${target} holds part of the image; flash it again before use`, { cause: err });
    throw err;
  }
}

function writeProgress(options: FlashOptions) {
  const bar = options.progress;
  if (bar === undefined) return undefined;
  const labels = { write: "writing", verify: "verifying" } as const;
  return (p: { phase: "write" | "verify"; done: number; total: number }) => {
    bar.update(labels[p.phase], p.done, p.total);
    if (p.done === p.total) bar.finish(labels[p.phase], p.total);
  };
}

/** What the verified manifest tells the writer: the whole image's sha256. */
interface Verified {
  readonly sha256: string;
}

async function flashFile(imagePath: string, verified: Verified, options: FlashOptions): Promise<Flashed> {
  const target = resolve(options.targetFile!);
  const image = await stat(imagePath);
  const existing = await stat(target).catch(() => undefined);
  if (existing !== undefined) {
    if (!existing.isFile()) {
      throw new RefusedError(`--target-file ${target} is not a plain file${existing.isBlockDevice() ? ": flash a disk with --device" : ""}`);
    }
    if (existing.ino === image.ino && existing.dev === image.dev) throw new RefusedError(`--target-file ${target} is the image itself`);
    await confirmOrRefuse(options, `Overwrite ${target} with ${imagePath} (${formatBytes(image.size)})? [y/N] `, target);
  }
  options.log(`writing ${imagePath} (${formatBytes(image.size)}) to ${target}\n`);
  const result = await interruptible(target, () => writeImage(imagePath, target, {
    expectedSha256: verified.sha256,
    ...(options.signal === undefined ? {} : { signal: options.signal }),
    onProgress: writeProgress(options),
  }));
  options.log(`wrote and verified ${target}: sha256 ${result.sha256}\n`);
  return { ...result, target, partitionsReread: false };
}

/**
 * Flashes `imagePath` to the chosen disk (or `targetFile`). Throws
 * RefusedError (`permission:`) for a refused image or device, BusyError
 * when unmounting fails, WriteError (`io:`) when the write or read-back
 * fails. Nothing is written before the manifest verified, the disk passed
 * the rules and the user confirmed.
 */
export async function flashImage(imagePath: string, options: FlashOptions): Promise<Flashed> {
  if (options.device !== undefined && options.targetFile !== undefined) {
    throw new RefusedError("--device and --target-file exclude each other: give one");
  }
  let verified: Verified;
  try {
    verified = { sha256: (await verifyImage(imagePath, { pubKeyFile: options.pubKeyFile })).image.sha256 };
  } catch (err) {
    const why = err instanceof NineError ? err.detail : err instanceof Error ? err.message : String(err);
    throw new RefusedError(`refusing to flash${why.includes(imagePath) ? "" : ` ${imagePath}`}: ${why}; nothing was written`);
  }
  if (options.targetFile !== undefined) return flashFile(imagePath, verified, options);

  const view = options.view ?? systemView();
  const run = options.run ?? runCommand;
  const imageBytes = (await stat(imagePath)).size;
  const rules = { imageBytes, ...(options.maxBytes === undefined ? {} : { maxBytes: options.maxBytes }), unmount: options.unmount === true };
  const assessed = assessDisks(await listDisks(view), rules);
  options.log(formatCandidates(assessed));
  const requested = options.device === undefined ? undefined : await deviceName(view, options.device);
  const disk = chooseDisk(assessed, requested === undefined ? {} : { requested });
  if (view.real) {
    const s = await stat(disk.path).catch(() => undefined);
    if (s === undefined || !s.isBlockDevice()) throw new RefusedError(`${disk.path} is not a block device node: is /dev mounted?`);
  }
  // Before asking: a user who cannot write the disk should not be asked to confirm erasing it.
  try {
    await access(disk.path, constants.W_OK);
  } catch {
    throw new RefusedError(`cannot write ${disk.path}: permission denied; run as root (sudo) or join the disk group`);
  }

  const what = `${disk.path}${disk.model ? ` (${disk.model}, ${formatBytes(disk.sizeBytes)})` : ` (${formatBytes(disk.sizeBytes)})`}`;
  await confirmOrRefuse(options, `Write ${imagePath} (${formatBytes(imageBytes)}) to ${what}? Everything on it will be erased. [y/N] `, what);

  if (disk.mounts.length > 0) {
    await unmountAll(disk, run, options.log);
    // Look again: an automounter may have mounted it back.
    const again = (await listDisks(view)).find((d) => d.name === disk.name);
    const left = again === undefined ? [] : refusalsOf(again, { ...rules, unmount: false });
    if (left.length > 0) throw new RefusedError(`refusing ${disk.path} after unmounting: ${left.map((r) => r.message).join("; ")}`, left);
  }

  options.log(`writing ${imagePath} (${formatBytes(imageBytes)}) to ${what}\n`);
  const result = await interruptible(disk.path, () => writeImage(imagePath, disk.path, {
    device: true,
    expectedSha256: verified.sha256,
    ...(options.signal === undefined ? {} : { signal: options.signal }),
    onProgress: writeProgress(options),
    flushBuffers: async () => {
      await run("blockdev", ["--flushbufs", disk.path]);
    },
  }));
  const partitionsReread = await rereadPartitions(disk.path, run, options.log);
  options.log(`wrote and verified ${disk.path}: sha256 ${result.sha256}; it is safe to remove\n`);
  return { ...result, target: disk.path, partitionsReread };
}

