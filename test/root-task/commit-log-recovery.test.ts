/**
 * The commit log heals after a failed write (issue #11 item 11): with a
 * file whose fsync fails a few times (the frame already written: a torn
 * tail as far as anyone was told), appends are refused while it fails,
 * `onHealth` hears the failure and the recovery, the recovered log cuts
 * the unacknowledged bytes, and the next record follows the last durable
 * one, so the file verifies and replays exactly what was acknowledged.
 */
import { mkdtemp, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, test } from "vitest";
import { CommitLog, LOG_FILE, verifyLog, type CommitLogFs } from "../../root-task/index.ts";
import { withDatasync } from "./commit-log-fs.ts";
import { waitFor } from "../cli/appliance-helpers.ts";

const KEY = new Uint8Array(32).fill(7);
let dir: string;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "cohesix-log-recovery-"));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** Node's file layer, except that the next `failures.n` fsyncs fail with EIO. */
function flakyFs(failures: { n: number }): CommitLogFs {
  return withDatasync((real) => (failures.n-- > 0 ? Promise.reject(new Error("EIO: disk on fire")) : real()));
}

describe("a commit log whose fsync fails for a while", () => {
  test("refuses appends while failing, recovers by itself, cuts the unacknowledged tail and continues the chain", async () => {
    const failures = { n: 0 };
    const health: Array<string | undefined> = [];
    const audit: string[] = [];
    const log = await CommitLog.open(dir, {
      key: KEY,
      fs: flakyFs(failures),
      onHealth: (f) => health.push(f),
      onAudit: (l) => audit.push(l),
      recovery: { minDelayMs: 20, maxDelayMs: 50 },
    });
    await log.append("ctr", 1);
    await log.append("ctr", 2);
    const durableSize = (await stat(join(dir, LOG_FILE))).size;

    failures.n = 3; // the failing batch, then two recovery attempts
    await expect(log.append("ctr", 3)).rejects.toThrow(/^io: commit log: write of records 3\.\.3 failed/);
    expect(log.failure).toMatch(/EIO: disk on fire/);
    expect(health).toEqual([expect.stringMatching(/EIO/)]);
    // The written-but-unsynced frame is on disk for now.
    expect((await stat(join(dir, LOG_FILE))).size).toBeGreaterThan(durableSize);
    await expect(log.append("ctr", 4)).rejects.toThrow(/EIO/);

    await waitFor("the log to recover", () => log.failure === undefined, { timeoutMs: 10_000, intervalMs: 10 });
    expect(health).toEqual([expect.stringMatching(/EIO/), undefined]);
    expect(audit.at(-1)).toMatch(/^commit log: recovered after 3 attempt\(s\): reopened, cut back to offset \d+ \(record 2\)$/);
    expect((await stat(join(dir, LOG_FILE))).size).toBe(durableSize);

    const next = await log.append("ctr", 5);
    expect(next.seq).toBe(3);
    await log.close();
    expect((await verifyLog(dir, { key: KEY })).ok).toBe(true);
    const again = await CommitLog.open(dir, { key: KEY });
    expect(again.recovered.map((r) => r.body)).toEqual([1, 2, 5]);
    await again.close();
  });
});
