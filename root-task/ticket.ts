/**
 * Capability tickets (DESIGN §4): an Ed25519-signed msgpack payload naming a
 * role and subject, with an optional budget and mounts, a validity window and
 * a nonce. The text form is
 *
 * ```text
 * base64url(payload) "." base64url(signature over the payload bytes)
 * ```
 *
 * which has no `,` `=` or spaces, so it rides in a 9P `aname` and a mount
 * option, and is always shorter than {@link MAX_TICKET_LENGTH} (512) chars.
 *
 * A ticket may name its audience (`aud`): the boot key id of the one
 * appliance it is for (DESIGN §4). An appliance refuses a ticket naming
 * another, and — where the client could have learned the audience, over
 * TLS with the device certificate — one naming none ({@link VerifyOptions}).
 *
 * Verification is synchronous (attach is a hot-ish path) and every refusal is
 * a PermissionError with its own reason: malformed, unsupported version, bad
 * field, no trusted key, bad signature, expired, not yet valid.
 *
 * Queen tickets are signed by the queen key baked into the image; worker
 * tickets by the root task's boot key. The `keys` option of
 * {@link verifyTicket} takes the keys to trust, or a function from role to
 * keys, so the caller decides which key speaks for which role.
 *
 * @example
 * ```ts
 * import { mintTicket, verifyTicket } from "./ticket.ts";
 * const token = mintTicket({ role: "worker-heartbeat", sub: "worker-3", budget: { ticks: 100 } }, bootKey.privateKey);
 * const t = verifyTicket(token, { keys: (role) => (role === "queen" ? [queenPub] : [bootKey.publicKey]) });
 * t.sub; // "worker-3"
 * ```
 * @module
 */
import { randomBytes } from "node:crypto";
import { Packr, Unpackr } from "msgpackr";
import { InvalidError, PermissionError, TooBigError } from "../nine-door/index.ts";
import { KEY_BYTES, SIGNATURE_BYTES, decodeBase64url, sign, verifySignature } from "./keys.ts";
import { normalisePath } from "./policy.ts";

/**
 * The ticket format version this build writes and reads.
 *
 * @example
 * ```ts
 * decodeTicketUnverified(token).v === TICKET_VERSION; // true
 * ```
 */
export const TICKET_VERSION = 1;
/**
 * Every minted ticket is shorter than this many characters.
 *
 * @example
 * ```ts
 * mintTicket(claims, key).length < MAX_TICKET_LENGTH; // true
 * ```
 */
export const MAX_TICKET_LENGTH = 512;
/**
 * Bytes of random nonce in every ticket.
 *
 * @example
 * ```ts
 * decodeTicketUnverified(token).nonce.length === NONCE_BYTES; // true
 * ```
 */
export const NONCE_BYTES = 12;
/**
 * Default allowance, in seconds, for clocks that disagree.
 *
 * @example
 * ```ts
 * verifyTicket(token, { keys, skewS: DEFAULT_SKEW_S * 2 });
 * ```
 */
export const DEFAULT_SKEW_S = 60;
/**
 * Lifetime of a ticket, in seconds, when neither `ttlS` nor `budget.ttl_s`
 * says otherwise.
 *
 * @example
 * ```ts
 * const t = decodeTicketUnverified(mintTicket({ role: "queen", sub: "queen" }, key));
 * t.exp - t.iat === DEFAULT_TICKET_TTL_S; // true
 * ```
 */
export const DEFAULT_TICKET_TTL_S = 3600;

/**
 * Field limits that keep the worst-case ticket under
 * {@link MAX_TICKET_LENGTH}; minting and verifying both enforce them.
 *
 * @example
 * ```ts
 * if (name.length > TICKET_LIMITS.sub) throw new Error("subject too long");
 * ```
 */
