/**
 * The fleet link's records and topic tree (DESIGN §12, docs/fleet.md). This
 * file is the one place that encodes and decodes a record; it knows nothing
 * about files, the outbox or MQTT.
 *
 * A record is one member of the union {@link FleetRecord}, tagged by `kind`,
 * and travels as one compact JSON object:
 *
 * ```text
 * {"v":1,"kind":"telemetry","id":"app-1","seq":42,"ts_ms":1765000000000,"historical":false,"worker":"worker-1","data":{…}}
 * ```
 *
 * - `seq`: per appliance, monotonic across restarts (the outbox assigns it).
 *   Stream records (lifecycle, telemetry, audit, dropped) have distinct
 *   seqs, so a consumer removes duplicates by `(id, seq)`. Birth and death
 *   are connection records: their `seq` is the last stream seq assigned
 *   when the connection was made, and `session` pairs a birth with its death.
 * - `ts_ms`: origin time, never rewritten when a record is forwarded late.
 * - `historical`: true when the record was made while the broker was away.
 *
 * Topics: `<prefix>/<id>/{birth,death,lifecycle,telemetry/<worker>,audit,dropped,cmd,reply/<name>}`.
 *
 * @example
 * ```ts
 * import { encodeRecord, decodeRecord, topicFor } from "./records.ts";
 * const r = { v: 1, kind: "audit", id: "app-1", seq: 7, ts_ms: Date.now(), historical: false, line: "spawned worker-1" } as const;
 * const bytes = encodeRecord(r);
 * topicFor("cohesix", r); // "cohesix/app-1/audit"
 * decodeRecord(bytes); // equal to r
 * ```
 * @module
 */
import { InvalidError, TooBigError } from "../nine-door/index.ts";

/** Format version carried in every record as `v`. */
export const RECORD_VERSION = 1;
/** Default cap on one encoded record, on the way out and on the way in (64 KiB). */
export const MAX_RECORD_BYTES = 64 * 1024;
/** Deepest nesting accepted in a telemetry `data` value. */
export const MAX_DATA_DEPTH = 16;
/** Default topic prefix. */
export const DEFAULT_PREFIX = "cohesix";

/** Lifecycle states of DESIGN §5. */
export const LIFECYCLE_STATES = ["BOOTING", "DEGRADED", "ONLINE", "DRAINING", "QUIESCED", "OFFLINE"] as const;
/** One lifecycle state. */
export type LifecycleState = (typeof LIFECYCLE_STATES)[number];

/** Fields every record carries. */
export interface RecordHead {
  readonly v: 1;
  /** Appliance id (one topic level). */
  readonly id: string;
  readonly seq: number;
  /** Origin time, ms since the epoch. */
  readonly ts_ms: number;
  readonly historical: boolean;
}

/** Retained on `<prefix>/<id>/birth` when a connection is made. */
export interface BirthRecord extends RecordHead {
  readonly kind: "birth";
  /** Pairs this birth with the death registered as the same connection's will. */
  readonly session: number;
  readonly version: string;
  /** `/proc/boot` facts, `key=value` pairs as strings. */
  readonly boot: Readonly<Record<string, string>>;
  readonly lifecycle: LifecycleState;
  /** Records in the outbox not yet delivered when this connection was made (what is still to be forwarded). */
  readonly backlog: number;
  /** The last accepted signed-ctl counter (`/queen/ctr`), for the host's next command; optional. */
  readonly ctr?: number;
}

/** The connection's will on `<prefix>/<id>/death`. */
export interface DeathRecord extends RecordHead {
  readonly kind: "death";
  readonly session: number;
  readonly reason: string;
}

/** A lifecycle change. */
export interface LifecycleRecord extends RecordHead {
  readonly kind: "lifecycle";
  readonly state: LifecycleState;
  readonly reason: string;
}

/** One telemetry line of one worker, on `telemetry/<worker>`. */
export interface TelemetryRecord extends RecordHead {
  readonly kind: "telemetry";
  readonly worker: string;
  /** The JSON line as the worker wrote it (an object). */
  readonly data: Readonly<Record<string, unknown>>;
}

