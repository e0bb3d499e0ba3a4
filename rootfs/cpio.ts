/**
 * Entries to newc archive bytes and back, following the kernel's initramfs
 * rules: parents before children (missing parent directories are added, as
 * the kernel drops paths whose parent is missing), sequential inode numbers
 * from 0, hard-link groups sharing an inode with the data on the last name.
 */
import { InvalidError, NotFoundError } from "../nine-door/index.ts";
import {
  makeReproducible,
  normaliseCpioPath,
  sourceDateEpoch,
  type CpioEntry,
  type FileEntry,
} from "./cpio-entry.ts";
import { decodeNewc, encodeNewc, S_IFBLK, S_IFCHR, S_IFDIR, S_IFLNK, S_IFMT, S_IFREG, type CpioRecord } from "./newc.ts";

/** Options of {@link writeCpio}. */
export interface WriteCpioOptions {
  /**
   * Apply {@link makeReproducible} first (default true). With false, entries
   * keep their own mtime/uid/gid and the order given, except that a parent
   * directory listed late (or missing) moves to just before its first child.
   */
  reproducible?: boolean;
  /** mtime for entries (and added parents) that name none; default `SOURCE_DATE_EPOCH`, else 0. */
  mtime?: number;
}

const DEFAULT_PERM = { file: 0o644, dir: 0o755, symlink: 0o777, char: 0o600, block: 0o600, hardlink: 0 } as const;
const TYPE_BITS = { file: S_IFREG, dir: S_IFDIR, symlink: S_IFLNK, char: S_IFCHR, block: S_IFBLK } as const;
const EMPTY = new Uint8Array(0);
const utf8 = new TextEncoder();

function perm(e: CpioEntry): number {
  const mode = "mode" in e && e.mode !== undefined ? e.mode : DEFAULT_PERM[e.type];
  if (!Number.isInteger(mode) || mode < 0 || mode > 0o7777) {
    throw new InvalidError(`cpio: mode of ${JSON.stringify(e.path)} must be permission bits (0 to 0o7777): ${mode}`);
  }
  return mode;
}

const parentOf = (path: string): string | undefined => {
  const i = path.lastIndexOf("/");
  return i < 0 ? undefined : path.slice(0, i);
};

/**
 * Normalises, refuses duplicates, and puts parents first: entries keep the
 * order given, except that a directory not yet written (listed later, or
 * missing and added with mode 0755) moves to just before its first
 * descendant. An order that already has parents first is kept as is, so
 * `makeReproducible`'s sorted order passes through unchanged.
 */
function plan(entries: readonly CpioEntry[], mtime: number): CpioEntry[] {
  const byPath = new Map<string, CpioEntry>();
  for (const e of entries) {
    const path = normaliseCpioPath(e.path);
    if (byPath.has(path)) throw new InvalidError(`cpio: duplicate path: ${path}`);
    byPath.set(path, path === e.path ? e : { ...e, path });
  }
  const out: CpioEntry[] = [];
  const done = new Set<string>();
  const emit = (e: CpioEntry): void => {
    const parent = parentOf(e.path);
    if (parent !== undefined) {
      const have = byPath.get(parent);
      if (have !== undefined && have.type !== "dir") {
        throw new InvalidError(`cpio: parent of ${e.path} is a ${have.type}, not a directory: ${parent}`);
      }
      if (!done.has(parent)) emit(have ?? { type: "dir", path: parent, mode: 0o755, mtime, uid: 0, gid: 0 });
    }
    done.add(e.path);
    out.push(e);
  };
  for (const e of byPath.values()) if (!done.has(e.path)) emit(e);
  return out;
}

/** Follows hard links to the file they name; refuses cycles and non-files. */
function resolveLinks(ordered: readonly CpioEntry[]): Map<string, FileEntry> {
  const byPath = new Map(ordered.map((e) => [e.path, e]));
  const root = new Map<string, FileEntry>();
  for (const e of ordered) {
    if (e.type !== "hardlink" && e.type !== "file") continue;
    let cur: CpioEntry = e;
    const seen = new Set<string>();
    while (cur.type === "hardlink") {
      if (seen.has(cur.path)) throw new InvalidError(`cpio: hard link cycle through ${e.path}`);
      seen.add(cur.path);
      const target = normaliseCpioPath(cur.target);
      const next = byPath.get(target);
      if (next === undefined) throw new NotFoundError(`cpio: hard link ${cur.path} names a missing file: ${target}`);
      cur = next;
    }
    if (cur.type !== "file") throw new InvalidError(`cpio: hard link ${e.path} must name a regular file, not a ${cur.type}: ${cur.path}`);
    root.set(e.path, cur);
  }
  return root;
}

