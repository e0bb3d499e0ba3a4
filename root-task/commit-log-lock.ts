/**
 * The commit log's single-writer lock: `DIR/commits.lock` holds
 * `<pid> <boot id> <nonce>`. It is created atomically (written to a private
 * temporary file, then hard-linked into place, so nobody ever reads a
 * half-written lock). A lock whose pid is dead, or which was written in an
 * earlier boot (boot id differs), or which names this very pid without this
 * process holding it (a restarted init keeps pid 1) is stale and taken over.
 * Two processes taking over the same stale lock at the same instant is the
 * one race left; the root task is the only opener, so it is accepted.
 *
 * @example
 * ```ts
 * const lock = await acquireLogLock("state", { onAudit: console.log });
 * await lock.release();
 * ```
 * @module
 */
import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { link, readFile, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { BusyError } from "../nine-door/index.ts";

/** Lock file name inside the state directory. */
export const LOCK_FILE = "commits.lock";

/** A held lock; `release` removes the file if it is still ours. */
export interface LogLock {
  readonly path: string;
  release(): Promise<void>;
}

const heldInProcess = new Set<string>();
let bootId: string | undefined | null = null;

function currentBootId(): string | undefined {
  if (bootId === null) {
    try {
      bootId = readFileSync("/proc/sys/kernel/random/boot_id", "utf8").trim() || undefined;
    } catch {
      bootId = undefined;
    }
  }
  return bootId;
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

/**
 * Takes the lock of a state directory or throws BusyError naming the holder.
 * `file` and `what` name another lock of the same kind (the fleet outbox's:
 * `fleet.lock`, `fleet outbox`).
 *
 * @example
 * ```ts
 * const lock = await acquireLogLock("/var/lib/cohesix");
 * ```
 */
export async function acquireLogLock(dir: string, options: { onAudit?: (line: string) => void; file?: string; what?: string } = {}): Promise<LogLock> {
  const path = join(dir, options.file ?? LOCK_FILE);
  const what = options.what ?? "commit log";
  if (heldInProcess.has(path)) throw new BusyError(`${what}: ${dir} is already open in this process (pid ${process.pid})`);
  heldInProcess.add(path);
  try {
    const boot = currentBootId() ?? "-";
    const nonce = randomBytes(8).toString("hex");
    const content = `${process.pid} ${boot} ${nonce}\n`;
    const tmp = `${path}.${process.pid}.${nonce}`;
    await writeFile(tmp, content, { mode: 0o644 });
    try {
      for (let attempt = 0; attempt < 5; attempt++) {
        try {
          await link(tmp, path);
          return {
            path,
            release: async () => {
              heldInProcess.delete(path);
              const now = await readFile(path, "utf8").catch(() => "");
              if (now === content) await rm(path, { force: true });
            },
          };
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
        }
        const held = await readFile(path, "utf8").catch(() => undefined);
        if (held === undefined) continue; // removed meanwhile: try again
        if (held === "") {
          // A holder writes its line before linking the lock in place, so an
          // empty lock file is a crash's leftover (the link reached the disk,
          // the data did not): stale.
          options.onAudit?.(`${what}: took over an empty lock file (left by a crash) in ${dir}`);
          await rm(path, { force: true });
          continue;
        }
        const [pidText, heldBoot] = held.trim().split(" ");
        const pid = Number(pidText);
        const stale =
          !Number.isSafeInteger(pid) ||
          pid <= 0 ||
          (heldBoot !== undefined && heldBoot !== "-" && heldBoot !== boot) ||
          pid === process.pid ||
          !isAlive(pid);
        if (!stale) throw new BusyError(`${what}: ${dir} is locked by running pid ${pid}`);
        options.onAudit?.(`${what}: took over stale lock of pid ${pidText} in ${dir}`);
        await rm(path, { force: true });
      }
      throw new BusyError(`${what}: could not take the lock of ${dir}: it keeps changing hands`);
    } finally {
      await rm(tmp, { force: true });
    }
  } catch (err) {
    heldInProcess.delete(path);
    throw err;
  }
}
