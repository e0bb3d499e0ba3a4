/**
 * The on-disk copy of /log/queen.log: lines are appended as they are
 * written (no fsync — the commit log is the record, this is the human
 * view), the previous boot's tail is shown again at boot, and the file is
 * rotated once to `queen.log.1` when it grows past its limit, so it holds
 * at most twice `rotateBytes` on disk. The state disk's space belongs to
 * the commit log first: while the file system has less than `reserveBytes`
 * free, lines are dropped (counted), and once there is room again one line
 * says how many were lost.
 * @module
 */
import { closeSync, openSync, readSync, renameSync, statSync, statfsSync, writeSync } from "node:fs";
import { dirname } from "node:path";

/** Bytes of the previous boot's log shown again. */
const TAIL_BYTES = 64 << 10;

/** Disk limits of an {@link AuditFile}. */
export interface AuditFileLimits {
  /** Bytes in the live file before it is rotated to `.1`; the file and `.1` hold at most twice this. */
  readonly rotateBytes: number;
  /** Free bytes the file system keeps for the commit log: below it, lines are dropped. */
  readonly reserveBytes: number;
}

/** Defaults: 512 KiB live + 512 KiB rotated, 1 MiB kept free for commits. */
export const DEFAULT_AUDIT_FILE_LIMITS: AuditFileLimits = { rotateBytes: 512 << 10, reserveBytes: 1 << 20 };

/** Free bytes (for an unprivileged writer) of the file system holding `dir`; Infinity if unknown. */
function freeBytes(dir: string): number {
  try {
    const st = statfsSync(dir);
    return st.bavail * st.bsize;
  } catch {
    return Number.POSITIVE_INFINITY;
  }
}

/**
 * An append-only text file with a remembered tail.
 *
 * @example
 * ```ts
 * const audit = await AuditFile.open("/var/lib/cohesix/queen.log", { rotateBytes: 512 << 10 });
 * log.append(audit.previous);
 * audit.write("2026-11-28T… spawned worker-1 role=heartbeat\n");
 * ```
 */
export class AuditFile {
  /** Whole lines from the end of the file as the previous boot left it. */
  readonly previous: string;
  #fd: number | undefined;
  #size: number;
  #dropped = 0;
  readonly #path: string;
  readonly #limits: AuditFileLimits;

  private constructor(path: string, fd: number, size: number, previous: string, limits: AuditFileLimits) {
    this.#path = path;
    this.#fd = fd;
    this.#size = size;
    this.previous = previous;
    this.#limits = limits;
  }

  /** Lines dropped since the last time there was room (0 when none). */
  get dropped(): number {
    return this.#dropped;
  }

  /** Opens (creating) the file and reads the previous tail. */
  static async open(path: string, limits: Partial<AuditFileLimits> = {}): Promise<AuditFile> {
    const l = { ...DEFAULT_AUDIT_FILE_LIMITS, ...limits };
    let size = 0;
    try {
      size = statSync(path).size;
    } catch {
      // A first boot has no log yet.
    }
    let previous = "";
    if (size > 0) {
      const fd = openSync(path, "r");
      try {
        const n = Math.min(size, TAIL_BYTES);
        const buf = Buffer.alloc(n);
        readSync(fd, buf, 0, n, size - n);
        let text = buf.toString("utf8");
        if (n < size) text = text.slice(text.indexOf("\n") + 1);
        previous = text.endsWith("\n") || text === "" ? text : `${text}\n`;
      } finally {
        closeSync(fd);
      }
    }
    if (size > l.rotateBytes) {
      renameSync(path, `${path}.1`);
      size = 0;
    }
    return new AuditFile(path, openSync(path, "a", 0o600), size, previous, l);
  }

  /**
   * Appends text; rotates past the limit; drops it while the disk is below
   * its reserve. Failures never stop the appliance.
   */
  write(text: string): void {
    if (this.#fd === undefined) return;
    try {
      const bytes = Buffer.byteLength(text);
      if (freeBytes(dirname(this.#path)) - bytes < this.#limits.reserveBytes) {
        this.#dropped++;
        return;
      }
      if (this.#dropped > 0) {
        const note = `${new Date().toISOString()} audit: dropped ${this.#dropped} line(s) while the state disk had less than ${this.#limits.reserveBytes} bytes free (kept for the commit log)\n`;
        this.#dropped = 0;
        this.#size += writeSync(this.#fd, note);
      }
      this.#size += writeSync(this.#fd, text);
      if (this.#size > this.#limits.rotateBytes) {
        closeSync(this.#fd);
        renameSync(this.#path, `${this.#path}.1`);
        this.#fd = openSync(this.#path, "a", 0o600);
        this.#size = 0;
      }
    } catch {
      // A full disk must not take the control plane down with it.
    }
  }

  close(): void {
    if (this.#fd !== undefined) closeSync(this.#fd);
    this.#fd = undefined;
  }
}