export const TICKET_LIMITS = {
  /** Longest role, e.g. `worker-<name>`. */
  role: 32,
  /** Longest subject, e.g. `worker-17`. */
  sub: 32,
  /** Most mounts. */
  mounts: 4,
  /** Longest single mount path. */
  mountLength: 64,
  /** Most characters over all mount paths. */
  mountsTotal: 120,
} as const;

/**
 * A worker's allowance (DESIGN §4): `ops` counts walk/open/read/write,
 * `ticks` counts telemetry appends, `ttl_s` is wall time. Absent means
 * unlimited by the ticket.
 *
 * @example
 * ```ts
 * const budget: TicketBudget = { ticks: 100, ops: 500, ttl_s: 120 };
 * ```
 */
export interface TicketBudget {
  readonly ticks?: number;
  readonly ops?: number;
  readonly ttl_s?: number;
}

/**
 * What a ticket grants: the part the issuer chooses.
 *
 * @example
 * ```ts
 * const claims: TicketClaims = { role: "worker-gpu", sub: "worker-2", mounts: ["/gpu/GPU-0"] };
 * ```
 */
export interface TicketClaims {
  /** `queen`, `bridge`, `fleet`, `worker-heartbeat`, `worker-gpu`, or `worker-<name>`. */
  readonly role: string;
  /** Who: `queen`, `worker-3`… */
  readonly sub: string;
  readonly budget?: TicketBudget;
  /** Extra trees the holder may use, e.g. `["/gpu/GPU-0"]`. */
  readonly mounts?: readonly string[];
  /**
   * The audience: the boot key id (`keyId`, 16 hex digits) of the one
   * appliance this ticket is for. Absent: any appliance that trusts the
   * signing key and does not require an audience. Not with `mounts`: those
   * are worker tickets, signed by the appliance's own boot key.
   */
  readonly aud?: string;
}

/**
 * A whole ticket as signed: the claims plus version, validity window
 * (seconds since the epoch) and nonce.
 *
 * @example
 * ```ts
 * const t: Ticket = verifyTicket(token, { keys: [queenPub] });
 * new Date(t.exp * 1000);
 * ```
 */
export interface Ticket extends TicketClaims {
  readonly v: typeof TICKET_VERSION;
  readonly iat: number;
  readonly exp: number;
  readonly nonce: Uint8Array;
}

/**
 * Options for {@link mintTicket}.
 *
 * @example
 * ```ts
 * const opts: MintOptions = { ttlS: 86_400 };
 * ```
 */
export interface MintOptions {
  /** Current time in milliseconds since the epoch (default `Date.now()`). */
  readonly now?: number;
  /** Lifetime in seconds (default `budget.ttl_s`, else {@link DEFAULT_TICKET_TTL_S}). */
  readonly ttlS?: number;
  /** A fixed nonce (tests); 12 random bytes by default. */
  readonly nonce?: Uint8Array;
}

/**
 * The keys a verifier trusts: one list for every role, or a function giving
 * the list for a role.
 *
 * @example
 * ```ts
 * const keys: TicketKeys = (role) => (role === "queen" ? [queenPub] : [bootPub]);
 * ```
 */
export type TicketKeys = readonly Uint8Array[] | ((role: string) => readonly Uint8Array[]);

/**
 * Options for {@link verifyTicket}.
 *
 * @example
 * ```ts
 * const opts: VerifyOptions = { keys: [queenPub], now: Date.now() };
 * ```
 */
export interface VerifyOptions {
  readonly keys: TicketKeys;
  /** Current time in milliseconds since the epoch (default `Date.now()`). */
  readonly now?: number;
  /** Allowed clock disagreement in seconds, for `iat` and `exp` (default 60). */
  readonly skewS?: number;
  /** This verifier's own boot key id: a ticket naming another audience is refused. */
  readonly audience?: string;
  /** Refuse a ticket that names no audience (needs `audience`). Default false. */
  readonly requireAudience?: boolean;
}

