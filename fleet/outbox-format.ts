/**
 * The outbox's segment file format: the one place that frames and scans
 * outbox entries. Pure; knows nothing about file handles or MQTT.
 *
 * ```text
 * frame = length[4, u32 BE] crc[4, u32 BE] seq[8, u64 BE] ts_ms[8, u64 BE] flags[1] body[length]
 * crc   = crc32(seq ‖ ts_ms ‖ flags ‖ body)
 * flags = bit 0: historical (made while the broker was away)
 *         bit 1: a `dropped` record written by the outbox itself
 * ```
 *
 * A segment holds consecutive seqs. A frame that is partial or fails its
 * checksum ends the scan: in the newest segment that is a torn tail (the
 * batch whose fsync never returned) and is cut.
 *
 * @example
 * ```ts
 * const frame = encodeEntry({ seq: 1, ts_ms: Date.now(), historical: false, body });
 * const { entries, end } = scanSegment(frame);
 * ```
 * @module
 */
import { crc32 } from "node:zlib";

/** Bytes before an entry's body. */
export const ENTRY_HEADER_BYTES = 25;
/** Largest body a frame may carry (1 MiB): a longer length field is damage. */
export const MAX_ENTRY_BODY = 1 << 20;

/**
 * One record in the outbox: its seq, origin time, whether it was made while
 * the broker was away, and the body (a record without its head, as JSON).
 *
 * @example
 * ```ts
 * const e: OutboxEntry = { seq: 1, ts_ms: 0, historical: false, body: new Uint8Array() };
 * ```
 */
export interface OutboxEntry {
  readonly seq: number;
  readonly ts_ms: number;
  readonly historical: boolean;
  readonly body: Uint8Array;
  /** Set on the `dropped` records the outbox writes when it drops segments. */
  readonly dropped?: boolean;
}

/** Result of {@link scanSegment}. */
export interface SegmentScan {
  readonly entries: OutboxEntry[];
  /** Offset just past the last intact frame. */
  readonly end: number;
  /** Why the scan stopped before the end of the bytes, if it did. */
  readonly stopped?: string;
}

/**
 * Frames one entry.
 *
 * @example
 * ```ts
 * const bytes = encodeEntry({ seq: 7, ts_ms: 1, historical: true, body: Buffer.from("{}") });
 * ```
 */
export function encodeEntry(entry: OutboxEntry): Buffer {
  const frame = Buffer.allocUnsafe(ENTRY_HEADER_BYTES + entry.body.length);
  frame.writeUInt32BE(entry.body.length, 0);
  frame.writeBigUInt64BE(BigInt(entry.seq), 8);
  frame.writeBigUInt64BE(BigInt(entry.ts_ms), 16);
  frame[24] = (entry.historical ? 1 : 0) | (entry.dropped ? 2 : 0);
  frame.set(entry.body, ENTRY_HEADER_BYTES);
  frame.writeUInt32BE(crc32(frame.subarray(8)), 4);
  return frame;
}

/**
 * Reads the intact frames at the start of `bytes`; stops at the first
 * partial or damaged one (or a seq that does not follow the previous one)
 * and says why. Never throws. `afterSeq` skips older entries, `maxSeq`
 * stops before newer ones, `limit` caps the entries returned; `end` is
 * then just past the last frame taken or skipped.
 *
 * @example
 * ```ts
 * const scan = scanSegment(await readFile(path));
 * if (scan.stopped) console.log(`torn tail at ${scan.end}: ${scan.stopped}`);
 * ```
 */
export function scanSegment(bytes: Uint8Array, options: { limit?: number; afterSeq?: number; maxSeq?: number } = {}): SegmentScan {
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const entries: OutboxEntry[] = [];
  const limit = options.limit ?? Number.POSITIVE_INFINITY;
  let off = 0;
  let prev: number | undefined;
  while (off < buf.length && entries.length < limit) {
    if (buf.length - off < ENTRY_HEADER_BYTES) return { entries, end: off, stopped: "partial frame" };
    const len = buf.readUInt32BE(off);
    if (len > MAX_ENTRY_BODY) return { entries, end: off, stopped: `length ${len} out of range` };
    const end = off + ENTRY_HEADER_BYTES + len;
    if (end > buf.length) return { entries, end: off, stopped: "partial frame" };
    if (crc32(buf.subarray(off + 8, end)) !== buf.readUInt32BE(off + 4)) return { entries, end: off, stopped: "checksum mismatch" };
    const seq = Number(buf.readBigUInt64BE(off + 8));
    if (prev !== undefined && seq !== prev + 1) return { entries, end: off, stopped: `seq ${seq} does not follow ${prev}` };
    if (options.maxSeq !== undefined && seq > options.maxSeq) return { entries, end: off };
    prev = seq;
    if (options.afterSeq === undefined || seq > options.afterSeq) {
      entries.push({
        seq,
        ts_ms: Number(buf.readBigUInt64BE(off + 16)),
        historical: (buf[off + 24]! & 1) === 1,
        body: new Uint8Array(buf.subarray(off + ENTRY_HEADER_BYTES, end)),
        ...((buf[off + 24]! & 2) === 2 ? { dropped: true } : {}),
      });
    }
    off = end;
  }
  return { entries, end: off };
}
