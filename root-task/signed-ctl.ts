/**
 * Signed control (`--policy signed-ctl`): each queen command is wrapped in
 * an envelope `{"cmd":{…},"nonce":"…","ctr":n,"sig":"…"}` signed with the
 * queen key. The counter must rise strictly, by at most
 * {@link CTR_MAX_STEP} (2^20) past the last accepted one, so one envelope
 * cannot burn the counter space (a counter of 2^53−1 would leave no room for
 * another); the root task keeps the last accepted one in its commit log, so
 * a replayed or reordered envelope is refused even across restarts.
 *
 * What is signed: the UTF-8 bytes of `cohesix-ctl/v1\n<ctr>\n<nonce>\n<cmd>`
 * where `<cmd>` is `JSON.stringify` of the command object as parsed (key
 * order preserved), so signer and verifier agree without a canonical-JSON
 * library.
 *
 * A command from the fleet (docs/fleet.md, "Commands") also names, inside
 * what is signed, the appliance it is for (`to`) and the name of its reply
 * (`reply`, only with `to`): the signed bytes gain a line
 * `to=<id>` and a line `reply=<name>` before `<cmd>`, each only when its
 * field is present. A plain envelope is signed exactly as before, and the
 * two cannot be confused since `<cmd>` starts with `{`.
 * @module
 */
import { randomBytes } from "node:crypto";
import { InvalidError, PermissionError } from "../nine-door/index.ts";
import { decodeBase64url, sign, verifySignature } from "./keys.ts";
import { CTR_MAX_STEP } from "./limits.ts";

/** A verified envelope: the command text to parse and its counter. */
export interface OpenedEnvelope {
  readonly command: string;
  readonly ctr: number;
  /** The appliance id the envelope is addressed to, when it is. */
  readonly to?: string;
  /** The reply name a fleet command carries, when it does. */
  readonly reply?: string;
}

/** Where an envelope is addressed: the fields a fleet command adds to the signed bytes. */
export interface EnvelopeAddress {
  /** The appliance id (`[A-Za-z0-9._-]{1,64}`). */
  readonly to?: string;
  /** The reply name (`[A-Za-z0-9._-]{1,64}`); only with `to`. */
  readonly reply?: string;
}

const ADDRESS_NAME = /^[A-Za-z0-9._-]{1,64}$/;

/** An opened envelope with its command as parsed (what `command` is the JSON text of). */
export interface ParsedEnvelope extends OpenedEnvelope {
  readonly value: object;
}

function signedBytes(ctr: number, nonce: string, cmd: string, address: EnvelopeAddress = {}): Uint8Array {
  const to = address.to !== undefined ? `to=${address.to}\n` : "";
  const reply = address.reply !== undefined ? `reply=${address.reply}\n` : "";
  return new TextEncoder().encode(`cohesix-ctl/v1\n${ctr}\n${nonce}\n${to}${reply}${cmd}`);
}

function checkAddress(address: { to?: unknown; reply?: unknown }): EnvelopeAddress {
  const { to, reply } = address;
  if (to !== undefined && (typeof to !== "string" || !ADDRESS_NAME.test(to))) throw new InvalidError("envelope.to must be an appliance id of 1-64 of A-Z a-z 0-9 . _ -");
  if (reply !== undefined && (typeof reply !== "string" || !ADDRESS_NAME.test(reply))) throw new InvalidError("envelope.reply must be a name of 1-64 of A-Z a-z 0-9 . _ -");
  if (reply !== undefined && to === undefined) throw new InvalidError("envelope.reply needs envelope.to");
  return { ...(to !== undefined ? { to } : {}), ...(reply !== undefined ? { reply } : {}) } as EnvelopeAddress;
}

/**
 * Wraps a command in a signed envelope.
 *
 * @example
 * ```ts
 * const text = signEnvelope('{"kill":"worker-2"}', queenKey, { ctr: 8 });
 * ```
 */
export function signEnvelope(command: string, privateKey: Uint8Array, options: { ctr: number; nonce?: string } & EnvelopeAddress): string {
  let cmd: unknown;
  try {
    cmd = JSON.parse(command);
  } catch (err) {
    throw new InvalidError(`not JSON: ${(err as Error).message}`);
  }
  const address = checkAddress(options);
  const nonce = options.nonce ?? randomBytes(12).toString("base64url");
  const body = JSON.stringify(cmd);
  const sig = Buffer.from(sign(signedBytes(options.ctr, nonce, body, address), privateKey)).toString("base64url");
  return JSON.stringify({ cmd, nonce, ctr: options.ctr, ...address, sig });
}

/**
 * Signs a command for one appliance of the fleet (docs/fleet.md,
 * "Commands"): an envelope whose signed bytes also name the appliance
 * (`to`) and the reply name, to publish on `<prefix>/<to>/cmd`.
 *
 * @example
 * ```ts
 * const payload = signFleetCommand('{"spawn":"heartbeat"}', queenKey, { ctr: 43, to: "app-1", reply: "h-1765000000000-1" });
 * ```
 */