/** One line of `/log/queen.log`. */
export interface AuditRecord extends RecordHead {
  readonly kind: "audit";
  readonly line: string;
}

/** Says that the outbox dropped records it could not keep. */
export interface DroppedRecord extends RecordHead {
  readonly kind: "dropped";
  /** How many records were dropped. */
  readonly count: number;
  /** First and last seq of the dropped records (there may be gaps already delivered between them). */
  readonly first_seq: number;
  readonly last_seq: number;
  readonly bytes: number;
}

/** Every record of the fleet link. */
export type FleetRecord = BirthRecord | DeathRecord | LifecycleRecord | TelemetryRecord | AuditRecord | DroppedRecord;
/** A record's kind. */
export type RecordKind = FleetRecord["kind"];
/** A record before the outbox gave it `seq`, `ts_ms`, `historical`, `id` and `v`. */
export type RecordBody = FleetRecord extends infer R ? (R extends FleetRecord ? Omit<R, keyof RecordHead> : never) : never;

type FieldCheck = (value: unknown) => string | undefined;

const isString = (max: number): FieldCheck => (v) =>
  typeof v === "string" && v.length <= max ? undefined : `must be a string of at most ${max} characters`;
const isCount = (min: number): FieldCheck => (v) =>
  typeof v === "number" && Number.isSafeInteger(v) && v >= min ? undefined : `must be an integer ≥ ${min}`;
const isLifecycle: FieldCheck = (v) =>
  typeof v === "string" && (LIFECYCLE_STATES as readonly string[]).includes(v) ? undefined : `must be one of ${LIFECYCLE_STATES.join(" ")}`;
const isName: FieldCheck = (v) => (typeof v === "string" && NAME.test(v) ? undefined : "must be a topic-safe name (1-64 of A-Z a-z 0-9 . _ -)");
const isBoot: FieldCheck = (v) => {
  if (!isPlainObject(v)) return "must be an object of strings";
  const entries = Object.entries(v);
  if (entries.length > 256) return "has more than 256 entries";
  return entries.every(([k, x]) => k.length <= 64 && typeof x === "string" && x.length <= 1024)
    ? undefined
    : "must map names (≤ 64 characters) to strings (≤ 1024 characters)";
};
const isData: FieldCheck = (v) => (isPlainObject(v) && depth(v, 0) <= MAX_DATA_DEPTH ? undefined : `must be an object nested at most ${MAX_DATA_DEPTH} deep`);

/** Fields of each kind beyond the head, with their checks: the one table a new kind is added to. */
const KIND_FIELDS: { readonly [K in RecordKind]: Readonly<Record<string, FieldCheck>> } = {
  birth: { session: isCount(0), version: isString(128), boot: isBoot, lifecycle: isLifecycle, backlog: isCount(0), ctr: isCount(0) },
  death: { session: isCount(0), reason: isString(256) },
  lifecycle: { state: isLifecycle, reason: isString(256) },
  telemetry: { worker: isName, data: isData },
  audit: { line: isString(4096) },
  dropped: { count: isCount(1), first_seq: isCount(1), last_seq: isCount(1), bytes: isCount(0) },
};
/** Fields a kind may leave out (records of older appliances). */
const OPTIONAL_FIELDS: { readonly [K in RecordKind]?: readonly string[] } = { birth: ["ctr"] };
const HEAD_FIELDS: Readonly<Record<string, FieldCheck>> = {
  v: (v) => (v === RECORD_VERSION ? undefined : `must be ${RECORD_VERSION}`),
  kind: (v) => (typeof v === "string" && Object.hasOwn(KIND_FIELDS, v) ? undefined : `must be one of ${Object.keys(KIND_FIELDS).join(" ")}`),
  id: isName,
  seq: isCount(0),
  ts_ms: isCount(0),
  historical: (v) => (typeof v === "boolean" ? undefined : "must be true or false"),
};

