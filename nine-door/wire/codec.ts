/**
 * The 9P2000 / 9P2000.L codec: one table maps every message name to its
 * type number and its wire layout (intro(5), stat(5), diod protocol.md).
 * Frames are `size[4] type[1] tag[2] body`; `encodeMessage` builds one and
 * `decodeMessage` reads one without throwing.
 *
 * @example
 * ```ts
 * const frame = encodeMessage({ type: "Tclunk", tag: 3, fid: 7 });
 * const r = decodeMessage(frame);
 * if (r.ok) console.log(r.message); // { type: "Tclunk", tag: 3, fid: 7 }
 * ```
 * @module
 */
import { InvalidError, type NineError } from "../errors.ts";
import { WireReader, WireWriter, stringSize } from "./buffer.ts";
import {
  MAXWELEM,
  type Attr,
  type Dirent,
  type Message,
  type MessageName,
  type MessageOf,
  type Qid,
  type SetAttr,
  type Stat,
} from "./types.ts";

/** Bytes of size[4] type[1] tag[2]. */
export const HEADER_SIZE = 7;
const QID_SIZE = 13;
// Fixed part of a stat: size[2] type[2] dev[4] qid[13] mode[4] atime[4]
// mtime[4] length[8] and the four string length prefixes.
const STAT_FIXED = 2 + 2 + 4 + QID_SIZE + 4 + 4 + 4 + 8 + 4 * 2;
// qid[13] offset[8] type[1] name-length[2].
const DIRENT_FIXED = QID_SIZE + 8 + 1 + 2;
const GETATTR_SIZE = 8 + QID_SIZE + 4 * 3 + 8 * 15;
const SETATTR_SIZE = 4 * 4 + 8 * 5;

/** Encoder and decoder of one message type; `size` counts the body only. */
interface Codec<N extends MessageName> {
  readonly id: number;
  size(m: MessageOf<N>): number;
  encode(w: WireWriter, m: MessageOf<N>): void;
  decode(r: WireReader, tag: number): MessageOf<N>;
}

// Method syntax keeps parameters bivariant, so every Codec<N> fits here.
interface AnyCodec {
  readonly id: number;
  size(m: Message): number;
  encode(w: WireWriter, m: Message): void;
  decode(r: WireReader, tag: number): Message;
}

// ---- shared pieces ----

function noBody<N extends MessageName>(id: number, type: N): Codec<N> {
  return {
    id,
    size: () => 0,
    encode: () => {},
    decode: (_r, tag) => ({ type, tag }) as MessageOf<N>,
  };
}

// The shared helpers below see MessageOf<N> for a generic N, which TypeScript
// cannot narrow, so they read their fields through the common shape.
function qidOnly<N extends "Rattach" | "Rsymlink" | "Rmknod" | "Rmkdir">(id: number, type: N): Codec<N> {
  return {
    id,
    size: () => QID_SIZE,
    encode: (w, m) => w.qid((m as { qid: Qid }).qid),
    decode: (r, tag) => ({ type, tag, qid: r.qid() }) as MessageOf<N>,
  };
}

function qidIounit<N extends "Ropen" | "Rcreate" | "Rlopen" | "Rlcreate">(id: number, type: N): Codec<N> {
  return {
    id,
    size: () => QID_SIZE + 4,
    encode: (w, m) => {
      const o = m as { qid: Qid; iounit: number };
      w.qid(o.qid);
      w.u32(o.iounit);
    },
    decode: (r, tag) => ({ type, tag, qid: r.qid(), iounit: r.u32() }) as MessageOf<N>,
  };
}

function fidOnly<N extends "Tclunk" | "Tremove" | "Tstat" | "Tstatfs" | "Treadlink">(
  id: number,
  type: N,
): Codec<N> {
  return {
    id,
    size: () => 4,
    encode: (w, m) => w.u32((m as { fid: number }).fid),
    decode: (r, tag) => ({ type, tag, fid: r.u32() }) as MessageOf<N>,
  };
}

/** Reads count[4] data[count] as a view, refusing a count beyond the frame. */
function readData(r: WireReader, name: string): Uint8Array {
  const count = r.u32();
  if (count > r.remaining) {
    r.fail(`${name} count ${count} exceeds the ${r.remaining} bytes left`);
    return r.bytes(0);
  }
  return r.bytes(count);
}

/** Reads the optional trailing u32 of dialect-tolerant messages. */
function optionalU32(r: WireReader): number | undefined {
  return r.remaining === 4 ? r.u32() : undefined;
}

