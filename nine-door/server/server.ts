/**
 * The NineDoor server: accepts byte streams from any transport and runs one
 * `Session` per connection. It knows nothing about sockets.
 * @module
 */
import type { Duplex } from "node:stream";
import { Session, type SessionInfo } from "./session.ts";
import { defaultLimits, type ServerOptions, type SessionLimits } from "./types.ts";

/**
 * A 9P2000 / 9P2000.L server over a provider tree.
 *
 * @example
 * ```ts
 * const server = new NineServer({ root, attach: () => ({ caller: { role: "queen", subject: "queen" } }) });
 * const listener = await listen("tcp!127.0.0.1!0", (conn, peer) => server.accept(conn, peer.remote));
 * ```
 */
export class NineServer {
  readonly options: ServerOptions;
  readonly limits: SessionLimits;
  readonly #sessions = new Set<Session>();
  #nextId = 1;

  constructor(options: ServerOptions) {
    this.options = options;
    this.limits = { ...defaultLimits, ...options.limits };
  }

  /** Serves one connection until it closes. */
  accept(conn: Duplex, peer = "unknown"): Session {
    const session = new Session(conn, {
      id: this.#nextId++,
      peer,
      options: this.options,
      limits: this.limits,
      onClose: (s) => this.#sessions.delete(s),
    });
    this.#sessions.add(session);
    return session;
  }

  /** Live sessions. */
  get sessions(): readonly Session[] {
    return [...this.#sessions];
  }

  /** One record per live session, for /proc/sessions. */
  sessionInfo(): SessionInfo[] {
    return this.sessions.map((s) => s.info());
  }

  /**
   * Revokes every session with an attach whose caller matches: requests get
   * `closed: <reason>` and the connections drop. Returns how many.
   */
  revoke(match: (caller: { role: string; subject: string }) => boolean, reason: string): number {
    let n = 0;
    for (const s of this.#sessions) {
      if (s.callers.some((a) => match(a.caller))) {
        s.revoke(reason);
        n++;
      }
    }
    return n;
  }

  /** Drops every connection. */
  close(): void {
    for (const s of this.#sessions) s.close();
    this.#sessions.clear();
  }
}
