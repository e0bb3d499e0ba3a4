/**
 * One client connection: the frame loop, version negotiation, the tag table,
 * Tflush, limits and backpressure. This is the only place that writes
 * replies to the wire. Requests run concurrently and are answered in
 * whatever order they finish (DESIGN §3); each is answered exactly once.
 * @module
 */
import type { Duplex } from "node:stream";
import {
  BusyError,
  ClosedError,
  InvalidError,
  NineError,
  PermissionError,
  TooBigError,
  toNineError,
} from "../errors.ts";
import { decodeMessage, encodeMessageChunks, FrameSplitter } from "../wire/index.ts";
import { IOHDRSZ, NOTAG, type Dialect, type RMessage, type TMessage } from "../wire/index.ts";
import { FidTable } from "./fids.ts";
import { handlers, type HandlerScope } from "./handlers.ts";
import { InFlight } from "./request.ts";
import type { AccessOp, Attachment, CountedOp, ServerOptions, SessionLimits } from "./types.ts";

type Handler = NonNullable<(typeof handlers)[keyof typeof handlers]>;

/** A read waiting for room in the connection's reply budget. */
interface Waiting {
  readonly req: InFlight;
  readonly msg: TMessage;
  readonly handler: Handler;
}

/** Smallest msize we negotiate (DESIGN §3). */
export const MIN_MSIZE = 4096;
/** A revoked client gets this long to read its `closed:` replies. */
const REVOKE_GRACE_MS = 2000;
/**
 * After refusing a frame's size the session answers, sends FIN and drops
 * what still arrives; past this many bytes, or this long, it hangs up hard
 * (a client streaming the rest of a 1 MiB frame is not read to its end).
 */
const REFUSED_DRAIN_BYTES = 64 * 1024;
const REFUSED_GRACE_MS = 2000;

/** A snapshot of a session for /proc/sessions. */
export interface SessionInfo {
  readonly id: number;
  readonly peer: string;
  readonly dialect: Dialect | "none";
  readonly msize: number;
  readonly fids: number;
  readonly outstanding: number;
  readonly callers: readonly string[];
}

/** One client connection. Created by `NineServer.accept`. */
export class Session implements HandlerScope {
  readonly id: number;
  readonly peer: string;
  readonly options: ServerOptions;
  readonly fids: FidTable;
  msize = 0;
  dialect: Dialect = "9P2000";
  #negotiated = false;
  readonly #conn: Duplex;
  readonly #limits: SessionLimits;
  readonly #splitter: FrameSplitter;
  readonly #inflight = new Map<number, InFlight>();
  readonly #attachments = new Set<Attachment>();
  #closed = false;
  #revoked: ClosedError | undefined;
  #paused = false;
  #tornDown = false;
  readonly #onClose: (s: Session) => void;
  readonly #onExpire: (() => void) | undefined;
  /** Whether an attach has succeeded (since the last Tversion). */
  #authenticated = false;
  /** A Tattach of an unauthenticated connection is running: read nothing more until it settles. */
  #attaching = false;
  /** Drops a connection that has not attached in time. */
  #deadline: NodeJS.Timeout | undefined;
  /** Reply bytes promised to reads in flight (their count), not yet queued on the stream. */
  #reserved = 0;
  /** Frame bytes of requests in flight. */
  #requestBytes = 0;
  /** Reads waiting for room in the reply budget, in arrival order. */
  readonly #waiting: Waiting[] = [];
  #pumping = false;
  #connPaused = false;
  /** Bytes dropped since the session stopped reading frames. */
  #drained = 0;
  #hangup: NodeJS.Timeout | undefined;