// ---- stat(5) ----

/**
 * Bytes a stat record takes, including its leading size[2].
 *
 * @example
 * ```ts
 * const frame = Buffer.alloc(statSize(stat)); // room for packStat(stat)
 * ```
 */
export function statSize(stat: Stat): number {
  return (
    STAT_FIXED - 8 + stringSize(stat.name) + stringSize(stat.uid) + stringSize(stat.gid) + stringSize(stat.muid)
  );
}

function writeStat(w: WireWriter, st: Stat, size: number): void {
  w.u16(size - 2);
  w.u16(st.type);
  w.u32(st.dev);
  w.qid(st.qid);
  w.u32(st.mode);
  w.u32(st.atime);
  w.u32(st.mtime);
  w.u64(st.length);
  w.string(st.name);
  w.string(st.uid);
  w.string(st.gid);
  w.string(st.muid);
}

function readStat(r: WireReader): Stat {
  const size = r.u16();
  const start = r.offset;
  const stat: Stat = {
    type: r.u16(),
    dev: r.u32(),
    qid: r.qid(),
    mode: r.u32(),
    atime: r.u32(),
    mtime: r.u32(),
    length: r.u64(),
    name: r.string(),
    uid: r.string(),
    gid: r.string(),
    muid: r.string(),
  };
  const used = r.offset - start;
  if (!r.overrun && used !== size) r.fail(`stat says ${size} bytes but its fields take ${used}`);
  return stat;
}

/**
 * Packs one stat record (stat(5)), leading size[2] included, as a directory
 * read returns it in 9P2000.
 *
 * @example
 * ```ts
 * const entries = Buffer.concat(stats.map(packStat));
 * ```
 */
export function packStat(stat: Stat): Buffer {
  const size = statSize(stat);
  const w = new WireWriter(size);
  writeStat(w, stat, size);
  return w.finish();
}

/**
 * Unpacks the stat records of a 9P2000 directory read. Throws InvalidError
 * when a record is truncated or malformed.
 *
 * @example
 * ```ts
 * for (const st of unpackStats(rread.data)) console.log(st.name);
 * ```
 */
export function unpackStats(data: Uint8Array): Stat[] {
  const r = new WireReader(data);
  const out: Stat[] = [];
  while (r.remaining > 0) {
    const stat = readStat(r);
    if (r.problem !== undefined) throw new InvalidError(`stat record ${out.length}: ${r.problem}`);
    out.push(stat);
  }
  return out;
}

// Rstat and Twstat carry n[2] before the stat, which starts with its own size[2].
function readStatField(r: WireReader): Stat {
  const n = r.u16();
  const start = r.offset;
  const stat = readStat(r);
  const used = r.offset - start;
  if (!r.overrun && used !== n) r.fail(`stat field says ${n} bytes but the stat takes ${used}`);
  return stat;
}

// ---- .L dirents ----

/**
 * Bytes one Rreaddir entry with this name takes.
 *
 * @example
 * ```ts
 * direntSize("telemetry"); // 24 + 9
 * ```
 */
export function direntSize(name: string): number {
  return DIRENT_FIXED - 2 + stringSize(name);
}

/**
 * Packs as many whole dirents as fit in `maxBytes` (qid[13] offset[8]
 * type[1] name[s] each). `count` says how many entries went in.
 *
 * @example
 * ```ts
 * const { data, count } = packDirents(entries, treaddir.count);
 * reply({ type: "Rreaddir", tag, data });
 * ```
 */
export function packDirents(entries: readonly Dirent[], maxBytes: number): { data: Buffer; count: number } {
  let total = 0;
  let count = 0;
  for (; count < entries.length; count++) {
    const size = direntSize(entries[count]!.name);
    if (total + size > maxBytes) break;
    total += size;
  }
  const w = new WireWriter(total);
  for (let i = 0; i < count; i++) {
    const e = entries[i]!;
    w.qid(e.qid);
    w.u64(e.offset);
    w.u8(e.type);
    w.string(e.name);
  }
  return { data: w.finish(), count };
}

/**
 * Reads the dirents of an Rreaddir payload. Throws InvalidError when an
 * entry is truncated or malformed.
 *
 * @example
 * ```ts
 * const names = decodeDirents(rreaddir.data).map((d) => d.name);
 * ```
 */
export function decodeDirents(data: Uint8Array): Dirent[] {
  const r = new WireReader(data);
  const out: Dirent[] = [];
  while (r.remaining > 0) {
    const d: Dirent = { qid: r.qid(), offset: r.u64(), type: r.u8(), name: r.string() };
    if (r.problem !== undefined) throw new InvalidError(`dirent ${out.length}: ${r.problem}`);
    out.push(d);
  }
  return out;
}

