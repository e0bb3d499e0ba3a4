/**
 * The guest's fleet link settings (docs/fleet.md, "A guest's fleet
 * block"): the block baked into `/etc/cohesix/config.json` at build (its
 * files under `/etc/cohesix/fleet/`), with the kernel command line's
 * `cohesix.fleet=URL`, `cohesix.fleet_id=ID` and `cohesix.fleet_prefix=P`
 * over its `url`, `id` and `prefix` (what `cohesix boot --fleet` passes).
 * The files are read by the link when it starts: one missing or unreadable
 * is its `fleet_problem=` line, not a failed boot.
 * @module
 */
import type { FleetSettings } from "./fleet-link.ts";

/**
 * The link's settings from the baked block and the command line, or
 * undefined when neither names a broker.
 *
 * @example
 * ```ts
 * guestFleetSettings({ url: "mqtts://broker:8883", ca: "/etc/cohesix/fleet/ca.pem" }, { fleet_id: "site-1" });
 * // { url: "mqtts://broker:8883", ca: "/etc/cohesix/fleet/ca.pem", id: "site-1" }
 * ```
 */
export function guestFleetSettings(baked: FleetSettings | undefined, params: Readonly<Record<string, string | undefined>>): FleetSettings | undefined {
  const url = params.fleet ?? baked?.url;
  if (url === undefined) return undefined;
  return {
    ...baked,
    url,
    ...(params.fleet_id !== undefined ? { id: params.fleet_id } : {}),
    ...(params.fleet_prefix !== undefined ? { prefix: params.fleet_prefix } : {}),
  };
}
