/**
 * The commit log's on-disk format (DESIGN §7): one frame per record, and the
 * pure scanner that verifies a whole log image. This file is the one place
 * that serialises and parses frames; it knows nothing about file handles,
 * locks or group commit (see `commit-log.ts`).
 *
 * ```text
 * frame   = length[4, u32 BE] crc[4, u32 BE] payload[length] tag[32]
 * crc     = crc32(payload ‖ tag)
 * tag     = HMAC-SHA256(key, payload)
 * payload = msgpack map16 { seq, prev, ts_ms, kind, batch, body }
 * hash    = sha256(payload)            — the next record's `prev`
 * ```
 *
 * `seq` starts at 1 and has no gaps; `prev` of record 1 is 32 zero bytes.
 * `batch` is the seq of the first record of the write batch (one `write`,
 * one fsync) the record was committed in.
 *
 * The checksum covers the tag too: if it covered the payload alone, a torn
 * write that only damaged a tag would pass the checksum, fail the HMAC and be
 * mistaken for a forgery. A forger can still compute the checksum, so a frame
 * with a valid checksum and a bad tag is always refused.
 *
 * **Torn tail versus corruption.** A writer only starts batch N+1 after the
 * fsync of batch N returned, so after a crash or power loss only the frames
 * of the *last* batch can be damaged, in any pattern (pages reach the disk
 * out of order). When the scanner meets a damaged frame at offset X where
 * record `s` was expected, it looks for intact frames anywhere after X.
 * If every intact frame found belongs to a batch that started at or before
 * `s` (so it is part of the same, never-acknowledged batch), everything from
 * X to the end is a torn tail and may be cut. If any intact frame belongs to
 * a later batch, the damaged batch had been made durable — that is
 * corruption and is refused. Frames that pass their checksum but fail the
 * HMAC, the chain, the seq order or decoding are never a torn tail. The one
 * case that cannot be told apart is damage confined to the final batch after
 * it was acknowledged (bit rot of the last write); it is cut and reported
 * through the audit line like any torn tail.
 *
 * @example
 * ```ts
 * import { scanLog } from "./commit-log-format.ts";
 * const scan = scanLog(await readFile("state/commits.log"), { key });
 * if (scan.error) throw scan.error;
 * console.log(scan.records.length, scan.tornTail);
 * ```
 * @module
 */
import { createHash, createHmac, timingSafeEqual } from "node:crypto";
import { crc32 } from "node:zlib";
import { Packr } from "msgpackr";
import { InvalidError } from "../nine-door/index.ts";
import type { Commit } from "./state.ts";

/** Bytes before the payload: length[4] + crc32[4]. */
export const FRAME_HEADER_BYTES = 8;
/** Bytes of the HMAC-SHA256 tag after the payload. */
export const FRAME_TAG_BYTES = 32;
/** Largest payload a frame may carry (1 MiB). */
export const MAX_RECORD_BYTES = 1 << 20;
/** Length of a record hash and of `prev`. */
export const HASH_BYTES = 32;

/**
 * A record's kind: any short lowercase name, so the format carries kinds
 * it does not know. The root task's own kinds, and the check of each
 * body, are the table `COMMIT_KINDS` in `state.ts`.
 *
 * @example
 * ```ts
 * const kind: CommitKind = "spawn";
 * ```
 */
export type CommitKind = Commit["kind"] | (string & {});

/**
 * One committed state change, as read back from the log or returned by
 * `CommitLog.append`. `hash` and `offset` are derived, not stored.
 *
 * @example
 * ```ts
 * const r: CommitRecord<{ worker: string }> = await log.append("spawn", { worker: "worker-1" });
 * console.log(r.seq, hex(r.hash));
 * ```
 */
export interface CommitRecord<B = unknown> {
  /** 1, 2, 3… without gaps. */
  readonly seq: number;
  /** sha256 of the previous record's payload; zeros for record 1. */
  readonly prev: Uint8Array;
  /** Wall-clock time the change was appended, in ms since the epoch. */
  readonly ts_ms: number;
  readonly kind: CommitKind;
  /** Any msgpack-able value. */
  readonly body: B;
  /** Seq of the first record of the write batch this record was fsynced in. */
  readonly batch: number;
  /** sha256 of this record's payload. */
  readonly hash: Uint8Array;
  /** Byte offset of this record's frame in the log file. */
  readonly offset: number;
}