// ---- .L attributes ----

function writeAttr(w: WireWriter, a: Attr): void {
  w.u64(a.valid);
  w.qid(a.qid);
  w.u32(a.mode);
  w.u32(a.uid);
  w.u32(a.gid);
  w.u64(a.nlink);
  w.u64(a.rdev);
  w.u64(a.size);
  w.u64(a.blksize);
  w.u64(a.blocks);
  w.u64(a.atimeSec);
  w.u64(a.atimeNsec);
  w.u64(a.mtimeSec);
  w.u64(a.mtimeNsec);
  w.u64(a.ctimeSec);
  w.u64(a.ctimeNsec);
  w.u64(a.btimeSec);
  w.u64(a.btimeNsec);
  w.u64(a.gen);
  w.u64(a.dataVersion);
}

function readAttr(r: WireReader): Attr {
  return {
    valid: r.u64(),
    qid: r.qid(),
    mode: r.u32(),
    uid: r.u32(),
    gid: r.u32(),
    nlink: r.u64(),
    rdev: r.u64(),
    size: r.u64(),
    blksize: r.u64(),
    blocks: r.u64(),
    atimeSec: r.u64(),
    atimeNsec: r.u64(),
    mtimeSec: r.u64(),
    mtimeNsec: r.u64(),
    ctimeSec: r.u64(),
    ctimeNsec: r.u64(),
    btimeSec: r.u64(),
    btimeNsec: r.u64(),
    gen: r.u64(),
    dataVersion: r.u64(),
  };
}

function writeSetAttr(w: WireWriter, a: SetAttr): void {
  w.u32(a.valid);
  w.u32(a.mode);
  w.u32(a.uid);
  w.u32(a.gid);
  w.u64(a.size);
  w.u64(a.atimeSec);
  w.u64(a.atimeNsec);
  w.u64(a.mtimeSec);
  w.u64(a.mtimeNsec);
}

function readSetAttr(r: WireReader): SetAttr {
  return {
    valid: r.u32(),
    mode: r.u32(),
    uid: r.u32(),
    gid: r.u32(),
    size: r.u64(),
    atimeSec: r.u64(),
    atimeNsec: r.u64(),
    mtimeSec: r.u64(),
    mtimeNsec: r.u64(),
  };
}

// ---- the table ----

