/**
 * The update service's limits as a user sets them: `cohesix serve --limit
 * update.NAME=N`, with the names docs/security.md lists.
 * @module
 */
import { InvalidError } from "../nine-door/index.ts";
import { MAX_TRIES } from "./boot-state.ts";
import type { UpdateLimits } from "./update-service.ts";

/** Setting names (`update.` + snake case) of each {@link UpdateLimits} field, with their bounds. */
export const UPDATE_LIMIT_NAMES: Readonly<Record<string, { readonly key: keyof UpdateLimits; readonly min: number; readonly max: number }>> = {
  "update.max_bundle_bytes": { key: "maxBundleBytes", min: 1 << 10, max: 2 ** 40 },
  "update.reserve_bytes": { key: "reserveBytes", min: 0, max: 2 ** 40 },
  "update.max_chunk_bytes": { key: "maxChunkBytes", min: 1 << 10, max: 1 << 30 },
  "update.default_tries": { key: "defaultTries", min: 1, max: MAX_TRIES },
};

/**
 * Parses `update.NAME=N` settings; throws `invalid:` naming the known names
 * or the bound.
 *
 * @example
 * ```ts
 * parseUpdateLimits(["update.max_bundle_bytes=1073741824"]); // { maxBundleBytes: 1073741824 }
 * ```
 */
export function parseUpdateLimits(settings: readonly string[]): Partial<UpdateLimits> {
  const out: Partial<Record<keyof UpdateLimits, number>> = {};
  for (const setting of settings) {
    const m = /^(update\.[a-z_]+)=(\d{1,13})$/.exec(setting);
    const known = m ? UPDATE_LIMIT_NAMES[m[1]!] : undefined;
    if (!m || known === undefined) {
      throw new InvalidError(`limit ${JSON.stringify(setting)}: expected update.NAME=N with NAME one of ${Object.keys(UPDATE_LIMIT_NAMES).map((n) => n.slice(7)).join(", ")}`);
    }
    const n = Number(m[2]);
    if (n < known.min || n > known.max) throw new InvalidError(`limit ${m[1]} must be ${known.min}..${known.max}, got ${n}`);
    out[known.key] = n;
  }
  return out;
}
