import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdir, mkdtemp, readFile, rm, stat, truncate, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { afterEach, beforeEach, describe, expect, test } from "vitest";
import { BusyError, ClosedError, NineError } from "../../nine-door/index.ts";
import {
  CommitLog,
  LOCK_FILE,
  LOG_FILE,
  LogCorruptionError,
  encodeBody,
  encodeFrame,
  formatRecord,
  replay,
  scanLog,
  showLog,
  verifyLog,
  type CommitRecord,
} from "../../root-task/index.ts";
import { withDatasync } from "./commit-log-fs.ts";
import { crashSeed, goUntilReady, lcg, startCrashChild, useBundledChild, type CrashChild } from "../crash.ts";

const KEY = new Uint8Array(32).fill(7);
const OTHER_KEY = new Uint8Array(32).fill(9);

let dir: string;
let logPath: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "cohesix-log-"));
  logPath = join(dir, LOG_FILE);
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** Writes `n` records, one batch each, and closes the log. */
async function writeRecords(n: number): Promise<CommitRecord[]> {
  const log = await CommitLog.open(dir, { key: KEY });
  const out: CommitRecord[] = [];
  for (let i = 0; i < n; i++) out.push(await log.append(i % 2 ? "kill" : "spawn", { worker: `worker-${i + 1}` }));
  await log.close();
  return out;
}