/** Record kinds, in the order of {@link KIND_FIELDS}. */
export const RECORD_KINDS = Object.keys(KIND_FIELDS) as RecordKind[];

const NAME = /^[A-Za-z0-9._-]{1,64}$/;
const PREFIX = /^[A-Za-z0-9._-]{1,64}(\/[A-Za-z0-9._-]{1,64}){0,7}$/;

/**
 * Checks a record field by field (exact key set, types, bounds) and returns
 * it typed; throws one InvalidError naming the first bad field.
 *
 * @example
 * ```ts
 * const r = checkRecord(JSON.parse(text));
 * if (r.kind === "telemetry") console.log(r.worker);
 * ```
 */
export function checkRecord(value: unknown): FleetRecord {
  if (!isPlainObject(value)) throw new InvalidError("fleet record: not a JSON object");
  const kindProblem = HEAD_FIELDS.kind!(value.kind);
  if (kindProblem) throw new InvalidError(`fleet record: kind ${kindProblem}`);
  const fields = { ...HEAD_FIELDS, ...KIND_FIELDS[value.kind as RecordKind] };
  for (const key of Object.keys(value)) {
    if (!Object.hasOwn(fields, key)) throw new InvalidError(`fleet record: unknown field ${JSON.stringify(key.slice(0, 64))} in a ${String(value.kind)} record`);
  }
  for (const [key, check] of Object.entries(fields)) {
    if (!Object.hasOwn(value, key) && OPTIONAL_FIELDS[value.kind as RecordKind]?.includes(key)) continue;
    if (!Object.hasOwn(value, key)) throw new InvalidError(`fleet record: ${String(value.kind)} record lacks ${key}`);
    const problem = check(value[key]);
    if (problem) throw new InvalidError(`fleet record: ${key} ${problem}`);
  }
  return value as unknown as FleetRecord;
}

/**
 * Encodes a record as compact JSON bytes, after checking it. Throws
 * InvalidError for a bad record, TooBigError past `maxBytes`.
 *
 * @example
 * ```ts
 * const bytes = encodeRecord(record, { maxBytes: 16 * 1024 });
 * ```
 */
export function encodeRecord(record: FleetRecord, options: { maxBytes?: number } = {}): Uint8Array {
  checkRecord(record);
  const bytes = Buffer.from(JSON.stringify(record), "utf8");
  const max = options.maxBytes ?? MAX_RECORD_BYTES;
  if (bytes.length > max) throw new TooBigError(`fleet record: ${record.kind} record of ${bytes.length} bytes exceeds ${max}: shorten the line or raise the record cap`);
  return bytes;
}

/**
 * Decodes hostile bytes into a record: the size cap is checked before
 * anything is parsed, then UTF-8, JSON and every field. Throws one
 * TooBigError or InvalidError, never a half-built record.
 *
 * @example
 * ```ts
 * client.on("message", (topic, payload) => {
 *   try { const r = decodeRecord(payload); } catch (e) { audit(`fleet: dropped a bad record on ${topic}: ${e}`); }
 * });
 * ```
 */
export function decodeRecord(bytes: Uint8Array, options: { maxBytes?: number } = {}): FleetRecord {
  const max = options.maxBytes ?? MAX_RECORD_BYTES;
  if (bytes.length > max) throw new TooBigError(`fleet record: ${bytes.length} bytes exceeds the ${max}-byte cap`);
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    throw new InvalidError("fleet record: not UTF-8");
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new InvalidError(`fleet record: not JSON: ${err instanceof Error ? err.message : String(err)}`);
  }
  return checkRecord(value);
}

/** Where a topic points inside one appliance's tree. */
export type TopicChannel =
  | { readonly channel: "birth" | "death" | "lifecycle" | "audit" | "dropped" | "cmd" }
  | { readonly channel: "telemetry"; readonly worker: string }
  | { readonly channel: "reply"; readonly name: string };

