/**
 * The host board as `up` and `down` run it: a `cohesix serve` on this
 * machine, recorded in `<dir>/run/host/` the way a VM is (`qemu.pid`,
 * `vm.json` with the pid and dial string), so `down --board host`, a second
 * `up` and the verbs that look for the running appliance find it.
 *
 * Attached, the recorded pid is this process's; detached, it is a child
 * started with its own session whose output goes to `run/host/serve.log`,
 * and `up` returns once that log shows the `READY` line.
 * @module
 */
import { spawn } from "node:child_process";
import { existsSync, openSync, closeSync } from "node:fs";
import { mkdir, readFile, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { packageRoot } from "../boards/index.ts";
import { alive, type VmInfo, type VmPaths } from "../qemu/index.ts";

/** The serve log of a detached host board. */
export function hostLog(paths: VmPaths): string {
  return join(paths.runDir, "serve.log");
}

/**
 * Records a serving host board: the pid file and `vm.json`.
 *
 * @example
 * ```ts
 * await recordHost(vmPaths(".cohesix", "host"), { pid: process.pid, dialString: "tcp!127.0.0.1!5640" });
 * ```
 */
export async function recordHost(paths: VmPaths, options: { pid: number; dialString: string }): Promise<VmInfo> {
  const port = Number(options.dialString.split("!")[2] ?? 0);
  const info: VmInfo = { board: "host", pid: options.pid, port, dialString: options.dialString, startedAt: new Date().toISOString() };
  await mkdir(paths.runDir, { recursive: true });
  await writeFile(paths.pidFile, `${options.pid}\n`);
  await writeFile(paths.infoFile, `${JSON.stringify(info, null, 2)}\n`);
  return info;
}

/** Removes a host board's record when it is `pid`'s (a newer one is left alone). */
export async function forgetHost(paths: VmPaths, pid: number): Promise<void> {
  const recorded = Number((await readFile(paths.pidFile, "utf8").catch(() => "")).trim());
  if (recorded !== pid) return;
  await rm(paths.infoFile, { force: true });
  await rm(paths.pidFile, { force: true });
}

/** Options of {@link startHostDetached}. */
export interface StartHostOptions {
  /** `serve`'s arguments (board, listen, state, project, keys…). */
  readonly args: readonly string[];
  readonly env: NodeJS.ProcessEnv;
  /** Give up waiting for READY after this long, ms. */
  readonly timeoutMs: number;
}

/**
 * Starts `cohesix serve` as a detached child (its own session, output to
 * `run/host/serve.log`), waits for its `READY` line and records it. When the
 * child ends or stays silent, it is stopped by pid and the error quotes the
 * log's last line.
 *
 * @example
 * ```ts
 * const info = await startHostDetached(vmPaths(".cohesix", "host"), { args: ["--board", "host", "--listen", "127.0.0.1:0", "--state", ".cohesix/state"], env: process.env, timeoutMs: 120_000 });
 * info.dialString; // "tcp!127.0.0.1!40123"
 * ```
 */
export async function startHostDetached(paths: VmPaths, options: StartHostOptions): Promise<VmInfo> {
  await mkdir(paths.runDir, { recursive: true });
  const log = hostLog(paths);
  const fd = openSync(log, "w");
  let pid: number | undefined;
  try {
    const child = spawn(process.execPath, [join(packageRoot(), "bin", "cohesix.js"), "serve", ...options.args], {
      detached: true,
      stdio: ["ignore", fd, fd],
      env: options.env,
    });
    child.on("error", () => {});
    pid = child.pid;
    child.unref();
  } finally {
    closeSync(fd);
  }
  if (pid === undefined) throw new Error(`host: cohesix serve did not start (see ${log})`);
  await writeFile(paths.pidFile, `${pid}\n`);
  const deadline = Date.now() + options.timeoutMs;
  for (;;) {
    const text = existsSync(log) ? await readFile(log, "utf8") : "";
    const ready = /^READY (\S+)$/m.exec(text);
    if (ready) return recordHost(paths, { pid, dialString: ready[1]! });
    const gone = !alive(pid);
    if (gone || Date.now() > deadline) {
      if (!gone) process.kill(pid, "SIGKILL");
      await rm(paths.pidFile, { force: true });
      const last = text.trim().split("\n").at(-1) ?? "";
      const why = gone ? "exited before serving" : `printed no READY within ${Math.round(options.timeoutMs / 1000)} s`;
      throw new Error(`host: cohesix serve ${why}${last ? `: ${last}` : ""} (log ${log})`);
    }
    await sleep(100);
  }
}
