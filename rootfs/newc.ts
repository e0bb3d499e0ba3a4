/**
 * The newc ("070701") cpio codec: header records in, bytes out, and back.
 * It knows nothing of paths, parents, hard-link groups or reproducibility;
 * `cpio.ts` turns entries into records and records into entries.
 *
 * Layout of one member: a 110-byte ASCII header (magic + 13 fields of 8 hex
 * digits), the name with its NUL, padding to 4, the data, padding to 4.
 * The archive ends with a member named `TRAILER!!!`.
 */
import { InvalidError, TooBigError } from "../nine-door/index.ts";

/** File-type bits of `c_mode` (as in `stat(2)`). */
export const S_IFMT = 0o170000;
/** Regular file. */
export const S_IFREG = 0o100000;
/** Directory. */
export const S_IFDIR = 0o040000;
/** Symbolic link. */
export const S_IFLNK = 0o120000;
/** Character device. */
export const S_IFCHR = 0o020000;
/** Block device. */
export const S_IFBLK = 0o060000;

/** The magic of newc members (no checksum). */
export const NEWC_MAGIC = "070701";
/** The name of the end-of-archive member. */
export const TRAILER_NAME = "TRAILER!!!";
/** Bytes in a newc header, before the name. */
export const NEWC_HEADER_SIZE = 110;

const FIELD_MAX = 0xffff_ffff;
const FIELD_NAMES = ["ino", "mode", "uid", "gid", "nlink", "mtime", "filesize", "devmajor", "devminor", "rdevmajor", "rdevminor", "namesize", "check"] as const;

/**
 * One newc member exactly as it sits in the archive: every header field, the
 * name, and the data. `data.length` is `c_filesize`.
 *
 * @example
 * ```ts
 * const rec: CpioRecord = {
 *   ino: 0, mode: S_IFREG | 0o644, uid: 0, gid: 0, nlink: 1, mtime: 0,
 *   devMajor: 0, devMinor: 0, rdevMajor: 0, rdevMinor: 0,
 *   name: "init", data: new TextEncoder().encode("#!/bin/sh\n"),
 * };
 * ```
 */
export interface CpioRecord {
  ino: number;
  /** File type and permission bits, as `st_mode`. */
  mode: number;
  uid: number;
  gid: number;
  nlink: number;
  /** Seconds since the epoch. */
  mtime: number;
  /** Device holding the file (`c_maj`/`c_min`); the kernel keys hard links on it. */
  devMajor: number;
  devMinor: number;
  /** Device a char/block node refers to (`c_rmaj`/`c_rmin`). */
  rdevMajor: number;
  rdevMinor: number;
  name: string;
  data: Uint8Array;
}

const pad4 = (n: number): number => (4 - (n & 3)) & 3;
const ZEROS = new Uint8Array(4);

function hex8(value: number, field: string, name: string): string {
  if (!Number.isInteger(value) || value < 0) {
    throw new InvalidError(`cpio: ${field} of ${JSON.stringify(name)} is not a non-negative integer: ${value}`);
  }
  if (value > FIELD_MAX) {
    throw new TooBigError(`cpio: ${field} of ${JSON.stringify(name)} does not fit newc's 32 bits: ${value}`);
  }
  return value.toString(16).toUpperCase().padStart(8, "0");
}

function encodeHeader(rec: CpioRecord): Buffer {
  const nameBytes = Buffer.from(rec.name, "utf8");
  if (nameBytes.includes(0)) throw new InvalidError(`cpio: name contains a NUL byte: ${JSON.stringify(rec.name)}`);
  const namesize = nameBytes.length + 1;
  const fields = [
    rec.ino, rec.mode, rec.uid, rec.gid, rec.nlink, rec.mtime, rec.data.length,
    rec.devMajor, rec.devMinor, rec.rdevMajor, rec.rdevMinor, namesize, 0,
  ];
  const head = NEWC_MAGIC + fields.map((v, i) => hex8(v, FIELD_NAMES[i]!, rec.name)).join("");
  const size = NEWC_HEADER_SIZE + namesize;
  const out = Buffer.alloc(size + pad4(size));
  out.write(head, 0, "latin1");
  nameBytes.copy(out, NEWC_HEADER_SIZE);
  return out;
}

/**
 * Serialises records into one newc archive, trailer included. Each record's
 * data is copied exactly once (into the result); headers are built as small
 * chunks and everything is joined with one `Buffer.concat`.
 *
 * @example
 * ```ts
 * const bytes = encodeNewc([{ ino: 0, mode: S_IFDIR | 0o755, uid: 0, gid: 0, nlink: 2, mtime: 0,
 *   devMajor: 0, devMinor: 0, rdevMajor: 0, rdevMinor: 0, name: "etc", data: new Uint8Array() }]);
 * ```
 */