const codecs: { readonly [N in MessageName]: Codec<N> } = {
  // -- 9P2000 --
  Tversion: {
    id: 100,
    size: (m) => 4 + stringSize(m.version),
    encode: (w, m) => {
      w.u32(m.msize);
      w.string(m.version);
    },
    decode: (r, tag) => ({ type: "Tversion", tag, msize: r.u32(), version: r.string() }),
  },
  Rversion: {
    id: 101,
    size: (m) => 4 + stringSize(m.version),
    encode: (w, m) => {
      w.u32(m.msize);
      w.string(m.version);
    },
    decode: (r, tag) => ({ type: "Rversion", tag, msize: r.u32(), version: r.string() }),
  },
  Tauth: {
    id: 102,
    size: (m) => 4 + stringSize(m.uname) + stringSize(m.aname) + (m.nUname === undefined ? 0 : 4),
    encode: (w, m) => {
      w.u32(m.afid);
      w.string(m.uname);
      w.string(m.aname);
      if (m.nUname !== undefined) w.u32(m.nUname);
    },
    decode: (r, tag) => {
      const afid = r.u32();
      const uname = r.string();
      const aname = r.string();
      const nUname = optionalU32(r);
      return nUname === undefined
        ? { type: "Tauth", tag, afid, uname, aname }
        : { type: "Tauth", tag, afid, uname, aname, nUname };
    },
  },
  Rauth: {
    id: 103,
    size: () => QID_SIZE,
    encode: (w, m) => w.qid(m.aqid),
    decode: (r, tag) => ({ type: "Rauth", tag, aqid: r.qid() }),
  },
  Tattach: {
    id: 104,
    size: (m) => 8 + stringSize(m.uname) + stringSize(m.aname) + (m.nUname === undefined ? 0 : 4),
    encode: (w, m) => {
      w.u32(m.fid);
      w.u32(m.afid);
      w.string(m.uname);
      w.string(m.aname);
      if (m.nUname !== undefined) w.u32(m.nUname);
    },
    decode: (r, tag) => {
      const fid = r.u32();
      const afid = r.u32();
      const uname = r.string();
      const aname = r.string();
      const nUname = optionalU32(r);
      return nUname === undefined
        ? { type: "Tattach", tag, fid, afid, uname, aname }
        : { type: "Tattach", tag, fid, afid, uname, aname, nUname };
    },
  },
  Rattach: qidOnly(105, "Rattach"),
  Rerror: {
    id: 107,
    size: (m) => stringSize(m.ename),
    encode: (w, m) => w.string(m.ename),
    decode: (r, tag) => ({ type: "Rerror", tag, ename: r.string() }),
  },
  Tflush: {
    id: 108,
    size: () => 2,
    encode: (w, m) => w.u16(m.oldtag),
    decode: (r, tag) => ({ type: "Tflush", tag, oldtag: r.u16() }),
  },
  Rflush: noBody(109, "Rflush"),
  Twalk: {
    id: 110,
    size: (m) => {
      if (m.names.length > MAXWELEM) {
        throw new InvalidError(`walk of ${m.names.length} names exceeds ${MAXWELEM}`);
      }
      let n = 10;
      for (const name of m.names) n += stringSize(name);
      return n;
    },
    encode: (w, m) => {
      w.u32(m.fid);
      w.u32(m.newfid);
      w.u16(m.names.length);
      for (const name of m.names) w.string(name);
    },
    decode: (r, tag) => {
      const fid = r.u32();
      const newfid = r.u32();
      const n = r.u16();
      const names: string[] = [];
      if (n > MAXWELEM) r.fail(`walk of ${n} names exceeds ${MAXWELEM}`);
      else for (let i = 0; i < n; i++) names.push(r.string());
      return { type: "Twalk", tag, fid, newfid, names };
    },
  },
  Rwalk: {
    id: 111,
    size: (m) => {
      if (m.qids.length > MAXWELEM) {
        throw new InvalidError(`walk of ${m.qids.length} qids exceeds ${MAXWELEM}`);
      }
      return 2 + QID_SIZE * m.qids.length;
    },
    encode: (w, m) => {
      w.u16(m.qids.length);
      for (const q of m.qids) w.qid(q);
    },
    decode: (r, tag) => {
      const n = r.u16();
      const qids = [];
      if (n > MAXWELEM) r.fail(`walk of ${n} qids exceeds ${MAXWELEM}`);
      else for (let i = 0; i < n; i++) qids.push(r.qid());
      return { type: "Rwalk", tag, qids };
    },
  },
  Topen: {
    id: 112,
    size: () => 5,
    encode: (w, m) => {
      w.u32(m.fid);
      w.u8(m.mode);
    },
    decode: (r, tag) => ({ type: "Topen", tag, fid: r.u32(), mode: r.u8() }),
  },
  Ropen: qidIounit(113, "Ropen"),
  Tcreate: {
    id: 114,
    size: (m) => 4 + stringSize(m.name) + 5,
    encode: (w, m) => {
      w.u32(m.fid);
      w.string(m.name);
      w.u32(m.perm);
      w.u8(m.mode);
    },
    decode: (r, tag) => ({ type: "Tcreate", tag, fid: r.u32(), name: r.string(), perm: r.u32(), mode: r.u8() }),
  },
  Rcreate: qidIounit(115, "Rcreate"),
  Tread: {
    id: 116,
    size: () => 16,
    encode: (w, m) => {
      w.u32(m.fid);
      w.u64(m.offset);
      w.u32(m.count);
    },
    decode: (r, tag) => ({ type: "Tread", tag, fid: r.u32(), offset: r.u64(), count: r.u32() }),
  },
  Rread: {
    id: 117,
    size: (m) => 4 + m.data.length,
    encode: (w, m) => {
      w.u32(m.data.length);
      w.bytes(m.data);
    },
    decode: (r, tag) => ({ type: "Rread", tag, data: readData(r, "Rread") }),
  },
  Twrite: {
    id: 118,
    size: (m) => 16 + m.data.length,
    encode: (w, m) => {
      w.u32(m.fid);
      w.u64(m.offset);
      w.u32(m.data.length);
      w.bytes(m.data);
    },
    decode: (r, tag) => {
      const fid = r.u32();
      const offset = r.u64();
      return { type: "Twrite", tag, fid, offset, data: readData(r, "Twrite") };
    },
  },
  Rwrite: {
    id: 119,
    size: () => 4,
    encode: (w, m) => w.u32(m.count),
    decode: (r, tag) => ({ type: "Rwrite", tag, count: r.u32() }),
  },
  Tclunk: fidOnly(120, "Tclunk"),
  Rclunk: noBody(121, "Rclunk"),
  Tremove: fidOnly(122, "Tremove"),
  Rremove: noBody(123, "Rremove"),
  Tstat: fidOnly(124, "Tstat"),
  Rstat: {
    id: 125,
    size: (m) => 2 + statSize(m.stat),
    encode: (w, m) => {
      const size = statSize(m.stat);
      w.u16(size);
      writeStat(w, m.stat, size);
    },
    decode: (r, tag) => ({ type: "Rstat", tag, stat: readStatField(r) }),
  },
  Twstat: {
    id: 126,
    size: (m) => 6 + statSize(m.stat),
    encode: (w, m) => {
      const size = statSize(m.stat);
      w.u32(m.fid);
      w.u16(size);
      writeStat(w, m.stat, size);
    },
    decode: (r, tag) => {
      const fid = r.u32();
      return { type: "Twstat", tag, fid, stat: readStatField(r) };
    },
  },
  Rwstat: noBody(127, "Rwstat"),

  // -- 9P2000.L --
  Rlerror: {
    id: 7,
    size: () => 4,
    encode: (w, m) => w.u32(m.ecode),
    decode: (r, tag) => ({ type: "Rlerror", tag, ecode: r.u32() }),
  },
  Tstatfs: fidOnly(8, "Tstatfs"),
  Rstatfs: {
    id: 9,
    size: () => 4 + 4 + 8 * 6 + 4,
    encode: (w, m) => {
      w.u32(m.fsType);
      w.u32(m.bsize);
      w.u64(m.blocks);
      w.u64(m.bfree);
      w.u64(m.bavail);
      w.u64(m.files);
      w.u64(m.ffree);
      w.u64(m.fsid);
      w.u32(m.namelen);
    },
    decode: (r, tag) => ({
      type: "Rstatfs",
      tag,
      fsType: r.u32(),
      bsize: r.u32(),
      blocks: r.u64(),
      bfree: r.u64(),
      bavail: r.u64(),
      files: r.u64(),
      ffree: r.u64(),
      fsid: r.u64(),
      namelen: r.u32(),
    }),
  },
  Tlopen: {
    id: 12,
    size: () => 8,
    encode: (w, m) => {
      w.u32(m.fid);
      w.u32(m.flags);
    },
    decode: (r, tag) => ({ type: "Tlopen", tag, fid: r.u32(), flags: r.u32() }),
  },
  Rlopen: qidIounit(13, "Rlopen"),
  Tlcreate: {
    id: 14,
    size: (m) => 4 + stringSize(m.name) + 12,
    encode: (w, m) => {
      w.u32(m.fid);
      w.string(m.name);
      w.u32(m.flags);
      w.u32(m.mode);
      w.u32(m.gid);
    },
    decode: (r, tag) => ({
      type: "Tlcreate",
      tag,
      fid: r.u32(),
      name: r.string(),
      flags: r.u32(),
      mode: r.u32(),
      gid: r.u32(),
    }),
  },
  Rlcreate: qidIounit(15, "Rlcreate"),
  Tsymlink: {
    id: 16,
    size: (m) => 4 + stringSize(m.name) + stringSize(m.symtgt) + 4,
    encode: (w, m) => {
      w.u32(m.fid);
      w.string(m.name);
      w.string(m.symtgt);
      w.u32(m.gid);
    },
    decode: (r, tag) => ({ type: "Tsymlink", tag, fid: r.u32(), name: r.string(), symtgt: r.string(), gid: r.u32() }),
  },
  Rsymlink: qidOnly(17, "Rsymlink"),
  Tmknod: {
    id: 18,
    size: (m) => 4 + stringSize(m.name) + 16,
    encode: (w, m) => {
      w.u32(m.dfid);
      w.string(m.name);
      w.u32(m.mode);
      w.u32(m.major);
      w.u32(m.minor);
      w.u32(m.gid);
    },
    decode: (r, tag) => ({
      type: "Tmknod",
      tag,
      dfid: r.u32(),
      name: r.string(),
      mode: r.u32(),
      major: r.u32(),
      minor: r.u32(),
      gid: r.u32(),
    }),
  },
  Rmknod: qidOnly(19, "Rmknod"),
  Trename: {
    id: 20,
    size: (m) => 8 + stringSize(m.name),
    encode: (w, m) => {
      w.u32(m.fid);
      w.u32(m.dfid);
      w.string(m.name);
    },
    decode: (r, tag) => ({ type: "Trename", tag, fid: r.u32(), dfid: r.u32(), name: r.string() }),
  },
  Rrename: noBody(21, "Rrename"),
  Treadlink: fidOnly(22, "Treadlink"),
  Rreadlink: {
    id: 23,
    size: (m) => stringSize(m.target),
    encode: (w, m) => w.string(m.target),
    decode: (r, tag) => ({ type: "Rreadlink", tag, target: r.string() }),
  },
  Tgetattr: {
    id: 24,
    size: () => 12,
    encode: (w, m) => {
      w.u32(m.fid);
      w.u64(m.requestMask);
    },
    decode: (r, tag) => ({ type: "Tgetattr", tag, fid: r.u32(), requestMask: r.u64() }),
  },
  Rgetattr: {
    id: 25,
    size: () => GETATTR_SIZE,
    encode: (w, m) => writeAttr(w, m.attr),
    decode: (r, tag) => ({ type: "Rgetattr", tag, attr: readAttr(r) }),
  },
  Tsetattr: {
    id: 26,
    size: () => 4 + SETATTR_SIZE,
    encode: (w, m) => {
      w.u32(m.fid);
      writeSetAttr(w, m.attr);
    },
    decode: (r, tag) => {
      const fid = r.u32();
      return { type: "Tsetattr", tag, fid, attr: readSetAttr(r) };
    },
  },
  Rsetattr: noBody(27, "Rsetattr"),
  Txattrwalk: {
    id: 30,
    size: (m) => 8 + stringSize(m.name),
    encode: (w, m) => {
      w.u32(m.fid);
      w.u32(m.newfid);
      w.string(m.name);
    },
    decode: (r, tag) => ({ type: "Txattrwalk", tag, fid: r.u32(), newfid: r.u32(), name: r.string() }),
  },
  Rxattrwalk: {
    id: 31,
    size: () => 8,
    encode: (w, m) => w.u64(m.size),
    decode: (r, tag) => ({ type: "Rxattrwalk", tag, size: r.u64() }),
  },
  Txattrcreate: {
    id: 32,
    size: (m) => 4 + stringSize(m.name) + 12,
    encode: (w, m) => {
      w.u32(m.fid);
      w.string(m.name);
      w.u64(m.attrSize);
      w.u32(m.flags);
    },
    decode: (r, tag) => ({
      type: "Txattrcreate",
      tag,
      fid: r.u32(),
      name: r.string(),
      attrSize: r.u64(),
      flags: r.u32(),
    }),
  },
  Rxattrcreate: noBody(33, "Rxattrcreate"),
  Treaddir: {
    id: 40,
    size: () => 16,
    encode: (w, m) => {
      w.u32(m.fid);
      w.u64(m.offset);
      w.u32(m.count);
    },
    decode: (r, tag) => ({ type: "Treaddir", tag, fid: r.u32(), offset: r.u64(), count: r.u32() }),
  },
  Rreaddir: {
    id: 41,
    size: (m) => 4 + m.data.length,
    encode: (w, m) => {
      w.u32(m.data.length);
      w.bytes(m.data);
    },
    decode: (r, tag) => ({ type: "Rreaddir", tag, data: readData(r, "Rreaddir") }),
  },
  Tfsync: {
    id: 50,
    size: (m) => (m.datasync === undefined ? 4 : 8),
    encode: (w, m) => {
      w.u32(m.fid);
      if (m.datasync !== undefined) w.u32(m.datasync);
    },
    decode: (r, tag) => {
      const fid = r.u32();
      const datasync = optionalU32(r);
      return datasync === undefined ? { type: "Tfsync", tag, fid } : { type: "Tfsync", tag, fid, datasync };
    },
  },
  Rfsync: noBody(51, "Rfsync"),
  Tlock: {
    id: 52,
    size: (m) => 4 + 1 + 4 + 8 + 8 + 4 + stringSize(m.clientId),
    encode: (w, m) => {
      w.u32(m.fid);
      w.u8(m.lockType);
      w.u32(m.flags);
      w.u64(m.start);
      w.u64(m.length);
      w.u32(m.procId);
      w.string(m.clientId);
    },
    decode: (r, tag) => ({
      type: "Tlock",
      tag,
      fid: r.u32(),
      lockType: r.u8(),
      flags: r.u32(),
      start: r.u64(),
      length: r.u64(),
      procId: r.u32(),
      clientId: r.string(),
    }),
  },
  Rlock: {
    id: 53,
    size: () => 1,
    encode: (w, m) => w.u8(m.status),
    decode: (r, tag) => ({ type: "Rlock", tag, status: r.u8() }),
  },
  Tgetlock: {
    id: 54,
    size: (m) => 4 + 1 + 8 + 8 + 4 + stringSize(m.clientId),
    encode: (w, m) => {
      w.u32(m.fid);
      w.u8(m.lockType);
      w.u64(m.start);
      w.u64(m.length);
      w.u32(m.procId);
      w.string(m.clientId);
    },
    decode: (r, tag) => ({
      type: "Tgetlock",
      tag,
      fid: r.u32(),
      lockType: r.u8(),
      start: r.u64(),
      length: r.u64(),
      procId: r.u32(),
      clientId: r.string(),
    }),
  },
  Rgetlock: {
    id: 55,
    size: (m) => 1 + 8 + 8 + 4 + stringSize(m.clientId),
    encode: (w, m) => {
      w.u8(m.lockType);
      w.u64(m.start);
      w.u64(m.length);
      w.u32(m.procId);
      w.string(m.clientId);
    },
    decode: (r, tag) => ({
      type: "Rgetlock",
      tag,
      lockType: r.u8(),
      start: r.u64(),
      length: r.u64(),
      procId: r.u32(),
      clientId: r.string(),
    }),
  },
  Tlink: {
    id: 70,
    size: (m) => 8 + stringSize(m.name),
    encode: (w, m) => {
      w.u32(m.dfid);
      w.u32(m.fid);
      w.string(m.name);
    },
    decode: (r, tag) => ({ type: "Tlink", tag, dfid: r.u32(), fid: r.u32(), name: r.string() }),
  },
  Rlink: noBody(71, "Rlink"),
  Tmkdir: {
    id: 72,
    size: (m) => 4 + stringSize(m.name) + 8,
    encode: (w, m) => {
      w.u32(m.dfid);
      w.string(m.name);
      w.u32(m.mode);
      w.u32(m.gid);
    },
    decode: (r, tag) => ({ type: "Tmkdir", tag, dfid: r.u32(), name: r.string(), mode: r.u32(), gid: r.u32() }),
  },
  Rmkdir: qidOnly(73, "Rmkdir"),
  Trenameat: {
    id: 74,
    size: (m) => 8 + stringSize(m.oldName) + stringSize(m.newName),
    encode: (w, m) => {
      w.u32(m.oldDirFid);
      w.string(m.oldName);
      w.u32(m.newDirFid);
      w.string(m.newName);
    },
    decode: (r, tag) => ({
      type: "Trenameat",
      tag,
      oldDirFid: r.u32(),
      oldName: r.string(),
      newDirFid: r.u32(),
      newName: r.string(),
    }),
  },
  Rrenameat: noBody(75, "Rrenameat"),
  Tunlinkat: {
    id: 76,
    size: (m) => 8 + stringSize(m.name),
    encode: (w, m) => {
      w.u32(m.dirfid);
      w.string(m.name);
      w.u32(m.flags);
    },
    decode: (r, tag) => ({ type: "Tunlinkat", tag, dirfid: r.u32(), name: r.string(), flags: r.u32() }),
  },
  Runlinkat: noBody(77, "Runlinkat"),
};