/**
 * Signs a ticket for `claims` with a 32-byte private key and returns its
 * text. Throws InvalidError for claims that could never verify, TooBigError
 * if the text would reach {@link MAX_TICKET_LENGTH}.
 *
 * @example
 * ```ts
 * const token = mintTicket({ role: "queen", sub: "queen" }, queenKey, { ttlS: 86_400 });
 * ```
 */
export function mintTicket(claims: TicketClaims, privateKey: Uint8Array, options: MintOptions = {}): string {
  if (privateKey.length !== KEY_BYTES) throw new InvalidError(`ticket key must be ${KEY_BYTES} bytes, got ${privateKey.length}`);
  const now = options.now ?? Date.now();
  const iat = Math.floor(now / 1000);
  const ttlS = options.ttlS ?? claims.budget?.ttl_s ?? DEFAULT_TICKET_TTL_S;
  if (!Number.isSafeInteger(ttlS) || ttlS <= 0) throw new InvalidError(`ticket ttl must be a positive whole number of seconds, got ${ttlS}`);
  const nonce = options.nonce ?? new Uint8Array(randomBytes(NONCE_BYTES));

  const record: Record<string, unknown> = { v: TICKET_VERSION, role: claims.role, sub: claims.sub };
  if (claims.budget !== undefined) {
    const budget: Record<string, number> = {};
    for (const key of BUDGET_KEYS) {
      const value = claims.budget[key];
      if (value !== undefined) budget[key] = value;
    }
    record.budget = budget;
  }
  if (claims.mounts !== undefined) record.mounts = [...claims.mounts];
  if (claims.aud !== undefined) record.aud = claims.aud;
  record.iat = iat;
  record.exp = iat + ttlS;
  record.nonce = nonce;
  checkTicket(record, (detail) => new InvalidError(`ticket ${detail}`));

  const payload = packr.pack(record);
  const token = `${b64(payload)}.${b64(sign(payload, privateKey))}`;
  if (token.length >= MAX_TICKET_LENGTH) {
    throw new TooBigError(`ticket is ${token.length} chars, must be under ${MAX_TICKET_LENGTH}: shorten role, subject or mounts`);
  }
  return token;
}

/**
 * Checks a ticket's form, signature (against the keys trusted for its role)
 * and validity window; returns what it grants. Every refusal is a
 * PermissionError whose message says which check failed.
 *
 * @example
 * ```ts
 * const t = verifyTicket(aname, { keys: (role) => (role === "queen" ? [queenPub] : [bootPub]) });
 * const caller = { role: t.role, subject: t.sub, mounts: t.mounts };
 * ```
 */
export function verifyTicket(token: string, options: VerifyOptions): Ticket {
  const { payload, signature, ticket } = decode(token);
  const keys = typeof options.keys === "function" ? options.keys(ticket.role) : options.keys;
  if (keys.length === 0) throw new PermissionError(`no trusted key for role ${ticket.role}`);
  if (!keys.some((key) => verifySignature(signature, payload, key))) {
    throw new PermissionError("ticket signature does not verify");
  }
  const nowS = (options.now ?? Date.now()) / 1000;
  const skew = options.skewS ?? DEFAULT_SKEW_S;
  if (ticket.iat > nowS + skew) {
    throw new PermissionError(`ticket not valid until ${iso(ticket.iat)}: issued in the future (clocks more than ${skew} s apart?)`);
  }
  if (ticket.exp + skew <= nowS) throw new PermissionError(`ticket expired at ${iso(ticket.exp)}`);
  if (options.audience !== undefined) {
    if (ticket.aud !== undefined && ticket.aud !== options.audience) {
      throw new PermissionError(`ticket is for appliance ${ticket.aud}, this is ${options.audience}: mint one for this appliance (the CLI learns its id when it pins the certificate)`);
    }
    if (ticket.aud === undefined && options.requireAudience === true) {
      throw new PermissionError(`ticket names no audience: over TLS this appliance takes only tickets made for it (aud ${options.audience})`);
    }
  }
  return ticket;
}

