/**
 * One handler per request type. Each *returns* its reply (or throws a
 * NineError); only the session's connection loop writes to the wire.
 * Handlers validate first (fid, mode, offset), then ask the policy, then
 * call the provider.
 * @module
 */
import {
  InvalidError,
  NotFoundError,
  NotSupportedError,
  PermissionError,
  Errno,
} from "../errors.ts";
import type { Node, OpenFlags } from "../fs/node.ts";
import { childPath } from "../fs/path.ts";
import { packDirents, packStat } from "../wire/index.ts";
import {
  DirMode,
  IOHDRSZ,
  NOFID,
  QidType,
  type Attr,
  type Qid,
  type Dialect,
  type Dirent,
  type RMessage,
  type Stat,
  type TMessage,
} from "../wire/index.ts";
import type { Fid, FidTable } from "./fids.ts";
import type { InFlight } from "./request.ts";
import type { AccessOp, Attachment, AttachRequest, CountedOp, Place, ServerOptions } from "./types.ts";

/** What handlers need from their session. */
export interface HandlerScope {
  readonly fids: FidTable;
  readonly msize: number;
  readonly dialect: Dialect;
  readonly peer: string;
  readonly options: ServerOptions;
  /** Asks the attachment's policy; reports refusals for the audit log. */
  authorize(att: Attachment, path: string, op: AccessOp, req: InFlight): void;
  /** Counts a budgeted op on the attachment. */
  account(att: Attachment, op: CountedOp): void;
  /**
   * Records an attach so the session can be found by caller (revocation);
   * the first one lifts the limits of an unattached connection. Ignored for
   * a request a Tversion reset.
   */
  attached(att: Attachment, req: InFlight): void;
}

type Handler = (s: HandlerScope, m: never, req: InFlight) => RMessage | Promise<RMessage>;

/** Linux open(2) flags used by Tlopen. */
const O_ACCMODE = 3;
const O_TRUNC = 0o1000;

/** Setattr bits we accept as no-ops (times) or as "truncate" on append files. */
const SETATTR_SIZE = 0x8;
const SETATTR_HARMLESS = 0x10 | 0x20 | 0x40 | 0x80 | 0x100;

async function attach(s: HandlerScope, m: Extract<TMessage, { type: "Tattach" }>, req: InFlight): Promise<RMessage> {
  s.fids.checkFree(m.fid);
  if (m.afid !== NOFID) throw new InvalidError("authentication is not used: attach with afid NOFID and the ticket in aname");
  const request: AttachRequest = {
    uname: m.uname,
    aname: m.aname,
    dialect: s.dialect,
    peer: s.peer,
    ...(m.nUname === undefined ? {} : { nUname: m.nUname }),
  };
  const work = (async (): Promise<Fid> => {
    const att = await s.options.attach(request);
    s.attached(att, req);
    req.caller = att.caller;
    return { id: m.fid, node: att.root ?? s.options.root, path: "/", attachment: att };
  })();
  s.fids.reserve(m.fid, work);
  const fid = await work;
  return { type: "Rattach", tag: m.tag, qid: fid.node.qid };
}

/**
 * No auth protocol: the ticket travels in aname. Stock .L clients (diod's
 * libnpclient) read ENOENT from Tauth as "authentication not required".
 */
function auth(): RMessage {
  throw new NotFoundError("authentication not required: attach with afid NOFID and the ticket in aname");
}

function checkName(name: string): void {
  if (name === "" || name === "." || name.includes("/")) {
    throw new InvalidError(`bad path element ${JSON.stringify(name)}`);
  }
}

/** Walks one name with plain node.walk; `..` re-resolves the parent from the root. */
async function plainStep(root: Node, at: Place, name: string, req: InFlight): Promise<Place> {
  if (name !== "..") return { node: await at.node.walk(name, req), path: childPath(at.path, name) };
  const parent = childPath(at.path, "..");
  let node = root;
  for (const part of parent.split("/")) if (part) node = await node.walk(part, req);
  return { node, path: parent };
}

