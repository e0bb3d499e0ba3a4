/**
 * The fleet link (DESIGN §12, docs/fleet.md): one MQTT connection to a
 * broker that forwards the outbox in order at QoS 1.
 *
 * - Every stream record goes through the outbox first, also while online:
 *   one path, so ordering and durability do not depend on the connection.
 * - On connect: the birth record is published retained; the death record is
 *   the connection's will (retained, same `session`). Then the outbox is
 *   read from the acked watermark and published with at most `window`
 *   records in flight; a record is acknowledged in the outbox only on its
 *   PUBACK, and the watermark moves over the contiguous prefix only.
 * - On close: every in-flight publish is forgotten (the next connection
 *   sends again from the watermark), and a new attempt follows after a
 *   backoff doubling from `minBackoffMs` to `maxBackoffMs`, with jitter.
 * - States (`LinkState`): `idle → connecting → online → backoff →
 *   connecting …`, and `closed` from any of them.
 *
 * @example
 * ```ts
 * const outbox = await Outbox.open("state/fleet-outbox");
 * const link = new FleetLink({ url: "mqtt://broker:1883", id: "app-1", outbox, birth: () => facts });
 * link.start();
 * await link.publish({ kind: "audit", line: "spawned worker-1" });
 * await link.close();
 * ```
 * @module
 */
import { ClosedError, InvalidError } from "../nine-door/index.ts";
import { type MqttClientLike, type MqttConnect, mqttJsConnect } from "./mqtt.ts";
import type { Outbox, OutboxEntry } from "./outbox.ts";
import {
  type BirthRecord,
  type DeathRecord,
  type FleetRecord,
  type RecordBody,
  DEFAULT_PREFIX,
  checkName,
  checkPrefix,
  channelTopic,
  checkRecord,
  encodeRecord,
  MAX_RECORD_BYTES,
  topicFor,
} from "./records.ts";

/** A stream record the link's owner publishes (the link makes birth and death, the outbox dropped). */
export type StreamBody = Extract<RecordBody, { kind: "lifecycle" | "telemetry" | "audit" }>;

/** Named states of a link (STYLE 15). */
export type LinkState = "idle" | "connecting" | "online" | "backoff" | "closed";

/** What the birth record says about the appliance (`ctr`: the last accepted signed-ctl counter, docs/fleet.md "Commands"). */
export type BirthFacts = Pick<BirthRecord, "version" | "boot" | "lifecycle"> & { readonly ctr?: number };

/** Options of {@link FleetLink}. */
export interface FleetLinkOptions {
  /** `mqtt://host:port` or `mqtts://host:port`. */
  url: string;
  /** Appliance id: one topic level. */
  id: string;
  outbox: Outbox;
  /** Facts for each birth record. */
  birth: () => BirthFacts;
  /** Topic prefix (default `cohesix`). */
  prefix?: string;
  /** MQTT client id (default `cohesix-<id>`): stable, so the broker drops a stale twin. */
  clientId?: string;
  username?: string;
  password?: string;
  ca?: string | Uint8Array;
  cert?: string | Uint8Array;
  key?: string | Uint8Array;
  /** Most records published and not yet PUBACKed (default 32). */
  window?: number;
  /**
   * Cap on one encoded stream record, checked before it takes a seq
   * (default and most 65,536, the receivers' cap; at least 1024).
   */
  maxRecordBytes?: number;
  minBackoffMs?: number;
  maxBackoffMs?: number;
  connectTimeoutMs?: number;
  keepaliveS?: number;
  clock?: () => number;
  /** Connection factory (default MQTT.js). */
  connect?: MqttConnect;
  onState?: (from: LinkState, to: LinkState, why: string) => void;
  /** Lines worth auditing: records that could not be sent, connection errors. */
  onAudit?: (line: string) => void;
  /**
   * Commands from the fleet: when set, each connection subscribes to
   * `<prefix>/<id>/cmd` at QoS 1 and hands every message's payload here
   * (hostile bytes: the caller checks them, see `commands.ts`).
   */
  onCommand?: (payload: Buffer) => void;
}

/** Counters of a link. */
export interface FleetLinkStats {
  readonly connects: number;
  readonly published: number;
  readonly acked: number;
  readonly inflight: number;
}

/**
 * A running fleet link.
 *
 * @example
 * ```ts
 * const link = new FleetLink({ url, id: "app-1", outbox, birth: () => ({ version: "0.1.0", boot: {}, lifecycle: "ONLINE" }) });
 * link.start();
 * ```
 */
