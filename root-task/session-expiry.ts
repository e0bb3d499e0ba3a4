/**
 * A ticket's expiry ends the authority of every session attached with it
 * (issue #11 item 7). Each attach is watched: every request it makes
 * checks the expiry first (a session past it gets `closed: ticket expired
 * …`), and a timer revokes the session at the expiry even when it is idle.
 * The expiry is the ticket's `exp` plus the clock skew attach allows, so a
 * session ends exactly when its ticket would stop attaching.
 * @module
 */
import { ClosedError } from "../nine-door/index.ts";
import { DEFAULT_SKEW_S } from "./ticket.ts";

/** setTimeout's largest delay (2^31 − 1 ms, ~24.8 days); longer waits re-arm. */
export const MAX_TIMER_MS = 2 ** 31 - 1;

/** Options of {@link SessionExpiry}. */
export interface SessionExpiryOptions {
  /** The appliance's clock in ms since the epoch (tickets are checked against it). */
  readonly now: () => number;
  /** Seconds past `exp` a ticket still attaches (default {@link DEFAULT_SKEW_S}). */
  readonly skewS?: number;
  /** Ends the sessions of `caller` with `closed: <reason>`. */
  readonly revoke: (caller: object, reason: string) => void;
}

/** What an attach gets back: the check each request runs. */
export interface WatchedSession {
  /** Throws `closed: ticket expired …` once the ticket is past its expiry. */
  check(): void;
  /** Stops watching (the session ended first): its timer is cleared. */
  release(): void;
}

/**
 * Watches attached sessions for their tickets' expiry.
 *
 * @example
 * ```ts
 * const expiry = new SessionExpiry({ now: Date.now, revoke: (c, why) => server.revoke((x) => x === c, why) });
 * const watched = expiry.watch(caller, ticket.exp);
 * watched.check(); // before every request
 * ```
 */
export class SessionExpiry {
  readonly #now: () => number;
  readonly #skewMs: number;
  readonly #revoke: (caller: object, reason: string) => void;
  readonly #timers = new Set<NodeJS.Timeout>();

  constructor(options: SessionExpiryOptions) {
    this.#now = options.now;
    this.#skewMs = (options.skewS ?? DEFAULT_SKEW_S) * 1000;
    this.#revoke = options.revoke;
  }

  /** Timers armed now (one per watched session not yet expired). */
  get armed(): number {
    return this.#timers.size;
  }

  /**
   * Watches `caller` (the object the server holds for the attach) whose
   * ticket expires at `expS` seconds since the epoch.
   */
  watch(caller: object, expS: number): WatchedSession {
    const endMs = expS * 1000 + this.#skewMs;
    let timer: NodeJS.Timeout | undefined;
    const reason = `ticket expired at ${new Date(expS * 1000).toISOString()}: attach again with a fresh ticket`;
    const arm = (): void => {
      const left = endMs - this.#now();
      const t = setTimeout(
        () => {
          this.#timers.delete(t);
          if (this.#now() >= endMs) this.#revoke(caller, reason);
          else arm();
        },
        Math.min(Math.max(0, left), MAX_TIMER_MS),
      );
      t.unref();
      this.#timers.add(t);
      timer = t;
    };
    arm();
    return {
      check: () => {
        if (this.#now() < endMs) return;
        // The clock may have jumped past a timer that is still far off.
        this.#revoke(caller, reason);
        throw new ClosedError(reason);
      },
      release: () => {
        if (timer === undefined) return;
        clearTimeout(timer);
        this.#timers.delete(timer);
        timer = undefined;
      },
    };
  }

  /** Clears every timer (shutdown). */
  close(): void {
    for (const t of this.#timers) clearTimeout(t);
    this.#timers.clear();
  }
}
