/**
 * The MQTT fleet link (DESIGN §2, §12; docs/fleet.md): the records an
 * appliance publishes and their topic tree, the durable outbox that keeps
 * them while the broker is away, and the link that forwards them at QoS 1;
 * and the host's side: one broker connection ({@link FleetHost}) and the
 * fleet as the broker shows it ({@link FleetView}).
 * Other folders import from this file only.
 *
 * @example
 * ```ts
 * import { encodeRecord, topicFor } from "../fleet/index.ts";
 * const bytes = encodeRecord({ v: 1, kind: "audit", id: "app-1", seq: 1, ts_ms: Date.now(), historical: false, line: "spawned worker-1" });
 * ```
 * @module
 */
export * from "./records.ts";
export * from "./outbox-format.ts";
export * from "./outbox.ts";
export * from "./mqtt.ts";
export * from "./link.ts";
export * from "./fleet-view.ts";
export * from "./host.ts";
export * from "./commands.ts";
export * from "./fan-out.ts";
export * from "./agent.ts";
