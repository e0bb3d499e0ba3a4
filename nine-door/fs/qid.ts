/**
 * Qid identities for providers: one process-wide counter, so every node made
 * in this process gets a `qid.path` no other node shares, and keeps it for
 * its whole life.
 * @module
 */

let last = 0n;

/**
 * Returns a fresh `qid.path`, unique in this process (starts at 1, never
 * reused). `BaseNode` calls it once per node; custom `Node`s should too.
 *
 * @example
 * ```ts
 * const a = nextQidPath();
 * const b = nextQidPath();
 * a !== b; // true
 * ```
 */
export function nextQidPath(): bigint {
  last += 1n;
  return last;
}

/**
 * The qid type bits that match a node's mode: the top byte of the mode,
 * as in Plan 9 (`DirMode.DIR` → `QidType.DIR`, `DirMode.APPEND` →
 * `QidType.APPEND`).
 *
 * @example
 * ```ts
 * qidTypeOf(DirMode.DIR | 0o555) === QidType.DIR; // true
 * ```
 */
export function qidTypeOf(mode: number): number {
  return (mode >>> 24) & 0xff;
}
