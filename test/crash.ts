/**
 * Helpers of the crash campaigns: the seed (replayable with
 * COHESIX_CRASH_SEED), seeded generators, a crash child bundled once per
 * suite so it starts fast enough to be killed at random moments, and the
 * queen session and command sending of the `cohesix serve` campaigns.
 */
import { spawn, type ChildProcessByStdio } from "node:child_process";
import { mkdir, mkdtemp, rm } from "node:fs/promises";
import { join, resolve } from "node:path";
import type { Readable, Writable } from "node:stream";
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

/** A crash child: it prints `loaded` once its code is in, waits for `go` on stdin, then prints `ready …` and its acknowledgements. */
export interface CrashChild {
  readonly proc: ChildProcessByStdio<Writable, Readable, Readable>;
  /** Everything it printed on stdout so far. */
  out(): string;
  /** Everything it printed on stderr so far. */
  stderr(): string;
  /** Resolves at `loaded`; fails (naming `seed`) if it exits first. */
  readonly loaded: Promise<void>;
  readonly exited: Promise<void>;
}

/**
 * Starts `node ARGS…` as a crash child, so the next one loads while this
 * round runs.
 *
 * @example
 * ```ts
 * const next = startCrashChild([child.path, dir], seed);
 * await goUntilReady(next, `seed ${seed} round 0`);
 * ```
 */
export function startCrashChild(args: readonly string[], seed: number): CrashChild {
  const proc = spawn(process.execPath, [...args], { stdio: ["pipe", "pipe", "pipe"] });
  let out = "";
  let err = "";
  proc.stderr.on("data", (d: Buffer) => (err += d.toString()));
  proc.stdout.on("data", (d: Buffer) => (out += d.toString()));
  proc.stdin.on("error", () => {});
  const exited = new Promise<void>((r) => proc.once("exit", () => r()));
  const loaded = new Promise<void>((ok, fail) => {
    proc.stdout.on("data", () => out.includes("loaded") && ok());
    proc.once("exit", (code) => fail(new Error(`seed ${seed}: child exited ${code} before loading: ${err}`)));
  });
  loaded.catch(() => {});
  return { proc, out: () => out, loaded, exited, stderr: () => err };
}

/** Waits for `child` to load, tells it to go, and waits for its `ready`; a child that exits first fails naming `what`. */
export async function goUntilReady(child: CrashChild, what: string): Promise<void> {
  await child.loaded;
  child.proc.stdin.write("go\n");
  await new Promise<void>((ready, fail) => {
    const check = (): void => {
      if (child.out().includes("ready ")) ready();
    };
    child.proc.stdout.on("data", check);
    check();
    child.proc.once("exit", (code) => fail(new Error(`${what}: child exited ${code} before ready: ${child.stderr()}`)));
  });
}
