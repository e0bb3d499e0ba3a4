/**
 * The fleet link's durable outbox (docs/fleet.md): every record the link
 * publishes is first appended here, on the state disk, and removed only
 * after the broker acknowledged it. It survives kill -9 and reboot.
 *
 * - **Segments.** `DIR/seg-<first seq>.log`, append-only, frames of
 *   `outbox-format.ts`. A new segment starts when the current one reaches
 *   `segmentBytes`. Open scans every segment; a damaged frame ends its
 *   segment (in the newest one it is the torn tail of a batch whose fsync
 *   never returned, and is cut), with an audit line.
 * - **Append** resolves after the batch's fdatasync (group commit: appends
 *   made while a batch is written go out together as the next batch). The
 *   seq is given when the batch is formed, so seqs follow the order of
 *   `append` calls, are gapless and continue across restarts.
 * - **Reads** see durable entries only, so a record never leaves the
 *   appliance with a seq that a cut tail could give to another record.
 * - **Acked watermark.** `ack(seq)` marks everything up to `seq` delivered;
 *   it is persisted in `DIR/acked` shortly after (write then rename). Losing
 *   the last few acks in a crash only re-sends those records, which
 *   consumers drop by seq (at-least-once). Segments wholly acknowledged are
 *   deleted, except the newest.
 * - **Bound.** The segments never hold more than `maxBytes` (default
 *   64 MiB): before a batch would pass it, the oldest whole segments are
 *   deleted, and the unacknowledged records lost with them are counted in
 *   a `dropped` record appended to the outbox (flag bit 1). When a
 *   `dropped` record is itself lost, the next one takes over its count, so
 *   kept records plus the counts of kept `dropped` records always equal
 *   the records appended and not yet delivered.
 * - **States** (`OutboxState`): `opening → ready → closed`, and
 *   `ready → failed` when a write or fsync fails (appends are refused;
 *   reopen to recover). Each transition goes to `onState`.
 *
 * @example
 * ```ts
 * const box = await Outbox.open("state/fleet-outbox", { maxBytes: 8 << 20 });
 * const e = await box.append(Buffer.from('{"kind":"audit","line":"hello"}'));
 * for (const x of await box.read(box.acked)) publish(x);
 * box.ack(e.seq);
 * await box.close();
 * ```
 * @module
 */
import { mkdir, open, readFile, readdir, rename, unlink, writeFile, type FileHandle } from "node:fs/promises";
import { join, resolve } from "node:path";
import { ClosedError, InvalidError, TooBigError, errorOfClass } from "../nine-door/index.ts";
import { ENTRY_HEADER_BYTES, type OutboxEntry, encodeEntry, scanSegment } from "./outbox-format.ts";

export type { OutboxEntry } from "./outbox-format.ts";

/** Default bound on the outbox's segments (64 MiB). */
export const DEFAULT_OUTBOX_BYTES = 64 * 1024 * 1024;
/** Smallest accepted `maxBytes` (64 KiB). */
export const MIN_OUTBOX_BYTES = 64 * 1024;
/** The file holding the acked watermark. */
export const ACKED_FILE = "acked";
/** Largest body one append takes (the record cap plus room). */
export const MAX_APPEND_BODY = 128 * 1024;

/** Named states of an outbox (STYLE 15). */
export type OutboxState = "opening" | "ready" | "failed" | "closed";

/** What a bound-triggered drop lost, as given to the `dropped` body. */
export interface DropInfo {
  readonly count: number;
  readonly first_seq: number;
  readonly last_seq: number;
  readonly bytes: number;
}

/** Options of {@link Outbox.open}. */
export interface OutboxOptions {
  /** Bound on the segments' bytes (default 64 MiB, at least 64 KiB). */
  maxBytes?: number;
  /** Size at which a new segment starts (default maxBytes/16, 4 KiB to 4 MiB). */
  segmentBytes?: number;
  /** Clock for `ts_ms` (default `Date.now`). */
  clock?: () => number;
  /** Audit lines: torn tails cut, records dropped. */
  onAudit?: (line: string) => void;
  /** Every state transition. */
  onState?: (from: OutboxState, to: OutboxState, why: string) => void;
  /** Delay before a new acked watermark is written (default 50 ms). */
  ackDelayMs?: number;
}