/**
 * Walks `names` from `fid`. The new fid (or, for a walk onto itself, the fid)
 * is reserved before anything is awaited, so requests pipelined behind the
 * walk in the same read wait for it instead of failing "fid not in use".
 */
function walk(s: HandlerScope, m: Extract<TMessage, { type: "Twalk" }>, req: InFlight): Promise<RMessage> {
  const cloning = m.newfid !== m.fid;
  if (cloning) s.fids.checkFree(m.newfid);
  const work = s.fids.get(m.fid).then(async (fid) => {
    if (fid.open) throw new InvalidError(`fid ${m.fid} is open: walk from an unopened fid`);
    const att = fid.attachment;
    req.caller = att.caller;
    const root = att.root ?? s.options.root;
    let at: Place = { node: fid.node, path: fid.path };
    const qids = [];
    for (const name of m.names) {
      try {
        checkName(name);
        s.account(att, "walk");
        const next = childPath(at.path, name);
        s.authorize(att, next, "walk", req);
        at = att.namespace ? await att.namespace.step(at, name, req) : await plainStep(root, at, name, req);
        qids.push(at.node.qid);
      } catch (err) {
        if (qids.length === 0) throw err;
        break;
      }
    }
    const complete = qids.length === m.names.length;
    if (complete && !cloning) {
      fid.node = at.node;
      fid.path = at.path;
    }
    return { fid, at, qids, complete };
  });

  if (cloning) {
    s.fids.reserve(
      m.newfid,
      work.then((w) => (w.complete ? { id: m.newfid, node: w.at.node, path: w.at.path, attachment: w.fid.attachment } : undefined)),
    );
  } else {
    s.fids.hold(m.fid, work);
  }
  return work.then(({ qids }) => ({ type: "Rwalk", tag: m.tag, qids }));
}

function isDir(node: Node): boolean {
  return (node.qid.type & QidType.DIR) !== 0;
}

/**
 * Opens a fid. The fid is held until the open settles, so a read or write
 * pipelined behind the open waits for it.
 */
function openFid(s: HandlerScope, fidId: number, flags: OpenFlags, req: InFlight): Promise<{ qid: Qid; iounit: number }> {
  const work = s.fids.get(fidId).then(async (fid) => {
    if (fid.open || fid.dir) throw new InvalidError(`fid ${fidId} is already open`);
    const att = fid.attachment;
    req.caller = att.caller;
    s.account(att, "open");
    if (isDir(fid.node)) {
      if (flags.write) throw new InvalidError(`${fid.path} is a directory`, { errno: Errno.EISDIR });
      s.authorize(att, fid.path, "read", req);
      fid.dir = { entries: [], byteOffset: -1, index: 0 };
      fid.openFlags = flags;
      return { qid: fid.node.qid, iounit: s.msize - IOHDRSZ };
    }
    if (flags.read) s.authorize(att, fid.path, "read", req);
    if (flags.write) s.authorize(att, fid.path, "write", req);
    const open = await fid.node.open(flags, req);
    if (!s.fids.bound(fidId, fid)) {
      // Clunked while opening: do not leak the open file.
      open.close?.();
      throw new NotFoundError(`fid ${fidId} was clunked while opening`);
    }
    fid.open = open;
    fid.openFlags = flags;
    return { qid: fid.node.qid, iounit: open.iounit || s.msize - IOHDRSZ };
  });
  s.fids.hold(fidId, work);
  return work;
}

async function open(s: HandlerScope, m: Extract<TMessage, { type: "Topen" }>, req: InFlight): Promise<RMessage> {
  if (m.mode & 0x40) throw new NotSupportedError("ORCLOSE is not supported: files of this namespace cannot be removed");
  const access = m.mode & 3;
  const flags: OpenFlags = {
    read: access === 0 || access === 2 || access === 3,
    write: access === 1 || access === 2,
    truncate: (m.mode & 0x10) !== 0,
  };
  const r = await openFid(s, m.fid, flags, req);
  return { type: "Ropen", tag: m.tag, ...r };
}

