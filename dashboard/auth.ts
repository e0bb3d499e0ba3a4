/**
 * Who may use the dashboard: a one-time login token, swapped for a session
 * cookie (HttpOnly, SameSite=Strict), and the checks every request passes —
 * the cookie, the Host (no DNS rebinding) and, for a request that changes
 * state, the Origin (no cross-site POST).
 * @module
 */
import { createHash, randomBytes, timingSafeEqual } from "node:crypto";
import type { IncomingMessage } from "node:http";
import type { DashboardLimits } from "./limits.ts";

/** The session cookie's name. */
export const SESSION_COOKIE = "cohesix_dash";

/** Why a request was refused: the HTTP status and one line. */
export interface Refusal {
  readonly status: 401 | 403;
  readonly message: string;
}

function digest(text: string): Buffer {
  return createHash("sha256").update(text).digest();
}

/** Options of {@link Auth}. */
export interface AuthOptions {
  readonly limits: DashboardLimits;
  /** The login token; default 32 random bytes, base64url. */
  readonly token?: string;
  /** The cookie carries `Secure` (served over TLS). */
  readonly secure?: boolean;
}

/**
 * The login token and the sessions it opened.
 *
 * @example
 * ```ts
 * const auth = new Auth({ limits: DEFAULT_LIMITS });
 * const cookie = auth.redeem(auth.token); // "cohesix_dash=…; HttpOnly; SameSite=Strict; Path=/"
 * auth.redeem(auth.token); // undefined: the token works once
 * ```
 */
export class Auth {
  /** The one-time login token. */
  readonly token: string;
  readonly #limits: DashboardLimits;
  readonly #secure: boolean;
  #used = false;
  /** Session id (its sha256, hex) → expiry, ms; insertion order is age. */
  readonly #sessions = new Map<string, number>();

  constructor(options: AuthOptions) {
    this.token = options.token ?? randomBytes(32).toString("base64url");
    this.#limits = options.limits;
    this.#secure = options.secure === true;
  }

  /**
   * Swaps the login token for a new session: the `Set-Cookie` value, or
   * undefined when `given` is not the token or the token was used already.
   * The comparison takes the same time wherever the strings differ.
   */
  redeem(given: string): string | undefined {
    const ok = timingSafeEqual(digest(given), digest(this.token));
    if (!ok || this.#used) return undefined;
    this.#used = true;
    return this.open();
  }

  /** Opens a session and returns its `Set-Cookie` value; the oldest session goes past `max_sessions`. */
  open(): string {
    const id = randomBytes(32).toString("base64url");
    this.#sessions.set(digest(id).toString("hex"), Date.now() + this.#limits.session_ttl_s * 1000);
    while (this.#sessions.size > this.#limits.max_sessions) this.#sessions.delete(this.#sessions.keys().next().value!);
    return `${SESSION_COOKIE}=${id}; HttpOnly; SameSite=Strict; Path=/; Max-Age=${this.#limits.session_ttl_s}${this.#secure ? "; Secure" : ""}`;
  }

  /** Whether the request carries a live session cookie. */
  signedIn(req: IncomingMessage): boolean {
    const id = cookieOf(req.headers.cookie, SESSION_COOKIE);
    if (id === undefined) return false;
    const key = digest(id).toString("hex");
    const expires = this.#sessions.get(key);
    if (expires === undefined) return false;
    if (expires < Date.now()) {
      this.#sessions.delete(key);
      return false;
    }
    return true;
  }
}

/** The value of cookie `name` in a Cookie header. */
export function cookieOf(header: string | undefined, name: string): string | undefined {
  for (const part of (header ?? "").split(";")) {
    const eq = part.indexOf("=");
    if (eq > 0 && part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
  }
  return undefined;
}

/** Options of {@link checkRequest}. */
export interface OriginCheck {
  /** Host headers this server answers to (`127.0.0.1:8080`, `localhost:8080` …). */
  readonly hosts: ReadonlySet<string>;
  /** `http` or `https`. */
  readonly scheme: "http" | "https";
  /** Any Host is fine (a TLS listener off loopback, whose names are the certificate's). */
  readonly anyHost?: boolean;
}

/**
 * Refuses a request whose Host is not this server's (DNS rebinding) and a
 * state-changing request (anything but GET and HEAD) that is cross-site:
 * its Origin must be this server's own, and a browser's `Sec-Fetch-Site`
 * must not say `cross-site`. Returns undefined when the request may go on.
 *
 * @example
 * ```ts
 * checkRequest(req, { hosts: new Set(["127.0.0.1:8080"]), scheme: "http" }); // { status: 403, message: "permission: …" } for a cross-site POST
 * ```
 */
export function checkRequest(req: IncomingMessage, check: OriginCheck): Refusal | undefined {
  const host = req.headers.host ?? "";
  if (!check.anyHost && !check.hosts.has(host)) return { status: 403, message: `permission: host ${JSON.stringify(host)} is not this dashboard's: open it as ${[...check.hosts][0]}` };
  if (req.method === "GET" || req.method === "HEAD") return undefined;
  const origin = req.headers.origin;
  if (origin === undefined) return { status: 403, message: "permission: a request that changes state needs the Origin header a browser sends: use the dashboard's page" };
  if (origin !== `${check.scheme}://${host}`) return { status: 403, message: `permission: cross-origin request from ${origin} refused` };
  if (req.headers["sec-fetch-site"] === "cross-site") return { status: 403, message: "permission: cross-site request refused" };
  return undefined;
}