export function signFleetCommand(command: string, privateKey: Uint8Array, options: { ctr: number; nonce?: string; to: string; reply: string }): string {
  return signEnvelope(command, privateKey, options);
}

/**
 * Checks an envelope against the queen key and the last accepted counter.
 * Throws `permission: replay …` for a counter not above `lastCtr`,
 * `invalid: … counter … jumps …` for one more than {@link CTR_MAX_STEP}
 * above it, `permission: …` for a bad signature; `invalid: …` for a
 * malformed one.
 *
 * @example
 * ```ts
 * const { command, ctr } = openEnvelope(text, queenPub, { lastCtr: 7 });
 * ```
 */
export function openEnvelope(text: string, publicKey: Uint8Array, options: OpenOptions): OpenedEnvelope {
  const { value: _value, ...opened } = openParsedEnvelope(text, publicKey, options);
  return opened;
}

/** What {@link openEnvelope} checks an envelope against. */
export interface OpenOptions {
  /** The last accepted counter. */
  readonly lastCtr: number;
  /**
   * This appliance's id: an envelope with `to` is refused unless `to` is
   * this (`permission: envelope is for …`). Without it, any `to` is refused.
   */
  readonly applianceId?: string;
}

/**
 * {@link openEnvelope}, also handing back the command as parsed, so the
 * control pipeline does not parse it again.
 *
 * @example
 * ```ts
 * const { value, ctr } = openParsedEnvelope(text, queenPub, { lastCtr: 7 });
 * ```
 */
export function openParsedEnvelope(text: string, publicKey: Uint8Array, options: OpenOptions): ParsedEnvelope {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (err) {
    throw new InvalidError(`not JSON: ${(err as Error).message}`);
  }
  if (typeof v !== "object" || v === null || Array.isArray(v)) {
    throw new InvalidError('signed-ctl needs an envelope {"cmd":{…},"nonce":…,"ctr":n,"sig":…}');
  }
  const env = v as Record<string, unknown>;
  for (const k of Object.keys(env)) {
    if (!["cmd", "nonce", "ctr", "to", "reply", "sig"].includes(k)) throw new InvalidError(`unknown field ${JSON.stringify(k.slice(0, 64))} in envelope`);
  }
  const address = checkAddress(env);
  const { cmd, nonce, ctr, sig } = env;
  if (typeof cmd !== "object" || cmd === null) throw new InvalidError("envelope.cmd must be a command object");
  if (typeof nonce !== "string" || nonce.length < 8 || nonce.length > 64) throw new InvalidError("envelope.nonce must be a string of 8 to 64 characters");
  if (typeof ctr !== "number" || !Number.isSafeInteger(ctr) || ctr <= 0) throw new InvalidError("envelope.ctr must be a positive integer");
  if (typeof sig !== "string") throw new InvalidError("envelope.sig must be a base64url string");
  const body = JSON.stringify(cmd);
  const sigBytes = decodeBase64url(sig);
  if (!sigBytes || !verifySignature(sigBytes, signedBytes(ctr, nonce, body, address), publicKey)) {
    throw new PermissionError("envelope signature does not verify against the queen key");
  }
  if (address.to !== undefined && address.to !== options.applianceId) {
    throw new PermissionError(`envelope is for appliance ${address.to}, this is ${options.applianceId ?? "an appliance without a fleet id"}`);
  }
  if (ctr <= options.lastCtr) throw new StaleCounterError(ctr, options.lastCtr);
  if (ctr - options.lastCtr > CTR_MAX_STEP) {
    throw new InvalidError(
      `envelope.ctr ${ctr} jumps more than ${CTR_MAX_STEP} past the last accepted ${options.lastCtr}: use a counter from ${options.lastCtr + 1} to ${options.lastCtr + CTR_MAX_STEP} (read /queen/ctr)`,
    );
  }
  return { command: body, value: cmd, ctr, ...address };
}

/**
 * The refusal of an envelope whose counter is not above the last accepted
 * one: a replay, or another queen with the same key moved the counter
 * first. A `permission:` error (`permission: replay: counter 7 is not
 * above the last accepted 9`) that carries where the counter stands.
 *
 * @example
 * ```ts
 * try { openEnvelope(text, queenPub, { lastCtr: 9 }); } catch (err) { if (err instanceof StaleCounterError) err.lastCtr; } // 9
 * ```
 */
export class StaleCounterError extends PermissionError {
  /** The last counter the appliance accepted. */
  readonly lastCtr: number;
  constructor(ctr: number, lastCtr: number) {
    super(`replay: counter ${ctr} is not above the last accepted ${lastCtr}`);
    this.name = "StaleCounterError";
    this.lastCtr = lastCtr;
  }
}

/** Whether a ctl write looks like an envelope (has a `sig` and a `cmd`). */
export function isEnvelope(text: string): boolean {
  return /"sig"\s*:/.test(text) && /"cmd"\s*:/.test(text);
}