/** Turns ordered, resolved entries into header records (data not yet attached to groups). */
function toRecords(ordered: readonly CpioEntry[], mtime: number): CpioRecord[] {
  const fileOf = resolveLinks(ordered);
  const groups = new Map<FileEntry, number[]>(); // file -> indexes of its names, in archive order
  const subdirs = new Map<string, number>();
  for (const e of ordered) {
    const p = parentOf(e.path);
    if (e.type === "dir" && p !== undefined) subdirs.set(p, (subdirs.get(p) ?? 0) + 1);
  }
  const records: CpioRecord[] = [];
  const inoOf = new Map<FileEntry, number>();
  let nextIno = 0;
  ordered.forEach((e, index) => {
    const file = fileOf.get(e.path);
    const meta = file ?? e;
    let ino: number;
    if (file !== undefined) {
      ino = inoOf.get(file) ?? nextIno++;
      inoOf.set(file, ino);
      const names = groups.get(file) ?? [];
      names.push(index);
      groups.set(file, names);
    } else {
      ino = nextIno++;
    }
    const kind = meta.type === "hardlink" ? "file" : meta.type;
    const rec: CpioRecord = {
      ino,
      mode: TYPE_BITS[kind] | perm(meta),
      uid: meta.uid ?? 0,
      gid: meta.gid ?? 0,
      nlink: e.type === "dir" ? 2 + (subdirs.get(e.path) ?? 0) : 1,
      mtime: meta.mtime ?? mtime,
      devMajor: 0,
      devMinor: 0,
      rdevMajor: 0,
      rdevMinor: 0,
      name: e.path,
      data: EMPTY,
    };
    if (e.type === "char" || e.type === "block") {
      rec.rdevMajor = e.major;
      rec.rdevMinor = e.minor;
    } else if (e.type === "symlink") {
      if (e.target === "" || e.target.includes("\0")) {
        throw new InvalidError(`cpio: symlink ${e.path} needs a non-empty target without NUL bytes`);
      }
      rec.data = utf8.encode(e.target);
    }
    records.push(rec);
  });
  for (const [file, names] of groups) {
    const data = typeof file.data === "function" ? file.data() : file.data;
    if (!(data instanceof Uint8Array)) throw new InvalidError(`cpio: data of ${file.path} is not a Uint8Array`);
    for (const i of names) records[i]!.nlink = names.length;
    records[names[names.length - 1]!]!.data = data;
  }
  return records;
}

/**
 * Writes entries as one newc ("070701") archive, trailer included, ready for
 * the kernel as an initramfs (compress it with {@link compress}).
 *
 * Applies {@link makeReproducible} first unless `{ reproducible: false }`;
 * then normalises paths, refuses duplicates (InvalidError naming the path),
 * adds missing parent directories (0o755), puts parents before children,
 * numbers inodes from 0 in archive order, and gives each hard-link group one
 * inode with its data on the last name. File data thunks are called once;
 * each file's bytes are copied once, into the result.
 *
 * @example
 * ```ts
 * const cpio = writeCpio([
 *   { type: "char", path: "/dev/console", major: 5, minor: 1 },
 *   { type: "file", path: "/init", data: initScript, mode: 0o755 },
 * ]);
 * writeFileSync("initrd.gz", compress(cpio, "gzip"));
 * ```
 */
export function writeCpio(entries: readonly CpioEntry[], options: WriteCpioOptions = {}): Buffer {
  const mtime = options.mtime ?? sourceDateEpoch();
  const reproducible = options.reproducible ?? true;
  const input = reproducible ? makeReproducible(entries, { mtime }) : entries;
  return encodeNewc(toRecords(plan(input, mtime), mtime));
}

function entryOf(rec: CpioRecord): CpioEntry<Uint8Array> {
  const base = { path: rec.name, mtime: rec.mtime, uid: rec.uid, gid: rec.gid };
  const mode = rec.mode & 0o7777;
  switch (rec.mode & S_IFMT) {
    case S_IFREG:
      return { type: "file", ...base, mode, data: rec.data };
    case S_IFDIR:
      return { type: "dir", ...base, mode };
    case S_IFLNK:
      if (rec.data.length === 0) throw new InvalidError(`cpio: symlink ${JSON.stringify(rec.name)} has an empty target`);
      return { type: "symlink", ...base, target: new TextDecoder().decode(rec.data) };
    case S_IFCHR:
      return { type: "char", ...base, mode, major: rec.rdevMajor, minor: rec.rdevMinor };
    case S_IFBLK:
      return { type: "block", ...base, mode, major: rec.rdevMajor, minor: rec.rdevMinor };
    default:
      throw new InvalidError(`cpio: ${JSON.stringify(rec.name)} has an unsupported file type: mode 0o${rec.mode.toString(8)}`);
  }
}

/**
 * Reads a newc archive back into entries, in archive order. Regular files
 * with `nlink > 1` sharing (device, inode) become one `file` (the first
 * name) and `hardlink`s to it; the file's data is the last non-empty data
 * of the group, as the kernel would leave it. File data are views into
 * `buf`, not copies. Malformed input (bad magic, truncated header, name or
 * data overrun, missing trailer, unsupported type) throws an InvalidError.
 *
 * @example
 * ```ts
 * const entries = readCpio(writeCpio([{ type: "symlink", path: "bin/sh", target: "busybox" }]));
 * // [{ type: "dir", path: "bin", … }, { type: "symlink", path: "bin/sh", target: "busybox", … }]
 * ```
 */
export function readCpio(buf: Uint8Array): CpioEntry<Uint8Array>[] {
  const out: CpioEntry<Uint8Array>[] = [];
  const firstOfGroup = new Map<string, FileEntry<Uint8Array>>();
  for (const rec of decodeNewc(buf)) {
    const entry = entryOf(rec);
    if (entry.type === "file" && rec.nlink > 1) {
      const key = `${rec.devMajor}:${rec.devMinor}:${rec.ino}`;
      const first = firstOfGroup.get(key);
      if (first !== undefined) {
        if (rec.data.length > 0) first.data = rec.data;
        out.push({ type: "hardlink", path: rec.name, target: first.path, mtime: rec.mtime, uid: rec.uid, gid: rec.gid });
        continue;
      }
      firstOfGroup.set(key, entry);
    }
    out.push(entry);
  }
  return out;
}
