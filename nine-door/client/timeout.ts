/**
 * The client's "no answer" failure: a peer that accepted the connection but
 * does not answer a request (a paused VM behind QEMU's host forward, a
 * server that is not 9P, an overloaded appliance). Class `io`, so it maps
 * like every other transport failure; callers that know where they dialled
 * match it with `instanceof` and add their own hint.
 * @module
 */
import { InvalidError, NineError } from "../errors.ts";

/**
 * A request, or version negotiation, got no answer in time.
 *
 * @example
 * ```ts
 * try {
 *   await client.attach({ aname: ticket });
 * } catch (err) {
 *   if (err instanceof NoAnswerError) console.error(`${addr} ${err.request} timed out after ${err.ms} ms`);
 * }
 * ```
 */
export class NoAnswerError extends NineError {
  /** The request that went unanswered: `Tversion`, `Tattach`, `Twalk`… */
  readonly request: string;
  /** How long the client waited, ms. */
  readonly ms: number;

  constructor(request: string, ms: number) {
    super("io", `no answer to ${request} in ${formatSeconds(ms)}`);
    this.name = "NoAnswerError";
    this.request = request;
    this.ms = ms;
  }
}

/**
 * `ms` as a short human duration: `5 s`, `0.5 s`.
 *
 * @example
 * ```ts
 * formatSeconds(5000); // "5 s"
 * ```
 */
export function formatSeconds(ms: number): string {
  const s = ms / 1000;
  return `${Number.isInteger(s) ? s : Number(s.toFixed(2))} s`;
}

/** Checks a timeout option: a finite number ≥ 0 (0 waits forever). */
export function checkTimeout(ms: number | undefined): number {
  const v = ms ?? 0;
  if (!Number.isFinite(v) || v < 0) throw new InvalidError(`timeoutMs must be a number ≥ 0, got ${String(ms)}`);
  return v;
}
