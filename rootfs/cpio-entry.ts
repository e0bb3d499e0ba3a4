/**
 * Archive entries as plain data, path normalisation, and the one transform
 * that makes an entry list reproducible. Nothing here touches bytes.
 */
import { InvalidError } from "../nine-door/index.ts";

/** Fields every entry may carry. Missing ones default to the archive mtime and 0. */
interface EntryBase {
  /** Where the entry lands in the root file system; a leading `/` is dropped. */
  path: string;
  /** Seconds since the epoch. */
  mtime?: number;
  uid?: number;
  gid?: number;
}

/**
 * A regular file. `data` may be a thunk, called once while writing, so a
 * large artefact is read only when the archive is built.
 *
 * @example
 * ```ts
 * const init: FileEntry = { type: "file", path: "/init", data: () => readFileSync("init.sh"), mode: 0o755 };
 * ```
 */
export interface FileEntry<D extends FileData = FileData> extends EntryBase {
  type: "file";
  data: D;
  /** Permission bits (default 0o644). */
  mode?: number;
}

/** What a file's bytes may be: the bytes, or a thunk returning them. */
export type FileData = Uint8Array | (() => Uint8Array);

/**
 * A directory. Missing parent directories are added by the writer, so only
 * directories with a non-default mode or mtime need listing.
 *
 * @example
 * ```ts
 * const tmp: DirEntry = { type: "dir", path: "/tmp", mode: 0o1777 };
 * ```
 */
export interface DirEntry extends EntryBase {
  type: "dir";
  /** Permission bits (default 0o755). */
  mode?: number;
}

/**
 * A symbolic link; `target` is stored verbatim (absolute or relative).
 *
 * @example
 * ```ts
 * const sh: SymlinkEntry = { type: "symlink", path: "/bin/sh", target: "busybox" };
 * ```
 */
export interface SymlinkEntry extends EntryBase {
  type: "symlink";
  target: string;
}

/**
 * A character or block device node.
 *
 * @example
 * ```ts
 * const consoleDev: DeviceEntry = { type: "char", path: "/dev/console", major: 5, minor: 1, mode: 0o600 };
 * ```
 */
export interface DeviceEntry extends EntryBase {
  type: "char" | "block";
  major: number;
  minor: number;
  /** Permission bits (default 0o600). */
  mode?: number;
}

/**
 * A second name for a regular file listed elsewhere in the same archive.
 * All names of the file share one inode number; the file's mode, mtime,
 * uid and gid apply to every name, and the data travels with the last name
 * in archive order (the kernel's initramfs rule, as GNU cpio does).
 *
 * @example
 * ```ts
 * const ls: HardlinkEntry = { type: "hardlink", path: "/bin/ls", target: "/bin/busybox" };
 * ```
 */
export interface HardlinkEntry extends EntryBase {
  type: "hardlink";
  target: string;
}

/**
 * One member of an archive, as plain data. `readCpio` returns
 * `CpioEntry<Uint8Array>` (file data already in hand).
 *
 * @example
 * ```ts
 * const entries: CpioEntry[] = [
 *   { type: "dir", path: "/dev" },
 *   { type: "char", path: "/dev/console", major: 5, minor: 1 },
 *   { type: "file", path: "/init", data: new TextEncoder().encode("#!/bin/sh\n"), mode: 0o755 },
 * ];
 * ```
 */
export type CpioEntry<D extends FileData = FileData> =
  | FileEntry<D>
  | DirEntry
  | SymlinkEntry
  | DeviceEntry
  | HardlinkEntry;

/**
 * The path as stored in the archive: no leading `/`, no empty or `.`
 * components, no trailing `/`. Refuses `..`, NUL bytes and the root itself
 * with an InvalidError naming the path.
 *
 * @example
 * ```ts
 * normaliseCpioPath("/usr//lib/./node"); // "usr/lib/node"
 * ```
 */
export function normaliseCpioPath(path: string): string {
  if (path.includes("\0")) throw new InvalidError(`cpio: path contains a NUL byte: ${JSON.stringify(path)}`);
  const parts = path.split("/").filter((p) => p !== "" && p !== ".");
  if (parts.includes("..")) throw new InvalidError(`cpio: path may not contain "..": ${JSON.stringify(path)}`);
  if (parts.length === 0) throw new InvalidError(`cpio: path names the root, which is not an archive member: ${JSON.stringify(path)}`);
  return parts.join("/");
}

const encoder = new TextEncoder();

/**
 * Orders normalised paths component by component on their UTF-8 bytes
 * (as if `/` sorted before every other byte), so a parent comes before its
 * children and each directory's subtree is contiguous.
 *
 * @example
 * ```ts
 * ["a-b", "a/c", "a"].sort(comparePaths); // ["a", "a/c", "a-b"]
 * ```
 */
export function comparePaths(a: string, b: string): number {
  const x = encoder.encode(a);
  const y = encoder.encode(b);
  const n = Math.min(x.length, y.length);
  for (let i = 0; i < n; i++) {
    const cx = x[i] === 0x2f ? 0 : x[i]! + 1;
    const cy = y[i] === 0x2f ? 0 : y[i]! + 1;
    if (cx !== cy) return cx - cy;
  }
  return x.length - y.length;
}

/**
 * `SOURCE_DATE_EPOCH` (reproducible-builds.org) as seconds, or 0 when unset
 * or empty. Anything but a whole, non-negative number is an InvalidError.
 *
 * @example
 * ```ts
 * sourceDateEpoch({ SOURCE_DATE_EPOCH: "1700000000" }); // 1700000000
 * ```
 */
export function sourceDateEpoch(env: Readonly<Record<string, string | undefined>> = process.env): number {
  const raw = env.SOURCE_DATE_EPOCH;
  if (raw === undefined || raw.trim() === "") return 0;
  if (!/^\s*\d+\s*$/.test(raw)) {
    throw new InvalidError(`cpio: SOURCE_DATE_EPOCH is not a whole number of seconds: ${JSON.stringify(raw)}`);
  }
  return Number.parseInt(raw, 10);
}

/** Options of {@link makeReproducible}. */
export interface ReproducibleOptions {
  /** The mtime every entry gets (default: `SOURCE_DATE_EPOCH`, else 0). */
  mtime?: number;
}

/**
 * The reproducibility transform: returns new entries with normalised paths,
 * in {@link comparePaths} order, every mtime set to one value and uid/gid 0.
 * Entry data is not touched (thunks are not called). `writeCpio` applies it
 * unless told `{ reproducible: false }`.
 *
 * @example
 * ```ts
 * const fixed = makeReproducible(entries, { mtime: 0 });
 * writeCpio(fixed, { reproducible: false }); // same bytes as writeCpio(entries, { mtime: 0 })
 * ```
 */
export function makeReproducible<D extends FileData>(
  entries: readonly CpioEntry<D>[],
  options: ReproducibleOptions = {},
): CpioEntry<D>[] {
  const mtime = options.mtime ?? sourceDateEpoch();
  return entries
    .map((e) => ({ ...e, path: normaliseCpioPath(e.path), mtime, uid: 0, gid: 0 }))
    .sort((a, b) => comparePaths(a.path, b.path));
}
