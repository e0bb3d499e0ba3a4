/**
 * Commands from the fleet and their replies (docs/fleet.md, "Commands"):
 * the appliance-side checks a command message passes before the link
 * forwards it to `/queen/ctl` (size, rate, shape, address), and the reply
 * record. The signature and the counter are not checked here: the root
 * task checks them on `/queen/ctl`, the one place that does. This file
 * knows nothing about MQTT or 9P.
 *
 * A command message is a signed-ctl envelope with `to` and `reply`:
 *
 * ```text
 * {"cmd":{"spawn":"heartbeat"},"nonce":"…","ctr":42,"to":"app-1","reply":"h-1","sig":"…"}
 * ```
 *
 * @example
 * ```ts
 * const cmd = checkCommand(payload, { id: "app-1" }); // throws too big: / invalid: / permission:
 * const reply = encodeReply({ v: 1, kind: "reply", id: "app-1", name: cmd.reply, ts_ms: Date.now(), ctr: cmd.ctr, last_ctr: 42, ok: true, result: { ok: true } });
 * ```
 * @module
 */
import { BusyError, InvalidError, PermissionError, TooBigError } from "../nine-door/index.ts";
import { MAX_RECORD_BYTES } from "./records.ts";

/** Default cap on one command message (16 KiB), checked before it is parsed. */
export const MAX_COMMAND_BYTES = 16 * 1024;

const NAME = /^[A-Za-z0-9._-]{1,64}$/;
const ENVELOPE_FIELDS = ["cmd", "nonce", "ctr", "to", "reply", "sig"] as const;

/** A command message whose shape and address passed: what the link forwards. */
export interface FleetCommand {
  /** The envelope as received, written unchanged to `/queen/ctl`. */
  readonly text: string;
  readonly ctr: number;
  readonly to: string;
  readonly reply: string;
}

/**
 * The reply to one command, on `<prefix>/<id>/reply/<name>`. `result` when
 * `ok`, `error` when not.
 */
export interface ReplyRecord {
  readonly v: 1;
  readonly kind: "reply";
  readonly id: string;
  /** The command's reply name. */
  readonly name: string;
  readonly ts_ms: number;
  /** The command's counter (0 when it could not be read). */
  readonly ctr: number;
  /** The appliance's last accepted counter after this command. */
  readonly last_ctr: number;
  readonly ok: boolean;
  readonly result?: Readonly<Record<string, unknown>>;
  readonly error?: string;
}

/**
 * The reply name of a payload, if one can be read (for a refusal's reply),
 * without trusting anything else in it. Never throws.
 *
 * @example
 * ```ts
 * replyNameOf(Buffer.from('{"reply":"h-1","cmd":5}')); // "h-1"
 * ```
 */
export function replyNameOf(payload: Uint8Array, options: { maxBytes?: number } = {}): string | undefined {
  if (payload.length > (options.maxBytes ?? MAX_COMMAND_BYTES)) return undefined;
  try {
    const v: unknown = JSON.parse(Buffer.from(payload).toString("utf8"));
    const reply = isPlainObject(v) ? v.reply : undefined;
    return typeof reply === "string" && NAME.test(reply) ? reply : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Checks a command message from the broker: size (before parsing), UTF-8
 * JSON, the envelope's exact fields with `to` and `reply`, and that `to` is
 * this appliance. Throws `too big:`, `invalid:` or `permission:`.
 *
 * @example
 * ```ts
 * const cmd = checkCommand(payload, { id: "app-1" });
 * await ctl.write(cmd.text);
 * ```
 */
export function checkCommand(payload: Uint8Array, options: { id: string; maxBytes?: number }): FleetCommand {
  const max = options.maxBytes ?? MAX_COMMAND_BYTES;
  if (payload.length > max) throw new TooBigError(`fleet command of ${payload.length} bytes exceeds ${max} (maxCommandBytes)`);
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(payload);
  } catch {
    throw new InvalidError("fleet command: not UTF-8");
  }
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (err) {
    throw new InvalidError(`fleet command: not JSON: ${(err as Error).message}`);
  }
  if (!isPlainObject(v)) throw new InvalidError("fleet command: not a JSON object");
  for (const key of Object.keys(v)) {
    if (!(ENVELOPE_FIELDS as readonly string[]).includes(key)) throw new InvalidError(`fleet command: unknown field ${JSON.stringify(key.slice(0, 64))}`);
  }
  for (const key of ENVELOPE_FIELDS) if (!Object.hasOwn(v, key)) throw new InvalidError(`fleet command: lacks ${key}`);
  const { cmd, nonce, ctr, to, reply, sig } = v;
  if (!isPlainObject(cmd)) throw new InvalidError("fleet command: cmd must be a command object");
  if (typeof nonce !== "string" || nonce.length < 8 || nonce.length > 64) throw new InvalidError("fleet command: nonce must be a string of 8 to 64 characters");
  if (typeof ctr !== "number" || !Number.isSafeInteger(ctr) || ctr <= 0) throw new InvalidError("fleet command: ctr must be a positive integer");
  if (typeof sig !== "string" || sig.length > 256) throw new InvalidError("fleet command: sig must be a base64url string");
  if (typeof to !== "string" || !NAME.test(to)) throw new InvalidError("fleet command: to must be an appliance id of 1-64 of A-Z a-z 0-9 . _ -");
  if (typeof reply !== "string" || !NAME.test(reply)) throw new InvalidError("fleet command: reply must be a name of 1-64 of A-Z a-z 0-9 . _ -");
  if (to !== options.id) throw new PermissionError(`fleet command for ${to} reached ${options.id}`);
  return { text, ctr, to, reply };
}

/**
 * Encodes a reply as compact JSON after checking it.
 *
 * @example
 * ```ts
 * client.publish(topic, Buffer.from(encodeReply(reply)), { qos: 1, retain: false }, cb);
 * ```
 */
export function encodeReply(reply: ReplyRecord): Uint8Array {
  checkReply(reply);
  const bytes = Buffer.from(JSON.stringify(reply), "utf8");
  if (bytes.length > MAX_RECORD_BYTES) throw new TooBigError(`fleet reply of ${bytes.length} bytes exceeds ${MAX_RECORD_BYTES}`);
  return bytes;
}

/**
 * Decodes hostile bytes into a reply: size cap first, then UTF-8, JSON and
 * the exact fields. Throws one `too big:` or `invalid:` error.
 *
 * @example
 * ```ts
 * const r = decodeReply(payload);
 * if (!r.ok) console.error(r.error);
 * ```
 */
export function decodeReply(bytes: Uint8Array, options: { maxBytes?: number } = {}): ReplyRecord {
  const max = options.maxBytes ?? MAX_RECORD_BYTES;
  if (bytes.length > max) throw new TooBigError(`fleet reply: ${bytes.length} bytes exceeds the ${max}-byte cap`);
  let value: unknown;
  try {
    value = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes));
  } catch (err) {
    throw new InvalidError(`fleet reply: not UTF-8 JSON: ${(err as Error).message}`);
  }
  return checkReply(value);
}

