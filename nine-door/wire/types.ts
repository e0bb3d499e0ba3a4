/**
 * 9P2000 and 9P2000.L message types. Every message is a member of one
 * discriminated union, tagged by `type` (the message name); `codec.ts` holds
 * the one table that maps names to type numbers and wire layouts.
 *
 * Integers wider than 32 bits are `number` (offsets, sizes, times; values
 * above 2^53 lose precision, which only affects offsets past any real file)
 * except `Qid.path`, which is an opaque identity and stays a `bigint`.
 * Payloads (`data`) are views into the frame buffer: never copied on decode.
 * @module
 */

/** Qid type bits (intro(5)). */
export const QidType = {
  DIR: 0x80,
  APPEND: 0x40,
  EXCL: 0x20,
  AUTH: 0x08,
  TMP: 0x04,
  SYMLINK: 0x02,
  FILE: 0x00,
} as const;

/** Permission/mode bits of 9P2000 stat and Tcreate. */
export const DirMode = {
  DIR: 0x80000000,
  APPEND: 0x40000000,
  EXCL: 0x20000000,
  AUTH: 0x08000000,
  TMP: 0x04000000,
} as const;

/** 9P2000 open modes (open(5)). */
export const OpenMode = {
  READ: 0,
  WRITE: 1,
  RDWR: 2,
  EXEC: 3,
  TRUNC: 0x10,
  RCLOSE: 0x40,
} as const;

/** The server's unique identity of a file. */
export interface Qid {
  type: number;
  version: number;
  path: bigint;
}

/** A 9P2000 stat record (stat(5)). */
export interface Stat {
  type: number;
  dev: number;
  qid: Qid;
  mode: number;
  atime: number;
  mtime: number;
  length: number;
  name: string;
  uid: string;
  gid: string;
  muid: string;
}

/** One entry of an Rreaddir payload (9P2000.L). */
export interface Dirent {
  qid: Qid;
  offset: number;
  type: number;
  name: string;
}

/** Fields of Rgetattr (9P2000.L). */
export interface Attr {
  valid: number;
  qid: Qid;
  mode: number;
  uid: number;
  gid: number;
  nlink: number;
  rdev: number;
  size: number;
  blksize: number;
  blocks: number;
  atimeSec: number;
  atimeNsec: number;
  mtimeSec: number;
  mtimeNsec: number;
  ctimeSec: number;
  ctimeNsec: number;
  btimeSec: number;
  btimeNsec: number;
  gen: number;
  dataVersion: number;
}

/** Fields of Tsetattr (9P2000.L). */
export interface SetAttr {
  valid: number;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  atimeSec: number;
  atimeNsec: number;
  mtimeSec: number;
  mtimeNsec: number;
}

/** Tag used by Tversion (no tag). */
export const NOTAG = 0xffff;
/** "No fid" value (afid of an unauthenticated attach). */
export const NOFID = 0xffffffff;
/** Bytes of Rread/Twrite header: size[4] type[1] tag[2] fid[4] offset[8] count[4]. */
export const IOHDRSZ = 24;
/** Most names one Twalk may carry. */
export const MAXWELEM = 16;
/** The 9P2000.L getattr mask asking for the basic fields. */
export const GETATTR_BASIC = 0x000007ff;
export const GETATTR_ALL = 0x00003fff;

type M<T extends string, F> = { type: T; tag: number } & F;

// ---- 9P2000 (also used by 9P2000.L unless noted) ----
export type Tversion = M<"Tversion", { msize: number; version: string }>;
export type Rversion = M<"Rversion", { msize: number; version: string }>;
/** `nUname` is present in 9P2000.L (and .u); absent in 9P2000. */
export type Tauth = M<"Tauth", { afid: number; uname: string; aname: string; nUname?: number }>;
export type Rauth = M<"Rauth", { aqid: Qid }>;
export type Tattach = M<"Tattach", { fid: number; afid: number; uname: string; aname: string; nUname?: number }>;
export type Rattach = M<"Rattach", { qid: Qid }>;
export type Rerror = M<"Rerror", { ename: string }>;
export type Tflush = M<"Tflush", { oldtag: number }>;
export type Rflush = M<"Rflush", object>;
export type Twalk = M<"Twalk", { fid: number; newfid: number; names: string[] }>;
export type Rwalk = M<"Rwalk", { qids: Qid[] }>;
export type Topen = M<"Topen", { fid: number; mode: number }>;
export type Ropen = M<"Ropen", { qid: Qid; iounit: number }>;
export type Tcreate = M<"Tcreate", { fid: number; name: string; perm: number; mode: number }>;
export type Rcreate = M<"Rcreate", { qid: Qid; iounit: number }>;
export type Tread = M<"Tread", { fid: number; offset: number; count: number }>;
export type Rread = M<"Rread", { data: Uint8Array }>;
export type Twrite = M<"Twrite", { fid: number; offset: number; data: Uint8Array }>;
export type Rwrite = M<"Rwrite", { count: number }>;
export type Tclunk = M<"Tclunk", { fid: number }>;
export type Rclunk = M<"Rclunk", object>;
export type Tremove = M<"Tremove", { fid: number }>;
export type Rremove = M<"Rremove", object>;
export type Tstat = M<"Tstat", { fid: number }>;
export type Rstat = M<"Rstat", { stat: Stat }>;
export type Twstat = M<"Twstat", { fid: number; stat: Stat }>;
export type Rwstat = M<"Rwstat", object>;