export class FleetLink {
  readonly #o: Required<Pick<FleetLinkOptions, "window" | "minBackoffMs" | "maxBackoffMs" | "connectTimeoutMs" | "keepaliveS">> & FleetLinkOptions;
  readonly #prefix: string;
  readonly #clock: () => number;
  readonly #connect: MqttConnect;
  readonly #startSeq: number;
  #state: LinkState = "idle";
  #client: MqttClientLike | undefined;
  #generation = 0;
  #attempts = 0;
  #timer: NodeJS.Timeout | undefined;
  #sentUpTo = 0;
  #inflight = new Set<number>();
  #done = new Set<number>();
  #pumping = false;
  #session: number | undefined;
  #again = false;
  #stats = { connects: 0, published: 0, acked: 0 };
  #lastError: Error | undefined;
  #birthSeq = 0;

  constructor(options: FleetLinkOptions) {
    checkName(options.id, "appliance id");
    this.#prefix = checkPrefix(options.prefix ?? DEFAULT_PREFIX);
    if (!/^mqtts?:\/\//.test(options.url)) throw new InvalidError(`fleet: broker URL ${JSON.stringify(options.url)} must start with mqtt:// or mqtts://`);
    this.#o = { window: 32, minBackoffMs: 500, maxBackoffMs: 30_000, connectTimeoutMs: 10_000, keepaliveS: 30, ...options };
    if (!Number.isSafeInteger(this.#o.window) || this.#o.window < 1 || this.#o.window > 65_535) {
      throw new InvalidError(`fleet: window must be an integer 1..65535, got ${this.#o.window}`);
    }
    const cap = options.maxRecordBytes;
    if (cap !== undefined && (!Number.isSafeInteger(cap) || cap < 1024 || cap > MAX_RECORD_BYTES)) {
      throw new InvalidError(`fleet: maxRecordBytes must be an integer 1024..${MAX_RECORD_BYTES}, got ${cap}`);
    }
    this.#clock = options.clock ?? Date.now;
    this.#connect = options.connect ?? mqttJsConnect;
    this.#startSeq = options.outbox.lastSeq;
  }

  /** Current state. */
  get state(): LinkState {
    return this.#state;
  }

  /** The last error of the connection (cleared once connected), for a user-facing line. */
  get lastError(): Error | undefined {
    return this.#lastError;
  }

  /** The topic prefix in force. */
  get prefix(): string {
    return this.#prefix;
  }

  /**
   * Publishes one reply to a command on `<prefix>/<id>/reply/<name>`, QoS 1,
   * not retained; resolves on PUBACK. Refused with `closed:` when not online
   * (a reply is not kept: the command came over this connection).
   *
   * @example
   * ```ts
   * await link.reply("h-1", encodeReply(reply));
   * ```
   */
  reply(name: string, payload: Uint8Array): Promise<void> {
    const client = this.#client;
    if (this.#state !== "online" || !client) return Promise.reject(new ClosedError(`fleet link: not online (${this.#state}): reply ${name} not sent`));
    const topic = channelTopic(this.#prefix, this.#o.id, { channel: "reply", name });
    return new Promise((resolve, reject) => {
      client.publish(topic, Buffer.from(payload), { qos: 1, retain: false }, (err) => (err ? reject(err) : resolve()));
    });
  }

  /**
   * Publishes the birth record again (retained, same session) with fresh
   * facts, e.g. after a command moved the counter. Nothing when not online.
   *
   * @example
   * ```ts
   * link.rebirth();
   * ```
   */
  rebirth(): void {
    const client = this.#client;
    if (this.#state !== "online" || !client || this.#session === undefined) return;
    this.#publishBirth(client, this.#session, this.#birthSeq);
  }

  #publishBirth(client: MqttClientLike, session: number, seq: number): void {
    const facts = this.#o.birth();
    const birth: BirthRecord = { v: 1, kind: "birth", id: this.#o.id, seq, ts_ms: this.#clock(), historical: false, session, backlog: this.#o.outbox.pending, ...facts };
    client.publish(topicFor(this.#prefix, birth), Buffer.from(encodeRecord(birth)), { qos: 1, retain: true }, () => {});
  }

  /** Counters. */
  get stats(): FleetLinkStats {
    return { ...this.#stats, inflight: this.#inflight.size };
  }

  /**
   * Starts connecting (and reconnecting, until close).
   *
   * @example
   * ```ts
   * link.start();
   * ```
   */
  start(): void {
    if (this.#state !== "idle") return;
    void this.#attempt();
  }

  /**
   * Appends a stream record to the outbox (durable when this resolves) and
   * sends it when the link is online. Returns its seq. `historical` is set
   * when the link is not online at the time of the call.
   *
   * @example
   * ```ts
   * const seq = await link.publish({ kind: "telemetry", worker: "worker-1", data: { tick: 1 } });
   * ```
   */
  async publish(body: StreamBody, options: { ts_ms?: number } = {}): Promise<number> {
    const ts_ms = options.ts_ms ?? this.#clock();
    // Checked now, with a stand-in head, so a bad record never takes a seq.
    encodeRecord({ v: 1, id: this.#o.id, seq: 0, ts_ms, historical: true, ...body } as FleetRecord, { maxBytes: this.#o.maxRecordBytes ?? MAX_RECORD_BYTES });
    const entry = await this.#o.outbox.append(Buffer.from(JSON.stringify(body)), { historical: this.#state !== "online", ts_ms });
    this.#pump();
    return entry.seq;
  }

  /**
   * Stops: publishes a retained death record (`reason: "link closed"`)
   * when online, ends the connection cleanly (so the broker does not
   * publish the will) and stops reconnecting. Records still in flight stay
   * in the outbox for the next start. The outbox stays open; its owner
   * closes it.
   *
   * @example
   * ```ts
   * await link.close();
   * ```
   */
  async close(): Promise<void> {
    if (this.#state === "closed") return;
    if (this.#timer) clearTimeout(this.#timer);
    this.#generation += 1;
    const client = this.#client;
    const online = this.#state === "online";
    this.#client = undefined;
    if (!online) this.#session = undefined;
    this.#setState("closed", "close()");
    if (client) {
      if (this.#session !== undefined) {
        const ts_ms = this.#clock();
        const death: DeathRecord = { v: 1, kind: "death", id: this.#o.id, seq: this.#o.outbox.lastSeq, ts_ms, historical: false, session: this.#session, reason: "link closed" };
        client.publish(topicFor(this.#prefix, death), Buffer.from(encodeRecord(death)), { qos: 1, retain: true }, () => {});
      }
      await new Promise<void>((resolve) => {
        client.end(false, () => resolve());
        setTimeout(resolve, 2000).unref();
      });
      client.removeAllListeners();
    }
  }

  async #attempt(): Promise<void> {
    if (this.#state === "closed") return;
    const generation = ++this.#generation;
    this.#setState("connecting", `attempt ${this.#attempts + 1} to ${this.#o.url}`);
    const session = this.#clock();
    const death: DeathRecord = {
      v: 1,
      kind: "death",
      id: this.#o.id,
      seq: this.#o.outbox.lastSeq,
      ts_ms: session,
      historical: false,
      session,
      reason: "connection lost",
    };
    let client: MqttClientLike;
    try {
      client = await this.#connect(this.#o.url, {
        clientId: this.#o.clientId ?? `cohesix-${this.#o.id}`,
        will: { topic: topicFor(this.#prefix, death), payload: encodeRecord(death), qos: 1, retain: true },
        connectTimeoutMs: this.#o.connectTimeoutMs,
        keepaliveS: this.#o.keepaliveS,
        ...pick(this.#o, ["username", "password", "ca", "cert", "key"]),
      });
    } catch (err) {
      if (err instanceof Error) this.#lastError = err;
      this.#lost(generation, `could not start a connection: ${message(err)}`);
      return;
    }
    if (generation !== this.#generation) {
      client.end(true);
      return;
    }
    this.#client = client;
    client.on("error", (err) => {
      if (generation !== this.#generation) return;
      this.#lastError = err;
      this.#o.onAudit?.(`fleet link: ${this.#o.url}: ${err.message}`);
    });
    client.on("close", () => this.#lost(generation, "connection closed"));
    const cmdTopic = channelTopic(this.#prefix, this.#o.id, { channel: "cmd" });
    const onCommand = this.#o.onCommand;
    if (onCommand) {
      client.on("message", (topic, payload) => {
        if (generation === this.#generation && topic === cmdTopic) onCommand(payload);
      });
    }
    client.on("connect", () => {
      if (generation !== this.#generation) return;
      this.#attempts = 0;
      this.#lastError = undefined;
      this.#stats.connects += 1;
      this.#inflight.clear();
      this.#done.clear();
      this.#sentUpTo = this.#o.outbox.acked;
      this.#birthSeq = death.seq;
      this.#publishBirth(client, session, death.seq);
      this.#session = session;
      if (onCommand && client.subscribe) {
        client.subscribe(cmdTopic, { qos: 1 }, (err) => {
          if (err && generation === this.#generation) this.#o.onAudit?.(`fleet link: subscribing to ${cmdTopic} failed: ${err.message}`);
        });
      }
      this.#setState("online", `session ${session}`);
      this.#pump();
    });
  }

  #lost(generation: number, why: string): void {
    if (generation !== this.#generation || this.#state === "closed") return;
    this.#generation += 1;
    const client = this.#client;
    this.#client = undefined;
    if (client) {
      client.removeAllListeners();
      client.on("error", () => {});
      client.end(true);
    }
    this.#inflight.clear();
    this.#done.clear();
    const delay = Math.min(this.#o.maxBackoffMs, this.#o.minBackoffMs * 2 ** Math.min(this.#attempts, 16));
    const wait = Math.round(delay / 2 + (Math.random() * delay) / 2);
    this.#attempts += 1;
    this.#setState("backoff", `${why}; next attempt in ${wait} ms`);
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      void this.#attempt();
    }, wait);
  }

  /** Publishes from the outbox while there is room in the window. One pump at a time. */
  #pump(): void {
    if (this.#pumping) {
      this.#again = true;
      return;
    }
    if (this.#state !== "online" || !this.#client) return;
    this.#pumping = true;
    void this.#pumpLoop()
      .catch((err: unknown) => {
        // The outbox could not be read (disk error): try again in a second, the records stay where they are.
        this.#o.onAudit?.(`fleet link: reading the outbox failed, retrying in 1 s: ${message(err)}`);
        setTimeout(() => this.#pump(), 1000).unref();
      })
      .finally(() => {
        this.#pumping = false;
        if (this.#again) {
          this.#again = false;
          this.#pump();
        }
      });
  }

  async #pumpLoop(): Promise<void> {
    while (this.#state === "online" && this.#client) {
      const room = this.#o.window - this.#inflight.size;
      if (room <= 0) return;
      const generation = this.#generation;
      const client = this.#client;
      const entries = await this.#o.outbox.read(this.#sentUpTo, { limit: room });
      if (entries.length === 0 || generation !== this.#generation) return;
      for (const e of entries) {
        this.#sentUpTo = e.seq;
        const record = this.#toRecord(e);
        if (!record) {
          this.#settled(e.seq);
          continue;
        }
        this.#inflight.add(e.seq);
        this.#stats.published += 1;
        client.publish(topicFor(this.#prefix, record), Buffer.from(encodeRecord(record)), { qos: 1, retain: false }, (err) => {
          if (generation !== this.#generation) return;
          this.#inflight.delete(e.seq);
          if (err) {
            this.#o.onAudit?.(`fleet link: publish of seq ${e.seq} failed: ${err.message}`);
            return; // the connection's close re-sends it from the watermark
          }
          this.#settled(e.seq);
          this.#pump();
        });
      }
    }
  }

  /** Marks one seq delivered and moves the outbox watermark over the contiguous prefix. */
  #settled(seq: number): void {
    this.#done.add(seq);
    // Seqs the outbox dropped never come back: count from the oldest kept.
    let upTo = this.#o.outbox.floor;
    while (this.#done.delete(upTo + 1)) upTo += 1;
    if (upTo > this.#o.outbox.acked) {
      this.#stats.acked += upTo - this.#o.outbox.acked;
      this.#o.outbox.ack(upTo);
    }
  }

  /** The full record of an outbox entry, or undefined (audited) if it cannot be sent. */
  #toRecord(e: OutboxEntry): FleetRecord | undefined {
    try {
      const body = JSON.parse(Buffer.from(e.body).toString("utf8")) as Record<string, unknown>;
      const { kind, ...rest } = body;
      return checkRecord({
        v: 1,
        kind,
        id: this.#o.id,
        seq: e.seq,
        ts_ms: e.ts_ms,
        historical: e.historical || e.seq <= this.#startSeq,
        ...rest,
      });
    } catch (err) {
      this.#o.onAudit?.(`fleet link: outbox record seq ${e.seq} cannot be sent and is skipped: ${message(err)}`);
      return undefined;
    }
  }

  #setState(to: LinkState, why: string): void {
    const from = this.#state;
    this.#state = to;
    this.#o.onState?.(from, to, why);
  }
}

function pick<T extends object, K extends keyof T>(o: T, keys: K[]): Partial<Pick<T, K>> {
  const out: Partial<Pick<T, K>> = {};
  for (const k of keys) if (o[k] !== undefined) out[k] = o[k];
  return out;
}

function message(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