  constructor(
    conn: Duplex,
    opts: { id: number; peer: string; options: ServerOptions; limits: SessionLimits; onClose: (s: Session) => void; onExpire?: () => void },
  ) {
    this.id = opts.id;
    this.peer = opts.peer;
    this.options = opts.options;
    this.#limits = opts.limits;
    this.#conn = conn;
    this.#onClose = opts.onClose;
    this.#onExpire = opts.onExpire;
    this.fids = new FidTable(opts.limits.maxFids);
    this.#splitter = new FrameSplitter(opts.limits.preauthMaxFrame);
    this.#armDeadline();
    conn.on("data", (chunk: Buffer) => this.#onData(chunk));
    conn.on("end", () => this.#conn.end());
    conn.on("error", () => this.#teardown());
    conn.on("close", () => this.#teardown());
  }

  /** The identities attached on this connection. */
  get callers(): readonly Attachment[] {
    return [...this.#attachments];
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** Whether an attach on this connection has succeeded (since its last Tversion). */
  get authenticated(): boolean {
    return this.#authenticated;
  }

  info(): SessionInfo {
    return {
      id: this.id,
      peer: this.peer,
      dialect: this.#negotiated ? this.dialect : "none",
      msize: this.msize,
      fids: this.fids.size,
      outstanding: this.#inflight.size,
      callers: this.callers.map((a) => `${a.caller.role}:${a.caller.subject}`),
    };
  }

  /**
   * Revokes the session: every request in flight and every later one is
   * answered `closed: <reason>`, then the connection is dropped.
   */
  revoke(reason: string): void {
    if (this.#closed || this.#revoked) return;
    this.#revoked = new ClosedError(reason);
    this.#abortAll(this.#revoked, false);
    setTimeout(() => this.#conn.destroy(), REVOKE_GRACE_MS).unref();
  }

  /** Drops the connection now, cancelling everything in flight. */
  close(): void {
    this.#conn.destroy();
    this.#teardown();
  }

  authorize(att: Attachment, path: string, op: AccessOp, req: InFlight): void {
    if (!att.authorize) return;
    try {
      att.authorize(path, op);
    } catch (err) {
      const e = toNineError(err);
      if (e instanceof PermissionError || e.errorClass === "permission") {
        this.options.onRefusal?.({ session: this.id, peer: this.peer, caller: att.caller, request: req.type, path, error: e });
      }
      throw e;
    }
  }

  account(att: Attachment, op: CountedOp): void {
    att.account?.(op);
  }

  attached(att: Attachment, req: InFlight): void {
    if (req.stale || this.#closed) return;
    this.#attachments.add(att);
    if (this.#authenticated || this.#closed) return;
    // The connection has proved itself: full-size frames, no deadline.
    this.#authenticated = true;
    this.#clearDeadline();
    this.#splitter.setMaxFrame(this.msize);
  }

  #armDeadline(): void {
    if (this.#deadline !== undefined || this.#closed) return;
    this.#deadline = setTimeout(() => {
      this.#deadline = undefined;
      if (this.#authenticated || this.#closed) return;
      this.#onExpire?.();
      this.close();
    }, this.#limits.preauthDeadlineMs);
    this.#deadline.unref();
  }

  #clearDeadline(): void {
    if (this.#deadline === undefined) return;
    clearTimeout(this.#deadline);
    this.#deadline = undefined;
  }

  #onData(chunk: Buffer): void {
    if (this.#closed) {
      this.#drained += chunk.length;
      if (this.#drained > REFUSED_DRAIN_BYTES) this.#conn.destroy();
      return;
    }
    this.#splitter.push(chunk);
    this.#pump();
  }

  /**
   * Why the session reads no further frames for now: its reply buffer is
   * over the limit, an unauthenticated attach is being checked, or the
   * frames of its requests in flight fill its budget.
   */
  #held(): boolean {
    return (
      this.#paused ||
      this.#attaching ||
      this.#requestBytes > this.#limits.maxBufferedBytes ||
      // Reads wait for the client to take its replies: take no more requests
      // until it does. (Reads that wait behind blocked reads, with nothing
      // queued, do not stop the session reading: a Tflush must get through.)
      (this.#waiting.length > 0 && this.#conn.writableLength > 0)
    );
  }

  /**
   * Handles queued frames until the splitter is empty or the session is
   * held, then pauses or resumes the stream to match.
   * Fix: stopping at a pause (not only at the end of the chunk) keeps one
   * chunk of small requests from queueing thousands of replies after the
   * reply buffer is already over its limit.
   */
  #pump(): void {
    if (this.#pumping) return;
    this.#pumping = true;
    try {
      while (!this.#held() && !this.#closed) {
        let frame: Uint8Array | undefined;
        try {
          frame = this.#splitter.next();
        } catch (err) {
          // The stream cannot be resynchronised after a bad size field.
          let e = toNineError(err);
          if (e instanceof TooBigError && !this.#authenticated) {
            e = new TooBigError(`${e.message.replace(/^too big: /, "")} before attach: attach first, larger frames are accepted after it`);
          }
          this.#send(this.#errorReply(this.#splitter.refusal?.tag ?? NOTAG, e));
          this.#conn.end();
          this.#closed = true;
          this.#splitter.discard();
          this.#hangup = setTimeout(() => this.#conn.destroy(), REFUSED_GRACE_MS);
          this.#hangup.unref();
          return;
        }
        if (!frame) break;
        this.#onFrame(frame);
      }
    } finally {
      this.#pumping = false;
    }
    this.#flow();
  }

  /** Pauses the stream while the session is held, resumes it otherwise. */
  #flow(): void {
    if (this.#closed || this.#conn.destroyed) return;
    const held = this.#held();
    if (held && !this.#connPaused) {
      this.#connPaused = true;
      this.#conn.pause();
    } else if (!held && this.#connPaused) {
      this.#connPaused = false;
      this.#conn.resume();
    }
  }

  #onFrame(frame: Uint8Array): void {
    const res = decodeMessage(frame);
    if (!res.ok) {
      this.#send(this.#errorReply(res.tag ?? NOTAG, res.error));
      return;
    }
    const msg = res.message;
    if (msg.type[0] !== "T") {
      this.#send(this.#errorReply(msg.tag, new InvalidError(`${msg.type} is a reply: servers take requests only`)));
      return;
    }
    this.#dispatch(msg as TMessage, frame.length);
  }

  #dispatch(msg: TMessage, frameBytes: number): void {
    if (msg.type === "Tversion") return this.#version(msg);
    if (this.#revoked) return this.#send(this.#errorReply(msg.tag, this.#revoked));
    if (!this.#negotiated) {
      return this.#send(this.#errorReply(msg.tag, new InvalidError(`${msg.type} before Tversion: negotiate a version first`)));
    }
    if (msg.tag === NOTAG) return this.#send(this.#errorReply(msg.tag, new InvalidError("NOTAG is only for Tversion")));
    if (this.#inflight.has(msg.tag)) {
      return this.#send(this.#errorReply(msg.tag, new InvalidError(`duplicate tag ${msg.tag}: it is still in use`)));
    }
    if (this.#inflight.size >= this.#limits.maxOutstanding) {
      return this.#send(this.#errorReply(msg.tag, new BusyError(`too many outstanding requests (limit ${this.#limits.maxOutstanding})`)));
    }
    if (msg.type === "Tflush") return this.#flush(msg);

    const req = new InFlight(msg.tag, msg.type, "fid" in msg ? msg.fid : undefined);
    const handler = handlers[msg.type];
    if (!handler) return this.#send(this.#errorReply(msg.tag, new InvalidError(`${msg.type} is not a request`)));
    if (msg.type === "Tclunk" || msg.type === "Tremove") this.#abortFid(msg.fid);
    this.#inflight.set(msg.tag, req);
    req.frameBytes = frameBytes;
    this.#requestBytes += frameBytes;
    if (msg.type === "Tattach" && !this.#authenticated) this.#attaching = true;
    if (msg.type === "Tread" || msg.type === "Treaddir") {
      // A read may produce up to its count: it runs only when that fits in
      // the connection's reply budget (or nothing else is held for it).
      req.replyBound = Math.min(msg.count, Math.max(this.msize - IOHDRSZ, 0)) + IOHDRSZ;
      if (this.#waiting.length > 0 || !this.#fits(req.replyBound)) {
        this.#waiting.push({ req, msg, handler });
        return;
      }
    }
    this.#run(req, msg, handler);
  }

  /** Whether a reply of up to `bytes` fits in the reply budget now. */
  #fits(bytes: number): boolean {
    const queued = this.#conn.writableLength + this.#reserved;
    return queued === 0 || queued + bytes <= this.#limits.maxBufferedBytes;
  }

  /** Starts the reads that now fit in the reply budget, in arrival order. */
  #admit(): void {
    while (this.#waiting.length > 0 && !this.#closed) {
      const next = this.#waiting[0]!;
      if (!this.#fits(next.req.replyBound)) return;
      this.#waiting.shift();
      this.#run(next.req, next.msg, next.handler);
    }
  }

  #run(req: InFlight, msg: TMessage, handler: Handler): void {
    req.reserved = req.replyBound;
    this.#reserved += req.reserved;
    let result: RMessage | Promise<RMessage>;
    try {
      result = handler(this, msg as never, req);
    } catch (err) {
      return this.#finish(req, undefined, err);
    }
    if (result instanceof Promise) {
      result.then(
        (reply) => this.#finish(req, reply, undefined),
        (err: unknown) => this.#finish(req, undefined, err),
      );
    } else {
      this.#finish(req, result, undefined);
    }
  }

  /** Answers a request exactly once, then any Tflush waiting on it. */
  #finish(req: InFlight, reply: RMessage | undefined, err: unknown): void {
    if (this.#inflight.get(req.tag) === req) this.#inflight.delete(req.tag);
    if (req.done) return;
    req.done = true;
    this.#reserved -= req.reserved;
    this.#requestBytes -= req.frameBytes;
    if (req.type === "Tattach" && this.#attaching) this.#attaching = false;
    if (this.#closed) return;
    this.#answer(req, reply, err);
    // Room may have been made: start waiting reads, read further frames.
    this.#admit();
    if (!this.#pumping) this.#pump();
  }

  #answer(req: InFlight, reply: RMessage | undefined, err: unknown): void {
    // Fix: a request reset by Tversion used to send its reply (a success
    // arriving after the reset) under a tag the client may have reused.
    if (req.stale) {
      for (const flusher of req.flushers) flusher();
      return;
    }
    if (reply === undefined) {
      let e = toNineError(err);
      if (this.#revoked && req.aborted) e = this.#revoked;
      if (!(err instanceof NineError) && e.errorClass === "io") {
        this.options.onInternalError?.({ session: this.id, peer: this.peer, caller: req.caller, request: req.type, error: e });
      } else if (e.errorClass === "permission" && req.type === "Tattach") {
        this.options.onRefusal?.({ session: this.id, peer: this.peer, request: req.type, error: e });
      }
      // flush(5): a cancelled request is not answered; Rflush stands for it.
      if (!(req.flushed && req.aborted)) this.#send(this.#errorReply(req.tag, e));
    } else {
      this.#send(reply);
    }
    for (const flusher of req.flushers) flusher();
  }

  #flush(msg: Extract<TMessage, { type: "Tflush" }>): void {
    const old = this.#inflight.get(msg.oldtag);
    if (!old) return this.#send({ type: "Rflush", tag: msg.tag });
    // Hold the Tflush's own tag until its Rflush is out.
    const marker = new InFlight(msg.tag, "Tflush", undefined);
    this.#inflight.set(msg.tag, marker);
    old.flushed = true;
    old.flushers.push(() => {
      if (this.#inflight.get(msg.tag) === marker) this.#inflight.delete(msg.tag);
      if (!this.#closed && !marker.stale) this.#send({ type: "Rflush", tag: msg.tag });
      for (const f of marker.flushers) f();
    });
    this.#abort(old, new ClosedError(`request ${old.type} tag ${old.tag} flushed`));
  }

  #abortFid(fid: number): void {
    for (const req of [...this.#inflight.values()]) {
      if (req.fid === fid) this.#abort(req, new ClosedError(`fid ${fid} clunked`));
    }
  }

  /**
   * Aborts every request (revocation; with `stale`, a Tversion reset, whose
   * requests are answered with nothing). Reads waiting for the reply budget
   * are finished first, so none of them starts on the way.
   */
  #abortAll(reason: ClosedError, stale: boolean): void {
    const waiting = this.#waiting.splice(0);
    for (const req of this.#inflight.values()) {
      if (stale) {
        req.flushed = true;
        req.stale = true;
      }
      req.abort(reason);
    }
    for (const w of waiting) this.#finish(w.req, undefined, reason);
  }

  /** Aborts a request; one still waiting for the reply budget is finished at once. */
  #abort(req: InFlight, reason: ClosedError): void {
    req.abort(reason);
    const i = this.#waiting.findIndex((w) => w.req === req);
    if (i < 0) return;
    this.#waiting.splice(i, 1);
    this.#finish(req, undefined, reason);
  }

  /** Ends every attach of this connection: each lets go of what it holds (timers, counts). */
  #detachAll(): void {
    for (const att of this.#attachments) att.detach?.();
    this.#attachments.clear();
  }

  #version(msg: Extract<TMessage, { type: "Tversion" }>): void {
    // version(5): Tversion aborts everything outstanding and clunks all fids.
    this.#abortAll(new ClosedError("session reset by Tversion"), true);
    this.#inflight.clear();
    this.fids.clear();
    this.#detachAll();
    // Back to unauthenticated: small frames and a deadline to attach again.
    this.#authenticated = false;
    this.#armDeadline();
    if (msg.msize < MIN_MSIZE) {
      this.#negotiated = false;
      return this.#send({ type: "Rerror", tag: msg.tag, ename: `invalid: msize ${msg.msize} below ${MIN_MSIZE}` });
    }
    const msize = Math.min(msg.msize, this.#limits.msize);
    let version: string;
    if (msg.version.startsWith("9P2000.L")) {
      this.dialect = "9P2000.L";
      version = "9P2000.L";
    } else if (msg.version === "9P2000" || msg.version.startsWith("9P2000.")) {
      this.dialect = "9P2000";
      version = "9P2000";
    } else {
      this.#negotiated = false;
      return this.#send({ type: "Rversion", tag: msg.tag, msize, version: "unknown" });
    }
    this.msize = msize;
    this.#negotiated = true;
    this.#splitter.setMaxFrame(Math.min(msize, this.#limits.preauthMaxFrame));
    this.#send({ type: "Rversion", tag: msg.tag, msize, version });
  }

  #errorReply(tag: number, err: NineError): RMessage {
    if (this.#negotiated && this.dialect === "9P2000.L") return { type: "Rlerror", tag, ecode: err.errno };
    return { type: "Rerror", tag, ename: err.message };
  }

  #send(reply: RMessage): void {
    if (this.#closed || this.#conn.destroyed) return;
    const chunks = encodeMessageChunks(reply);
    let size = 0;
    for (const c of chunks) size += c.length;
    // Backpressure: a client that stops reading stops being read from, and
    // its reads wait for room (#fits), so the server holds about
    // maxBufferedBytes of replies for it.
    // Fix: resume from the write callback of the reply that crossed the
    // limit rather than from "drain", which Node emits only after a write
    // returned false; with a limit below the stream's highWaterMark it never
    // came and the session stayed paused for good.
    const over = !this.#paused && this.#conn.writableLength + size > this.#limits.maxBufferedBytes;
    if (over) {
      this.#paused = true;
      this.#flow();
    }
    const last = chunks.length - 1;
    // A reply with a payload (Rread) is a header and the data, kept apart so
    // the data is never copied; corked, they leave in one writev.
    if (last > 0) this.#conn.cork();
    for (let i = 0; i < last; i++) this.#conn.write(chunks[i]);
    this.#conn.write(chunks[last], over ? this.#onUnpause : this.#onWritten);
    if (last > 0) this.#conn.uncork();
  }

  /** A reply left the stream's buffer: reads waiting for room may fit now. */
  readonly #onWritten = (): void => {
    if (this.#closed) return;
    if (this.#waiting.length > 0) this.#admit();
    if (this.#connPaused) this.#pump();
  };

  /** The reply that paused the session is on its way: read again. */
  readonly #onUnpause = (): void => {
    this.#paused = false;
    if (this.#closed || this.#conn.destroyed) return;
    this.#admit();
    this.#pump();
  };

  #teardown(): void {
    if (this.#tornDown) return;
    this.#tornDown = true;
    this.#closed = true;
    this.#clearDeadline();
    if (this.#hangup !== undefined) clearTimeout(this.#hangup);
    const gone = new ClosedError("connection closed");
    for (const req of this.#inflight.values()) req.abort(gone);
    this.#inflight.clear();
    this.#waiting.length = 0;
    this.fids.clear();
    this.#detachAll();
    // Let go of buffered frames now, even if something still holds the session.
    this.#splitter.discard();
    this.#onClose(this);
  }
}