const byName = new Map<string, AnyCodec>();
const byId: (AnyCodec | undefined)[] = new Array<AnyCodec | undefined>(256).fill(undefined);
const nameById: (MessageName | undefined)[] = new Array<MessageName | undefined>(256).fill(undefined);
const table: Partial<Record<MessageName, { readonly id: number }>> = {};
for (const name of Object.keys(codecs) as MessageName[]) {
  const codec: AnyCodec = codecs[name];
  if (nameById[codec.id] !== undefined) {
    throw new Error(`codec table: ${name} reuses id ${codec.id} of ${nameById[codec.id]}`);
  }
  byName.set(name, codec);
  byId[codec.id] = codec;
  nameById[codec.id] = name;
  table[name] = Object.freeze({ id: codec.id });
}

/**
 * Every message name and its type number, e.g. `messageTable.Twalk.id === 110`.
 *
 * @example
 * ```ts
 * for (const [name, { id }] of Object.entries(messageTable)) console.log(name, id);
 * ```
 */
export const messageTable: { readonly [N in MessageName]: { readonly id: number } } = Object.freeze(
  table as Record<MessageName, { readonly id: number }>,
);

/**
 * The message name of a type number, or undefined if none has it.
 *
 * @example
 * ```ts
 * messageNameById(110); // "Twalk"
 * ```
 */
