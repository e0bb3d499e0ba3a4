/**
 * The harness of the QEMU end-to-end suites: a temp dir with its own config
 * home and a queen key pair, the real CLI run in it (`cohesix`), queen
 * commands retried while the host forward accepts before the guest serves
 * (`queen`), the guest's state read from `.cohesix/run/aarch64-virt`
 * (`pidOf`, `consoleText`) and a teardown that stops QEMU by PID.
 *
 * @example
 * const e2e = await E2e.create("cohesix-e2e-");
 * const r = await e2e.cohesix(["boot", "--detach", "--port", "0", "--queen-pub", e2e.queenPub], { timeoutMs: BOOT_MS });
 * e2e.dial = r.stdout.split("\n")[0]!;
 * await e2e.queen(["cat", "/proc/boot"]);
 * await e2e.teardown();
 */
import { build } from "esbuild";
import { execa } from "execa";
import { existsSync } from "node:fs";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { BIN, ROOT } from "../cli/helpers.ts";

/** The board every QEMU suite boots. */
export const BOARD = "aarch64-virt";

/** Whether a process with this PID still exists. */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** A free TCP port on 127.0.0.1 (the kernel's pick, released for the caller). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => resolve(port));
    });
  });
}

/** The run folder of the board's VM under a project folder. */
export function runDir(project: string): string {
  return join(project, ".cohesix", "run", BOARD);
}

/** The QEMU PID that `cohesix boot --detach` recorded under a project folder, if any. */
export async function vmPid(project: string): Promise<number | undefined> {
  const info = join(runDir(project), "vm.json");
  if (!existsSync(info)) return undefined;
  return (JSON.parse(await readFile(info, "utf8")) as { pid: number }).pid;
}

/** Bundles test/qemu/guest-mint.ts to `outfile`, as the guest programs are bundled, for a test image's `--extra`. */
export async function buildGuestMint(outfile: string): Promise<void> {
  await build({
    entryPoints: [join(ROOT, "test", "qemu", "guest-mint.ts")],
    outfile,
    bundle: true,
    platform: "node",
    format: "esm",
    target: "node22",
    banner: { js: 'import{createRequire as __cxReq}from"node:module";const require=__cxReq(import.meta.url);' },
    logLevel: "silent",
  });
}

/** One suite's temp dir, its queen keys and the guest address the queen dials. */
export class E2e {
  /** The guest's host forward (`tcp!127.0.0.1!PORT`), set by the suite after each boot. */
  dial = "";

  private constructor(
    readonly dir: string,
    readonly keys: string,
  ) {}

  /** Makes the temp dir (name starting with `prefix`) and a queen key pair in `DIR/keys`. */
  static async create(prefix: string): Promise<E2e> {
    const dir = await mkdtemp(join(tmpdir(), prefix));
    const e2e = new E2e(dir, join(dir, "keys"));
    const r = await e2e.cohesix(["keygen", "--out", e2e.keys]);
    if (r.exitCode !== 0) throw new Error(`cohesix keygen failed (${r.exitCode}):\n${r.stderr}`);
    return e2e;
  }

  get queenKey(): string {
    return join(this.keys, "queen.key");
  }

  get queenPub(): string {
    return join(this.keys, "queen.pub");
  }

  /** The config home: `cohesix gpu-bridge` and `cohesix boot` pair through its default key folder. */
  get env(): Record<string, string> {
    return { XDG_CONFIG_HOME: join(this.dir, "config") };
  }

  /**
   * Runs the real CLI in the temp dir to completion without throwing on a
   * non-zero exit; COHESIX_ADDR/COHESIX_KEY of the caller never leak in.
   */
  cohesix(args: readonly string[], options: { timeoutMs?: number } = {}) {
    const env: NodeJS.ProcessEnv = { ...process.env, ...this.env };
    delete env.COHESIX_ADDR;
    delete env.COHESIX_KEY;
    return execa("node", [BIN, ...args], { cwd: this.dir, env, extendEnv: false, reject: false, timeout: options.timeoutMs ?? 120_000, stdin: "ignore" });
  }

  /** One queen command to the guest at `dial`, with a ticket the CLI mints now. */
  asQueen(args: readonly string[]) {
    return this.cohesix([...args, "--addr", this.dial, "--key", this.queenKey]);
  }

  /** Retries a queen command until it succeeds: the host forward accepts before the guest is ready. */
  async queen(args: readonly string[], tries = 10): Promise<string> {
    let last = "";
    for (let i = 0; i < tries; i++) {
      const r = await this.asQueen(args);
      if (r.exitCode === 0) return r.stdout;
      last = `${r.stdout}${r.stderr}`;
      await sleep(500);
    }
    throw new Error(`cohesix ${args.join(" ")}: ${last}`);
  }

  /** The run folder of the VM that `cohesix boot` started here. */
  get runDir(): string {
    return runDir(this.dir);
  }

  /** The PID of the QEMU that `cohesix boot --detach` started here, if one is recorded. */
  pidOf(): Promise<number | undefined> {
    return vmPid(this.dir);
  }

  /** The guest's console log so far ("" before there is one). */
  consoleText(): Promise<string> {
    return readFile(join(this.runDir, "console.log"), "utf8").catch(() => "");
  }

  /** `cohesix down`, then SIGKILL to the recorded QEMU if it outlived that, then the temp dir goes. */
  async teardown(): Promise<void> {
    const pid = await this.pidOf();
    await this.cohesix(["down"]);
    if (pid !== undefined && alive(pid)) process.kill(pid, "SIGKILL");
    await rm(this.dir, { recursive: true, force: true });
  }
}
