/**
 * The in-process appliance fixture of the root task's suites: a temporary
 * folder with a queen key pair made once per file, appliances served on
 * 127.0.0.1 (port 0) with a fresh state directory each, 9P clients attached
 * as the queen, and everything stopped and closed after each test.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { appendFileSync, statfsSync, writeFileSync } from "node:fs";
import { afterAll, afterEach, beforeAll, expect } from "vitest";
import { NineClient, type Fid } from "../../nine-door/index.ts";
import { mintTicket, serveAppliance, writeKeyPair, type RunningAppliance, type ServeOptions } from "../../root-task/index.ts";

/** What a suite may change in `serveAppliance`'s options; the rest is the fixture's. */
export type ApplianceOverrides = Partial<Omit<ServeOptions, "queenPub" | "listen">>;

/** What `useAppliances` hands a suite. */
export interface Appliances {
  /** The suite's temporary folder (removed after the file). */
  readonly dir: string;
  /** The queen's private key, for tickets and signed envelopes. */
  readonly queenKey: Uint8Array;
  /** Path of the queen's public key file. */
  readonly queenPub: string;
  /** Serves an appliance on 127.0.0.1:0, in `dir/state-N` unless `overrides.stateDir` says otherwise. */
  start(overrides?: ApplianceOverrides): Promise<{ app: RunningAppliance; stateDir: string }>;
  /** Stops `app` now (e.g. to restart on its state directory); the fixture no longer stops it. */
  stop(app: RunningAppliance, reason?: string): Promise<void>;
  /** Dials `app` with a 9P2000 client the fixture closes after the test. */
  dial(app: RunningAppliance): Promise<NineClient>;
  /** Dials `app` and attaches as the queen; `ttlS` is the ticket's lifetime. */
  attachQueen(app: RunningAppliance, options?: { ttlS?: number }): Promise<Fid>;
  /** A queen session with /queen/ctl opened for write-then-read on its own fid. */
  queenCtl(app: RunningAppliance): Promise<{ root: Fid; ctl: Fid }>;
}

/**
 * Registers the fixture's hooks in the calling file and returns its helpers;
 * `defaults` go into every `start` (a start's own overrides win).
 *
 * @example
 * ```ts
 * const appliances = useAppliances({ prefix: "cohesix-control-", defaults: { intervalMs: 200, graceMs: 500 } });
 * test("serves", async () => {
 *   const { app } = await appliances.start();
 *   const { ctl } = await appliances.queenCtl(app);
 * });
 * ```
 */
export function useAppliances(options: { prefix: string; defaults?: ApplianceOverrides }): Appliances {
  let dir: string | undefined;
  let queenKey: Uint8Array | undefined;
  let queenPub: string | undefined;
  const running: RunningAppliance[] = [];
  const clients: NineClient[] = [];
  let n = 0;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), options.prefix));
    const keys = await writeKeyPair(join(dir, "keys"), { name: "queen" });
    queenKey = keys.privateKey;
    queenPub = keys.publicPath;
  });
  afterEach(async () => {
    for (const c of clients.splice(0)) c.close();
    for (const r of running.splice(0)) await r.stop("test done");
  });
  afterAll(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  const ready = <T>(value: T | undefined): T => {
    if (value === undefined) throw new Error("useAppliances: read before its beforeAll ran (or it failed)");
    return value;
  };
  const dial = async (app: RunningAppliance): Promise<NineClient> => {
    const client = await NineClient.dial(app.dialString, { dialect: "9P2000" });
    clients.push(client);
    return client;
  };
  const attachQueen = async (app: RunningAppliance, ticket: { ttlS?: number } = {}): Promise<Fid> => {
    const client = await dial(app);
    return client.attach({ uname: "queen", aname: mintTicket({ role: "queen", sub: "queen" }, ready(queenKey), ticket) });
  };

  return {
    get dir() {
      return ready(dir);
    },
    get queenKey() {
      return ready(queenKey);
    },
    get queenPub() {
      return ready(queenPub);
    },
    async start(overrides = {}) {
      const stateDir = overrides.stateDir ?? join(ready(dir), `state-${++n}`);
      const app = await serveAppliance({ board: "host", ...options.defaults, ...overrides, listen: "127.0.0.1:0", stateDir, queenPub: ready(queenPub) });
      running.push(app);
      return { app, stateDir };
    },
    async stop(app, reason = "restart") {
      const at = running.indexOf(app);
      if (at >= 0) running.splice(at, 1);
      await app.stop(reason);
    },
    dial,
    attachQueen,
    async queenCtl(app) {
      const root = await attachQueen(app);
      const ctl = await root.walk("queen/ctl");
      await ctl.open("rw");
      return { root, ctl };
    },
  };
}

/** Writes a command on an open ctl fid and reads the reply; a refusal comes back as `Error: <class>: …`. */
export async function run(ctl: Fid, command: string): Promise<string> {
  try {
    await ctl.write(command);
    return (await ctl.readAll(0)).toString("utf8").trim();
  } catch (err) {
    return `Error: ${(err as Error).message}`;
  }
}

/** Writes `text` to `path` on a fresh fid and reads the reply; a refusal comes back as `Error: <class>: …`. */
export async function write(root: Fid, path: string, text: string): Promise<string> {
  try {
    return await root.with(path, async (f) => {
      await f.open("rw");
      await f.write(text);
      return (await f.readAll(0)).toString("utf8").trim();
    });
  } catch (err) {
    return `Error: ${(err as Error).message}`;
  }
}

/** Fills the file system holding `folder` until a write fails with ENOSPC; returns the filler's path. */
export function fill(folder: string): string {
  const filler = join(folder, "filler");
  const { bavail, bsize } = statfsSync(folder);
  writeFileSync(filler, Buffer.alloc(Math.max(0, Number(bavail) * Number(bsize) - 4096)));
  try {
    for (;;) appendFileSync(filler, Buffer.alloc(512));
  } catch (err) {
    expect((err as NodeJS.ErrnoException).code).toBe("ENOSPC");
  }
  return filler;
}