export function messageNameById(id: number): MessageName | undefined {
  return nameById[id];
}

function codecOf(msg: Message): AnyCodec {
  const c = byName.get(msg.type);
  if (c === undefined) throw new InvalidError(`unknown message type ${String(msg.type)}`);
  return c;
}

/**
 * Encodes a whole frame, size[4] type[1] tag[2] included, in one allocation.
 * Throws InvalidError for a walk of more than 16 names or qids and
 * TooBigError for a string over 65535 bytes.
 *
 * @example
 * ```ts
 * socket.write(encodeMessage({ type: "Rclunk", tag }));
 * ```
 */
export function encodeMessage(msg: Message): Buffer {
  const codec = codecOf(msg);
  const size = HEADER_SIZE + codec.size(msg);
  const w = new WireWriter(size);
  w.u32(size);
  w.u8(codec.id);
  w.u16(msg.tag);
  codec.encode(w, msg);
  return w.finish();
}

function asBuffer(data: Uint8Array): Buffer {
  return Buffer.isBuffer(data) ? data : Buffer.from(data.buffer, data.byteOffset, data.byteLength);
}

/**
 * The same bytes as `encodeMessage`, but Rread, Twrite and Rreaddir come back
 * as `[header, payload]` where payload shares memory with `msg.data`, so a
 * transport can write both (writev / cork) without copying the data. Every
 * other message comes back as one chunk.
 *
 * @example
 * ```ts
 * socket.cork();
 * for (const chunk of encodeMessageChunks(reply)) socket.write(chunk);
 * socket.uncork();
 * ```
 */
