/**
 * The 9P fuzz frame generator, shared by the CI fuzz test and
 * `npm run fuzz`. It makes batches of frames for one connection: valid
 * requests of every message type in both dialects, and mutations of them
 * (byte flips, truncations, size lies, bogus type ids, huge counts, strings
 * with NUL or invalid UTF-8, 17-name walks, duplicate tags, unknown fids,
 * flush storms). Everything comes from a seeded PRNG, so a failing seed
 * reproduces.
 *
 * Each batch also says what the server owes in return (`expect`): one reply
 * per tag for every frame the server must answer however it is handled, and
 * how the batch ends (the connection stays usable, is reset by Tversion, is
 * dropped by the server for a bad size field, or is left mid-frame).
 *
 * @example
 * ```ts
 * const gen = new FrameGenerator({ seed: 1, aname: ticket });
 * const batch = gen.batch({ msize: 8192, dialect: "9P2000.L" });
 * socket.write(Buffer.concat(batch.frames));
 * ```
 * @module
 */
import {
  decodeMessage,
  encodeMessage,
  Errno,
  fromLerror,
  fromRerror,
  NOFID,
  type Dialect,
  type Message,
  type MessageName,
  type RMessage,
  type TMessage,
} from "../../../nine-door/index.ts";
import { allNames, prng, samples } from "../wire/samples.ts";

export { prng };

/** How a batch leaves the connection. */
export type BatchEnd =
  /** Still synchronised: the next batch can follow. */
  | "open"
  /** Ends with a Tversion: the session is reset; negotiate again. */
  | "version"
  /** Ends with a size field the server refuses: it answers and hangs up. */
  | "fatal"
  /** Ends with a frame whose size field lies within limits: the client hangs up. */
  | "desync";

/** One batch of frames for one connection, and what the server owes. */
export interface Batch {
  readonly frames: Buffer[];
  /** Replies owed, by tag (a tag may be owed more than once). */
  readonly expect: Map<number, number>;
  readonly end: BatchEnd;
  /** How many frames of each kind, e.g. `flip` or `walk17`. */
  readonly kinds: Map<string, number>;
}

/** The connection state a batch is made for. */
export interface ConnState {
  readonly msize: number;
  readonly dialect: Dialect;
}

/** Options of `FrameGenerator`. */
export interface GeneratorOptions {
  readonly seed: number;
  /** The ticket for valid attaches (mutated attaches use garbage). */
  readonly aname: string;
  /** Names walks choose from; defaults to the appliance's. */
  readonly names?: readonly string[];
}

const NOTAG = 0xffff;
const requestNames = allNames.filter((n) => n[0] === "T" && n !== "Tversion" && n !== "Tflush");
const replyIds = allNames.filter((n) => n[0] === "R").map((n) => encodeMessage(samples[n]).readUInt8(4));
const applianceNames = ["proc", "boot", "sessions", "mem", "lifecycle", "state", "log", "queen.log", "queen", "ctl", "gpu", "worker", "..", "nope"];
const versions = ["9P2000", "9P2000.L", "9P2000.u", "9P2000.L.x", "9P3000", "", "unknown"];

/**
 * Makes batches of valid and malformed frames from a seed.
 *
 * @example
 * ```ts
 * const gen = new FrameGenerator({ seed: 7, aname: "ok" });
 * for (const f of gen.batch({ msize: 8192, dialect: "9P2000" }).frames) socket.write(f);
 * ```
 */
export class FrameGenerator {
  readonly #rand: () => number;
  readonly #aname: string;
  readonly #names: readonly string[];
  #tag = 1;

  constructor(options: GeneratorOptions) {
    this.#rand = prng(options.seed);
    this.#aname = options.aname;
    this.#names = options.names ?? applianceNames;
  }

  /** An integer in [0, n). */
  pick(n: number): number {
    return Math.floor(this.#rand() * n);
  }

  chance(p: number): boolean {
    return this.#rand() < p;
  }

  #oneOf<T>(xs: readonly T[]): T {
    return xs[this.pick(xs.length)]!;
  }

