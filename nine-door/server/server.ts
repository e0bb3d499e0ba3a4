/**
 * The NineDoor server: accepts byte streams from any transport and runs one
 * `Session` per connection. It knows nothing about sockets; it caps how many
 * connections it holds, in total and per source, and sees that a connection
 * that has not attached is the first to go when a cap is reached.
 * @module
 */
import type { Duplex } from "node:stream";
import { Session, type SessionInfo } from "./session.ts";
import { resolveLimits, type ServerLimits, type ServerOptions } from "./types.ts";

/** Connections the server turned away or dropped, since it started. */
export interface ServerStats {
  /** New connections closed at once: a cap was reached and every held connection had attached. */
  refused: number;
  /** Connections that had not attached, dropped to make room for a new one. */
  evicted: number;
  /** Connections that had not attached within `preauthDeadlineMs`. */
  expired: number;
}

/**
 * The source a connection counts against for `maxConnectionsPerPeer`: the
 * host of a `tcp!HOST!PORT` / `tls!HOST!PORT` peer, else the peer as given.
 *
 * @example
 * ```ts
 * sourceOf("tcp!10.0.2.2!40211"); // "tcp!10.0.2.2"
 * sourceOf("unix!/run/nd.sock");  // "unix!/run/nd.sock"
 * ```
 */
export function sourceOf(peer: string): string {
  const m = /^((?:tcp|tls)!.*)!\d+$/.exec(peer);
  return m ? m[1]! : peer;
}

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
  readonly limits: ServerLimits;
  /** Refused, evicted and expired connections so far (shown in /proc/sessions). */
  readonly stats: ServerStats = { refused: 0, evicted: 0, expired: 0 };
  /** Live sessions, oldest first. */
  readonly #sessions = new Set<Session>();
  readonly #bySource = new Map<string, Set<Session>>();
  #nextId = 1;

  /** @throws {InvalidError} a limit in `options.limits` that is not a positive integer. */
  constructor(options: ServerOptions) {
    this.options = options;
    this.limits = resolveLimits(options.limits);
  }

  /**
   * Serves one connection until it closes. When the total or this source's
   * cap is reached, the oldest connection of that scope that has not
   * attached is dropped to make room; when every one of them has attached,
   * the new connection is closed at once (the returned session is closed).
   */
  accept(conn: Duplex, peer = "unknown"): Session {
    const source = sourceOf(peer);
    const mine = this.#bySource.get(source) ?? new Set<Session>();
    const room =
      this.#makeRoom(mine, this.limits.maxConnectionsPerPeer) && this.#makeRoom(this.#sessions, this.limits.maxConnections);
    const session = new Session(conn, {
      id: this.#nextId++,
      peer,
      options: this.options,
      limits: this.limits,
      onClose: (s) => {
        this.#sessions.delete(s);
        mine.delete(s);
        if (mine.size === 0 && this.#bySource.get(source) === mine) this.#bySource.delete(source);
      },
      onExpire: () => this.stats.expired++,
    });
    if (!room) {
      this.stats.refused++;
      session.close();
      return session;
    }
    this.#sessions.add(session);
    mine.add(session);
    this.#bySource.set(source, mine);
    return session;
  }

  /** Drops the oldest unattached session of `scope` while it is at `cap`; false if none is left to drop. */
  #makeRoom(scope: Set<Session>, cap: number): boolean {
    while (scope.size >= cap) {
      let victim: Session | undefined;
      for (const s of scope) {
        if (!s.authenticated) {
          victim = s;
          break;
        }
      }
      if (!victim) return false;
      this.stats.evicted++;
      victim.close();
      // close() runs onClose synchronously; make sure it left the scope.
      scope.delete(victim);
    }
    return true;
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
   * The limits in force and the connection counters, as the first line of
   * /proc/sessions.
   *
   * @example
   * ```ts
   * server.limitsLine(); // "limits max_conns=1024 max_conns_per_peer=512 … refused=0 evicted=0 expired=0\n"
   * ```
   */
  limitsLine(): string {
    const l = this.limits;
    const s = this.stats;
    return (
      `limits max_conns=${l.maxConnections} max_conns_per_peer=${l.maxConnectionsPerPeer} ` +
      `preauth_max_frame=${l.preauthMaxFrame} preauth_deadline_ms=${l.preauthDeadlineMs} ` +
      `max_buffered_bytes=${l.maxBufferedBytes} max_outstanding=${l.maxOutstanding} max_fids=${l.maxFids} msize=${l.msize} ` +
      `conns=${this.#sessions.size} refused=${s.refused} evicted=${s.evicted} expired=${s.expired}\n`
    );
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
    this.#bySource.clear();
  }
}
