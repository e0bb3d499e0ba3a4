import { appendFile, mkdir, mkdtemp, readFile, readdir, rm, stat, truncate, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, test } from "vitest";
import { ACKED_FILE, type OutboxEntry, type OutboxState, Outbox, encodeEntry, scanSegment } from "../../fleet/index.ts";
import { crashSeed, goUntilReady, lcg, startCrashChild, useBundledChild, type CrashChild } from "../crash.ts";

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "cohesix-outbox-"));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

const body = (i: number, pad = 0): Buffer => Buffer.from(JSON.stringify({ kind: "audit", line: `line ${i}${"x".repeat(pad)}` }));
const text = (e: OutboxEntry): string => Buffer.from(e.body).toString();
const segments = async (): Promise<string[]> => (await readdir(dir)).filter((n) => n.startsWith("seg-")).sort();
const readAll = async (box: Outbox, after = 0): Promise<OutboxEntry[]> => {
  const out: OutboxEntry[] = [];
  for (;;) {
    const got = await box.read(out.at(-1)?.seq ?? after, { limit: 7 });
    if (got.length === 0) return out;
    out.push(...got);
  }
};

describe("outbox format", () => {
  test("scanSegment() reads framed entries back and stops at a torn or damaged frame", () => {
    const frames = [1, 2, 3].map((seq) => encodeEntry({ seq, ts_ms: 1000 + seq, historical: seq === 2, body: body(seq) }));
    const all = Buffer.concat(frames);
    expect(scanSegment(all).entries.map((e) => [e.seq, e.ts_ms, e.historical, text(e)])).toEqual([
      [1, 1001, false, body(1).toString()],
      [2, 1002, true, body(2).toString()],
      [3, 1003, false, body(3).toString()],
    ]);
    expect(scanSegment(all.subarray(0, all.length - 3))).toMatchObject({ end: frames[0]!.length + frames[1]!.length, stopped: "partial frame" });
    const flipped = Buffer.from(all);
    flipped[frames[0]!.length + 30] ^= 0x40;
    expect(scanSegment(flipped)).toMatchObject({ end: frames[0]!.length, stopped: "checksum mismatch" });
    const gap = Buffer.concat([frames[0]!, frames[2]!]);
    expect(scanSegment(gap)).toMatchObject({ end: frames[0]!.length, stopped: "seq 3 does not follow 1" });
  });
});

