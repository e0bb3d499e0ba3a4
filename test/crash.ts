/**
 * Helpers of the crash campaigns: the seed (replayable with
 * COHESIX_CRASH_SEED), seeded generators, a crash child bundled once per
 * suite so it starts fast enough to be killed at random moments, and the
 * queen session and command sending of the `cohesix serve` campaigns.
 */
import { mkdir, mkdtemp, rm } from "node:fs/promises";
import { join, resolve } from "node:path";
import { build } from "esbuild";
import { afterAll, beforeAll } from "vitest";
import { NineClient, type Fid } from "../nine-door/index.ts";
import { mintTicket, type CommitRecord } from "../root-task/index.ts";

export { prng as mulberry32 } from "./nine-door/wire/samples.ts";

/** The campaign's seed: COHESIX_CRASH_SEED when set (to replay a failure), else from the clock. */
export function crashSeed(): number {
  return Number(process.env.COHESIX_CRASH_SEED ?? Date.now() % 1_000_000);
}

/**
 * A small linear congruential generator over [0, 1) from `seed`.
 *
 * @example
 * ```ts
 * const rand = lcg(crashSeed());
 * const pause = 5 + rand() * 100;
 * ```
 */
export function lcg(seed: number): () => number {
  let state = seed;
  return () => {
    state = (state * 1103515245 + 12345) % 2 ** 31;
    return state / 2 ** 31;
  };
}

/**
 * Bundles `entry` (a path from the repository root) into one ESM file under
 * node_modules/.cache before the suite's tests and removes it after;
 * `path` is the bundle to run with `node`.
 *
 * @example
 * ```ts
 * const child = useBundledChild("test/fleet/outbox-crash-child.ts", "cohesix-outbox-");
 * test("…", () => spawn(process.execPath, [child.path, dir]));
 * ```
 */
export function useBundledChild(entry: string, prefix: string): { readonly path: string } {
  let bundleDir: string | undefined;
  beforeAll(async () => {
    const cache = resolve("node_modules/.cache");
    await mkdir(cache, { recursive: true });
    const at = await mkdtemp(join(cache, prefix));
    bundleDir = at;
    await build({
      entryPoints: [resolve(entry)],
      outfile: join(at, "child.mjs"),
      bundle: true,
      platform: "node",
      target: "node20",
      format: "esm",
      packages: "external",
      logLevel: "warning",
    });
  });
  afterAll(async () => {
    if (bundleDir) await rm(bundleDir, { recursive: true, force: true });
  });
  return {
    get path() {
      if (bundleDir === undefined) throw new Error("useBundledChild: read before its beforeAll ran (or it failed)");
      return join(bundleDir, "child.mjs");
    },
  };
}

/** An acknowledged command and how to find its record. */
export interface Acked {
  readonly command: string;
  readonly found: (records: readonly CommitRecord[]) => boolean;
}

/** Attaches as the queen (ticket good for 600 s) and opens /queen/ctl for write-then-read. */
export async function attachQueen(addr: string, key: Uint8Array): Promise<{ client: NineClient; root: Fid; ctl: Fid }> {
  const client = await NineClient.dial(addr);
  const root = await client.attach({ uname: "queen", aname: mintTicket({ role: "queen", sub: "queen" }, key, { ttlS: 600 }) });
  const ctl = await root.walk("queen/ctl");
  await ctl.open("rw");
  return { client, root, ctl };
}

/** Writes one command and reads the reply back; the reply JSON, or undefined if refused or cut off. */
export async function send(ctl: Fid, command: string): Promise<Record<string, unknown> | undefined> {
  try {
    await ctl.write(command);
    const reply = JSON.parse((await ctl.readAll(0)).toString("utf8")) as Record<string, unknown>;
    return reply.ok === true ? reply : undefined;
  } catch {
    return undefined;
  }
}
