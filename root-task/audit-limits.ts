/**
 * The audit's limits as a user sets them: `cohesix serve --limit
 * audit.NAME=N`, with the names docs/security.md lists.
 * @module
 */
import { InvalidError } from "../nine-door/index.ts";
import type { AuditLimits } from "./appliance.ts";

/** Setting names (`audit.` + snake case) of each {@link AuditLimits} field. */
export const AUDIT_LIMIT_NAMES: Readonly<Record<string, keyof AuditLimits>> = {
  "audit.burst": "burst",
  "audit.refill_ms": "refillMs",
  "audit.window_ms": "windowMs",
  "audit.max_sources": "maxSources",
  "audit.view_burst": "viewBurst",
  "audit.view_refill_ms": "viewRefillMs",
  "audit.rotate_bytes": "rotateBytes",
  "audit.refused_rotate_bytes": "refusedRotateBytes",
  "audit.reserve_bytes": "reserveBytes",
};

/** Largest value any audit limit takes (1 GiB, or ~12 days in ms). */
const MAX_AUDIT_LIMIT = 1 << 30;

/**
 * Parses `audit.NAME=N` settings; throws `invalid:` naming the known names
 * or the bound.
 *
 * @example
 * ```ts
 * parseAuditLimits(["audit.burst=8", "audit.reserve_bytes=2097152"]); // { burst: 8, reserveBytes: 2097152 }
 * ```
 */
export function parseAuditLimits(settings: readonly string[]): Partial<AuditLimits> {
  const out: Partial<Record<keyof AuditLimits, number>> = {};
  for (const setting of settings) {
    const m = /^(audit\.[a-z_]+)=(\d{1,10})$/.exec(setting);
    const key = m ? AUDIT_LIMIT_NAMES[m[1]!] : undefined;
    if (!m || key === undefined) {
      throw new InvalidError(`limit ${JSON.stringify(setting)}: expected audit.NAME=N with NAME one of ${Object.keys(AUDIT_LIMIT_NAMES).map((n) => n.slice(6)).join(", ")}`);
    }
    const n = Number(m[2]);
    const min = key === "reserveBytes" ? 0 : 1;
    if (n < min || n > MAX_AUDIT_LIMIT) throw new InvalidError(`limit ${m[1]} must be ${min}..${MAX_AUDIT_LIMIT}, got ${n}`);
    out[key] = n;
  }
  return out;
}