export function encodeMessageChunks(msg: Message): Buffer[] {
  switch (msg.type) {
    case "Rread":
    case "Rreaddir": {
      const n = msg.data.length;
      const w = new WireWriter(HEADER_SIZE + 4);
      w.u32(HEADER_SIZE + 4 + n);
      w.u8(msg.type === "Rread" ? 117 : 41);
      w.u16(msg.tag);
      w.u32(n);
      return [w.finish(), asBuffer(msg.data)];
    }
    case "Twrite": {
      const n = msg.data.length;
      const w = new WireWriter(HEADER_SIZE + 16);
      w.u32(HEADER_SIZE + 16 + n);
      w.u8(118);
      w.u16(msg.tag);
      w.u32(msg.fid);
      w.u64(msg.offset);
      w.u32(n);
      return [w.finish(), asBuffer(msg.data)];
    }
    default:
      return [encodeMessage(msg)];
  }
}

/** What `decodeMessage` returns: the message, or why the frame was refused. */
export type DecodeResult =
  | { ok: true; message: Message }
  | { ok: false; tag: number | undefined; typeId: number | undefined; error: NineError };

function refuse(tag: number | undefined, typeId: number | undefined, detail: string): DecodeResult {
  return { ok: false, tag, typeId, error: new InvalidError(detail) };
}

