/**
 * The server's contract with the appliance: how an attach becomes an
 * identity with a policy, and which limits apply per session.
 * @module
 */
import type { NineError } from "../errors.ts";
import type { Caller, MaybePromise, Node, RequestContext } from "../fs/node.ts";
import type { Dialect } from "../wire/types.ts";

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
}

/** A place in the namespace: a node and its absolute path. */
export interface Place {
  readonly node: Node;
  readonly path: string;
}

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
  /** Reply bytes queued on the socket before the server stops reading. */
  readonly maxBufferedBytes: number;
}

/** Defaults: 1 MiB + header msize so 1 MiB reads fit, generous but bounded tables. */
export const defaultLimits: SessionLimits = {
  msize: (1 << 20) + 24,
  maxFids: 4096,
  maxOutstanding: 256,
  maxBufferedBytes: 8 << 20,
};

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
  readonly limits?: Partial<SessionLimits>;
  /** Every permission refusal (attach, walk, open, write), for the audit log. */
  onRefusal?(event: ServerEvent): void;
  /** A handler threw something that is not a NineError (a provider bug). */
  onInternalError?(event: ServerEvent): void;
}
