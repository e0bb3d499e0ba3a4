/**
 * The fleet list from MQTT (DESIGN §12): the server subscribes to the
 * fleet link's records — retained births, deaths (the wills), lifecycle and
 * telemetry — and keeps one row per appliance: live or dead, version, slot
 * and update state (from the birth's boot facts), lifecycle, last seen and
 * how many workers sent telemetry lately. The broker is not trusted: every
 * payload is decoded by fleet/'s checks, and a record whose id differs from
 * its topic's is dropped.
 * @module
 */
import { DEFAULT_PREFIX, checkPrefix, decodeRecord, parseTopic, type FleetRecord } from "../fleet/index.ts";
import { slotOf } from "./appliance.ts";
import type { DashboardLimits } from "./limits.ts";
import type { ApplianceView, DashEvent } from "./model.ts";

/** Where fleet records come from: a subscription that hands over each message. */
export interface FleetFeed {
  /** Subscribes; `onMessage` gets every message on the fleet's topics. */
  start(onMessage: (topic: string, payload: Uint8Array) => void): void;
  close(): void;
  /** The topic prefix (default `cohesix`). */
  readonly prefix: string;
}

/** How long a worker counts as running after its last telemetry record, ms. */
const WORKER_FRESH_MS = 10_000;

interface Row {
  view: ApplianceView;
  session: number;
  readonly workers: Map<string, number>;
}

/**
 * The fleet's appliances, as rows of the list.
 *
 * @example
 * ```ts
 * const fleet = new FleetView(mqttFleetFeed("mqtt://127.0.0.1:1883"), { limits: DEFAULT_LIMITS, publish: (e) => hub.publish(e) });
 * fleet.start();
 * fleet.views(); // [{ id: "app-1", source: "fleet", live: "live", version: "0.1.0", … }]
 * ```
 */
export class FleetView {
  readonly #feed: FleetFeed;
  readonly #limits: DashboardLimits;
  readonly #publish: (event: DashEvent) => void;
  readonly #rows = new Map<string, Row>();
  /** Messages dropped as malformed or mismatched. */
  dropped = 0;

  constructor(feed: FleetFeed, options: { limits: DashboardLimits; publish: (event: DashEvent) => void }) {
    this.#feed = feed;
    this.#limits = options.limits;
    this.#publish = options.publish;
  }

  start(): void {
    this.#feed.start((topic, payload) => this.take(topic, payload));
  }

  close(): void {
    this.#feed.close();
  }

  has(id: string): boolean {
    return this.#rows.has(id);
  }

  views(): ApplianceView[] {
    return [...this.#rows.values()].map((r) => r.view);
  }

  /** Takes one message: a record on the fleet's topic tree. */
  take(topic: string, payload: Uint8Array): void {
    const where = parseTopic(this.#feed.prefix, topic);
    if (!where) return;
    let record: FleetRecord;
    try {
      record = decodeRecord(payload);
    } catch {
      this.dropped++;
      return;
    }
    if (record.id !== where.id) {
      this.dropped++;
      return;
    }
    let row = this.#rows.get(record.id);
    if (!row) {
      if (this.#rows.size >= this.#limits.max_fleet) {
        this.dropped++;
        return;
      }
      row = { view: { id: record.id, source: "fleet", live: "connecting", boot: {}, mem: {}, sessions: [], workers: [], workerCount: 0, programs: [], gpus: [] }, session: -1, workers: new Map() };
      this.#rows.set(record.id, row);
    }
    const seen = Math.max(row.view.lastSeenMs ?? 0, record.ts_ms);
    let patch: Partial<ApplianceView> = { lastSeenMs: seen };
    switch (record.kind) {
      case "birth":
        if (record.session < row.session) return;
        row.session = record.session;
        patch = { ...patch, live: "live", error: undefined, version: record.version, boot: record.boot, lifecycle: record.lifecycle, ...slotOf(record.boot), fleetId: undefined } as Partial<ApplianceView>;
        break;
      case "death":
        // A will from an older connection does not kill a newer one.
        if (record.session < row.session) return;
        row.session = record.session;
        patch = { ...patch, live: "dead", error: `death record: ${record.reason}` };
        break;
      case "lifecycle":
        patch = { ...patch, lifecycle: record.state, lifecycleReason: record.reason };
        break;
      case "telemetry":
        if (row.workers.size < this.#limits.max_followed_workers || row.workers.has(record.worker)) row.workers.set(record.worker, record.ts_ms);
        break;
      default:
        break;
    }
    for (const [w, at] of row.workers) if (at < seen - WORKER_FRESH_MS) row.workers.delete(w);
    row.view = { ...row.view, ...patch, workerCount: row.workers.size };
    this.#publish({ type: "appliance", appliance: row.view });
  }
}

/**
 * A {@link FleetFeed} from an MQTT broker (MQTT.js, loaded on first use):
 * subscribes to births, deaths, lifecycle and telemetry under `prefix`.
 *
 * @example
 * ```ts
 * const feed = mqttFleetFeed("mqtt://127.0.0.1:1883", { prefix: "cohesix" });
 * ```
 */
export function mqttFleetFeed(url: string, options: { prefix?: string; clientId?: string } = {}): FleetFeed {
  const prefix = checkPrefix(options.prefix ?? DEFAULT_PREFIX);
  let client: { end(force: boolean): unknown } | undefined;
  let closed = false;
  return {
    prefix,
    start(onMessage) {
      void import("mqtt").then(({ connect }) => {
        if (closed) return;
        const c = connect(url, { clientId: options.clientId ?? `cohesix-dashboard-${process.pid}`, protocolVersion: 4, clean: true, reconnectPeriod: 2000, resubscribe: true });
        client = c;
        c.on("connect", () => void c.subscribe(["birth", "death", "lifecycle", "telemetry/+"].map((t) => `${prefix}/+/${t}`), { qos: 1 }));
        c.on("message", (topic, payload) => onMessage(topic, payload));
        c.on("error", () => {});
      });
    },
    close() {
      closed = true;
      client?.end(true);
    },
  };
}