/**
 * Decodes one whole frame (size[4] included) without throwing. Data fields
 * (Twrite, Rread, Rreaddir) are views into `frame`. On refusal, `tag` and
 * `typeId` are set when they could be read, so the server can answer the
 * right request.
 *
 * @example
 * ```ts
 * const r = decodeMessage(frame);
 * if (!r.ok) return replyError(r.tag ?? NOTAG, r.error);
 * dispatch(r.message);
 * ```
 */
export function decodeMessage(frame: Uint8Array): DecodeResult {
  const len = frame.length;
  const typeId = len >= 5 ? frame[4] : undefined;
  const tag = len >= HEADER_SIZE ? frame[5]! | (frame[6]! << 8) : undefined;
  if (len < HEADER_SIZE) return refuse(tag, typeId, `frame of ${len} bytes is shorter than the 7-byte header`);
  const size = (frame[0]! | (frame[1]! << 8) | (frame[2]! << 16)) + frame[3]! * 0x1000000;
  if (size !== len) return refuse(tag, typeId, `size field says ${size} bytes but the frame has ${len}`);
  const codec = byId[typeId!];
  if (codec === undefined) return refuse(tag, typeId, `unknown message type ${typeId}`);
  const r = new WireReader(frame, HEADER_SIZE);
  const message = codec.decode(r, tag!);
  const problem = r.problem;
  if (problem !== undefined) return refuse(tag, typeId, `${message.type}: ${problem}`);
  if (r.remaining !== 0) return refuse(tag, typeId, `${message.type}: ${r.remaining} trailing bytes`);
  return { ok: true, message };
}