async function openError(options: { key?: Uint8Array } = {}): Promise<LogCorruptionError> {
  const err: unknown = await CommitLog.open(dir, { key: options.key ?? KEY }).then(
    async (log) => {
      await log.close();
      return undefined;
    },
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(LogCorruptionError);
  return err as LogCorruptionError;
}

/** Frames for records `from..to` chained after `prev`, each its own batch unless `batch` is given. */
function frames(
  from: number,
  to: number,
  options: { prev: Uint8Array; key?: Uint8Array; batch?: number; seqOf?: (i: number) => number },
): { bytes: Buffer; hashes: Uint8Array[] } {
  const parts: Uint8Array[] = [];
  const hashes: Uint8Array[] = [];
  let prev = options.prev;
  for (let i = from; i <= to; i++) {
    const seq = options.seqOf?.(i) ?? i;
    const { frame, hash } = encodeFrame(
      { seq, prev, ts_ms: 1000 + i, kind: "ctr", batch: options.batch ?? seq, bodyBytes: encodeBody({ i }) },
      { key: options.key ?? KEY },
    );
    parts.push(frame);
    hashes.push(hash);
    prev = hash;
  }
  return { bytes: Buffer.concat(parts), hashes };
}

describe("CommitLog append and reopen", () => {
  test("records survive close and reopen, and the chain continues", async () => {
    const log = await CommitLog.open(dir, { key: KEY, clock: () => 1_700_000_000_123 });
    const a = await log.append("spawn", { worker: "worker-1", budget: { ticks: 5 } });
    const b = await log.append("kill", { worker: "worker-1" });
    const c = await log.append("key", { raw: new Uint8Array([1, 2, 3]), big: 2 ** 40 });
    expect([a.seq, b.seq, c.seq]).toEqual([1, 2, 3]);
    expect(a.prev).toEqual(new Uint8Array(32));
    expect(b.prev).toEqual(a.hash);
    await log.close();

    const again = await CommitLog.open(dir, { key: KEY });
    expect(again.recovered.map((r) => [r.seq, r.kind, r.ts_ms])).toEqual([
      [1, "spawn", 1_700_000_000_123],
      [2, "kill", 1_700_000_000_123],
      [3, "key", 1_700_000_000_123],
    ]);
    expect(again.recovered[0]!.body).toEqual({ worker: "worker-1", budget: { ticks: 5 } });
    const key = again.recovered[2]!.body as { raw: Uint8Array; big: number };
    expect(key.raw).toBeInstanceOf(Uint8Array); // a Buffer under Node
    expect([...key.raw, key.big]).toEqual([1, 2, 3, 2 ** 40]);
    expect(again.recovered.map((r) => r.hash)).toEqual([a.hash, b.hash, c.hash]);
    expect(again.lastSeq).toBe(3);
    const d = await again.append("lifecycle", { state: "ONLINE" });
    expect(d.seq).toBe(4);
    expect(d.prev).toEqual(c.hash);
    await again.close();
    expect((await verifyLog(dir, { key: KEY })).lastSeq).toBe(4);
  });

  test("replay() folds recovered records into state and refuses a gap", async () => {
    await writeRecords(4);
    const log = await CommitLog.open(dir, { key: KEY });
    const live = replay(log.recovered, new Set<string>(), (s, r) => {
      const w = (r.body as { worker: string }).worker;
      const next = new Set(s);
      if (r.kind === "spawn") next.add(w);
      else next.delete(w);
      return next;
    });
    expect([...live]).toEqual(["worker-1", "worker-3"]);
    expect(() => replay([log.recovered[0]!, log.recovered[2]!], 0, (s) => s + 1)).toThrow(/seq gap: record 3 follows record 1/);
    await log.close();
  });

  test("append() refuses bad kinds and unpackable bodies without taking a seq", async () => {
    const log = await CommitLog.open(dir, { key: KEY });
    await expect(log.append("Spawn!", {})).rejects.toThrow(/invalid: commit log: bad record kind/);
    await expect(log.append("spawn", { s: Symbol("x") })).rejects.toThrow(/not msgpack-able: Unknown type: symbol/);
    await expect(log.append("spawn", 2n ** 70n)).rejects.toThrow(/not msgpack-able/);
    expect((await log.append("spawn", {})).seq).toBe(1);
    await log.close();
    await expect(log.append("spawn", {})).rejects.toBeInstanceOf(ClosedError);
  });

  test("open() refuses a short key", async () => {
    await expect(CommitLog.open(dir, { key: new Uint8Array(8) })).rejects.toThrow(/at least 16 bytes/);
  });
});

describe("group commit", () => {
  test("concurrent appends share fsyncs, keep seq order and resolve in order", async () => {
    let syncs = 0;
    const fs = withDatasync((real) => {
      syncs += 1;
      return real();
    });
    const log = await CommitLog.open(dir, { key: KEY, fs });
    const resolvedOrder: number[] = [];
    const all = await Promise.all(
      Array.from({ length: 300 }, (_, i) =>
        log.append("ctr", { i }).then((r) => {
          resolvedOrder.push(r.seq);
          return r;
        }),
      ),
    );
    expect(all.map((r) => r.seq)).toEqual(Array.from({ length: 300 }, (_, i) => i + 1));
    expect(all.map((r) => (r.body as { i: number }).i)).toEqual(Array.from({ length: 300 }, (_, i) => i));
    expect(resolvedOrder).toEqual(all.map((r) => r.seq));
    expect(syncs).toBe(log.stats.syncs);
    expect(syncs).toBeGreaterThanOrEqual(1);
    expect(syncs).toBeLessThan(300 / 10);
    expect(all[299]!.batch).toBeGreaterThan(1); // more than one batch: the later ones queued behind an fsync
    await log.close();
    const again = await CommitLog.open(dir, { key: KEY });
    expect(again.recovered.map((r) => (r.body as { i: number }).i)).toEqual(all.map((r) => (r.body as { i: number }).i));
    await again.close();
  });

  test("a failed fsync rejects the batch and everything after it", async () => {
    const fs = withDatasync(() => Promise.reject(new Error("EIO: disk on fire")));
    const log = await CommitLog.open(dir, { key: KEY, fs });
    const results = await Promise.allSettled([log.append("ctr", 1), log.append("ctr", 2)]);
    expect(results.map((r) => r.status)).toEqual(["rejected", "rejected"]);
    await expect(log.append("ctr", 3)).rejects.toThrow(/io: commit log: write of records 1\.\.1 failed, log needs reopening: EIO/);
    await log.close();
  });
});

describe("torn tails are cut, with an audit line", () => {
  test("a partial final frame is cut and reported", async () => {
    const written = await writeRecords(3);
    const good = (await stat(logPath)).size;
    const next = frames(4, 4, { prev: written[2]!.hash }).bytes;
    await writeFile(logPath, next.subarray(0, next.length - 5), { flag: "a" });
    const audit: string[] = [];
    const log = await CommitLog.open(dir, { key: KEY, onAudit: (l) => audit.push(l) });
    expect(audit).toEqual([`commit log: cut torn tail at offset ${good} (${next.length - 5} bytes): partial frame`]);
    expect(log.recovered.length).toBe(3);
    expect((await stat(logPath)).size).toBe(good);
    expect((await log.append("ctr", {})).seq).toBe(4);
    await log.close();
    expect((await verifyLog(dir, { key: KEY })).ok).toBe(true);
  });

  test("a final frame whose checksum fails is cut; verifyLog reports it without cutting", async () => {
    const written = await writeRecords(2);
    const good = (await stat(logPath)).size;
    const next = frames(3, 3, { prev: written[1]!.hash }).bytes;
    next[next.length - 40] ^= 0xff; // inside the payload
    await writeFile(logPath, next, { flag: "a" });
    const report = await verifyLog(dir, { key: KEY });
    expect(report).toMatchObject({ ok: true, records: 2, lastSeq: 2, tornTail: { offset: good, bytes: next.length } });
    expect((await stat(logPath)).size).toBe(good + next.length);
    const audit: string[] = [];
    const log = await CommitLog.open(dir, { key: KEY, onAudit: (l) => audit.push(l) });
    expect(audit[0]).toMatch(new RegExp(`^commit log: cut torn tail at offset ${good} \\(${next.length} bytes\\): checksum mismatch$`));
    await log.close();
  });

  test("a multi-frame batch torn in its middle is cut whole: its later frames are of the same batch", async () => {
    const written = await writeRecords(2);
    const good = (await stat(logPath)).size;
    const batch = frames(3, 6, { prev: written[1]!.hash, batch: 3 }).bytes;
    batch.fill(0, 30, 120); // pages of frame 3 never reached the disk; frames 4..6 did
    await writeFile(logPath, batch, { flag: "a" });
    const audit: string[] = [];
    const log = await CommitLog.open(dir, { key: KEY, onAudit: (l) => audit.push(l) });
    expect(log.recovered.length).toBe(2);
    expect(audit[0]).toContain(`cut torn tail at offset ${good} (${batch.length} bytes)`);
    await log.close();
  });

  test("zeros after the last frame (size extended, data lost) are a torn tail", async () => {
    await writeRecords(2);
    const good = (await stat(logPath)).size;
    await writeFile(logPath, Buffer.alloc(4096), { flag: "a" });
    const audit: string[] = [];
    const log = await CommitLog.open(dir, { key: KEY, onAudit: (l) => audit.push(l) });
    expect(audit[0]).toMatch(new RegExp(`at offset ${good} \\(4096 bytes\\)`));
    await log.close();
  });
});

describe("damage that is not a torn tail is refused", () => {
  test("a flipped byte in the middle names the record and offset", async () => {
    const written = await writeRecords(4);
    const bytes = await readFile(logPath);
    bytes[written[1]!.offset + 20] ^= 0x01;
    await writeFile(logPath, bytes);
    const err = await openError();
    expect(err.message).toBe(
      `invalid: commit log: record 2 at offset ${written[1]!.offset}: checksum mismatch, but intact record 3 of a later batch follows at offset ${written[2]!.offset}: not a torn tail`,
    );
    expect(err).toMatchObject({ seq: 2, offset: written[1]!.offset, problem: "checksum" });
    expect((await readFile(logPath)).equals(bytes)).toBe(true); // nothing was cut
    const report = await verifyLog(dir);
    expect(report.ok).toBe(false);
    expect(report.records).toBe(1);
    expect(report.error).toContain("record 2 at offset");
  });

  test("a flipped byte in a durable multi-frame batch is refused when a later batch follows", async () => {
    const written = await writeRecords(1);
    const b1 = frames(2, 4, { prev: written[0]!.hash, batch: 2 });
    const b2 = frames(5, 5, { prev: b1.hashes[2]!, batch: 5 });
    const tail = Buffer.concat([b1.bytes, b2.bytes]);
    tail[b1.bytes.length - 50] ^= 0x10; // inside record 4, the last of batch 2..4
    await writeFile(logPath, tail, { flag: "a" });
    const err = await openError();
    expect(err.message).toMatch(/record 4 at offset \d+: checksum mismatch, but intact record 5 of a later batch follows/);
  });

  test("a truncated middle (bytes cut out of record 2) is refused", async () => {
    const written = await writeRecords(4);
    const bytes = await readFile(logPath);
    const cut = Buffer.concat([bytes.subarray(0, written[1]!.offset + 12), bytes.subarray(written[1]!.offset + 30)]);
    await writeFile(logPath, cut);
    const err = await openError();
    expect(err.seq).toBe(2);
    expect(err.offset).toBe(written[1]!.offset);
    expect(err.message).toMatch(/not a torn tail/);
  });

  test("a whole record cut out of the middle is a seq gap", async () => {
    const written = await writeRecords(4);
    const bytes = await readFile(logPath);
    await writeFile(logPath, Buffer.concat([bytes.subarray(0, written[1]!.offset), bytes.subarray(written[2]!.offset)]));
    const err = await openError();
    expect(err.message).toBe(`invalid: commit log: record 2 at offset ${written[1]!.offset}: seq gap: expected seq 2, found 3`);
  });

  test("a forged record (re-chained and re-checksummed without the key) fails authentication", async () => {
    const written = await writeRecords(5);
    const bytes = await readFile(logPath);
    // The forger rewrites record 3's body and re-chains 3..5 with valid crc32 but a guessed key.
    const forged = frames(3, 5, { prev: written[1]!.hash, key: OTHER_KEY });
    await writeFile(logPath, Buffer.concat([bytes.subarray(0, written[2]!.offset), forged.bytes]));
    const err = await openError();
    expect(err.message).toBe(
      `invalid: commit log: record 3 at offset ${written[2]!.offset}: authentication tag mismatch (forged record or wrong key)`,
    );
    expect(err.problem).toBe("auth");
    // Without the key the chain and checksums look fine, and the report says HMAC was not checked.
    expect(await verifyLog(dir)).toMatchObject({ ok: true, records: 5, hmac: "not checked" });
    expect(await verifyLog(dir, { key: KEY })).toMatchObject({ ok: false, records: 2, hmac: "not checked" });
  });

  test("a seq gap between validly keyed records is refused", async () => {
    const f = frames(1, 3, { prev: new Uint8Array(32), seqOf: (i) => (i === 3 ? 4 : i) });
    await writeFile(logPath, f.bytes);
    const err = await openError();
    expect(err.message).toMatch(/record 3 at offset \d+: seq gap: expected seq 3, found 4$/);
  });

  test("a broken chain link between validly keyed records is refused", async () => {
    const a = frames(1, 2, { prev: new Uint8Array(32) });
    const b = frames(3, 3, { prev: new Uint8Array(32).fill(1) });
    await writeFile(logPath, Buffer.concat([a.bytes, b.bytes]));
    const err = await openError();
    expect(err.message).toMatch(/record 3 at offset \d+: broken chain: prev 0101010101010101… is not the hash of record 2/);
  });

  test("the wrong key is refused at record 1", async () => {
    await writeRecords(2);
    const err = await openError({ key: OTHER_KEY });
    expect(err.message).toBe("invalid: commit log: record 1 at offset 0: authentication tag mismatch (forged record or wrong key)");
  });
});

describe("single writer", () => {
  test("a second open of the same directory is refused while the first is open", async () => {
    const log = await CommitLog.open(dir, { key: KEY });
    await expect(CommitLog.open(dir, { key: KEY })).rejects.toThrow(BusyError);
    await log.close();
    const again = await CommitLog.open(dir, { key: KEY });
    await again.close();
  });

  test("an empty lock file, as a power cut can leave one, is taken over", async () => {
    await mkdir(dir, { recursive: true });
    await writeFile(join(dir, LOCK_FILE), "");
    const audit: string[] = [];
    const log = await CommitLog.open(dir, { key: KEY, onAudit: (l) => audit.push(l) });
    expect(audit).toEqual([`commit log: took over an empty lock file (left by a crash) in ${resolve(dir)}`]);
    expect((await readFile(join(dir, LOCK_FILE), "utf8")).startsWith(`${process.pid} `)).toBe(true);
    await log.close();
  });

  test("a lock held by another running process is refused; a dead pid's lock is taken over", async () => {
    const boot = (await readFile("/proc/sys/kernel/random/boot_id", "utf8").catch(() => "-")).trim();
    const holder = spawn(process.execPath, ["-e", "setTimeout(() => {}, 30000)"], { stdio: "ignore" });
    try {
      await writeFile(join(dir, LOCK_FILE), `${holder.pid} ${boot} abc\n`);
      await expect(CommitLog.open(dir, { key: KEY })).rejects.toThrow(
        `busy: commit log: ${resolve(dir)} is locked by running pid ${holder.pid}`,
      );
    } finally {
      process.kill(holder.pid!, "SIGKILL");
      await new Promise((r) => holder.once("exit", r));
    }
    const audit: string[] = [];
    const log = await CommitLog.open(dir, { key: KEY, onAudit: (l) => audit.push(l) });
    expect(audit).toEqual([`commit log: took over stale lock of pid ${holder.pid} in ${resolve(dir)}`]);
    expect((await readFile(join(dir, LOCK_FILE), "utf8")).startsWith(`${process.pid} `)).toBe(true);
    await log.close();
    await expect(stat(join(dir, LOCK_FILE))).rejects.toThrow(/ENOENT/);
  });
});

describe("offline tools", () => {
  test("showLog() returns filtered records and formatRecord() prints one line each", async () => {
    await writeRecords(4);
    const { records, report } = await showLog(dir, { kinds: ["kill"], key: KEY });
    expect(records.map((r) => r.seq)).toEqual([2, 4]);
    expect(report).toMatchObject({ ok: true, records: 4, lastSeq: 4, hmac: "verified" });
    expect(formatRecord(records[0]!)).toMatch(/^2 \d{4}-\d\d-\d\dT[\d:.]+Z kill \{"worker":"worker-2"\} [0-9a-f]{12}…$/);
    await expect(verifyLog(join(dir, "nope"))).rejects.toThrow(/not found: commit log: no commits.log/);
  });

  test("scanLog() of an empty image is an empty, verified log", () => {
    expect(scanLog(new Uint8Array(0), { key: KEY })).toMatchObject({ records: [], end: 0, authenticated: true });
  });
});

// ---------------------------------------------------------------------------
// Crash campaign: a child appends in a loop and acknowledges each durable seq
// on stdout; the parent SIGKILLs it at random points, sometimes also drops or
// zeroes bytes of the last, unacknowledged batch (a simulated power loss),
// then reopens and checks every acknowledged seq is there.

describe("crash campaign", () => {
  const child = useBundledChild("test/root-task/commit-log-crash-child.ts", "cohesix-commit-log-");

  test("50 SIGKILLs at random points lose no acknowledged record", { timeout: 90_000 }, async () => {
    const seed = crashSeed();
    const rand = lcg(seed);
    const keyHex = randomBytes(32).toString("hex");
    const key = Buffer.from(keyHex, "hex");
    const acked = new Set<number>();
    let cuts = 0;
    let damaged = 0;
    /** Starts a child that has loaded its code and waits for "go" on stdin. */
    const start = (): CrashChild => startCrashChild([child.path, dir, keyHex, String(1 + Math.floor(rand() * 16))], seed);
    let next = start();
    for (let round = 0; round < 50; round++) {
      const { proc, out, exited } = next;
      await goUntilReady(next, `seed ${seed} round ${round}`);
      next = start(); // loads while this round runs; opens the log only after "go"
      await new Promise((r) => setTimeout(r, 5 + rand() * 100));
      process.kill(proc.pid!, "SIGKILL");
      await exited;
      for (const m of out().matchAll(/^ack (\d+)$/gm)) acked.add(Number(m[1]));
      const maxAcked = Math.max(0, ...acked);

      // Simulated power loss: only the last batch, and only if none of it was acknowledged.
      if (round % 2 === 1) {
        const { records } = await showLog(dir, { key });
        const last = records.at(-1);
        const start = records.find((r) => last !== undefined && r.batch === last.batch)?.offset;
        if (last !== undefined && start !== undefined && last.batch > maxAcked) {
          const size = (await stat(logPath)).size;
          const at = start + Math.floor(rand() * (size - start));
          if (rand() < 0.5) await truncate(logPath, at);
          else {
            const bytes = await readFile(logPath);
            bytes.fill(0, at, Math.min(size, at + 1 + Math.floor(rand() * 600)));
            await writeFile(logPath, bytes);
          }
          damaged += 1;
        }
      }

      const audit: string[] = [];
      const log = await CommitLog.open(dir, { key, onAudit: (l) => audit.push(l) });
      const seqs = log.recovered.map((r) => r.seq);
      expect(seqs, `seed ${seed} round ${round}`).toEqual(seqs.map((_, i) => i + 1));
      const missing = [...acked].filter((s) => s > seqs.length);
      expect(missing, `seed ${seed} round ${round}: acknowledged but lost`).toEqual([]);
      const torn = audit.filter((l) => l.startsWith("commit log: cut torn tail"));
      expect(torn.length).toBeLessThanOrEqual(1);
      expect(audit.length - torn.length).toBeLessThanOrEqual(1); // at most the stale-lock takeover
      cuts += torn.length;
      await log.close();
    }
    next.proc.kill("SIGKILL");
    await next.exited;
    const report = await verifyLog(dir, { key });
    expect(report).toMatchObject({ ok: true, hmac: "verified" });
    expect(report.lastSeq).toBeGreaterThanOrEqual(Math.max(...acked));
    expect(acked.size).toBeGreaterThan(50);
    console.log(
      `crash campaign seed ${seed}: ${acked.size} acknowledged, ${report.lastSeq} in log, ${cuts} torn tails cut, ${damaged} simulated power losses`,
    );
  });
});

test("NineError classes: corruption is an invalid: error", () => {
  expect(new LogCorruptionError(2, 10, "chain", "x")).toBeInstanceOf(NineError);
});
