/**
 * Offline commit-log tools for `cohesix log verify DIR` and
 * `cohesix log show DIR`: they read the log without taking the lock and
 * never change it (a torn tail is reported, not cut).
 *
 * @example
 * ```ts
 * import { verifyLog } from "./commit-log-tools.ts";
 * const r = await verifyLog("state");
 * console.log(r.ok, r.hmac); // true "not checked"
 * ```
 * @module
 */
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { NotFoundError } from "../nine-door/index.ts";
import { type CommitRecord, type TornTail, type ScanResult, HASH_BYTES, hex, scanLog } from "./commit-log-format.ts";
import { LOG_FILE } from "./commit-log.ts";

/** Report of {@link verifyLog}. */
export interface VerifyReport {
  /** True when no error was found (a torn tail alone still verifies). */
  readonly ok: boolean;
  /** Intact records before any error. */
  readonly records: number;
  readonly lastSeq: number;
  /** Hex hash of the last intact record (zeros when empty). */
  readonly headHash: string;
  /** `verified` with a key, `not checked` without one. */
  readonly hmac: "verified" | "not checked";
  readonly tornTail?: TornTail;
  /** The corruption message, naming record and offset. */
  readonly error?: string;
}

/**
 * Verifies a log offline without changing it (no lock, no truncation), for
 * `cohesix log verify DIR`. Without a key, checksums, seq and chain are
 * checked and the report says the HMAC was not.
 *
 * @example
 * ```ts
 * const r = await verifyLog("state", { key });
 * console.log(r.ok ? `ok ${r.records} records, head ${r.headHash}` : r.error);
 * ```
 */
export async function verifyLog(dir: string, options: { key?: Uint8Array } = {}): Promise<VerifyReport> {
  const { scan } = await scanDir(dir, options);
  return reportOf(scan, options.key !== undefined);
}

function reportOf(scan: ScanResult, keyed: boolean): VerifyReport {
  const last = scan.records.at(-1);
  return {
    ok: scan.error === undefined,
    records: scan.records.length,
    lastSeq: last?.seq ?? 0,
    headHash: hex(last?.hash ?? new Uint8Array(HASH_BYTES)),
    hmac: keyed && scan.error?.problem !== "auth" ? "verified" : "not checked",
    ...(scan.tornTail ? { tornTail: scan.tornTail } : {}),
    ...(scan.error ? { error: scan.error.message } : {}),
  };
}

/** Options of {@link showLog}. */
export interface ShowLogOptions {
  key?: Uint8Array;
  /** First seq to return (default 1). */
  from?: number;
  /** Most records to return. */
  limit?: number;
  /** Only records of these kinds. */
  kinds?: readonly string[];
  /** Only records this accepts (after `kinds`, before `limit`). */
  where?: (record: CommitRecord) => boolean;
}

/**
 * Reads a log offline for `cohesix log show DIR`: the intact records (within
 * the filters) and the verification report, so damage is shown, not hidden.
 *
 * @example
 * ```ts
 * const { records, report } = await showLog("state", { kinds: ["spawn"] });
 * for (const r of records) console.log(formatRecord(r));
 * if (!report.ok) console.error(report.error);
 * ```
 */
export async function showLog(
  dir: string,
  options: ShowLogOptions = {},
): Promise<{ records: CommitRecord[]; report: VerifyReport }> {
  const { scan } = await scanDir(dir, options);
  const report = reportOf(scan, options.key !== undefined);
  let records = scan.records.filter((r) => r.seq >= (options.from ?? 1));
  if (options.kinds) records = records.filter((r) => options.kinds!.includes(r.kind));
  if (options.where) records = records.filter(options.where);
  if (options.limit !== undefined) records = records.slice(0, options.limit);
  return { records, report };
}

/**
 * One line per record: `seq time kind body-json hash-prefix`.
 *
 * @example
 * ```ts
 * formatRecord(r); // "3 2025-01-01T00:00:00.000Z spawn {\"worker\":\"worker-1\"} 9f2c…"
 * ```
 */
export function formatRecord(record: CommitRecord): string {
  const body = JSON.stringify(record.body, (_k, v: unknown) =>
    v instanceof Uint8Array ? hex(v) : typeof v === "bigint" ? v.toString() : v,
  );
  return `${record.seq} ${new Date(record.ts_ms).toISOString()} ${record.kind} ${body ?? "null"} ${hex(record.hash).slice(0, 12)}…`;
}

async function scanDir(dir: string, options: { key?: Uint8Array }): Promise<{ scan: ScanResult }> {
  const path = join(dir, LOG_FILE);
  const bytes = await readFile(path).catch((err: NodeJS.ErrnoException) => {
    if (err.code === "ENOENT") throw new NotFoundError(`commit log: no ${LOG_FILE} in ${dir}`);
    throw err;
  });
  return { scan: scanLog(bytes, options.key ? { key: options.key } : {}) };
}
