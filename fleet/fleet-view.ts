/**
 * The host's view of the fleet, built from what the broker says: each
 * appliance's retained birth and death records (live while the death's
 * `session` is below the birth's), its version, lifecycle, backlog and
 * when it was last heard from; and, for `fleet tail`, the stream records
 * with duplicates removed by `(id, seq)`. It knows nothing about MQTT
 * connections: feed it `(topic, payload)` pairs.
 *
 * Everything fed in is hostile: records are decoded strictly
 * (`decodeRecord`), a record whose `id` is not its topic's is refused, and
 * the view holds at most `maxAppliances` entries.
 *
 * @example
 * ```ts
 * const view = new FleetView();
 * host.onMessage((topic, payload) => view.add(topic, payload));
 * for (const a of view.list()) console.log(a.id, a.live ? "live" : "dead", a.version);
 * ```
 * @module
 */
import { InvalidError, TooBigError } from "../nine-door/index.ts";
import { type BirthRecord, type DeathRecord, type FleetRecord, DEFAULT_PREFIX, checkPrefix, decodeRecord, parseTopic } from "./records.ts";

/** Default bound on the appliances one view tracks. */
export const DEFAULT_MAX_APPLIANCES = 100_000;

/** One appliance as the view sees it. */
export interface ApplianceView {
  readonly id: string;
  /** A birth with no death of its session or a later one. */
  readonly live: boolean;
  readonly version: string | undefined;
  readonly lifecycle: string | undefined;
  /** Records still to be forwarded when its current connection was made (from its birth). */
  readonly backlog: number | undefined;
  /** The newest origin time of any record heard from it (ms since the epoch). */
  readonly lastSeenMs: number;
  readonly session: number | undefined;
  /** The last signed-ctl counter it accepted, when its birth says (a fleet command carries the next). */
  readonly ctr: number | undefined;
  /** `/proc/boot` facts from its birth. */
  readonly boot: Readonly<Record<string, string>>;
  /** Last known lifecycle is in `lifecycle`; why it is dead, from its death record. */
  readonly reason: string | undefined;
}

/** What {@link FleetView.add} made of one message. */
export type Added =
  | { readonly kind: "record"; readonly record: FleetRecord; readonly duplicate: boolean; readonly retained: boolean }
  | { readonly kind: "ignored"; readonly why: string };

/** Options of {@link FleetView}. */
export interface FleetViewOptions {
  prefix?: string;
  /** Most appliances tracked (default {@link DEFAULT_MAX_APPLIANCES}); past it new ids are refused. */
  maxAppliances?: number;
}

interface Entry {
  birth?: BirthRecord;
  death?: DeathRecord;
  lastSeenMs: number;
  /** Highest stream seq seen: records arrive in seq order per appliance, so anything at or below is a duplicate. */
  highSeq: number;
}

/**
 * A K=V selector over birth facts: `id`, `version`, `lifecycle`, `live`
 * (`true`/`false`) or any `/proc/boot` key. Throws InvalidError for a
 * malformed one.
 *
 * @example
 * ```ts
 * const match = parseSelectors(["board=aarch64-virt", "version=0.2.0"]);
 * match(view.get("app-1")!); // true or false
 * ```
 */
export function parseSelectors(selectors: readonly string[]): (a: ApplianceView) => boolean {
  const pairs = selectors.map((s) => {
    const i = s.indexOf("=");
    if (i <= 0) throw new InvalidError(`fleet: selector ${JSON.stringify(s.slice(0, 80))} must be KEY=VALUE, e.g. board=aarch64-virt`);
    return [s.slice(0, i), s.slice(i + 1)] as const;
  });
  return (a) =>
    pairs.every(([k, v]) => {
      if (k === "id") return a.id === v;
      if (k === "version") return a.version === v;
      if (k === "lifecycle") return a.lifecycle === v;
      if (k === "live") return String(a.live) === v;
      return Object.hasOwn(a.boot, k) && a.boot[k] === v;
    });
}

/**
 * Appliances and their records, from broker messages.
 *
 * @example
 * ```ts
 * const view = new FleetView({ prefix: "site-3/cohesix" });
 * const added = view.add("site-3/cohesix/app-1/birth", payload, { retained: true });
 * ```
 */