/**
 * Decodes a ticket without checking its signature or validity window, for
 * diagnostics (`cohesix ticket show`). Still refuses malformed text with the
 * same PermissionErrors as {@link verifyTicket}. Never trust what it returns.
 *
 * @example
 * ```ts
 * const t = decodeTicketUnverified(token);
 * console.log(t.role, t.sub, new Date(t.exp * 1000).toISOString());
 * ```
 */
export function decodeTicketUnverified(token: string): Ticket {
  return decode(token).ticket;
}

// ---------------------------------------------------------------------------

const BUDGET_KEYS = ["ticks", "ops", "ttl_s"] as const;
const TICKET_KEYS = new Set(["v", "role", "sub", "budget", "mounts", "aud", "iat", "exp", "nonce"]);
const AUDIENCE = /^[0-9a-f]{16}$/;
/** Upper bound on text accepted for decoding; minted tickets stay far below. */
const MAX_ACCEPTED_LENGTH = 1024;
const ROLE = /^(?:queen|bridge|fleet|worker-[a-z0-9][a-z0-9-]*)$/;
const SUBJECT = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;

const packr = new Packr({ useRecords: false, variableMapSize: true });
const unpackr = new Unpackr({ useRecords: false, mapsAsObjects: true });

function b64(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("base64url");
}

function iso(seconds: number): string {
  return new Date(seconds * 1000).toISOString();
}

function malformed(detail: string): PermissionError {
  return new PermissionError(`malformed ticket: ${detail}`);
}

function decode(token: string): { payload: Uint8Array; signature: Uint8Array; ticket: Ticket } {
  if (typeof token !== "string" || token.length === 0) throw malformed("empty");
  if (token.length > MAX_ACCEPTED_LENGTH) throw malformed(`${token.length} chars, at most ${MAX_ACCEPTED_LENGTH}`);
  const parts = token.split(".");
  if (parts.length !== 2 || parts[0] === "" || parts[1] === "") {
    throw malformed("expected <payload>.<signature> in base64url (truncated?)");
  }
  const [payloadText, signatureText] = parts as [string, string];
  const payload = decodeBase64url(payloadText);
  if (payload === undefined) throw malformed("payload is not base64url");
  const signature = decodeBase64url(signatureText);
  if (signature === undefined) throw malformed("signature is not base64url");
  if (signature.length !== SIGNATURE_BYTES) {
    throw malformed(`signature is ${signature.length} bytes, expected ${SIGNATURE_BYTES} (truncated?)`);
  }
  let record: unknown;
  try {
    record = unpackr.unpack(payload);
  } catch {
    throw malformed("payload is not one msgpack value (truncated?)");
  }
  if (!isPlainObject(record)) throw malformed("payload is not a msgpack map");
  const version = record.v;
  if (version !== TICKET_VERSION) {
    if (typeof version === "number" && Number.isSafeInteger(version)) {
      throw new PermissionError(`unsupported ticket version ${version} (this build reads version ${TICKET_VERSION})`);
    }
    throw malformed("no version field");
  }
  return { payload, signature, ticket: checkTicket(record, (detail) => new PermissionError(`bad ticket ${detail}`)) };
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (typeof value !== "object" || value === null || Array.isArray(value)) return false;
  const proto: unknown = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}

function isCount(value: unknown): value is number {
  return typeof value === "number" && Number.isSafeInteger(value) && value >= 0;
}