/** Counters of an open outbox. */
export interface OutboxStats {
  readonly bytes: number;
  readonly segments: number;
  readonly appended: number;
  readonly dropped: number;
  readonly syncs: number;
}

interface Segment {
  readonly first: number;
  /** Last seq held; `first - 1` when empty. */
  last: number;
  /** Durable bytes. */
  bytes: number;
  readonly path: string;
}

interface Pending {
  readonly body: Uint8Array;
  readonly ts_ms: number;
  readonly historical: boolean;
  readonly resolve: (e: OutboxEntry) => void;
  readonly reject: (e: unknown) => void;
}

const SEGMENT_NAME = /^seg-(\d{16})\.log$/;
const segmentName = (first: number): string => `seg-${String(first).padStart(16, "0")}.log`;
const READ_CHUNK = 256 * 1024;
/** Bodies of the newest durable entries kept in memory for readers that keep up (256 KiB). */
export const RECENT_BYTES = 256 * 1024;
/** Room kept for the `dropped` record a batch may carry. */
const DROPPED_ROOM = 512;

/**
 * An open outbox directory. One writer per directory.
 *
 * @example
 * ```ts
 * const box = await Outbox.open(dir);
 * await box.append(body, { historical: true });
 * ```
 */
export class Outbox {
  readonly #dir: string;
  readonly #maxBytes: number;
  readonly #segmentBytes: number;
  readonly #clock: () => number;
  readonly #onAudit: (line: string) => void;
  readonly #onState: (from: OutboxState, to: OutboxState, why: string) => void;
  readonly #ackDelayMs: number;
  #segments: Segment[];
  #file: FileHandle;
  #state: OutboxState = "opening";
  #queue: Pending[] = [];
  #flushing: Promise<void> | undefined;
  #nextSeq: number;
  #durableSeq: number;
  #acked: number;
  #ackWritten: number;
  #ackTimer: NodeJS.Timeout | undefined;
  #ackWriting: Promise<void> = Promise.resolve();
  #drop: DropInfo | undefined;
  #cursor: { first: number; offset: number; nextSeq: number } | undefined;
  #recent: OutboxEntry[] = [];
  #recentBytes = 0;
  #stats = { appended: 0, dropped: 0, syncs: 0 };

  private constructor(init: { dir: string; options: OutboxOptions; segments: Segment[]; file: FileHandle; acked: number }) {
    const o = init.options;
    this.#dir = init.dir;
    this.#maxBytes = o.maxBytes ?? DEFAULT_OUTBOX_BYTES;
    this.#segmentBytes = o.segmentBytes ?? Math.min(4 << 20, Math.max(4096, Math.floor(this.#maxBytes / 16)));
    this.#clock = o.clock ?? Date.now;
    this.#onAudit = o.onAudit ?? (() => {});
    this.#onState = o.onState ?? (() => {});
    this.#ackDelayMs = o.ackDelayMs ?? 50;
    this.#segments = init.segments;
    this.#file = init.file;
    const last = init.segments.at(-1)!;
    this.#durableSeq = last.last;
    this.#nextSeq = last.last + 1;
    this.#acked = Math.min(init.acked, this.#durableSeq);
    this.#ackWritten = this.#acked;
  }