/**
 * Checks a reply field by field and returns it typed; throws one InvalidError.
 *
 * @example
 * ```ts
 * const r = checkReply(JSON.parse(text));
 * ```
 */
export function checkReply(value: unknown): ReplyRecord {
  if (!isPlainObject(value)) throw new InvalidError("fleet reply: not a JSON object");
  const allowed = ["v", "kind", "id", "name", "ts_ms", "ctr", "last_ctr", "ok", value.ok === true ? "result" : "error"];
  for (const key of Object.keys(value)) if (!allowed.includes(key)) throw new InvalidError(`fleet reply: unknown field ${JSON.stringify(key.slice(0, 64))}`);
  for (const key of allowed) if (!Object.hasOwn(value, key)) throw new InvalidError(`fleet reply: lacks ${key}`);
  const count = (x: unknown) => typeof x === "number" && Number.isSafeInteger(x) && x >= 0;
  if (value.v !== 1) throw new InvalidError("fleet reply: v must be 1");
  if (value.kind !== "reply") throw new InvalidError("fleet reply: kind must be reply");
  if (typeof value.id !== "string" || !NAME.test(value.id)) throw new InvalidError("fleet reply: id must be a topic-safe name");
  if (typeof value.name !== "string" || !NAME.test(value.name)) throw new InvalidError("fleet reply: name must be a topic-safe name");
  for (const key of ["ts_ms", "ctr", "last_ctr"]) if (!count(value[key])) throw new InvalidError(`fleet reply: ${key} must be an integer ≥ 0`);
  if (typeof value.ok !== "boolean") throw new InvalidError("fleet reply: ok must be true or false");
  if (value.ok && !isPlainObject(value.result)) throw new InvalidError("fleet reply: result must be an object");
  if (!value.ok && (typeof value.error !== "string" || value.error.length > 4096)) throw new InvalidError("fleet reply: error must be a string of at most 4096 characters");
  return value as unknown as ReplyRecord;
}

/** Limits of {@link CommandGate}. */
export interface CommandLimits {
  /** Commands taken per second, sustained (default 5). */
  readonly rate: number;
  /** Commands taken at once after a quiet spell (default 20). */
  readonly burst: number;
  /** Commands waiting for `/queen/ctl` at once (default 16). */
  readonly queue: number;
}

/** Default {@link CommandLimits}. */
export const DEFAULT_COMMAND_LIMITS: CommandLimits = { rate: 5, burst: 20, queue: 16 };

/**
 * The rate and queue bound on commands from the broker: a token bucket
 * (`rate` per second, `burst`) and at most `queue` commands waiting or
 * running. `take()` throws `busy:` past either.
 *
 * @example
 * ```ts
 * const gate = new CommandGate({ rate: 5, burst: 20, queue: 16 });
 * const done = gate.take(); // throws busy: when over
 * try { await forward(cmd); } finally { done(); }
 * ```
 */
export class CommandGate {
  readonly #limits: CommandLimits;
  readonly #clock: () => number;
  #tokens: number;
  #at: number;
  #pending = 0;

  constructor(limits: Partial<CommandLimits> = {}, clock: () => number = Date.now) {
    this.#limits = { ...DEFAULT_COMMAND_LIMITS, ...limits };
    for (const [k, x] of Object.entries(this.#limits)) {
      if (!(typeof x === "number" && x > 0 && Number.isFinite(x))) throw new InvalidError(`fleet: command ${k} must be a positive number, got ${String(x)}`);
    }
    this.#clock = clock;
    this.#tokens = this.#limits.burst;
    this.#at = clock();
  }

  /** The limits in force. */
  get limits(): CommandLimits {
    return this.#limits;
  }

  /** Takes one command, or throws `busy:`; returns the function that ends it. */
  take(): () => void {
    const now = this.#clock();
    this.#tokens = Math.min(this.#limits.burst, this.#tokens + ((now - this.#at) / 1000) * this.#limits.rate);
    this.#at = now;
    if (this.#pending >= this.#limits.queue) throw new BusyError(`fleet commands: ${this.#pending} already waiting (queue ${this.#limits.queue})`);
    if (this.#tokens < 1) throw new BusyError(`fleet commands: over ${this.#limits.rate}/s (burst ${this.#limits.burst})`);
    this.#tokens -= 1;
    this.#pending += 1;
    let ended = false;
    return () => {
      if (ended) return;
      ended = true;
      this.#pending -= 1;
    };
  }
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}