/** Validates every field; `fail` builds the error (Invalid at mint, Permission at verify). */
function checkTicket(record: Record<string, unknown>, fail: (detail: string) => Error): Ticket {
  for (const key of Object.keys(record)) {
    if (!TICKET_KEYS.has(key)) throw fail(`field ${JSON.stringify(key).slice(0, 40)}: unknown field`);
  }
  const { role, sub, budget, mounts, aud, iat, exp, nonce } = record;
  if (typeof role !== "string" || role.length > TICKET_LIMITS.role || !ROLE.test(role)) {
    throw fail(`field role: must be queen, bridge, fleet or worker-<name> (a-z 0-9 -), at most ${TICKET_LIMITS.role} chars`);
  }
  if (typeof sub !== "string" || sub.length > TICKET_LIMITS.sub || !SUBJECT.test(sub)) {
    throw fail(`field sub: must be letters, digits, '.', '-', '_', at most ${TICKET_LIMITS.sub} chars`);
  }
  let checkedBudget: TicketBudget | undefined;
  if (budget !== undefined) {
    if (!isPlainObject(budget)) throw fail("field budget: must be a map of ticks, ops, ttl_s");
    const out: { ticks?: number; ops?: number; ttl_s?: number } = {};
    for (const key of Object.keys(budget)) {
      if (!(BUDGET_KEYS as readonly string[]).includes(key)) throw fail(`field budget: unknown key ${JSON.stringify(key).slice(0, 40)}`);
    }
    for (const key of BUDGET_KEYS) {
      const value = budget[key];
      if (value === undefined) continue;
      if (!isCount(value)) throw fail(`field budget.${key}: must be a whole number >= 0`);
      out[key] = value;
    }
    checkedBudget = out;
  }
  let checkedMounts: string[] | undefined;
  if (mounts !== undefined) {
    if (!Array.isArray(mounts) || mounts.length > TICKET_LIMITS.mounts) {
      throw fail(`field mounts: must be a list of at most ${TICKET_LIMITS.mounts} paths`);
    }
    checkedMounts = [];
    let total = 0;
    for (const mount of mounts as unknown[]) {
      if (typeof mount !== "string" || mount.length > TICKET_LIMITS.mountLength || !isCanonicalPath(mount) || mount === "/") {
        throw fail(`field mounts: each must be a normalised absolute path of at most ${TICKET_LIMITS.mountLength} chars`);
      }
      total += mount.length;
      checkedMounts.push(mount);
    }
    if (total > TICKET_LIMITS.mountsTotal) throw fail(`field mounts: ${total} chars in all, at most ${TICKET_LIMITS.mountsTotal}`);
  }
  if (aud !== undefined && (typeof aud !== "string" || !AUDIENCE.test(aud))) {
    throw fail("field aud: must be a boot key id, 16 lower-case hex digits");
  }
  // Keeps the worst case under MAX_TICKET_LENGTH: tickets with mounts are
  // worker tickets, signed by the appliance's own boot key, which already
  // makes them good on that appliance only.
  if (aud !== undefined && mounts !== undefined) throw fail("field aud: a ticket names mounts or an audience, not both");
  if (!isCount(iat)) throw fail("field iat: must be whole seconds since the epoch");
  if (!isCount(exp)) throw fail("field exp: must be whole seconds since the epoch");
  if (exp <= iat) throw fail("field exp: must be after iat");
  if (!(nonce instanceof Uint8Array) || nonce.length !== NONCE_BYTES) throw fail(`field nonce: must be ${NONCE_BYTES} bytes`);

  const ticket: {
    v: typeof TICKET_VERSION;
    role: string;
    sub: string;
    budget?: TicketBudget;
    mounts?: readonly string[];
    aud?: string;
    iat: number;
    exp: number;
    nonce: Uint8Array;
  } = { v: TICKET_VERSION, role, sub, iat, exp, nonce: new Uint8Array(nonce) };
  if (checkedBudget !== undefined) ticket.budget = checkedBudget;
  if (checkedMounts !== undefined) ticket.mounts = checkedMounts;
  if (aud !== undefined) ticket.aud = aud as string;
  return ticket;
}

function isCanonicalPath(path: string): boolean {
  try {
    return normalisePath(path) === path;
  } catch {
    return false;
  }
}
