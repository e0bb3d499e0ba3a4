/**
 * One request in flight: its tag, the fid it works on, and the abort signal
 * that Tflush, clunk, disconnect and revocation use to cancel it. The
 * AbortController is made only when a provider asks for the signal, so the
 * common synchronous request costs nothing extra.
 * @module
 */
import type { Caller, RequestContext } from "../fs/node.ts";

const nobody: Caller = { role: "none", subject: "none" };

/** A request in flight; doubles as the provider's RequestContext. */
export class InFlight implements RequestContext {
  readonly tag: number;
  readonly type: string;
  readonly fid: number | undefined;
  caller: Caller = nobody;
  /** Set by Tflush: the reply of a cancelled request is not sent. */
  flushed = false;
  /**
   * Set by Tversion: the session was reset and the tag may already name a
   * new request, so nothing is sent for this one (not even its Rflush).
   */
  stale = false;
  /** Bytes of the request's frame, held while it is in flight. */
  frameBytes = 0;
  /** Largest reply it may produce (reads: their count), for the reply budget. */
  replyBound = 0;
  /** What it holds of the reply budget while it runs. */
  reserved = 0;
  /** Answered (or settled without an answer); later outcomes are ignored. */
  done = false;
  /** Rflush replies waiting for this request to be answered. */
  readonly flushers: Array<() => void> = [];
  #controller: AbortController | undefined;
  #reason: unknown;

  constructor(tag: number, type: string, fid: number | undefined) {
    this.tag = tag;
    this.type = type;
    this.fid = fid;
  }

  get signal(): AbortSignal {
    if (!this.#controller) {
      this.#controller = new AbortController();
      if (this.#reason !== undefined) this.#controller.abort(this.#reason);
    }
    return this.#controller.signal;
  }

  get aborted(): boolean {
    return this.#reason !== undefined;
  }

  abort(reason: unknown): void {
    if (this.#reason !== undefined) return;
    this.#reason = reason;
    this.#controller?.abort(reason);
  }
}
