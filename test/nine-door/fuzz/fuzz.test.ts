import v8 from "node:v8";
import vm from "node:vm";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { controlSession, FuzzConn, fuzzServer } from "./driver.ts";
import { startAppliance, type FuzzTarget } from "./target.ts";

const FRAMES = 100_000;
const SEED = 0xc0e51;

/** A forced collection, so heap figures compare live data only. */
function collect(): void {
  const g = (globalThis as { gc?: () => void }).gc;
  if (g) return g();
  v8.setFlagsFromString("--expose-gc");
  (vm.runInNewContext("gc") as () => void)();
}

function heapAfterGc(): number {
  collect();
  collect();
  return process.memoryUsage().heapUsed;
}

describe("the appliance under 100,000 fuzzed frames", () => {
  let target: FuzzTarget;
  beforeAll(async () => {
    target = await startAppliance();
  });
  afterAll(async () => {
    await target?.close();
  });

  test(
    "answers every frame it owes, hangs up only on refused size fields, keeps serving a control session, and stays bounded in memory",
    async () => {
      const { port, ticket, app } = target;
      // Warm up so the baseline includes code and caches, not growth.
      await fuzzServer({ port, aname: ticket, frames: 5_000, seed: SEED + 1 });
      const heapBefore = heapAfterGc();
      const rssBefore = process.memoryUsage().rss;

      const stop = new AbortController();
      const control = controlSession({ port, aname: ticket, path: ["proc", "boot"], stop: stop.signal });
      const t0 = performance.now();
      const stats = await fuzzServer({ port, aname: ticket, frames: FRAMES, seed: SEED });
      const seconds = (performance.now() - t0) / 1000;
      stop.abort();
      const ctl = await control;

      expect(stats.failures).toEqual([]);
      expect(stats.frames).toBeGreaterThanOrEqual(FRAMES);
      // Every kind of bad input was exercised, and the server hung up only
      // where the stream could not be resynchronised.
      for (const kind of ["valid", "flip", "truncate", "bogus-type", "huge-count", "insert", "walk17", "bad-string", "dup-tag", "flush", "reply-type", "unknown-fid", "version", "size-refused", "size-lie"]) {
        expect(stats.kinds.get(kind) ?? 0, kind).toBeGreaterThan(0);
      }
      expect(stats.refusedHangups).toBe(stats.kinds.get("size-refused"));
      expect(stats.replyClasses.get("invalid") ?? 0).toBeGreaterThan(1000);
      expect(stats.replyClasses.get("ok") ?? 0).toBeGreaterThan(1000);

      expect(ctl.failures).toEqual([]);
      expect(ctl.rounds).toBeGreaterThan(10);

      // The server still serves a fresh session, and dropped every fuzz session.
      const after = await FuzzConn.open(port);
      await after.negotiate("9P2000", 8192, ticket);
      const w = await after.call({ type: "Twalk", fid: 0, newfid: 1, names: ["proc", "sessions"] }, 2);
      expect(w.type).toBe("Rwalk");
      after.close();
      await new Promise((r) => setTimeout(r, 100));
      expect(app.server.sessions.length).toBe(0);

      const heapGrowth = heapAfterGc() - heapBefore;
      const rssGrowth = process.memoryUsage().rss - rssBefore;
      console.log(
        `fuzz: ${stats.frames} frames in ${seconds.toFixed(1)} s (${Math.round(stats.frames / seconds)} frames/s), ` +
          `${stats.connections} connections, control max ${ctl.maxLatencyMs.toFixed(1)} ms, ` +
          `heap +${(heapGrowth / 2 ** 20).toFixed(1)} MiB, rss +${(rssGrowth / 2 ** 20).toFixed(1)} MiB`,
      );
      expect(heapGrowth).toBeLessThan(32 * 2 ** 20);
      expect(rssGrowth).toBeLessThan(256 * 2 ** 20);
    },
    180_000,
  );
});
