/**
 * writeImage(): bytes land, the read-back is compared, progress runs
 * through both phases, an image changed after verification and a target
 * that reads back differently are caught; and the progress bar's two
 * faces (a terminal line, plain lines).
 */
import { createHash, randomBytes } from "node:crypto";
import { mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { InvalidError } from "../../nine-door/index.ts";
import { WriteError, progressBar, writeImage, type Progress } from "../../flash/index.ts";

let dir = "";
let image = "";
let data: Buffer;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "cohesix-writer-"));
  data = randomBytes(1_000_003); // not a multiple of any chunk size
  image = join(dir, "image.bin");
  await writeFile(image, data);
});

afterAll(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

const sha = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");

describe("writeImage()", () => {
  it("writes a plain file, reads it back and returns the sha256 of both", async () => {
    const target = join(dir, "a.img");
    const events: Progress[] = [];
    const r = await writeImage(image, target, { chunkBytes: 65536, onProgress: (p) => events.push(p) });
    expect(r.bytes).toBe(data.length);
    expect(r.sha256).toBe(sha(data));
    expect(Buffer.compare(await readFile(target), data)).toBe(0);
    expect(r.writeMs).toBeGreaterThanOrEqual(0);
    // Progress: write from 0 to the end, then verify from 0 to the end, never backwards within a phase.
    const writes = events.filter((e) => e.phase === "write").map((e) => e.done);
    const verifies = events.filter((e) => e.phase === "verify").map((e) => e.done);
    expect(writes[0]).toBe(0);
    expect(writes.at(-1)).toBe(data.length);
    expect(verifies[0]).toBe(0);
    expect(verifies.at(-1)).toBe(data.length);
    expect([...writes].sort((a, b) => a - b)).toEqual(writes);
    expect(events.findIndex((e) => e.phase === "verify")).toBeGreaterThan(events.findLastIndex((e) => e.phase === "write"));
    expect(events.every((e) => e.total === data.length)).toBe(true);
  });

  it("truncates a longer file that was there before", async () => {
    const target = join(dir, "b.img");
    await writeFile(target, Buffer.alloc(3_000_000, 1));
    await writeImage(image, target);
    expect((await stat(target)).size).toBe(data.length);
  });

  it("leaves the rest of a device alone (no truncation) and flushes its buffers before reading back", async () => {
    const target = join(dir, "device.img");
    await writeFile(target, Buffer.alloc(2_000_000, 0xaa));
    let flushed = 0;
    await writeImage(image, target, { device: true, chunkBytes: 300_000, flushBuffers: async () => void flushed++ });
    const after = await readFile(target);
    expect(after.length).toBe(2_000_000);
    expect(Buffer.compare(after.subarray(0, data.length), data)).toBe(0);
    expect(after[data.length]).toBe(0xaa);
    expect(flushed).toBe(1);
  });

  it("accepts the sha256 the manifest gives, in either case", async () => {
    const r = await writeImage(image, join(dir, "c.img"), { expectedSha256: sha(data).toUpperCase() });
    expect(r.sha256).toBe(sha(data));
  });

  it("refuses an image whose bytes differ from the verified manifest's sha256", async () => {
    const p = writeImage(image, join(dir, "d.img"), { expectedSha256: "0".repeat(64) });
    await expect(p).rejects.toBeInstanceOf(InvalidError);
    await expect(p).rejects.toThrow(/image\.bin changed after it was verified: sha256 [0-9a-f]{64}, manifest says 0{64}/);
  });

  it("fails when the target reads back differently (a fake-capacity card)", async () => {
    const target = join(dir, "e.img");
    await writeFile(target, Buffer.alloc(data.length));
    const p = writeImage(image, target, {
      device: true,
      flushBuffers: async () => {
        // What a card that drops writes beyond its real size does: part of the data reads back wrong.
        const now = await readFile(target);
        now[now.length - 10] = now[now.length - 10]! ^ 1;
        await writeFile(target, now);
      },
    });
    await expect(p).rejects.toBeInstanceOf(WriteError);
    await expect(p).rejects.toThrow(/^io: read-back of .*e\.img differs from the image: wrote sha256 [0-9a-f]{64}, read [0-9a-f]{64}/);
  });

  it("fails with a clear message when the target cannot be opened", async () => {
    await expect(writeImage(image, join(dir, "no-such-dir", "x.img"))).rejects.toThrow(/^io: cannot open .*x\.img for writing: ENOENT/);
    // A device opened exclusively must exist: no file is created for it.
    await expect(writeImage(image, join(dir, "missing-device"), { device: true })).rejects.toThrow(/cannot open .*missing-device for writing/);
  });

  it("stops when aborted", async () => {
    const ac = new AbortController();
    ac.abort();
    await expect(writeImage(image, join(dir, "f.img"), { signal: ac.signal })).rejects.toThrow(/abort/i);
  });

  it("writes an empty image as an empty file", async () => {
    const empty = join(dir, "empty.bin");
    await writeFile(empty, "");
    const r = await writeImage(empty, join(dir, "g.img"));
    expect(r).toMatchObject({ bytes: 0, sha256: sha(Buffer.alloc(0)) });
  });
});

describe("progressBar()", () => {
  it("prints a plain line per tenth when not on a terminal, and a summary", () => {
    const out: string[] = [];
    let t = 0;
    const bar = progressBar({ write: (s) => out.push(s), tty: false, now: () => t });
    for (let done = 0; done <= 1000; done += 50) {
      t += 10;
      bar.update("writing", done, 1000);
    }
    bar.finish("writing", 1000);
    expect(out.slice(0, 3)).toEqual(["writing: 0% (0 B of 1000 B)\n", "writing: 10% (100 B of 1000 B)\n", "writing: 20% (200 B of 1000 B)\n"]);
    expect(out).toHaveLength(11);
    expect(out.every((l) => !l.includes("\r"))).toBe(true);
    expect(out.at(-1)).toMatch(/^writing: 1000 B in 0\.\d s \(\d+(\.\d)? KiB\/s\)\n$/);
  });

  it("redraws one line on a terminal, throttled, never wider than the terminal", () => {
    const out: string[] = [];
    let t = 0;
    const bar = progressBar({ write: (s) => out.push(s), tty: true, columns: 60, intervalMs: 100, now: () => t });
    for (let done = 0; done <= 100 << 20; done += 1 << 20) {
      t += 10; // 101 updates over ~1 s: about 10 redraws
      bar.update("writing", done, 100 << 20);
    }
    expect(out.length).toBeGreaterThanOrEqual(9);
    expect(out.length).toBeLessThanOrEqual(13);
    for (const line of out) {
      expect(line.startsWith("\r")).toBe(true);
      expect(line.length - 1).toBeLessThanOrEqual(59);
    }
    expect(out.at(-1)).toMatch(/^\rwriting \[#+\] 100%  100 MiB\/100 MiB  \d+(\.\d)? MiB\/s$/);
    bar.finish("writing", 100 << 20);
    expect(out.at(-1)).toMatch(/^\rwriting: 100 MiB in 1\.0 s \(\d+(\.\d)? MiB\/s\)\s*\n$/);
  });

  it("drops the bar but keeps the figures on a narrow terminal", () => {
    const out: string[] = [];
    const bar = progressBar({ write: (s) => out.push(s), tty: true, columns: 30, now: () => 1000 });
    bar.update("verifying", 5 << 20, 10 << 20);
    expect(out[0]!.length - 1).toBeLessThanOrEqual(29);
    expect(out[0]).not.toContain("[");
    expect(out[0]).toContain("50%");
  });
});