async function lopen(s: HandlerScope, m: Extract<TMessage, { type: "Tlopen" }>, req: InFlight): Promise<RMessage> {
  const access = m.flags & O_ACCMODE;
  const flags: OpenFlags = {
    read: access === 0 || access === 2,
    write: access === 1 || access === 2,
    truncate: (m.flags & O_TRUNC) !== 0,
  };
  const r = await openFid(s, m.fid, flags, req);
  return { type: "Rlopen", tag: m.tag, ...r };
}

/** A snapshot of a directory, filtered by what the caller may see. */
async function listDir(s: HandlerScope, fid: Fid, req: InFlight): Promise<readonly Node[]> {
  const ns = fid.attachment.namespace;
  const entries = ns?.list ? await ns.list({ node: fid.node, path: fid.path }, req) : await fid.node.list(req);
  const visible = fid.attachment.visible;
  if (!visible) return entries;
  const names = new Set(visible(fid.path, entries.map((e) => e.name)));
  return entries.filter((e) => names.has(e.name));
}

async function read(s: HandlerScope, m: Extract<TMessage, { type: "Tread" }>, req: InFlight): Promise<RMessage> {
  const fid = await s.fids.get(m.fid);
  req.caller = fid.attachment.caller;
  const count = Math.min(m.count, s.msize - IOHDRSZ);
  if (fid.dir) {
    s.account(fid.attachment, "read");
    const cur = fid.dir;
    if (m.offset === 0) {
      cur.entries = await listDir(s, fid, req);
      cur.byteOffset = 0;
      cur.index = 0;
    } else if (m.offset !== cur.byteOffset) {
      throw new InvalidError(`directory read at offset ${m.offset}: continue from ${cur.byteOffset} or restart at 0`);
    }
    const chunks: Buffer[] = [];
    let size = 0;
    while (cur.index < cur.entries.length) {
      const packed = packStat(toStat(cur.entries[cur.index]!));
      if (size + packed.length > count) break;
      chunks.push(packed);
      size += packed.length;
      cur.index++;
    }
    if (size === 0 && cur.index < cur.entries.length) throw new InvalidError(`read count ${count} too small for a directory entry`);
    cur.byteOffset += size;
    return { type: "Rread", tag: m.tag, data: chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size) };
  }
  const open = fid.open;
  if (!open || !fid.openFlags?.read) throw new InvalidError(`fid ${m.fid} is not open for reading`, { errno: Errno.EBADF });
  s.account(fid.attachment, "read");
  const data = await open.read(m.offset, count, req);
  return { type: "Rread", tag: m.tag, data: data.length > count ? data.subarray(0, count) : data };
}

async function readdir(s: HandlerScope, m: Extract<TMessage, { type: "Treaddir" }>, req: InFlight): Promise<RMessage> {
  const fid = await s.fids.get(m.fid);
  req.caller = fid.attachment.caller;
  if (!fid.dir) throw new InvalidError(`fid ${m.fid} is not an open directory`, { errno: Errno.ENOTDIR });
  s.account(fid.attachment, "read");
  const cur = fid.dir;
  // Offsets are 1-based entry indexes into the snapshot taken at offset 0,
  // so a client may resume from any offset it was given.
  if (m.offset === 0 || cur.byteOffset === -1) {
    cur.entries = await listDir(s, fid, req);
    cur.byteOffset = 0;
  }
  const entries: Dirent[] = [];
  for (let i = m.offset; i < cur.entries.length; i++) {
    const node = cur.entries[i]!;
    entries.push({ qid: node.qid, offset: i + 1, type: isDir(node) ? 4 : 8, name: node.name });
  }
  const count = Math.min(m.count, s.msize - IOHDRSZ - 4);
  const packed = packDirents(entries, count);
  if (packed.count === 0 && entries.length > 0) throw new InvalidError(`readdir count ${m.count} too small for an entry`);
  return { type: "Rreaddir", tag: m.tag, data: packed.data };
}

