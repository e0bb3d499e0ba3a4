/**
 * Helpers for tests that run the real `cohesix` program: a private config
 * home, a queen key pair, and a `cohesix serve` child process on an
 * ephemeral 127.0.0.1 port, stopped by PID.
 */
import { execa, type ResultPromise } from "execa";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";

/**
 * The repository root and the CLI entry (built by test/global-setup.ts).
 * A bench that imports these helpers runs bundled under
 * `node_modules/.cache/` (scripts/run-ts.mjs), from the root as its working folder.
 */
export const ROOT = /[\\/]node_modules[\\/]\.cache[\\/]/.test(fileURLToPath(import.meta.url)) ? process.cwd() : fileURLToPath(new URL("../..", import.meta.url));
export const BIN = join(ROOT, "bin", "cohesix.js");

/** A scratch directory: XDG_CONFIG_HOME, keys and the appliance state live here. */
export interface Scratch {
  readonly dir: string;
  readonly env: Record<string, string>;
  readonly keyDir: string;
  readonly queenKey: string;
  readonly queenPub: string;
  remove(): Promise<void>;
}

/** Makes a temp dir with its own config home and a queen key pair from `cohesix keygen`. */
export async function makeScratch(): Promise<Scratch> {
  const dir = await mkdtemp(join(tmpdir(), "cohesix-cli-"));
  const env = { XDG_CONFIG_HOME: join(dir, "config") };
  const keyDir = join(dir, "keys");
  await cohesix(["keygen", "--out", keyDir], { env });
  return {
    dir,
    env,
    keyDir,
    queenKey: join(keyDir, "queen.key"),
    queenPub: join(keyDir, "queen.pub"),
    remove: () => rm(dir, { recursive: true, force: true }),
  };
}

/**
 * Runs `cohesix ARGS…` to completion and returns its result without
 * throwing on a non-zero exit. COHESIX_ADDR/COHESIX_KEY from the caller's
 * environment never leak in: only `env` is added to a clean copy.
 */
export function cohesix(args: readonly string[], options: { env?: Record<string, string>; timeoutMs?: number } = {}) {
  const base = { ...process.env };
  delete base.COHESIX_ADDR;
  delete base.COHESIX_KEY;
  return execa("node", [BIN, ...args], {
    cwd: ROOT,
    env: { ...base, ...options.env },
    extendEnv: false,
    reject: false,
    timeout: options.timeoutMs ?? 20_000,
  });
}

/** A `cohesix serve` child process. */
export interface Served {
  readonly child: ResultPromise;
  readonly pid: number;
  /** `tcp!127.0.0.1!PORT` from the READY line. */
  readonly addr: string;
  readonly port: number;
  /** Every stdout line so far. */
  readonly lines: string[];
  /** Sends SIGTERM to the PID and waits for the exit. */
  stop(): Promise<Awaited<ResultPromise>>;
}

/**
 * Starts `cohesix serve --board host --listen 127.0.0.1:0` and waits for its
 * READY line. The state directory is `<scratch>/state` unless `options.state`
 * names another.
 */
export async function serve(scratch: Scratch, extra: readonly string[] = [], options: { state?: string } = {}): Promise<Served> {
  const base = { ...process.env };
  delete base.COHESIX_ADDR;
  delete base.COHESIX_KEY;
  const child = execa(
    "node",
    [BIN, "serve", "--board", "host", "--listen", "127.0.0.1:0", "--state", options.state ?? join(scratch.dir, "state"), "--queen-pub", scratch.queenPub, ...extra],
    { cwd: ROOT, env: { ...base, ...scratch.env }, extendEnv: false, reject: false },
  );
  const pid = child.pid;
  if (pid === undefined) throw new Error("cohesix serve did not start");
  const lines: string[] = [];
  const ready = new Promise<string>((resolve, reject) => {
    const rl = createInterface({ input: child.stdout! });
    rl.on("line", (line) => {
      lines.push(line);
      if (line.startsWith("READY ")) resolve(line.slice("READY ".length));
    });
    void child.then((r) => reject(new Error(`cohesix serve exited ${r.exitCode} before READY: ${r.stderr}`)));
    setTimeout(() => reject(new Error("cohesix serve printed no READY line within 15 s")), 15_000).unref();
  });
  let addr: string;
  try {
    addr = await ready;
  } catch (err) {
    try { process.kill(pid, "SIGKILL"); } catch {}
    throw err;
  }
  const port = Number(addr.split("!")[2]);
  return {
    child,
    pid,
    addr,
    port,
    lines,
    async stop() {
      if (child.exitCode === null) process.kill(pid, "SIGTERM");
      return child;
    },
  };
}
