// One valid sample of every message, shared by the round-trip and fuzz suites.
// The mapped type makes a message added to types.ts without a sample a
// type error, and `allNames` is the hand-written list the table is checked
// against.
import type { MessageName, MessageOf, Qid, Stat } from "../../../nine-door/wire/index.ts";

/** Every message name in types.ts, written out by hand. */
export const allNames = [
  "Tversion", "Rversion", "Tauth", "Rauth", "Tattach", "Rattach", "Rerror", "Tflush", "Rflush",
  "Twalk", "Rwalk", "Topen", "Ropen", "Tcreate", "Rcreate", "Tread", "Rread", "Twrite", "Rwrite",
  "Tclunk", "Rclunk", "Tremove", "Rremove", "Tstat", "Rstat", "Twstat", "Rwstat",
  "Rlerror", "Tstatfs", "Rstatfs", "Tlopen", "Rlopen", "Tlcreate", "Rlcreate", "Tsymlink", "Rsymlink",
  "Tmknod", "Rmknod", "Trename", "Rrename", "Treadlink", "Rreadlink", "Tgetattr", "Rgetattr",
  "Tsetattr", "Rsetattr", "Txattrwalk", "Rxattrwalk", "Txattrcreate", "Rxattrcreate",
  "Treaddir", "Rreaddir", "Tfsync", "Rfsync", "Tlock", "Rlock", "Tgetlock", "Rgetlock",
  "Tlink", "Rlink", "Tmkdir", "Rmkdir", "Trenameat", "Rrenameat", "Tunlinkat", "Runlinkat",
] as const satisfies readonly MessageName[];

// Compile-time check that the hand list misses no name of the union.
type Missing = Exclude<MessageName, (typeof allNames)[number]>;
const noneMissing: [Missing] extends [never] ? true : Missing = true;
void noneMissing;

export const qid: Qid = { type: 0x80, version: 7, path: 0x0123456789abcdefn };
const fileQid: Qid = { type: 0, version: 0xffffffff, path: 42n };

export const stat: Stat = {
  type: 0,
  dev: 0,
  qid: fileQid,
  mode: 0o644,
  atime: 1_700_000_000,
  mtime: 1_700_000_001,
  length: 2 ** 40 + 5,
  name: "telemetry",
  uid: "queen",
  gid: "cohesix",
  muid: "worker-1",
};