async function write(s: HandlerScope, m: Extract<TMessage, { type: "Twrite" }>, req: InFlight): Promise<RMessage> {
  const fid = await s.fids.get(m.fid);
  req.caller = fid.attachment.caller;
  const open = fid.open;
  if (!open || !fid.openFlags?.write) throw new InvalidError(`fid ${m.fid} is not open for writing`, { errno: Errno.EBADF });
  s.account(fid.attachment, "write");
  const count = await open.write(m.offset, m.data, req);
  return { type: "Rwrite", tag: m.tag, count };
}

function clunk(s: HandlerScope, m: Extract<TMessage, { type: "Tclunk" }>): RMessage | Promise<RMessage> {
  if (!s.fids.has(m.fid)) throw new NotFoundError(`fid ${m.fid} not in use`, { errno: Errno.EBADF });
  if (s.fids.peek(m.fid)) {
    s.fids.delete(m.fid);
    return { type: "Rclunk", tag: m.tag };
  }
  return s.fids.get(m.fid).then(() => {
    s.fids.delete(m.fid);
    return { type: "Rclunk", tag: m.tag } as RMessage;
  });
}

async function remove(s: HandlerScope, m: Extract<TMessage, { type: "Tremove" }>): Promise<RMessage> {
  const fid = await s.fids.get(m.fid);
  // remove(5): the fid is clunked even when the remove fails.
  s.fids.delete(m.fid);
  throw new PermissionError(`cannot remove ${fid.path}: files of this namespace are fixed`);
}

/** The 9P2000 stat record of a node. */
export function toStat(node: Node): Stat {
  const st = node.stat();
  return {
    type: 0,
    dev: 0,
    qid: node.qid,
    mode: node.mode >>> 0,
    atime: Math.floor(st.atimeMs / 1000),
    mtime: Math.floor(st.mtimeMs / 1000),
    length: isDir(node) ? 0 : st.length,
    name: node.name,
    uid: st.uid,
    gid: st.gid,
    muid: st.muid,
  };
}

/** The 9P2000.L attributes of a node. */
export function toAttr(node: Node): Attr {
  const st = node.stat();
  const dir = isDir(node);
  const size = dir ? 0 : st.length;
  return {
    valid: 0x7ff,
    qid: node.qid,
    mode: (dir ? 0o040000 : 0o100000) | (node.mode & 0o777),
    uid: 0,
    gid: 0,
    nlink: dir ? 2 : 1,
    rdev: 0,
    size,
    blksize: 4096,
    blocks: Math.ceil(size / 512),
    atimeSec: Math.floor(st.atimeMs / 1000),
    atimeNsec: (st.atimeMs % 1000) * 1e6,
    mtimeSec: Math.floor(st.mtimeMs / 1000),
    mtimeNsec: (st.mtimeMs % 1000) * 1e6,
    ctimeSec: Math.floor(st.mtimeMs / 1000),
    ctimeNsec: (st.mtimeMs % 1000) * 1e6,
    btimeSec: 0,
    btimeNsec: 0,
    gen: 0,
    dataVersion: node.qid.version,
  };
}

async function stat(s: HandlerScope, m: Extract<TMessage, { type: "Tstat" }>, req: InFlight): Promise<RMessage> {
  const fid = await s.fids.get(m.fid);
  req.caller = fid.attachment.caller;
  s.authorize(fid.attachment, fid.path, "stat", req);
  return { type: "Rstat", tag: m.tag, stat: toStat(fid.node) };
}

function getattrSync(s: HandlerScope, fid: Fid, tag: number, req: InFlight): RMessage {
  req.caller = fid.attachment.caller;
  s.authorize(fid.attachment, fid.path, "stat", req);
  return { type: "Rgetattr", tag, attr: toAttr(fid.node) };
}

function getattr(s: HandlerScope, m: Extract<TMessage, { type: "Tgetattr" }>, req: InFlight): RMessage | Promise<RMessage> {
  // Hot path (stat storms): answer synchronously when the fid is bound.
  const fid = s.fids.peek(m.fid);
  if (fid) return getattrSync(s, fid, m.tag, req);
  return s.fids.get(m.fid).then((f) => getattrSync(s, f, m.tag, req));
}

