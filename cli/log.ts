/**
 * `cohesix log verify DIR` and `cohesix log show DIR`: offline checks of a
 * state directory's commit log. With the directory's boot key present the
 * HMAC of every record is checked too (the key is derived, never stored).
 * @module
 */
import { existsSync } from "node:fs";
import { join } from "node:path";
import { InvalidError } from "../nine-door/index.ts";
import { COMMIT_KINDS, commitLogKey, formatRecord, readPrivateKey, showLog, verifyLog, type CommitRecord } from "../root-task/index.ts";
import { str, UsageError, type Parsed } from "./args.ts";
import type { Io } from "./verb.ts";

async function keyFor(dir: string, keyPath: string | undefined): Promise<Uint8Array | undefined> {
  const path = keyPath ?? join(dir, "boot.key");
  if (keyPath === undefined && !existsSync(path)) return undefined;
  return commitLogKey(await readPrivateKey(path));
}

/** `log verify DIR [--boot-key FILE]`: checksums, hash chain and HMAC; exit 1 on damage. */
export async function logVerify(p: Parsed, { out }: Io): Promise<void> {
  const dir = p.positionals[0]!;
  const key = await keyFor(dir, str(p, "boot-key"));
  const r = await verifyLog(dir, key ? { key } : {});
  out(
    [
      `records=${r.records}`,
      `last_seq=${r.lastSeq}`,
      `head=${r.headHash}`,
      `hmac=${r.hmac}`,
      ...(r.tornTail ? [`torn_tail=${JSON.stringify(r.tornTail)}`] : []),
      `ok=${r.ok}`,
      "",
    ].join("\n"),
  );
  if (!r.ok) throw new InvalidError(`commit log damaged: ${r.error ?? "unknown damage"}`);
}

/**
 * Words `--kind` takes besides the commit kinds: a worker's end by how it
 * ended (an `exit` record whose status is `killed` or `revoked`).
 */
const EXIT_WORDS: Readonly<Record<string, string>> = { kill: "killed", revoke: "revoked" };

/**
 * What `--kind` takes: the kinds of record the root task commits, from its
 * one table (`COMMIT_KINDS`), and the exit words `kill` and `revoke`. A log
 * may hold other kinds (later features add their own); `--kind` takes those
 * too when the log holds them.
 */
export const KNOWN_KINDS: readonly string[] = ["spawn", ...Object.keys(EXIT_WORDS), ...Object.keys(COMMIT_KINDS).filter((k) => k !== "spawn")];

const hex = (b: Uint8Array): string => Buffer.from(b).toString("hex");

/**
 * One record of `log show --json`: seq, time (ISO and ms), kind, body
 * (bytes as hex, big integers as strings), batch, and the hashes in hex.
 *
 * @example
 * ```ts
 * recordJson(record); // { seq: 1, ts: "2026-…Z", ts_ms: 1796…, kind: "spawn", body: { … }, batch: 1, hash: "…", prev: "…" }
 * ```
 */
export function recordJson(r: CommitRecord): Record<string, unknown> {
  const body = JSON.parse(JSON.stringify(r.body, (_k, v: unknown) => (v instanceof Uint8Array ? hex(v) : typeof v === "bigint" ? v.toString() : v)) ?? "null") as unknown;
  return { seq: r.seq, ts: new Date(r.ts_ms).toISOString(), ts_ms: r.ts_ms, kind: r.kind, body, batch: r.batch, hash: hex(r.hash), prev: hex(r.prev) };
}

/** `log show DIR [--from N] [--limit N] [--kind KIND]`: the records, one per line. */
export async function logShow(p: Parsed, { out }: Io): Promise<void> {
  const dir = p.positionals[0]!;
  const key = await keyFor(dir, str(p, "boot-key"));
  const num = (name: string): number | undefined => {
    const v = str(p, name);
    return v === undefined ? undefined : Number(v);
  };
  const from = num("from");
  const limit = num("limit");
  const kind = str(p, "kind");
  if (kind !== undefined && !KNOWN_KINDS.includes(kind)) {
    // Not a kind the root task writes: accept it only if this log holds one.
    const all = await showLog(dir, key ? { key } : {});
    const seen = new Set(all.records.map((r) => r.kind));
    if (!seen.has(kind)) throw new UsageError(`--kind ${JSON.stringify(kind)} is no kind of record: known kinds are ${[...new Set([...KNOWN_KINDS, ...seen])].join(", ")}`);
  }
  const { records, report } = await showLog(dir, {
    ...(key ? { key } : {}),
    ...(from !== undefined ? { from } : {}),
    ...(limit !== undefined ? { limit } : {}),
    ...(kind !== undefined && Object.hasOwn(EXIT_WORDS, kind) ? { kinds: ["exit"], where: (r: CommitRecord) => (r.body as { status?: unknown } | null)?.status === EXIT_WORDS[kind] } : kind ? { kinds: [kind] } : {}),
  });
  if (p.values.json === true) out(`${JSON.stringify(records.map(recordJson))}\n`);
  else for (const r of records) out(`${formatRecord(r)}\n`);
  if (!report.ok) throw new InvalidError(`commit log damaged: ${report.error ?? "unknown damage"}`);
}
