/**
 * Benchmark of the commit log alone: durable appends per second and append
 * latency (p50/p99, from `append()` to its resolution after fdatasync) with
 * group commit, at several numbers of concurrent appenders. The ctl round
 * trip of `npm run bench -- ctl` is bounded below by these figures.
 *
 * Options: `--records N` per run (default 2000), `--concurrency 1,16,64`,
 * `--body-bytes B` (default 64), `--dir DIR` (default a temp dir; use it to
 * measure the real state disk).
 *
 * @example
 * ```ts
 * import { run } from "./ctl-log.ts";
 * await run(["--records", "5000", "--concurrency", "1,64"]);
 * ```
 * @module
 */
import { randomBytes } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { CommitLog } from "../root-task/index.ts";

/** Result of one run at a given concurrency. */
export interface CtlLogResult {
  readonly concurrency: number;
  readonly records: number;
  readonly appendsPerSecond: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly fsyncs: number;
  readonly recordsPerFsync: number;
}

/**
 * Runs the benchmark and prints one line per concurrency level.
 *
 * @example
 * ```ts
 * await run([]); // 2000 records at concurrency 1, 16 and 64 in a temp dir
 * ```
 */
export async function run(args: string[]): Promise<CtlLogResult[]> {
  const opt = parseArgs(args);
  const results: CtlLogResult[] = [];
  console.log(`commit log: ${opt.records} durable appends per run, ${opt.bodyBytes}-byte bodies, dir ${opt.dir ?? tmpdir()}`);
  for (const concurrency of opt.concurrency) {
    const dir = await mkdtemp(join(opt.dir ?? tmpdir(), "cohesix-bench-log-"));
    try {
      const r = await runOnce(dir, { records: opt.records, concurrency, bodyBytes: opt.bodyBytes });
      results.push(r);
      console.log(
        `  concurrency ${String(concurrency).padStart(3)}: ${r.appendsPerSecond.toFixed(0).padStart(7)} appends/s` +
          `  p50 ${r.p50Ms.toFixed(2)} ms  p99 ${r.p99Ms.toFixed(2)} ms` +
          `  ${r.fsyncs} fsyncs (${r.recordsPerFsync.toFixed(1)} records/fsync)`,
      );
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }
  return results;
}

async function runOnce(
  dir: string,
  options: { records: number; concurrency: number; bodyBytes: number },
): Promise<CtlLogResult> {
  const log = await CommitLog.open(dir, { key: randomBytes(32) });
  const pad = "x".repeat(options.bodyBytes);
  const latencies: number[] = [];
  let issued = 0;
  const worker = async (): Promise<void> => {
    while (issued < options.records) {
      issued += 1;
      const t = performance.now();
      await log.append("ctr", { n: issued, pad });
      latencies.push(performance.now() - t);
    }
  };
  const start = performance.now();
  await Promise.all(Array.from({ length: options.concurrency }, worker));
  const seconds = (performance.now() - start) / 1000;
  const { syncs } = log.stats;
  await log.close();
  latencies.sort((a, b) => a - b);
  const pct = (p: number): number => latencies[Math.min(latencies.length - 1, Math.floor(p * latencies.length))] ?? 0;
  return {
    concurrency: options.concurrency,
    records: latencies.length,
    appendsPerSecond: latencies.length / seconds,
    p50Ms: pct(0.5),
    p99Ms: pct(0.99),
    fsyncs: syncs,
    recordsPerFsync: latencies.length / Math.max(1, syncs),
  };
}

function parseArgs(args: string[]): { records: number; concurrency: number[]; bodyBytes: number; dir?: string } {
  const out: { records: number; concurrency: number[]; bodyBytes: number; dir?: string } = {
    records: 2000,
    concurrency: [1, 16, 64],
    bodyBytes: 64,
  };
  for (let i = 0; i < args.length; i++) {
    const value = args[i + 1];
    const need = (): string => {
      if (value === undefined) throw new Error(`bench ctl-log: ${args[i]} needs a value`);
      i += 1;
      return value;
    };
    const count = (text: string): number => {
      const n = Number(text);
      if (!Number.isSafeInteger(n) || n < 1) throw new Error(`bench ctl-log: not a positive count: ${text}`);
      return n;
    };
    switch (args[i]) {
      case "--records":
        out.records = count(need());
        break;
      case "--concurrency":
        out.concurrency = need().split(",").map(count);
        break;
      case "--body-bytes":
        out.bodyBytes = Number(need());
        break;
      case "--dir":
        out.dir = need();
        break;
      default:
        throw new Error(`bench ctl-log: unknown option: ${args[i]}`);
    }
  }
  return out;
}

if (process.argv[1]?.endsWith("bench/ctl-log.ts")) {
  await run(process.argv.slice(2));
}