// ---- 9P2000.L ----
export type Rlerror = M<"Rlerror", { ecode: number }>;
export type Tstatfs = M<"Tstatfs", { fid: number }>;
export type Rstatfs = M<"Rstatfs", {
  fsType: number; bsize: number; blocks: number; bfree: number; bavail: number;
  files: number; ffree: number; fsid: number; namelen: number;
}>;
export type Tlopen = M<"Tlopen", { fid: number; flags: number }>;
export type Rlopen = M<"Rlopen", { qid: Qid; iounit: number }>;
export type Tlcreate = M<"Tlcreate", { fid: number; name: string; flags: number; mode: number; gid: number }>;
export type Rlcreate = M<"Rlcreate", { qid: Qid; iounit: number }>;
export type Tsymlink = M<"Tsymlink", { fid: number; name: string; symtgt: string; gid: number }>;
export type Rsymlink = M<"Rsymlink", { qid: Qid }>;
export type Tmknod = M<"Tmknod", { dfid: number; name: string; mode: number; major: number; minor: number; gid: number }>;
export type Rmknod = M<"Rmknod", { qid: Qid }>;
export type Trename = M<"Trename", { fid: number; dfid: number; name: string }>;
export type Rrename = M<"Rrename", object>;
export type Treadlink = M<"Treadlink", { fid: number }>;
export type Rreadlink = M<"Rreadlink", { target: string }>;
export type Tgetattr = M<"Tgetattr", { fid: number; requestMask: number }>;
export type Rgetattr = M<"Rgetattr", { attr: Attr }>;
export type Tsetattr = M<"Tsetattr", { fid: number; attr: SetAttr }>;
export type Rsetattr = M<"Rsetattr", object>;
export type Txattrwalk = M<"Txattrwalk", { fid: number; newfid: number; name: string }>;
export type Rxattrwalk = M<"Rxattrwalk", { size: number }>;
export type Txattrcreate = M<"Txattrcreate", { fid: number; name: string; attrSize: number; flags: number }>;
export type Rxattrcreate = M<"Rxattrcreate", object>;
export type Treaddir = M<"Treaddir", { fid: number; offset: number; count: number }>;
/** `data` is the packed dirents; use `decodeDirents` to read them. */
export type Rreaddir = M<"Rreaddir", { data: Uint8Array }>;
/** `datasync` is sent by newer Linux kernels; absent from older ones. */
export type Tfsync = M<"Tfsync", { fid: number; datasync?: number }>;
export type Rfsync = M<"Rfsync", object>;
export type Tlock = M<"Tlock", {
  fid: number; lockType: number; flags: number; start: number; length: number; procId: number; clientId: string;
}>;
export type Rlock = M<"Rlock", { status: number }>;
export type Tgetlock = M<"Tgetlock", {
  fid: number; lockType: number; start: number; length: number; procId: number; clientId: string;
}>;
export type Rgetlock = M<"Rgetlock", {
  lockType: number; start: number; length: number; procId: number; clientId: string;
}>;
export type Tlink = M<"Tlink", { dfid: number; fid: number; name: string }>;
export type Rlink = M<"Rlink", object>;
export type Tmkdir = M<"Tmkdir", { dfid: number; name: string; mode: number; gid: number }>;
export type Rmkdir = M<"Rmkdir", { qid: Qid }>;
export type Trenameat = M<"Trenameat", { oldDirFid: number; oldName: string; newDirFid: number; newName: string }>;
export type Rrenameat = M<"Rrenameat", object>;
export type Tunlinkat = M<"Tunlinkat", { dirfid: number; name: string; flags: number }>;
export type Runlinkat = M<"Runlinkat", object>;

/** Every request a client may send. */
export type TMessage =
  | Tversion | Tauth | Tattach | Tflush | Twalk | Topen | Tcreate | Tread | Twrite
  | Tclunk | Tremove | Tstat | Twstat
  | Tstatfs | Tlopen | Tlcreate | Tsymlink | Tmknod | Trename | Treadlink | Tgetattr
  | Tsetattr | Txattrwalk | Txattrcreate | Treaddir | Tfsync | Tlock | Tgetlock
  | Tlink | Tmkdir | Trenameat | Tunlinkat;

/** Every reply a server may send. */
export type RMessage =
  | Rversion | Rauth | Rattach | Rerror | Rflush | Rwalk | Ropen | Rcreate | Rread
  | Rwrite | Rclunk | Rremove | Rstat | Rwstat
  | Rlerror | Rstatfs | Rlopen | Rlcreate | Rsymlink | Rmknod | Rrename | Rreadlink
  | Rgetattr | Rsetattr | Rxattrwalk | Rxattrcreate | Rreaddir | Rfsync | Rlock
  | Rgetlock | Rlink | Rmkdir | Rrenameat | Runlinkat;

/** Any 9P message. */
export type Message = TMessage | RMessage;
/** The name of any message type, e.g. `"Twalk"`. */
export type MessageName = Message["type"];
/** The message with a given name. */
export type MessageOf<N extends MessageName> = Extract<Message, { type: N }>;

/** The two dialects NineDoor speaks; chosen by Tversion. */
export type Dialect = "9P2000" | "9P2000.L";