/** Truncating an append-only file is accepted and ignored (DESIGN §3). */
async function allowSize(s: HandlerScope, fid: Fid, req: InFlight): Promise<void> {
  s.authorize(fid.attachment, fid.path, "write", req);
  if ((fid.node.mode & DirMode.APPEND) === 0) {
    throw new NotSupportedError(`cannot change the size of ${fid.path}`);
  }
}

async function setattr(s: HandlerScope, m: Extract<TMessage, { type: "Tsetattr" }>, req: InFlight): Promise<RMessage> {
  const fid = await s.fids.get(m.fid);
  req.caller = fid.attachment.caller;
  const valid = m.attr.valid;
  if (valid & ~(SETATTR_HARMLESS | SETATTR_SIZE)) {
    throw new PermissionError(`cannot change mode or owner of ${fid.path}`, { errno: Errno.EPERM });
  }
  if (valid & SETATTR_SIZE) await allowSize(s, fid, req);
  return { type: "Rsetattr", tag: m.tag };
}

const U16 = 0xffff;
const U32 = 0xffffffff;
/** A u64 of all ones ("don't touch") as the codec decodes it. */
const U64_DONT_TOUCH = 2 ** 64;

async function wstat(s: HandlerScope, m: Extract<TMessage, { type: "Twstat" }>, req: InFlight): Promise<RMessage> {
  const fid = await s.fids.get(m.fid);
  req.caller = fid.attachment.caller;
  const st = m.stat;
  // wstat(5): all-"don't touch" is a sync; time changes are harmless.
  const keeps = st.type === U16 && st.dev === U32 && st.mode === U32 && st.name === "" && st.uid === "" && st.gid === "";
  if (!keeps) throw new PermissionError(`cannot change name, mode or owner of ${fid.path}`, { errno: Errno.EPERM });
  if (st.length !== U64_DONT_TOUCH) await allowSize(s, fid, req);
  return { type: "Rwstat", tag: m.tag };
}

function statfs(_s: HandlerScope, m: Extract<TMessage, { type: "Tstatfs" }>): RMessage {
  return {
    type: "Rstatfs", tag: m.tag, fsType: 0x01021997, bsize: 4096, blocks: 0, bfree: 0, bavail: 0,
    files: 0, ffree: 0, fsid: 0, namelen: 255,
  };
}

async function fsync(s: HandlerScope, m: Extract<TMessage, { type: "Tfsync" }>): Promise<RMessage> {
  await s.fids.get(m.fid);
  return { type: "Rfsync", tag: m.tag };
}

function unsupported(_s: HandlerScope, m: TMessage): RMessage {
  throw new NotSupportedError(`${m.type} is not supported on this namespace`);
}

/** The handler of every request type (Tversion and Tflush live in the session). */
export const handlers: Partial<Record<TMessage["type"], Handler>> = {
  Tattach: attach as Handler,
  Tauth: auth as Handler,
  Twalk: walk as Handler,
  Topen: open as Handler,
  Tlopen: lopen as Handler,
  Tread: read as Handler,
  Treaddir: readdir as Handler,
  Twrite: write as Handler,
  Tclunk: clunk as Handler,
  Tremove: remove as Handler,
  Tstat: stat as Handler,
  Tgetattr: getattr as Handler,
  Tsetattr: setattr as Handler,
  Twstat: wstat as Handler,
  Tstatfs: statfs as Handler,
  Tfsync: fsync as Handler,
  Tcreate: unsupported as Handler,
  Tlcreate: unsupported as Handler,
  Tsymlink: unsupported as Handler,
  Tmknod: unsupported as Handler,
  Trename: unsupported as Handler,
  Treadlink: unsupported as Handler,
  Txattrwalk: unsupported as Handler,
  Txattrcreate: unsupported as Handler,
  Tlock: unsupported as Handler,
  Tgetlock: unsupported as Handler,
  Tlink: unsupported as Handler,
  Tmkdir: unsupported as Handler,
  Trenameat: unsupported as Handler,
  Tunlinkat: unsupported as Handler,
};