export const samples: { [N in MessageName]: MessageOf<N> } = {
  Tversion: { type: "Tversion", tag: 0xffff, msize: 1 << 20, version: "9P2000.L" },
  Rversion: { type: "Rversion", tag: 0xffff, msize: 8192, version: "9P2000" },
  Tauth: { type: "Tauth", tag: 1, afid: 5, uname: "queen", aname: "ticket", nUname: 1000 },
  Rauth: { type: "Rauth", tag: 1, aqid: { type: 0x08, version: 0, path: 1n } },
  Tattach: { type: "Tattach", tag: 2, fid: 0, afid: 0xffffffff, uname: "queen", aname: "tkt.abc" },
  Rattach: { type: "Rattach", tag: 2, qid },
  Rerror: { type: "Rerror", tag: 9, ename: "not found: /worker/worker-9 ✗" },
  Tflush: { type: "Tflush", tag: 10, oldtag: 9 },
  Rflush: { type: "Rflush", tag: 10 },
  Twalk: { type: "Twalk", tag: 3, fid: 0, newfid: 1, names: ["worker", "worker-1", "telemetry"] },
  Rwalk: { type: "Rwalk", tag: 3, qids: [qid, fileQid] },
  Topen: { type: "Topen", tag: 4, fid: 1, mode: 0x10 },
  Ropen: { type: "Ropen", tag: 4, qid, iounit: 8168 },
  Tcreate: { type: "Tcreate", tag: 5, fid: 1, name: "new", perm: 0x80000000 + 0o755, mode: 2 },
  Rcreate: { type: "Rcreate", tag: 5, qid, iounit: 0 },
  Tread: { type: "Tread", tag: 6, fid: 1, offset: 2 ** 33 + 1, count: 8168 },
  Rread: { type: "Rread", tag: 6, data: Buffer.from("hello, 9P") },
  Twrite: { type: "Twrite", tag: 7, fid: 1, offset: 12, data: Buffer.from('{"tick":1}\n') },
  Rwrite: { type: "Rwrite", tag: 7, count: 11 },
  Tclunk: { type: "Tclunk", tag: 8, fid: 1 },
  Rclunk: { type: "Rclunk", tag: 8 },
  Tremove: { type: "Tremove", tag: 8, fid: 2 },
  Rremove: { type: "Rremove", tag: 8 },
  Tstat: { type: "Tstat", tag: 11, fid: 1 },
  Rstat: { type: "Rstat", tag: 11, stat },
  Twstat: { type: "Twstat", tag: 12, fid: 1, stat: { ...stat, name: "renamed" } },
  Rwstat: { type: "Rwstat", tag: 12 },
  Rlerror: { type: "Rlerror", tag: 13, ecode: 2 },
  Tstatfs: { type: "Tstatfs", tag: 14, fid: 0 },
  Rstatfs: {
    type: "Rstatfs", tag: 14, fsType: 0x01021997, bsize: 4096, blocks: 1000, bfree: 10, bavail: 9,
    files: 100, ffree: 50, fsid: 2 ** 40, namelen: 255,
  },
  Tlopen: { type: "Tlopen", tag: 15, fid: 1, flags: 0o2 },
  Rlopen: { type: "Rlopen", tag: 15, qid, iounit: 0 },
  Tlcreate: { type: "Tlcreate", tag: 16, fid: 1, name: "f", flags: 0o102, mode: 0o644, gid: 1000 },
  Rlcreate: { type: "Rlcreate", tag: 16, qid: fileQid, iounit: 4096 },
  Tsymlink: { type: "Tsymlink", tag: 17, fid: 1, name: "ln", symtgt: "/proc/boot", gid: 0 },
  Rsymlink: { type: "Rsymlink", tag: 17, qid },
  Tmknod: { type: "Tmknod", tag: 18, dfid: 1, name: "null", mode: 0o20666, major: 1, minor: 3, gid: 0 },
  Rmknod: { type: "Rmknod", tag: 18, qid },
  Trename: { type: "Trename", tag: 19, fid: 2, dfid: 1, name: "b" },
  Rrename: { type: "Rrename", tag: 19 },
  Treadlink: { type: "Treadlink", tag: 20, fid: 2 },
  Rreadlink: { type: "Rreadlink", tag: 20, target: "../x" },
  Tgetattr: { type: "Tgetattr", tag: 21, fid: 1, requestMask: 0x3fff },
  Rgetattr: {
    type: "Rgetattr",
    tag: 21,
    attr: {
      valid: 0x7ff, qid, mode: 0o40755, uid: 0, gid: 0, nlink: 2, rdev: 0, size: 4096, blksize: 4096,
      blocks: 8, atimeSec: 1_700_000_000, atimeNsec: 1, mtimeSec: 1_700_000_002, mtimeNsec: 999_999_999,
      ctimeSec: 3, ctimeNsec: 4, btimeSec: 0, btimeNsec: 0, gen: 0, dataVersion: 17,
    },
  },
  Tsetattr: {
    type: "Tsetattr",
    tag: 22,
    fid: 1,
    attr: {
      valid: 0x8, mode: 0, uid: 0, gid: 0, size: 0, atimeSec: 1, atimeNsec: 2, mtimeSec: 3, mtimeNsec: 4,
    },
  },
  Rsetattr: { type: "Rsetattr", tag: 22 },
  Txattrwalk: { type: "Txattrwalk", tag: 23, fid: 1, newfid: 2, name: "user.x" },
  Rxattrwalk: { type: "Rxattrwalk", tag: 23, size: 0 },
  Txattrcreate: { type: "Txattrcreate", tag: 24, fid: 2, name: "user.x", attrSize: 10, flags: 0 },
  Rxattrcreate: { type: "Rxattrcreate", tag: 24 },
  Treaddir: { type: "Treaddir", tag: 25, fid: 1, offset: 0, count: 8168 },
  Rreaddir: { type: "Rreaddir", tag: 25, data: Buffer.from([1, 2, 3]) },
  Tfsync: { type: "Tfsync", tag: 26, fid: 1, datasync: 1 },
  Rfsync: { type: "Rfsync", tag: 26 },
  Tlock: {
    type: "Tlock", tag: 27, fid: 1, lockType: 1, flags: 1, start: 0, length: 0, procId: 4242, clientId: "host",
  },
  Rlock: { type: "Rlock", tag: 27, status: 0 },
  Tgetlock: { type: "Tgetlock", tag: 28, fid: 1, lockType: 0, start: 10, length: 20, procId: 1, clientId: "h" },
  Rgetlock: { type: "Rgetlock", tag: 28, lockType: 2, start: 10, length: 20, procId: 1, clientId: "h" },
  Tlink: { type: "Tlink", tag: 29, dfid: 1, fid: 2, name: "hard" },
  Rlink: { type: "Rlink", tag: 29 },
  Tmkdir: { type: "Tmkdir", tag: 30, dfid: 1, name: "d", mode: 0o755, gid: 0 },
  Rmkdir: { type: "Rmkdir", tag: 30, qid },
  Trenameat: { type: "Trenameat", tag: 31, oldDirFid: 1, oldName: "a", newDirFid: 2, newName: "b" },
  Rrenameat: { type: "Rrenameat", tag: 31 },
  Tunlinkat: { type: "Tunlinkat", tag: 32, dirfid: 1, name: "a", flags: 0x200 },
  Runlinkat: { type: "Runlinkat", tag: 32 },
};

/** Rewrites size[4] to the buffer's real length (for hand-built frames). */
export function withSize(bytes: Uint8Array): Buffer {
  const b = Buffer.from(bytes);
  b.writeUInt32LE(b.length, 0);
  return b;
}

/** A tiny seeded PRNG (mulberry32), so fuzz failures reproduce. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