/** What the scanner found wrong, for programs that match on it. */
export type LogProblem = "checksum" | "truncated" | "decode" | "auth" | "seq" | "chain" | "batch";

/**
 * A commit log that is damaged in a way a crash cannot explain. Never
 * repaired automatically: the message names the record and the offset.
 *
 * @example
 * ```ts
 * try { await CommitLog.open(dir, { key }); }
 * catch (e) { if (e instanceof LogCorruptionError) console.error(e.seq, e.offset, e.problem); }
 * ```
 */
export class LogCorruptionError extends InvalidError {
  /** Seq of the damaged record (the one expected at `offset`). */
  readonly seq: number;
  /** Byte offset of the damaged frame. */
  readonly offset: number;
  readonly problem: LogProblem;

  constructor(seq: number, offset: number, problem: LogProblem, detail: string) {
    super(`commit log: record ${seq} at offset ${offset}: ${detail}`);
    this.name = "LogCorruptionError";
    this.seq = seq;
    this.offset = offset;
    this.problem = problem;
  }
}

/** The torn tail found by a scan: the bytes from `offset` to the end. */
export interface TornTail {
  readonly offset: number;
  readonly bytes: number;
  /** Why the first frame of the tail is unusable, e.g. `partial frame`. */
  readonly reason: string;
}

/** Result of {@link scanLog}. */
export interface ScanResult {
  /** Every intact record before the first problem. */
  readonly records: CommitRecord[];
  /** Offset just past the last intact frame (the length to keep). */
  readonly end: number;
  readonly tornTail?: TornTail;
  /** Set when the log is corrupt; `records` are then only the good prefix. */
  readonly error?: LogCorruptionError;
  /** True when a key was given and every record's HMAC was checked. */
  readonly authenticated: boolean;
}

const ZERO_HASH = new Uint8Array(HASH_BYTES);
/** Fixed options so encodings are self-describing and byte-stable. */
const packr = new Packr({
  useRecords: false,
  moreTypes: false,
  structuredClone: false,
  bundleStrings: false,
  variableMapSize: false,
  mapsAsObjects: true,
  encodeUndefinedAsNil: false,
  int64AsType: "number",
});
/** Every payload starts with a map16 of six entries. */
const PAYLOAD_PREFIX = [0xde, 0x00, 0x06] as const;
const KIND_PATTERN = /^[a-z][a-z0-9_-]{0,31}$/;

/**
 * Encodes a body once, at append time, so a value msgpack cannot carry is
 * refused before it takes a seq. The bytes are spliced into the payload.
 *
 * @example
 * ```ts
 * const bytes = encodeBody({ worker: "worker-1" });
 * ```
 */
export function encodeBody(body: unknown): Uint8Array {
  let bytes: Uint8Array;
  try {
    bytes = Uint8Array.from(packr.pack(body));
  } catch (err) {
    throw new InvalidError(`commit log: body is not msgpack-able: ${err instanceof Error ? err.message : String(err)}`);
  }
  if (bytes.length > MAX_RECORD_BYTES - 256) {
    throw new InvalidError(`commit log: body too big: ${bytes.length} bytes (max ${MAX_RECORD_BYTES - 256})`);
  }
  return bytes;
}

/**
 * Checks a record kind: a lowercase name of at most 32 characters.
 *
 * @example
 * ```ts
 * checkKind("spawn"); // ok
 * checkKind("Spawn!"); // throws InvalidError
 * ```
 */
export function checkKind(kind: string): void {
  if (!KIND_PATTERN.test(kind)) throw new InvalidError(`commit log: bad record kind: ${JSON.stringify(kind)}`);
}

/** Fields of a record before it is framed. */
export interface FrameInput {
  readonly seq: number;
  readonly prev: Uint8Array;
  readonly ts_ms: number;
  readonly kind: CommitKind;
  readonly batch: number;
  /** The body, already encoded by {@link encodeBody}. */
  readonly bodyBytes: Uint8Array;
}

/** A framed record: the bytes to write and the record hash. */
export interface EncodedFrame {
  readonly frame: Uint8Array;
  readonly hash: Uint8Array;
}