  /** A fresh tag, never NOTAG. */
  nextTag(): number {
    const t = this.#tag;
    this.#tag = this.#tag >= 0xfffe ? 1 : this.#tag + 1;
    return t;
  }

  /** A fid: mostly small ones the connection uses, sometimes unknown ones. */
  #fid(): number {
    const r = this.#rand();
    if (r < 0.8) return this.pick(12);
    if (r < 0.9) return 1000 + this.pick(1000);
    return this.chance(0.5) ? NOFID : this.pick(0x100000000);
  }

  #walkNames(): string[] {
    return Array.from({ length: this.pick(4) }, () => this.#oneOf(this.#names));
  }

  /** A valid request of any type with plausible fields. */
  validRequest(state: ConnState, tag: number): TMessage {
    const name = this.#oneOf(requestNames);
    const m = { ...samples[name], tag } as TMessage;
    const fid = this.#fid();
    switch (m.type) {
      case "Tattach":
        return { ...m, fid: this.pick(16), aname: this.chance(0.7) ? this.#aname : "garbage", ...(state.dialect === "9P2000.L" ? { nUname: 0 } : {}) };
      case "Tauth":
        return { ...m, afid: fid };
      case "Twalk":
        return { ...m, fid, newfid: this.chance(0.3) ? fid : this.pick(16), names: this.#walkNames() };
      case "Topen":
        return { ...m, fid, mode: this.#oneOf([0, 1, 2, 3, 0x10, 0x40, 0x11]) };
      case "Tlopen":
        return { ...m, fid, flags: this.#oneOf([0, 1, 2, 0o1000, 0o1001]) };
      case "Tread":
        return { ...m, fid, offset: this.chance(0.7) ? 0 : this.pick(1 << 20), count: this.chance(0.2) ? 0xffffffff : this.pick(state.msize) };
      case "Treaddir":
        return { ...m, fid, offset: this.pick(4), count: this.chance(0.2) ? 0xffffffff : this.pick(state.msize) };
      case "Twrite":
        return { ...m, fid, offset: this.pick(64), data: Buffer.from(this.#oneOf(['{"spawn":"heartbeat","ticks":1}', '{"spawn":"nope"}', "drain", "x", "{"])) };
      case "Tclunk":
      case "Tremove":
      case "Tstat":
      case "Tstatfs":
      case "Treadlink":
        return { ...m, fid };
      case "Tgetattr":
        return { ...m, fid };
      case "Tsetattr":
        return { ...m, fid, attr: { ...m.attr, valid: this.#oneOf([0, 0x8, 0x10, 0x1]) } };
      case "Twstat":
        return { ...m, fid };
      case "Tfsync":
        return { ...m, fid };
      default:
        return m;
    }
  }

  /**
   * A batch of frames for a connection in `state`. Most batches stay
   * synchronised; a few end with a Tversion, a refused size field, or a
   * frame cut short.
   */
  batch(state: ConnState): Batch {
    const frames: Buffer[] = [];
    const kinds = new Map<string, number>();
    const owed: number[] = [];
    const requests: number[] = [];
    const flushes: number[] = [];
    let flushed = false;
    const note = (kind: string) => kinds.set(kind, (kinds.get(kind) ?? 0) + 1);
    // Classifies a frame the way the server will see it.
    const add = (kind: string, frame: Buffer) => {
      note(kind);
      let d = decodeMessage(frame);
      // A mutation that happens to spell a Tversion would reset the session
      // mid-batch; turn it into an unknown type instead.
      if (d.ok && d.message.type === "Tversion") {
        frame[4] = 0xff;
        d = decodeMessage(frame);
      }
      frames.push(frame);
      if (!d.ok) {
        owed.push(d.tag ?? NOTAG);
      } else if (d.message.type[0] === "R") {
        owed.push(d.message.tag);
      } else if (d.message.type === "Tflush") {
        flushed = true;
        flushes.push(d.message.tag);
      } else {
        requests.push(d.message.tag);
      }
    };

    const n = 8 + this.pick(56);
    for (let i = 0; i < n; i++) {
      const tag = this.nextTag();
      const r = this.#rand();
      if (r < 0.3) {
        add("valid", encodeMessage(this.validRequest(state, tag)));
      } else if (r < 0.7) {
        const [kind, frame] = this.#mutated(state, tag);
        add(kind, frame);
      } else if (r < 0.75) {
        add("walk17", walk17(tag, this.#fid(), this.pick(16), this.#names));
      } else if (r < 0.82) {
        const [kind, frame] = this.#badString(tag);
        add(kind, frame);
      } else if (r < 0.86) {
        // Duplicate tags: the same tag twice in a row.
        const a = this.validRequest(state, tag);
        add("dup-tag", encodeMessage(a));
        add("dup-tag", encodeMessage(this.validRequest(state, tag)));
      } else if (r < 0.9) {
        // A flush storm over the tags of this batch and some unknown ones.
        const k = 4 + this.pick(24);
        for (let j = 0; j < k; j++) {
          const oldtag = this.chance(0.7) && requests.length > 0 ? this.#oneOf(requests) : this.pick(0x10000);
          add("flush", encodeMessage({ type: "Tflush", tag: this.nextTag(), oldtag }));
        }
      } else if (r < 0.94) {
        // A reply type sent to the server.
        const rn = this.#oneOf(allNames.filter((x) => x[0] === "R"));
        add("reply-type", encodeMessage({ ...samples[rn], tag } as Message));
      } else {
        // Unknown fids on every fid-taking request.
        const m = this.validRequest(state, tag);
        const far = { ...m, ...("fid" in m ? { fid: 0x7000_0000 + this.pick(1000) } : {}) } as TMessage;
        add("unknown-fid", encodeMessage(far));
      }
    }

    let end: BatchEnd = "open";
    const r = this.#rand();
    if (r < 0.04) {
      end = "version";
      const msize = this.chance(0.2) ? this.pick(4096) : state.msize;
      frames.push(encodeMessage({ type: "Tversion", tag: NOTAG, msize, version: this.#oneOf(versions) }));
      owed.push(NOTAG);
      note("version");
    } else if (r < 0.07) {
      end = "fatal";
      frames.push(this.#fatal(state, this.nextTag()));
      note("size-refused");
    } else if (r < 0.1) {
      end = "desync";
      frames.push(this.#desync(state, this.nextTag()));
      note("size-lie");
    }

    // Requests are owed a reply only when nothing may cancel them silently;
    // a Tversion cancels everything outstanding, Tflushes included.
    if (end !== "version") owed.push(...flushes);
    if (!flushed && end !== "version") owed.push(...requests);
    const expect = new Map<number, number>();
    for (const t of owed) expect.set(t, (expect.get(t) ?? 0) + 1);
    return { frames, expect, end, kinds };
  }

  /** A valid frame with one mutation whose size field stays consistent. */
  #mutated(state: ConnState, tag: number): [string, Buffer] {
    const valid = encodeMessage(this.validRequest(state, tag));
    const b = Buffer.from(valid);
    switch (this.pick(5)) {
      case 0: {
        for (let i = 1 + this.pick(4); i > 0; i--) {
          const at = 7 + this.pick(Math.max(1, b.length - 7));
          if (at < b.length) b[at]! ^= 1 + this.pick(255);
        }
        return ["flip", b];
      }
      case 1: {
        const t = Buffer.from(b.subarray(0, 7 + this.pick(Math.max(1, b.length - 7))));
        t.writeUInt32LE(t.length, 0);
        return ["truncate", t];
      }
      case 2: {
        b[4] = this.chance(0.5) ? this.#oneOf(replyIds) : this.pick(256);
        return ["bogus-type", b];
      }
      case 3: {
        // A huge count or length somewhere in the body.
        if (b.length >= 9) {
          const at = 7 + this.pick(b.length - 8);
          if (this.chance(0.5) || at + 4 > b.length) b.writeUInt16LE(0xffff - this.pick(16), at);
          else b.writeUInt32LE(0xffffffff - this.pick(16), at);
        }
        return ["huge-count", b];
      }
      default: {
        const at = 7 + this.pick(b.length - 6);
        const extra = Buffer.from(Array.from({ length: 1 + this.pick(8) }, () => this.pick(256)));
        const out = Buffer.concat([b.subarray(0, at), extra, b.subarray(at)]);
        out.writeUInt32LE(out.length, 0);
        return ["insert", out];
      }
    }
  }

  /** A walk or attach carrying a name with NUL or invalid UTF-8. */
  #badString(tag: number): [string, Buffer] {
    const bad = this.#oneOf([Buffer.from("pr\0oc"), Buffer.from([0xff, 0xfe]), Buffer.from([0xc3]), Buffer.from([0xed, 0xa0, 0x80]), Buffer.from("\0")]);
    if (this.chance(0.5)) {
      return ["bad-string", rawFrame(110, tag, [u32(this.pick(12)), u32(this.pick(16)), u16(1), str(bad)])];
    }
    return ["bad-string", rawFrame(104, tag, [u32(this.pick(16)), u32(NOFID), str(Buffer.from("queen")), str(bad)])];
  }

  /** A frame whose size field the server refuses (below 7 or above msize). */
  #fatal(state: ConnState, tag: number): Buffer {
    if (this.chance(0.3)) {
      const b = Buffer.alloc(4 + this.pick(3));
      b.writeUInt32LE(this.pick(7), 0);
      return b;
    }
    const b = encodeMessage({ type: "Tclunk", tag, fid: 1 });
    b.writeUInt32LE(state.msize + 1 + this.pick(0x100000000 - state.msize - 1), 0);
    return b;
  }

  /** A frame whose size field lies within limits, or a frame cut short. */
  #desync(state: ConnState, tag: number): Buffer {
    const b = encodeMessage(this.validRequest(state, tag));
    if (this.chance(0.5)) return b.subarray(0, this.pick(b.length));
    b.writeUInt32LE(b.length + 1 + this.pick(state.msize - b.length), 0);
    return b;
  }
}

/** A hand-built frame: size[4] type[1] tag[2] then the parts. */
export function rawFrame(type: number, tag: number, parts: Buffer[]): Buffer {
  const body = Buffer.concat(parts);
  const b = Buffer.alloc(7 + body.length);
  b.writeUInt32LE(b.length, 0);
  b.writeUInt8(type, 4);
  b.writeUInt16LE(tag, 5);
  body.copy(b, 7);
  return b;
}

function u16(n: number): Buffer {
  const b = Buffer.alloc(2);
  b.writeUInt16LE(n);
  return b;
}

function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n >>> 0);
  return b;
}

function str(bytes: Buffer): Buffer {
  return Buffer.concat([u16(bytes.length), bytes]);
}

/** A Twalk of 17 names (one more than MAXWELEM), which encoders refuse to build. */
export function walk17(tag: number, fid: number, newfid: number, names: readonly string[]): Buffer {
  const parts = [u32(fid), u32(newfid), u16(17)];
  for (let i = 0; i < 17; i++) parts.push(str(Buffer.from(names[i % names.length]!)));
  return rawFrame(110, tag, parts);
}

/**
 * The error class of a reply (`not found`, `invalid`, ...), or undefined for
 * a success. An Rlerror with a more precise errno than its class default
 * (EBADF, EISDIR, ...) is named by that errno.
 */
export function errorClassOf(reply: RMessage): string | undefined {
  if (reply.type === "Rerror") return fromRerror(reply.ename).errorClass;
  if (reply.type === "Rlerror") {
    const cls = fromLerror(reply.ecode).errorClass;
    if (cls !== "io" || reply.ecode === Errno.EIO) return cls;
    return Object.entries(Errno).find(([, n]) => n === reply.ecode)?.[0] ?? `errno ${reply.ecode}`;
  }
  return undefined;
}

/** Message names the generator sends valid samples of (every request type). */
export const fuzzedRequests: readonly MessageName[] = requestNames;
