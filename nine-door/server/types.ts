/**
 * The server's contract with the appliance: how an attach becomes an
 * identity with a policy, and which limits apply per session.
 * @module
 */
import { InvalidError, type NineError } from "../errors.ts";
import type { Caller, MaybePromise, Node, RequestContext } from "../fs/node.ts";
import type { Dialect } from "../wire/types.ts";
import type { Position } from "../fs/namespace.ts";

/** Operations a policy is asked about. Walk is asked for every step. */
export type AccessOp = "walk" | "read" | "write" | "create" | "remove" | "stat";

/** Operations that budgets count (DESIGN §4: walk/open/read/write). */
export type CountedOp = "walk" | "open" | "read" | "write";

/** What a client presented in Tattach. */
export interface AttachRequest {
  readonly uname: string;
  /** Carries the ticket (DESIGN §4). */
  readonly aname: string;
  readonly nUname?: number;
  readonly dialect: Dialect;
  /** e.g. `tcp 127.0.0.1:40211`, for the audit log. */
  readonly peer: string;
}

/**
 * The result of a successful attach: who the client is and what it may do.
 * Every fid walked from this attach carries it.
 */
export interface Attachment {
  readonly caller: Caller;
  /** The tree this attach sees; defaults to the server's root. */
  readonly root?: Node;
  /** Throws a PermissionError when `caller` may not `op` at `path`. */
  authorize?(path: string, op: AccessOp): void;
  /** Names under `dirPath` the caller may see; directory reads list only these. */
  visible?(dirPath: string, names: readonly string[]): readonly string[];
  /** Counts one budgeted operation; throws a ClosedError when exhausted. */
  account?(op: CountedOp): void;
  /**
   * How names are walked for this attach (per-session binds live here);
   * defaults to plain `node.walk` from `root`.
   */
  readonly namespace?: Walker;
  /** Called once when the attach ends (its connection closes or a Tversion resets it): release what it holds. */
  detach?(): void;
}

/** A place in the namespace: a node and its absolute path (the namespace's `Position`). */
export type Place = Position;

/** Walks one name from a place; `..` goes to the parent, refused at the root. */
export interface Walker {
  step(at: Place, name: string, ctx: RequestContext): MaybePromise<Place>;
  /** The entries of the directory at `at`, with the walker's binds applied. */
  list?(at: Place, ctx: RequestContext): MaybePromise<readonly Node[]>;
}

/** Per-session limits (DESIGN §3; issue: fids, outstanding tags, buffered bytes). */
export interface SessionLimits {
  /** Largest msize the server accepts (client's is lowered to it). */
  readonly msize: number;
  readonly maxFids: number;
  /** Requests in flight at once; more are answered `busy:`. */
  readonly maxOutstanding: number;
  /**
   * Bytes one connection may make the server hold for it: queued replies
   * plus the replies its reads in flight may produce, and separately the
   * frames of its requests in flight. Past it, reads wait for the client
   * to take its replies and the server stops reading the connection.
   */
  readonly maxBufferedBytes: number;
  /** Largest frame accepted before a successful attach (Tversion, Tattach with a ticket). */
  readonly preauthMaxFrame: number;
  /** A connection that has not attached after this long is dropped, ms. */
  readonly preauthDeadlineMs: number;
}

/** Limits of the whole server: the per-session ones plus connection caps. */
export interface ServerLimits extends SessionLimits {
  /** Connections at once, all peers together. */
  readonly maxConnections: number;
  /**
   * Connections at once from one source address (the host of a TCP/TLS
   * peer; all Unix clients share the listening socket's name).
   */
  readonly maxConnectionsPerPeer: number;
}

/**
 * Defaults: 1 MiB + header msize so 1 MiB reads fit, generous but bounded
 * tables; a connection proves itself (attaches) within 10 s using frames of
 * at most 8 KiB; connection caps well above what one appliance serves.
 */