describe("Outbox", () => {
  test("append() gives gapless seqs in call order, read() returns them in order and a reopen continues the seqs", async () => {
    const states: string[] = [];
    const box = await Outbox.open(dir, { onState: (from, to) => states.push(`${from}->${to}`) });
    const entries = await Promise.all(Array.from({ length: 50 }, (_, i) => box.append(body(i), { historical: i % 2 === 0, ts_ms: 5000 + i })));
    expect(entries.map((e) => e.seq)).toEqual(Array.from({ length: 50 }, (_, i) => i + 1));
    const read = await readAll(box);
    expect(read.map((e) => [e.seq, e.ts_ms, e.historical, text(e)])).toEqual(entries.map((e, i) => [i + 1, 5000 + i, i % 2 === 0, body(i).toString()]));
    await box.close();
    expect(states).toEqual(["opening->ready", "ready->closed"]);
    await expect(box.append(body(0))).rejects.toThrow(/^closed: fleet outbox: .* is closed/);

    const again = await Outbox.open(dir);
    expect(again.lastSeq).toBe(50);
    expect((await again.append(body(50))).seq).toBe(51);
    expect((await readAll(again, 49)).map((e) => e.seq)).toEqual([50, 51]);
    await again.close();
  });

  test("ack() persists the watermark, a reopen reads on from it, and delivered segments are deleted", async () => {
    const box = await Outbox.open(dir, { maxBytes: 64 * 1024, segmentBytes: 1024, ackDelayMs: 1 });
    for (let i = 0; i < 100; i++) await box.append(body(i, 40));
    expect((await segments()).length).toBeGreaterThan(5);
    box.ack(90);
    box.ack(80); // never goes back
    await box.close();
    expect(await readFile(join(dir, ACKED_FILE), "utf8")).toBe("90\n");
    const names = await segments();
    expect(names.length).toBeLessThanOrEqual(2);
    const again = await Outbox.open(dir);
    expect([again.acked, again.pending]).toEqual([90, 10]);
    expect((await readAll(again, again.acked)).map((e) => e.seq)).toEqual([91, 92, 93, 94, 95, 96, 97, 98, 99, 100]);
    again.ack(100);
    await again.close();
    const last = await Outbox.open(dir);
    expect([last.acked, last.pending, last.lastSeq]).toEqual([100, 0, 100]);
    expect((await last.append(body(100))).seq).toBe(101);
    await last.close();
  });

  test("a torn tail is cut on open with an audit line; every appended record before it is kept", async () => {
    const box = await Outbox.open(dir);
    for (let i = 0; i < 10; i++) await box.append(body(i));
    await box.close();
    const [name] = await segments();
    const path = join(dir, name!);
    const size = (await stat(path)).size;
    await appendFile(path, encodeEntry({ seq: 11, ts_ms: 1, historical: false, body: body(10) }).subarray(0, 20));
    const audit: string[] = [];
    const again = await Outbox.open(dir, { onAudit: (l) => audit.push(l) });
    expect(audit).toEqual([`fleet outbox: cut torn tail ${name} at offset ${size} (20 bytes): partial frame`]);
    expect((await stat(path)).size).toBe(size);
    expect((await readAll(again)).map((e) => e.seq)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    expect((await again.append(body(10))).seq).toBe(11);
    await again.close();

    const bytes = await readFile(path);
    bytes.fill(0, bytes.length - 5);
    await writeFile(path, bytes);
    const third = await Outbox.open(dir, { onAudit: (l) => audit.push(l) });
    expect(audit.at(-1)).toMatch(/cut torn tail .* checksum mismatch/);
    expect(third.lastSeq).toBe(10);
    await third.close();
  });

  test("at its byte bound it drops the oldest whole segments and appends one dropped record that counts them", async () => {
    const audit: string[] = [];
    const maxBytes = 64 * 1024;
    const box = await Outbox.open(dir, { maxBytes, segmentBytes: 4096, onAudit: (l) => audit.push(l) });
    const n = 2000;
    for (let i = 0; i < n; i += 50) await Promise.all(Array.from({ length: 50 }, (_, k) => box.append(body(i + k, 60))));
    expect(box.stats.bytes).toBeLessThanOrEqual(maxBytes);
    let onDisk = 0;
    for (const s of await segments()) onDisk += (await stat(join(dir, s))).size;
    expect(onDisk).toBeLessThanOrEqual(maxBytes);

    const kept = await readAll(box);
    const dropped = kept.filter((e) => JSON.parse(text(e)).kind === "dropped").map((e) => JSON.parse(text(e)) as { count: number; first_seq: number; last_seq: number });
    const lines = kept.filter((e) => JSON.parse(text(e)).kind === "audit");
    expect(dropped.length).toBeGreaterThan(0);
    // Every appended line is either still kept or counted as dropped: nothing vanishes silently.
    const droppedCount = dropped.reduce((s, d) => s + d.count, 0);
    expect(lines.length + droppedCount).toBe(n);
    // What is kept is the newest lines, in order, without gaps.
    const nums = lines.map((e) => Number(/line (\d+)/.exec(text(e))![1]));
    expect(nums).toEqual(nums.map((_, i) => n - nums.length + i));
    expect(kept.map((e) => e.seq)).toEqual([...kept.map((e) => e.seq)].sort((a, b) => a - b));
    expect(audit.filter((l) => l.startsWith("fleet outbox: dropped ")).length).toBeGreaterThanOrEqual(dropped.length);
    expect(audit[0]).toMatch(/^fleet outbox: dropped \d+ undelivered records \(seq 1\.\.\d+, \d+ bytes\): the outbox reached its 65536-byte bound$/);
    expect(box.stats.dropped).toBe(droppedCount);
    await box.close();
  });

  test("read() skips a segment whose file is gone under it (taken out by the bound while a read ran)", async () => {
    const box = await Outbox.open(dir, { maxBytes: 64 * 1024, segmentBytes: 1024 });
    for (let i = 0; i < 60; i++) await box.append(body(i, 40));
    const names = await segments();
    expect(names.length).toBeGreaterThan(3);
    await rm(join(dir, names[1]!));
    const seqs = (await readAll(box)).map((e) => e.seq);
    expect(seqs.length).toBeGreaterThan(0);
    expect(seqs.at(-1)).toBe(60);
    expect(seqs).toEqual([...seqs].sort((a, b) => a - b));
    await box.close();
  });

  test("the newest records are read from memory and equal what the files hold, also past the memory's bound and across a dropped record", async () => {
    const box = await Outbox.open(dir, { maxBytes: 64 * 1024, segmentBytes: 4096 });
    const appended: OutboxEntry[] = [];
    // ~400 KiB of bodies: more than the memory keeps (RECENT_BYTES) and more than the bound, so segments are dropped.
    for (let i = 0; i < 40; i++) appended.push(...(await Promise.all(Array.from({ length: 10 }, (_, k) => box.append(body(i * 10 + k, 1000))))));
    const start = appended.at(-5)!.seq;
    const fromMemory = await readAll(box, start - 1);
    expect(fromMemory.filter((e) => !e.dropped).map((e) => e.seq)).toEqual(appended.slice(-5).map((e) => e.seq));
    const whole = await readAll(box);
    expect(whole.some((e) => e.dropped)).toBe(true);
    await box.close();
    const fromFiles = await readAll(await Outbox.open(dir, { maxBytes: 64 * 1024, segmentBytes: 4096 }));
    const shape = (e: OutboxEntry) => [e.seq, e.ts_ms, e.historical, e.dropped === true, text(e)];
    expect(whole.map(shape)).toEqual(fromFiles.map(shape));
    expect(fromMemory.map(shape)).toEqual(fromFiles.filter((e) => e.seq >= start).map(shape));
  });

  test("a segment size or bound out of range is refused", async () => {
    await expect(Outbox.open(dir, { maxBytes: 1000 })).rejects.toThrow("invalid: fleet outbox: maxBytes must be an integer of at least 65536, got 1000");
    await expect(Outbox.open(dir, { maxBytes: 65536, segmentBytes: 65536 })).rejects.toThrow(/segmentBytes must be an integer from 1024 to maxBytes\/4/);
  });

  test("a failed write moves the outbox to failed and refuses later appends", async () => {
    const seen: OutboxState[] = [];
    const box = await Outbox.open(dir, { onState: (_f, to) => seen.push(to) });
    await box.append(body(0));
    // Remove the directory under it and make rolling impossible: force a roll with a huge segment.
    await rm(dir, { recursive: true, force: true });
    await writeFile(dir, "not a directory");
    const big = Buffer.alloc(100 * 1024, 0x61);
    const results = await Promise.allSettled(Array.from({ length: 60 }, () => box.append(big)));
    expect(results.some((r) => r.status === "rejected")).toBe(true);
    expect(box.state).toBe("failed");
    await expect(box.append(body(1))).rejects.toThrow(/^closed: fleet outbox: .* is failed/);
    await box.close();
    expect(seen).toEqual(["ready", "failed", "closed"]);
    await rm(dir, { force: true });
    await mkdir(dir);
  });
});

describe("outbox crash campaign", () => {
  const child = useBundledChild("test/fleet/outbox-crash-child.ts", "cohesix-outbox-");

  test("30 SIGKILLs at random moments while appending lose no acknowledged record and keep the order", { timeout: 120_000 }, async () => {
    const seed = crashSeed();
    const rand = lcg(seed);
    const acked = new Map<number, string>();
    let cuts = 0;
    const start = (): CrashChild => startCrashChild([child.path, dir, String(1 + Math.floor(rand() * 16))], seed);
    let next = start();
    for (let round = 0; round < 30; round++) {
      const { proc, out, exited } = next;
      await goUntilReady(next, `seed ${seed} round ${round}`);
      next = start();
      await new Promise((r) => setTimeout(r, 5 + rand() * 120));
      process.kill(proc.pid!, "SIGKILL");
      await exited;
      for (const m of out().matchAll(/^ack (\d+) (\S+)$/gm)) acked.set(Number(m[1]), m[2]!);
      cuts += out().split("\n").filter((l) => l.startsWith("audit fleet outbox: cut torn tail")).length;

      const audit: string[] = [];
      const box = await Outbox.open(dir, { maxBytes: 256 << 20, onAudit: (l) => audit.push(l) });
      const all = await readAll(box);
      const seqs = all.map((e) => e.seq);
      expect(seqs, `seed ${seed} round ${round}`).toEqual(seqs.map((_, i) => i + 1));
      const bySeq = new Map(all.map((e) => [e.seq, (JSON.parse(text(e)) as { tag: string }).tag]));
      const lost = [...acked].filter(([seq, tag]) => bySeq.get(seq) !== tag);
      expect(lost, `seed ${seed} round ${round}: acknowledged but lost or changed`).toEqual([]);
      // Each child's records appear in the order it appended them.
      const lastOf = new Map<string, number>();
      for (const tag of bySeq.values()) {
        const [pid, i] = tag.split(":");
        expect(Number(i), `seed ${seed}: order of ${pid}`).toBeGreaterThan(lastOf.get(pid!) ?? -1);
        lastOf.set(pid!, Number(i));
      }
      cuts += audit.filter((l) => l.includes("cut torn tail")).length;
      expect(audit.filter((l) => !l.includes("cut torn tail"))).toEqual([]);
      await box.close();
      // Half the rounds also lose the unsynced end of the file, as power loss would.
      if (round % 2 === 1) {
        const names = await segments();
        const path = join(dir, names.at(-1)!);
        const size = (await stat(path)).size;
        if (size > 0) await appendFile(path, Buffer.alloc(1 + Math.floor(rand() * 40), 0xee));
        else await truncate(path, 0);
      }
    }
    next.proc.kill("SIGKILL");
    await next.exited;
    expect(acked.size).toBeGreaterThan(50);
    console.log(`outbox crash campaign seed ${seed}: ${acked.size} acknowledged appends, ${cuts} torn tails cut`);
  });
});