  /**
   * Opens (creating if needed) the outbox in `dir`: scans its segments,
   * cuts a torn tail, reads the acked watermark.
   *
   * @example
   * ```ts
   * const box = await Outbox.open("state/fleet-outbox", { onAudit: (l) => audit.push(l) });
   * console.log(box.lastSeq, box.acked);
   * ```
   */
  static async open(dir: string, options: OutboxOptions = {}): Promise<Outbox> {
    const maxBytes = options.maxBytes ?? DEFAULT_OUTBOX_BYTES;
    if (!Number.isSafeInteger(maxBytes) || maxBytes < MIN_OUTBOX_BYTES) {
      throw new InvalidError(`fleet outbox: maxBytes must be an integer of at least ${MIN_OUTBOX_BYTES}, got ${maxBytes}`);
    }
    if (options.segmentBytes !== undefined && (!Number.isSafeInteger(options.segmentBytes) || options.segmentBytes < 1024 || options.segmentBytes > maxBytes / 4)) {
      throw new InvalidError(`fleet outbox: segmentBytes must be an integer from 1024 to maxBytes/4 (${Math.floor(maxBytes / 4)}), got ${options.segmentBytes}`);
    }
    const abs = resolve(dir);
    await mkdir(abs, { recursive: true });
    const audit = options.onAudit ?? (() => {});
    const acked = await readAcked(join(abs, ACKED_FILE), audit);
    const names = (await readdir(abs)).filter((n) => SEGMENT_NAME.test(n)).sort();
    const segments: Segment[] = [];
    for (const [i, name] of names.entries()) {
      const path = join(abs, name);
      const first = Number(SEGMENT_NAME.exec(name)![1]);
      const bytes = await readFile(path);
      const scan = scanSegment(bytes);
      const newest = i === names.length - 1;
      const firstSeq = scan.entries[0]?.seq;
      if (firstSeq !== undefined && firstSeq !== first) {
        audit(`fleet outbox: ${name} starts at seq ${firstSeq}, not ${first}: segment skipped`);
        continue;
      }
      const prev = segments.at(-1);
      if (prev && first !== prev.last + 1 && prev.last >= first) {
        audit(`fleet outbox: ${name} overlaps the segment before it: segment skipped`);
        continue;
      }
      if (scan.stopped) {
        audit(`fleet outbox: ${newest ? "cut torn tail" : "damaged frame ends"} ${name} at offset ${scan.end} (${bytes.length - scan.end} bytes): ${scan.stopped}`);
        if (newest) {
          const h = await open(path, "r+");
          try {
            await h.truncate(scan.end);
            await h.datasync();
          } finally {
            await h.close();
          }
        }
      }
      segments.push({ first, last: scan.entries.at(-1)?.seq ?? first - 1, bytes: scan.end, path });
    }
    if (segments.length === 0) {
      const first = acked + 1;
      const path = join(abs, segmentName(first));
      await (await open(path, "wx", 0o600)).close();
      await syncDir(abs);
      segments.push({ first, last: first - 1, bytes: 0, path });
    }
    const file = await open(segments.at(-1)!.path, "r+");
    const box = new Outbox({ dir: abs, options: { ...options, maxBytes }, segments, file, acked });
    box.#setState("ready", `${segments.length} segments, last seq ${box.lastSeq}, acked ${box.acked}`);
    return box;
  }

  /** Current state. */
  get state(): OutboxState {
    return this.#state;
  }

  /** Highest durable seq (0 when nothing was ever appended). */
  get lastSeq(): number {
    return this.#durableSeq;
  }

  /** Everything up to this seq was delivered. */
  get acked(): number {
    return this.#acked;
  }