export const defaultLimits: ServerLimits = {
  msize: (1 << 20) + 24,
  maxFids: 4096,
  maxOutstanding: 256,
  maxBufferedBytes: 8 << 20,
  preauthMaxFrame: 8192,
  preauthDeadlineMs: 10_000,
  maxConnections: 1024,
  maxConnectionsPerPeer: 512,
};

/**
 * The limits with `overrides` applied, checked: each must be a positive
 * integer, msize at least 4096 and preauthMaxFrame at least 512.
 *
 * @throws {InvalidError} a limit that is not a positive integer or below its floor.
 *
 * @example
 * ```ts
 * resolveLimits({ maxConnectionsPerPeer: 32 }).maxConnections; // 1024
 * ```
 */
export function resolveLimits(overrides: Partial<ServerLimits> = {}): ServerLimits {
  const out = { ...defaultLimits };
  const floors: Partial<Record<keyof ServerLimits, number>> = { msize: 4096, preauthMaxFrame: 512 };
  for (const [key, value] of Object.entries(overrides) as Array<[keyof ServerLimits, number | undefined]>) {
    if (value === undefined) continue;
    if (!(key in defaultLimits)) throw new InvalidError(`server limits: unknown limit ${JSON.stringify(key)}: known are ${Object.keys(defaultLimits).join(", ")}`);
    const floor = floors[key] ?? 1;
    if (!Number.isSafeInteger(value) || value < floor) {
      throw new InvalidError(`server limits: ${key} must be an integer of at least ${floor}, got ${String(value)}`);
    }
    (out as Record<keyof ServerLimits, number>)[key] = value;
  }
  return out;
}

/**
 * The limits' names as /proc/sessions and `cohesix serve --limit` spell
 * them (`max_conns=1024`).
 */
export const LIMIT_NAMES: Readonly<Record<string, keyof ServerLimits>> = {
  max_conns: "maxConnections",
  max_conns_per_peer: "maxConnectionsPerPeer",
  preauth_max_frame: "preauthMaxFrame",
  preauth_deadline_ms: "preauthDeadlineMs",
  max_buffered_bytes: "maxBufferedBytes",
  max_outstanding: "maxOutstanding",
  max_fids: "maxFids",
  msize: "msize",
};

/**
 * Reads `NAME=N` settings (the names of {@link LIMIT_NAMES}, as
 * `cohesix serve --limit` takes them) into limits to pass to the server.
 *
 * @throws {InvalidError} an unknown name or a value that is not a positive integer.
 *
 * @example
 * ```ts
 * parseLimits(["max_conns_per_peer=64", "preauth_deadline_ms=5000"]);
 * // { maxConnectionsPerPeer: 64, preauthDeadlineMs: 5000 }
 * ```
 */
export function parseLimits(settings: readonly string[]): Partial<ServerLimits> {
  const out: Partial<Record<keyof ServerLimits, number>> = {};
  for (const setting of settings) {
    const m = /^([a-z_]+)=(\d+)$/.exec(setting);
    const key = m ? LIMIT_NAMES[m[1]!] : undefined;
    if (!m || key === undefined) {
      throw new InvalidError(`limit ${JSON.stringify(setting)}: expected NAME=N with NAME one of ${Object.keys(LIMIT_NAMES).join(", ")}`);
    }
    out[key] = Number(m[2]);
  }
  resolveLimits(out);
  return out;
}

/** A refusal or failure, reported for the audit log. */
export interface ServerEvent {
  readonly session: number;
  readonly peer: string;
  readonly caller?: Caller;
  /** The request, e.g. `Twalk`. */
  readonly request: string;
  readonly path?: string;
  readonly error: NineError;
}

/** Options of `NineServer`. */
export interface ServerOptions {
  /** The namespace root. */
  readonly root: Node;
  /** Checks the ticket in `aname`; throws a PermissionError to refuse. */
  attach(request: AttachRequest): MaybePromise<Attachment>;
  readonly limits?: Partial<ServerLimits>;
  /** Every permission refusal (attach, walk, open, write), for the audit log. */
  onRefusal?(event: ServerEvent): void;
  /** A handler threw something that is not a NineError (a provider bug). */
  onInternalError?(event: ServerEvent): void;
}