export function encodeNewc(records: readonly CpioRecord[]): Buffer {
  const chunks: Uint8Array[] = [];
  for (const rec of records) {
    if (rec.name === TRAILER_NAME) throw new InvalidError(`cpio: ${TRAILER_NAME} is reserved for the end of the archive`);
    chunks.push(encodeHeader(rec));
    if (rec.data.length > 0) {
      chunks.push(rec.data);
      const p = pad4(rec.data.length);
      if (p > 0) chunks.push(ZEROS.subarray(0, p));
    }
  }
  chunks.push(encodeHeader({
    ino: 0, mode: 0, uid: 0, gid: 0, nlink: 1, mtime: 0,
    devMajor: 0, devMinor: 0, rdevMajor: 0, rdevMinor: 0, name: TRAILER_NAME, data: ZEROS.subarray(0, 0),
  }));
  return Buffer.concat(chunks);
}

function isHexDigit(c: number): boolean {
  return (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x46) || (c >= 0x61 && c <= 0x66);
}

function hexValue(c: number): number {
  return c <= 0x39 ? c - 0x30 : (c | 0x20) - 0x57;
}

function readField(buf: Uint8Array, memberAt: number, index: number, member: number): number {
  const at = memberAt + 6 + index * 8;
  let v = 0;
  for (let i = at; i < at + 8; i++) {
    const c = buf[i]!;
    if (!isHexDigit(c)) {
      throw new InvalidError(`cpio: member ${member} at byte ${memberAt}: ${FIELD_NAMES[index]} is not 8 hex digits`);
    }
    v = v * 16 + hexValue(c);
  }
  return v;
}

/**
 * Parses a newc archive into records, stopping at `TRAILER!!!` (anything
 * after it, such as block padding or a concatenated archive, is ignored).
 * Every length is bounds-checked; malformed input throws one InvalidError
 * naming the member and what is wrong. Data fields are views into `buf`.
 *
 * @example
 * ```ts
 * for (const rec of decodeNewc(bytes)) console.log(rec.ino, rec.name, rec.data.length);
 * ```
 */
export function decodeNewc(buf: Uint8Array): CpioRecord[] {
  const out: CpioRecord[] = [];
  const decoder = new TextDecoder("utf-8", { fatal: false });
  let off = 0;
  for (let member = 0; ; member++) {
    if (off + NEWC_HEADER_SIZE > buf.length) {
      throw new InvalidError(
        off >= buf.length
          ? `cpio: missing ${TRAILER_NAME}: the archive ends after ${member} members`
          : `cpio: member ${member} at byte ${off}: truncated header (${buf.length - off} of ${NEWC_HEADER_SIZE} bytes)`,
      );
    }
    const magic = String.fromCharCode(...buf.subarray(off, off + 6));
    if (magic !== NEWC_MAGIC) {
      throw new InvalidError(`cpio: member ${member} at byte ${off}: bad magic ${JSON.stringify(magic)} (only newc ${NEWC_MAGIC} is read)`);
    }
    const f: number[] = FIELD_NAMES.map((_, i) => readField(buf, off, i, member));
    const [ino, mode, uid, gid, nlink, mtime, filesize, devMajor, devMinor, rdevMajor, rdevMinor, namesize] = f as [
      number, number, number, number, number, number, number, number, number, number, number, number,
    ];
    const nameAt = off + NEWC_HEADER_SIZE;
    if (namesize < 1) throw new InvalidError(`cpio: member ${member} at byte ${off}: namesize is 0`);
    if (nameAt + namesize > buf.length) {
      throw new InvalidError(`cpio: member ${member} at byte ${off}: name overruns the archive (namesize ${namesize}, ${buf.length - nameAt} bytes left)`);
    }
    if (buf[nameAt + namesize - 1] !== 0) {
      throw new InvalidError(`cpio: member ${member} at byte ${off}: name is not NUL-terminated`);
    }
    const nameBytes = buf.subarray(nameAt, nameAt + namesize - 1);
    if (nameBytes.includes(0)) throw new InvalidError(`cpio: member ${member} at byte ${off}: name contains a NUL byte`);
    const name = decoder.decode(nameBytes);
    const headEnd = nameAt + namesize;
    const dataAt = headEnd + pad4(headEnd);
    if (name === TRAILER_NAME) return out;
    if (dataAt + filesize > buf.length) {
      throw new InvalidError(`cpio: member ${member} (${JSON.stringify(name)}): data overruns the archive (filesize ${filesize}, ${Math.max(0, buf.length - dataAt)} bytes left)`);
    }
    out.push({
      ino, mode, uid, gid, nlink, mtime, devMajor, devMinor, rdevMajor, rdevMinor, name,
      data: buf.subarray(dataAt, dataAt + filesize),
    });
    off = dataAt + filesize + pad4(dataAt + filesize);
  }
}
