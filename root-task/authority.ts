/**
 * Attach and authority: who a session is and what it may do. A ticket in
 * the attach's aname is verified (queen tickets against the queen key,
 * worker and bridge tickets against the boot key; over TLS with the device
 * certificate, the audience must be this appliance); the session's caller,
 * role policy and bind-aware path checks follow from it, its requests are
 * counted against a worker's budget, and its authority ends when the
 * ticket expires.
 * @module
 */
import {
  PermissionError,
  type Attachment,
  type AttachRequest,
  type Caller,
  type CountedOp,
  type Namespace,
} from "../nine-door/index.ts";
import { realPath } from "./binds.ts";
import { keyId } from "./keys.ts";
import { authorize, isAuthorized, isWorkerRole, normalisePath, visibleChildren, type PolicyCaller } from "./policy.ts";
import { SessionExpiry } from "./session-expiry.ts";
import type { WorkerState } from "./state.ts";
import { verifyTicket, type Ticket } from "./ticket.ts";

/** What authority needs from the appliance, given once. */
export interface AuthorityOptions {
  readonly queenPublicKey: Uint8Array;
  readonly bootPublicKey: Uint8Array;
  /** Whether NineDoor presents the device certificate: tickets over TLS must then name this appliance. */
  readonly deviceCert: boolean;
  /** The clock tickets are checked against; default `Date.now`. */
  readonly clock?: { now(): number };
  /** The namespace every session starts from (its binds are checked on each path). */
  readonly namespace: Namespace;
  /** A worker as the state knows it, to refuse tickets of workers that ended. */
  worker(id: string): WorkerState | undefined;
  /** Counts one request of worker `id` against its budget. */
  account(id: string, op: CountedOp): void;
  /** Ends the sessions of `caller` (ticket expired); returns how many. */
  revoke(caller: Caller, reason: string): number;
  audit(line: string): void;
}

/**
 * Turns attach requests into attachments.
 *
 * @example
 * ```ts
 * const authority = new Authority({ queenPublicKey, bootPublicKey, deviceCert: false, namespace, worker, account, revoke, audit });
 * const server = new NineServer({ root, attach: (req) => authority.attach(req) });
 * ```
 */
export class Authority {
  readonly #options: AuthorityOptions;
  readonly #expiry: SessionExpiry;

  constructor(options: AuthorityOptions) {
    this.#options = options;
    this.#expiry = new SessionExpiry({
      now: () => this.#now(),
      revoke: (caller, reason) => {
        const c = caller as Caller;
        if (options.revoke(c, reason) > 0) options.audit(`session of ${c.role} ${c.subject} closed: ${reason}`);
      },
    });
  }

  /**
   * Verifies the ticket of an attach and returns the session's attachment;
   * throws `permission: …` with what the caller can act on.
   *
   * @example
   * ```ts
   * const att = authority.attach({ uname: "queen", aname: ticket, peer: "tcp!127.0.0.1!5000", dialect: "9P2000" });
   * ```
   */
  attach(req: AttachRequest): Attachment {
    const o = this.#options;
    const ticket = this.#verify(req);
    const caller: PolicyCaller = { role: ticket.role, subject: ticket.sub, ...(ticket.mounts ? { mounts: ticket.mounts } : {}) };
    const worker = isWorkerRole(caller.role) ? caller.subject : undefined;
    if (worker) {
      // A ticket outlives its worker: refuse those of workers that ended.
      const w = o.worker(worker);
      if (w && w.status !== "running") throw new PermissionError(`${worker} is not running (${w.status}${w.reason ? `: ${w.reason}` : ""})`);
    }
    o.audit(`attach ${caller.role} ${caller.subject} from ${req.peer} dialect=${req.dialect}`);
    // Expiry ends the session's authority: every request checks it first.
    const session = this.#expiry.watch(caller, ticket.exp);
    const namespace = o.namespace;
    return {
      caller,
      namespace,
      detach: () => session.release(),
      authorize: (path, op) => {
        session.check();
        authorize(caller, path, op);
        // Through a bind, the path really reached must be allowed too: a bind never adds rights.
        const binds = namespace.binds();
        if (binds.length === 0) return;
        const canonical = normalisePath(path);
        const real = realPath(binds, canonical);
        if (real !== canonical) authorize(caller, real, op);
      },
      visible: (dir, names) => {
        const shown = visibleChildren(caller, dir, names);
        const binds = namespace.binds();
        if (binds.length === 0) return shown;
        // Through a bind, list only what the caller could walk to at the path really reached.
        const base = normalisePath(dir);
        return shown.filter((name) => {
          try {
            return isAuthorized(caller, realPath(binds, base === "/" ? `/${name}` : `${base}/${name}`), "walk");
          } catch {
            return false;
          }
        });
      },
      account: (op) => {
        session.check();
        if (worker) o.account(worker, op);
      },
    };
  }

  /** Stops the expiry timers. */
  close(): void {
    this.#expiry.close();
  }

  #now(): number {
    return this.#options.clock ? this.#options.clock.now() : Date.now();
  }

  #verify(req: AttachRequest): Ticket {
    const o = this.#options;
    if (req.aname === "") throw new PermissionError("no ticket: attach with the ticket in aname (cohesix ticket --role queen)");
    const now = this.#now();
    let ticket: Ticket;
    try {
      ticket = verifyTicket(req.aname, {
        keys: (role) => (role === "queen" ? [o.queenPublicKey] : [o.bootPublicKey]),
        now,
        audience: keyId(o.bootPublicKey),
        // Over TLS with the device certificate the client learned who we are.
        requireAudience: o.deviceCert && req.peer.startsWith("tls!"),
      });
    } catch (err) {
      throw refusalWithFacts(err, { queenKey: keyId(o.queenPublicKey), now });
    }
    // uname is what stock clients send (a user name or uid); when it names
    // a role it must agree with the ticket.
    const u = req.uname;
    const named = u === "queen" || /^(worker|bridge)[a-z0-9-]*(:.+)?$/.test(u);
    if (named && u !== ticket.role && u !== `${ticket.role}:${ticket.sub}`) {
      throw new PermissionError(`uname ${JSON.stringify(u)} does not match the ticket (${ticket.role}:${ticket.sub})`);
    }
    return ticket;
  }
}

/**
 * A ticket refusal with what the caller cannot see from outside: which
 * queen key this appliance trusts (a key id, not secret) when a signature
 * does not verify, and its clock when a ticket is out of its window.
 */
function refusalWithFacts(err: unknown, facts: { queenKey: string; now: number }): unknown {
  if (!(err instanceof PermissionError)) return err;
  if (err.detail === "ticket signature does not verify") return new PermissionError(`${err.detail}: this appliance trusts queen key ${facts.queenKey}`);
  if (/^ticket (expired at|not valid until)/.test(err.detail)) return new PermissionError(`${err.detail}: the appliance's clock reads ${new Date(facts.now).toISOString()}`);
  return err;
}
