/**
 * Helpers the appliance benches share: start the appliance bench target as a
 * child process, read a process's CPU time and memory from /proc, and take
 * percentiles.
 *
 * @example
 * ```ts
 * const target = await startAppliance({ workers: 10 });
 * try { console.log(target.tcp, target.unix, peakRssBytes(target.pid)); } finally { await target.stop(); }
 * ```
 * @module
 */
import { spawn } from "node:child_process";
import { once } from "node:events";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { loadavg, tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { createInterface } from "node:readline";
import { mintTicket, readPrivateKey, writeKeyPair } from "../root-task/index.ts";

/** A running appliance target (`bench/appliance-target.ts`). */
export interface ApplianceTarget {
  readonly pid: number;
  /** `tcp!127.0.0.1!PORT`. */
  readonly tcp: string;
  /** `unix!STATE/nine-door.sock`, where workers attach. */
  readonly unix: string;
  readonly stateDir: string;
  /** A queen ticket (queen key made for this run). */
  readonly queenTicket: string;
  /** The appliance's boot key, which signs worker tickets. */
  readonly bootKey: Uint8Array;
  /** SIGTERM, SIGKILL after 5 s, and removes the temp dir. */
  stop(): Promise<void>;
}

/**
 * Starts the appliance in a child process with a fresh state dir under the
 * system temp dir and waits for READY (30 s).
 *
 * @example
 * ```ts
 * const t = await startAppliance({ workers: 1000, cpuProfDir: "/tmp/prof" });
 * ```
 */
export async function startAppliance(options: { workers?: number; cpuProfDir?: string; stateParent?: string } = {}): Promise<ApplianceTarget> {
  const dir = mkdtempSync(join(options.stateParent ?? tmpdir(), "cohesix-bench-"));
  const stateDir = join(dir, "state");
  const keys = await writeKeyPair(dir, { name: "queen" });
  const prof = options.cpuProfDir ? ["--cpu-prof", "--cpu-prof-dir", resolve(options.cpuProfDir)] : [];
  const args = [...prof, "scripts/run-ts.mjs", "bench/appliance-target.ts", "--state", stateDir, "--queen-pub", keys.publicPath, "--workers", String(options.workers ?? 0)];
  const proc = spawn(process.execPath, args, { stdio: ["ignore", "pipe", "pipe"] });
  let stderr = "";
  proc.stderr.on("data", (d: Buffer) => {
    stderr = (stderr + d.toString()).slice(-4000);
  });
  const exited = once(proc, "exit");
  const stop = async (): Promise<void> => {
    if (proc.exitCode === null && proc.signalCode === null && proc.pid !== undefined) {
      process.kill(proc.pid, "SIGTERM");
      const timer = setTimeout(() => {
        if (proc.exitCode === null && proc.signalCode === null) process.kill(proc.pid!, "SIGKILL");
      }, 5000);
      await exited;
      clearTimeout(timer);
    }
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    const line = await new Promise<RegExpMatchArray>((resolveLine, reject) => {
      const timer = setTimeout(() => reject(new Error(`appliance target did not print READY within 30 s: ${stderr}`)), 30_000);
      createInterface({ input: proc.stdout }).on("line", (l) => {
        const m = l.match(/^READY (\S+) (\S+)/);
        if (m) {
          clearTimeout(timer);
          resolveLine(m);
        }
      });
      void exited.then(() => {
        clearTimeout(timer);
        reject(new Error(`appliance target exited before READY: ${stderr}`));
      });
    });
    return {
      pid: proc.pid!,
      tcp: line[1]!,
      unix: line[2]!,
      stateDir,
      queenTicket: mintTicket({ role: "queen", sub: "queen" }, keys.privateKey, { ttlS: 3600 }),
      bootKey: await readPrivateKey(join(stateDir, "boot.key")),
      stop,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}

/** CPU seconds (user + system, all threads) `pid` has used; undefined if unknown. */
export function cpuSeconds(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    // Fields 14 and 15 of proc(5) (utime, stime), counted after "pid (comm) ".
    return (Number(fields[11]) + Number(fields[12])) / 100;
  } catch {
    return undefined;
  }
}

/** The kernel's peak resident set of `pid` (VmHWM), bytes; undefined if unknown. */
export function peakRssBytes(pid: number): number | undefined {
  try {
    const m = readFileSync(`/proc/${pid}/status`, "utf8").match(/^VmHWM:\s+(\d+) kB/m);
    return m ? Number(m[1]) * 1024 : undefined;
  } catch {
    return undefined;
  }
}

/** Percentile `p` (0–100) of ascending-sorted `sorted`; NaN when empty. */
export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

/**
 * The 1, 5 and 15 minute load averages and, where the kernel reports it,
 * the share of the last 10 s in which some task waited for a CPU
 * (`/proc/pressure/cpu`), e.g. `"3.55 3.37 3.96, cpu pressure 42%"`.
 */
export function load(): string {
  const avg = loadavg()
    .map((l) => l.toFixed(2))
    .join(" ");
  try {
    const m = readFileSync("/proc/pressure/cpu", "utf8").match(/^some avg10=([\d.]+)/m);
    return m ? `${avg}, cpu pressure ${Math.round(Number(m[1]))}%` : avg;
  } catch {
    return avg;
  }
}

/** `PASS` or `MISS`. */
export function verdict(ok: boolean): string {
  return ok ? "PASS" : "MISS";
}