export class FleetView {
  readonly #prefix: string;
  readonly #max: number;
  readonly #entries = new Map<string, Entry>();

  constructor(options: FleetViewOptions = {}) {
    this.#prefix = checkPrefix(options.prefix ?? DEFAULT_PREFIX);
    this.#max = options.maxAppliances ?? DEFAULT_MAX_APPLIANCES;
  }

  /** Appliances tracked. */
  get size(): number {
    return this.#entries.size;
  }

  /**
   * Takes one message. A birth or death updates the appliance; a stream
   * record is returned with `duplicate` set when its seq was seen already.
   * Commands and replies, topics outside the tree and undecodable payloads
   * are ignored, with the reason.
   *
   * @example
   * ```ts
   * const r = view.add(topic, payload);
   * if (r.kind === "record" && !r.duplicate) print(r.record);
   * ```
   */
  add(topic: string, payload: Uint8Array, options: { retained?: boolean } = {}): Added {
    const where = parseTopic(this.#prefix, topic);
    if (!where) return { kind: "ignored", why: `topic ${topic.slice(0, 200)} is outside ${this.#prefix}/ID/…` };
    if (where.channel === "cmd" || where.channel === "reply") return { kind: "ignored", why: `${where.channel} topic` };
    let record: FleetRecord;
    try {
      record = decodeRecord(payload);
    } catch (err) {
      if (err instanceof InvalidError || err instanceof TooBigError) return { kind: "ignored", why: `${topic.slice(0, 200)}: ${err.message}` };
      throw err;
    }
    if (record.id !== where.id || record.kind !== where.channel) return { kind: "ignored", why: `${topic.slice(0, 200)}: a ${record.kind} record of ${record.id} on the wrong topic` };
    let entry = this.#entries.get(record.id);
    if (!entry) {
      if (this.#entries.size >= this.#max) return { kind: "ignored", why: `more than ${this.#max} appliances: ${record.id} is not tracked` };
      entry = { lastSeenMs: 0, highSeq: 0 };
      this.#entries.set(record.id, entry);
    }
    entry.lastSeenMs = Math.max(entry.lastSeenMs, record.ts_ms);
    const retained = options.retained ?? false;
    if (record.kind === "birth") {
      if (!entry.birth || record.session >= entry.birth.session) {
        // A new connection whose seqs are below what was seen: the appliance's outbox started over (its
        // state was wiped). A birth published again in the same session keeps its first seq, and changes nothing.
        if (record.session > (entry.birth?.session ?? -1) && record.seq < entry.highSeq) entry.highSeq = 0;
        entry.birth = record;
      }
      return { kind: "record", record, duplicate: false, retained };
    }
    if (record.kind === "death") {
      if (!entry.death || record.session >= entry.death.session) entry.death = record;
      return { kind: "record", record, duplicate: false, retained };
    }
    const duplicate = record.seq <= entry.highSeq;
    if (!duplicate) entry.highSeq = record.seq;
    if (!duplicate && record.kind === "lifecycle" && entry.birth) entry.birth = { ...entry.birth, lifecycle: record.state };
    return { kind: "record", record, duplicate, retained };
  }

  /**
   * One appliance, or undefined if nothing was heard from it.
   *
   * @example
   * ```ts
   * view.get("app-1")?.live;
   * ```
   */
  get(id: string): ApplianceView | undefined {
    const e = this.#entries.get(id);
    if (!e) return undefined;
    const { birth, death } = e;
    return {
      id,
      live: birth !== undefined && (death === undefined || death.session < birth.session),
      version: birth?.version,
      lifecycle: birth?.lifecycle,
      backlog: birth?.backlog,
      lastSeenMs: e.lastSeenMs,
      session: birth?.session ?? death?.session,
      ctr: birth?.ctr,
      boot: birth?.boot ?? {},
      reason: death && (!birth || death.session >= birth.session) ? death.reason : undefined,
    };
  }

  /**
   * Every appliance heard from (a birth or a death), sorted by id.
   *
   * @example
   * ```ts
   * view.list().filter((a) => a.live).length;
   * ```
   */
  list(): ApplianceView[] {
    return [...this.#entries.keys()]
      .sort()
      .map((id) => this.get(id)!)
      .filter((a) => a.session !== undefined);
  }
}