/**
 * Builds one frame. The payload equals `pack({seq, prev, ts_ms, kind, batch,
 * body})` with the Packr options above; the body bytes are spliced in place
 * of a nil placeholder, which msgpack's composition makes exact.
 *
 * @example
 * ```ts
 * const { frame, hash } = encodeFrame(
 *   { seq: 1, prev: new Uint8Array(32), ts_ms: 0, kind: "spawn", batch: 1, bodyBytes: encodeBody({}) },
 *   { key },
 * );
 * ```
 */
export function encodeFrame(input: FrameInput, options: { key: Uint8Array }): EncodedFrame {
  const head = packr.pack({
    seq: input.seq,
    prev: input.prev,
    ts_ms: input.ts_ms,
    kind: input.kind,
    batch: input.batch,
    body: null,
  });
  const headLen = head.length - 1; // drop the trailing nil (0xc0)
  const payloadLen = headLen + input.bodyBytes.length;
  const frame = Buffer.allocUnsafe(FRAME_HEADER_BYTES + payloadLen + FRAME_TAG_BYTES);
  head.copy(frame, FRAME_HEADER_BYTES, 0, headLen);
  frame.set(input.bodyBytes, FRAME_HEADER_BYTES + headLen);
  const payload = frame.subarray(FRAME_HEADER_BYTES, FRAME_HEADER_BYTES + payloadLen);
  const tag = hmac(options.key, payload);
  frame.writeUInt32BE(payloadLen, 0);
  frame.set(tag, FRAME_HEADER_BYTES + payloadLen);
  frame.writeUInt32BE(crc32(tag, crc32(payload)), 4);
  return { frame, hash: sha256(payload) };
}

/**
 * Verifies a whole log image: checksums, HMAC tags (when a key is given),
 * seq order, the hash chain and batch numbering. Pure: never touches disk.
 * See the module comment for how a torn tail is told apart from corruption.
 *
 * @example
 * ```ts
 * const { records, tornTail, error } = scanLog(bytes, { key });
 * ```
 */
export function scanLog(bytes: Uint8Array, options: { key?: Uint8Array } = {}): ScanResult {
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const key = options.key;
  const records: CommitRecord[] = [];
  let prevHash: Uint8Array = ZERO_HASH;
  let expect = 1;
  let off = 0;
  const done = (extra: { tornTail?: TornTail; error?: LogCorruptionError }): ScanResult => ({
    records,
    end: off,
    authenticated: key !== undefined && extra.error === undefined,
    ...extra,
  });

  while (off < buf.length) {
    const frame = readFrame(buf, off);
    if (typeof frame === "string") {
      const later = findLaterBatch(buf, off + 1, expect);
      if (later !== undefined) {
        return done({
          error: new LogCorruptionError(
            expect,
            off,
            frame === "partial frame" ? "truncated" : "checksum",
            `${frame}, but intact record ${later.seq} of a later batch follows at offset ${later.offset}: not a torn tail`,
          ),
        });
      }
      return done({ tornTail: { offset: off, bytes: buf.length - off, reason: frame } });
    }
    const fail = (problem: LogProblem, detail: string): ScanResult =>
      done({ error: new LogCorruptionError(expect, off, problem, detail) });
    const fields = decodePayload(frame.payload);
    if (typeof fields === "string") return fail("decode", `checksum is valid but the payload ${fields}`);
    if (key !== undefined && !timingSafeEqual(hmac(key, frame.payload), frame.tag)) {
      return fail("auth", "authentication tag mismatch (forged record or wrong key)");
    }
    if (fields.seq !== expect) return fail("seq", `seq gap: expected seq ${expect}, found ${fields.seq}`);
    if (!Buffer.from(fields.prev).equals(prevHash)) {
      return fail("chain", `broken chain: prev ${hex(fields.prev).slice(0, 16)}… is not the hash of record ${expect - 1} (${hex(prevHash).slice(0, 16)}…)`);
    }
    const prevBatch = records.at(-1)?.batch;
    if (fields.batch !== fields.seq && fields.batch !== prevBatch) {
      return fail("batch", `batch ${fields.batch} neither starts here nor continues the previous record's batch`);
    }
    const hash = sha256(frame.payload);
    records.push({ ...fields, hash, offset: off });
    prevHash = hash;
    expect += 1;
    off = frame.end;
  }
  return done({});
}