  /** Every seq up to this one is delivered or dropped: `acked`, or just below the oldest record kept. */
  get floor(): number {
    return Math.max(this.#acked, this.#segments[0]!.first - 1);
  }

  /** Durable records not yet acknowledged (some may have been dropped). */
  get pending(): number {
    return this.#durableSeq - Math.max(this.#acked, this.#segments[0]!.first - 1);
  }

  /** Counters. */
  get stats(): OutboxStats {
    return { ...this.#stats, bytes: this.#bytes(), segments: this.#segments.length };
  }

  /**
   * Appends one body; resolves with its entry once it is durable. Rejects
   * with ClosedError after close or failure, TooBigError past 128 KiB.
   *
   * @example
   * ```ts
   * const { seq } = await box.append(Buffer.from('{"kind":"audit","line":"x"}'), { historical: !online });
   * ```
   */
  append(body: Uint8Array, options: { historical?: boolean; ts_ms?: number } = {}): Promise<OutboxEntry> {
    if (this.#state !== "ready") return Promise.reject(new ClosedError(`fleet outbox: ${this.#dir} is ${this.#state}`));
    if (body.length > MAX_APPEND_BODY) return Promise.reject(new TooBigError(`fleet outbox: body of ${body.length} bytes exceeds ${MAX_APPEND_BODY}`));
    return new Promise((resolve, reject) => {
      this.#queue.push({ body, ts_ms: options.ts_ms ?? this.#clock(), historical: options.historical ?? false, resolve, reject });
      this.#flushing ??= this.#flushLoop();
    });
  }

  /**
   * Durable entries with seq above `after`, in order, at most `limit`
   * (default 256) and about `maxBytes` of bodies (default 1 MiB). Entries
   * dropped by the bound are skipped.
   *
   * @example
   * ```ts
   * const batch = await box.read(box.acked, { limit: 32 });
   * ```
   */
  async read(after: number, options: { limit?: number; maxBytes?: number } = {}): Promise<OutboxEntry[]> {
    const limit = options.limit ?? 256;
    const maxBytes = options.maxBytes ?? 1 << 20;
    const out: OutboxEntry[] = [];
    let from = Math.max(after + 1, this.#segments[0]!.first);
    let taken = 0;
    const first = this.#recent[0]?.seq;
    if (first !== undefined && from >= first) {
      // The newest records, kept in memory since their batch was durable: the same entries a read of the file gives.
      for (let i = from - first; i < this.#recent.length && out.length < limit && taken < maxBytes; i++) {
        const e = this.#recent[i]!;
        out.push(e);
        taken += e.body.length;
      }
      return out;
    }
    while (out.length < limit && taken < maxBytes && from <= this.#durableSeq) {
      const seg = this.#segments.find((s) => s.last >= from);
      if (!seg) break;
      from = Math.max(from, seg.first);
      const c = this.#cursor;
      const offset = c && c.first === seg.first && c.nextSeq === from ? c.offset : 0;
      let got: { entries: OutboxEntry[]; end: number };
      try {
        got = await this.#readSegment(seg, offset, { afterSeq: from - 1, limit: limit - out.length, maxSeq: this.#durableSeq });
      } catch (err) {
        // Taken out by the bound (or acknowledged) while this read ran: go on with the next one.
        if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
        from = seg.last + 1;
        continue;
      }
      if (got.entries.length === 0) break;
      for (const e of got.entries) {
        out.push(e);
        taken += e.body.length;
      }
      from = got.entries.at(-1)!.seq + 1;
      this.#cursor = { first: seg.first, offset: got.end, nextSeq: from };
    }
    return out;
  }

  /**
   * Marks every record up to `seq` delivered. The watermark is written to
   * disk shortly after; wholly delivered segments are deleted.
   *
   * @example
   * ```ts
   * client.publish(topic, payload, { qos: 1 }, (err) => { if (!err) box.ack(entry.seq); });
   * ```
   */
  ack(seq: number): void {
    if (this.#state !== "ready" || seq <= this.#acked) return;
    this.#acked = Math.min(seq, this.#durableSeq);
    this.#ackTimer ??= setTimeout(() => {
      this.#ackTimer = undefined;
      this.#ackWriting = this.#ackWriting.then(() => this.#writeAcked()).catch((err) => this.#onAudit(`fleet outbox: could not write the acked watermark: ${String(err)}`));
    }, this.#ackDelayMs);
  }

  /**
   * Waits for queued appends, writes the acked watermark and closes.
   *
   * @example
   * ```ts
   * await box.close();
   * ```
   */
  async close(): Promise<void> {
    if (this.#state === "closed") return;
    await this.#flushing?.catch(() => {});
    if (this.#ackTimer) clearTimeout(this.#ackTimer);
    this.#ackTimer = undefined;
    await this.#ackWriting;
    if (this.#state === "ready") await this.#writeAcked().catch(() => {});
    await this.#file.close().catch(() => {});
    this.#setState("closed", "close()");
  }

  async #flushLoop(): Promise<void> {
    while (this.#queue.length > 0 && this.#state === "ready") {
      let n = 0;
      let bytes = 0;
      while (n < this.#queue.length && n < 4096 && (n === 0 || bytes < this.#segmentBytes)) bytes += this.#queue[n++]!.body.length;
      const batch = this.#queue.splice(0, n);
      try {
        await this.#writeBatch(batch);
      } catch (err) {
        const failure = errorOfClass("io", `fleet outbox: write to ${this.#dir} failed: ${err instanceof Error ? err.message : String(err)}: reopen the outbox`);
        this.#setState("failed", failure.message);
        for (const p of [...batch, ...this.#queue.splice(0)]) p.reject(failure);
      }
    }
    this.#flushing = undefined;
  }

  async #writeBatch(batch: Pending[]): Promise<void> {
    const frameBytes = batch.reduce((n, p) => n + ENTRY_HEADER_BYTES + p.body.length, 0);
    const victims = await this.#makeRoom(frameBytes + DROPPED_ROOM);
    const active = this.#segments.at(-1)!;
    if (active.bytes >= this.#segmentBytes) await this.#roll();
    const frames: Buffer[] = [];
    const entries: OutboxEntry[] = [];
    const written: OutboxEntry[] = [];
    const drop = this.#drop;
    if (drop) {
      // Historical like the append that made room for it: both were made while the broker was away, or neither.
      const e = { seq: this.#nextSeq++, ts_ms: this.#clock(), historical: batch[0]?.historical ?? false, dropped: true, body: droppedBody(drop) };
      frames.push(encodeEntry(e));
      written.push(e);
    }
    for (const p of batch) {
      const e: OutboxEntry = { seq: this.#nextSeq++, ts_ms: p.ts_ms, historical: p.historical, body: p.body };
      entries.push(e);
      written.push(e);
      frames.push(encodeEntry(e));
    }
    const data = Buffer.concat(frames);
    const seg = this.#segments.at(-1)!;
    try {
      let done = 0;
      while (done < data.length) {
        const { bytesWritten } = await this.#file.write(data, done, data.length - done, seg.bytes + done);
        done += bytesWritten;
      }
      await this.#file.datasync();
    } catch (err) {
      this.#nextSeq -= frames.length;
      throw err;
    }
    this.#stats.syncs += 1;
    this.#stats.appended += batch.length;
    // Deleted only now that the dropped record counting them is durable: a
    // crash in between re-sends them rather than losing them unaccounted.
    for (const old of victims) {
      await unlink(old.path).catch((err: NodeJS.ErrnoException) => {
        if (err.code !== "ENOENT") throw err;
      });
    }
    if (drop) {
      this.#drop = undefined;
      this.#onAudit(`fleet outbox: dropped ${drop.count} undelivered records (seq ${drop.first_seq}..${drop.last_seq}, ${drop.bytes} bytes): the outbox reached its ${this.#maxBytes}-byte bound`);
    }
    seg.bytes += data.length;
    seg.last = this.#nextSeq - 1;
    this.#durableSeq = seg.last;
    this.#remember(written);
    for (const [i, p] of batch.entries()) p.resolve(entries[i]!);
  }

  /** Keeps the newest durable entries (seqs contiguous, at most {@link RECENT_BYTES} of bodies) so that a reader keeping up reads them without I/O. */
  #remember(written: readonly OutboxEntry[]): void {
    for (const e of written) {
      this.#recent.push(e);
      this.#recentBytes += e.body.length;
    }
    let drop = 0;
    while (drop < this.#recent.length - 1 && this.#recentBytes > RECENT_BYTES) this.#recentBytes -= this.#recent[drop++]!.body.length;
    if (drop > 0) this.#recent.splice(0, drop);
  }

  /**
   * Takes the oldest segments out of the outbox until `incoming` more bytes
   * fit under the bound, and counts what they lose; the caller deletes
   * their files once the `dropped` record is durable.
   */
  async #makeRoom(incoming: number): Promise<Segment[]> {
    const victims: Segment[] = [];
    while (this.#bytes() + incoming > this.#maxBytes && this.#segments.length > 1) {
      const old = this.#segments.shift()!;
      victims.push(old);
      const lost = old.last > this.#acked ? await lostIn(old, this.#acked) : undefined;
      if (lost) {
        const prev = this.#drop;
        this.#drop = {
          count: (prev?.count ?? 0) + lost.count,
          first_seq: Math.min(prev?.first_seq ?? lost.first_seq, lost.first_seq),
          last_seq: old.last,
          bytes: (prev?.bytes ?? 0) + lost.bytes,
        };
        this.#stats.dropped += lost.fresh;
      }
      if (this.#cursor?.first === old.first) this.#cursor = undefined;
    }
    return victims;
  }

  async #roll(): Promise<void> {
    const first = this.#nextSeq;
    const path = join(this.#dir, segmentName(first));
    const h = await open(path, "wx", 0o600);
    try {
      await syncDir(this.#dir);
    } catch (err) {
      await h.close();
      throw err;
    }
    await this.#file.close();
    this.#file = h;
    this.#segments.push({ first, last: first - 1, bytes: 0, path });
  }

  async #readSegment(seg: Segment, offset: number, scan: { afterSeq: number; limit: number; maxSeq: number }): Promise<{ entries: OutboxEntry[]; end: number }> {
    const h = await open(seg.path, "r");
    try {
      let need = 0;
      for (;;) {
        const size = Math.min(Math.max(READ_CHUNK, need), seg.bytes - offset);
        if (size <= 0) return { entries: [], end: offset };
        const buf = Buffer.allocUnsafe(size);
        const { bytesRead } = await h.read(buf, 0, size, offset);
        const got = scanSegment(buf.subarray(0, bytesRead), scan);
        if (got.entries.length > 0) return { entries: got.entries, end: offset + got.end };
        if (got.end > 0) {
          offset += got.end; // whole frames at or below afterSeq, skipped
          need = 0;
          continue;
        }
        if (got.stopped === "partial frame" && bytesRead >= ENTRY_HEADER_BYTES && need === 0) {
          need = ENTRY_HEADER_BYTES + buf.readUInt32BE(0);
          continue;
        }
        return { entries: [], end: offset };
      }
    } finally {
      await h.close();
    }
  }

  async #writeAcked(): Promise<void> {
    const acked = this.#acked;
    if (acked === this.#ackWritten) return;
    const path = join(this.#dir, ACKED_FILE);
    await writeFile(`${path}.tmp`, `${acked}\n`, { mode: 0o600 });
    await rename(`${path}.tmp`, path);
    this.#ackWritten = acked;
    while (this.#segments.length > 1 && this.#segments[0]!.last <= acked) {
      const old = this.#segments.shift()!;
      if (this.#cursor?.first === old.first) this.#cursor = undefined;
      await unlink(old.path).catch(() => {});
    }
  }

  #bytes(): number {
    return this.#segments.reduce((n, s) => n + s.bytes, 0);
  }

  #setState(to: OutboxState, why: string): void {
    const from = this.#state;
    this.#state = to;
    this.#onState(from, to, why);
  }
}

/**
 * What deleting a segment loses: its records above `acked`. A `dropped`
 * record in it passes on what it counted, so the newest `dropped` record
 * delivered still accounts for every record lost before it.
 */
async function lostIn(seg: Segment, acked: number): Promise<(DropInfo & { fresh: number }) | undefined> {
  const scan = scanSegment(await readFile(seg.path), { afterSeq: acked });
  let count = 0;
  let fresh = 0;
  let bytes = 0;
  let first = Number.POSITIVE_INFINITY;
  for (const e of scan.entries) {
    if (e.dropped) {
      const info = parseDropped(e.body);
      count += info?.count ?? 1;
      bytes += info?.bytes ?? e.body.length;
      first = Math.min(first, info?.first_seq ?? e.seq);
    } else {
      count += 1;
      fresh += 1;
      bytes += ENTRY_HEADER_BYTES + e.body.length;
      first = Math.min(first, e.seq);
    }
  }
  return count === 0 ? undefined : { count, fresh, first_seq: first, last_seq: seg.last, bytes };
}

/** The body of the outbox's own `dropped` record: a dropped record without its head. */
function droppedBody(info: DropInfo): Uint8Array {
  return Buffer.from(JSON.stringify({ kind: "dropped", ...info }));
}

function parseDropped(body: Uint8Array): DropInfo | undefined {
  try {
    const v = JSON.parse(Buffer.from(body).toString("utf8")) as Partial<DropInfo>;
    if ([v.count, v.first_seq, v.last_seq, v.bytes].every((x) => Number.isSafeInteger(x))) return v as DropInfo;
  } catch {
    // fall through: counted as one record
  }
  return undefined;
}

async function readAcked(path: string, audit: (line: string) => void): Promise<number> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return 0;
    throw err;
  }
  const n = Number(text.trim());
  if (!/^\d{1,16}\n?$/.test(text) || !Number.isSafeInteger(n)) {
    audit(`fleet outbox: unreadable acked watermark ${JSON.stringify(text.slice(0, 40))}: resending everything kept`);
    return 0;
  }
  return n;
}

async function syncDir(path: string): Promise<void> {
  const h = await open(path, "r");
  try {
    await h.sync();
  } finally {
    await h.close();
  }
}