/**
 * Checks a topic prefix: 1 to 8 levels of topic-safe names (no wildcards,
 * no empty levels). Throws InvalidError.
 *
 * @example
 * ```ts
 * checkPrefix("site-3/cohesix"); // ok
 * checkPrefix("a/+/b"); // throws
 * ```
 */
export function checkPrefix(prefix: string): string {
  if (!PREFIX.test(prefix)) throw new InvalidError(`fleet: topic prefix ${JSON.stringify(prefix.slice(0, 80))} must be 1-8 levels of A-Z a-z 0-9 . _ - separated by /`);
  return prefix;
}

/**
 * Checks an appliance id or worker name as one topic level. Throws InvalidError.
 *
 * @example
 * ```ts
 * checkName("app-1", "appliance id");
 * ```
 */
export function checkName(name: string, what: string): string {
  if (!NAME.test(name)) throw new InvalidError(`fleet: ${what} ${JSON.stringify(name.slice(0, 80))} must be 1-64 of A-Z a-z 0-9 . _ -`);
  return name;
}

/**
 * The topic a record is published on.
 *
 * @example
 * ```ts
 * topicFor("cohesix", { kind: "telemetry", id: "app-1", worker: "worker-2" }); // "cohesix/app-1/telemetry/worker-2"
 * ```
 */
export function topicFor(prefix: string, record: Pick<FleetRecord, "kind" | "id"> & { worker?: string }): string {
  const base = `${checkPrefix(prefix)}/${checkName(record.id, "appliance id")}`;
  if (record.kind === "telemetry") return `${base}/telemetry/${checkName(record.worker ?? "", "worker")}`;
  return `${base}/${record.kind}`;
}

/**
 * Topic of a non-record channel: commands to the appliance, and replies to
 * a reply topic a command names.
 *
 * @example
 * ```ts
 * channelTopic("cohesix", "app-1", { channel: "reply", name: "op-7" }); // "cohesix/app-1/reply/op-7"
 * ```
 */
export function channelTopic(prefix: string, id: string, channel: TopicChannel): string {
  const base = `${checkPrefix(prefix)}/${checkName(id, "appliance id")}`;
  if (channel.channel === "telemetry") return `${base}/telemetry/${checkName(channel.worker, "worker")}`;
  if (channel.channel === "reply") return `${base}/reply/${checkName(channel.name, "reply name")}`;
  return `${base}/${channel.channel}`;
}

/**
 * Parses a topic under `prefix` into an appliance id and a channel, or
 * returns undefined for a topic outside the tree (never throws).
 *
 * @example
 * ```ts
 * parseTopic("cohesix", "cohesix/app-1/telemetry/worker-2"); // { id: "app-1", channel: "telemetry", worker: "worker-2" }
 * ```
 */
export function parseTopic(prefix: string, topic: string): ({ readonly id: string } & TopicChannel) | undefined {
  if (topic.length > 1024 || !topic.startsWith(`${prefix}/`)) return undefined;
  const levels = topic.slice(prefix.length + 1).split("/");
  const [id, channel, name, ...rest] = levels;
  if (id === undefined || !NAME.test(id) || channel === undefined || rest.length > 0) return undefined;
  if (channel === "telemetry" || channel === "reply") {
    if (name === undefined || !NAME.test(name)) return undefined;
    return channel === "telemetry" ? { id, channel, worker: name } : { id, channel, name };
  }
  if (name !== undefined) return undefined;
  if (channel === "birth" || channel === "death" || channel === "lifecycle" || channel === "audit" || channel === "dropped" || channel === "cmd") {
    return { id, channel };
  }
  return undefined;
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function depth(v: unknown, level: number): number {
  if (level > MAX_DATA_DEPTH) return level;
  if (typeof v !== "object" || v === null) return level;
  let most = level + 1;
  for (const x of Object.values(v)) {
    most = Math.max(most, depth(x, level + 1));
    if (most > MAX_DATA_DEPTH) break;
  }
  return most;
}