/**
 * Folds records into a state, in order; refuses a gap in seq numbers. The
 * root task's state machine supplies `apply`.
 *
 * @example
 * ```ts
 * const workers = replay(log.recovered, new Set<string>(), (s, r) =>
 *   r.kind === "spawn" ? new Set(s).add(String(r.body)) : s);
 * ```
 */
export function replay<S>(records: readonly CommitRecord[], genesis: S, apply: (state: S, record: CommitRecord) => S): S {
  let state = genesis;
  let last: number | undefined;
  for (const r of records) {
    if (last !== undefined && r.seq !== last + 1) {
      throw new InvalidError(`replay: seq gap: record ${r.seq} follows record ${last}`);
    }
    state = apply(state, r);
    last = r.seq;
  }
  return state;
}

/**
 * Lowercase hex of bytes, for hashes in reports and logs.
 *
 * @example
 * ```ts
 * hex(new Uint8Array([1, 255])); // "01ff"
 * ```
 */
export function hex(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("hex");
}

interface RawFrame {
  payload: Buffer;
  tag: Buffer;
  end: number;
}

interface PayloadFields {
  seq: number;
  prev: Uint8Array;
  ts_ms: number;
  kind: string;
  batch: number;
  body: unknown;
}

/** Reads the frame at `off`, or says why there is no intact frame there. */
function readFrame(buf: Buffer, off: number): RawFrame | string {
  if (buf.length - off < FRAME_HEADER_BYTES) return "partial frame";
  const len = buf.readUInt32BE(off);
  if (len < PAYLOAD_PREFIX.length || len > MAX_RECORD_BYTES) return `length ${len} out of range`;
  const end = off + FRAME_HEADER_BYTES + len + FRAME_TAG_BYTES;
  if (end > buf.length) return "partial frame";
  const start = off + FRAME_HEADER_BYTES;
  const payload = buf.subarray(start, start + len);
  const tag = buf.subarray(start + len, end);
  if (crc32(tag, crc32(payload)) !== buf.readUInt32BE(off + 4)) return "checksum mismatch";
  return { payload, tag, end };
}

function decodePayload(payload: Buffer): PayloadFields | string {
  if (PAYLOAD_PREFIX.some((b, i) => payload[i] !== b)) return "is not a record map";
  let value: unknown;
  try {
    value = packr.unpack(payload);
  } catch (err) {
    return `does not decode: ${err instanceof Error ? err.message : String(err)}`;
  }
  if (typeof value !== "object" || value === null) return "is not a record map";
  const v = value as Record<string, unknown>;
  const { seq, prev, ts_ms, kind, batch } = v;
  if (!isCount(seq) || !isCount(batch) || batch > seq) return "has a bad seq or batch";
  if (!(prev instanceof Uint8Array) || prev.length !== HASH_BYTES) return "has a bad prev hash";
  if (typeof ts_ms !== "number" || typeof kind !== "string" || !("body" in v)) return "lacks ts_ms, kind or body";
  return { seq, prev: new Uint8Array(prev), ts_ms, kind, batch, body: v.body };
}

/**
 * Looks for an intact frame after damage that proves the damaged batch was
 * durable: one whose batch started after `expect`. Scans byte by byte and
 * jumps over intact frames; the map16 prefix check keeps this cheap.
 */
function findLaterBatch(buf: Buffer, from: number, expect: number): { seq: number; offset: number } | undefined {
  let off = from;
  while (off + FRAME_HEADER_BYTES + PAYLOAD_PREFIX.length <= buf.length) {
    if (buf[off + FRAME_HEADER_BYTES] === PAYLOAD_PREFIX[0] && buf[off + FRAME_HEADER_BYTES + 2] === PAYLOAD_PREFIX[2]) {
      const frame = readFrame(buf, off);
      if (typeof frame !== "string") {
        const fields = decodePayload(frame.payload);
        if (typeof fields !== "string") {
          if (fields.batch > expect || fields.seq < expect) return { seq: fields.seq, offset: off };
          off = frame.end;
          continue;
        }
      }
    }
    off += 1;
  }
  return undefined;
}

function isCount(v: unknown): v is number {
  return typeof v === "number" && Number.isSafeInteger(v) && v >= 1;
}

function hmac(key: Uint8Array, payload: Uint8Array): Buffer {
  return createHmac("sha256", key).update(payload).digest();
}

function sha256(payload: Uint8Array): Uint8Array {
  return new Uint8Array(createHash("sha256").update(payload).digest());
}
